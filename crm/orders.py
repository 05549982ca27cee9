"""服务购买: what a member buys — services and products from the live catalogue, in CNY cents.

    pending ──pay──▶ paid ──complete──▶ completed
       │               │
       └──cancel──▶ cancelled      paid ──cancel──▶ refunded

Prices are copied from the live catalogue when the order is made (the price of the day), so a
later price change never rewrites an order. A paid service is delivered by an expert at an
appointment that points at the order (这里的服务要关联相关的服务单); delivering it completes the
order, and a completed order gets a return visit (回访) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from crm import access, audit, common, scopes, visits
from crm.access import Actor
from crm.catalogue import ItemKind, sellable_item
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import InvalidTransition, NotFound, ValidationError

MAX_LINES = 50
MAX_QUANTITY = 1000


class OrderStatus(StrEnum):
    PENDING = "pending"  # 待付款
    PAID = "paid"  # 已付款
    COMPLETED = "completed"  # 已完成 (service delivered)
    CANCELLED = "cancelled"  # 已取消
    REFUNDED = "refunded"  # 已退款


class PaymentMethod(StrEnum):
    CASH = "cash"
    CARD = "card"  # 银行卡
    WECHAT = "wechat"  # 微信支付
    ALIPAY = "alipay"  # 支付宝
    STORED_VALUE = "stored_value"  # 储值卡


_TRANSITIONS: dict[tuple[OrderStatus, str], OrderStatus] = {
    (OrderStatus.PENDING, "pay"): OrderStatus.PAID,
    (OrderStatus.PAID, "complete"): OrderStatus.COMPLETED,
    (OrderStatus.PENDING, "cancel"): OrderStatus.CANCELLED,
    (OrderStatus.PAID, "cancel"): OrderStatus.REFUNDED,
}


def next_status(current: OrderStatus, action: str) -> OrderStatus:
    target = _TRANSITIONS.get((current, action))
    if target is None:
        raise InvalidTransition(f"cannot {action} an order that is {current.value}", code="order.invalid_transition")
    return target


@dataclass(frozen=True)
class OrderLine:
    """Input: `quantity` of catalogue item `item_id`."""

    item_id: int
    quantity: int = 1


@dataclass(frozen=True)
class OrderItem:
    item_id: int
    sku: str
    name: str
    kind: ItemKind
    unit_price_cents: int
    quantity: int
    amount_cents: int


@dataclass(frozen=True)
class Order:
    id: int
    member_id: int
    status: OrderStatus
    total_cents: int
    payment_method: PaymentMethod | None
    appointment_id: int | None
    note: str
    cancel_reason: str | None
    created_by: int | None
    created_at: str
    updated_at: str
    paid_at: str | None
    completed_at: str | None
    cancelled_at: str | None
    items: tuple[OrderItem, ...]


@dataclass(frozen=True)
class OrderQuery:
    member_id: int | None = None
    status: OrderStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


class OrderService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def create(
        self,
        actor: Actor,
        *,
        member_id: int,
        lines: Sequence[OrderLine | tuple[int, int]],
        appointment_id: int | None = None,
        note: str = "",
    ) -> Order:
        """A pending order at today's catalogue prices; `appointment_id` is the consultation where it was sold."""
        actor.require(access.ORDER_WRITE)
        note = common.text("note", note, max_length=500, required=False)
        wanted = self._lines(lines)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            if appointment_id is not None:
                booked_for = await tx.fetch_value("SELECT member_id FROM appointments WHERE id = ?", (appointment_id,))
                if booked_for != member_id:
                    raise ValidationError("appointment_id", f"appointment {appointment_id} is not this member's",
                                          code="appointment.not_found")  # fmt: skip
            priced = []
            for index, line in enumerate(wanted):
                item = await sellable_item(tx, line.item_id, field=f"lines[{index}].item_id")
                priced.append((item, line.quantity, item.price_cents * line.quantity))
            now = to_iso(self.clock.now())
            order_id = await tx.insert(
                "INSERT INTO orders (member_id, status, total_cents, appointment_id, note, created_by, created_at,"
                " updated_at) VALUES (?, 'pending', ?, ?, ?, ?, ?, ?) RETURNING id",
                (member_id, sum(p[2] for p in priced), appointment_id, note, actor.user_id, now, now),
            )
            await tx.execute_many(
                "INSERT INTO order_items (order_id, item_id, sku, name, kind, unit_price_cents, quantity, amount_cents)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(order_id, i.id, i.sku, i.name, i.kind.value, i.price_cents, q, amount) for i, q, amount in priced],
            )
            order = await self._order(tx, order_id)
            await audit.record(tx, self.clock, actor, "order", order_id, "create", after=order)
        return order

    async def pay(self, actor: Actor, order_id: int, *, method: PaymentMethod | str, amount_cents: int) -> Order:
        """Record payment in full (the amount must match the total: a mismatch is a cashier's slip)."""
        actor.require(access.ORDER_WRITE)
        payment = common.enum_value("method", PaymentMethod, method)
        amount = common.positive_int("amount_cents", amount_cents, allow_zero=True)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, order_id)
            status = next_status(before.status, "pay")
            if amount != before.total_cents:
                raise ValidationError("amount_cents", f"the order totals {before.total_cents} cents, not {amount}",
                                      code="order.amount_mismatch")  # fmt: skip
            now = to_iso(self.clock.now())
            await tx.execute("UPDATE orders SET status = ?, payment_method = ?, paid_at = ?, updated_at = ? WHERE id = ?",
                             (status.value, payment.value, now, now, order_id))  # fmt: skip
            return await self._finish(tx, actor, before, "pay")

    async def complete(self, actor: Actor, order_id: int) -> Order:
        """The service was delivered; the member gets a return visit."""
        actor.require(access.ORDER_WRITE)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, order_id)
            return await self.complete_in(tx, actor, before, staff_id=before.created_by)

    async def complete_in(self, tx: Transaction, actor: Actor, before: Order, *, staff_id: int | None) -> Order:
        """Complete inside the caller's transaction (an appointment delivering the order).
        `staff_id` is whose service the return visit asks about."""
        status = next_status(before.status, "complete")
        now = to_iso(self.clock.now())
        await tx.execute("UPDATE orders SET status = ?, completed_at = ?, updated_at = ? WHERE id = ?",
                         (status.value, now, now, before.id))  # fmt: skip
        await visits.create_followup(tx, self.clock, member_id=before.member_id, order_id=before.id, staff_id=staff_id)
        return await self._finish(tx, actor, before, "complete")

    async def cancel(self, actor: Actor, order_id: int, reason: str) -> Order:
        """Cancel a pending order, or refund a paid one (退款)."""
        actor.require(access.ORDER_WRITE)
        reason = common.text("reason", reason, max_length=500)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, order_id)
            status = next_status(before.status, "cancel")
            now = to_iso(self.clock.now())
            await tx.execute("UPDATE orders SET status = ?, cancel_reason = ?, cancelled_at = ?, updated_at = ? WHERE id = ?",
                             (status.value, reason, now, now, order_id))  # fmt: skip
            return await self._finish(tx, actor, before, "cancel" if status is OrderStatus.CANCELLED else "refund")

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, order_id: int) -> Order:
        actor.require(access.ORDER_READ)
        async with self.db.reading() as r:
            return await self._visible(r, actor, order_id)

    async def search(
        self, actor: Actor, query: OrderQuery | None = None, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[Order]:
        """Newest first; only orders of members the actor may see."""
        actor.require(access.ORDER_READ)
        offset, limit = common.page_bounds(offset, limit)
        query = query or OrderQuery()
        scope_sql, params = scopes.member_condition(actor, "m")
        where = [scope_sql]
        if query.member_id is not None:
            where.append("o.member_id = ?")
            params.append(query.member_id)
        if query.status is not None:
            where.append("o.status = ?")
            params.append(common.enum_value("status", OrderStatus, query.status).value)
        if query.created_from is not None:
            where.append("o.created_at >= ?")
            params.append(to_iso(query.created_from))
        if query.created_to is not None:
            where.append("o.created_at < ?")
            params.append(to_iso(query.created_to))
        condition = " AND ".join(where)
        base = f"FROM orders o JOIN members m ON m.id = o.member_id WHERE {condition}"
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) {base}", params)
            rows = await r.fetch_all(f"SELECT o.id {base} ORDER BY o.created_at DESC, o.id DESC LIMIT ? OFFSET ?",
                                     [*params, limit, offset])  # fmt: skip
            orders = [await self._order(r, row["id"]) for row in rows]
        return common.Page(orders, int(total), offset, limit)

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _lines(lines: Sequence[OrderLine | tuple[int, int]]) -> list[OrderLine]:
        if isinstance(lines, str) or not isinstance(lines, Sequence) or not lines:
            raise ValidationError("lines", "at least one line (item and quantity) is required", code="field.required")
        if len(lines) > MAX_LINES:
            raise ValidationError("lines", f"at most {MAX_LINES} lines")
        out: dict[int, int] = {}
        for index, line in enumerate(lines):
            item_id, quantity = (line.item_id, line.quantity) if isinstance(line, OrderLine) else line
            common.positive_int(f"lines[{index}].item_id", item_id)
            common.positive_int(f"lines[{index}].quantity", quantity)
            out[item_id] = out.get(item_id, 0) + quantity
            if out[item_id] > MAX_QUANTITY:
                raise ValidationError(f"lines[{index}].quantity", f"at most {MAX_QUANTITY} of one item")
        return [OrderLine(i, q) for i, q in out.items()]

    async def visible(self, tx: Transaction, actor: Actor, order_id: int) -> Order:
        return await self._visible(tx, actor, order_id)

    async def _visible(self, tx: Transaction, actor: Actor, order_id: int) -> Order:
        member_id = await tx.fetch_value("SELECT member_id FROM orders WHERE id = ?", (order_id,))
        if member_id is None:
            raise NotFound(f"order {order_id} does not exist", code="order.not_found")
        await scopes.require_member(tx, actor, member_id)
        return await self._order(tx, order_id)

    async def _finish(self, tx: Transaction, actor: Actor, before: Order, action: str) -> Order:
        after = await self._order(tx, before.id)
        await audit.record(tx, self.clock, actor, "order", before.id, action, before=before, after=after)
        return after

    @staticmethod
    async def load(tx: Transaction, order_id: int) -> Order:
        """The order without a scope check (for a service that already checked its own record)."""
        return await OrderService._order(tx, order_id)

    @staticmethod
    async def _order(tx: Transaction, order_id: int) -> Order:
        row = await tx.fetch_one("SELECT * FROM orders WHERE id = ?", (order_id,))
        if row is None:
            raise NotFound(f"order {order_id} does not exist", code="order.not_found")
        items = await tx.fetch_all("SELECT * FROM order_items WHERE order_id = ? ORDER BY id", (order_id,))
        return _from_row(row, items)


def _from_row(row: dict[str, Any], items: list[dict[str, Any]]) -> Order:
    return Order(
        id=row["id"], member_id=row["member_id"], status=OrderStatus(row["status"]), total_cents=row["total_cents"],
        payment_method=PaymentMethod(row["payment_method"]) if row["payment_method"] else None,
        appointment_id=row["appointment_id"], note=row["note"], cancel_reason=row["cancel_reason"],
        created_by=row["created_by"], created_at=row["created_at"], updated_at=row["updated_at"],
        paid_at=row["paid_at"], completed_at=row["completed_at"], cancelled_at=row["cancelled_at"],
        items=tuple(
            OrderItem(i["item_id"], i["sku"], i["name"], ItemKind(i["kind"]), i["unit_price_cents"], i["quantity"],
                      i["amount_cents"])
            for i in items
        ),
    )  # fmt: skip
