"""The ACD's decisions, sans-IO: strategies, priorities, wrap-up, overflow, skills — and, over
random orders of events, the invariants a supervisor relies on."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.distributor import Acd, Connected, Offer, Overflowed, StopRinging
from acd.queues import PenaltyRule, QueueConfig, QueuedCall, Strategy


def build(strategy: Strategy = Strategy.RINGALL, agents: int = 3, **queue: object) -> Acd:
    acd = Acd(random.Random(7))
    acd.add_queue(QueueConfig("q", "客服", strategy, **queue))  # type: ignore[arg-type]
    for i in range(agents):
        acd.add_agent(Agent(f"a{i}", f"坐席{i}", queues={"q": Membership()}))
        acd.login(f"a{i}", 0.0)
    return acd


def offers(events: list) -> list[Offer]:
    return [e for e in events if isinstance(e, Offer)]


def take_call(acd: Acd, call_id: str, now: float, talk: float = 60.0) -> str:
    """Enqueue a call, answer it by the (first) offered agent, and hang it up after `talk`."""
    [offer] = offers(acd.enqueue(QueuedCall(call_id, "q", now), now))
    agent = offer.agent_ids[0]
    acd.answered(call_id, agent, now + 1)
    acd.caller_hangup(call_id, now + 1 + talk)
    acd.tick(now + 1 + talk + 100)  # past wrap-up
    return agent


def test_ringall_rings_everyone_and_the_answer_stops_the_others() -> None:
    acd = build(Strategy.RINGALL)
    [offer] = offers(acd.enqueue(QueuedCall("c1", "q", 0), 1.0))
    assert offer.agent_ids == ("a0", "a1", "a2")
    events = acd.answered("c1", "a1", 3.0)
    assert {e.agent_id for e in events if isinstance(e, StopRinging)} == {"a0", "a2"}
    assert Connected("c1", "a1") in events
    assert acd.agents["a0"].state is AgentState.READY and acd.agents["a1"].state is AgentState.ON_CALL


def test_leastrecent_and_fewestcalls_and_linear_and_rrmemory() -> None:
    acd = build(Strategy.LEASTRECENT)
    served = [take_call(acd, f"c{i}", i * 1000.0) for i in range(4)]
    assert served == ["a0", "a1", "a2", "a0"]  # whoever has been idle longest

    acd = build(Strategy.FEWESTCALLS)
    acd.agents["a0"].calls_taken = 5
    acd.agents["a1"].calls_taken = 2
    assert take_call(acd, "c1", 0) == "a2"

    acd = build(Strategy.LINEAR)
    assert [take_call(acd, f"c{i}", i * 1000.0) for i in range(3)] == ["a0", "a0", "a0"]

    acd = build(Strategy.RRMEMORY)
    assert [take_call(acd, f"c{i}", i * 1000.0) for i in range(4)] == ["a0", "a1", "a2", "a0"]


def test_random_spreads_calls() -> None:
    acd = build(Strategy.RANDOM)
    served = Counter(take_call(acd, f"c{i}", i * 1000.0) for i in range(60))
    assert set(served) == {"a0", "a1", "a2"}


def test_lower_penalty_is_offered_first() -> None:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "q", Strategy.RINGALL))
    acd.add_agent(Agent("backup", "b", queues={"q": Membership(penalty=5)}))
    acd.add_agent(Agent("main", "m", queues={"q": Membership(penalty=0)}))
    for a in ("backup", "main"):
        acd.login(a, 0)
    assert offers(acd.enqueue(QueuedCall("c", "q", 0), 1))[0].agent_ids == ("main",)


def test_vip_callers_jump_ahead() -> None:
    acd = build(Strategy.LINEAR, agents=1)
    acd.not_ready("a0", NotReadyReason.BREAK, 0)
    acd.enqueue(QueuedCall("regular", "q", 0, caller="138"), 1)
    acd.enqueue(QueuedCall("vip", "q", 0, caller="139", priority=10), 2)
    assert acd.position("vip") == 1 and acd.position("regular") == 2
    assert offers(acd.ready("a0", 3))[0].call_id == "vip"


def test_wrap_up_is_applied_after_every_call_then_the_agent_is_ready() -> None:
    acd = build(Strategy.LINEAR, agents=1, wrapuptime=30)
    acd.enqueue(QueuedCall("c1", "q", 0), 0)
    acd.answered("c1", "a0", 1)
    acd.agent_hangup("c1", 61)
    assert acd.agents["a0"].state is AgentState.WRAP_UP
    assert offers(acd.enqueue(QueuedCall("c2", "q", 0), 70)) == []  # not while wrapping up
    assert acd.next_deadline() == 91
    assert offers(acd.tick(91))[0].call_id == "c2"


def test_unanswered_offers_set_the_agent_not_ready() -> None:
    acd = build(Strategy.LINEAR, agents=2, max_missed=2)
    acd.enqueue(QueuedCall("c1", "q", 0), 0)
    acd.ring_timeout("c1", "a0", 15)  # offered on to a1
    acd.caller_hangup("c1", 20)
    acd.enqueue(QueuedCall("c2", "q", 0), 30)
    acd.ring_timeout("c2", "a0", 45)
    assert acd.agents["a0"].state is AgentState.NOT_READY
    assert acd.agents["a0"].reason is NotReadyReason.AFTER_CALL


def test_overflow_by_max_wait_maxlen_and_no_agents() -> None:
    acd = build(Strategy.LINEAR, agents=1, max_wait=60, maxlen=1, overflow="voicemail:1001")
    acd.not_ready("a0", NotReadyReason.LUNCH, 0)
    assert acd.enqueue(QueuedCall("c1", "q", 0), 0) == []
    assert acd.enqueue(QueuedCall("c2", "q", 0), 1) == [Overflowed("c2", "voicemail:1001", "maxlen")]
    assert Overflowed("c1", "voicemail:1001", "max_wait") in acd.tick(60)
    acd.logout("a0", 61)
    assert acd.enqueue(QueuedCall("c3", "q", 0), 62) == [Overflowed("c3", "voicemail:1001", "no_agents")]
    assert [e.event for e in acd.log if e.call_id != "NONE"] == ["ENTERQUEUE", "FULL", "EXITWITHTIMEOUT", "JOINEMPTY"]


def test_skill_requirements_relax_as_the_caller_waits() -> None:
    acd = Acd()
    acd.add_queue(QueueConfig("q", "q", Strategy.RINGALL, penalty_rules=[PenaltyRule(30, 0, relax_skills=3)]))
    acd.add_agent(Agent("junior", "j", queues={"q": Membership()}, skills={"english": 5}))
    acd.login("junior", 0)
    assert offers(acd.enqueue(QueuedCall("c", "q", 0, skills={"english": 8}), 0)) == []
    assert acd.next_deadline() == 30
    assert offers(acd.tick(30))[0].agent_ids == ("junior",)


def test_the_last_agent_who_served_the_caller_is_tried_first() -> None:
    acd = build(Strategy.LINEAR)
    assert offers(acd.enqueue(QueuedCall("c", "q", 0, preferred_agent="a2"), 0))[0].agent_ids == ("a2",)


def test_logout_during_a_call_waits_for_the_call_and_wrap_up() -> None:
    acd = build(Strategy.LINEAR, agents=1, wrapuptime=10)
    acd.enqueue(QueuedCall("c", "q", 0), 0)
    acd.answered("c", "a0", 1)
    acd.logout("a0", 5)
    assert acd.agents["a0"].state is AgentState.ON_CALL
    acd.caller_hangup("c", 20)
    acd.tick(30)
    assert acd.agents["a0"].state is AgentState.LOGGED_OUT


# ---------------------------------------------------------------- properties

ACTIONS = st.lists(st.tuples(st.sampled_from(
    ["enqueue", "vip", "answer", "ring_out", "caller_hangup", "agent_hangup", "transfer", "login", "logout",
     "ready", "not_ready", "tick", "busy", "free"]), st.integers(0, 9), st.floats(0.0, 40.0)), max_size=120)


def check_invariants(acd: Acd) -> None:
    in_calls: Counter[str] = Counter()
    for call in acd.waiting.values():
        for agent_id in call.offered_to:
            agent = acd.agents[agent_id]
            assert agent.state is AgentState.RESERVED and agent.call_id == call.call_id
            in_calls[agent_id] += 1
    for connection in acd.connected.values():
        agent = acd.agents[connection.agent_id]
        assert agent.state is AgentState.ON_CALL
        in_calls[agent.id] += 1
    assert all(n == 1 for n in in_calls.values()), "an agent is in two calls"
    for agent in acd.agents.values():
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            assert in_calls[agent.id] == 1, f"{agent.id} is {agent.state.value} with no call"
    for call in acd.waiting.values():
        assert not call.offered_to & acd.busy, f"{call.call_id} offered to an agent on a direct call"


def check_no_idle_agent_while_callers_wait(acd: Acd) -> None:
    """Work-conserving: a caller never waits unoffered while a member is ready and free."""
    free = [a for a in acd.agents.values() if a.state is AgentState.READY and a.id not in acd.busy]
    unoffered = [c for c in acd.waiting.values() if not c.offered_to]
    assert not (free and unoffered), (free, unoffered)


@settings(max_examples=300, deadline=None)
@given(ACTIONS, st.sampled_from(list(Strategy)))
def test_random_event_orders_keep_every_agent_and_caller_accounted_for(actions: list, strategy: Strategy) -> None:
    acd = Acd(random.Random(1))
    acd.add_queue(QueueConfig("q", "q", strategy, wrapuptime=5, max_wait=120, ring_timeout=15, max_missed=2,
                              joinempty=True))
    for i in range(4):
        acd.add_agent(Agent(f"a{i}", f"a{i}", queues={"q": Membership(penalty=i % 2)}))
    now, calls = 0.0, 0
    wrap_up_expected: set[str] = set()
    for action, n, dt in actions:
        now += dt
        agent_id = f"a{n % 4}"
        if action in ("enqueue", "vip"):
            calls += 1
            acd.enqueue(QueuedCall(f"c{calls}", "q", now, priority=5 if action == "vip" else 0), now)
        elif action in ("answer", "ring_out"):
            ringing = [(c.call_id, a) for c in acd.waiting.values() for a in sorted(c.offered_to)]
            if ringing:
                call_id, who = ringing[n % len(ringing)]
                (acd.answered if action == "answer" else acd.ring_timeout)(call_id, who, now)
        elif action in ("caller_hangup", "agent_hangup", "transfer"):
            live = sorted(acd.waiting) + sorted(acd.connected)
            if live:
                call_id = live[n % len(live)]
                connection = acd.connected.get(call_id)
                if action == "caller_hangup":
                    acd.caller_hangup(call_id, now)
                elif action == "agent_hangup":
                    acd.agent_hangup(call_id, now)
                else:
                    acd.transferred(call_id, now, "1009")
                if connection is not None and call_id not in acd.connected:
                    wrap_up_expected.add(connection.agent_id)
                    assert acd.agents[connection.agent_id].state is AgentState.WRAP_UP  # wrap-up always applied
        elif action == "login":
            acd.login(agent_id, now)
        elif action == "logout":
            acd.logout(agent_id, now)
        elif action == "ready":
            acd.ready(agent_id, now)
        elif action == "not_ready":
            acd.not_ready(agent_id, NotReadyReason.BREAK, now)
        elif action in ("busy", "free"):
            # A direct call on the agent's phone starts or ends: no state of its own (an offer
            # ringing them is withdrawn; freed, they may be offered a waiting call at once).
            state = acd.agents[agent_id].state
            acd.set_busy(agent_id, action == "busy", now)
            if action == "busy":
                assert acd.agents[agent_id].state is (AgentState.READY if state is AgentState.RESERVED else state)
            check_no_idle_agent_while_callers_wait(acd)
        else:
            acd.tick(now)
        check_invariants(acd)
    # Direct calls end: nobody stays busy, and no caller waits while an agent is free.
    for agent_id in sorted(acd.busy):
        acd.set_busy(agent_id, False, now)
    check_invariants(acd)
    check_no_idle_agent_while_callers_wait(acd)
    # Everyone hangs up; time passes: every caller who entered has exactly one outcome.
    for call_id in sorted(acd.waiting) + sorted(acd.connected):
        acd.caller_hangup(call_id, now)
    acd.tick(now + 1000)
    check_invariants(acd)
    outcomes: dict[str, list[str]] = {}
    for entry in acd.log:
        if entry.call_id != "NONE":
            outcomes.setdefault(entry.call_id, []).append(entry.event)
    for call_id, events in outcomes.items():
        ends = [e for e in events if e in ("ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "COMPLETECALLER",
                                           "COMPLETEAGENT", "TRANSFER", "FULL", "JOINEMPTY")]
        assert len(ends) == 1, (call_id, events)
        assert events.count("CONNECT") == (1 if ends[0] in ("COMPLETECALLER", "COMPLETEAGENT", "TRANSFER") else 0)
    assert not acd.waiting and not acd.connected
    assert all(a.state is not AgentState.WRAP_UP for a in acd.agents.values())
