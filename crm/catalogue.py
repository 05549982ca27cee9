"""服务项目管理: services and products with a unique item code, whose changes take effect only
after approval (可以设审核才生效).

The live catalogue (`catalogue_items`) is what bookings, orders and the IVR read. Nobody writes it
directly: a new item or a changed one is proposed as a pending version (`catalogue_changes`), kept
apart from the live row, and only an approver (catalogue.approve) publishes it — never the person
who proposed it (separation of duties, as for work-order audits). Rejecting keeps the live row as
it was. The item code (货号, SKU) is fixed once the item exists; an item is withdrawn from sale by
approving a change to status `inactive`, never deleted (orders keep pointing at it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, IntegrityError, Transaction
from crm.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError

# Letters, digits and - _ . : what labels, barcodes and the IVR's keypad entry can all carry.
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
#: ¥1,000,000.00: above is a typo (an order number in the price field).
MAX_PRICE_CENTS = 100_000_000
#: Bookings hold 5-minute granules (crm.appointments); a service lasts whole granules, up to 10 h.
DURATION_STEP_MINUTES = 5
MAX_DURATION_MINUTES = 600


class ItemKind(StrEnum):
    SERVICE = "service"  # 服务项目: booked with an expert
    PRODUCT = "product"  # 产品: sold over the counter


class ItemStatus(StrEnum):
    ACTIVE = "active"  # 在售
    INACTIVE = "inactive"  # 下架


class ChangeState(StrEnum):
    PENDING = "pending"  # 待审核
    APPROVED = "approved"  # 已生效
    REJECTED = "rejected"  # 驳回
    WITHDRAWN = "withdrawn"  # 撤回


@dataclass(frozen=True)
class CatalogueItem:
    id: int
    sku: str
    kind: ItemKind
    name: str
    description: str
    category: str | None
    price_cents: int
    duration_minutes: int | None
    status: ItemStatus
    version: int
    created_at: str
    updated_at: str
    approved_by: int | None
    approved_at: str | None


@dataclass(frozen=True)
class CatalogueChange:
    id: int
    #: None for a proposed new item.
    item_id: int | None
    sku: str
    kind: ItemKind
    name: str
    description: str
    category: str | None
    price_cents: int
    duration_minutes: int | None
    status: ItemStatus
    state: ChangeState
    proposed_by: int | None
    proposed_at: str
    reviewed_by: int | None
    reviewed_at: str | None
    review_note: str | None


_FIELDS = ("sku", "kind", "name", "description", "category", "price_cents", "duration_minutes", "status")


def _item(row: dict[str, Any]) -> CatalogueItem:
    return CatalogueItem(
        id=row["id"], sku=row["sku"], kind=ItemKind(row["kind"]), name=row["name"], description=row["description"],
        category=row["category"], price_cents=row["price_cents"], duration_minutes=row["duration_minutes"],
        status=ItemStatus(row["status"]), version=row["version"], created_at=row["created_at"],
        updated_at=row["updated_at"], approved_by=row["approved_by"], approved_at=row["approved_at"],
    )  # fmt: skip


def _change(row: dict[str, Any]) -> CatalogueChange:
    return CatalogueChange(
        id=row["id"], item_id=row["item_id"], sku=row["sku"], kind=ItemKind(row["kind"]), name=row["name"],
        description=row["description"], category=row["category"], price_cents=row["price_cents"],
        duration_minutes=row["duration_minutes"], status=ItemStatus(row["status"]), state=ChangeState(row["state"]),
        proposed_by=row["proposed_by"], proposed_at=row["proposed_at"], reviewed_by=row["reviewed_by"],
        reviewed_at=row["reviewed_at"], review_note=row["review_note"],
    )  # fmt: skip


def check_sku(value: Any) -> str:
    if not isinstance(value, str) or not _SKU.match(value.strip()):
        raise ValidationError("sku", "1-32 letters, digits and . _ - starting with a letter or digit", code="catalogue.bad_sku")
    return value.strip().upper()


def check_price(field: str, value: Any) -> int:
    cents = common.positive_int(field, value, allow_zero=True)
    if cents > MAX_PRICE_CENTS:
        raise ValidationError(field, f"must be at most {MAX_PRICE_CENTS} cents", code="catalogue.price_too_high")
    return cents


def _check_duration(kind: ItemKind, value: Any) -> int | None:
    if kind is ItemKind.PRODUCT:
        if value is not None:
            raise ValidationError("duration_minutes", "products have no duration")
        return None
    if value is None:
        raise ValidationError("duration_minutes", "a service needs its duration", code="field.required")
    minutes = common.positive_int("duration_minutes", value)
    if minutes % DURATION_STEP_MINUTES or minutes > MAX_DURATION_MINUTES:
        raise ValidationError(
            "duration_minutes", f"must be a multiple of {DURATION_STEP_MINUTES} up to {MAX_DURATION_MINUTES}"
        )
    return minutes


class CatalogueService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    # -- proposing --------------------------------------------------------------------------------
    async def propose_new(
        self,
        actor: Actor,
        *,
        sku: str,
        kind: ItemKind | str,
        name: str,
        price_cents: int,
        duration_minutes: int | None = None,
        description: str = "",
        category: str | None = None,
        status: ItemStatus | str = ItemStatus.ACTIVE,
    ) -> CatalogueChange:
        """A new item, pending approval. The code must not be live or pending already."""
        actor.require(access.CATALOGUE_WRITE)
        item_kind = common.enum_value("kind", ItemKind, kind)
        values = {
            "sku": check_sku(sku),
            "kind": item_kind.value,
            "name": common.text("name", name, max_length=100),
            "description": common.text("description", description, max_length=4000, required=False),
            "category": common.optional_text("category", category, max_length=32),
            "price_cents": check_price("price_cents", price_cents),
            "duration_minutes": _check_duration(item_kind, duration_minutes),
            "status": common.enum_value("status", ItemStatus, status).value,
        }
        async with self.db.transaction() as tx:
            live = await tx.fetch_value("SELECT id FROM catalogue_items WHERE sku = ?", (values["sku"],))
            if live is not None:
                raise Conflict(f"item code {values['sku']} is already item {live}", code="catalogue.sku_taken")
            return await self._insert_change(tx, actor, None, values)

    async def propose_change(
        self,
        actor: Actor,
        item_id: int,
        *,
        name: str | common._Unset = common.UNSET,
        price_cents: int | common._Unset = common.UNSET,
        duration_minutes: int | None | common._Unset = common.UNSET,
        description: str | common._Unset = common.UNSET,
        category: str | None | common._Unset = common.UNSET,
        status: ItemStatus | str | common._Unset = common.UNSET,
    ) -> CatalogueChange:
        """A changed version of a live item (fields not given keep their live value), pending approval."""
        actor.require(access.CATALOGUE_WRITE)
        async with self.db.transaction() as tx:
            live = await self._live_row(tx, item_id)
            kind = ItemKind(live["kind"])
            values = {key: live[key] for key in _FIELDS}
            if not isinstance(name, common._Unset):
                values["name"] = common.text("name", name, max_length=100)
            if not isinstance(description, common._Unset):
                values["description"] = common.text("description", description, max_length=4000, required=False)
            if not isinstance(category, common._Unset):
                values["category"] = common.optional_text("category", category, max_length=32)
            if not isinstance(price_cents, common._Unset):
                values["price_cents"] = check_price("price_cents", price_cents)
            if not isinstance(duration_minutes, common._Unset):
                values["duration_minutes"] = _check_duration(kind, duration_minutes)
            if not isinstance(status, common._Unset):
                values["status"] = common.enum_value("status", ItemStatus, status).value
            if all(values[key] == live[key] for key in _FIELDS):
                raise ValidationError("item_id", "the proposal changes nothing", code="catalogue.no_change")
            return await self._insert_change(tx, actor, item_id, values)

    async def _insert_change(self, tx: Transaction, actor: Actor, item_id: int | None, values: dict[str, Any]) -> CatalogueChange:
        try:
            change_id = await tx.insert(
                "INSERT INTO catalogue_changes (item_id, sku, kind, name, description, category, price_cents,"
                " duration_minutes, status, state, proposed_by, proposed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING id",
                (item_id, *(values[k] for k in _FIELDS), actor.user_id, to_iso(self.clock.now())),
            )
        except IntegrityError:
            raise Conflict(f"item code {values['sku']} already has a change awaiting approval",
                           code="catalogue.change_pending") from None  # fmt: skip
        change = await self._change(tx, change_id)
        await audit.record(tx, self.clock, actor, "catalogue_change", change_id, "propose", after=change)
        return change

    # -- reviewing ----------------------------------------------------------------------------------
    async def approve(self, actor: Actor, change_id: int, *, note: str = "") -> CatalogueItem:
        """Publish a pending change: the live item is created or replaced, its version goes up."""
        actor.require(access.CATALOGUE_APPROVE)
        note = common.text("note", note, max_length=500, required=False)
        async with self.db.transaction() as tx:
            change = await self._pending(tx, actor, change_id)
            now = to_iso(self.clock.now())
            values = [change.sku, change.kind.value, change.name, change.description, change.category,
                      change.price_cents, change.duration_minutes, change.status.value]  # fmt: skip
            if change.item_id is None:
                try:
                    item_id = await tx.insert(
                        "INSERT INTO catalogue_items (sku, kind, name, description, category, price_cents,"
                        " duration_minutes, status, version, created_at, updated_at, approved_by, approved_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id",
                        (*values, now, now, actor.user_id, now),
                    )
                except IntegrityError:
                    raise Conflict(f"item code {change.sku} is live already", code="catalogue.sku_taken") from None
                before = None
            else:
                item_id = change.item_id
                before = _item(await self._live_row(tx, item_id))
                await tx.execute(
                    "UPDATE catalogue_items SET name = ?, description = ?, category = ?, price_cents = ?,"
                    " duration_minutes = ?, status = ?, version = version + 1, updated_at = ?, approved_by = ?,"
                    " approved_at = ? WHERE id = ?",
                    (change.name, change.description, change.category, change.price_cents, change.duration_minutes,
                     change.status.value, now, actor.user_id, now, item_id),
                )  # fmt: skip
            await self._review(tx, change_id, ChangeState.APPROVED, actor, note, item_id)
            after = _item(await self._live_row(tx, item_id))
            await audit.record(tx, self.clock, actor, "catalogue_item", item_id, "approve", before=before, after=after)
        return after

    async def reject(self, actor: Actor, change_id: int, reason: str) -> CatalogueChange:
        """Turn a pending change down; the live item stays as it was."""
        actor.require(access.CATALOGUE_APPROVE)
        reason = common.text("reason", reason, max_length=500)
        async with self.db.transaction() as tx:
            before = await self._pending(tx, actor, change_id)
            await self._review(tx, change_id, ChangeState.REJECTED, actor, reason, before.item_id)
            after = await self._change(tx, change_id)
            await audit.record(tx, self.clock, actor, "catalogue_change", change_id, "reject", before=before, after=after)
        return after

    async def withdraw(self, actor: Actor, change_id: int) -> CatalogueChange:
        """The proposer (or an approver) takes a pending change back."""
        actor.require(access.CATALOGUE_WRITE)
        async with self.db.transaction() as tx:
            before = await self._change(tx, change_id)
            if before.state is not ChangeState.PENDING:
                raise InvalidTransition(f"change {change_id} is {before.state.value}", code="catalogue.not_pending")
            if before.proposed_by != actor.user_id and not actor.can(access.CATALOGUE_APPROVE):
                raise Forbidden("only the proposer withdraws a change", code="catalogue.not_proposer")
            await self._review(tx, change_id, ChangeState.WITHDRAWN, actor, "", before.item_id)
            after = await self._change(tx, change_id)
            await audit.record(tx, self.clock, actor, "catalogue_change", change_id, "withdraw", before=before, after=after)
        return after

    async def _pending(self, tx: Transaction, actor: Actor, change_id: int) -> CatalogueChange:
        change = await self._change(tx, change_id)
        if change.state is not ChangeState.PENDING:
            raise InvalidTransition(f"change {change_id} is {change.state.value}, not pending", code="catalogue.not_pending")
        if change.proposed_by is not None and change.proposed_by == actor.user_id:
            raise Forbidden("nobody approves their own catalogue change", code="catalogue.self_approval")
        return change

    async def _review(
        self, tx: Transaction, change_id: int, state: ChangeState, actor: Actor, note: str, item_id: int | None
    ) -> None:
        await tx.execute(
            "UPDATE catalogue_changes SET state = ?, reviewed_by = ?, reviewed_at = ?, review_note = ?, item_id = ?"
            " WHERE id = ?",
            (state.value, actor.user_id, to_iso(self.clock.now()), note or None, item_id, change_id),
        )

    # -- reading ------------------------------------------------------------------------------------
    async def items(
        self,
        *,
        kind: ItemKind | str | None = None,
        status: ItemStatus | str | None = ItemStatus.ACTIVE,
        category: str | None = None,
        offset: int = 0,
        limit: int = common.DEFAULT_PAGE_SIZE,
    ) -> common.Page[CatalogueItem]:
        """The live catalogue by name. Readable by everyone, like a price list on the wall."""
        offset, limit = common.page_bounds(offset, limit)
        where, params = ["1 = 1"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(common.enum_value("kind", ItemKind, kind).value)
        if status is not None:
            where.append("status = ?")
            params.append(common.enum_value("status", ItemStatus, status).value)
        if category is not None:
            where.append("category = ?")
            params.append(category)
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM catalogue_items WHERE {condition}", params)
            rows = await r.fetch_all(
                f"SELECT * FROM catalogue_items WHERE {condition} ORDER BY kind, name, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return common.Page([_item(r) for r in rows], int(total), offset, limit)

    async def get(self, item_id: int) -> CatalogueItem:
        async with self.db.reading() as r:
            return _item(await self._live_row(r, item_id))

    async def by_sku(self, sku: str) -> CatalogueItem:
        code = check_sku(sku)
        row = await self.db.fetch_one("SELECT * FROM catalogue_items WHERE sku = ?", (code,))
        if row is None:
            raise NotFound(f"no item with code {code}", code="catalogue_item.not_found")
        return _item(row)

    async def changes(
        self,
        actor: Actor,
        *,
        state: ChangeState | str | None = ChangeState.PENDING,
        item_id: int | None = None,
        offset: int = 0,
        limit: int = common.DEFAULT_PAGE_SIZE,
    ) -> common.Page[CatalogueChange]:
        """Proposals, oldest first (the approver's queue) — for those who propose or approve."""
        if not (actor.can(access.CATALOGUE_WRITE) or actor.can(access.CATALOGUE_APPROVE)):
            actor.require(access.CATALOGUE_APPROVE)
        offset, limit = common.page_bounds(offset, limit)
        where, params = ["1 = 1"], []
        if state is not None:
            where.append("state = ?")
            params.append(common.enum_value("state", ChangeState, state).value)
        if item_id is not None:
            where.append("item_id = ?")
            params.append(item_id)
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM catalogue_changes WHERE {condition}", params)
            rows = await r.fetch_all(
                f"SELECT * FROM catalogue_changes WHERE {condition} ORDER BY id LIMIT ? OFFSET ?", [*params, limit, offset]
            )
        return common.Page([_change(r) for r in rows], int(total), offset, limit)

    async def get_change(self, actor: Actor, change_id: int) -> CatalogueChange:
        if not (actor.can(access.CATALOGUE_WRITE) or actor.can(access.CATALOGUE_APPROVE)):
            actor.require(access.CATALOGUE_APPROVE)
        async with self.db.reading() as r:
            return await self._change(r, change_id)

    @staticmethod
    async def _live_row(tx: Transaction, item_id: int) -> dict[str, Any]:
        row = await tx.fetch_one("SELECT * FROM catalogue_items WHERE id = ?", (item_id,))
        if row is None:
            raise NotFound(f"catalogue item {item_id} does not exist", code="catalogue_item.not_found")
        return row

    @staticmethod
    async def _change(tx: Transaction, change_id: int) -> CatalogueChange:
        row = await tx.fetch_one("SELECT * FROM catalogue_changes WHERE id = ?", (change_id,))
        if row is None:
            raise NotFound(f"catalogue change {change_id} does not exist", code="catalogue_change.not_found")
        return _change(row)


async def sellable_item(tx: Transaction, item_id: int, *, field: str = "item_id", kind: ItemKind | None = None) -> CatalogueItem:
    """A live, active item (of `kind`, if given), or ValidationError naming `field`."""
    row = await tx.fetch_one("SELECT * FROM catalogue_items WHERE id = ?", (item_id,))
    if row is None:
        raise ValidationError(field, f"catalogue item {item_id} does not exist", code="catalogue_item.not_found")
    item = _item(row)
    if item.status is not ItemStatus.ACTIVE:
        raise ValidationError(field, f"{item.name} ({item.sku}) is not on sale", code="catalogue.inactive")
    if kind is not None and item.kind is not kind:
        raise ValidationError(field, f"{item.name} ({item.sku}) is not a {kind.value}", code="catalogue.wrong_kind")
    return item
