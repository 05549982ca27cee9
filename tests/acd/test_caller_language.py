"""The caller's language outlives the IVR flow it was chosen in (issue #8), on a real media
engine with a caller pressing RFC 4733 keys: the runner answers it when the flow hands the call
on (the queue or mailbox then speaks it), a later flow of the same call (the survey after the
agent) speaks it from its first prompt, and the hang-up forgets it. A flow without a language
question leaves the call with no language of its own (the queue's stays the default)."""

from __future__ import annotations

import asyncio

from acd.ivr_calls import IvrRunner
from acd.ivr_flow import NodeType
from acd.ivr_store import MIGRATIONS_IVR, FlowStore
from callcenter.database import apply_migrations, open_database

CHOOSE = {
    "name": "choose", "start": "language", "language": "zh-CN",
    "nodes": {
        "language": {"type": "language", "prompts": ["ivr/choose-language"], "options": {"1": "zh-CN", "2": "en"},
                     "timeout": 5, "retries": 2, "next": "queue"},
        "queue": {"type": "queue", "queue": "8001"},
    },
}
STRAIGHT = {"name": "straight", "start": "queue", "language": "zh-CN",
            "nodes": {"queue": {"type": "queue", "queue": "8001"}}}
SURVEY = {
    "name": "survey", "start": "rate", "language": "zh-CN",
    "nodes": {"rate": {"type": "survey", "prompts": ["ivr/rate-us"], "timeout": 5, "retries": 1, "next": "bye"},
              "bye": {"type": "hangup", "prompts": ["ivr/thanks-rating"]}},
}


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def runner_with_flows(tmp_path, engine, sounds):
    conn = await open_database(tmp_path / "callcenter.db")
    await apply_migrations(conn, "ivr", [MIGRATIONS_IVR])
    flows = FlowStore(conn)
    for flow in (CHOOSE, STRAIGHT, SURVEY):
        await flows.save(flow)
    routed: list[tuple[str, NodeType, str | None]] = []
    hung_up: list[str] = []
    runner: IvrRunner | None = None

    def route(call_id, transfer) -> None:
        # What the wiring does at this moment: ask the language the caller chose.
        assert runner is not None
        routed.append((call_id, transfer.kind, runner.language_of(call_id)))

    runner = IvrRunner(engine, flows, None, sound_dirs=(sounds,), route=route,
                       hangup=lambda call_id, cause: hung_up.append(cause))
    engine.set_event_handler(runner.on_media_event)
    return conn, runner, routed, hung_up


async def test_english_chosen_in_one_flow_is_the_language_of_the_survey_later(tmp_path, engine, sounds, make_caller):
    conn, runner, routed, _ = await runner_with_flows(tmp_path, engine, sounds)
    try:
        endpoint = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
        caller = make_caller()
        engine.set_remote(endpoint, "127.0.0.1", caller.port)
        await runner.start("call-1", endpoint, "1005", "choose")
        caller.press("2", endpoint.local_port)                  # English
        await until(lambda: routed)
        assert routed == [("call-1", NodeType.QUEUE, "en")]     # known when the call is handed on
        assert "call-1" not in runner and runner.language_of("call-1") == "en"

        # The agent's part is over: the same call is sent to the survey, which speaks English.
        await runner.start("call-1", endpoint, "1005", "survey")
        run = runner._calls["call-1"]
        assert run.session.language == "en" and run.session.path == ["rate"]
        await until(lambda: caller.audio_packets() > 0)         # "rate us", in English

        runner.ended("call-1")                                 # the caller hangs up
        assert runner.language_of("call-1") is None
    finally:
        await conn.close()


async def test_a_flow_without_a_language_question_leaves_the_queue_its_own(tmp_path, engine, sounds, make_caller):
    conn, runner, routed, _ = await runner_with_flows(tmp_path, engine, sounds)
    try:
        endpoint = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
        await runner.start("call-2", endpoint, "1006", "straight")
        await until(lambda: routed)
        assert routed == [("call-2", NodeType.QUEUE, None)]
        # A language the wiring passes in (chosen earlier in the call) wins over the flow's.
        await runner.start("call-2", endpoint, "1006", "survey", language="en")
        assert runner._calls["call-2"].session.language == "en"
        assert runner.language_of("call-2") == "en"
        runner.ended("call-2")
    finally:
        await conn.close()
