"""积分: the ledger is the truth, the member row agrees, concurrency loses nothing."""

from __future__ import annotations

import asyncio
import random

import pytest

from crm import audit
from crm.access import SYSTEM
from crm.errors import Conflict, Forbidden, ValidationError
from crm.points import EntryKind
from crm.service import Crm
from crm.tickets import TicketQuery


async def _ledger_sum(crm: Crm, member_id: int) -> int:
    return await crm.db.fetch_value("SELECT COALESCE(SUM(amount), 0) FROM points_entries WHERE member_id = ?", (member_id,))


async def test_earn_spend_adjust(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "吴倩", phones=["13800138000"])
    e1 = await crm.points.earn(org.agent1, m.id, 500, "购买光子嫩肤疗程", reference="ORD-20261123-01")
    e2 = await crm.points.spend(org.agent1, m.id, 200, "兑换面膜")
    assert (e1.kind, e1.amount, e1.balance_after) == (EntryKind.EARN, 500, 500)
    assert (e2.kind, e2.amount, e2.balance_after) == (EntryKind.SPEND, -200, 300)
    with pytest.raises(Conflict) as short:
        await crm.points.spend(org.agent1, m.id, 301, "兑换套盒")
    assert short.value.code == "points.insufficient"
    with pytest.raises(Forbidden):  # manual corrections are a supervisor's
        await crm.points.adjust(org.agent1, m.id, -50, "更正")
    with pytest.raises(Conflict):
        await crm.points.adjust(org.supervisor, m.id, -400, "退款扣回")
    entry = await crm.points.adjust(org.supervisor, m.id, -400, "退款扣回", allow_negative=True, reference="REFUND-7")
    assert entry.balance_after == -100
    assert await crm.points.balance(org.agent1, m.id) == -100 == await _ledger_sum(crm, m.id)

    page = await crm.points.ledger(org.agent1, m.id)
    assert [e.amount for e in page.items] == [-400, -200, 500] and page.total == 3
    assert await crm.points.reconcile(SYSTEM) == []
    logged = await audit.list_entries(crm.db, org.admin, entity="points_entry")
    assert [e.action for e in logged] == ["adjust", "spend", "earn"]


@pytest.mark.parametrize("points", [0, -5, 1.5, True, 10**9])
async def test_bad_amounts(crm: Crm, org, points) -> None:
    m = await crm.members.create(org.agent1, "郑洁", phones=["13800138000"])
    with pytest.raises(ValidationError):
        await crm.points.earn(org.agent1, m.id, points, "测试")
    assert await _ledger_sum(crm, m.id) == 0


async def test_reconcile_reports_a_tampered_balance(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "冯敏", phones=["13800138000"])
    await crm.points.earn(org.agent1, m.id, 100, "开卡礼")
    await crm.db.execute("UPDATE members SET points_balance = 999 WHERE id = ?", (m.id,))
    [mismatch] = await crm.points.reconcile(SYSTEM)
    assert (mismatch.member_id, mismatch.stored, mismatch.ledger) == (m.id, 999, 100)


async def test_200_concurrent_writers_lose_no_update(crm: Crm, org) -> None:
    members = [await crm.members.create(org.agent1, f"并发会员{i}", phones=[f"1390000{i:04d}"]) for i in range(5)]
    rng = random.Random(7)
    plan = [(rng.choice(members).id, rng.randint(1, 50), rng.random() < 0.3) for _ in range(200)]

    async def worker(member_id: int, points: int, spend: bool) -> int:
        """Returns the net change it made (0 if the spend was refused)."""
        await asyncio.sleep(0)
        await crm.tickets.create(org.agent1, ticket_type="consultation", subject="积分咨询", member_id=member_id)
        if spend:
            try:
                await crm.points.spend(org.agent1, member_id, points, "兑换")
            except Conflict:
                return 0
            return -points
        await crm.points.earn(org.agent1, member_id, points, "消费")
        return points

    changes = await asyncio.gather(*(worker(*p) for p in plan))
    expected: dict[int, int] = {}
    for (member_id, _, _), change in zip(plan, changes, strict=True):
        expected[member_id] = expected.get(member_id, 0) + change
    for m in members:
        balance = await crm.points.balance(org.agent1, m.id)
        assert balance == expected.get(m.id, 0) == await _ledger_sum(crm, m.id)
        assert balance >= 0
    assert await crm.points.reconcile(SYSTEM) == []
    tickets = await crm.tickets.search(org.agent1, TicketQuery())
    assert tickets.total == 200
    # every entry's balance_after continues the previous one: no interleaving within a member
    for m in members:
        rows = await crm.db.fetch_all(
            "SELECT amount, balance_after FROM points_entries WHERE member_id = ? ORDER BY id", (m.id,)
        )
        running = 0
        for row in rows:
            running += row["amount"]
            assert row["balance_after"] == running
