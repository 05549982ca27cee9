"""The agents' side of a call: the ACD's offers ring an agent's desk phones and browser
softphone (acd.queue_calls), and a browser agent who answers takes the callee's place
(acd.browser_ringing). A part of `Call` (a mixin), kept apart so each file stays readable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from acd.dialplan import Kind
from acd.events import CallAnswered
from acd.hold import hold_changed
from mediacore.engine import AnyEndpoint, Endpoint
from sipstack.sdp import SessionDescription
from sipstack.session import EndCause, InboundLeg, OutboundLeg
from sipstack.trunk_manager import Trunk
from sipstack.uri import NameAddr, SipUri

if TYPE_CHECKING:
    from acd.blind_transfer import BlindTransfer
    from acd.calls import CallManager

log = logging.getLogger(__name__)


class AgentLegs:
    # What this part of the call uses of the rest of `Call` (acd.calls, acd.dialing, acd.transfer).
    manager: CallManager
    id: str
    caller: str
    caller_name: str
    dialled: str
    from_trunk: Trunk | None
    inbound: InboundLeg
    outbound: list[OutboundLeg]
    answered_leg: OutboundLeg | None
    answered_agent: str | None
    answered_at: float | None
    agent_legs: dict[OutboundLeg, str]
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    answer_a: SessionDescription
    queue_id: str | None
    transfer: BlindTransfer | None
    _ended: bool
    _step: asyncio.TimerHandle | None
    _answered_ext: str | None

    if TYPE_CHECKING:  # defined by Call and its other parts
        @property
        def browser_port(self) -> AnyEndpoint | None: ...
        def set_browser(self, port: AnyEndpoint) -> None: ...
        def route(self, target: str) -> None: ...
        def _ring(self, bindings: list, from_addr: NameAddr, to_addr: NameAddr) -> None: ...
        def _answer_locally(self, what: str) -> None: ...
        def _refuse(self, status: int, reason: str | None, *, cause: EndCause | None = None) -> None: ...
        def _step_failed(self, status: int, cause: EndCause) -> None: ...
        def _arm_max_duration(self) -> None: ...

    def ring_agent(self, agent: str) -> bool:
        """Ring every registered phone of an agent the ACD offers the call to, and the agent's
        browser softphone if one is registered; False when nothing of theirs rings."""
        m = self.manager
        if self._ended:
            return False
        bindings = m.registrar.lookup(agent)
        local = m.sessions.local_host
        caller_ext = m.directory.get(self.caller) if self.from_trunk is None else None
        display = caller_ext.display_name if caller_ext else self.caller_name
        browser = m.browser_agents is not None and m.browser_agents.ring(
            self, agent, display or "", claim=lambda: self._browser_claims(agent),  # type: ignore[arg-type]
            on_failed=lambda status, busy: self._agent_ring_failed(agent))
        if bindings:
            from_addr = NameAddr(SipUri("sip", self.caller, None, local, None), display or None, {})
            to_addr = NameAddr(SipUri("sip", agent, None, local, None), None, {})
            before = set(self.outbound)
            self._ring(bindings, from_addr, to_addr)
            for leg in self.outbound:
                if leg not in before:
                    self.agent_legs[leg] = agent
        return browser or bool(bindings)

    def _browser_claims(self, agent: str) -> bool:
        """The agent answered in the browser: theirs if the ACD still offers it to them (the
        ACD then stops the others ringing); their own desk phones stop with `connect_browser`."""
        m = self.manager
        if (self._ended or self.answered_leg is not None or self.answered_agent is not None or m.queues is None
                or not m.queues.answered(self, agent, time.time())):
            return False
        self.answered_agent = agent
        self.agent_legs.clear()
        return True

    def _agent_ring_failed(self, agent: str) -> None:
        """One of the agent's phones or their browser refused or gave up: a missed offer once
        nothing of theirs rings any more (the ACD offers the call to someone else)."""
        m = self.manager
        if (self._ended or self.answered_leg is not None or self.answered_agent is not None or m.queues is None
                or agent in self.agent_legs.values()
                or (m.browser_agents is not None and m.browser_agents.rings(self.id, agent))):
            return
        m.queues.ring_failed(self, agent, time.time())

    def answer_in_queue(self) -> None:
        """Answer a caller waiting in a queue, so its music and announcements play in band."""
        if self.answered_at is None and not self._ended:
            self._answer_locally(f"queue:{self.dialled}")

    def stop_ringing(self, agent: str, reason: str = "no_answer") -> None:
        """The ACD withdrew its offer to `agent`: their phones and browser stop ringing (the
        browser is told `reason`: "no_answer", or "answered_elsewhere" in a ringall)."""
        for leg, who in list(self.agent_legs.items()):
            if who == agent and leg is not self.answered_leg:
                del self.agent_legs[leg]
                if leg in self.outbound:
                    self.outbound.remove(leg)
                leg.listener = None
                leg.hangup()
        if self.manager.browser_agents is not None and self.answered_agent != agent:
            self.manager.browser_agents.stop_agent(self.id, agent, reason)

    def overflow(self, destination: str, reason: str) -> None:
        """The ACD let the call go (max wait, queue full, no agents): to another queue, or
        refused so the caller's phone says so."""
        m = self.manager
        next_queue = m.queues.queue_for(destination) if m.queues is not None and destination else None
        log.info("call %s leaves queue %s (%s) for %r", self.id, self.queue_id, reason, destination)
        if next_queue is not None and m.queues is not None:
            self.queue_id = next_queue
            m.queues.enqueue(self, next_queue, time.time())
            return
        if destination == "callback" and m.queues is not None:
            m.queues.callback_booked(self)  # booked in the ACD already: confirmed, then hung up
            self.queue_id = None
            return
        self.queue_id = None
        if destination.startswith(f"{Kind.VOICEMAIL.value}:"):
            self.route(destination)
            return
        self._refuse(480, "Temporarily Unavailable: no agent free", cause=EndCause.NO_ANSWER)

    # ------------------------------------------------------------- browser agents (acd.webrtc_agents)

    def connect_browser(self, port: AnyEndpoint, extension: str) -> None:
        """A browser agent answered: its engine port takes the callee's place."""
        m = self.manager
        if self._step is not None:
            self._step.cancel()
            self._step = None
        for leg in list(self.outbound):  # SIP phones of the same ring step
            leg.listener = None
            leg.hangup()
        self.outbound.clear()
        self._answered_ext = extension
        m.engine.set_rtp_timeout(self.endpoint_b, None)  # nothing arrives on the unused callee endpoint
        answered_here = self.answered_at is not None  # a queue, an IVR, a transfer to this agent
        if answered_here:
            m.engine.stop_playback(self.endpoint_a)    # the ringback or music it heard meanwhile
        m.engine.connect(self.endpoint_a, port)
        # Kept, so hold, recording, supervision and take-over reach the agent (Parties.party_port).
        self.set_browser(port)
        if m.recording is not None:
            m.recording.bridged(self)
            if self.transfer is not None:
                # A blind transfer's target: the call's one file goes on with this agent (the
                # transfer retargeted it to the callee endpoint this leg stands in for).
                m.recording.retarget(self)
        self.answered_at = time.time()
        if not answered_here:
            self.inbound.answer(self.answer_a.to_bytes())
        m.publish(CallAnswered(self.id, extension, self.answered_at))
        self._arm_max_duration()
        if self.transfer is not None:
            self.transfer.reached()

    def hold_for_browser(self, port: AnyEndpoint, held: bool) -> None:
        """The browser agent on `port` (the callee's side) held the call or resumed it: the
        caller hears music on hold meanwhile (a held customer who hears silence hangs up), the
        same path as a SIP callee's re-INVITE (acd.hold)."""
        if self.browser_port is None:
            self.set_browser(port)   # a transfer gave the call back to this agent (rejoin)
        hold_changed(self, "b", held)

    def browser_failed(self, status: int, busy: bool) -> None:
        """Every browser rung refused or gave up; SIP phones of the step may still ring. (A call
        answered already — routed on by an IVR, or a blind transfer's — has its step under way.)"""
        if not self._ended and not self.outbound and (self.answered_at is None or self._step is not None):
            self._step_failed(status, EndCause.BUSY if busy else EndCause.NO_ANSWER)

    def send_dtmf_to_caller(self, digits: str) -> None:
        if self.endpoint_a.telephone_event_pt is not None:
            self.manager.engine.send_dtmf(self.endpoint_a, digits)
