"""统计报表: the figures the management pages chart — tickets, work orders, appointments,
sales, members, satisfaction, calls.

Every report is a list of flat rows (JSON-ready) over calendar days of the site (Asia/Shanghai by
default). Timestamps are stored as UTC text, so grouping by local day cannot be a plain SQL
substring: each query groups by ten-minute UTC prefixes (`substr(ts, 1, 15)`, portable SQL),
and those buckets are folded into local days, ISO weeks or months here. That is exact for every
time zone whose offset is a multiple of ten minutes (all but Nepal's +05:45 and Chatham's +12:45).

Call figures come from two places: the CRM's own `calls` table (one row per call, from the ACD's
CDR events, with the agent) and the ACD's `cdr` table (one row per call segment; read-only here,
it belongs to `acd`). For `cdr`, a call is its `call_id`: answered if any segment was, abandoned
if it was not answered and the caller hung up (or cancelled), handle time the sum of talk time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from crm import access, scopes
from crm.access import Actor
from crm.clock import Clock, from_iso
from crm.db import Database
from crm.errors import ValidationError
from crm.surveys import Satisfaction, SurveyService
from crm.workorders import TechnicianStats, WorkOrderService

#: The first CDR segment number of the supervisor's line on a call (the `cdr` table's segment
#: ranges are documented in acd.cdr, which crm does not import: acd reads crm, not the reverse).
SEGMENT_SUPERVISOR_LINE = 200

#: The longest period one report covers: two years of daily rows.
MAX_DAYS = 731


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO week, labelled by its Monday
    MONTH = "month"


class CallSource(StrEnum):
    CALLS = "calls"  # the CRM's call records (with agent and member)
    CDR = "cdr"  # the ACD's CDR table


@dataclass(frozen=True)
class CountRow:
    """One cell of a grouped count: `period` label, the group's key (type, status, level...)."""

    period: str
    key: str
    count: int


@dataclass(frozen=True)
class AppointmentRow:
    key_id: int
    name: str
    booked: int
    completed: int
    cancelled: int
    no_show: int


@dataclass(frozen=True)
class SalesRow:
    item_id: int
    sku: str
    name: str
    kind: str
    quantity: int
    amount_cents: int
    orders: int


@dataclass(frozen=True)
class LevelRow:
    level_code: str | None
    name: str | None
    members: int


@dataclass(frozen=True)
class CallRow:
    period: str
    volume: int
    answered: int
    abandoned: int
    #: Mean talk time of answered calls, seconds (AHT without wrap-up, which the CDR does not hold).
    avg_handle_seconds: float | None


