"""Demo data for a beauty chain's call center (美容连锁呼叫中心), deterministic for a given seed.

Everything goes through the real services, so the demo obeys every rule the product enforces
(phone normalisation, SLA, status flows, fraud checks, audit). The last 60 days are replayed as a
simulation: each member, call, ticket step, work-order step and points entry happens at its own
moment on a fixed clock, in time order, ending at `now`.

E-mail addresses use example.com/example.cn (RFC 2606) so a demo birthday mailing reaches nobody.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from crm import demo_salon
from crm.access import SYSTEM, Actor
from crm.clock import Clock, FixedClock
from crm.db import Database
from crm.org import NewUser
from crm.passwords import DEFAULT_PARAMS, ScryptParams
from crm.phones import PhoneNormaliser
from crm.service import Crm
from crm.ticket_flow import Priority

log = logging.getLogger(__name__)

DEFAULT_SEED = 20261123
HISTORY_DAYS = 60
AGENTS = 5

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
_FEMALE = "丽静敏燕艳娟霞芳婷雪慧玲洁琳颖倩萍红梅莉晶欣怡佳璐瑶雯馨月悦萌露琪蕾"
_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩"
_MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                    "156", "157", "158", "159", "176", "177", "180", "181", "182", "183", "186", "187", "188",
                    "189", "199"]  # fmt: skip
_LEVELS = [("normal", 55), ("silver", 25), ("gold", 15), ("diamond", 5)]
_TAGS = ["敏感肌", "抗衰老", "美白", "祛斑", "祛痘", "补水", "产后修复", "身体SPA", "减脂塑形", "眼部护理", "高消费", "价格敏感"]
_CHANNELS = [("phone", 30), ("wechat", 25), ("store", 20), ("referral", 12), ("web", 8), ("print", 5)]
_REGIONS = ["浦东新区", "徐汇区", "静安区", "长宁区", "闵行区"]
_STREETS = ["张杨路", "漕溪北路", "南京西路", "天山路", "莘庄路", "世纪大道", "淮海中路", "虹桥路"]

_SUBJECTS = {
    "consultation": ["光子嫩肤疗程价格咨询", "水光针效果能维持多久", "周末门店营业时间", "孕期能否做面部护理",
                     "会员积分如何兑换", "热玛吉术后注意事项", "预约改期", "新品精华适合敏感肌吗"],
    "complaint": ["美容师迟到半小时", "护理后皮肤过敏泛红", "预约时间被无故取消", "门店推销过度", "退卡退款进度慢",
                  "产品与宣传效果不符", "收费与报价不一致"],
    "suggestion": ["希望增加晚间营业时段", "建议开通线上预约", "停车位太少", "希望推出学生优惠", "休息区可以提供茶点"],
}  # fmt: skip
_CATEGORIES = {"consultation": ["product", "price", "appointment"], "complaint": ["service", "price"],
               "suggestion": ["other", "service"]}  # fmt: skip
_RESOLUTIONS = ["已电话回复客户，客户表示满意", "已安排店长致歉并赠送一次护理", "已转门店处理并回访确认",
                "已记录建议并反馈给运营部", "已为客户重新预约"]  # fmt: skip
_DEVICES = [("射频美容仪 RF-200", "RF"), ("光子脱毛仪 IPL-5", "IPL"), ("导入仪 ION-3", "ION"),
            ("洁面仪 SC-8", "SC"), ("LED面罩 LM-1", "LM")]  # fmt: skip
_FAULTS = ["无法开机", "充电无反应", "档位按键失灵", "屏幕不显示", "使用时发热异常"]
_REPAIRS = [("更换主板后恢复正常", ("MB-01", "主板")), ("更换电池后正常使用", ("BT-02", "锂电池")),
            ("清洁触点后正常", None), ("更换按键板", ("KB-03", "按键板")), ("固件升级后正常", None)]  # fmt: skip


@dataclass
class _Plan:
    """The simulation: events in time order; later events find earlier results in `ids`. An event
    may plan further ones while the replay runs (`later`): a booking decides when the visit ends."""

    events: list[tuple[datetime, int, Callable[[], Awaitable[Any]]]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    _count: int = 0

    def at(self, when: datetime, action: Callable[[], Awaitable[Any]]) -> None:
        self._count += 1
        self.events.append((when, self._count, action))

    def later(self, when: datetime, action: Callable[[], Awaitable[Any]]) -> None:
        self._count += 1
        heapq.heappush(self.events, (when, self._count, action))

    async def run(self, clock: FixedClock) -> int:
        heapq.heapify(self.events)
        done = 0
        while self.events:
            when, _, action = heapq.heappop(self.events)
            clock.set(max(when, clock.now()))
            await action()
            done += 1
        return done


def _weighted(rng: random.Random, options: list[tuple[str, int]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


async def seed_demo(
    db: Database,
    *,
    members: int = 200,
    password: str,
    admin_password: str | None = None,
    seed: int = DEFAULT_SEED,
    now: datetime | None = None,
    password_params: ScryptParams = DEFAULT_PARAMS,
) -> None:
    """Seed an empty CRM with a beauty chain: departments, users (`agent1`..`agent5`,
    `supervisor1`, `tech1`..`tech3`, `auditor1`, `expert1`..`expert3` with `password`; `admin` if
    `admin_password`), `members` members and 60 days of calls, tickets, work orders and points;
    then the salon (`crm.demo_salon`): catalogue, expert bookings and purchases, return visits
    with survey answers, knowledge base, templates and greetings.

    Does nothing if the demo users already exist (restarting `callcenter demo` on its data dir).
    """
    if await db.fetch_value("SELECT 1 FROM users WHERE username = 'agent1'"):
        log.info("demo data already present")
        return
    if members < 1:
        raise ValueError("members must be at least 1")
    end = now or Clock().now()
    clock = FixedClock(end - timedelta(days=HISTORY_DAYS))
    crm = Crm.build(db, clock=clock, password_params=password_params)
    rng = random.Random(seed)
    staff = await _organisation(crm, password, admin_password)
    salon = await demo_salon.setup_salon(crm, staff)
    plan = _Plan()
    _plan_members(plan, crm, staff, rng, members, clock.now(), end)
    demo_salon.plan_salon(plan, crm, staff, salon, random.Random(seed + 1), members, clock.now(), end)
    events = await plan.run(clock)
    log.info("demo data seeded: %d members, %d events", members, events)


#: The admin role's allow-list in the demo: loopback and the private ranges (RFC 1918, RFC 4193).
DEMO_ADMIN_NETWORKS = ("127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


@dataclass
class _Staff:
    supervisor: Actor
    agents: list[Actor]
    technicians: list[Actor]
    auditor: Actor
    experts: list[Actor]


async def _organisation(crm: Crm, password: str, admin_password: str | None) -> _Staff:
    org = crm.org
    hq = await org.create_department(SYSTEM, "美颜连锁总部")
    center = await org.create_department(SYSTEM, "客服中心", parent_id=hq.id, sort_order=1)
    after_sales = await org.create_department(SYSTEM, "售后服务部", parent_id=hq.id, sort_order=2)
    quality = await org.create_department(SYSTEM, "质检审核部", parent_id=hq.id, sort_order=3)
    experts = await org.create_department(SYSTEM, "美容专家组", parent_id=hq.id, sort_order=4)
    agent_names = ["林晓", "陈佳怡", "张婷", "王雪", "刘颖"]
    specs: list[tuple[str, str, list[str], int, str | None, str | None]] = [
        ("supervisor1", "周主管", ["supervisor"], center.id, None, "1010"),   # desk phone: listen/whisper codes
        *[(f"agent{i + 1}", agent_names[i], ["agent"], center.id, None, f"100{i + 1}") for i in range(AGENTS)],
        *[(f"tech{i + 1}", name, ["technician"], after_sales.id, _REGIONS[i], None)
          for i, name in enumerate(["赵师傅", "钱师傅", "孙师傅"])],
        ("auditor1", "吴审核", ["auditor"], quality.id, None, None),
        *[(username, name, ["expert"], experts.id, None, None) for username, name, _ in demo_salon.EXPERTS],
    ]  # fmt: skip
    users = await org.create_users(SYSTEM, [
        NewUser(username, display, password, tuple(roles), dept, region=region, extension=extension)
        for username, display, roles, dept, region, extension in specs
    ])  # fmt: skip
    if admin_password is not None:
        await org.create_user(SYSTEM, "admin", "系统管理员", admin_password, roles=["admin"], department_id=hq.id)
    # Seed 000 (远程访问针对IP的限制): administration only from the office network. The demo's
    # office is this machine and the private ranges, so the demo still works locally and on a LAN.
    await org.set_role_networks(SYSTEM, "admin", DEMO_ADMIN_NETWORKS)
    actors = {u.username: await org.actor_for_user(u.id) for u in users}
    return _Staff(
        supervisor=actors["supervisor1"],
        agents=[actors[f"agent{i + 1}"] for i in range(AGENTS)],
        technicians=[actors[f"tech{i + 1}"] for i in range(3)],
        auditor=actors["auditor1"],
        experts=[actors[username] for username, _, _ in demo_salon.EXPERTS],
    )


def _plan_members(plan: _Plan, crm: Crm, staff: _Staff, rng: random.Random, count: int, start: datetime, end: datetime) -> None:
    normaliser = PhoneNormaliser()
    used_phones: set[str] = set()
    span = (end - start) * 2 / 3  # members join in the first 40 days; history follows
    for i in range(count):
        joined = start + span * i / count + timedelta(minutes=rng.randint(0, 600))
        female = rng.random() < 0.85
        name = rng.choice(_SURNAMES) + "".join(rng.sample(_FEMALE if female else _MALE, rng.choice((1, 2))))
        mobile = _mobile(rng, normaliser, used_phones)
        phones = [mobile]
        if rng.random() < 0.15:
            phones.append(f"021-{rng.randint(2, 6)}{rng.randint(0, 9999999):07d}")
        region = rng.choice(_REGIONS)
        owner = rng.choice(staff.agents) if rng.random() < 0.4 else None
        agent = owner or rng.choice(staff.agents)
        details = dict(
            phones=phones, gender="female" if female else "male",
            email=f"member{i + 1}@{rng.choice(['example.com', 'example.cn'])}" if rng.random() < 0.3 else None,
            birthday=f"{rng.randint(1965, 2003)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            level=_weighted(rng, _LEVELS), tags=rng.sample(_TAGS, rng.randint(0, 3)),
            customer_type="personal", source_channel=_weighted(rng, _CHANNELS),
            relationship_level=_weighted(rng, [("general", 60), ("good", 30), ("close", 10)]),
            notes=rng.choice(["", "", "喜欢周末预约", "对酒精过敏", "只接受女美容师", "工作日晚上方便接电话"]),
            owner_id=owner.user_id if owner else None, card_no=f"MX{100000 + i + 1}",
        )  # fmt: skip
        key = f"member{i}"
        plan.at(joined, _create_member(plan, crm, agent, key, name, details))
        _plan_history(plan, crm, staff, rng, key, agent, joined, end, mobile, region)


def _mobile(rng: random.Random, normaliser: PhoneNormaliser, used: set[str]) -> str:
    while True:
        number = rng.choice(_MOBILE_PREFIXES) + f"{rng.randint(0, 99_999_999):08d}"
        if number not in used and normaliser.lookup_key(number):
            used.add(number)
            return number


def _create_member(plan: _Plan, crm: Crm, agent: Actor, key: str, name: str, details: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> None:
        member = await crm.members.create(agent, name, **details)
        plan.ids[key] = member.id

    return run


def _plan_history(
    plan: _Plan, crm: Crm, staff: _Staff, rng: random.Random, key: str, agent: Actor,
    joined: datetime, end: datetime, mobile: str, region: str,
) -> None:  # fmt: skip
    def moment(after: datetime) -> datetime:
        return after + (end - after) * rng.random() * 0.95

    for _ in range(rng.randint(0, 3)):  # purchases earn points, some are spent
        when = moment(joined + timedelta(minutes=1))
        amount = rng.choice([100, 200, 380, 500, 880, 1280])
        order_no = f"SO{when:%Y%m%d}{rng.randint(1000, 9999)}"
        plan.at(when, lambda a=amount, o=order_no: crm.points.earn(agent, plan.ids[key], a, "消费积分", reference=o))
        if rng.random() < 0.3:
            plan.at(moment(when), lambda a=amount: _spend(crm, agent, plan.ids[key], a // 2))
    calls = [moment(joined + timedelta(minutes=1)) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
    if rng.random() < 0.08:  # today's calls, so the supervisor's "today" view has something to show
        calls.append(end - timedelta(minutes=rng.randint(15, 540)))
    for when in calls:  # most answered calls lead to a ticket
        answered = rng.random() < 0.85
        call_key = f"call:{key}:{when.isoformat()}"
        plan.at(when, _call(crm, plan, key, call_key, when, mobile, agent, answered, rng.randint(40, 600),
                            rng.choice(["8001", "8002"])))  # fmt: skip
        if answered and rng.random() < 0.7:
            _plan_ticket(plan, crm, staff, rng, key, agent, when + timedelta(minutes=rng.randint(2, 10)), end, call_key)
    if rng.random() < 0.12:
        _plan_work_order(plan, crm, staff, rng, key, agent, moment(joined + timedelta(minutes=1)), end, mobile, region)


async def _spend(crm: Crm, agent: Actor, member_id: int, points: int) -> None:
    if await crm.points.balance(agent, member_id) >= points > 0:
        await crm.points.spend(agent, member_id, points, "积分兑换面膜套装")


def _call(
    crm: Crm, plan: _Plan, key: str, call_key: str, when: datetime, mobile: str, agent: Actor, answered: bool,
    seconds: int, queue: str,
) -> Callable[[], Awaitable[Any]]:  # fmt: skip
    async def run() -> None:
        call = await crm.timeline.record_call(
            SYSTEM, direction="inbound", caller=mobile, callee="4008208820", started_at=when,
            answered_at=when + timedelta(seconds=12) if answered else None,
            duration=seconds if answered else 25, billsec=seconds - 12 if answered else 0,
            disposition="ANSWERED" if answered else "NO ANSWER",
            agent_id=agent.user_id if answered else None, queue=queue,
            call_uuid=f"demo-{key}-{when.timestamp():.0f}",
        )  # fmt: skip
        plan.ids[call_key] = call.id

    return run


def _plan_ticket(
    plan: _Plan, crm: Crm, staff: _Staff, rng: random.Random, key: str, agent: Actor, created: datetime,
    end: datetime, call_key: str,
) -> None:  # fmt: skip
    kind = rng.choices(["consultation", "complaint", "suggestion"], weights=[60, 28, 12])[0]
    subject = rng.choice(_SUBJECTS[kind])
    priority = rng.choices(list(Priority), weights=[10, 60, 22, 8])[0]
    category = rng.choice(_CATEGORIES[kind])
    resolution = rng.choice(_RESOLUTIONS)
    tkey = f"ticket:{key}:{created.isoformat()}"

    async def create() -> None:
        ticket = await crm.tickets.create(
            agent, ticket_type=kind, subject=subject, member_id=plan.ids[key], priority=priority,
            category=category, channel="phone", call_id=plan.ids.get(call_key),
        )  # fmt: skip
        plan.ids[tkey] = ticket.id

    plan.at(created, create)
    worker = agent if kind == "consultation" else rng.choice(staff.agents)
    steps: list[tuple[timedelta, Callable[[], Awaitable[Any]]]] = [
        (timedelta(minutes=rng.randint(1, 30)),
         lambda: crm.tickets.assign(staff.supervisor, plan.ids[tkey], assignee_id=worker.user_id)),
        (timedelta(minutes=rng.randint(5, 120)), lambda: crm.tickets.start(worker, plan.ids[tkey])),
        (timedelta(hours=rng.randint(1, 30)),
         lambda: crm.tickets.resolve(worker, plan.ids[tkey], resolution)),
        (timedelta(hours=rng.randint(2, 72)), lambda: crm.tickets.close(staff.supervisor, plan.ids[tkey])),
    ]  # fmt: skip
    # Older tickets have run their course; the last days' are still open at every stage.
    age = end - created
    if age < timedelta(days=1):
        steps = steps[: rng.choice([0, 1, 1, 2, 2, 3])]
    elif age < timedelta(days=7):
        steps = steps[: rng.choice([2, 3, 3, 4, 4, 4])]
    when = created
    for delay, step in steps:
        when += delay
        if when >= end:
            break  # the story of this ticket is still going on
        plan.at(when, step)


def _plan_work_order(
    plan: _Plan, crm: Crm, staff: _Staff, rng: random.Random, key: str, agent: Actor,
    created: datetime, end: datetime, mobile: str, region: str,
) -> None:  # fmt: skip
    model, prefix = rng.choice(_DEVICES)
    serial = f"{prefix}-{rng.randint(2024, 2026)}-{rng.randint(1, 99999):05d}"
    # Mostly in warranty; some claims come after it ran out, which the audit must catch.
    bought = (created - timedelta(days=rng.choice([30, 90, 200, 300, 420]))).date()
    wkey = f"wo:{key}:{created.isoformat()}"
    address = f"上海市{region}{rng.choice(_STREETS)}{rng.randint(1, 999)}号"

    async def create() -> None:
        order = await crm.work_orders.create(
            agent, member_id=plan.ids[key], service_type="repair", product_model=model, serial_no=serial,
            purchase_date=bought, fault_description=rng.choice(_FAULTS), address=address, region=region,
            contact_phone=mobile, dispatch=True,
        )  # fmt: skip
        plan.ids[wkey] = order.id

    plan.at(created, create)
    again = created + timedelta(days=rng.randint(1, 5))
    if rng.random() < 0.25 and again < end:  # the customer calls again about the same machine: 重单
        plan.at(again, _duplicate(crm, plan, agent, key, model, serial, bought, address, region))
    repair, part = rng.choice(_REPAIRS)
    opinion = rng.choice(["满意", "非常满意", "一般"])
    done = created + timedelta(hours=rng.randint(4, 72))
    if done < end:
        async def complete() -> None:
            order = await crm.work_orders.get(SYSTEM, plan.ids[wkey])
            technician = next(t for t in staff.technicians if t.user_id == order.technician_id)
            await crm.work_orders.complete(
                technician, order.id, customer_requests="尽快修好", customer_opinion=opinion,
                device_state=repair, parts=[(part[0], part[1], 1)] if part else [],
            )  # fmt: skip

        plan.at(done, complete)
        audited = done + timedelta(hours=rng.randint(2, 48))
        if audited < end:
            async def audit_order() -> None:
                order = await crm.work_orders.get(SYSTEM, plan.ids[wkey])
                if any(f.code == "out_of_warranty" for f in order.flags):
                    await crm.work_orders.void(staff.auditor, order.id, "超出保修期，按保外收费处理")
                elif order.flags:
                    await crm.work_orders.approve(staff.auditor, order.id, note="核实为同一故障返修，准予通过")
                else:
                    await crm.work_orders.approve(staff.auditor, order.id)

            plan.at(audited, audit_order)


def _duplicate(
    crm: Crm, plan: _Plan, agent: Actor, key: str, model: str, serial: str, bought: Any, address: str, region: str
) -> Callable[[], Awaitable[Any]]:
    async def run() -> None:
        await crm.work_orders.create(
            agent, member_id=plan.ids[key], service_type="repair", product_model=model, serial_no=serial,
            purchase_date=bought, fault_description="客户再次报修：同一故障", address=address, region=region,
        )  # fmt: skip

    return run
