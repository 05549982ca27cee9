"""短信/邮件: templates and rendering, the outbox with retries and backoff, bulk sends, greetings."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from crm.clock import FixedClock, from_iso
from crm.errors import Forbidden, InvalidTransition, NotFound, ValidationError
from crm.members import MemberQuery
from crm.messaging import MAX_ATTEMPTS, MessageStatus, MessagingService, backoff_seconds
from crm.providers import Channel
from crm.providers.http_sms import HttpSmsProvider
from crm.providers.smtp import SmtpProvider
from crm.service import Crm
from crm.templates import render, variables_of


def test_rendering_rules() -> None:
    assert variables_of("{name}您好，您的积分为{points}，{name}") == ["name", "points"]
    assert render("{name}您好，积分{points}分。{{活动}}", {"name": "杨柳", "points": 1200}) == "杨柳您好，积分1200分。{活动}"
    with pytest.raises(ValidationError) as missing:
        render("{name}，生日快乐！您的生日是{birthday}", {"name": "杨柳", "birthday": None})
    assert missing.value.code == "template.missing_variable" and "{birthday}" in missing.value.message
    for broken in ("{Name}", "{name", "name}", "{0}", "{name.__class__}", "{name!r}"):
        with pytest.raises(ValidationError) as syntax:
            variables_of(broken)
        assert syntax.value.code == "template.syntax", broken


async def _templates(crm: Crm, org) -> None:
    await crm.templates.put(org.supervisor, "birthday", channel="sms", name="生日祝福",
                            body="【美颜连锁】{name}，祝您生日快乐！本月到店护理享8折。")  # fmt: skip
    await crm.templates.put(org.supervisor, "points_mail", channel="email", name="积分提醒", subject="{name}，您的积分账单",
                            body="{name}您好：\n您当前积分{points}分，会员级别{level}。\n{promo}")  # fmt: skip
    await crm.templates.put(org.supervisor, "new_service", channel="sms", name="新项目通知",
                            body="【美颜连锁】{name}您好，{service}已上线，{level}会员预约立减{discount}元。")  # fmt: skip


async def test_templates_are_checked_when_saved(crm: Crm, org) -> None:
    await _templates(crm, org)
    template = await crm.templates.get(org.agent1, "points_mail")
    assert template.variables == ("name", "points", "level", "promo") and template.channel is Channel.EMAIL
    with pytest.raises(ValidationError) as syntax:
        await crm.templates.put(org.supervisor, "bad", channel="sms", name="x", body="您好{姓名}")
    assert syntax.value.code == "template.syntax"
    with pytest.raises(ValidationError):
        await crm.templates.put(org.supervisor, "bad", channel="sms", name="x", body="x", subject="短信没有主题")
    with pytest.raises(ValidationError):
        await crm.templates.put(org.supervisor, "bad", channel="email", name="x", body="x")
    with pytest.raises(ValidationError):
        await crm.templates.put(org.supervisor, "bad", channel="sms", name="x", body="长" * 491)
    with pytest.raises(Forbidden):
        await crm.templates.put(org.agent1, "x", channel="sms", name="x", body="x")
    with pytest.raises(NotFound):
        await crm.templates.get(org.agent1, "nope")


async def test_one_message_queued_then_delivered(crm: Crm, org) -> None:
    await _templates(crm, org)
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"], email="yl@example.com", level="gold")
    await crm.points.earn(org.agent1, member.id, 1200, "消费积分")
    message = await crm.messaging.send_to_member(org.agent1, "points_mail", member.id, variables={"promo": "周末双倍积分"})
    assert message.status is MessageStatus.QUEUED and message.recipient == "yl@example.com"
    assert message.subject == "杨柳，您的积分账单" and message.body == "杨柳您好：\n您当前积分1200分，会员级别金卡。\n周末双倍积分"
    with pytest.raises(ValidationError) as missing:
        await crm.messaging.send_to_member(org.agent1, "points_mail", member.id)
    assert missing.value.code == "template.missing_variable"
    with pytest.raises(ValidationError) as reserved:
        await crm.messaging.send_to_member(org.agent1, "points_mail", member.id, variables={"promo": "x", "name": "别人"})
    assert reserved.value.code == "template.reserved_variable"
    no_mail = await crm.members.create(org.agent1, "林晓", phones=["13900139000"])
    with pytest.raises(ValidationError) as no_contact:
        await crm.messaging.send_to_member(org.agent1, "points_mail", no_mail.id, variables={"promo": "x"})
    assert no_contact.value.code == "message.no_contact"

    run = await crm.messaging.deliver_due()
    assert (run.sent, run.retrying, run.failed) == (1, 0, 0)
    sent = await crm.messaging.get(org.agent1, message.id)
    assert sent.status is MessageStatus.SENT and sent.provider == "local" and sent.provider_ref == f"local-{message.id}"
    assert (await crm.messaging.deliver_due()).sent == 0  # nothing twice
    direct = await crm.messaging.send_direct(org.agent1, "sms", "138-0013-8000", "您的快递已到门店")
    assert direct.recipient == "+8613800138000" and direct.member_id == member.id
    cancelled = await crm.messaging.cancel(org.agent1, direct.id)
    assert cancelled.status is MessageStatus.CANCELLED
    with pytest.raises(InvalidTransition):
        await crm.messaging.cancel(org.agent1, direct.id)


async def test_bulk_send_over_a_member_filter(crm: Crm, org) -> None:
    await _templates(crm, org)
    for i in range(4):
        await crm.members.create(org.agent1, f"金卡会员{i}", phones=[f"1370013700{i}"], level="gold",
                                  birthday="1990-05-0" + str(i + 1) if i else None)  # fmt: skip
    blocked = await crm.members.create(org.agent1, "黑名单", phones=["13600136000"], level="gold")
    await crm.members.set_blacklist(org.supervisor, blocked.id, True, "骚扰")
    await crm.members.create(org.agent1, "普通会员", phones=["13500135000"], level="normal")
    with pytest.raises(ValidationError) as unknown:
        await crm.messaging.send_bulk(org.supervisor, "new_service", MemberQuery(level="gold"), variables={"service": "热玛吉"})
    assert unknown.value.code == "template.missing_variable"  # {discount} has no value: nothing is queued
    result = await crm.messaging.send_bulk(org.supervisor, "new_service", MemberQuery(level="gold"),
                                           variables={"service": "热玛吉", "discount": 200})  # fmt: skip
    assert (result.queued, result.skipped) == (4, 1)
    batch = await crm.messaging.outbox(org.supervisor, batch_id=result.batch_id, limit=10)
    assert batch.total == 4 and all("热玛吉已上线，金卡会员预约立减200元" in m.body for m in batch.items)
    with pytest.raises(Forbidden):  # agents send one by one; bulk is for supervisors
        await crm.messaging.send_bulk(org.agent1, "new_service", MemberQuery(), variables={"service": "x", "discount": 1})
    # a template needing the birthday skips members without one
    await crm.templates.put(org.supervisor, "bday_note", channel="sms", name="x", body="{name}的生日是{birthday}")
    noted = await crm.messaging.send_bulk(org.supervisor, "bday_note", MemberQuery(level="gold"))
    assert (noted.queued, noted.skipped) == (3, 2)


async def test_greetings_are_queued_once_a_day(crm: Crm, org) -> None:
    await _templates(crm, org)
    await crm.members.create(org.agent1, "今天生日", phones=["13800138001"], birthday="1990-11-23")
    await crm.members.create(org.agent1, "闰日生日", phones=["13800138002"], birthday="1992-02-29")
    await crm.members.create(org.agent1, "明天生日", phones=["13800138003"], birthday="1990-11-24")
    await crm.templates.put(org.supervisor, "spring", channel="sms", name="春节问候", body="【美颜连锁】{name}，新春快乐！")
    await crm.messaging.put_greeting_day(org.supervisor, "2027-02-06", "春节", "spring")
    await crm.messaging.put_greeting_day(org.supervisor, "03-08", "妇女节", "birthday")
    with pytest.raises(ValidationError):
        await crm.messaging.put_greeting_day(org.supervisor, "02-30", "x", "spring")

    first = await crm.messaging.run_due_greetings(date(2026, 11, 23))
    assert (first.birthday, first.holiday) == (1, 0)
    again = await crm.messaging.run_due_greetings(date(2026, 11, 23))
    assert (again.birthday, again.holiday) == (0, 0)  # the scheduler ran twice: nothing twice
    leap = await crm.messaging.run_due_greetings(date(2027, 2, 28))  # 2027 has no 29 February
    assert leap.birthday == 1
    spring = await crm.messaging.run_due_greetings(date(2027, 2, 6))
    assert spring.holiday == 3
    assert (await crm.messaging.run_due_greetings(date(2028, 2, 6))).holiday == 0  # a lunar date is for one year
    assert (await crm.messaging.run_due_greetings(date(2027, 3, 8))).holiday == 3
    outbox = await crm.messaging.outbox(org.supervisor, limit=50)
    assert outbox.total == 8 and {m.body for m in outbox.items} >= {"【美颜连锁】今天生日，祝您生日快乐！本月到店护理享8折。"}


async def test_retry_with_backoff_against_a_real_smtp_server(crm: Crm, org, clock: FixedClock, smtp_server) -> None:
    host, port, sink = smtp_server
    messaging = MessagingService(crm.db, clock, crm.members, crm.templates,
                                 {Channel.EMAIL: SmtpProvider(host, port, "service@example.com")})  # fmt: skip
    await _templates(crm, org)
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"], email="yl@example.com")
    message = await messaging.send_to_member(org.agent1, "points_mail", member.id, variables={"promo": "-"})

    sink.replies += ["451 4.3.0 try later", "421 4.7.0 too busy"]
    assert (await messaging.deliver_due()).retrying == 1
    row = await messaging.get(org.agent1, message.id)
    assert row.status is MessageStatus.QUEUED and row.attempts == 1 and "451" in row.last_error
    assert from_iso(row.next_attempt_at) == clock.now() + timedelta(seconds=60)
    assert (await messaging.deliver_due()).retrying == 0  # not due yet
    clock.advance(timedelta(seconds=60))
    assert (await messaging.deliver_due()).retrying == 1
    assert from_iso((await messaging.get(org.agent1, message.id)).next_attempt_at) == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=120))
    assert (await messaging.deliver_due()).sent == 1
    delivered = await messaging.get(org.agent1, message.id)
    assert delivered.status is MessageStatus.SENT and delivered.attempts == 3 and len(sink.messages) == 1

    refused = await messaging.send_to_member(org.agent1, "points_mail", member.id, variables={"promo": "-"})
    sink.replies.append("550 5.1.1 no such user")
    assert (await messaging.deliver_due()).failed == 1  # permanent: no retry
    assert (await messaging.get(org.agent1, refused.id)).status is MessageStatus.FAILED

    stubborn = await messaging.send_to_member(org.agent1, "points_mail", member.id, variables={"promo": "-"})
    sink.replies += ["451 4.3.0 try later"] * MAX_ATTEMPTS
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run = await messaging.deliver_due()
        assert (run.retrying, run.failed) == ((1, 0) if attempt < MAX_ATTEMPTS else (0, 1))
        clock.advance(timedelta(seconds=backoff_seconds(attempt)))
    gave_up = await messaging.get(org.agent1, stubborn.id)
    assert gave_up.status is MessageStatus.FAILED and gave_up.attempts == MAX_ATTEMPTS
    assert [backoff_seconds(n) for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]


async def test_sms_through_the_http_gateway(crm: Crm, org, clock: FixedClock, sms_gateway) -> None:
    gateway = HttpSmsProvider(sms_gateway.url, "key-1", "gateway-secret")
    messaging = MessagingService(crm.db, clock, crm.members, crm.templates, {Channel.SMS: gateway})
    await _templates(crm, org)
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"])
    message = await messaging.send_to_member(org.agent1, "birthday", member.id)
    sms_gateway.statuses.append(503)
    assert (await messaging.deliver_due()).retrying == 1
    clock.advance(timedelta(minutes=1))
    assert (await messaging.deliver_due()).sent == 1
    assert sms_gateway.accepted == [{"to": "+8613800138000", "text": "【美颜连锁】杨柳，祝您生日快乐！本月到店护理享8折。",
                                     "ref": f"outbox-{message.id}"}]  # fmt: skip
    assert (await messaging.get(org.agent1, message.id)).provider_ref == "gw-1"
    # no provider for e-mail in this setup: such a message fails at once, it cannot succeed later
    member2 = await crm.members.create(org.agent1, "林晓", phones=["13900139000"], email="lx@example.com")
    mail = await messaging.send_to_member(org.agent1, "points_mail", member2.id, variables={"promo": "-"})
    assert (await messaging.deliver_due()).failed == 1
    assert "no provider" in (await messaging.get(org.agent1, mail.id)).last_error
