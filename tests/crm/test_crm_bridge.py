"""The CRM as the call routing layer sees it (callcenter.crm_bridge), on a real SQLite file."""

from __future__ import annotations

from acd.cdr import CdrRecord, Disposition
from callcenter.crm_bridge import CrmBridge
from crm.access import SYSTEM


async def test_caller_and_ivr_lookups(crm):
    gold = await crm.members.create(SYSTEM, "王芳", phones=["13800138000"], level="gold", card_no="M2026001")
    plain = await crm.members.create(SYSTEM, "李强", phones=["021-64371234"])
    await crm.points.earn(SYSTEM, gold.id, 12345, "opening balance")
    await crm.members.set_blacklist(SYSTEM, plain.id, True, "骚扰电话")
    bridge = CrmBridge(crm)

    info = await bridge.caller("+86 138 0013 8000")
    assert info.name == "王芳" and info.points == 12345 and not info.blacklisted
    plain_info = await bridge.caller("02164371234")
    assert plain_info.blacklisted and plain_info.vip_rank < info.vip_rank
    assert await bridge.caller("13900000000") is None
    assert await bridge.caller("not a number") is None

    by_phone = await bridge.ivr_lookup("member_points", "13800138000")
    by_card = await bridge.ivr_lookup("member_points", "M2026001")
    assert by_phone == by_card and by_phone["points"] == "12345" and by_phone["name"] == "王芳"
    assert await bridge.ivr_lookup("member_points", "M2026") is None        # a prefix is not a card number
    assert await bridge.ivr_lookup("member_points", "   ") is None
    assert await bridge.ivr_lookup("workorder_status", "999999") is None    # unknown: not found, no error
    assert await bridge.ivr_lookup("order_status", "abc") is None
    assert await bridge.ivr_lookup("next_appointment", "13800138000") is None


async def test_voice_message_becomes_a_ticket_with_its_recording(crm):
    member = await crm.members.create(SYSTEM, "赵敏", phones=["13700137000"])
    bridge = CrmBridge(crm)
    ticket_id = await bridge.voice_message(caller="13700137000", ticket_type="complaint",
                                           recording="recordings/2026/11/23/msg-1.wav", call_uuid="abc")
    ticket = await crm.tickets.get(SYSTEM, ticket_id)
    assert ticket.member_id == member.id and ticket.ticket_type.value == "complaint"
    call = await crm.timeline.get_call(SYSTEM, ticket.call_id)
    assert call.recording_ref == "recordings/2026/11/23/msg-1.wav" and call.member_id == member.id


async def test_trunk_calls_reach_the_members_timeline_once(crm):
    member = await crm.members.create(SYSTEM, "陈静", phones=["13600136000"])
    agent = await crm.org.create_user(SYSTEM, "agent1002", "小周", "pass-word-1002", extension="1002")
    bridge = CrmBridge(crm)
    start = 1_795_000_000.0
    inbound = CdrRecord("c1", "13600136000", "1002", start, start + 70, Disposition.ANSWERED, "caller", "normal",
                        did="4008001234", trunk="telecom", answered_by="1002", answered_at=start + 10,
                        recording_ref="2026/11/23/c1.wav")
    crm_id = await bridge.call_finished(inbound)
    call = await crm.timeline.get_call(SYSTEM, crm_id)
    assert (call.member_id, call.direction.value, call.disposition.value) == (member.id, "inbound", "ANSWERED")
    assert (call.duration, call.billsec, call.recording_ref) == (70, 60, "2026/11/23/c1.wav")
    assert call.agent_id == agent.id
    assert await bridge.call_finished(inbound) == crm_id          # delivered twice, stored once
    gave_up = CdrRecord("c2", "1001", "13600136000", start, start + 5, Disposition.CANCELLED, "caller",
                        "cancelled", trunk="telecom")
    call = await crm.timeline.get_call(SYSTEM, await bridge.call_finished(gave_up))
    assert (call.member_id, call.direction.value, call.disposition.value) == (member.id, "outbound", "NO ANSWER")
    internal = CdrRecord("c3", "1001", "1002", start, start + 5, Disposition.ANSWERED, "caller", "normal")
    assert await bridge.call_finished(internal) is None          # staff to staff: not an interaction
