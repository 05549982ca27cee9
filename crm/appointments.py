"""电话预约 / 专家咨询: appointments of members with experts, free slots, and what the expert
records at the consultation.

    booked ──complete──▶ completed      booked ──cancel──▶ cancelled      booked ──no_show──▶ no_show
       └── reschedule (stays booked, at another time or with another expert)

No double booking: an expert's booked time is stored as one `appointment_slots` row per 5-minute
granule with the expert and granule as primary key. The service checks for an overlap first (to
name the clashing appointment in the error) and the key refuses whatever slips past the check —
a second node, a script, a race — so two bookings of one expert can never both commit. A member
cannot be in two appointments at once either (checked). Bookings must lie in the expert's
working hours (`crm.availability`), on the 5-minute grid, in the future, for a service the expert
performs. An appointment may deliver a paid service order (服务购买 → 服务单): completing the
appointment completes the order, which schedules the return visit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.availability import GRANULE_MINUTES, fits, free_starts, subtract, working_intervals
from crm.catalogue import ItemKind, sellable_item
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database, IntegrityError, Transaction
from crm.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError
from crm.experts import ExpertService
from crm.orders import OrderService, OrderStatus

MAX_TEXT = 4000
MAX_RECOMMENDATIONS = 20
#: How far ahead one may book; further is a typo in the year.
MAX_DAYS_AHEAD = 366


class AppointmentStatus(StrEnum):
    BOOKED = "booked"  # 已预约
    COMPLETED = "completed"  # 已到店/已完成
    CANCELLED = "cancelled"  # 已取消
    NO_SHOW = "no_show"  # 爽约


@dataclass(frozen=True)
class Recommendation:
    item_id: int
    note: str


@dataclass(frozen=True)
class Appointment:
    id: int
    member_id: int
    expert_id: int
    item_id: int
    starts_at: str
    ends_at: str
    status: AppointmentStatus
    order_id: int | None
    channel: str | None
    note: str
    consultation_notes: str | None
    customer_needs: str | None
    reschedule_count: int
    cancel_reason: str | None
    created_by: int | None
    created_at: str
    updated_at: str
    completed_at: str | None
    cancelled_at: str | None
    recommendations: tuple[Recommendation, ...]


@dataclass(frozen=True)
class Slot:
    expert_id: int
    starts_at: str
    ends_at: str


@dataclass(frozen=True)
class AppointmentQuery:
    expert_id: int | None = None
    member_id: int | None = None
    status: AppointmentStatus | None = None
    starts_from: datetime | None = None
    starts_to: datetime | None = None


def appointment_condition(actor: Actor, alias: str = "a") -> tuple[str, list[object]]:
    """An appointment is visible to its expert, and to whoever may see its member."""
    member_sql, params = scopes.member_condition(actor, "m")
    if actor.user_id is None:
        return member_sql, params
    return (f"({alias}.expert_id = ? OR {alias}.member_id IN (SELECT m.id FROM members m WHERE {member_sql}))",
            [actor.user_id, *params])  # fmt: skip


def granules(start: datetime, end: datetime) -> list[str]:
    out, at = [], start
    while at < end:
        out.append(to_iso(at))
        at += timedelta(minutes=GRANULE_MINUTES)
    return out


class AppointmentService:
    def __init__(self, db: Database, clock: Clock, orders: OrderService) -> None:
        self.db = db
        self.clock = clock
        self.orders = orders

    # -- booking ------------------------------------------------------------------------------------
    async def book(
        self,
        actor: Actor,
        *,
        member_id: int,
        expert_id: int,
        item_id: int,
        starts_at: datetime,
        note: str = "",
        channel: str | None = None,
        order_id: int | None = None,
    ) -> Appointment:
        """Book `item_id` (a service) with the expert. Conflict if the expert or the member is busy."""
        actor.require(access.APPOINTMENT_WRITE)
        note = common.text("note", note, max_length=MAX_TEXT, required=False)
        channel = common.optional_text("channel", channel, max_length=32)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            item = await sellable_item(tx, item_id, kind=ItemKind.SERVICE)
            assert item.duration_minutes is not None
            end = starts_at + timedelta(minutes=item.duration_minutes)
            await self._check_time(tx, expert_id, item_id, member_id, starts_at, end, exclude_id=None)
            if order_id is not None:
                await self._check_order(tx, actor, order_id, member_id, item_id)
            now = to_iso(self.clock.now())
            appointment_id = await tx.insert(
                "INSERT INTO appointments (member_id, expert_id, item_id, starts_at, ends_at, status, order_id, channel,"
                " note, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'booked', ?, ?, ?, ?, ?, ?) RETURNING id",
                (member_id, expert_id, item_id, to_iso(starts_at), to_iso(end), order_id, channel, note, actor.user_id,
                 now, now),
            )  # fmt: skip
            await self._hold(tx, appointment_id, expert_id, starts_at, end)
            booked = await self._appointment(tx, appointment_id)
            await audit.record(tx, self.clock, actor, "appointment", appointment_id, "book", after=booked)
        return booked

    async def reschedule(
        self, actor: Actor, appointment_id: int, *, starts_at: datetime, expert_id: int | None = None, note: str = ""
    ) -> Appointment:
        """Move a booked appointment (改约), optionally to another expert; same checks as booking."""
        actor.require(access.APPOINTMENT_WRITE)
        note = common.text("note", note, max_length=MAX_TEXT, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, appointment_id)
            self._require_booked(before, "reschedule")
            expert = expert_id if expert_id is not None else before.expert_id
            duration = from_iso(before.ends_at) - from_iso(before.starts_at)
            end = starts_at + duration
            await tx.execute("DELETE FROM appointment_slots WHERE appointment_id = ?", (appointment_id,))
            await self._check_time(tx, expert, before.item_id, before.member_id, starts_at, end, exclude_id=appointment_id)
            await tx.execute(
                "UPDATE appointments SET expert_id = ?, starts_at = ?, ends_at = ?, reschedule_count = reschedule_count + 1,"
                " note = CASE WHEN ? = '' THEN note ELSE ? END, updated_at = ? WHERE id = ?",
                (expert, to_iso(starts_at), to_iso(end), note, note, to_iso(self.clock.now()), appointment_id),
            )
            await self._hold(tx, appointment_id, expert, starts_at, end)
            return await self._finish(tx, actor, before, "reschedule")

    async def cancel(self, actor: Actor, appointment_id: int, reason: str) -> Appointment:
        actor.require(access.APPOINTMENT_WRITE)
        reason = common.text("reason", reason, max_length=MAX_TEXT)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, appointment_id)
            self._require_booked(before, "cancel")
            now = to_iso(self.clock.now())
            await tx.execute(
                "UPDATE appointments SET status = 'cancelled', cancel_reason = ?, cancelled_at = ?, updated_at = ? WHERE id = ?",
                (reason, now, now, appointment_id),
            )
            await tx.execute("DELETE FROM appointment_slots WHERE appointment_id = ?", (appointment_id,))
            return await self._finish(tx, actor, before, "cancel")

    async def mark_no_show(self, actor: Actor, appointment_id: int) -> Appointment:
        """爽约: only once the appointment has started. The slot stays held (the time is gone)."""
        actor.require(access.APPOINTMENT_WRITE)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, appointment_id)
            self._require_booked(before, "mark as no-show")
            if self.clock.now() < from_iso(before.starts_at):
                raise InvalidTransition("the appointment has not started yet", code="appointment.not_started")
            await tx.execute("UPDATE appointments SET status = 'no_show', updated_at = ? WHERE id = ?",
                             (to_iso(self.clock.now()), appointment_id))  # fmt: skip
            return await self._finish(tx, actor, before, "no_show")

    # -- 专家咨询 --------------------------------------------------------------------------------
    async def record_consultation(
        self,
        actor: Actor,
        appointment_id: int,
        *,
        notes: str,
        customer_needs: str = "",
        recommendations: Sequence[Recommendation | tuple[int, str]] = (),
    ) -> Appointment:
        """The expert's notes, the member's wishes and the recommended services (replacing earlier ones)."""
        actor.require(access.APPOINTMENT_CONSULT)
        notes = common.text("notes", notes, max_length=MAX_TEXT)
        needs = common.text("customer_needs", customer_needs, max_length=MAX_TEXT, required=False)
        if isinstance(recommendations, str) or len(recommendations) > MAX_RECOMMENDATIONS:
            raise ValidationError("recommendations", f"a list of at most {MAX_RECOMMENDATIONS} services")
        wanted: dict[int, str] = {}
        for index, rec in enumerate(recommendations):
            item_id, note = (rec.item_id, rec.note) if isinstance(rec, Recommendation) else rec
            common.positive_int(f"recommendations[{index}].item_id", item_id)
            wanted[item_id] = common.text(f"recommendations[{index}].note", note, max_length=500, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, appointment_id)
            self._check_expert(actor, before)
            if before.status in (AppointmentStatus.CANCELLED, AppointmentStatus.NO_SHOW):
                raise InvalidTransition(f"the appointment was {before.status.value}", code="appointment.invalid_transition")
            for index, item_id in enumerate(wanted):
                await sellable_item(tx, item_id, field=f"recommendations[{index}].item_id")
            now = to_iso(self.clock.now())
            await tx.execute("UPDATE appointments SET consultation_notes = ?, customer_needs = ?, updated_at = ? WHERE id = ?",
                             (notes, needs or None, now, appointment_id))  # fmt: skip
            await tx.execute("DELETE FROM appointment_recommendations WHERE appointment_id = ?", (appointment_id,))
            await tx.execute_many(
                "INSERT INTO appointment_recommendations (appointment_id, item_id, note, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(appointment_id, item_id, note, actor.user_id, now) for item_id, note in wanted.items()],
            )
            return await self._finish(tx, actor, before, "consultation")

    async def complete(self, actor: Actor, appointment_id: int) -> Appointment:
        """The member came and was served; a paid order the appointment delivers is completed too."""
        actor.require(access.APPOINTMENT_CONSULT)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, appointment_id)
            self._check_expert(actor, before)
            self._require_booked(before, "complete")
            if self.clock.now() < from_iso(before.starts_at):
                raise InvalidTransition("the appointment has not started yet", code="appointment.not_started")
            now = to_iso(self.clock.now())
            await tx.execute("UPDATE appointments SET status = 'completed', completed_at = ?, updated_at = ? WHERE id = ?",
                             (now, now, appointment_id))  # fmt: skip
            if before.order_id is not None:
                # The booking linked the order; the expert need not see the member's other records.
                order = await OrderService.load(tx, before.order_id)
                if order.status is OrderStatus.PAID:
                    await self.orders.complete_in(tx, actor, order, staff_id=before.expert_id)
            return await self._finish(tx, actor, before, "complete")

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, appointment_id: int) -> Appointment:
        actor.require(access.APPOINTMENT_READ)
        async with self.db.reading() as r:
            return await self._visible(r, actor, appointment_id)

    async def search(
        self, actor: Actor, query: AppointmentQuery | None = None, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[Appointment]:
        """By start time, earliest first (the day's list of an expert or a store)."""
        actor.require(access.APPOINTMENT_READ)
        offset, limit = common.page_bounds(offset, limit)
        query = query or AppointmentQuery()
        scope_sql, params = appointment_condition(actor, "a")
        where = [scope_sql]
        for column, value in (("a.expert_id", query.expert_id), ("a.member_id", query.member_id),
                              ("a.status", query.status and AppointmentStatus(query.status).value)):  # fmt: skip
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.starts_from is not None:
            where.append("a.starts_at >= ?")
            params.append(to_iso(query.starts_from))
        if query.starts_to is not None:
            where.append("a.starts_at < ?")
            params.append(to_iso(query.starts_to))
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM appointments a WHERE {condition}", params)
            rows = await r.fetch_all(f"SELECT a.id FROM appointments a WHERE {condition} ORDER BY a.starts_at, a.id"
                                     " LIMIT ? OFFSET ?", [*params, limit, offset])  # fmt: skip
            items = [await self._appointment(r, row["id"]) for row in rows]
        return common.Page(items, int(total), offset, limit)

    async def free_slots(self, actor: Actor, expert_id: int, day: date, item_id: int) -> list[Slot]:
        """Start times on `day` (site calendar) when the expert can take `item_id`, from now on."""
        actor.require(access.APPOINTMENT_READ)
        async with self.db.reading() as r:
            item = await sellable_item(r, item_id, kind=ItemKind.SERVICE)
            assert item.duration_minutes is not None
            await self._performs(r, expert_id, item_id)
            free = await self._free(r, expert_id, day, exclude_id=None)
        duration = timedelta(minutes=item.duration_minutes)
        starts = free_starts(free, duration, day=day, tz=self.clock.tz, not_before=self.clock.now())
        return [Slot(expert_id, to_iso(s), to_iso(s + duration)) for s in starts]

    # -- helpers ------------------------------------------------------------------------------------
    async def _free(self, tx: Transaction, expert_id: int, day: date, *, exclude_id: int | None) -> list[tuple[datetime, datetime]]:
        hours, exceptions = await ExpertService.calendar(tx, expert_id, day)
        working = working_intervals(day, self.clock.tz, hours, exceptions)
        if not working:
            return []
        lo, hi = to_iso(working[0][0]), to_iso(working[-1][1])
        busy = await tx.fetch_all(
            "SELECT starts_at, ends_at FROM appointments WHERE expert_id = ? AND id <> ? AND status <> 'cancelled'"
            " AND starts_at < ? AND ends_at > ?",
            (expert_id, exclude_id or 0, hi, lo),
        )
        return subtract(working, [(from_iso(b["starts_at"]), from_iso(b["ends_at"])) for b in busy])

    async def _check_time(
        self, tx: Transaction, expert_id: int, item_id: int, member_id: int, start: datetime, end: datetime,
        *, exclude_id: int | None,
    ) -> None:  # fmt: skip
        if start.tzinfo is None:
            raise ValidationError("starts_at", "needs a time zone offset", code="date.naive")
        now = self.clock.now()
        if start < now:
            raise ValidationError("starts_at", "is in the past", code="date.in_past")
        if start > now + timedelta(days=MAX_DAYS_AHEAD):
            raise ValidationError("starts_at", f"is more than {MAX_DAYS_AHEAD} days ahead", code="date.out_of_range")
        if start.second or start.microsecond or start.minute % GRANULE_MINUTES:
            raise ValidationError("starts_at", f"must fall on a {GRANULE_MINUTES}-minute mark", code="time.off_grid")
        await self._performs(tx, expert_id, item_id)
        clash = await tx.fetch_one(
            "SELECT id, starts_at FROM appointments WHERE expert_id = ? AND id <> ? AND status <> 'cancelled'"
            " AND starts_at < ? AND ends_at > ? ORDER BY starts_at LIMIT 1",
            (expert_id, exclude_id or 0, to_iso(end), to_iso(start)),
        )
        if clash is not None:
            raise Conflict(f"the expert is booked then (appointment {clash['id']} at {clash['starts_at']})",
                           code="appointment.expert_busy")  # fmt: skip
        busy_member = await tx.fetch_value(
            "SELECT id FROM appointments WHERE member_id = ? AND id <> ? AND status = 'booked'"
            " AND starts_at < ? AND ends_at > ? LIMIT 1",
            (member_id, exclude_id or 0, to_iso(end), to_iso(start)),
        )
        if busy_member is not None:
            raise Conflict(f"the member has appointment {busy_member} then", code="appointment.member_busy")
        day = start.astimezone(self.clock.tz).date()
        hours, exceptions = await ExpertService.calendar(tx, expert_id, day)
        if not fits(working_intervals(day, self.clock.tz, hours, exceptions), start, end):
            raise ValidationError("starts_at", "outside the expert's working hours", code="appointment.outside_hours")

    @staticmethod
    async def _performs(tx: Transaction, expert_id: int, item_id: int) -> None:
        row = await tx.fetch_one(
            "SELECT e.active, u.active AS user_active, (SELECT 1 FROM expert_services s WHERE s.expert_id = e.user_id"
            " AND s.item_id = ?) AS performs FROM experts e JOIN users u ON u.id = e.user_id WHERE e.user_id = ?",
            (item_id, expert_id),
        )
        if row is None or not row["active"] or not row["user_active"]:
            raise ValidationError("expert_id", f"user {expert_id} is not an active expert", code="expert.not_found")
        if not row["performs"]:
            raise ValidationError("item_id", f"expert {expert_id} does not perform item {item_id}",
                                  code="expert.does_not_perform")  # fmt: skip

    async def _check_order(self, tx: Transaction, actor: Actor, order_id: int, member_id: int, item_id: int) -> None:
        order = await self.orders.visible(tx, actor, order_id)
        if order.member_id != member_id:
            raise ValidationError("order_id", f"order {order_id} is another member's", code="order.other_member")
        if order.status is not OrderStatus.PAID:
            raise ValidationError("order_id", f"order {order_id} is {order.status.value}, not paid", code="order.not_paid")
        if not any(i.item_id == item_id for i in order.items):
            raise ValidationError("order_id", f"order {order_id} does not contain item {item_id}", code="order.item_missing")
        if await tx.fetch_value("SELECT 1 FROM appointments WHERE order_id = ? AND status IN ('booked', 'completed')",
                                (order_id,)):  # fmt: skip
            raise Conflict(f"order {order_id} is already booked", code="order.already_booked")

    @staticmethod
    async def _hold(tx: Transaction, appointment_id: int, expert_id: int, start: datetime, end: datetime) -> None:
        try:
            await tx.execute_many(
                "INSERT INTO appointment_slots (expert_id, slot_start, appointment_id) VALUES (?, ?, ?)",
                [(expert_id, g, appointment_id) for g in granules(start, end)],
            )
        except IntegrityError:
            raise Conflict("the expert's time was taken meanwhile", code="appointment.expert_busy") from None

    @staticmethod
    def _require_booked(appointment: Appointment, what: str) -> None:
        if appointment.status is not AppointmentStatus.BOOKED:
            raise InvalidTransition(f"cannot {what} an appointment that is {appointment.status.value}",
                                    code="appointment.invalid_transition")  # fmt: skip

    @staticmethod
    def _check_expert(actor: Actor, appointment: Appointment) -> None:
        # The expert writes their own consultations; a planner (schedule.write) may fill one in.
        if appointment.expert_id != actor.user_id and not actor.can(access.SCHEDULE_WRITE):
            raise Forbidden(f"appointment {appointment.id} is another expert's", code="appointment.not_expert")

    async def _visible(self, tx: Transaction, actor: Actor, appointment_id: int) -> Appointment:
        sql, params = appointment_condition(actor, "a")
        row = await tx.fetch_one(
            f"SELECT CASE WHEN {sql} THEN 1 ELSE 0 END AS in_scope FROM appointments a WHERE a.id = ?", (*params, appointment_id)
        )
        if row is None:
            raise NotFound(f"appointment {appointment_id} does not exist", code="appointment.not_found")
        if not row["in_scope"]:
            raise Forbidden(f"appointment {appointment_id} is outside {actor.username}'s data scope", code="auth.out_of_scope")
        return await self._appointment(tx, appointment_id)

    async def _finish(self, tx: Transaction, actor: Actor, before: Appointment, action: str) -> Appointment:
        after = await self._appointment(tx, before.id)
        await audit.record(tx, self.clock, actor, "appointment", before.id, action, before=before, after=after)
        return after

    @staticmethod
    async def _appointment(tx: Transaction, appointment_id: int) -> Appointment:
        row = await tx.fetch_one("SELECT * FROM appointments WHERE id = ?", (appointment_id,))
        if row is None:
            raise NotFound(f"appointment {appointment_id} does not exist", code="appointment.not_found")
        recs = await tx.fetch_all(
            "SELECT item_id, note FROM appointment_recommendations WHERE appointment_id = ? ORDER BY id", (appointment_id,)
        )
        return _from_row(row, recs)


def _from_row(row: dict[str, Any], recs: list[dict[str, Any]]) -> Appointment:
    return Appointment(
        id=row["id"], member_id=row["member_id"], expert_id=row["expert_id"], item_id=row["item_id"],
        starts_at=row["starts_at"], ends_at=row["ends_at"], status=AppointmentStatus(row["status"]),
        order_id=row["order_id"], channel=row["channel"], note=row["note"],
        consultation_notes=row["consultation_notes"], customer_needs=row["customer_needs"],
        reschedule_count=row["reschedule_count"], cancel_reason=row["cancel_reason"], created_by=row["created_by"],
        created_at=row["created_at"], updated_at=row["updated_at"], completed_at=row["completed_at"],
        cancelled_at=row["cancelled_at"],
        recommendations=tuple(Recommendation(r["item_id"], r["note"]) for r in recs),
    )  # fmt: skip
