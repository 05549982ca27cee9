"""The interactions timeline and the calls table the CDR events fill."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm import audit
from crm.access import SYSTEM
from crm.clock import FixedClock
from crm.errors import Forbidden, ValidationError
from crm.service import Crm
from crm.timeline import CallDirection, Disposition, TimelineKind


async def test_one_newest_first_list_of_everything(crm: Crm, org, clock: FixedClock) -> None:
    m = await crm.members.create(org.agent1, "蒋雯", phones=["13800138000"])
    step = timedelta(minutes=7)
    call = await crm.timeline.record_call(
        SYSTEM, direction="inbound", caller="+8613800138000", callee="4008208820", started_at=clock.now(),
        duration=120, billsec=100, disposition="ANSWERED", agent_id=org.agent1.user_id, queue="8002",
        call_uuid="1732330000.17",
    )  # fmt: skip
    assert call.member_id == m.id
    clock.advance(step)
    ticket = await crm.tickets.create(org.agent1, ticket_type="complaint", subject="产品过敏", member_id=m.id)
    clock.advance(step)
    wo = await crm.work_orders.create(org.agent1, member_id=m.id, service_type="repair", product_model="导入仪 V3",
                                      serial_no="V3-001", purchase_date="2026-10-01")  # fmt: skip
    clock.advance(step)
    entry = await crm.points.earn(org.agent1, m.id, 88, "投诉补偿")
    clock.advance(step)
    note = await crm.timeline.add_note(org.agent1, m.id, "客户希望下午回电")
    clock.advance(step)
    outbound = await crm.timeline.record_call(
        SYSTEM, direction=CallDirection.OUTBOUND, caller="1001", callee="013800138000", started_at=clock.now(),
        disposition=Disposition.NO_ANSWER, agent_id=org.agent1.user_id,
    )  # fmt: skip

    items = await crm.timeline.member_timeline(org.agent1, m.id)
    assert [(i.kind, i.id) for i in items] == [
        (TimelineKind.CALL, outbound.id), (TimelineKind.NOTE, note.id), (TimelineKind.POINTS, entry.id),
        (TimelineKind.WORK_ORDER, wo.id), (TimelineKind.TICKET, ticket.id), (TimelineKind.CALL, call.id),
    ]  # fmt: skip
    assert items[0].status == "NO ANSWER" and items[0].subtype == "outbound"
    assert items[2].value == 88 and items[3].ref == "V3001"
    assert items[4].title == "产品过敏" and items[4].subtype == "complaint"

    only_calls = await crm.timeline.member_timeline(org.agent1, m.id, kinds=[TimelineKind.CALL])
    assert [i.id for i in only_calls] == [outbound.id, call.id]
    paged = await crm.timeline.member_timeline(org.agent1, m.id, offset=2, limit=2)
    assert [i.id for i in paged] == [entry.id, wo.id]


async def test_cdr_is_stored_once_and_recording_attached_later(crm: Crm, org, clock: FixedClock) -> None:
    args = dict(direction="inbound", caller="13900139000", callee="8001", started_at=clock.now(),
                duration=30, billsec=20, disposition="ANSWERED", call_uuid="abc-1")  # fmt: skip
    first = await crm.timeline.record_call(SYSTEM, **args)
    again = await crm.timeline.record_call(SYSTEM, **args)
    assert first.id == again.id and first.member_id is None  # unknown caller
    assert await crm.db.fetch_value("SELECT COUNT(*) FROM calls") == 1
    with_file = await crm.timeline.set_recording(SYSTEM, first.id, "2026/11/23/abc-1.wav")
    assert with_file.recording_ref == "2026/11/23/abc-1.wav"
    assert (await crm.timeline.get_call(org.agent1, first.id)).recording_ref == "2026/11/23/abc-1.wav"
    with pytest.raises(ValidationError):
        await crm.timeline.record_call(SYSTEM, **{**args, "call_uuid": "abc-2", "billsec": 31})
    with pytest.raises(ValidationError):
        await crm.timeline.record_call(SYSTEM, **{**args, "call_uuid": "abc-3", "disposition": "HUNG UP"})
    with pytest.raises(Forbidden):  # agents do not write CDRs
        await crm.timeline.record_call(org.agent1, **{**args, "call_uuid": "abc-4"})
    assert [e.action for e in await audit.list_entries(crm.db, org.admin, entity="call")] == ["set_recording", "create"]


async def test_timeline_honours_scope_and_permissions(crm: Crm, org) -> None:
    m = await crm.members.create(org.agent1, "韩梅", phones=["13800138000"])
    mine = await crm.tickets.create(org.agent1, ticket_type="consultation", subject="我的", member_id=m.id)
    await crm.tickets.create(org.agent2, ticket_type="consultation", subject="agent2 的", member_id=m.id)
    items = await crm.timeline.member_timeline(org.agent1, m.id)
    assert [i.id for i in items if i.kind is TimelineKind.TICKET] == [mine.id]
    assert len([i for i in await crm.timeline.member_timeline(org.admin, m.id) if i.kind is TimelineKind.TICKET]) == 2

    owned = await crm.members.create(org.admin, "私有", phones=["13900139000"], owner_id=org.agent2.user_id)
    with pytest.raises(Forbidden):
        await crm.timeline.member_timeline(org.agent1, owned.id)
    with pytest.raises(Forbidden):
        await crm.timeline.add_note(org.auditor, m.id, "审核员不写小记")
