"""Issue #8, shown on the real call layer: random orders of events — callers arriving in two
queues (some VIP), agents' phones answering, refusing (486) or ringing out, either side hanging
up (CANCEL or BYE), blind and attended transfers by REFER (the caller's too), agents logging in and out and taking
breaks by feature codes, phones that vanish from the network — over real SIP on 127.0.0.1.

After every step settles: no agent is reserved or on a call without a live call behind it,
every call the ACD holds is a live call, and every phone still in a call is in one the server
knows. When everyone has hung up and time has run on: every caller who reached a queue has
exactly one ending in the queue log for each time it joined (CONNECT only before a completion
or transfer), wrap-up was applied at every completion, the queue log in the database matches
what the ACD logged to the microsecond, CDR segments are complete and written once, and no
call, media endpoint, dialog or transaction is left behind.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.agents import AgentState
from sipstack import legs
from sipstack.session import LegState
from sipstack.transaction import ClientInviteTransaction, TxState
from tests.acd.call_site import AGENTS, CALLERS, DIDS, QUEUE_RING_TIMEOUT, QUEUES, T1, T2, WRAPUP, Round, Site

QUEUE_OF_DID = {queue: did for did, queue in DIDS.items()}
ENDINGS = {"ABANDON", "COMPLETECALLER", "COMPLETEAGENT", "TRANSFER", "EXITWITHTIMEOUT", "EXITEMPTY"}
COMPLETIONS = {"COMPLETECALLER", "COMPLETEAGENT", "TRANSFER"}
REFUSALS = {"JOINEMPTY", "FULL", "BLACKLISTED"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, Site]]:
    """The database, CRM and media engine once for the module, on a loop of its own: each
    hypothesis example runs a round on it."""
    loop = asyncio.new_event_loop()
    built = Site(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as patch:
        # The 2xx retransmission of an answered leg (RFC 3261 §13.3.1.4) on the same scaled T1
        # as the transactions, so it gives up when Timer L ends the transaction, not after.
        patch.setattr(legs, "T1", T1)
        patch.setattr(legs, "T2", T2)
        patch.setattr(legs, "ACK_WAIT", 64 * T1)
        try:
            loop.run_until_complete(built.start())
            yield loop, built
        finally:
            loop.run_until_complete(built.stop())
            loop.close()


# ---------------------------------------------------------------- steps

@dataclass(frozen=True)
class Dial:
    """A caller on the carrier dials a queue's DID."""
    caller: int
    queue: str

    def act(self, rnd: Round) -> None:
        phone = rnd.callers[CALLERS[self.caller]]
        if not phone.live():
            phone.dial(QUEUE_OF_DID[self.queue])


@dataclass(frozen=True)
class Answer:
    agent: str

    def act(self, rnd: Round) -> None:
        rnd.agents[self.agent].answer()


@dataclass(frozen=True)
class Reject:
    """The agent's phone refuses the ringing call: 486 Busy Here."""
    agent: str

    def act(self, rnd: Round) -> None:
        rnd.agents[self.agent].reject(486)


@dataclass(frozen=True)
class CallerHangsUp:
    """CANCEL before the answer, BYE after it."""
    caller: int

    def act(self, rnd: Round) -> None:
        rnd.callers[CALLERS[self.caller]].hang_up()


@dataclass(frozen=True)
class AgentHangsUp:
    agent: str

    def act(self, rnd: Round) -> None:
        phone = rnd.agents[self.agent]
        legs = phone.answered()
        if legs:
            legs[0].hangup()


@dataclass(frozen=True)
class BlindTransfer:
    """The agent REFERs its call to an extension or a queue (RFC 3515, no Replaces)."""
    agent: str
    target: str

    def act(self, rnd: Round) -> None:
        phone = rnd.agents[self.agent]
        legs = phone.answered()
        if legs:
            phone.refer(legs[0], self.target)


@dataclass(frozen=True)
class CallerTransfers:
    """The caller REFERs the agent it talks with to another number (RFC 3515)."""
    caller: int
    target: str

    def act(self, rnd: Round) -> None:
        phone = rnd.callers[CALLERS[self.caller]]
        legs = phone.answered()
        if legs:
            phone.refer(legs[0], self.target)


