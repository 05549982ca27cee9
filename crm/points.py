"""积分: the member points ledger.

The ledger is append-only: earning adds a positive entry, spending a negative one, an adjustment
either. The member row keeps the balance, changed by the same transaction that appends the entry
(with a guarded UPDATE, so the balance cannot go below zero unless an adjustment explicitly
allows it); each entry also records the balance after it, so a statement can be printed without
summing. `reconcile` checks that stored balances equal the ledger sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database
from crm.errors import Conflict, ValidationError

#: One entry's size limit: catches a mistyped amount (an order number pasted into the points
#: field) before it reaches a member's balance.
MAX_ENTRY_POINTS = 10_000_000


class EntryKind(StrEnum):
    EARN = "earn"
    SPEND = "spend"
    ADJUST = "adjust"


@dataclass(frozen=True)
class PointsEntry:
    id: int
    member_id: int
    kind: EntryKind
    #: Signed: positive adds to the balance.
    amount: int
    balance_after: int
    reason: str
    reference: str | None
    created_by: int | None
    created_at: str


@dataclass(frozen=True)
class BalanceMismatch:
    member_id: int
    stored: int
    ledger: int


def _entry(row: dict[str, Any]) -> PointsEntry:
    return PointsEntry(
        id=row["id"], member_id=row["member_id"], kind=EntryKind(row["kind"]), amount=row["amount"],
        balance_after=row["balance_after"], reason=row["reason"], reference=row["reference"],
        created_by=row["created_by"], created_at=row["created_at"],
    )  # fmt: skip


class PointsService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def earn(self, actor: Actor, member_id: int, points: int, reason: str, *, reference: str | None = None) -> PointsEntry:
        """Credit `points` (> 0), e.g. for a purchase or a birthday gift."""
        actor.require(access.POINTS_WRITE)
        points = common.positive_int("points", points)
        return await self._append(actor, member_id, EntryKind.EARN, points, reason, reference, allow_negative=False)

    async def spend(self, actor: Actor, member_id: int, points: int, reason: str, *, reference: str | None = None) -> PointsEntry:
        """Debit `points` (> 0); Conflict when the balance does not cover it."""
        actor.require(access.POINTS_WRITE)
        points = common.positive_int("points", points)
        return await self._append(actor, member_id, EntryKind.SPEND, -points, reason, reference, allow_negative=False)

    async def adjust(
        self,
        actor: Actor,
        member_id: int,
        delta: int,
        reason: str,
        *,
        reference: str | None = None,
        allow_negative: bool = False,
    ) -> PointsEntry:
        """A manual correction either way. Taking the balance below zero (e.g. clawing back points
        of a refunded order already spent) needs `allow_negative=True`."""
        actor.require(access.POINTS_ADJUST)
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise ValidationError("delta", "must be a non-zero integer")
        return await self._append(actor, member_id, EntryKind.ADJUST, delta, reason, reference, allow_negative=allow_negative)

    async def _append(
        self,
        actor: Actor,
        member_id: int,
        kind: EntryKind,
        amount: int,
        reason: str,
        reference: str | None,
        *,
        allow_negative: bool,
    ) -> PointsEntry:
        if abs(amount) > MAX_ENTRY_POINTS:
            raise ValidationError("points", f"one entry is limited to {MAX_ENTRY_POINTS} points", code="points.too_large")
        reason = common.text("reason", reason, max_length=200)
        reference = common.optional_text("reference", reference, max_length=64)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            # The guard sits in the UPDATE itself: correct even if someone ever runs this
            # without our lock (another process on the file, a PostgreSQL backend).
            balance = await tx.fetch_value(
                "UPDATE members SET points_balance = points_balance + ?"
                " WHERE id = ? AND (points_balance + ? >= 0 OR ? = 1) RETURNING points_balance",
                (amount, member_id, amount, 1 if allow_negative else 0),
            )
            if balance is None:
                current = await tx.fetch_value("SELECT points_balance FROM members WHERE id = ?", (member_id,))
                raise Conflict(f"balance {current} does not cover {-amount} points", code="points.insufficient")
            now = to_iso(self.clock.now())
            entry_id = await tx.insert(
                "INSERT INTO points_entries (member_id, kind, amount, balance_after, reason, reference, created_by,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (member_id, kind.value, amount, balance, reason, reference, actor.user_id, now),
            )
            entry = PointsEntry(entry_id, member_id, kind, amount, balance, reason, reference, actor.user_id, now)
            await audit.record(tx, self.clock, actor, "points_entry", entry_id, kind.value, after=entry)
        return entry

    async def balance(self, actor: Actor, member_id: int) -> int:
        actor.require(access.MEMBER_READ)
        async with self.db.reading() as r:
            row = await scopes.require_member(r, actor, member_id)
        return int(row["points_balance"])

    async def ledger(
        self, actor: Actor, member_id: int, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[PointsEntry]:
        """The member's entries, newest first (积分明细)."""
        actor.require(access.MEMBER_READ)
        offset, limit = common.page_bounds(offset, limit)
        async with self.db.reading() as r:
            await scopes.require_member(r, actor, member_id)
            total = await r.fetch_value("SELECT COUNT(*) FROM points_entries WHERE member_id = ?", (member_id,))
            rows = await r.fetch_all(
                "SELECT * FROM points_entries WHERE member_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                (member_id, limit, offset),
            )
        return common.Page([_entry(row) for row in rows], int(total), offset, limit)

    async def reconcile(self, actor: Actor, member_ids: list[int] | None = None) -> list[BalanceMismatch]:
        """Members whose stored balance differs from their ledger sum (should be none)."""
        actor.require(access.POINTS_ADJUST)
        sql = (
            "SELECT m.id, m.points_balance, COALESCE(s.total, 0) AS ledger FROM members m"
            " LEFT JOIN (SELECT member_id, SUM(amount) AS total FROM points_entries GROUP BY member_id) s"
            " ON s.member_id = m.id WHERE m.points_balance <> COALESCE(s.total, 0)"
        )
        params: list[Any] = []
        if member_ids is not None:
            if not member_ids:
                return []
            sql += f" AND m.id IN ({', '.join('?' for _ in member_ids)})"
            params = list(member_ids)
        rows = await self.db.fetch_all(sql + " ORDER BY m.id", params)
        return [BalanceMismatch(r["id"], r["points_balance"], r["ledger"]) for r in rows]
