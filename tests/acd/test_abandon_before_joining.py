"""Issue #8, sans-IO: a caller who hangs up while the call-control layer still asks the CRM
who is calling never joined the ACD, yet reached the queue and left it unserved. The queue log
says so (ENTERQUEUE at the arrival, ABANDON at the hang-up) and the wallboard counts an abandon;
the ACD's own state is untouched."""

from __future__ import annotations

import pytest

from acd.agents import Agent, AgentState, Membership
from acd.distributor import Acd, AcdError, Offer
from acd.queues import QueueConfig, QueuedCall, Strategy
from acd.wallboard import Wallboard


def build() -> Acd:
    acd = Acd()
    acd.add_queue(QueueConfig("8001", "销售", Strategy.RINGALL))
    acd.add_agent(Agent("1001", "坐席1", queues={"8001": Membership()}))
    acd.login("1001", 0.0)
    del acd.log[:]
    return acd


def test_a_caller_lost_during_the_look_up_is_logged_as_entered_and_abandoned() -> None:
    acd = build()
    events = acd.abandoned_before_joining(QueuedCall("c1", "8001", 100.0, caller="13900139001"), 100.15)
    assert events == []
    assert [(e.at, e.call_id, e.queue_id, e.agent_id, e.event, e.data) for e in acd.log] == [
        (100.0, "c1", "8001", "NONE", "ENTERQUEUE", ("13900139001", "0")),
        (100.15, "c1", "8001", "NONE", "ABANDON", ("1", "0")),
    ]
    # Nothing of the call stays behind; the agent is as free as before.
    assert not acd.waiting and not acd.connected
    assert acd.agents["1001"].state is AgentState.READY
    assert [e for e in acd.enqueue(QueuedCall("c2", "8001", 101.0), 101.0) if isinstance(e, Offer)]


def test_the_wallboard_counts_the_abandon() -> None:
    acd = build()
    wallboard = Wallboard(acd)
    acd.abandoned_before_joining(QueuedCall("c1", "8001", 100.0, caller="1003"), 100.1)
    for entry in acd.log:
        wallboard.record(entry)
    [queue] = wallboard.snapshot(100.2)["queues"]
    assert queue["abandoned"] == 1 and queue["answered"] == 0 and queue["waiting"] == 0


def test_an_arrival_in_the_future_counts_from_the_hang_up() -> None:
    acd = build()
    acd.abandoned_before_joining(QueuedCall("c1", "8001", 200.0), 150.0)
    assert [e.at for e in acd.log] == [150.0, 150.0]


def test_a_call_already_in_the_queue_is_refused() -> None:
    acd = build()
    acd.enqueue(QueuedCall("c1", "8001", 100.0), 100.0)
    with pytest.raises(AcdError):
        acd.abandoned_before_joining(QueuedCall("c1", "8001", 100.0), 101.0)
