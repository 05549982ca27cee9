"""统计报表: rows per local day (Asia/Shanghai), sales, members, and call figures from `calls`
and from the ACD's `cdr` table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from crm.clock import FixedClock
from crm.errors import Forbidden, ValidationError
from crm.reports import CallRow, CountRow
from crm.service import Crm

# The columns the ACD writes (acd/cdr.py); created here because the table belongs to `acd`.
CDR_TABLE = """CREATE TABLE cdr (id INTEGER PRIMARY KEY, call_id TEXT NOT NULL, segment INTEGER NOT NULL DEFAULT 1,
    caller TEXT NOT NULL, callee TEXT NOT NULL, started_at TEXT NOT NULL, answered_at TEXT, ended_at TEXT NOT NULL,
    duration REAL NOT NULL, billsec REAL NOT NULL, disposition TEXT NOT NULL, hangup_side TEXT NOT NULL)"""


def _iso_ms(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


async def test_tickets_are_counted_per_local_day(crm: Crm, org, clock: FixedClock) -> None:
    # 2026-11-22 23:30 Shanghai is 15:30 UTC the same date; 00:30 on the 23rd is 16:30 UTC on the 22nd
    clock.set(datetime(2026, 11, 22, 15, 30, tzinfo=UTC))
    await crm.tickets.create(org.agent1, ticket_type="complaint", subject="昨晚的投诉")
    clock.set(datetime(2026, 11, 22, 16, 30, tzinfo=UTC))
    await crm.tickets.create(org.agent1, ticket_type="complaint", subject="凌晨的投诉")
    await crm.tickets.create(org.agent1, ticket_type="consultation", subject="咨询")
    rows = await crm.reports.tickets(org.supervisor, date(2026, 11, 22), date(2026, 11, 23))
    assert rows == [CountRow("2026-11-22", "complaint", 1), CountRow("2026-11-23", "complaint", 1),
                    CountRow("2026-11-23", "consultation", 1)]  # fmt: skip
    by_month = await crm.reports.tickets(org.supervisor, date(2026, 11, 1), date(2026, 11, 30), by="status", period="month")
    assert by_month == [CountRow("2026-11", "new", 3)]
    weekly = await crm.reports.tickets(org.supervisor, date(2026, 11, 16), date(2026, 11, 29), period="week")
    assert {r.period for r in weekly} == {"2026-11-16", "2026-11-23"}  # Mondays
    with pytest.raises(ValidationError):
        await crm.reports.tickets(org.supervisor, date(2026, 11, 23), date(2026, 11, 1))
    with pytest.raises(ValidationError):
        await crm.reports.tickets(org.supervisor, date(2020, 1, 1), date(2026, 1, 1))
    with pytest.raises(ValidationError):
        await crm.reports.tickets(org.supervisor, date(2026, 11, 1), date(2026, 11, 2), by="colour")
    with pytest.raises(Forbidden):
        await crm.reports.tickets(org.agent1, date(2026, 11, 1), date(2026, 11, 2))


async def test_sales_members_and_appointments(crm: Crm, org, make_user, clock: FixedClock) -> None:
    change = await crm.catalogue.propose_new(org.supervisor, sku="CREAM", kind="product", name="修护面霜", price_cents=29_900)
    cream = await crm.catalogue.approve(org.admin, change.id)
    change = await crm.catalogue.propose_new(org.supervisor, sku="MASK", kind="product", name="补水面膜", price_cents=8_800)
    mask = await crm.catalogue.approve(org.admin, change.id)
    a = await crm.members.create(org.agent1, "甲", phones=["13800138001"], level="gold", source_channel="wechat")
    b = await crm.members.create(org.agent1, "乙", phones=["13800138002"], level="gold", source_channel="phone")
    await crm.members.create(org.agent1, "丙", phones=["13800138003"])
    for member, lines in ((a.id, [(cream.id, 2), (mask.id, 1)]), (b.id, [(mask.id, 5)]), (b.id, [(cream.id, 1)])):
        order = await crm.orders.create(org.agent1, member_id=member, lines=lines)
        await crm.orders.pay(org.agent1, order.id, method="card", amount_cents=order.total_cents)
    await crm.orders.cancel(org.agent1, order.id, "退货")  # the last one is refunded: not a sale
    await crm.orders.create(org.agent1, member_id=a.id, lines=[(mask.id, 9)])  # unpaid: not a sale
    today = clock.today()
    sales = await crm.reports.sales_by_item(org.supervisor, today, today)
    assert [(s.sku, s.quantity, s.amount_cents, s.orders) for s in sales] == [("CREAM", 2, 59_800, 1), ("MASK", 6, 52_800, 2)]
    growth = await crm.reports.member_growth(org.supervisor, today, today)
    assert growth == [CountRow("2026-11-23", "", 1), CountRow("2026-11-23", "phone", 1), CountRow("2026-11-23", "wechat", 1)]
    levels = await crm.reports.member_levels(org.supervisor)
    assert [(r.level_code, r.members) for r in levels] == [("gold", 2), ("normal", 1)]
    assert await crm.reports.appointments(org.supervisor, today, today, by="service") == []


async def test_call_figures_from_the_cdr_and_calls_tables(crm: Crm, org) -> None:
    assert await crm.reports.calls(org.supervisor, date(2026, 11, 23), date(2026, 11, 23)) == []  # no ACD yet
    await crm.db.execute(CDR_TABLE)
    day = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 Shanghai
    rows = [
        # call_id, segment, start offset s, answered after s (None: never), length s, disposition, hangup side
        ("c1", 1, 0, 10, 130, "ANSWERED", "callee"),
        ("c2", 1, 60, None, 25, "NO ANSWER", "caller"),  # gave up in the queue: abandoned
        ("c3", 1, 120, None, 3, "CANCELLED", "caller"),  # abandoned
        ("c4", 1, 180, None, 30, "BUSY", "callee"),  # not answered, not abandoned
        ("c5", 1, 240, 5, 65, "ANSWERED", "caller"),  # transferred: two segments, one call
        ("c5", 2, 305, 2, 92, "ANSWERED", "callee"),
        ("c5", 201, 320, 1, 40, "ANSWERED", "caller"),  # a supervisor listened in: not the call's talk
        ("c6", 1, 86_400 - 3_600 * 9 + 60, 5, 45, "ANSWERED", "caller"),  # 00:01 on the 24th, Shanghai
    ]
    for call_id, segment, offset, answer, length, disposition, side in rows:
        start = day + timedelta(seconds=offset)
        answered = start + timedelta(seconds=answer) if answer is not None else None
        end = start + timedelta(seconds=length)
        billsec = (end - answered).total_seconds() if answered else 0.0
        await crm.db.execute(
            "INSERT INTO cdr (call_id, segment, caller, callee, started_at, answered_at, ended_at, duration, billsec,"
            " disposition, hangup_side) VALUES (?, ?, '13800138000', '4008208820', ?, ?, ?, ?, ?, ?, ?)",
            (call_id, segment, _iso_ms(start), _iso_ms(answered) if answered else None, _iso_ms(end), float(length),
             billsec, disposition, side),
        )  # fmt: skip
    figures = await crm.reports.calls(org.supervisor, date(2026, 11, 23), date(2026, 11, 24))
    # answered talk: c1 120 s, c5 60 + 90 s -> (120 + 150) / 2
    assert figures == [CallRow("2026-11-23", 5, 2, 2, 135.0), CallRow("2026-11-24", 1, 1, 0, 40.0)]

    await crm.timeline.record_call(org.admin, direction="inbound", caller="13800138000", callee="8001",
                                   started_at=day, answered_at=day + timedelta(seconds=5), duration=65, billsec=60,
                                   disposition="ANSWERED", agent_id=org.agent1.user_id)  # fmt: skip
    await crm.timeline.record_call(org.admin, direction="inbound", caller="13800138000", callee="8001",
                                   started_at=day, duration=20, disposition="NO ANSWER")  # fmt: skip
    own = await crm.reports.calls(org.supervisor, date(2026, 11, 23), date(2026, 11, 23), source="calls")
    assert own == [CallRow("2026-11-23", 2, 1, 1, 60.0)]
    with pytest.raises(Forbidden):
        await crm.reports.calls(org.agent1, date(2026, 11, 23), date(2026, 11, 23))