@dataclass(frozen=True)
class Feature:
    """The agent dials a feature code: *61 log in, *62 log out, *63 break, *64 ready."""
    agent: str
    code: str

    def act(self, rnd: Round) -> None:
        rnd.agents[self.agent].dial(self.code)


@dataclass(frozen=True)
class LoseNetwork:
    """The phone vanishes: nothing it is sent arrives, nothing it sends leaves, no RTP."""
    phone: str

    def act(self, rnd: Round) -> None:
        (rnd.agents.get(self.phone) or rnd.callers[self.phone]).lose_network()


@dataclass(frozen=True)
class Together:
    """Two things at the same instant: neither side hears of the other's before acting."""
    first: object
    second: object

    def act(self, rnd: Round) -> None:
        self.first.act(rnd)    # type: ignore[attr-defined]
        self.second.act(rnd)   # type: ignore[attr-defined]


@dataclass(frozen=True)
class Wait:
    """Time runs on: ring timeouts, wrap-up, max wait, RTP timeouts."""
    seconds: float

    def act(self, rnd: Round) -> None:
        pass


@dataclass(frozen=True)
class AttendedTransfer:
    """The agent calls a colleague, who answers; the agent REFERs its call with Replaces
    naming the consultation (RFC 3891), joining the colleague to its caller."""
    agent: str
    colleague: str

    async def run(self, rnd: Round) -> None:
        phone, colleague = rnd.agents[self.agent], rnd.agents[self.colleague]
        calls = phone.answered()
        if not calls or self.agent == self.colleague:
            return
        consultation = phone.dial(self.colleague)
        await rnd.settle()
        ringing = [leg for leg in colleague.ringing if leg.caller.uri.user == self.agent]  # type: ignore[union-attr]
        if ringing:
            colleague.ringing.remove(ringing[0])
            ringing[0].answer(colleague._sdp())
            await rnd.settle()
        if consultation.dialog is not None and calls[0] in phone.answered() and consultation in phone.answered():
            phone.refer(calls[0], self.colleague, replaces=consultation)
        else:
            consultation.hangup()


agents = st.sampled_from(AGENTS)
callers = st.integers(0, len(CALLERS) - 1)
simple = st.one_of(
    st.builds(Dial, callers, st.sampled_from(QUEUES)),
    st.builds(Answer, agents),
    st.builds(Reject, agents),
    st.builds(CallerHangsUp, callers),
    st.builds(AgentHangsUp, agents),
    st.builds(BlindTransfer, agents, st.sampled_from((*AGENTS, *QUEUES))),
    st.builds(CallerTransfers, callers, st.sampled_from(AGENTS)),
    st.builds(Feature, agents, st.sampled_from(("*61", "*62", "*63", "*64"))),
)
steps = st.one_of(
    simple, simple, simple,
    st.builds(Together, simple, simple),
    st.builds(AttendedTransfer, agents, agents),
    st.builds(LoseNetwork, st.sampled_from((*AGENTS, *CALLERS))),
    st.builds(Wait, st.sampled_from((0.2, 0.6, 1.2))),
)


async def run_step(rnd: Round, step: object) -> None:
    if isinstance(step, AttendedTransfer):
        await step.run(rnd)
    else:
        step.act(rnd)  # type: ignore[attr-defined]
    if isinstance(step, Wait):
        await asyncio.sleep(step.seconds)
    await rnd.settle()


# ---------------------------------------------------------------- invariants

def sip_call_ids(rnd: Round) -> set[str]:
    """The SIP Call-IDs of every leg the server's calls hold (a transferor set aside too)."""
    ids: set[str] = set()
    for call in rnd.manager.calls.values():
        legs = [call.inbound, call.answered_leg, *call.outbound]
        if call.transfer is not None:   # the transferor's leg(s), set aside while the target rings
            legs.extend(getattr(call.transfer.transferor, "legs", ()))
        ids.update(leg.request.call_id for leg in legs if hasattr(leg, "request") and not call.ended)  # type: ignore[union-attr]
    return ids


