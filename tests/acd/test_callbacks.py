"""Queued callbacks in the ACD, sans-IO: a caller who asks to be called back keeps their place
and priority without a live leg; the number is tried when an agent takes the entry, retried
after a delay, given up after the queue's tries; every step is in the queue log. And the
estimated wait a queue announces."""

from __future__ import annotations

import random

import pytest

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.distributor import Acd, AcdError, CallbackChanged, Offer, Overflowed, StopRinging
from acd.queues import CallbackStatus, QueueConfig, QueuedCall, Strategy
from acd.wait_estimate import WaitEstimator


def build(agents: int = 1, logged_in: bool = False, **queue: object) -> Acd:
    acd = Acd(random.Random(1))
    acd.add_queue(QueueConfig("q", "客服", Strategy.LINEAR, **{"wrapuptime": 0, "joinempty": True, **queue}))  # type: ignore[arg-type]
    for i in range(agents):
        acd.add_agent(Agent(f"a{i}", f"坐席{i}", queues={"q": Membership()}))
        if logged_in:
            acd.login(f"a{i}", 0.0)
    return acd


def events_of(acd: Acd) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(e.call_id, e.event, e.data) for e in acd.log if e.event.startswith("CALLBACK")]


def test_a_callback_keeps_its_place_and_priority_without_a_live_leg() -> None:
    acd = build(agents=1, logged_in=False)
    acd.login("a0", 0.0)
    acd.not_ready("a0", NotReadyReason.BREAK, 0.5)
    acd.enqueue(QueuedCall("first", "q", 1.0, caller="13800138000"), 1.0)
    acd.enqueue(QueuedCall("second", "q", 2.0, caller="13900139000"), 2.0)
    acd.enqueue(QueuedCall("vip", "q", 3.0, caller="13700137000", priority=2), 3.0)
    assert [acd.position(c) for c in ("vip", "first", "second")] == [1, 2, 3]

    events = acd.book_callback("first", "13800138000", 10.0)
    assert [e for e in events if isinstance(e, CallbackChanged)] == [
        CallbackChanged("first", "q", "13800138000", CallbackStatus.PENDING, 0, 0.0, 1.0, 0)]
    # Same place as before: behind the VIP, ahead of the caller who came later.
    assert acd.position("first") == 2 and acd.position("second") == 3
    assert [c.call_id for c in acd.callbacks("q")] == ["first"]
    assert events_of(acd) == [("first", "CALLBACKREQ", ("13800138000", "key"))]

    # A callback is nobody on the line: no max_wait, no leaving an empty queue, no maxlen place.
    acd.queues["q"].max_wait = 5
    acd.tick(100.0)
    assert "first" in acd.waiting and "second" not in acd.waiting


def test_booking_withdraws_the_ringing_offer_and_bad_numbers_are_refused() -> None:
    acd = build(agents=1, logged_in=True)
    [offer] = [e for e in acd.enqueue(QueuedCall("c1", "q", 1.0, caller="1005"), 1.0) if isinstance(e, Offer)]
    assert offer.agent_ids == ("a0",)
    with pytest.raises(AcdError):
        acd.book_callback("c1", "anonymous", 2.0)
    events = acd.book_callback("c1", "1005", 2.0)
    assert StopRinging("c1", "a0") in events
    # The entry is offered again at once: the same agent, now for the callback.
    assert any(isinstance(e, Offer) and e.call_id == "c1" for e in events)
    assert [e.event for e in acd.log].count("RINGCANCELED") == 1


def test_the_number_is_retried_after_the_delay_then_given_up() -> None:
    acd = build(agents=1, logged_in=True, callback_attempts=2, callback_retry_delay=60.0)
    [offer] = [e for e in acd.add_callback(QueuedCall("cb", "q", 0.0, callback="13800138000"), 10.0)
               if isinstance(e, Offer)]
    assert offer.agent_ids == ("a0",)
    acd.answered("cb", "a0", 12.0)
    assert acd.callback_dialling("cb", 15.0) == 1
    events = acd.callback_failed("cb", "busy", 20.0)
    # The agent is free at once; the entry waits out the delay in its place.
    assert acd.agents["a0"].state is AgentState.READY
    assert not [e for e in events if isinstance(e, Offer)]
    changed = [e for e in events if isinstance(e, CallbackChanged)][-1]
    assert (changed.status, changed.attempts, changed.not_before) == (CallbackStatus.PENDING, 1, 80.0)
    assert acd.next_deadline() == 80.0
    assert not [e for e in acd.tick(79.0) if isinstance(e, Offer)]
    [again] = [e for e in acd.tick(80.0) if isinstance(e, Offer)]
    assert again.call_id == "cb"
    acd.answered("cb", "a0", 81.0)
    assert acd.callback_dialling("cb", 84.0) == 2
    events = acd.callback_failed("cb", "no_answer", 110.0)
    assert [e.status for e in events if isinstance(e, CallbackChanged)] == [CallbackStatus.FAILED]
    assert "cb" not in acd.waiting and "cb" not in acd.connected
    assert events_of(acd) == [
        ("cb", "CALLBACKREQ", ("13800138000", "ivr")),
        ("cb", "CALLBACKDIAL", ("13800138000", "1")),
        ("cb", "CALLBACKRETRY", ("13800138000", "1", "busy")),
        ("cb", "CALLBACKDIAL", ("13800138000", "2")),
        ("cb", "CALLBACKFAIL", ("13800138000", "2", "no_answer")),
    ]
    # The queue log rows carry the agent and exact times.
    rows = [(e.at, e.agent_id) for e in acd.log if e.event in ("CALLBACKDIAL", "CALLBACKFAIL")]
    assert rows == [(15.0, "a0"), (84.0, "a0"), (110.0, "a0")]


