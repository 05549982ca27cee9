"""我的工作台: own schedule with reminders, internal messages, notices with read receipts, and
dictionary items that cannot be deleted while records use them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError
from crm.service import Crm


async def test_my_schedule_reminds_shortly_before_and_until_done(crm: Crm, org, clock: FixedClock) -> None:
    now = clock.now()
    call_back = await crm.schedule.add(org.agent1, "回电杨女士：退款进度", now + timedelta(hours=2),
                                       remind_at=now + timedelta(hours=1, minutes=50))
    await crm.schedule.add(org.agent1, "周会", now + timedelta(hours=5))
    assert [i.title for i in await crm.schedule.day(org.agent1)] == ["回电杨女士：退款进度", "周会"]
    assert await crm.schedule.reminders(org.agent1) == []
    clock.advance(timedelta(hours=1, minutes=40))  # ten minutes before the reminder: due soon
    due = await crm.schedule.reminders(org.agent1)
    assert [i.id for i in due] == [call_back.id] and due[0].reminding
    assert [i.reminding for i in await crm.schedule.day(org.agent1)] == [True, False]
    # Nobody else sees, finishes or deletes my items.
    assert await crm.schedule.day(org.agent2) == []
    with pytest.raises(NotFound):
        await crm.schedule.mark_done(org.agent2, call_back.id)
    done = await crm.schedule.mark_done(org.agent1, call_back.id)
    assert done.done_at is not None and not done.reminding
    assert await crm.schedule.reminders(org.agent1) == []
    with pytest.raises(InvalidTransition):
        await crm.schedule.mark_done(org.agent1, call_back.id)
    with pytest.raises(ValidationError) as late:
        await crm.schedule.add(org.agent1, "x", now + timedelta(hours=1), remind_at=now + timedelta(hours=2))
    assert late.value.code == "schedule.remind_after"
    with pytest.raises(ValidationError):
        await crm.schedule.add(org.agent1, "  ", now)
    with pytest.raises(Forbidden):
        await crm.schedule.add(SYSTEM, "x", now)


async def test_unfinished_items_of_earlier_days_stay_on_today(crm: Crm, org, clock: FixedClock) -> None:
    yesterday = clock.now() - timedelta(days=1)
    await crm.schedule.add(org.agent1, "昨天没打完的回访", yesterday)
    finished = await crm.schedule.add(org.agent1, "昨天已完成", yesterday)
    await crm.schedule.mark_done(org.agent1, finished.id)
    assert [i.title for i in await crm.schedule.day(org.agent1)] == ["昨天没打完的回访"]


async def test_messages_to_a_colleague_and_to_a_department_subtree(crm: Crm, org) -> None:
    one = await crm.staff_messages.send(org.agent1, "请帮忙", "会员13800138000要求主管回电", to_user_id=org.supervisor.user_id)
    assert one.recipients == 1 and one.to_name == "用户sup1"
    assert await crm.staff_messages.unread_count(org.supervisor) == 1
    everyone = await crm.staff_messages.send(org.admin, "系统维护", "今晚22点停机", to_department_id=org.hq)
    # 总部 and everything below it: the auditor, the service centre and after-sales staff (not the sender).
    assert everyone.recipients == 6
    inbox = await crm.staff_messages.inbox(org.supervisor)
    assert [m.subject for m in inbox.items] == ["系统维护", "请帮忙"] and all(m.read_at is None for m in inbox.items)
    await crm.staff_messages.mark_read(org.supervisor, one.id)
    await crm.staff_messages.mark_read(org.supervisor, one.id)  # idempotent
    assert await crm.staff_messages.unread_count(org.supervisor) == 1
    assert [m.subject for m in (await crm.staff_messages.inbox(org.supervisor, unread_only=True)).items] == ["系统维护"]
    with pytest.raises(NotFound):
        await crm.staff_messages.mark_read(org.tech_pudong, one.id)  # not theirs
    assert await crm.staff_messages.unread_count(org.tech_pudong) == 1  # the department message only
    assert [m.subject for m in await crm.staff_messages.sent(org.agent1)] == ["请帮忙"]
    with pytest.raises(ValidationError):
        await crm.staff_messages.send(org.agent1, "两个都选", to_user_id=org.agent2.user_id, to_department_id=org.hq)
    with pytest.raises(ValidationError):
        await crm.staff_messages.send(org.agent1, "没人", to_user_id=999_999)
    colleagues, departments = await crm.staff_messages.directory(org.agent1)
    assert len(colleagues) == 7 and {d.name for d in departments} == {"总部", "客服中心", "售后服务部"}


async def test_notices_reach_their_departments_until_expiry_with_receipts(crm: Crm, org, clock: FixedClock) -> None:
    policy = await crm.notices.publish(org.admin, "退款新规", "自12月1日起……", department_ids=[org.service_center],
                                       pinned=True)
    news = await crm.notices.publish(org.supervisor, "年会通知", "12月20日晚6点",
                                     expires_at=clock.now() + timedelta(days=2))
    with pytest.raises(Forbidden):
        await crm.notices.publish(org.agent1, "x", "y")
    assert [n.title for n in await crm.notices.current(org.agent1)] == ["退款新规", "年会通知"]  # pinned first
    assert [n.title for n in await crm.notices.current(org.tech_pudong)] == ["年会通知"]  # not their department
    with pytest.raises(NotFound):
        await crm.notices.read(org.tech_pudong, policy.id)
    assert await crm.notices.unread_count(org.agent1) == 2
    opened = await crm.notices.read(org.agent1, policy.id)
    assert opened.read_at is not None and (await crm.notices.read(org.agent1, policy.id)).read_at == opened.read_at
    receipts = await crm.notices.receipts(org.admin, policy.id)
    assert (receipts.audience, receipts.read) == (3, 1)  # supervisor and two agents
    assert receipts.readers[-1].display_name == "用户agent1" and receipts.readers[-1].read_at
    clock.advance(timedelta(days=3))
    assert [n.title for n in await crm.notices.current(org.agent1)] == ["退款新规"]  # the news expired
    await crm.notices.withdraw(org.admin, policy.id)
    assert await crm.notices.current(org.agent1) == []
    assert [n.id for n in await crm.notices.list_all(org.admin)] == [news.id, policy.id]
    with pytest.raises(InvalidTransition):
        await crm.notices.withdraw(org.admin, policy.id)
    with pytest.raises(ValidationError):
        await crm.notices.publish(org.admin, "x", "y", department_ids=[999])


async def test_a_dictionary_item_in_use_cannot_be_deleted(crm: Crm, org) -> None:
    await crm.dictionaries.put_item(org.admin, "source_channel", "douyin", "抖音", sort_order=80)
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"], source_channel="douyin")
    with pytest.raises(Conflict) as used:
        await crm.dictionaries.delete_item(org.admin, "source_channel", "douyin")
    assert used.value.code == "dictionary.in_use" and used.value.status == 409
    await crm.dictionaries.put_item(org.admin, "source_channel", "douyin", "抖音", sort_order=80, active=False)
    assert "douyin" not in [i.code for i in await crm.dictionaries.items("source_channel")]
    await crm.members.update(org.agent1, member.id, source_channel=None)
    await crm.dictionaries.delete_item(org.admin, "source_channel", "douyin")
    assert "douyin" not in [i.code for i in await crm.dictionaries.items("source_channel", include_inactive=True)]
    with pytest.raises(NotFound):
        await crm.dictionaries.delete_item(org.admin, "source_channel", "douyin")
    with pytest.raises(Forbidden):
        await crm.dictionaries.delete_item(org.agent1, "source_channel", "web")
    assert "ticket_category" in await crm.dictionaries.dictionaries()


async def test_my_work_counts_what_is_mine(crm: Crm, org) -> None:
    ticket = await crm.tickets.create(org.agent1, ticket_type="complaint", subject="投诉", description="")
    await crm.tickets.assign(org.supervisor, ticket.id, assignee_id=org.agent2.user_id)
    assert (await crm.workspace.my_work(org.agent2)).open_tickets == 1
    assert (await crm.workspace.my_work(org.agent1)).open_tickets == 0
