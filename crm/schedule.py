"""我的日程: each employee's own schedule — things to do at a time, with an optional reminder.

Items belong to one user and nobody else reads them (no permission needed, none grants more):
an agent notes "call Ms Yang back at 15:00 about the refund", the workspace shows today's items
and raises the reminder when it is due. A reminder is "due soon" from `REMIND_LEAD` before its
time until the item is done, so an agent who was on a call when it fell due still sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from crm import audit, common
from crm.access import Actor
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database, Transaction
from crm.errors import Forbidden, InvalidTransition, NotFound, ValidationError

#: How long before its time a reminder starts to show: enough to finish the call one is on.
REMIND_LEAD = timedelta(minutes=15)
MAX_TITLE = 200
MAX_NOTE = 2000
#: Items of one day shown at most; a day with more is a to-do list, not a schedule.
MAX_DAY_ITEMS = 200


@dataclass(frozen=True)
class ScheduleItem:
    id: int
    user_id: int
    title: str
    note: str
    starts_at: str
    remind_at: str | None
    member_id: int | None
    done_at: str | None
    created_at: str
    #: Not done and its reminder time is within REMIND_LEAD of now (or past).
    reminding: bool = False


def _item(row: dict[str, Any], now: datetime | None = None) -> ScheduleItem:
    reminding = bool(now is not None and row["done_at"] is None and row["remind_at"] is not None
                     and from_iso(row["remind_at"]) <= now + REMIND_LEAD)  # fmt: skip
    return ScheduleItem(row["id"], row["user_id"], row["title"], row["note"], row["starts_at"], row["remind_at"],
                        row["member_id"], row["done_at"], row["created_at"], reminding)  # fmt: skip


def _signed_in(actor: Actor) -> int:
    if actor.user_id is None:
        raise Forbidden("a schedule belongs to a signed-in user", code="auth.permission_denied")
    return actor.user_id


class ScheduleService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def add(
        self,
        actor: Actor,
        title: str,
        starts_at: datetime,
        *,
        remind_at: datetime | None = None,
        note: str = "",
        member_id: int | None = None,
    ) -> ScheduleItem:
        user_id = _signed_in(actor)
        title = common.text("title", title, max_length=MAX_TITLE)
        note = common.text("note", note, max_length=MAX_NOTE, required=False)
        for field, value in (("starts_at", starts_at), ("remind_at", remind_at)):
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValidationError(field, "must be a date and time with its zone", code="date.invalid")
        if remind_at is not None and remind_at > starts_at:
            raise ValidationError("remind_at", "a reminder comes before the item, not after", code="schedule.remind_after")
        async with self.db.transaction() as tx:
            if member_id is not None and not await tx.fetch_value("SELECT 1 FROM members WHERE id = ?", (member_id,)):
                raise ValidationError("member_id", f"member {member_id} does not exist", code="member.not_found")
            now = to_iso(self.clock.now())
            item_id = await tx.insert(
                "INSERT INTO schedule_items (user_id, title, note, starts_at, remind_at, member_id, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (user_id, title, note, to_iso(starts_at), to_iso(remind_at) if remind_at else None, member_id, now, now),
            )
            item = await self._own(tx, user_id, item_id)
            await audit.record(tx, self.clock, actor, "schedule_item", item_id, "create", after=item)
        return item

    async def mark_done(self, actor: Actor, item_id: int) -> ScheduleItem:
        user_id = _signed_in(actor)
        async with self.db.transaction() as tx:
            before = await self._own(tx, user_id, item_id)
            if before.done_at is not None:
                raise InvalidTransition(f"schedule item {item_id} is already done", code="schedule.already_done")
            now = to_iso(self.clock.now())
            await tx.execute("UPDATE schedule_items SET done_at = ?, updated_at = ? WHERE id = ?", (now, now, item_id))
            after = await self._own(tx, user_id, item_id)
            await audit.record(tx, self.clock, actor, "schedule_item", item_id, "done", before=before, after=after)
        return after

    async def delete(self, actor: Actor, item_id: int) -> None:
        user_id = _signed_in(actor)
        async with self.db.transaction() as tx:
            before = await self._own(tx, user_id, item_id)
            await tx.execute("DELETE FROM schedule_items WHERE id = ?", (item_id,))
            await audit.record(tx, self.clock, actor, "schedule_item", item_id, "delete", before=before)

    async def day(self, actor: Actor, day: date | None = None) -> list[ScheduleItem]:
        """The items of a calendar day at the site (today by default), plus earlier items not yet
        done: yesterday's unfinished call-back is still today's work."""
        user_id = _signed_in(actor)
        day = day or self.clock.today()
        start, end = self.clock.day_bounds(day)
        rows = await self.db.fetch_all(
            "SELECT * FROM schedule_items WHERE user_id = ? AND starts_at < ? AND (starts_at >= ? OR done_at IS NULL)"
            " ORDER BY starts_at, id LIMIT ?",
            (user_id, to_iso(end), to_iso(start), MAX_DAY_ITEMS),
        )
        now = self.clock.now()
        return [_item(row, now) for row in rows]

    async def upcoming(self, actor: Actor, *, days: int = 7) -> list[ScheduleItem]:
        """Items not done from today up to `days` ahead (the week at a glance)."""
        user_id = _signed_in(actor)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise ValidationError("days", "must be 1 to 366")
        start, _ = self.clock.day_bounds(self.clock.today())
        rows = await self.db.fetch_all(
            "SELECT * FROM schedule_items WHERE user_id = ? AND done_at IS NULL AND starts_at >= ? AND starts_at < ?"
            " ORDER BY starts_at, id LIMIT ?",
            (user_id, to_iso(start), to_iso(start + timedelta(days=days)), MAX_DAY_ITEMS),
        )
        now = self.clock.now()
        return [_item(row, now) for row in rows]

    async def reminders(self, actor: Actor) -> list[ScheduleItem]:
        """Items whose reminder is due now or within REMIND_LEAD, not done yet."""
        user_id = _signed_in(actor)
        now = self.clock.now()
        rows = await self.db.fetch_all(
            "SELECT * FROM schedule_items WHERE user_id = ? AND done_at IS NULL AND remind_at IS NOT NULL"
            " AND remind_at <= ? ORDER BY remind_at, id LIMIT ?",
            (user_id, to_iso(now + REMIND_LEAD), MAX_DAY_ITEMS),
        )
        return [_item(row, now) for row in rows]

    @staticmethod
    async def _own(tx: Transaction, user_id: int, item_id: int) -> ScheduleItem:
        row = await tx.fetch_one("SELECT * FROM schedule_items WHERE id = ?", (item_id,))
        # Someone else's item is reported as missing: its existence is nobody else's business.
        if row is None or row["user_id"] != user_id:
            raise NotFound(f"schedule item {item_id} does not exist", code="schedule.not_found")
        return _item(row)
