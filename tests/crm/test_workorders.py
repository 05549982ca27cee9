"""派工 → 完工 → 审核, the fraud checks that flag, balanced dispatch, technician statistics."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from crm import audit
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.errors import Forbidden, InvalidTransition, NotFound, ValidationError
from crm.service import Crm
from crm.workorder_flow import FlagCode, WorkOrderStatus
from crm.workorders import Part, WorkOrderQuery


async def _member(crm: Crm, org, phone: str = "13800138000") -> int:
    return (await crm.members.create(org.agent1, "何美玲", phones=[phone])).id


def _order(member_id: int, **kw):
    args = dict(member_id=member_id, service_type="repair", product_model="家用射频美容仪 RF-200",
                serial_no="rf200-2026-0001", purchase_date="2026-06-01", fault_description="无法开机",
                address="上海市浦东新区张杨路500号", region="浦东新区")  # fmt: skip
    args.update(kw)
    return args


async def test_dispatch_complete_approve(crm: Crm, org, clock: FixedClock) -> None:
    member_id = await _member(crm, org)
    wo = await crm.work_orders.create(org.agent1, **_order(member_id))
    assert wo.status is WorkOrderStatus.PENDING and wo.flags == () and wo.serial_no == "RF20020260001"
    assert wo.warranty_months == 12  # the site default

    wo = await crm.work_orders.dispatch(org.agent1, wo.id, technician_id=org.tech_pudong.user_id)
    assert wo.status is WorkOrderStatus.DISPATCHED and wo.department_id == org.after_sales
    clock.advance(timedelta(hours=3))
    wo = await crm.work_orders.complete(
        org.tech_pudong, wo.id, customer_requests="尽快修好", customer_opinion="满意", device_state="更换电源板后正常",
        parts=[Part("PB-200", "电源板", 1), ("SC-1", "螺丝", 4)],
    )  # fmt: skip
    assert wo.status is WorkOrderStatus.COMPLETED and wo.completion_seconds == 3 * 3600
    assert wo.service_date == "2026-11-23" and [p.part_no for p in wo.parts] == ["PB-200", "SC-1"]
    with pytest.raises(Forbidden):  # technicians do not audit
        await crm.work_orders.approve(org.tech_pudong, wo.id)
    wo = await crm.work_orders.approve(org.auditor, wo.id)
    assert wo.status is WorkOrderStatus.APPROVED and wo.audited_by == org.auditor.user_id

    history = await crm.work_orders.history(org.auditor, wo.id)
    assert [e.action for e in history] == ["create", "dispatch", "complete", "approve"]
    logged = await audit.list_entries(crm.db, org.admin, entity="work_order", entity_id=wo.id)
    assert [e.action for e in logged] == ["approve", "complete", "dispatch", "create"]
    with pytest.raises(InvalidTransition):
        await crm.work_orders.void(org.auditor, wo.id, "已审核不能作废")


async def test_completion_without_dispatch_is_refused(crm: Crm, org) -> None:
    member_id = await _member(crm, org)
    wo = await crm.work_orders.create(org.agent1, **_order(member_id))
    with pytest.raises(InvalidTransition) as fake:
        await crm.work_orders.complete(org.supervisor, wo.id, device_state="正常")
    assert fake.value.code == "workorder.not_dispatched"
    after = await crm.work_orders.get(org.supervisor, wo.id)
    assert after.status is WorkOrderStatus.PENDING and after.completed_at is None and after.parts == ()


async def test_only_the_dispatched_technician_reports_completion(crm: Crm, org, make_user) -> None:
    member_id = await _member(crm, org)
    wo = await crm.work_orders.create(org.agent1, **_order(member_id), dispatch=True,
                                      technician_id=org.tech_pudong.user_id)  # fmt: skip
    with pytest.raises(Forbidden):
        await crm.work_orders.complete(org.tech_xuhui, wo.id, device_state="正常")
    await crm.work_orders.complete(org.tech_pudong, wo.id, device_state="正常")

    # separation of duties: a technician who is also an auditor cannot audit their own work
    both = await make_user(crm, "tech_auditor", ["technician", "auditor"], department_id=org.after_sales)
    own = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="OWN-1"), dispatch=True,
                                       technician_id=both.user_id)  # fmt: skip
    await crm.work_orders.complete(both, own.id, device_state="正常")
    with pytest.raises(Forbidden) as self_audit:
        await crm.work_orders.approve(both, own.id)
    assert self_audit.value.code == "workorder.self_audit"
    assert (await crm.work_orders.approve(both, wo.id)).status is WorkOrderStatus.APPROVED


async def test_duplicate_orders_are_flagged_not_refused(crm: Crm, org, clock: FixedClock) -> None:
    member_id = await _member(crm, org)
    first = await crm.work_orders.create(org.agent1, **_order(member_id))
    clock.advance(timedelta(days=10))
    second = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="RF200 2026 0001"))
    assert [f.code for f in second.flags] == [FlagCode.DUPLICATE]
    assert second.flags[0].related_work_order_id == first.id
    # another machine of the same member, or the same machine after the window, is no duplicate
    other = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="RF200-2026-0002"))
    clock.advance(timedelta(days=31))
    later = await crm.work_orders.create(org.agent1, **_order(member_id))
    assert other.flags == () and later.flags == ()
    flagged = await crm.work_orders.search(org.auditor, WorkOrderQuery(flagged_only=True))
    assert [w.id for w in flagged.items] == [second.id]


async def test_warranty_checks(crm: Crm, org) -> None:
    member_id = await _member(crm, org)
    # bought 2025-11-23 with 12 months: the warranty covered service until 2026-11-22
    expired = await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date="2025-11-23"))
    assert [f.code for f in expired.flags] == [FlagCode.OUT_OF_WARRANTY]
    assert "2026-11-22" in expired.flags[0].detail
    inside = await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date="2025-11-24",
                                                               serial_no="X-2"))  # fmt: skip
    assert inside.flags == ()
    paid = await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date="2020-01-01",
                                                             warranty_claim=False, serial_no="X-3"))  # fmt: skip
    assert paid.flags == ()  # 保外 paid service: nothing to check
    unknown = await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date=None, serial_no="X-4"))
    assert [f.code for f in unknown.flags] == [FlagCode.WARRANTY_UNVERIFIED]
    with pytest.raises(ValidationError):
        await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date="2027-01-01"))


async def test_warranty_runs_out_between_dispatch_and_service(crm: Crm, org, clock: FixedClock) -> None:
    member_id = await _member(crm, org)
    wo = await crm.work_orders.create(org.agent1, **_order(member_id, purchase_date="2025-11-25"), dispatch=True,
                                      technician_id=org.tech_pudong.user_id)  # fmt: skip
    assert wo.flags == ()
    clock.advance(timedelta(days=3))  # served on 2026-11-26, warranty ended 2026-11-24
    done = await crm.work_orders.complete(org.tech_pudong, wo.id, device_state="已修复")
    assert [f.code for f in done.flags] == [FlagCode.OUT_OF_WARRANTY]
    with pytest.raises(ValidationError) as unack:
        await crm.work_orders.approve(org.auditor, wo.id)
    assert unack.value.code == "workorder.flags_unacknowledged"
    approved = await crm.work_orders.approve(org.auditor, wo.id, note="客户预约时仍在保内，特批")
    assert approved.status is WorkOrderStatus.APPROVED and approved.audit_note == "客户预约时仍在保内，特批"


async def test_balanced_automatic_dispatch(crm: Crm, org, make_user) -> None:
    tech3 = await make_user(crm, "tech3", ["technician"], department_id=org.after_sales, region="浦东新区")
    member_id = await _member(crm, org)
    picks = []
    for i in range(4):
        wo = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no=f"P-{i}"), dispatch=True)
        picks.append(wo.technician_id)
    # only the two Pudong technicians, alternating by open load
    assert sorted(picks) == sorted([org.tech_pudong.user_id, tech3.user_id] * 2)
    xuhui = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="X-1", region="徐汇区"), dispatch=True)
    assert xuhui.technician_id == org.tech_xuhui.user_id
    nowhere = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="N-1", region="崇明区"),
                                           dispatch=True)  # fmt: skip
    assert nowhere.technician_id == org.tech_xuhui.user_id  # nobody serves 崇明: the least loaded overall
    history = await crm.work_orders.history(org.agent1, nowhere.id)
    assert "outside region" in history[-1].body

    # a completed order no longer counts as load
    first = (await crm.work_orders.search(org.agent1, WorkOrderQuery(technician_id=tech3.user_id))).items[0]
    await crm.work_orders.complete(tech3, first.id, device_state="正常")
    nxt = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="P-9"), dispatch=True)
    assert nxt.technician_id == tech3.user_id

    # redispatch (改派) goes to somebody else
    moved = await crm.work_orders.dispatch(org.supervisor, nxt.id)
    assert moved.technician_id == org.tech_pudong.user_id
    with pytest.raises(ValidationError):  # an agent is no technician
        await crm.work_orders.dispatch(org.supervisor, nxt.id, technician_id=org.agent2.user_id)


async def test_technician_statistics(crm: Crm, org, clock: FixedClock) -> None:
    member_id = await _member(crm, org)
    since = clock.now()
    durations = [2, 4]
    for i, hours in enumerate(durations):
        wo = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no=f"S-{i}"), dispatch=True,
                                          technician_id=org.tech_pudong.user_id)  # fmt: skip
        clock.advance(timedelta(hours=hours))
        await crm.work_orders.complete(org.tech_pudong, wo.id, device_state="正常")
        if i == 0:
            await crm.work_orders.approve(org.auditor, wo.id)
        else:
            await crm.work_orders.void(org.auditor, wo.id, "客户称未上门，假单")
    await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="S-open"), dispatch=True,
                                 technician_id=org.tech_pudong.user_id)  # fmt: skip
    until = clock.now() + timedelta(hours=1)
    stats = {s.technician_id: s for s in await crm.work_orders.technician_stats(org.admin, since, until)}
    # the 客服中心 supervisor's department scope holds no technicians
    assert await crm.work_orders.technician_stats(org.supervisor, since, until) == []
    pudong = stats[org.tech_pudong.user_id]
    assert (pudong.dispatched, pudong.completed, pudong.approved, pudong.voided, pudong.open) == (3, 2, 1, 1, 1)
    assert pudong.avg_completion_seconds == 3 * 3600
    assert stats[org.tech_xuhui.user_id].completed == 0
    assert stats[org.tech_xuhui.user_id].avg_completion_seconds is None
    with pytest.raises(Forbidden):
        await crm.work_orders.technician_stats(org.agent1, since, clock.now())


async def test_cancel_before_completion_and_bad_input(crm: Crm, org) -> None:
    member_id = await _member(crm, org)
    wo = await crm.work_orders.create(org.agent1, **_order(member_id))
    cancelled = await crm.work_orders.void(org.agent1, wo.id, "客户取消")
    assert cancelled.status is WorkOrderStatus.VOIDED
    for field, value, error in (("service_type", "teleport", ValidationError), ("serial_no", " ", ValidationError),
                                ("warranty_months", 500, ValidationError), ("contact_phone", "123", ValidationError),
                                ("member_id", 9999, NotFound)):  # fmt: skip
        with pytest.raises(error) as err:
            await crm.work_orders.create(org.agent1, **{**_order(member_id), field: value})
        assert field in err.value.message or err.value.code == "member.not_found"
    wo2 = await crm.work_orders.create(org.agent1, **_order(member_id, serial_no="Z"), dispatch=True,
                                       technician_id=org.tech_pudong.user_id)  # fmt: skip
    with pytest.raises(ValidationError):
        await crm.work_orders.complete(org.tech_pudong, wo2.id, device_state="好", parts=[("A", "零件", 0)])
    with pytest.raises(ValidationError):
        await crm.work_orders.complete(org.tech_pudong, wo2.id, device_state="好", parts=["bad"])
    with pytest.raises(ValidationError):
        await crm.work_orders.complete(org.tech_pudong, wo2.id, device_state="好",
                                       service_date=date(2026, 11, 22))  # before the dispatch  # fmt: skip
    assert (await crm.work_orders.get(org.tech_pudong, wo2.id)).status is WorkOrderStatus.DISPATCHED


async def test_technician_sees_only_their_orders(crm: Crm, org) -> None:
    member_id = await _member(crm, org)
    a = await crm.work_orders.create(SYSTEM, **_order(member_id, serial_no="A"), dispatch=True,
                                     technician_id=org.tech_pudong.user_id)  # fmt: skip
    await crm.work_orders.create(SYSTEM, **_order(member_id, serial_no="B"), dispatch=True,
                                 technician_id=org.tech_xuhui.user_id)  # fmt: skip
    mine = await crm.work_orders.search(org.tech_pudong)
    assert [w.id for w in mine.items] == [a.id]


async def test_the_duplicate_window_is_a_site_setting(crm: Crm, org, clock: FixedClock) -> None:
    member_id = await _member(crm, org)
    await crm.work_orders.create(org.agent1, **_order(member_id))
    with pytest.raises(Forbidden):
        await crm.dictionaries.set_int(org.supervisor, "workorder.duplicate_window_days", 5)
    await crm.dictionaries.set_int(org.admin, "workorder.duplicate_window_days", 5)
    assert await crm.dictionaries.get_int("workorder.duplicate_window_days", 30) == 5
    clock.advance(timedelta(days=6))
    assert (await crm.work_orders.create(org.agent1, **_order(member_id))).flags == ()
    clock.advance(timedelta(days=4))
    again = await crm.work_orders.create(org.agent1, **_order(member_id))
    assert [f.code for f in again.flags] == [FlagCode.DUPLICATE] and "within 5 days" in again.flags[0].detail
