"""The beauty chain's second half of the demo: catalogue, experts and their bookings, purchases,
return visits with survey answers, the knowledge base, message templates and greetings.

Called by `crm.demo.seed_demo`: `setup_salon` runs at the start of the simulated 60 days (the
catalogue goes through approval like any change), `plan_salon` adds its events to the same
time-ordered plan, so consultations, purchases and follow-ups happen at believable moments on the
fixed clock, through the real services and their rules. It draws from its own random generator,
so the first half of the demo stays what it was for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crm.access import SYSTEM, Actor
from crm.appointments import Recommendation
from crm.errors import CrmError
from crm.experts import HoursSpec
from crm.orders import OrderLine
from crm.surveys import Answer, QuestionSpec
from crm.visits import VisitQuery, VisitStatus

if TYPE_CHECKING:
    from crm.demo import _Plan, _Staff
    from crm.service import Crm

# sku, kind, name, price (yuan), minutes, category, description
CATALOGUE = [
    ("FW-CONSULT", "service", "专家面诊", 0, 30, "consultation", "美容专家一对一面诊，分析肤质并制定护理方案"),
    ("FW-IPL", "service", "光子嫩肤", 680, 60, "facial", "IPL强脉冲光改善色斑、毛孔与肤色不均"),
    ("FW-HYDRA", "service", "水光针", 1280, 45, "injection", "玻尿酸微滴注射，深层补水"),
    ("FW-THERMA", "service", "热玛吉", 9800, 90, "lifting", "射频紧致提拉，改善松弛与细纹"),
    ("FW-CLEAN", "service", "深层清洁护理", 298, 60, "facial", "小气泡清洁、去黑头、补水导入"),
    ("FW-SPA", "service", "肩颈舒缓SPA", 398, 60, "body", "精油按摩舒缓肩颈疲劳"),
    ("FW-EYE", "service", "眼部护理", 358, 45, "facial", "淡化黑眼圈与细纹"),
    ("PR-CREAM", "product", "修护面霜", 299, None, "product", "敏感肌适用，修护屏障"),
    ("PR-MASK", "product", "补水面膜（5片）", 128, None, "product", "玻尿酸补水面膜"),
    ("PR-SERUM", "product", "玻尿酸精华", 459, None, "product", "高浓度玻尿酸精华液30ml"),
]  # fmt: skip
EXPERTS = [("expert1", "李静怡", "首席美容专家"), ("expert2", "苏雅", "高级皮肤管理师"), ("expert3", "许可", "资深美容顾问")]
# (category, title, body, public, pinned, published)
ARTICLES = [
    ("术后护理", "玻尿酸注射后注意事项", "注射玻尿酸后24小时内不要沾水、不要化妆；一周内避免桑拿、汗蒸和剧烈运动；"
     "两周内不要按摩注射部位。如出现持续红肿或疼痛，请及时联系门店。", True, False, True),
    ("常见问题", "光子嫩肤的疗程安排", "光子嫩肤一般每3-4周做一次，4-6次为一个疗程。术后注意防晒，一周内避免去角质产品。", True, True, True),
    ("术后护理", "热玛吉术后护理", "热玛吉术后可正常洗脸化妆，效果在1-3个月逐渐显现，建议加强保湿与防晒。", True, False, True),
    ("会员服务", "会员积分规则", "消费1元积1分，积分可兑换护理项目和产品；生日当月消费双倍积分；积分有效期两年。", True, True, True),
    ("会员服务", "会员等级与权益", "普通、银卡、金卡、钻石四个等级，按年度消费金额升级。金卡及以上享专属顾问与优先预约。", True, False, True),
    ("门店信息", "门店营业时间", "各门店营业时间为每天10:00-21:00，节假日照常营业。停车请使用商场地下停车场。", True, False, True),
    ("常见问题", "预约改期与取消规则", "预约可在到店前2小时免费改期或取消；无故爽约三次以上将暂停线上预约。", True, False, True),
    ("内部规范", "投诉处理流程", "接到投诉后2小时内联系客户致歉，24小时内给出处理方案，结案后三天内回访。", False, False, True),
    ("内部规范", "敏感肌客户接待规范", "敏感肌客户护理前须做皮肤测试，禁止使用含酒精和果酸的产品。", False, False, True),
    ("常见问题", "新品上市：修护面霜", "敏感肌适用的修护面霜即将上市，敬请期待。", True, False, False),
]  # fmt: skip
TEMPLATES = [
    ("birthday", "sms", "生日祝福", None, "【美颜连锁】亲爱的{name}，祝您生日快乐！生日当月到店消费享双倍积分。"),
    ("points_notice", "email", "积分提醒", "{name}，您的积分账单",
     "尊敬的{name}：\n您当前的积分为{points}分，会员级别为{level}。积分可在门店兑换护理项目和产品。\n美颜连锁客服中心"),
    ("new_service", "sms", "新项目通知", None, "【美颜连锁】{name}您好，{service}已在门店上线，{level}会员预约立减{discount}元。"),
    ("womens_day", "sms", "妇女节问候", None, "【美颜连锁】{name}，女神节快乐！3月8日当天全场护理8.8折。"),
    ("spring", "sms", "春节问候", None, "【美颜连锁】{name}，新春快乐！感谢您一年来的支持，祝您新年美丽常在。"),
]  # fmt: skip
_NOTES = ["混合性皮肤，T区出油，两颊偏干", "敏感肌，面部泛红，屏障受损", "色斑较多，以晒斑为主", "轻度松弛，法令纹明显",
          "毛孔粗大，有黑头", "肤色暗沉，缺水"]  # fmt: skip
_NEEDS = ["希望改善毛孔粗大", "想淡化色斑", "希望皮肤更紧致", "希望补水提亮", "想缓解敏感泛红"]
_COMMENTS = ["美容师很专业", "环境很好", "等待时间有点长", "效果明显，会再来", ""]


@dataclass
class Salon:
    items: dict[str, int]
    experts: list[Actor]
    survey_id: int
    question_ids: list[int]


async def setup_salon(crm: Crm, staff: _Staff) -> Salon:
    """Catalogue (proposed by the supervisor, approved by the auditor), experts and their hours,
    the follow-up survey, knowledge-base articles, templates and greeting days."""
    items: dict[str, int] = {}
    for sku, kind, name, price, minutes, category, description in CATALOGUE:
        change = await crm.catalogue.propose_new(staff.supervisor, sku=sku, kind=kind, name=name, price_cents=price * 100,
                                                 duration_minutes=minutes, category=category, description=description)  # fmt: skip
        items[sku] = (await crm.catalogue.approve(staff.auditor, change.id, note="价格已核对")).id
    rejected = await crm.catalogue.propose_change(staff.supervisor, items["FW-IPL"], price_cents=78_000)
    await crm.catalogue.reject(staff.auditor, rejected.id, "涨价需总部批准")
    await crm.catalogue.propose_change(staff.supervisor, items["PR-MASK"], price_cents=13_800)  # awaits the approver
    services = [items[sku] for sku, kind, *_ in CATALOGUE if kind == "service"]
    hours = [HoursSpec(d, "10:00", "13:00") for d in range(7)] + [HoursSpec(d, "14:00", "21:00") for d in range(7)]
    for expert in staff.experts:
        await crm.experts.put_expert(staff.supervisor, expert.user_id, title=dict((e[0], e[2]) for e in EXPERTS)
                                     [expert.username], service_ids=services)  # fmt: skip
        await crm.experts.set_hours(staff.supervisor, expert.user_id, hours)
    survey = await crm.surveys.create(staff.supervisor, "售后满意度回访", [
        QuestionSpec("scale", "您对本次服务的总体满意度（1-5分）？", satisfaction=True),
        QuestionSpec("choice", "美容师/技师是否准时？", ("准时", "稍有延迟", "严重迟到")),
        QuestionSpec("multi_choice", "您还关注哪些项目？", ("美白", "补水", "抗衰老", "身体护理"), required=False),
        QuestionSpec("text", "您还有什么意见或建议？", required=False),
    ], description="服务完成后三天内电话回访")  # fmt: skip
    survey = await crm.surveys.set_status(staff.supervisor, survey.id, "active")
    await crm.dictionaries.set_int(SYSTEM, "visit.followup_survey_id", survey.id)
    categories: dict[str, int] = {}
    for category, title, body, public, pinned, published in ARTICLES:
        if category not in categories:
            categories[category] = (await crm.knowledge.create_category(staff.supervisor, category,
                                                                        sort_order=len(categories))).id  # fmt: skip
        await crm.knowledge.create(staff.supervisor, title=title, body=body, category_id=categories[category],
                                   public=public, pinned=pinned, publish=published)  # fmt: skip
    for code, channel, name, subject, body in TEMPLATES:
        await crm.templates.put(staff.supervisor, code, channel=channel, name=name, subject=subject, body=body)
    await crm.messaging.put_greeting_day(staff.supervisor, "03-08", "妇女节", "womens_day")
    await crm.messaging.put_greeting_day(staff.supervisor, "2027-02-06", "春节", "spring")
    return Salon(items, staff.experts, survey.id, [q.id for q in survey.questions])


def plan_salon(plan: _Plan, crm: Crm, staff: _Staff, salon: Salon, rng: random.Random, members: int,
               start: datetime, end: datetime) -> None:  # fmt: skip
    """Consultations over the last three weeks (members have all joined by then), purchases,
    the services they paid for, knowledge-base reading, a bulk SMS, greetings and return visits."""
    recent = end - timedelta(days=21)
    for i in range(members):
        if rng.random() < 0.25:
            booked_at = recent + (end - recent) * rng.random() * 0.9
            plan.at(booked_at, _consultation(plan, crm, staff, salon, random.Random(rng.random()), f"member{i}", end))
    for title_index in range(min(members, 40)):
        plan.at(start + timedelta(days=45, minutes=37 * title_index), _read_articles(crm, random.Random(title_index)))
    plan.at(end - timedelta(days=10), lambda: _bulk(crm, staff))
    for days_back in range(7, -1, -1):  # the scheduler's daily run, 09:00 local, for the last week
        morning = (end - timedelta(days=days_back)).astimezone(crm.clock.tz).replace(hour=9, minute=0, second=0)
        if morning < end:
            greet_day = morning.date()
            plan.at(morning, lambda d=greet_day: crm.messaging.run_due_greetings(d))
    plan.at(end - timedelta(minutes=30), lambda: _return_visits(crm, staff, salon, random.Random(members)))
    plan.at(end - timedelta(minutes=5), lambda: crm.messaging.deliver_due(limit=1000))


def _consultation(plan: _Plan, crm: Crm, staff: _Staff, salon: Salon, rng: random.Random, key: str,
                  end: datetime) -> Callable[[], Awaitable[Any]]:  # fmt: skip
    """Book a consultation; what follows is decided when it is due (a chain of plan events)."""
    agent = rng.choice(staff.agents)
    expert = rng.choice(salon.experts)

    async def book() -> None:
        member_id = plan.ids[key]
        slot_day = (crm.clock.now() + timedelta(days=rng.randint(1, 4))).astimezone(crm.clock.tz).date()
        slots = await crm.appointments.free_slots(agent, expert.user_id, slot_day, salon.items["FW-CONSULT"])
        if not slots:
            return
        chosen = rng.choice(slots)
        try:
            appointment = await crm.appointments.book(agent, member_id=member_id, expert_id=expert.user_id,
                                                      item_id=salon.items["FW-CONSULT"], channel="phone",
                                                      starts_at=datetime.fromisoformat(chosen.starts_at.replace("Z", "+00:00")))  # fmt: skip
        except CrmError:
            return  # the member is busy then: the agent offers another day later
        starts = datetime.fromisoformat(appointment.starts_at.replace("Z", "+00:00"))
        outcome = rng.random()
        if outcome < 0.1:
            plan_later(crm.clock.now() + timedelta(hours=rng.randint(2, 20)),
                       lambda: crm.appointments.cancel(agent, appointment.id, "客户临时有事"))  # fmt: skip
        elif outcome < 0.2:
            plan_later(starts + timedelta(minutes=40), lambda: crm.appointments.mark_no_show(agent, appointment.id))
        else:
            plan_later(starts + timedelta(minutes=25), _consult(plan, crm, salon, rng, agent, expert, member_id,
                                                                appointment.id, end))  # fmt: skip

    def plan_later(when: datetime, action: Callable[[], Awaitable[Any]]) -> None:
        if when < end:
            plan.later(when, action)  # decided now, happening later in the replay

    return book


def _consult(plan: _Plan, crm: Crm, salon: Salon, rng: random.Random, agent: Actor, expert: Actor, member_id: int,
             appointment_id: int, end: datetime) -> Callable[[], Awaitable[Any]]:  # fmt: skip
    async def run() -> None:
        treatment = rng.choice(["FW-IPL", "FW-HYDRA", "FW-THERMA", "FW-CLEAN", "FW-SPA", "FW-EYE"])
        product = rng.choice(["PR-CREAM", "PR-MASK", "PR-SERUM"])
        await crm.appointments.record_consultation(
            expert, appointment_id, notes=rng.choice(_NOTES), customer_needs=rng.choice(_NEEDS),
            recommendations=[Recommendation(salon.items[treatment], "建议一个疗程"), Recommendation(salon.items[product], "居家使用")],
        )  # fmt: skip
        await crm.appointments.complete(expert, appointment_id)
        if rng.random() < 0.5:
            return
        lines = [OrderLine(salon.items[treatment], 1)] + ([OrderLine(salon.items[product], 1)] if rng.random() < 0.5 else [])
        order = await crm.orders.create(agent, member_id=member_id, lines=lines, appointment_id=appointment_id)
        await crm.orders.pay(agent, order.id, method=rng.choice(["wechat", "alipay", "card", "stored_value"]),
                             amount_cents=order.total_cents)  # fmt: skip
        day = (crm.clock.now() + timedelta(days=rng.randint(2, 6))).astimezone(crm.clock.tz).date()
        slots = await crm.appointments.free_slots(agent, expert.user_id, day, salon.items[treatment])
        if not slots:
            return
        starts = datetime.fromisoformat(rng.choice(slots).starts_at.replace("Z", "+00:00"))
        try:
            service = await crm.appointments.book(agent, member_id=member_id, expert_id=expert.user_id,
                                                  item_id=salon.items[treatment], starts_at=starts, order_id=order.id)  # fmt: skip
        except CrmError:
            return
        if starts + timedelta(hours=2) < end:
            plan.later(starts + timedelta(hours=2), lambda: crm.appointments.complete(expert, service.id))

    return run


def _read_articles(crm: Crm, rng: random.Random) -> Callable[[], Awaitable[Any]]:
    async def run() -> None:
        page = await crm.knowledge.search(None, limit=20)
        for article in rng.sample(page.items, k=min(len(page.items), rng.randint(1, 3))):
            await crm.knowledge.read(None, article.id)

    return run


async def _bulk(crm: Crm, staff: _Staff) -> None:
    from crm.members import MemberQuery

    await crm.messaging.send_bulk(staff.supervisor, "new_service", MemberQuery(level="gold"),
                                  variables={"service": "热玛吉第四代", "discount": 500})  # fmt: skip


async def _return_visits(crm: Crm, staff: _Staff, salon: Salon, rng: random.Random) -> None:
    """The agents work through the follow-ups that are due: most are reached and answer the survey."""
    due = await crm.visits.search(SYSTEM, VisitQuery(status=VisitStatus.OPEN, due_before=crm.clock.now()), limit=200)
    q_scale, q_time, q_interest, q_text = salon.question_ids
    for visit in due.items:
        agent = rng.choice(staff.agents)
        roll = rng.random()
        if roll < 0.12:
            await crm.visits.record_outcome(agent, visit.id, "unreachable", note="无人接听",
                                            retry_at=crm.clock.now() + timedelta(days=1))  # fmt: skip
        elif roll < 0.18:
            await crm.visits.record_outcome(agent, visit.id, "refused", note="客户不愿接受回访")
        else:
            answers = [Answer(q_scale, scale_value=rng.choices([5, 4, 3, 2, 1], weights=[45, 35, 12, 5, 3])[0]),
                       Answer(q_time, choice=rng.choices(["准时", "稍有延迟", "严重迟到"], weights=[80, 15, 5])[0])]  # fmt: skip
            if rng.random() < 0.5:
                answers.append(Answer(q_interest, choices=tuple(rng.sample(["美白", "补水", "抗衰老", "身体护理"], 2))))
            comment = rng.choice(_COMMENTS)
            if comment:
                answers.append(Answer(q_text, text=comment))
            await crm.visits.record_outcome(agent, visit.id, "reached", note="回访完成", answers=answers)
