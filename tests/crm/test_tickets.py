"""客户服务: the ticket status flow, SLA due times, supervisor views, data scope."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from crm import audit
from crm.clock import FixedClock, from_iso
from crm.errors import Forbidden, InvalidTransition, ValidationError
from crm.service import Crm
from crm.ticket_flow import Priority, TicketAction, TicketStatus, allowed_actions
from crm.tickets import TicketQuery


async def test_full_flow_with_history(crm: Crm, org, clock: FixedClock) -> None:
    m = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"])
    t = await crm.tickets.create(
        org.agent1, ticket_type="complaint", subject="美容师迟到半小时", description="预约10点，10点半才开始",
        member_id=m.id, priority=Priority.HIGH, category="service", channel="phone",
    )  # fmt: skip
    assert t.status is TicketStatus.NEW and t.created_by == org.agent1.user_id
    # complaint/high: 240 minutes in the seeded SLA table
    assert from_iso(t.due_at) - from_iso(t.created_at) == timedelta(minutes=240)

    t = await crm.tickets.assign(org.supervisor, t.id, assignee_id=org.agent2.user_id, note="请跟进")
    assert t.status is TicketStatus.ASSIGNED and t.department_id == org.service_center
    clock.advance(timedelta(minutes=10))
    t = await crm.tickets.start(org.agent2, t.id)
    await crm.tickets.comment(org.agent2, t.id, "已致电客户道歉")
    t = await crm.tickets.resolve(org.agent2, t.id, "赠送一次护理，店长已处理")
    assert t.status is TicketStatus.RESOLVED and t.resolved_at is not None
    t = await crm.tickets.close(org.agent1, t.id)
    assert t.status is TicketStatus.CLOSED and t.closed_at is not None

    clock.advance(timedelta(days=1))
    t = await crm.tickets.reopen(org.agent1, t.id, "客户再次来电不满意")
    assert t.status is TicketStatus.ASSIGNED and t.reopen_count == 1 and t.closed_at is None
    assert from_iso(t.due_at) == clock.now() + timedelta(minutes=240)  # the SLA clock restarts

    history = await crm.tickets.history(org.agent1, t.id)
    assert [(e.action, e.to_status) for e in history] == [
        ("create", "new"), ("assign", "assigned"), ("start", "in_progress"), ("comment", "in_progress"),
        ("resolve", "resolved"), ("close", "closed"), ("reopen", "assigned"),
    ]  # fmt: skip
    assert history[3].body == "已致电客户道歉" and history[1].actor_name == "sup1"
    logged = await audit.list_entries(crm.db, org.admin, entity="ticket", entity_id=t.id)
    assert len(logged) == 7 and logged[0].before["status"] == "closed" and logged[0].after["status"] == "assigned"


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [([], "start"), ([], "resolve"), ([], "close"), ([], "reopen"), (["assign"], "resolve"),
     (["assign"], "close"), (["assign", "start"], "close"), (["assign", "start"], "reopen"),
     (["assign", "start", "resolve"], "start"), (["assign", "start", "resolve", "close"], "resolve")],
)  # fmt: skip
async def test_disallowed_transitions(crm: Crm, org, path: list[str], forbidden: str) -> None:
    t = await crm.tickets.create(org.agent1, ticket_type="consultation", subject="价格咨询")
    steps = {
        "assign": lambda: crm.tickets.assign(org.agent1, t.id, assignee_id=org.agent1.user_id),
        "start": lambda: crm.tickets.start(org.agent1, t.id),
        "resolve": lambda: crm.tickets.resolve(org.agent1, t.id, "已答复"),
        "close": lambda: crm.tickets.close(org.agent1, t.id),
        "reopen": lambda: crm.tickets.reopen(org.agent1, t.id, "再问"),
    }
    for step in path:
        await steps[step]()
    before = await crm.tickets.get(org.agent1, t.id)
    with pytest.raises(InvalidTransition) as err:
        await steps[forbidden]()
    assert err.value.code == "ticket.invalid_transition"
    assert TicketAction(forbidden) not in allowed_actions(before.status)
    assert (await crm.tickets.get(org.agent1, t.id)).status is before.status


async def test_assignment_rules(crm: Crm, org) -> None:
    t = await crm.tickets.create(org.agent1, ticket_type="suggestion", subject="增加周末营业时间")
    with pytest.raises(Forbidden):  # handing to someone else needs ticket.assign
        await crm.tickets.assign(org.agent1, t.id, assignee_id=org.agent2.user_id)
    claimed = await crm.tickets.assign(org.agent1, t.id, assignee_id=org.agent1.user_id)
    assert claimed.assignee_id == org.agent1.user_id
    with pytest.raises(Forbidden) as hidden:  # agent2 (scope own) does not even see it
        await crm.tickets.start(org.agent2, t.id)
    assert hidden.value.code == "auth.out_of_scope"
    handed = await crm.tickets.assign(org.supervisor, t.id, assignee_id=org.agent2.user_id)
    assert handed.assignee_id == org.agent2.user_id
    with pytest.raises(Forbidden) as not_mine:  # agent1 created it, but it is agent2's work now
        await crm.tickets.start(org.agent1, t.id)
    assert not_mine.value.code == "ticket.not_assignee"
    assert (await crm.tickets.start(org.agent2, t.id)).status is TicketStatus.IN_PROGRESS
    with pytest.raises(ValidationError):
        await crm.tickets.assign(org.supervisor, t.id, assignee_id=999)

    # a ticket queued for a department is claimed by whoever starts it
    queued = await crm.tickets.create(org.supervisor, ticket_type="complaint", subject="退款进度",
                                      department_id=org.service_center)  # fmt: skip
    assert queued.status is TicketStatus.ASSIGNED and queued.assignee_id is None
    started = await crm.tickets.start(org.supervisor, queued.id)
    assert started.status is TicketStatus.IN_PROGRESS and started.assignee_id == org.supervisor.user_id


async def test_listing_puts_unresolved_first_then_priority_then_due(crm: Crm, org, clock: FixedClock) -> None:
    async def make(subject: str, priority: Priority, kind: str = "consultation"):
        clock.advance(timedelta(minutes=1))
        return await crm.tickets.create(org.agent1, ticket_type=kind, subject=subject, priority=priority)

    done = await make("已解决的紧急", Priority.URGENT)
    await crm.tickets.assign(org.agent1, done.id, assignee_id=org.agent1.user_id)
    await crm.tickets.start(org.agent1, done.id)
    await crm.tickets.resolve(org.agent1, done.id, "好了")
    await make("普通咨询", Priority.NORMAL)
    await make("高-咨询", Priority.HIGH)  # due in 480 min
    await make("高-投诉", Priority.HIGH, "complaint")  # due in 240 min: sooner
    await make("低", Priority.LOW)
    page = await crm.tickets.search(org.agent1, TicketQuery())
    assert [t.subject for t in page.items] == ["高-投诉", "高-咨询", "普通咨询", "低", "已解决的紧急"]
    open_page = await crm.tickets.search(org.agent1, TicketQuery(open_only=True))
    assert open_page.total == 4


async def test_supervisor_views_today_and_period(crm: Crm, org, clock: FixedClock) -> None:
    # clock starts at 2026-11-23 10:00 Shanghai; 2026-11-22 23:30 Shanghai is "yesterday"
    clock.advance(timedelta(hours=-10, minutes=-30))
    await crm.tickets.create(org.agent1, ticket_type="complaint", subject="昨天的投诉")
    clock.advance(timedelta(hours=1))  # 00:30 on the 23rd
    await crm.tickets.create(org.agent1, ticket_type="complaint", subject="今天的投诉", priority=Priority.URGENT)
    await crm.tickets.create(org.agent2, ticket_type="consultation", subject="今天的咨询")
    clock.advance(timedelta(hours=3))  # the urgent complaint (120 min) is now overdue

    today = await crm.tickets.today(org.supervisor)
    assert [t.subject for t in today.items] == ["今天的投诉", "今天的咨询"]
    assert today.items[0].overdue and not today.items[1].overdue
    both = await crm.tickets.period(org.supervisor, date(2026, 11, 22), date(2026, 11, 23))
    assert both.total == 3
    summary = await crm.tickets.summary(org.supervisor, date(2026, 11, 23))
    assert summary.total == 2 and summary.by_type == {"complaint": 1, "consultation": 1}
    assert summary.open == 2 and summary.overdue == 1
    overdue = await crm.tickets.search(org.supervisor, TicketQuery(overdue_only=True))
    assert [t.subject for t in overdue.items] == ["今天的投诉"]
    with pytest.raises(ValidationError):
        await crm.tickets.period(org.supervisor, date(2026, 11, 23), date(2026, 11, 1))


async def test_data_scope(crm: Crm, org) -> None:
    own = await crm.tickets.create(org.agent1, ticket_type="consultation", subject="agent1 的")
    other = await crm.tickets.create(org.agent2, ticket_type="consultation", subject="agent2 的")
    handed = await crm.tickets.create(org.supervisor, ticket_type="complaint", subject="派给 agent1",
                                      assignee_id=org.agent1.user_id)  # fmt: skip
    tech_made = await crm.tickets.create(org.admin, ticket_type="consultation", subject="售后部的",
                                         department_id=org.after_sales)  # fmt: skip

    async def subjects(actor) -> set[str]:
        return {t.subject for t in (await crm.tickets.search(actor, TicketQuery())).items}

    assert await subjects(org.agent1) == {own.subject, handed.subject}
    assert await subjects(org.supervisor) == {own.subject, other.subject, handed.subject}
    assert await subjects(org.admin) == {own.subject, other.subject, handed.subject, tech_made.subject}
    with pytest.raises(Forbidden):
        await crm.tickets.get(org.agent1, other.id)
    with pytest.raises(Forbidden):
        await crm.tickets.comment(org.agent1, other.id, "偷看")
    with pytest.raises(Forbidden):
        await crm.tickets.create(org.tech_pudong, ticket_type="consultation", subject="技师不能建单")


async def test_sla_is_configurable(crm: Crm, org) -> None:
    await crm.tickets.set_sla(org.admin, "suggestion", Priority.NORMAL, 60)
    t = await crm.tickets.create(org.agent1, ticket_type="suggestion", subject="建议")
    assert from_iso(t.due_at) - from_iso(t.created_at) == timedelta(minutes=60)
    raised = await crm.tickets.update(org.agent1, t.id, priority=Priority.URGENT)
    assert from_iso(raised.due_at) - from_iso(t.created_at) == timedelta(minutes=1440)
    with pytest.raises(Forbidden):
        await crm.tickets.set_sla(org.agent1, "suggestion", Priority.NORMAL, 1)
    with pytest.raises(ValidationError):
        await crm.tickets.set_sla(org.admin, "praise", Priority.NORMAL, 60)
    with pytest.raises(ValidationError):
        await crm.tickets.create(org.agent1, ticket_type="consultation", subject="x", priority=9)
