"""An agent on a direct call (not a queue call) is skipped by the ACD until that call ends, like
Asterisk's queue member "in use" with ringinuse=no — without a state change of their own: no
PAUSE in the queue log, no wrap-up, the wallboard shows them ready and on a direct call."""

from __future__ import annotations

import random

import pytest

from acd.agents import Agent, AgentState, Membership
from acd.distributor import Acd, AcdError, AgentChanged, Offer, StopRinging
from acd.queues import QueueConfig, QueuedCall, Strategy
from acd.wallboard import Wallboard


def build(strategy: Strategy = Strategy.LINEAR, agents: int = 2) -> Acd:
    acd = Acd(random.Random(3))
    acd.add_queue(QueueConfig("q", "客服", strategy, wrapuptime=0, joinempty=True))
    for i in range(agents):
        acd.add_agent(Agent(f"a{i}", f"坐席{i}", queues={"q": Membership()}))
        acd.login(f"a{i}", 0.0)
    return acd


def offered(events: list) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.call_id, e.agent_ids) for e in events if isinstance(e, Offer)]


def test_a_busy_agent_is_skipped_and_the_call_goes_to_the_next_ready_agent() -> None:
    acd = build()
    assert acd.set_busy("a0", True, 1) == []
    assert offered(acd.enqueue(QueuedCall("c1", "q", 2), 2)) == [("c1", ("a1",))]  # linear would pick a0
    assert acd.agents["a0"].state is AgentState.READY
    assert not [e for e in acd.log if e.event in ("PAUSE", "RINGNOANSWER")]


def test_a_call_waits_while_every_ready_agent_is_busy_and_goes_out_the_moment_one_is_free() -> None:
    acd = build(agents=1)
    acd.set_busy("a0", True, 1)
    assert offered(acd.enqueue(QueuedCall("c1", "q", 2), 2)) == []
    assert acd.tick(30) == [] and "c1" in acd.waiting
    assert offered(acd.set_busy("a0", False, 40)) == [("c1", ("a0",))]
    assert acd.agents["a0"].state is AgentState.RESERVED


def test_ringall_rings_only_the_free_agents() -> None:
    acd = build(Strategy.RINGALL, agents=3)
    acd.set_busy("a1", True, 1)
    assert offered(acd.enqueue(QueuedCall("c1", "q", 2), 2)) == [("c1", ("a0", "a2"))]


def test_an_offer_ringing_when_the_agent_picks_up_a_direct_call_goes_elsewhere_with_no_missed_offer() -> None:
    acd = build()
    assert offered(acd.enqueue(QueuedCall("c1", "q", 2), 2)) == [("c1", ("a0",))]
    events = acd.set_busy("a0", True, 3)
    assert StopRinging("c1", "a0") in events and AgentChanged("a0", AgentState.READY, None) in events
    assert offered(events) == [("c1", ("a1",))]
    assert acd.agents["a0"].missed_in_row == 0
    assert [e.event for e in acd.log if e.agent_id == "a0"] == ["ADDMEMBER", "RINGCANCELED"]


def test_a_queue_call_agent_who_places_a_direct_call_stays_busy_after_the_queue_call() -> None:
    """A consultation call during a queue call: the queue call's end leaves the agent ready but
    still busy; the next caller waits for the consultation to end."""
    acd = build(agents=1)
    acd.enqueue(QueuedCall("c1", "q", 1), 1)
    acd.answered("c1", "a0", 2)
    acd.set_busy("a0", True, 3)
    assert acd.agents["a0"].state is AgentState.ON_CALL
    acd.caller_hangup("c1", 10)
    assert acd.agents["a0"].state is AgentState.READY
    assert offered(acd.enqueue(QueuedCall("c2", "q", 11), 11)) == []
    assert offered(acd.set_busy("a0", False, 12)) == [("c2", ("a0",))]


def test_marks_are_idempotent_and_unknown_agents_are_refused() -> None:
    acd = build()
    acd.set_busy("a0", True, 1)
    assert acd.set_busy("a0", True, 2) == []
    acd.set_busy("a0", False, 3)
    assert acd.set_busy("a0", False, 4) == []
    with pytest.raises(AcdError, match="unknown agent"):
        acd.set_busy("nobody", True, 5)


def test_a_logged_out_agent_logging_in_during_a_direct_call_is_not_offered_until_it_ends() -> None:
    acd = build(agents=1)
    acd.logout("a0", 1)
    acd.set_busy("a0", True, 2)
    acd.enqueue(QueuedCall("c1", "q", 3), 3)
    assert offered(acd.login("a0", 4)) == []
    assert offered(acd.set_busy("a0", False, 5)) == [("c1", ("a0",))]


def test_the_wallboard_shows_the_agent_ready_on_a_direct_call_and_not_among_those_ready() -> None:
    acd = build()
    board = Wallboard(acd)
    acd.set_busy("a0", True, 1)
    snapshot = board.snapshot(5)
    agents = {a["id"]: a for a in snapshot["agents"]}
    assert agents["a0"]["state"] == "ready" and agents["a0"]["busy"] is True
    assert agents["a1"]["busy"] is False
    assert snapshot["queues"][0]["agents_ready"] == 1
    acd.set_busy("a0", False, 6)
    assert board.snapshot(7)["queues"][0]["agents_ready"] == 2
