"""IVR flows on a real media engine: a UDP peer plays the caller, hears prompts as RTP and
presses keys as RFC 4733 events; look-ups go to a real CRM on a SQLite file."""

from __future__ import annotations

import asyncio

import pytest
import soundfile

from acd.demo_flows import MAIN_IVR
from acd.ivr_calls import IvrRunner
from acd.ivr_flow import NodeType
from acd.ivr_store import MIGRATIONS_IVR, FlowStore
from callcenter.crm_bridge import CrmBridge
from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.passwords import ScryptParams
from crm.service import Crm

EVENT_PT = 101
KEYS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}


@pytest.fixture
async def crm(tmp_path):
    conn = await open_database(tmp_path / "callcenter.db")
    await apply_migrations(conn, "crm", schema.MIGRATIONS)
    await apply_migrations(conn, "ivr", [MIGRATIONS_IVR])
    from crm.db import Database

    try:
        yield Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1)), conn
    finally:
        await conn.close()


async def run_ivr(engine, crm, sounds, make_caller, *, is_open=lambda name: True, recordings=None):
    crm_service, conn = crm
    flows = FlowStore(conn)
    await flows.save(MAIN_IVR)
    outcome: asyncio.Future = asyncio.get_running_loop().create_future()
    runner = IvrRunner(
        engine, flows, CrmBridge(crm_service), sound_dirs=(sounds,), is_open=is_open, recordings=recordings,
        route=lambda call, transfer: outcome.set_result(("route", transfer)),
        hangup=lambda call, cause: outcome.set_result(("hangup", cause)))
    engine.set_event_handler(runner.on_media_event)
    endpoint = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    caller = make_caller()
    engine.set_remote(endpoint, "127.0.0.1", caller.port)
    return runner, endpoint, caller, outcome


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_points_balance_for_a_known_caller_then_an_agent(engine, crm, sounds, make_caller):
    member = await crm[0].members.create(SYSTEM, "王芳", phones=["13800138000"], level="gold")
    await crm[0].points.earn(SYSTEM, member.id, 2345, "opening balance")
    runner, endpoint, caller, outcome = await run_ivr(engine, crm, sounds, make_caller)
    await runner.start("call-1", endpoint, "13800138000", "main")
    run = runner._calls["call-1"]
    await until(lambda: run.session.path[-1] == "welcome")     # the language menu timed out (3 s)
    assert run.session.language == "zh-CN"
    await until(lambda: run.session.path[-1] == "menu")
    caller.press("1", endpoint.local_port)                     # points
    await until(lambda: "say-points" in run.session.path)
    assert run.session.variables["points"] == "2345" and run.session.variables["name"] == "王芳"
    await until(lambda: run.session.path[-1] == "menu" and run.play_id is not None)
    caller.press("0", endpoint.local_port)                     # an agent
    kind, transfer = await asyncio.wait_for(outcome, 10)
    assert kind == "route" and transfer.kind is NodeType.QUEUE and transfer.target == "8002"
    assert caller.audio_packets() > 20                          # the prompts were heard
    assert "call-1" not in runner


async def test_english_unknown_caller_keys_in_a_member_number(engine, crm, sounds, make_caller):
    await crm[0].members.create(SYSTEM, "Li Lei", phones=["13900139000"], card_no="88886666")
    runner, endpoint, caller, outcome = await run_ivr(engine, crm, sounds, make_caller)
    await runner.start("call-2", endpoint, "02150001234", "main")
    run = runner._calls["call-2"]
    caller.press("2", endpoint.local_port)                     # English
    await until(lambda: run.session.language == "en")
    await until(lambda: run.session.path[-1] == "menu")
    caller.press("1", endpoint.local_port)
    await until(lambda: run.session.path[-1] == "ask-member")
    for key in "88886666#":
        caller.press(key, endpoint.local_port)
        await asyncio.sleep(0.03)
    await until(lambda: "say-points" in run.session.path)
    assert run.session.variables["points"] == "0"
    runner.ended("call-2")                                     # the caller hangs up
    assert "call-2" not in runner and not outcome.done()


async def test_after_hours_a_failed_message_recording_hands_the_caller_to_an_agent(engine, crm, sounds, make_caller):
    runner, endpoint, caller, outcome = await run_ivr(engine, crm, sounds, make_caller, is_open=lambda name: False)
    await runner.start("call-3", endpoint, "13700137000", "main")
    run = runner._calls["call-3"]
    caller.press("1", endpoint.local_port)
    kind, transfer = await asyncio.wait_for(outcome, 15)
    assert kind == "route" and transfer.target == "8002"
    assert run.session.path[-4:] == ["complaint", "check-saved", "agent", "agent-service"]


async def test_a_complaint_message_becomes_a_ticket_with_its_recording(engine, crm, sounds, make_caller, tmp_path):
    member = await crm[0].members.create(SYSTEM, "赵敏", phones=["13700137000"])
    runner, endpoint, caller, outcome = await run_ivr(engine, crm, sounds, make_caller, is_open=lambda name: False,
                                                      recordings=tmp_path / "recordings")
    await runner.start("call-5", endpoint, "13700137000", "main")
    run = runner._calls["call-5"]
    caller.press("1", endpoint.local_port)
    await until(lambda: run.message_done is not None)            # after the beep: speak
    await caller.speak(endpoint.local_port, 1.5)
    caller.press("#", endpoint.local_port)
    kind, cause = await asyncio.wait_for(outcome, 15)
    assert (kind, cause) == ("hangup", "ivr_end")
    assert run.session.path[-3:] == ["check-saved", "saved", "bye"]
    [wav] = list((tmp_path / "recordings").rglob("msg-*.wav"))
    audio, rate = soundfile.read(wav, dtype="int16")
    assert rate == 8000 and 1.0 < len(audio) / rate < 3.0
    async with crm[1].execute("SELECT t.ticket_type, c.recording_ref FROM tickets t JOIN calls c ON c.id = t.call_id"
                              " WHERE t.member_id = ?", (member.id,)) as cur:
        rows = await cur.fetchall()
    assert len(rows) == 1 and rows[0][0] == "complaint" and wav.as_posix().endswith(rows[0][1])


async def test_a_missing_flow_hangs_up(engine, crm, sounds, make_caller):
    runner, endpoint, caller, outcome = await run_ivr(engine, crm, sounds, make_caller)
    await runner.start("call-4", endpoint, "1", "no-such-flow")
    assert await outcome == ("hangup", "ivr_missing")