def check_live(rnd: Round) -> None:
    """What must hold whenever the signalling has settled."""
    acd, calls = rnd.router.acd, rnd.manager.calls
    for agent in acd.agents.values():
        if agent.state is AgentState.RESERVED:
            waiting = acd.waiting.get(agent.call_id or "")
            assert waiting is not None and agent.id in waiting.offered_to, f"{agent.id} reserved for no offer"
            assert agent.call_id in calls, f"{agent.id} reserved for call {agent.call_id}, which is gone"
        if agent.state is AgentState.ON_CALL:
            connections = [c for c in acd.connected.values() if c.agent_id == agent.id]
            assert len(connections) == 1, f"{agent.id} on call in the ACD {len(connections)} times"
            call = calls.get(connections[0].call.call_id)
            assert call is not None and not call.ended, f"{agent.id} on call {connections[0].call.call_id}, which is gone"
    for call_id in [*acd.waiting, *acd.connected]:
        assert call_id in calls, f"the ACD holds call {call_id}, which the call layer ended"
    # The agent who took a queue call and is on it still (not transferred away) counts as on it.
    phone_of = {leg.request.call_id: phone.number for phone in rnd.phones for leg in phone.legs}  # type: ignore[attr-defined]
    for call in calls.values():
        leg = call.answered_leg
        if (call.queue_id is not None and call.answered_agent is not None and call.transfer is None
                and leg is not None and leg.state is LegState.ANSWERED
                and phone_of.get(leg.request.call_id) == call.answered_agent):  # type: ignore[union-attr]
            connection = acd.connected.get(call.id)
            assert connection is not None and connection.agent_id == call.answered_agent, (
                f"{call.answered_agent} talks with {call.caller} on a call of queue {call.queue_id} the ACD "
                f"does not count ({acd.agents[call.answered_agent].state.value})")
    held = sip_call_ids(rnd)
    for phone in rnd.phones:
        if phone.lost:
            continue
        for leg in phone.live():
            assert leg.request.call_id in held, (  # type: ignore[attr-defined]
                f"phone {phone.number} is still in a call ({leg.state.value}) the server let go")


async def finish(rnd: Round) -> None:
    """Everyone still reachable hangs up; time runs on until the lost phones' calls are ended
    by the timers (no answer to INVITE, RTP timeout, max wait) and wrap-ups are over."""
    for phone in rnd.phones:
        if not phone.lost:
            for leg in phone.live():
                leg.hangup()
    acd, manager = rnd.router.acd, rnd.manager

    def idle() -> bool:
        return (not manager.calls and not acd.waiting and not acd.connected and not transactions(rnd)
                and all(a.state not in (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP)
                        for a in acd.agents.values()))

    await rnd.until(idle, 10.0)
    await rnd.queue_log.close()
    await rnd.until(lambda: not manager._writes, 5.0)


def transactions(rnd: Round) -> list[tuple[str, str, str, float | None]]:
    """Transactions still under way: a request not yet answered, or one we owe an answer.
    Those in Completed, Accepted or Confirmed only absorb retransmissions until their timer
    (Timer D is a fixed 32 s on UDP, RFC 3261 §17.1.1.2) and are no leak."""
    layer = rnd.server.transactions
    now = asyncio.get_running_loop().time()
    return [(f"{r.method} {r.uri}" if (r := getattr(tx, "request", None)) else tx.key,
             str(r.from_addr.uri) if r else "", tx.state.value, tx.deadline and round(tx.deadline - now, 3))
            for tx in [*layer._server.values(), *layer._client.values()]
            if tx.state not in (TxState.COMPLETED, TxState.ACCEPTED, TxState.CONFIRMED) or tx.deadline is None]


