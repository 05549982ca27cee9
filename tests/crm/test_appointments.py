"""电话预约 / 专家咨询 / 服务购买: free slots, no double booking (also under concurrent attempts),
reschedule and cancel, the consultation record, and a purchase delivered at an appointment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm.access import SYSTEM, Actor
from crm.appointments import AppointmentQuery, AppointmentStatus, Recommendation
from crm.availability import DayException, ExceptionKind, WorkingHours, free_starts, working_intervals
from crm.clock import FixedClock, from_iso
from crm.db import IntegrityError
from crm.errors import Conflict, Forbidden, InvalidTransition, ValidationError
from crm.experts import HoursSpec
from crm.orders import OrderLine, OrderStatus
from crm.service import Crm
from crm.visits import VisitQuery, VisitReason

SHANGHAI = ZoneInfo("Asia/Shanghai")
TUESDAY = date(2026, 11, 24)  # the fixture clock stands at Monday 2026-11-23 10:00 Shanghai


def at(hhmm: str, day: date = TUESDAY) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hours, minutes, tzinfo=SHANGHAI)


def local_times(slots) -> list[str]:
    return [from_iso(s.starts_at).astimezone(SHANGHAI).strftime("%H:%M") for s in slots]


@dataclass
class Salon:
    expert: Actor
    expert2: Actor
    facial: int  # 60-minute service
    massage: int  # 30-minute service
    cream: int  # product
    members: list[int]


@pytest.fixture
async def salon(crm: Crm, org, make_user) -> Salon:
    expert = await make_user(crm, "expert1", ["expert"], department_id=org.service_center)
    expert2 = await make_user(crm, "expert2", ["expert"], department_id=org.service_center)

    async def item(sku: str, kind: str, name: str, price: int, minutes: int | None = None) -> int:
        change = await crm.catalogue.propose_new(org.supervisor, sku=sku, kind=kind, name=name, price_cents=price,
                                                 duration_minutes=minutes)  # fmt: skip
        return (await crm.catalogue.approve(org.admin, change.id)).id

    facial = await item("FACIAL-60", "service", "光子嫩肤", 68_000, 60)
    massage = await item("SPA-30", "service", "肩颈舒缓", 19_800, 30)
    cream = await item("CREAM-1", "product", "修护面霜", 29_900)
    hours = [HoursSpec(d, "09:00", "12:00") for d in range(7)] + [HoursSpec(d, "13:00", "18:00") for d in range(7)]
    for who in (expert, expert2):
        await crm.experts.put_expert(org.supervisor, who.user_id, title="高级美容顾问", service_ids=[facial, massage])
        await crm.experts.set_hours(org.supervisor, who.user_id, hours)
    members = [(await crm.members.create(org.agent1, f"会员{i}", phones=[f"1380013{i:04d}"])).id for i in range(25)]
    return Salon(expert, expert2, facial, massage, cream, members)


async def test_free_slots_follow_hours_exceptions_and_bookings(crm: Crm, org, salon: Salon) -> None:
    slots = await crm.appointments.free_slots(org.agent1, salon.expert.user_id, TUESDAY, salon.facial)
    morning = ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15", "10:30", "10:45", "11:00"]
    afternoon = [f"{h:02d}:{m:02d}" for h in range(13, 17) for m in (0, 15, 30, 45)] + ["17:00"]
    assert local_times(slots) == morning + afternoon
    assert from_iso(slots[0].ends_at) - from_iso(slots[0].starts_at) == timedelta(minutes=60)

    await crm.appointments.book(org.agent1, member_id=salon.members[0], expert_id=salon.expert.user_id,
                                item_id=salon.facial, starts_at=at("10:00"))  # fmt: skip
    await crm.experts.add_exception(org.supervisor, salon.expert.user_id, TUESDAY, "off", start="13:00", end="18:00",
                                    note="培训")  # fmt: skip
    await crm.experts.add_exception(org.supervisor, salon.expert.user_id, TUESDAY, "extra", start="19:00", end="20:00")
    slots = await crm.appointments.free_slots(org.agent1, salon.expert.user_id, TUESDAY, salon.facial)
    assert local_times(slots) == ["09:00", "11:00", "19:00"]
    # a whole day off; and today only the times still ahead (the clock stands at 10:00)
    await crm.experts.add_exception(org.supervisor, salon.expert.user_id, TUESDAY + timedelta(days=1), "off")
    assert await crm.appointments.free_slots(org.agent1, salon.expert.user_id, TUESDAY + timedelta(days=1), salon.facial) == []
    today = await crm.appointments.free_slots(org.agent1, salon.expert.user_id, date(2026, 11, 23), salon.massage)
    assert local_times(today)[:2] == ["10:00", "10:15"]


async def test_no_double_booking(crm: Crm, org, salon: Salon) -> None:
    book = crm.appointments.book
    first = await book(org.agent1, member_id=salon.members[0], expert_id=salon.expert.user_id, item_id=salon.facial,
                       starts_at=at("10:00"), channel="phone", note="第一次来")  # fmt: skip
    assert first.status is AppointmentStatus.BOOKED and from_iso(first.ends_at) == at("11:00")
    for start in ("10:00", "10:30", "09:30", "10:55"):
        with pytest.raises(Conflict) as busy:
            await book(org.agent1, member_id=salon.members[1], expert_id=salon.expert.user_id, item_id=salon.massage
                       if start != "09:30" else salon.facial, starts_at=at(start))  # fmt: skip
        assert busy.value.code == "appointment.expert_busy"
    # back to back is fine
    await book(org.agent1, member_id=salon.members[1], expert_id=salon.expert.user_id, item_id=salon.massage,
               starts_at=at("11:00"))  # fmt: skip
    with pytest.raises(Conflict) as member_busy:  # the member cannot be with two experts at once
        await book(org.agent1, member_id=salon.members[0], expert_id=salon.expert2.user_id, item_id=salon.massage,
                   starts_at=at("10:30"))  # fmt: skip
    assert member_busy.value.code == "appointment.member_busy"
    # the database itself refuses a second holder of a granule, whatever a writer checked
    with pytest.raises(IntegrityError):
        async with crm.db.transaction() as tx:
            await tx.execute("INSERT INTO appointment_slots (expert_id, slot_start, appointment_id) VALUES (?, ?, ?)",
                             (salon.expert.user_id, first.starts_at, first.id))  # fmt: skip


async def test_concurrent_attempts_at_one_slot_book_it_once(crm: Crm, org, salon: Salon) -> None:
    attempts = [
        crm.appointments.book(org.agent1, member_id=m, expert_id=salon.expert.user_id, item_id=salon.facial,
                              starts_at=at("14:00"))
        for m in salon.members[:20]
    ]  # fmt: skip
    results = await asyncio.gather(*attempts, return_exceptions=True)
    booked = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(booked) == 1 and len(refused) == 19
    assert await crm.db.fetch_value("SELECT COUNT(*) FROM appointment_slots") == 12  # 60 min in 5-minute granules


@pytest.mark.parametrize(
    ("when", "code"),
    [("08:00", "appointment.outside_hours"), ("11:30", "appointment.outside_hours"),
     ("12:00", "appointment.outside_hours"), ("10:07", "time.off_grid")],
)  # fmt: skip
async def test_bookings_must_fit_the_working_hours_and_grid(crm: Crm, org, salon: Salon, when: str, code: str) -> None:
    with pytest.raises(ValidationError) as err:
        await crm.appointments.book(org.agent1, member_id=salon.members[0], expert_id=salon.expert.user_id,
                                    item_id=salon.facial, starts_at=at(when))  # fmt: skip
    assert err.value.code == code


async def test_other_booking_refusals(crm: Crm, org, salon: Salon, make_user) -> None:
    book = crm.appointments.book
    common = {"member_id": salon.members[0], "expert_id": salon.expert.user_id}
    with pytest.raises(ValidationError) as past:
        await book(org.agent1, **common, item_id=salon.facial, starts_at=at("09:00", date(2026, 11, 23)))
    assert past.value.code == "date.in_past"
    with pytest.raises(ValidationError) as product:
        await book(org.agent1, **common, item_id=salon.cream, starts_at=at("10:00"))
    assert product.value.code == "catalogue.wrong_kind"
    with pytest.raises(ValidationError) as not_expert:
        await book(org.agent1, member_id=salon.members[0], expert_id=org.agent2.user_id, item_id=salon.facial,
                   starts_at=at("10:00"))  # fmt: skip
    assert not_expert.value.code == "expert.not_found"
    await crm.experts.put_expert(org.supervisor, salon.expert2.user_id, service_ids=[salon.massage])
    with pytest.raises(ValidationError) as not_performed:
        await book(org.agent1, member_id=salon.members[0], expert_id=salon.expert2.user_id, item_id=salon.facial,
                   starts_at=at("10:00"))  # fmt: skip
    assert not_performed.value.code == "expert.does_not_perform"
    with pytest.raises(Forbidden):  # technicians do not book
        await book(org.tech_pudong, **common, item_id=salon.facial, starts_at=at("10:00"))


async def test_reschedule_cancel_and_no_show(crm: Crm, org, salon: Salon, clock: FixedClock) -> None:
    booked = await crm.appointments.book(org.agent1, member_id=salon.members[0], expert_id=salon.expert.user_id,
                                         item_id=salon.facial, starts_at=at("10:00"))  # fmt: skip
    moved = await crm.appointments.reschedule(org.agent1, booked.id, starts_at=at("15:00"), note="客户改约下午")
    assert from_iso(moved.starts_at) == at("15:00") and moved.reschedule_count == 1 and moved.note == "客户改约下午"
    # the morning is free again, the afternoon taken
    other = await crm.appointments.book(org.agent1, member_id=salon.members[1], expert_id=salon.expert.user_id,
                                        item_id=salon.facial, starts_at=at("10:00"))  # fmt: skip
    with pytest.raises(Conflict):
        await crm.appointments.reschedule(org.agent1, other.id, starts_at=at("15:30"))
    to_expert2 = await crm.appointments.reschedule(org.agent1, other.id, starts_at=at("15:30"),
                                                   expert_id=salon.expert2.user_id)  # fmt: skip
    assert to_expert2.expert_id == salon.expert2.user_id

    cancelled = await crm.appointments.cancel(org.agent1, moved.id, "客户临时出差")
    assert cancelled.status is AppointmentStatus.CANCELLED and cancelled.cancel_reason == "客户临时出差"
    with pytest.raises(InvalidTransition):
        await crm.appointments.reschedule(org.agent1, moved.id, starts_at=at("16:00"))
    await crm.appointments.book(org.agent1, member_id=salon.members[2], expert_id=salon.expert.user_id,
                                item_id=salon.facial, starts_at=at("15:00"))  # fmt: skip

    with pytest.raises(InvalidTransition) as early:
        await crm.appointments.mark_no_show(org.agent1, to_expert2.id)
    assert early.value.code == "appointment.not_started"
    clock.set(at("16:00"))
    assert (await crm.appointments.mark_no_show(org.agent1, to_expert2.id)).status is AppointmentStatus.NO_SHOW
    day = await crm.appointments.search(org.supervisor, AppointmentQuery(starts_from=at("00:00"), starts_to=at("23:59")))
    assert [a.status for a in day.items] == [AppointmentStatus.CANCELLED, AppointmentStatus.BOOKED,
                                             AppointmentStatus.NO_SHOW]  # fmt: skip


async def test_consultation_purchase_and_delivery_create_a_return_visit(crm: Crm, org, salon: Salon, clock: FixedClock) -> None:
    member = salon.members[0]
    consult = await crm.appointments.book(org.agent1, member_id=member, expert_id=salon.expert.user_id,
                                          item_id=salon.massage, starts_at=at("10:00"))  # fmt: skip
    clock.set(at("10:05"))
    with pytest.raises(Forbidden):  # another expert does not write this consultation
        await crm.appointments.record_consultation(salon.expert2, consult.id, notes="x")
    noted = await crm.appointments.record_consultation(
        salon.expert, consult.id, notes="混合性皮肤，T区出油，两颊干燥", customer_needs="改善毛孔粗大",
        recommendations=[Recommendation(salon.facial, "每月一次，三次一个疗程"), (salon.cream, "晚间使用")],
    )  # fmt: skip
    assert noted.consultation_notes.startswith("混合性") and [r.item_id for r in noted.recommendations] == [salon.facial, salon.cream]
    await crm.appointments.complete(salon.expert, consult.id)

    # the member buys the recommended facial and the cream at today's prices
    order = await crm.orders.create(org.agent1, member_id=member, appointment_id=consult.id,
                                    lines=[OrderLine(salon.facial, 1), (salon.cream, 2)])  # fmt: skip
    assert order.status is OrderStatus.PENDING and order.total_cents == 68_000 + 2 * 29_900
    with pytest.raises(ValidationError) as unpaid:
        await crm.appointments.book(org.agent1, member_id=member, expert_id=salon.expert.user_id, item_id=salon.facial,
                                    starts_at=at("14:00"), order_id=order.id)  # fmt: skip
    assert unpaid.value.code == "order.not_paid"
    with pytest.raises(ValidationError) as short:
        await crm.orders.pay(org.agent1, order.id, method="wechat", amount_cents=68_000)
    assert short.value.code == "order.amount_mismatch"
    paid = await crm.orders.pay(org.agent1, order.id, method="wechat", amount_cents=order.total_cents)
    assert paid.status is OrderStatus.PAID and paid.payment_method == "wechat"

    service = await crm.appointments.book(org.agent1, member_id=member, expert_id=salon.expert.user_id,
                                          item_id=salon.facial, starts_at=at("14:00"), order_id=order.id)  # fmt: skip
    with pytest.raises(Conflict):  # one visit delivers the order
        await crm.appointments.book(org.agent1, member_id=member, expert_id=salon.expert2.user_id,
                                    item_id=salon.facial, starts_at=at("16:00"), order_id=order.id)  # fmt: skip
    clock.set(at("14:00"))
    done = await crm.appointments.complete(salon.expert, service.id)
    assert done.status is AppointmentStatus.COMPLETED
    assert (await crm.orders.get(org.agent1, order.id)).status is OrderStatus.COMPLETED
    visits = await crm.visits.search(org.agent1, VisitQuery(member_id=member))
    assert [(v.reason, v.order_id, v.staff_id) for v in visits.items] == [(VisitReason.ORDER, order.id, salon.expert.user_id)]
    assert from_iso(visits.items[0].due_at) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # three days later

    with pytest.raises(InvalidTransition):
        await crm.orders.cancel(org.agent1, order.id, "不要了")


async def test_order_rules(crm: Crm, org, salon: Salon) -> None:
    member = salon.members[3]
    order = await crm.orders.create(org.agent1, member_id=member, lines=[(salon.cream, 1), (salon.cream, 1)])
    assert [(i.quantity, i.amount_cents) for i in order.items] == [(2, 59_800)]
    # a later price change does not rewrite the order
    change = await crm.catalogue.propose_change(org.supervisor, salon.cream, price_cents=39_900)
    await crm.catalogue.approve(org.admin, change.id)
    assert (await crm.orders.get(org.agent1, order.id)).total_cents == 59_800
    refunded = await crm.orders.pay(org.agent1, order.id, method="cash", amount_cents=59_800)
    refunded = await crm.orders.cancel(org.agent1, order.id, "过敏退货")
    assert refunded.status is OrderStatus.REFUNDED and refunded.cancel_reason == "过敏退货"
    with pytest.raises(ValidationError):
        await crm.orders.create(org.agent1, member_id=member, lines=[])
    with pytest.raises(ValidationError):
        await crm.orders.create(org.agent1, member_id=member, lines=[(999, 1)])
    with pytest.raises(ValidationError):
        await crm.orders.create(org.agent1, member_id=member, lines=[(salon.cream, 0)])
    with pytest.raises(ValidationError):
        await crm.orders.pay(org.agent1, order.id, method="bitcoin", amount_cents=1)
    with pytest.raises(Forbidden):  # an expert reads orders but does not take payments
        await crm.orders.create(salon.expert, member_id=member, lines=[(salon.cream, 1)])
    assert (await crm.orders.search(SYSTEM)).total == 1


def test_availability_across_a_daylight_saving_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spring = date(2026, 3, 29)  # clocks go from 02:00 to 03:00
    free = working_intervals(spring, berlin, [WorkingHours(6, 60, 240)], [])
    assert free[0][1] - free[0][0] == timedelta(hours=2)  # 01:00-04:00 local is two real hours
    starts = free_starts(free, timedelta(minutes=60), day=spring, tz=berlin, step_minutes=60)
    assert [s.astimezone(berlin).hour for s in starts] == [1, 3]
    off = working_intervals(spring, berlin, [WorkingHours(6, 60, 240)], [DayException(spring, ExceptionKind.OFF)])
    assert off == []