def test_an_answered_callback_completes_like_any_queue_call() -> None:
    acd = build(agents=1, logged_in=True)
    acd.add_callback(QueuedCall("cb", "q", 0.0, callback="1005"), 1.0)
    acd.answered("cb", "a0", 2.0)
    acd.callback_dialling("cb", 4.0)
    events = acd.callback_answered("cb", 9.0)
    assert [e.status for e in events if isinstance(e, CallbackChanged)] == [CallbackStatus.DONE]
    acd.agent_hangup("cb", 69.0)
    completed = [e for e in acd.log if e.event == "COMPLETEAGENT"]
    # Held until the number answered; the talk counts from there.
    assert [e.data for e in completed] == [("8", "60")]
    assert [e.event for e in acd.log if e.call_id == "cb"] == [
        "CALLBACKREQ", "CONNECT", "CALLBACKDIAL", "CALLBACKDONE", "COMPLETEAGENT"]


def test_an_agent_who_hangs_up_before_the_dial_uses_no_try_and_another_agent_goes_first() -> None:
    acd = build(agents=2, logged_in=True)
    acd.add_callback(QueuedCall("cb", "q", 0.0, callback="1005"), 1.0)
    acd.answered("cb", "a0", 2.0)
    events = acd.callback_failed("cb", "agent_hangup", 3.0)
    [offer] = [e for e in events if isinstance(e, Offer)]
    assert offer.agent_ids == ("a1",) and acd.waiting["cb"].attempts == 0
    assert "CALLBACKRETRY" not in [e.event for e in acd.log]


def test_overflow_to_callback_keeps_the_place_of_a_caller_who_waited_too_long() -> None:
    acd = build(agents=1, logged_in=False, max_wait=30.0, overflow="callback")
    acd.login("a0", 0.0)
    acd.not_ready("a0", NotReadyReason.BREAK, 0.0)
    acd.enqueue(QueuedCall("c1", "q", 1.0, caller="13800138000"), 1.0)
    acd.enqueue(QueuedCall("anon", "q", 2.0, caller="anonymous"), 2.0)
    events = acd.tick(40.0)
    overflowed = {e.call_id: e.destination for e in events if isinstance(e, Overflowed)}
    assert overflowed == {"c1": "callback", "anon": ""}  # no number: nothing to call back
    assert acd.waiting["c1"].callback == "13800138000" and acd.waiting["c1"].entered_at == 1.0
    assert [e.event for e in acd.log if e.call_id == "c1"] == ["ENTERQUEUE", "EXITWITHTIMEOUT", "CALLBACKREQ"]
    assert events_of(acd)[-1] == ("c1", "CALLBACKREQ", ("13800138000", "overflow"))


def test_a_restored_callback_is_not_logged_again_and_waits_out_its_delay() -> None:
    acd = build(agents=1, logged_in=True)
    entry = QueuedCall("cb", "q", 5.0, caller="1005", callback="1005", attempts=1, not_before=100.0)
    assert not [e for e in acd.add_callback(entry, 50.0, restored=True) if isinstance(e, Offer)]
    assert acd.log[-1].event == "ADDMEMBER"
    assert [e.call_id for e in acd.tick(100.0) if isinstance(e, Offer)] == ["cb"]


def test_estimated_wait_is_position_times_handle_time_over_staffed_agents() -> None:
    estimator = WaitEstimator()
    assert estimator.estimate("q", 3, 2) is None               # nothing known yet
    estimator.waited("q", 90)
    assert estimator.estimate("q", 3, 2) == 90                 # recent waits stand in
    for seconds in (100, 200, 300):
        estimator.handled("q", seconds)
    assert estimator.estimate("q", 3, 2) == 3 * 200 / 2        # P × AHT / N
    assert estimator.estimate("q", 3, 0) is None               # nobody staffing the queue

    acd = build(agents=2, logged_in=True)
    for i in range(2):
        acd.enqueue(QueuedCall(f"c{i}", "q", 1.0), 1.0)
        acd.answered(f"c{i}", f"a{i}", 5.0)
    acd.agent_hangup("c0", 125.0)                              # 120 s of talk
    acd.agent_hangup("c1", 185.0)                              # 180 s
    for i in range(2):                                         # both busy again
        acd.enqueue(QueuedCall(f"d{i}", "q", 200.0), 200.0)
        acd.answered(f"d{i}", f"a{i}", 201.0)
    acd.enqueue(QueuedCall("x", "q", 210.0), 210.0)
    acd.enqueue(QueuedCall("y", "q", 211.0), 211.0)
    assert acd.estimated_wait("y") == 2 * 150 / 2              # AHT 150 s, two agents staffed
    acd.logout("a1", 212.0)                                    # after this call: one agent left
    acd.agent_hangup("d1", 272.0)
    assert acd.agents["a1"].state is AgentState.LOGGED_OUT
    assert acd.estimated_wait("y") == 2 * (120 + 180 + 71) / 3   # P × AHT / 1