class ReportService:
    def __init__(self, db: Database, clock: Clock, work_orders: WorkOrderService, surveys: SurveyService) -> None:
        self.db = db
        self.clock = clock
        self.work_orders = work_orders
        self.surveys = surveys

    # -- helpers ------------------------------------------------------------------------------------
    def _bounds(self, first_day: date, last_day: date) -> tuple[str, str, datetime, datetime]:
        if last_day < first_day:
            raise ValidationError("last_day", "is before first_day")
        if (last_day - first_day).days >= MAX_DAYS:
            raise ValidationError("last_day", f"a report covers at most {MAX_DAYS} days")
        start, end = self.clock.day_bounds(first_day)[0], self.clock.day_bounds(last_day)[1]
        # 19-character prefixes compare correctly with both timestamp widths in use
        # (CRM: microseconds, CDR: milliseconds).
        return start.strftime("%Y-%m-%dT%H:%M:%S"), end.strftime("%Y-%m-%dT%H:%M:%S"), start, end

    def label(self, bucket: str, period: Period) -> str:
        """The local period a ten-minute UTC bucket ('2026-11-23T02:1') falls in."""
        instant = from_iso(bucket + "0:00Z")
        day = instant.astimezone(self.clock.tz).date()
        if period is Period.DAY:
            return day.isoformat()
        if period is Period.WEEK:
            return (day - timedelta(days=day.weekday())).isoformat()
        return day.strftime("%Y-%m")

    def _fold(self, rows: Iterable[dict[str, Any]], period: Period, key: str = "key") -> list[CountRow]:
        totals: dict[tuple[str, str], int] = {}
        for row in rows:
            cell = (self.label(row["bucket"], period), str(row[key]))
            totals[cell] = totals.get(cell, 0) + row["n"]
        return [CountRow(p, k, n) for (p, k), n in sorted(totals.items())]

    # -- tickets, work orders, appointments -------------------------------------------------------
    async def tickets(
        self, actor: Actor, first_day: date, last_day: date, *, by: str = "type", period: Period | str = Period.DAY
    ) -> list[CountRow]:
        """Tickets created per period by `type`, `status` or `priority` (within the actor's ticket scope)."""
        actor.require(access.REPORT_READ)
        column = {"type": "t.ticket_type", "status": "t.status", "priority": "t.priority"}.get(by)
        if column is None:
            raise ValidationError("by", "one of type, status, priority")
        grain = Period(period)
        lo, hi, _, _ = self._bounds(first_day, last_day)
        scope_sql, params = scopes.ticket_condition(actor, "t")
        rows = await self.db.fetch_all(
            f"SELECT substr(t.created_at, 1, 15) AS bucket, {column} AS key, COUNT(*) AS n FROM tickets t"
            f" WHERE t.created_at >= ? AND t.created_at < ? AND {scope_sql} GROUP BY bucket, key",
            [lo, hi, *params],
        )
        return self._fold(rows, grain)

    async def work_orders_by_technician(self, actor: Actor, first_day: date, last_day: date) -> list[TechnicianStats]:
        """考核: per technician, dispatched / completed / approved / voided, and mean completion time."""
        _, _, start, end = self._bounds(first_day, last_day)
        return await self.work_orders.technician_stats(actor, start, end)

    async def appointments(self, actor: Actor, first_day: date, last_day: date, *, by: str = "expert") -> list[AppointmentRow]:
        """Appointments starting in the period, per expert or per service, by outcome."""
        actor.require(access.REPORT_READ)
        if by not in ("expert", "service"):
            raise ValidationError("by", "one of expert, service")
        lo, hi, _, _ = self._bounds(first_day, last_day)
        key, name, join = (("a.expert_id", "u.display_name", "JOIN users u ON u.id = a.expert_id") if by == "expert"
                           else ("a.item_id", "c.name", "JOIN catalogue_items c ON c.id = a.item_id"))  # fmt: skip
        rows = await self.db.fetch_all(
            f"SELECT {key} AS key_id, {name} AS name,"
            " SUM(CASE WHEN a.status = 'booked' THEN 1 ELSE 0 END) AS booked,"
            " SUM(CASE WHEN a.status = 'completed' THEN 1 ELSE 0 END) AS completed,"
            " SUM(CASE WHEN a.status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled,"
            " SUM(CASE WHEN a.status = 'no_show' THEN 1 ELSE 0 END) AS no_show"
            f" FROM appointments a {join} WHERE a.starts_at >= ? AND a.starts_at < ? GROUP BY {key}, {name} ORDER BY {name}",
            (lo, hi),
        )
        return [AppointmentRow(**row) for row in rows]

    # -- sales and members --------------------------------------------------------------------------
    async def sales_by_item(self, actor: Actor, first_day: date, last_day: date) -> list[SalesRow]:
        """Paid sales per catalogue item in the period (refunded orders excluded), best sellers first."""
        actor.require(access.REPORT_READ)
        lo, hi, _, _ = self._bounds(first_day, last_day)
        rows = await self.db.fetch_all(
            "SELECT i.item_id, i.sku, MAX(i.name) AS name, i.kind, SUM(i.quantity) AS quantity,"
            " SUM(i.amount_cents) AS amount_cents, COUNT(DISTINCT o.id) AS orders"
            " FROM order_items i JOIN orders o ON o.id = i.order_id"
            " WHERE o.status IN ('paid', 'completed') AND o.paid_at >= ? AND o.paid_at < ?"
            " GROUP BY i.item_id, i.sku, i.kind ORDER BY amount_cents DESC, i.item_id",
            (lo, hi),
        )
        return [SalesRow(**row) for row in rows]

    async def member_growth(self, actor: Actor, first_day: date, last_day: date, *, period: Period | str = Period.DAY) -> list[CountRow]:
        """New members per period by source channel (key '' when unknown)."""
        actor.require(access.REPORT_READ)
        lo, hi, _, _ = self._bounds(first_day, last_day)
        rows = await self.db.fetch_all(
            "SELECT substr(created_at, 1, 15) AS bucket, COALESCE(source_channel, '') AS key, COUNT(*) AS n FROM members"
            " WHERE created_at >= ? AND created_at < ? GROUP BY bucket, key",
            (lo, hi),
        )
        return self._fold(rows, Period(period))

    async def member_levels(self, actor: Actor) -> list[LevelRow]:
        """Members per level now, highest level first."""
        actor.require(access.REPORT_READ)
        rows = await self.db.fetch_all(
            "SELECT m.level_code, l.name, COUNT(*) AS members FROM members m LEFT JOIN member_levels l ON l.code = m.level_code"
            " GROUP BY m.level_code, l.name, l.rank ORDER BY l.rank DESC"
        )
        return [LevelRow(**row) for row in rows]

    async def satisfaction(self, actor: Actor, first_day: date, last_day: date, *, reason: str | None = None) -> Satisfaction:
        _, _, start, end = self._bounds(first_day, last_day)
        return await self.surveys.satisfaction(actor, start, end, reason=reason)

    # -- calls --------------------------------------------------------------------------------------
    async def calls(
        self, actor: Actor, first_day: date, last_day: date, *, source: CallSource | str = CallSource.CDR,
        period: Period | str = Period.DAY,
    ) -> list[CallRow]:  # fmt: skip
        """话务报表: volume, answered, abandoned and average handle time per period."""
        actor.require(access.REPORT_READ)
        actor.require(access.CALL_READ)
        lo, hi, _, _ = self._bounds(first_day, last_day)
        if CallSource(source) is CallSource.CALLS:
            sql = (
                "SELECT substr(started_at, 1, 15) AS bucket, COUNT(*) AS volume,"
                " SUM(CASE WHEN disposition = 'ANSWERED' THEN 1 ELSE 0 END) AS answered,"
                " SUM(CASE WHEN direction = 'inbound' AND disposition = 'NO ANSWER' THEN 1 ELSE 0 END) AS abandoned,"
                " SUM(CASE WHEN disposition = 'ANSWERED' THEN billsec ELSE 0 END) AS talk"
                " FROM calls WHERE started_at >= ? AND started_at < ? GROUP BY bucket"
            )
        else:
            sql = (
                "SELECT substr(started_at, 1, 15) AS bucket, COUNT(*) AS volume, SUM(answered) AS answered,"
                " SUM(CASE WHEN answered = 0 AND caller_gave_up = 1 THEN 1 ELSE 0 END) AS abandoned,"
                " SUM(CASE WHEN answered = 1 THEN talk ELSE 0 END) AS talk FROM ("
                "  SELECT call_id, MIN(started_at) AS started_at,"
                "  MAX(CASE WHEN disposition = 'ANSWERED' THEN 1 ELSE 0 END) AS answered,"
                "  MAX(CASE WHEN disposition = 'CANCELLED' OR hangup_side = 'caller' THEN 1 ELSE 0 END) AS caller_gave_up,"
                "  SUM(billsec) AS talk FROM cdr WHERE started_at >= ? AND started_at < ? AND segment < ?"
                "  GROUP BY call_id"
                " ) AS calls GROUP BY bucket"
            )
        try:
            # The CDR source leaves out the supervisor's line (acd.cdr segment ranges): listening
            # in is neither the customer's talk time nor an answer. Callbacks count: that is
            # where a caller who kept their place was served.
            params = (lo, hi) if CallSource(source) is CallSource.CALLS else (lo, hi, SEGMENT_SUPERVISOR_LINE)
            rows = await self.db.fetch_all(sql, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # the ACD is not part of this deployment (or not started yet)
            raise
        totals: dict[str, list[float]] = {}
        for row in rows:
            cell = totals.setdefault(self.label(row["bucket"], Period(period)), [0, 0, 0, 0.0])
            cell[0] += row["volume"]
            cell[1] += row["answered"] or 0
            cell[2] += row["abandoned"] or 0
            cell[3] += row["talk"] or 0
        return [
            CallRow(label, int(v), int(a), int(ab), round(talk / a, 1) if a else None)
            for label, (v, a, ab, talk) in sorted(totals.items())
        ]
