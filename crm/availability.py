"""When an expert can be booked: weekly hours, exceptions and bookings turned into free slots.

Pure functions over plain values, apart from storage, so the calendar rules read (and are tested)
in one place. Working hours are minutes after local midnight in the site's time zone; a day's
hours become UTC instants through the zone, so a daylight-saving change moves them correctly.

For one calendar day: the weekly hours of that weekday, plus the day's `extra` hours, minus the
day's `off` periods (a whole day off when the exception has no times), minus booked appointments.
A slot is a start time on the step grid (every 15 minutes by default) where the whole service
duration fits into what is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from crm.errors import ValidationError

MINUTES_PER_DAY = 24 * 60
#: Offered start times fall on this grid (minutes after local midnight).
DEFAULT_STEP_MINUTES = 15
#: The unit bookings are stored in (crm.appointments): starts and durations are multiples of it.
GRANULE_MINUTES = 5


class ExceptionKind(StrEnum):
    OFF = "off"  # 休息/请假: not available
    EXTRA = "extra"  # 加班: available beyond the weekly hours


@dataclass(frozen=True)
class WorkingHours:
    """One stretch of a weekday: `weekday` 0 = Monday, minutes after local midnight."""

    weekday: int
    start_minute: int
    end_minute: int


@dataclass(frozen=True)
class DayException:
    day: date
    kind: ExceptionKind
    #: None for both: the whole day.
    start_minute: int | None = None
    end_minute: int | None = None


Interval = tuple[datetime, datetime]


def parse_hhmm(field: str, value: object) -> int:
    """'09:30' -> 570; '24:00' is allowed as the end of a day."""
    if isinstance(value, str) and len(value) == 5 and value[2] == ":" and value[:2].isdigit() and value[3:].isdigit():
        hours, minutes = int(value[:2]), int(value[3:])
        if (hours < 24 and minutes < 60) or (hours == 24 and minutes == 0):
            return hours * 60 + minutes
    raise ValidationError(field, f"{value!r} is not a time of day (HH:MM)", code="time.invalid")


def format_hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def check_span(field: str, start: int, end: int) -> None:
    if not 0 <= start < end <= MINUTES_PER_DAY:
        raise ValidationError(field, "the end must come after the start, within one day", code="time.bad_span")
    if start % GRANULE_MINUTES or end % GRANULE_MINUTES:
        raise ValidationError(field, f"times must fall on {GRANULE_MINUTES}-minute marks", code="time.off_grid")


def local_instant(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The instant (in UTC) of `minute` after local midnight of `day` (24:00 is next midnight).

    In UTC because Python subtracts and adds wall-clock time between datetimes of one zone: on a
    daylight-saving day 01:00-04:00 would otherwise count three hours instead of two."""
    extra_day, minute = divmod(minute, MINUTES_PER_DAY)
    local = datetime.combine(day + timedelta(days=extra_day), time(minute // 60, minute % 60), tzinfo=tz)
    return local.astimezone(UTC)


def exists_locally(day: date, minute: int, tz: ZoneInfo) -> bool:
    """False for a wall-clock time skipped by a daylight-saving change (02:30 on a spring night)."""
    instant = local_instant(day, minute, tz).astimezone(tz)
    return (instant.date(), instant.hour * 60 + instant.minute) == (day, minute)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping; touching intervals join."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(base: Sequence[Interval], holes: Iterable[Interval]) -> list[Interval]:
    """`base` minus every interval of `holes`."""
    result = merge(base)
    for hole_start, hole_end in merge(holes):
        next_result: list[Interval] = []
        for start, end in result:
            if hole_end <= start or hole_start >= end:
                next_result.append((start, end))
                continue
            if start < hole_start:
                next_result.append((start, hole_start))
            if hole_end < end:
                next_result.append((hole_end, end))
        result = next_result
    return result


def working_intervals(day: date, tz: ZoneInfo, hours: Iterable[WorkingHours], exceptions: Iterable[DayException]) -> list[Interval]:
    """The expert's available time on `day` before bookings: weekly hours ∪ extra − off."""
    todays = [e for e in exceptions if e.day == day]
    base = [
        (local_instant(day, h.start_minute, tz), local_instant(day, h.end_minute, tz))
        for h in hours if h.weekday == day.weekday()
    ]  # fmt: skip
    for e in todays:
        if e.kind is ExceptionKind.EXTRA and e.start_minute is not None and e.end_minute is not None:
            base.append((local_instant(day, e.start_minute, tz), local_instant(day, e.end_minute, tz)))
    holes = []
    for e in todays:
        if e.kind is ExceptionKind.OFF:
            start = 0 if e.start_minute is None else e.start_minute
            end = MINUTES_PER_DAY if e.end_minute is None else e.end_minute
            holes.append((local_instant(day, start, tz), local_instant(day, end, tz)))
    return subtract(merge(base), holes)


def free_starts(
    free: Sequence[Interval],
    duration: timedelta,
    *,
    day: date,
    tz: ZoneInfo,
    step_minutes: int = DEFAULT_STEP_MINUTES,
    not_before: datetime | None = None,
) -> list[datetime]:
    """Start instants on the local step grid of `day` where `duration` fits into `free`."""
    starts: list[datetime] = []
    for minute in range(0, MINUTES_PER_DAY, step_minutes):
        if not exists_locally(day, minute, tz):
            continue
        start = local_instant(day, minute, tz)
        end = start + duration
        if not_before is not None and start < not_before:
            continue
        if any(lo <= start and end <= hi for lo, hi in free):
            starts.append(start)
    return starts


def fits(free: Sequence[Interval], start: datetime, end: datetime) -> bool:
    return any(lo <= start and end <= hi for lo, hi in free)
