"""群发 with preview: birthday-month filter, opt-outs (退订) skipped, {appointment_time}, and
e-mail through the SMTP relay set in the site settings, delivered to a real SMTP server."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest

from crm.errors import Forbidden, NotFound, ValidationError
from crm.experts import HoursSpec
from crm.members import MemberQuery
from crm.messaging import MessageStatus
from crm.service import Crm

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def _members(crm: Crm, org) -> dict[str, int]:
    ids = {}
    for name, email, birthday, tags in (("杨柳", "yl@example.com", "1990-11-05", ["VIP"]),
                                        ("林晓", "lx@example.com", "1988-11-30", ["VIP"]),
                                        ("周敏", "zm@example.com", "1991-12-01", ["VIP"]),
                                        ("陈静", None, "1992-11-11", ["VIP"]),
                                        ("黑名单", "bad@example.com", "1993-11-12", ["VIP"]),
                                        ("退订者", "out@example.com", "1994-11-13", ["VIP"])):  # fmt: skip
        member = await crm.members.create(org.agent1, name, phones=[f"1380013{len(ids):04d}"], email=email,
                                          birthday=birthday, tags=tags)  # fmt: skip
        ids[name] = member.id
    await crm.members.set_blacklist(org.supervisor, ids["黑名单"], True, "骚扰")
    await crm.opt_outs.opt_out(org.agent1, ids["退订者"], "email", "回复TD")
    return ids


async def test_preview_counts_and_renders_then_the_send_queues_the_same(crm: Crm, org) -> None:
    ids = await _members(crm, org)
    await crm.templates.put(org.supervisor, "bday_mail", channel="email", name="生日关怀", subject="{name}，生日快乐",
                            body="亲爱的{name}：\n祝您生日快乐！本月到店护理享8折。")  # fmt: skip
    query = MemberQuery(tag="VIP")
    preview = await crm.messaging.preview_bulk(org.supervisor, "bday_mail", query, birthday_month=11, sample=1)
    # November birthdays: 杨柳, 林晓 get it; 陈静 has no e-mail, one is blacklisted, one opted out.
    assert (preview.matched, preview.ready, preview.blacklisted, preview.opted_out, preview.unreachable) == (5, 2, 1, 1, 1)
    assert [(s.member_name, s.recipient, s.subject) for s in preview.samples] == [("杨柳", "yl@example.com", "杨柳，生日快乐")]
    assert preview.samples[0].body.startswith("亲爱的杨柳：")
    result = await crm.messaging.send_bulk(org.supervisor, "bday_mail", query, birthday_month=11)
    assert (result.queued, result.skipped) == (2, 3)
    queued = await crm.messaging.outbox(org.supervisor, batch_id=result.batch_id)
    assert sorted(m.member_id for m in queued.items) == sorted([ids["杨柳"], ids["林晓"]])
    with pytest.raises(ValidationError):
        await crm.messaging.preview_bulk(org.supervisor, "bday_mail", query, birthday_month=13)
    with pytest.raises(Forbidden):
        await crm.messaging.preview_bulk(org.agent1, "bday_mail", query)
    # The opt-out is per channel: an SMS still reaches the member who stopped e-mail.
    await crm.templates.put(org.supervisor, "promo_sms", channel="sms", name="促销", body="【美颜】{name}，双十二全场8折")
    sms = await crm.messaging.preview_bulk(org.supervisor, "promo_sms", query)
    assert (sms.ready, sms.opted_out, sms.blacklisted) == (5, 0, 1)
    await crm.opt_outs.opt_in(org.agent1, ids["退订者"], "email")
    assert (await crm.messaging.preview_bulk(org.supervisor, "bday_mail", query, birthday_month=11)).ready == 3
    with pytest.raises(NotFound):
        await crm.opt_outs.opt_in(org.agent1, ids["退订者"], "email")
    assert await crm.opt_outs.list(org.agent1) == []


async def test_appointment_time_is_the_next_booked_visit_in_site_time(crm: Crm, org, make_user) -> None:
    expert = await make_user(crm, "expert1", ["expert"], department_id=org.service_center)
    change = await crm.catalogue.propose_new(org.supervisor, sku="FACIAL-60", kind="service", name="光子嫩肤",
                                             price_cents=68_000, duration_minutes=60)  # fmt: skip
    facial = (await crm.catalogue.approve(org.admin, change.id)).id
    await crm.experts.put_expert(org.supervisor, expert.user_id, title="顾问", service_ids=[facial])
    await crm.experts.set_hours(org.supervisor, expert.user_id, [HoursSpec(d, "09:00", "18:00") for d in range(7)])
    booked = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"], tags=["预约"])
    await crm.members.create(org.agent1, "林晓", phones=["13900139000"], tags=["预约"])
    await crm.appointments.book(org.agent1, member_id=booked.id, expert_id=expert.user_id, item_id=facial,
                                starts_at=datetime(2026, 11, 25, 14, 30, tzinfo=SHANGHAI))  # fmt: skip
    await crm.templates.put(org.supervisor, "remind", channel="sms", name="预约提醒",
                            body="【美颜】{name}您好，您预约的护理时间为{appointment_time}，请准时到店。")  # fmt: skip
    preview = await crm.messaging.preview_bulk(org.supervisor, "remind", MemberQuery(tag="预约"))
    assert (preview.ready, preview.unreachable) == (1, 1)  # 林晓 has no appointment
    assert preview.samples[0].body == "【美颜】杨柳您好，您预约的护理时间为2026-11-25 14:30，请准时到店。"


async def test_email_goes_through_the_relay_set_in_the_settings(crm: Crm, org, smtp_server) -> None:
    host, port, sink = smtp_server
    member = await crm.members.create(org.agent1, "杨柳", phones=["13800138000"], email="yl@example.com")
    await crm.templates.put(org.supervisor, "hello", channel="email", name="问候", subject="{name}，您好",
                            body="尊敬的{name}：感谢您的支持！")  # fmt: skip
    assert await crm.mail_settings.get() is None
    await crm.messaging.send_to_member(org.agent1, "hello", member.id)
    assert (await crm.messaging.deliver_due()).sent == 1 and sink.messages == []  # no relay: kept locally
    with pytest.raises(Forbidden):
        await crm.mail_settings.put(org.agent1, host, port, "service@meiyan.example")
    with pytest.raises(ValidationError):
        await crm.mail_settings.put(org.admin, host, 70000, "service@meiyan.example")
    settings = await crm.mail_settings.put(org.admin, host, port, "service@meiyan.example", sender_name="美颜连锁")
    assert settings is not None and settings.port == port
    message = await crm.messaging.send_to_member(org.agent1, "hello", member.id)
    assert (await crm.messaging.deliver_due()).sent == 1
    delivered = await crm.messaging.get(org.agent1, message.id)
    assert delivered.status is MessageStatus.SENT and delivered.provider == "smtp"
    mail = message_from_bytes(sink.messages[0].content, policy=policy.default)
    assert mail["Subject"] == "杨柳，您好" and mail.get_content().strip() == "尊敬的杨柳：感谢您的支持！"
    assert "美颜连锁" in str(mail["From"]) and sink.messages[0].rcpt_tos == ["yl@example.com"]
    assert await crm.mail_settings.put(org.admin, "", 25, "") is None  # cleared: local again