async def check_final(rnd: Round) -> None:
    acd, manager, engine = rnd.router.acd, rnd.manager, rnd.site.engine
    assert not manager.calls, f"calls left: {[(c.id, c.caller, c.dialled) for c in manager.calls.values()]}"
    assert not acd.waiting and not acd.connected, (acd.waiting, acd.connected)
    stuck = {a.id: a.state.value for a in acd.agents.values()
             if a.state in (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP)}
    assert not stuck, f"agents stuck: {stuck}"
    assert not rnd.router.calls and not rnd.router._joining, "the queue router still holds calls"
    left = [e for e in engine.endpoints if e.id not in rnd.endpoints_before]
    assert not manager._by_endpoint and not left, f"media endpoints left: {left}"
    assert len(manager.sessions) == 0, "dialogs left in the session layer"
    assert not transactions(rnd), f"SIP transactions left: {transactions(rnd)}"

    # The queue log: one ending per time a caller joined a queue; CONNECT only before a completion.
    entries = [entry for entry, _, _ in rnd.log]
    by_call: dict[str, list] = defaultdict(list)
    for entry in entries:
        if entry.call_id != "NONE":
            by_call[entry.call_id].append(entry)
    for call_id, started in rnd.started.items():
        if started.callee in QUEUES:
            assert by_call.get(call_id), f"caller {started.caller} reached queue {started.callee}: no queue log"
    for call_id, trail in by_call.items():
        visit: dict[str, str] | None = None
        for entry in trail:
            what = f"call {call_id}: {[e.event for e in trail]}"
            if entry.event == "ENTERQUEUE":
                assert visit is None, f"joined twice without leaving: {what}"
                visit = {"queue": entry.queue_id, "agent": ""}
            elif entry.event in REFUSALS:
                assert visit is None, what
            elif entry.event == "CONNECT":
                assert visit is not None and not visit["agent"] and entry.queue_id == visit["queue"], what
                visit["agent"] = entry.agent_id
            elif entry.event in ENDINGS:
                assert visit is not None, f"an ending without a join: {what}"
                if entry.event in COMPLETIONS:
                    assert visit["agent"] == entry.agent_id, f"completion without CONNECT: {what}"
                else:
                    assert not visit["agent"], f"{entry.event} after CONNECT: {what}"
                visit = None
            elif entry.event in ("RINGNOANSWER", "RINGCANCELED"):
                assert visit is not None and not visit["agent"], what
        assert visit is None, f"a caller left the queue without an ending: call {call_id}: {[e.event for e in trail]}"
    # Wrap-up at every completion: the agent was in wrap-up until exactly then + wrapuptime.
    for entry, state, until in rnd.log:
        if entry.event in COMPLETIONS:
            assert state == AgentState.WRAP_UP.value and until == pytest.approx(entry.at + WRAPUP), (
                f"{entry.agent_id} after {entry.event} of {entry.call_id}: {state}")
    # The database has the queue log as logged, times exact.
    ids = set(by_call)
    if ids:
        rows = await rnd.site.queue_log_rows(ids)
        assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
            (e.at, e.call_id, e.queue_id, e.agent_id, e.event, "|".join(e.data)) for e in entries
            if e.call_id in ids]
    # CDRs: one per segment, segments 1..n, every one in the database once.
    segments: dict[str, list[int]] = defaultdict(list)
    for written in rnd.cdrs:
        segments[written.record.call_id].append(written.record.segment)
    for call_id in rnd.started:
        assert sorted(segments[call_id]) == list(range(1, len(segments[call_id]) + 1)) and segments[call_id], (
            f"call {call_id}: CDR segments {segments[call_id]}")
    if segments:
        rows = await rnd.site.cdr_rows(set(segments))
        assert sorted((r["call_id"], r["segment"]) for r in rows) == sorted(
            (call_id, s) for call_id, ss in segments.items() for s in ss)
    # An agent who took a queue call answered its first segment.
    for call_id, trail in by_call.items():
        connects = [e.agent_id for e in trail if e.event == "CONNECT"]
        first = next((w.record for w in rnd.cdrs if w.record.call_id == call_id and w.record.segment == 1), None)
        if connects and first is not None and not [e for e in trail if e.event == "TRANSFER"]:
            assert first.answered_by == connects[0], (call_id, first)


async def play(site: Site, plan: list[object]) -> Round:
    async with site.round() as rnd:
        await rnd.settle()
        for step in plan:
            await run_step(rnd, step)
            check_live(rnd)
        await finish(rnd)
        await check_final(rnd)
    return rnd


def queue_trail(rnd: Round) -> list[tuple[str, str, str, str]]:
    """The one queue call's log: (event, queue, agent, first datum), ring events left out."""
    return [(e.event, e.queue_id, e.agent_id, e.data[0] if e.data else "") for e, _, _ in rnd.log
            if e.call_id != "NONE" and e.event not in ("RINGCANCELED", "RINGNOANSWER")]


# ---------------------------------------------------------------- the tests

