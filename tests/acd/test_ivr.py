"""The IVR flow checks and the sans-IO session: every rule driven without sockets."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acd.ivr import (
    BookCallback,
    Hangup,
    IvrSession,
    Lookup,
    Play,
    RecordMessage,
    StartTimer,
    StopPlay,
    StoreRating,
    Transfer,
)
from acd.ivr_flow import FlowError, NodeType, parse_flow

FLOW = {
    "name": "main", "version": 2, "start": "lang", "language": "zh-CN",
    "nodes": {
        "lang": {"type": "language", "prompts": ["ivr/choose-language"], "options": {"1": "zh-CN", "2": "en"},
                 "timeout": 4, "retries": 1, "next": "notice"},
        "notice": {"type": "play", "prompts": ["ivr/recorded-notice"], "next": "hours"},
        "hours": {"type": "condition", "test": "time", "argument": "office", "then": "menu", "else": "closed"},
        "closed": {"type": "message", "prompts": ["ivr/closed-leave-message"], "ticket_type": "complaint",
                   "next": "bye"},
        "menu": {"type": "menu", "prompts": ["ivr/main-menu"], "options": {"1": "points", "9": "callback", "0": "agent"},
                 "timeout": 5, "retries": 3, "invalid_prompts": ["ivr/invalid"],
                 "timeout_prompts": ["ivr/no-input"], "on_fail": "agent"},
        "points": {"type": "collect", "prompts": ["ivr/enter-member-number"], "var": "member_no", "min": 4,
                   "max": 8, "next": "find", "on_fail": "menu"},
        "find": {"type": "lookup", "query": "member_points", "var": "member_no", "found": "say", "not_found": "nf"},
        "say": {"type": "play", "prompts": ["ivr/your-points", {"say": "number", "var": "points"}, "ivr/points"],
                "next": "menu"},
        "nf": {"type": "play", "prompts": ["ivr/member-not-found"], "next": "menu"},
        "callback": {"type": "callback", "queue": "8002", "prompts": ["ivr/callback-booked"], "next": "survey"},
        "survey": {"type": "survey", "prompts": ["ivr/rate-us"], "retries": 2, "next": "bye"},
        "agent": {"type": "condition", "test": "vip", "argument": "3", "then": "vip", "else": "queue"},
        "vip": {"type": "queue", "queue": "8001", "skills": {"vip": 1}},
        "queue": {"type": "queue", "queue": "8002"},
        "bye": {"type": "hangup", "prompts": ["ivr/goodbye"]},
    },
}


def session(open_: bool = True, **kw) -> IvrSession:
    return IvrSession(parse_flow(FLOW), caller="13800138000", is_open=lambda name: open_ and name == "office", **kw)


def to_menu(s: IvrSession) -> None:
    assert s.start() == [Play(("ivr/choose-language",), "zh-CN", True)]
    s.digit("1")
    assert s.prompt_done() == [Play(("ivr/main-menu",), "zh-CN", True)]   # after the notice
    assert s.path[-1] == "menu"


def test_language_choice_then_notice_then_menu():
    s = session()
    s.start()
    actions = s.digit("2")
    assert actions == [StopPlay(), Play(("ivr/recorded-notice",), "en", False)]
    assert s.language == "en"
    assert s.prompt_done() == [Play(("ivr/main-menu",), "en", True)]
    assert s.path == ["lang", "notice", "hours", "menu"]


def test_menu_timeouts_and_invalid_keys_retry_then_fail_over():
    s = session()
    to_menu(s)
    [timer] = s.prompt_done()
    assert isinstance(timer, StartTimer) and timer.seconds == 5
    assert s.timeout(timer.token) == [Play(("ivr/no-input", "ivr/main-menu"), "zh-CN", True)]
    assert s.timeout(timer.token) == []            # a stale timer is ignored
    [timer] = s.prompt_done()
    assert s.digit("7") == [Play(("ivr/invalid", "ivr/main-menu"), "zh-CN", True)]
    s.prompt_done()
    # Third failure: on_fail (agent) -> not VIP -> the service queue.
    assert s.digit("5") == [Transfer(NodeType.QUEUE, "8002", {}, {})]
    assert s.finished


def test_collect_lookup_and_read_out_of_points():
    s = session()
    to_menu(s)
    assert s.digit("1") == [StopPlay(), Play(("ivr/enter-member-number",), "zh-CN", True)]
    for key in "1234":
        s.digit(key)
    [lookup] = s.digit("#")
    assert lookup == Lookup("member_points", "1234")
    [play] = s.lookup_result({"points": 12345, "name": "王芳"})
    assert play.prompts == ("ivr/your-points", "num/1", "num/10000", "num/liang", "num/1000", "num/3", "num/100",
                            "num/4", "num/10", "num/5", "ivr/points")
    assert s.variables["name"] == "王芳"
    assert s.prompt_done() == [Play(("ivr/main-menu",), "zh-CN", True)]


def test_collect_too_short_retries_and_max_length_ends_without_terminator():
    s = session()
    to_menu(s)
    s.digit("1")
    s.digit("1")
    assert s.digit("#") == [Play(("ivr/enter-member-number",), "zh-CN", True)]  # fewer than 4 digits
    for key in "1234567":
        s.digit(key)
    assert s.digit("8") == [Lookup("member_points", "12345678")]


def test_collect_accepts_enough_digits_on_timeout():
    s = session()
    to_menu(s)
    s.digit("1")
    s.prompt_done()
    s.digit("5")
    s.digit("5")
    s.digit("5")
    [timer] = s.digit("5")
    assert s.timeout(timer.token) == [Lookup("member_points", "5555")]


def test_not_found_and_type_ahead_during_a_plain_prompt():
    s = session()
    to_menu(s)
    s.digit("1")
    for key in "9999#":
        s.digit(key)
    [play] = s.lookup_result(None)
    assert play == Play(("ivr/member-not-found",), "zh-CN", False)
    assert s.digit("0") == []                      # typed ahead during the non-interruptible prompt
    assert s.prompt_done() == [Transfer(NodeType.QUEUE, "8002", {}, {"member_no": "9999"})]


def test_vip_callers_go_to_the_vip_queue_with_skills():
    s = session(variables={"vip_level": "4"})
    to_menu(s)
    [stop, transfer] = s.digit("0")
    assert stop == StopPlay()
    assert transfer.kind is NodeType.QUEUE and transfer.target == "8001" and transfer.skills == {"vip": 1}
    assert transfer.variables["vip_level"] == "4"


def test_after_hours_message_then_goodbye():
    s = session(open_=False)
    s.start()
    s.digit("1")
    assert s.prompt_done() == [Play(("ivr/closed-leave-message",), "zh-CN", False)]
    assert s.prompt_done() == [RecordMessage("complaint", 120)]
    assert s.message_recorded(True) == [Play(("ivr/goodbye",), "zh-CN", False)]
    assert s.prompt_done() == [Hangup("flow ended")]
    assert s.variables["message_saved"] == "1"


def test_callback_then_survey_rating():
    s = session()
    to_menu(s)
    actions = s.digit("9")
    assert actions[:2] == [StopPlay(), Play(("ivr/callback-booked",), "zh-CN", False)]
    actions = s.prompt_done()
    assert actions == [BookCallback("8002", "13800138000"), Play(("ivr/rate-us",), "zh-CN", True)]
    assert s.digit("7")[-1] == Play(("ivr/rate-us",), "zh-CN", True)   # not 1-5: asked again
    assert s.digit("4") == [StopPlay(), StoreRating(4), Play(("ivr/goodbye",), "zh-CN", False)]
    assert s.variables["rating"] == "4"


def test_language_menu_without_answer_keeps_the_default():
    s = session()
    s.start()
    [timer] = s.prompt_done()
    assert s.timeout(timer.token) == [Play(("ivr/recorded-notice",), "zh-CN", False)]
    assert s.language == "zh-CN"


def test_a_flow_that_loops_without_input_is_ended():
    flow = parse_flow({"name": "loop", "start": "a", "nodes": {
        "a": {"type": "condition", "test": "blacklisted", "then": "b", "else": "b"},
        "b": {"type": "condition", "test": "blacklisted", "then": "a", "else": "a"}}})
    actions = IvrSession(flow, caller="1").start()
    assert len(actions) == 1 and isinstance(actions[0], Hangup) and "loops" in actions[0].reason


def test_read_out_of_a_missing_variable_is_skipped_and_noted():
    flow = parse_flow({"name": "x", "start": "a", "nodes": {
        "a": {"type": "play", "prompts": ["ivr/a", {"say": "amount", "var": "balance"}], "next": "b"},
        "b": {"type": "hangup"}}})
    s = IvrSession(flow, caller="1")
    assert s.start() == [Play(("ivr/a",), "zh-CN", False)]
    assert s.problems and "balance" in s.problems[0]


def test_datetime_read_out_in_english():
    flow = parse_flow({"name": "x", "start": "a", "language": "en", "nodes": {
        "a": {"type": "play", "prompts": [{"say": "datetime", "var": "when"}], "next": "b"},
        "b": {"type": "hangup"}}})
    s = IvrSession(flow, caller="1", variables={"when": datetime(2026, 11, 23, 15, 30).isoformat()})
    [play] = s.start()
    assert play.prompts == ("date/month-11", "num/20", "num/3", "num/3", "num/30", "time/pm")


def test_flow_errors_are_all_listed():
    bad = json.loads(json.dumps(FLOW))
    bad["start"] = "nowhere"
    bad["nodes"]["menu"]["options"]["x"] = "points"
    bad["nodes"]["menu"]["timeout"] = 0
    bad["nodes"]["say"]["next"] = "missing"
    bad["nodes"]["points"]["colour"] = "red"
    bad["nodes"]["find"]["query"] = "horoscope"
    bad["nodes"]["extra"] = {"type": "teleport"}
    with pytest.raises(FlowError) as err:
        parse_flow(bad)
    text = " | ".join(err.value.problems)
    for fragment in ("start: 'nowhere'", "'x' is not a phone key", "menu.timeout", "'missing'",
                     "unknown fields ['colour']", "query: one of", "extra: type must be"):
        assert fragment in text, fragment


def test_unreachable_nodes_and_missing_prompts_are_refused():
    flow = {"name": "x", "start": "a", "nodes": {"a": {"type": "hangup"}, "b": {"type": "hangup"}}}
    with pytest.raises(FlowError, match="never reached"):
        parse_flow(flow)
    with pytest.raises(FlowError, match="no sound file for prompt 'ivr/main-menu'"):
        parse_flow(FLOW, prompt_exists=lambda name: name != "ivr/main-menu")
    with pytest.raises(FlowError, match="not JSON"):
        parse_flow("{nodes:")


def test_flow_round_trips_as_json():
    flow = parse_flow(FLOW)
    again = parse_flow(flow.to_json())
    assert again.nodes == flow.nodes and again.version == 2


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("digit"), st.sampled_from(list("0123456789*#"))),
    st.tuples(st.just("done"), st.none()),
    st.tuples(st.just("timeout"), st.none()),
    st.tuples(st.just("lookup"), st.sampled_from([None, {"points": "120"}, {"points": "x"}])),
    st.tuples(st.just("message"), st.booleans()),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, vip=st.sampled_from(["0", "5"]), open_=st.booleans())
def test_any_order_of_events_never_breaks_the_session(events, vip, open_):
    s = session(open_=open_, variables={"vip_level": vip})
    actions = s.start()
    timer = 0
    for kind, value in events:
        for action in actions:
            if isinstance(action, StartTimer):
                timer = action.token
        if kind == "digit":
            actions = s.digit(value)
        elif kind == "done":
            actions = s.prompt_done()
        elif kind == "timeout":
            actions = s.timeout(timer)
        elif kind == "lookup":
            actions = s.lookup_result(value)
        else:
            actions = s.message_recorded(value)
        ends = [a for a in actions if isinstance(a, Transfer | Hangup)]
        assert len(ends) <= 1
        if ends:
            assert s.finished and actions[-1] is ends[0]
        if s.finished:
            assert s.digit("1") == [] and s.prompt_done() == []
    assert all(node in s.flow.nodes for node in s.path)


def test_the_shipped_flows_are_valid_and_all_their_prompts_have_sound_files():
    from acd.demo_flows import DEMO_FLOWS
    from acd.prompt_catalogue import sound_path
    from acd.say import LANGUAGES

    for body in DEMO_FLOWS:
        for language in LANGUAGES:
            parse_flow(body, prompt_exists=lambda name, lang=language: sound_path(lang, name).exists())


def test_prompt_names_cannot_leave_the_sounds_folder():
    from acd.prompt_catalogue import sound_path

    for bad in ("../etc/passwd", "ivr/../../x", "", "ivr//x", "a b"):
        with pytest.raises(ValueError):
            sound_path("zh-CN", bad)
    with pytest.raises(ValueError):
        sound_path("fr", "ivr/welcome")


async def test_flow_store_versions_and_publishing(tmp_path):
    import aiosqlite

    from acd.demo_flows import MAIN_IVR
    from acd.ivr_store import MIGRATIONS_IVR, FlowNotFound, FlowStore

    async with aiosqlite.connect(tmp_path / "x.db") as conn:
        await conn.executescript(MIGRATIONS_IVR)
        store = FlowStore(conn)
        first = await store.seed(MAIN_IVR)
        assert first.version == 1 and await store.seed(MAIN_IVR) == first
        changed = json.loads(json.dumps(MAIN_IVR))
        changed["nodes"]["menu"]["timeout"] = 9
        second = await store.save(changed, by="admin")
        assert second.version == 2 and (await store.live("main")).nodes["menu"].timeout == 9
        broken = json.loads(json.dumps(MAIN_IVR))
        broken["nodes"]["menu"]["options"]["1"] = "nowhere"
        with pytest.raises(FlowError):
            await store.save(broken)
        assert [v.version for v in await store.versions("main")] == [1, 2]
        await store.publish("main", 1)
        fresh = FlowStore(conn)
        assert (await fresh.live("main")).version == 1
        assert [v.live for v in await fresh.versions("main")] == [True, False]
        with pytest.raises(FlowNotFound):
            await fresh.live("nope")
        with pytest.raises(FlowNotFound):
            await fresh.version("main", 7)
