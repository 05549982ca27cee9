"""专家: the users members book — their profile, the services they perform, their weekly hours
and the days they are off or work extra.

An expert is an active user with an expert profile. Schedules are kept by whoever plans the
floor (schedule.write); anyone who books (appointment.read) reads them. Bookings themselves live
in `crm.appointments`; the calendar arithmetic in `crm.availability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.availability import DayException, ExceptionKind, WorkingHours, check_span, format_hhmm, parse_hhmm
from crm.catalogue import ItemKind
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import NotFound, ValidationError

#: A week has 7 days; more than 4 stretches a day is a data-entry slip.
MAX_HOURS_ROWS = 28
#: How far ahead exceptions are listed by default, and the longest range one may ask for.
MAX_EXCEPTION_RANGE_DAYS = 366


@dataclass(frozen=True)
class HoursSpec:
    """Input form of one stretch of working hours: weekday 0 = Monday, times 'HH:MM' local."""

    weekday: int
    start: str
    end: str


@dataclass(frozen=True)
class Hours:
    weekday: int
    start: str
    end: str


@dataclass(frozen=True)
class Expert:
    user_id: int
    display_name: str
    department_id: int | None
    title: str
    bio: str
    active: bool
    service_ids: tuple[int, ...]
    hours: tuple[Hours, ...]


@dataclass(frozen=True)
class ScheduleException:
    id: int
    expert_id: int
    day: str
    kind: ExceptionKind
    start: str | None
    end: str | None
    note: str
    created_at: str


def _exception(row: dict[str, Any]) -> ScheduleException:
    return ScheduleException(
        row["id"], row["expert_id"], row["day"], ExceptionKind(row["kind"]),
        None if row["start_minute"] is None else format_hhmm(row["start_minute"]),
        None if row["end_minute"] is None else format_hhmm(row["end_minute"]), row["note"], row["created_at"],
    )  # fmt: skip


class ExpertService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def put_expert(
        self,
        actor: Actor,
        user_id: int,
        *,
        title: str = "",
        bio: str = "",
        active: bool = True,
        service_ids: Sequence[int] = (),
    ) -> Expert:
        """Make a user bookable (or update them): profile and the services they perform."""
        actor.require(access.SCHEDULE_WRITE)
        title = common.text("title", title, max_length=64, required=False)
        bio = common.text("bio", bio, max_length=2000, required=False)
        if not isinstance(active, bool):
            raise ValidationError("active", "must be true or false")
        if isinstance(service_ids, str | bytes) or not all(isinstance(i, int) and not isinstance(i, bool) for i in service_ids):
            raise ValidationError("service_ids", "must be a list of catalogue item ids")
        services = sorted(set(service_ids))
        async with self.db.transaction() as tx:
            user = await tx.fetch_one("SELECT id, active FROM users WHERE id = ?", (user_id,))
            if user is None or not user["active"]:
                raise ValidationError("user_id", f"user {user_id} is not an active user", code="user.not_found")
            for item_id in services:
                kind = await tx.fetch_value("SELECT kind FROM catalogue_items WHERE id = ?", (item_id,))
                if kind != ItemKind.SERVICE.value:
                    raise ValidationError("service_ids", f"item {item_id} is not a catalogue service",
                                          code="catalogue.wrong_kind")  # fmt: skip
            before = await self._expert(tx, user_id) if await self._exists(tx, user_id) else None
            now = to_iso(self.clock.now())
            if before is None:
                await tx.execute(
                    "INSERT INTO experts (user_id, title, bio, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (user_id, title, bio, 1 if active else 0, now, now),
                )
            else:
                await tx.execute("UPDATE experts SET title = ?, bio = ?, active = ?, updated_at = ? WHERE user_id = ?",
                                 (title, bio, 1 if active else 0, now, user_id))  # fmt: skip
            await tx.execute("DELETE FROM expert_services WHERE expert_id = ?", (user_id,))
            await tx.execute_many("INSERT INTO expert_services (expert_id, item_id) VALUES (?, ?)",
                                  [(user_id, i) for i in services])  # fmt: skip
            after = await self._expert(tx, user_id)
            await audit.record(tx, self.clock, actor, "expert", user_id, "update" if before else "create",
                               before=before, after=after)  # fmt: skip
        return after

    async def set_hours(self, actor: Actor, user_id: int, hours: Sequence[HoursSpec | tuple[int, str, str]]) -> Expert:
        """Replace the expert's weekly hours (overlapping stretches of one weekday are refused)."""
        actor.require(access.SCHEDULE_WRITE)
        if isinstance(hours, str) or len(hours) > MAX_HOURS_ROWS:
            raise ValidationError("hours", f"must be a list of at most {MAX_HOURS_ROWS} stretches")
        parsed: list[WorkingHours] = []
        for index, spec in enumerate(hours):
            weekday, start, end = (spec.weekday, spec.start, spec.end) if isinstance(spec, HoursSpec) else spec
            field = f"hours[{index}]"
            if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
                raise ValidationError(f"{field}.weekday", "must be 0 (Monday) to 6 (Sunday)")
            lo, hi = parse_hhmm(f"{field}.start", start), parse_hhmm(f"{field}.end", end)
            check_span(field, lo, hi)
            parsed.append(WorkingHours(weekday, lo, hi))
        for a in parsed:
            for b in parsed:
                if a is not b and a.weekday == b.weekday and a.start_minute < b.end_minute and b.start_minute < a.end_minute:
                    raise ValidationError("hours", f"stretches overlap on weekday {a.weekday}", code="schedule.overlap")
        async with self.db.transaction() as tx:
            before = await self._expert(tx, user_id)
            await tx.execute("DELETE FROM expert_hours WHERE expert_id = ?", (user_id,))
            await tx.execute_many(
                "INSERT INTO expert_hours (expert_id, weekday, start_minute, end_minute) VALUES (?, ?, ?, ?)",
                [(user_id, h.weekday, h.start_minute, h.end_minute) for h in sorted(parsed, key=lambda h: (h.weekday, h.start_minute))],
            )
            after = await self._expert(tx, user_id)
            await audit.record(tx, self.clock, actor, "expert", user_id, "set_hours", before=before, after=after)
        return after

    async def add_exception(
        self,
        actor: Actor,
        user_id: int,
        day: date | str,
        kind: ExceptionKind | str,
        *,
        start: str | None = None,
        end: str | None = None,
        note: str = "",
    ) -> ScheduleException:
        """A day off (no times: the whole day), time off within a day, or extra hours (times required).
        Existing bookings are not moved: the planner reschedules them (they show in the day's list)."""
        actor.require(access.SCHEDULE_WRITE)
        the_day = common.iso_date("day", day)
        if the_day is None:
            raise ValidationError("day", "is required", code="field.required")
        exception_kind = common.enum_value("kind", ExceptionKind, kind)
        note = common.text("note", note, max_length=200, required=False)
        if (start is None) != (end is None):
            raise ValidationError("end", "give both start and end, or neither for the whole day")
        lo = hi = None
        if start is not None:
            lo, hi = parse_hhmm("start", start), parse_hhmm("end", end)
            check_span("start", lo, hi)
        elif exception_kind is ExceptionKind.EXTRA:
            raise ValidationError("start", "extra hours need a start and an end", code="field.required")
        async with self.db.transaction() as tx:
            await self._expert(tx, user_id)
            exception_id = await tx.insert(
                "INSERT INTO expert_exceptions (expert_id, day, kind, start_minute, end_minute, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (user_id, the_day.isoformat(), exception_kind.value, lo, hi, note, to_iso(self.clock.now())),
            )
            row = await tx.fetch_one("SELECT * FROM expert_exceptions WHERE id = ?", (exception_id,))
            assert row is not None
            created = _exception(row)
            await audit.record(tx, self.clock, actor, "expert_exception", exception_id, "create", after=created)
        return created

    async def remove_exception(self, actor: Actor, exception_id: int) -> None:
        actor.require(access.SCHEDULE_WRITE)
        async with self.db.transaction() as tx:
            row = await tx.fetch_one("SELECT * FROM expert_exceptions WHERE id = ?", (exception_id,))
            if row is None:
                raise NotFound(f"schedule exception {exception_id} does not exist", code="expert_exception.not_found")
            await tx.execute("DELETE FROM expert_exceptions WHERE id = ?", (exception_id,))
            await audit.record(tx, self.clock, actor, "expert_exception", exception_id, "delete", before=_exception(row))

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, user_id: int) -> Expert:
        actor.require(access.APPOINTMENT_READ)
        async with self.db.reading() as r:
            return await self._expert(r, user_id)

    async def list_experts(self, actor: Actor, *, item_id: int | None = None, include_inactive: bool = False) -> list[Expert]:
        """Experts by name; with `item_id`, those who perform that service."""
        actor.require(access.APPOINTMENT_READ)
        where, params = ["1 = 1"], []
        if not include_inactive:
            where.append("e.active = 1 AND u.active = 1")
        if item_id is not None:
            where.append("e.user_id IN (SELECT s.expert_id FROM expert_services s WHERE s.item_id = ?)")
            params.append(item_id)
        async with self.db.reading() as r:
            rows = await r.fetch_all(
                f"SELECT e.user_id FROM experts e JOIN users u ON u.id = e.user_id WHERE {' AND '.join(where)}"
                " ORDER BY u.display_name, u.id",
                params,
            )
            return [await self._expert(r, row["user_id"]) for row in rows]

    async def exceptions(self, actor: Actor, user_id: int, first_day: date, last_day: date) -> list[ScheduleException]:
        actor.require(access.APPOINTMENT_READ)
        if last_day < first_day or (last_day - first_day).days > MAX_EXCEPTION_RANGE_DAYS:
            raise ValidationError("last_day", f"must be on or after first_day, at most {MAX_EXCEPTION_RANGE_DAYS} days")
        async with self.db.reading() as r:
            await self._expert(r, user_id)
            rows = await r.fetch_all(
                "SELECT * FROM expert_exceptions WHERE expert_id = ? AND day >= ? AND day <= ? ORDER BY day, id",
                (user_id, first_day.isoformat(), last_day.isoformat()),
            )
        return [_exception(row) for row in rows]

    # -- for crm.appointments -------------------------------------------------------------------------
    @staticmethod
    async def calendar(tx: Transaction, user_id: int, day: date) -> tuple[list[WorkingHours], list[DayException]]:
        hours = await tx.fetch_all("SELECT * FROM expert_hours WHERE expert_id = ? AND weekday = ?", (user_id, day.weekday()))
        exceptions = await tx.fetch_all("SELECT * FROM expert_exceptions WHERE expert_id = ? AND day = ?",
                                        (user_id, day.isoformat()))  # fmt: skip
        return (
            [WorkingHours(h["weekday"], h["start_minute"], h["end_minute"]) for h in hours],
            [DayException(day, ExceptionKind(e["kind"]), e["start_minute"], e["end_minute"]) for e in exceptions],
        )

    @staticmethod
    async def _exists(tx: Transaction, user_id: int) -> bool:
        return bool(await tx.fetch_value("SELECT 1 FROM experts WHERE user_id = ?", (user_id,)))

    @staticmethod
    async def _expert(tx: Transaction, user_id: int) -> Expert:
        row = await tx.fetch_one(
            "SELECT e.*, u.display_name, u.department_id FROM experts e JOIN users u ON u.id = e.user_id WHERE e.user_id = ?",
            (user_id,),
        )
        if row is None:
            raise NotFound(f"user {user_id} is not an expert", code="expert.not_found")
        services = await tx.fetch_all("SELECT item_id FROM expert_services WHERE expert_id = ? ORDER BY item_id", (user_id,))
        hours = await tx.fetch_all(
            "SELECT * FROM expert_hours WHERE expert_id = ? ORDER BY weekday, start_minute", (user_id,)
        )
        return Expert(
            user_id=row["user_id"], display_name=row["display_name"], department_id=row["department_id"],
            title=row["title"], bio=row["bio"], active=bool(row["active"]),
            service_ids=tuple(s["item_id"] for s in services),
            hours=tuple(Hours(h["weekday"], format_hhmm(h["start_minute"]), format_hhmm(h["end_minute"])) for h in hours),
        )  # fmt: skip