def test_a_queue_call_answered_and_hung_up_leaves_a_clean_record(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1002"), Wait(0.2), CallerHangsUp(0)]))
    assert [t[:3] for t in queue_trail(rnd)] == [
        ("ENTERQUEUE", "8001", "NONE"), ("CONNECT", "8001", "1002"), ("COMPLETECALLER", "8001", "1002")]
    [entered] = [e for e, _, _ in rnd.log if e.event == "ENTERQUEUE"]
    assert entered.data == ("13900139001", "20")   # a gold member in the CRM: VIP rank 20


def test_a_blind_transfer_the_target_refuses_gives_the_call_back_to_the_agent(
        site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    # Found by the property test: TRANSFER was logged and the agent released at the REFER, so
    # the agent talked on with the caller while the ACD offered it other calls.
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1001"), BlindTransfer("1001", "1004"),
                                               Reject("1004"), AgentHangsUp("1001")]))
    assert [t[:3] for t in queue_trail(rnd)] == [
        ("ENTERQUEUE", "8001", "NONE"), ("CONNECT", "8001", "1001"), ("COMPLETEAGENT", "8001", "1001")]


def test_a_blind_transfer_the_target_answers_ends_the_agents_part(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1001"), BlindTransfer("1001", "1004"),
                                               Answer("1004"), CallerHangsUp(0)]))
    assert queue_trail(rnd)[1:] == [("CONNECT", "8001", "1001", "0"), ("TRANSFER", "8001", "1001", "1004")]
    assert sorted(w.record.segment for w in rnd.cdrs) == [1, 2]


def test_a_caller_who_transfers_the_agent_away_ends_the_queue_call(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    # Found by the property test: the agent stayed on call in the ACD for ever after the caller
    # REFERred it to 1004, because only a transfer by the agent ended its part.
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1001"), CallerTransfers(0, "1004"),
                                               Answer("1004"), AgentHangsUp("1001")]))
    assert queue_trail(rnd)[1:] == [("CONNECT", "8001", "1001", "0"), ("TRANSFER", "8001", "1001", "1004")]


def test_an_attended_transfer_ends_the_agents_part(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1001"), AttendedTransfer("1001", "1004"),
                                               CallerHangsUp(0)]))
    assert queue_trail(rnd)[1:] == [("CONNECT", "8001", "1001", "0"), ("TRANSFER", "8001", "1001", "1004")]


def test_a_transfer_to_the_other_queue_is_a_second_visit(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Dial(0, "8001"), Answer("1001"), BlindTransfer("1001", "8002"),
                                               Answer("1003"), Answer("1004"), CallerHangsUp(0)]))
    trail = [t[:3] for t in queue_trail(rnd)]
    assert trail[:4] == [("ENTERQUEUE", "8001", "NONE"), ("CONNECT", "8001", "1001"), ("TRANSFER", "8001", "1001"),
                         ("ENTERQUEUE", "8002", "NONE")]
    assert [t[0] for t in trail[4:]] == ["CONNECT", "COMPLETECALLER"]


def test_an_invite_to_a_phone_that_vanished_while_ringing_ends(site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site

    async def run() -> None:
        async with built.round() as rnd:
            rnd.callers[CALLERS[0]].dial(QUEUE_OF_DID["8001"])
            await rnd.settle()
            assert all(rnd.agents[a].ringing for a in ("1001", "1002", "1003"))   # ringall: all three ring
            for agent in ("1001", "1002", "1003"):
                rnd.agents[agent].lose_network()

            def ringing_invites() -> list[object]:
                return [tx for tx in rnd.server.transactions._client.values()
                        if isinstance(tx, ClientInviteTransaction) and tx.state is TxState.PROCEEDING]

            # The queue stops ringing them after its ring timeout (CANCEL, never answered); 64*T1
            # after that the INVITEs must be given up.
            await rnd.until(lambda: not ringing_invites(), QUEUE_RING_TIMEOUT + 2 * 64 * T1)
            rnd.callers[CALLERS[0]].hang_up()
            await rnd.settle()
            assert not ringing_invites()

    loop.run_until_complete(run())


def test_a_caller_who_hangs_up_during_the_crm_look_up_is_an_abandon(
        site: tuple[asyncio.AbstractEventLoop, Site]) -> None:
    loop, built = site
    rnd = loop.run_until_complete(play(built, [Together(Dial(0, "8001"), CallerHangsUp(0))]))
    assert [t[0] for t in queue_trail(rnd)] == ["ENTERQUEUE", "ABANDON"]


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(steps, min_size=3, max_size=14))
def test_random_event_orders_keep_agents_callers_and_records_straight(
        site: tuple[asyncio.AbstractEventLoop, Site], plan: list[object]) -> None:
    loop, built = site
    loop.run_until_complete(play(built, plan))
