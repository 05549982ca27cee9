"""Time as the CRM stores and reasons about it.

Instants are stored as ISO-8601 UTC text of fixed width (`2026-11-23T02:30:00.000000Z`), so text
order is time order in SQLite and PostgreSQL alike; calendar dates (birthday, purchase date) as
`YYYY-MM-DD`. Business days ("today's complaints") are days of the site's time zone, by default
China Standard Time. Services read the time from a `Clock` so tests and the demo can fix it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Clock:
    """The wall clock in UTC plus the site's time zone for calendar questions."""

    def __init__(self, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.tz = ZoneInfo(timezone)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        """The current calendar date at the site."""
        return self.now().astimezone(self.tz).date()

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The UTC instants [start, end) of a calendar day at the site."""
        start = datetime.combine(day, time(0), tzinfo=self.tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.tz)
        return start.astimezone(UTC), end.astimezone(UTC)


class FixedClock(Clock):
    """A clock that stands still until told to move: for tests and reproducible demo data."""

    def __init__(self, at: datetime, timezone: str = DEFAULT_TIMEZONE) -> None:
        super().__init__(timezone)
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def to_iso(instant: datetime) -> str:
    """Fixed-width UTC text of an aware datetime."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: the CRM stores only aware instants")
    return instant.astimezone(UTC).strftime(_ISO_FORMAT)


def from_iso(text: str) -> datetime:
    """Parse text written by `to_iso` (or any ISO-8601 with offset) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(text: str) -> date:
    return date.fromisoformat(text)


def add_months(day: date, months: int) -> date:
    """`day` plus calendar months, clamped to the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    month_index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(month_index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has at least 28 days")
