"""Queued callbacks on the wire: the agent's phone rings first (an offer like any other); on the
answer the agent hears a whisper ("this is a callback", the number read out) and a ringback
tone while the system dials the number through the dialplan — a registered extension, or a
trunk by the outbound routes — and bridges the two when it answers.

The ACD decides (acd.distributor: CALLBACKDIAL, CALLBACKDONE, CALLBACKRETRY, CALLBACKFAIL);
this module only places the legs and reports what happened through the queue router. A
callback's CDR shares the queue log's call id, with segment 100 + the try's number (a caller's
own call uses segments from 1; transfers add a few): the customer is its callee, the queue its
caller (the number the customer sees), the agent who answered the whisper its answered_by; a
try the customer did not take is BUSY, NO ANSWER, CANCELLED (the agent gave up) or FAILED.
A try that reaches the customer is recorded by the queue's recording rule (acd.call_recording:
the customer left, the agent right) and its CDR names the file.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from acd.callback_browser import BrowserAgentLeg
from acd.cdr import SEGMENT_CALLBACK, CdrRecord, Disposition
from acd.dialing import HOLD_MUSIC
from acd.dialplan import Kind
from acd.leg_codecs import answer_reoffer, codec_of, follow_answer, offer_leg
from acd.prompt_catalogue import SOUNDS, prompt_audio
from acd.queues import QueuedCall
from acd.routing import CallerId, select_route
from acd.say import SayError, say_digits
from mediacore.engine import AnyEndpoint, Endpoint
from mediacore.errors import MediaError
from mediacore.events import MediaEvent, PromptDone, RtpTimeout
from sipstack.offer_answer import Codec, NegotiatedMedia, parse_answer
from sipstack.sdp import SdpError, SessionDescription, parse
from sipstack.session import Answered, EndCause, Ended, Leg, LegEvent, Offer, OutboundLeg
from sipstack.trunk_manager import Trunk
from sipstack.uri import NameAddr, SipUri, parse_uri

if TYPE_CHECKING:
    from acd.calls import CallManager
    from acd.queue_calls import QueueRouter

log = logging.getLogger(__name__)

#: Both legs speak G.711 µ-law with RFC 4733 events: every phone and trunk takes it, and the
#: engine relays it without transcoding.

#: The callback segment numbers of the CDR start above any a caller's own call reaches.
CDR_SEGMENT_BASE = SEGMENT_CALLBACK


class Stage(enum.Enum):
    RINGING_AGENT = "ringing_agent"
    WHISPER = "whisper"      # the agent answered and hears what this call is
    DIALLING = "dialling"    # the number rings; the agent hears ringback
    TALKING = "talking"
    ENDED = "ended"


@dataclass
class _Callback:
    entry: QueuedCall
    language: str
    endpoint_agent: Endpoint
    offer_agent: bytes
    started_at: float = field(default_factory=time.time)
    stage: Stage = Stage.RINGING_AGENT
    agent_legs: dict[OutboundLeg, str] = field(default_factory=dict)
    agent_leg: OutboundLeg | None = None
    agent: str = ""
    endpoint_customer: Endpoint | None = None
    customer_legs: list[OutboundLeg] = field(default_factory=list)
    customer_leg: OutboundLeg | None = None
    #: Trunks still to try if the provider fails, and what to send them.
    trunks: list[Trunk] = field(default_factory=list)
    trunk_name: str = ""
    route_number: str = ""
    caller_id: CallerId | None = None
    offer_customer: bytes = b""
    attempt: int = 0
    play_id: int | None = None
    playing: np.ndarray | None = None
    timer: asyncio.TimerHandle | None = None
    answered_at: float | None = None
    status: int = 0
    #: The recording of the talk (acd.call_recording), "" if not recorded.
    recording_ref: str = ""

    @property
    def call_id(self) -> str:
        return self.entry.call_id

    @property
    def recording_key(self) -> str:
        """What names this try's recording file: the queue call's id and the try's number."""
        return f"{self.entry.call_id}-callback{self.attempt}"


class CallbackDialer:
    def __init__(self, manager: CallManager, router: QueueRouter, *, sound_dirs: tuple[Path, ...] = (SOUNDS,)) -> None:
        self._m = manager
        self._router = router
        self._sound_dirs = sound_dirs
        self._calls: dict[str, _Callback] = {}
        self._by_endpoint: dict[int, _Callback] = {}

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    # ------------------------------------------------------------- the agent's leg

    def ring_agent(self, entry: QueuedCall, agent: str, language: str) -> bool:
        """Ring every registered phone of `agent` and their browser softphone for the
        callback; False if nothing of theirs rings."""
        m = self._m
        bindings = m.registrar.lookup(agent)
        browser = m.browser_agents is not None and m.browser_agents.agents.is_registered(agent)
        if not bindings and not browser:
            return False
        cb = self._calls.get(entry.call_id)
        if cb is None:
            try:
                endpoint, offer = self._offer()
            except MediaError as exc:
                log.warning("callback %s: no media endpoint: %s", entry.call_id, exc)
                return False
            cb = _Callback(entry, language, endpoint, offer.to_bytes())
            self._calls[entry.call_id] = cb
            self._by_endpoint[endpoint.id] = cb
        local = m.sessions.local_host
        # The agent's phone shows the number to be called back, marked as a callback.
        from_addr = NameAddr(SipUri("sip", entry.callback, None, local, None), "callback", {})
        to_addr = NameAddr(SipUri("sip", agent, None, local, None), None, {})
        for binding in bindings:
            leg = OutboundLeg(m.sessions, target=binding.target(), request_uri=parse_uri(binding.contact_uri),
                              from_addr=from_addr, to_addr=to_addr, sdp=cb.offer_agent)
            leg.listener = lambda leg, event, cb=cb: self._on_agent(cb, leg, event)
            cb.agent_legs[leg] = agent
            leg.start()
        if browser and m.browser_agents is not None:
            browser_leg = BrowserAgentLeg(m.browser_agents, entry.call_id, agent, entry.callback, self)
            if browser_leg.start():
                cb.agent_legs[browser_leg] = agent  # type: ignore[index]  # hung up like a SIP leg
        if agent not in cb.agent_legs.values():
            if not cb.agent_legs:
                self._release(cb)
            return False
        return True

    # ------------------------------------------------------------- the agent's browser (acd.callback_browser)

    def browser_claims(self, leg: BrowserAgentLeg) -> bool:
        cb = self._calls.get(leg.call_id)
        return (cb is not None and leg in cb.agent_legs and cb.agent_leg is None and cb.stage is Stage.RINGING_AGENT
                and self._router.callback_answered_by(cb.entry, leg.agent))

    def browser_answered(self, leg: BrowserAgentLeg, port: AnyEndpoint) -> None:
        """The agent took the callback in the browser: the browser call's engine leg replaces
        the RTP endpoint offered to desk phones, and the whisper plays to it."""
        cb = self._calls[leg.call_id]
        cb.agent_leg, cb.agent = leg, leg.agent  # type: ignore[assignment]
        for other in list(cb.agent_legs):
            if other is not leg:
                del cb.agent_legs[other]
                other.listener = None
                other.hangup()
        if self._by_endpoint.pop(cb.endpoint_agent.id, None) is not None:
            try:
                self._m.engine.destroy(cb.endpoint_agent)
            except MediaError:
                pass
        cb.endpoint_agent = port  # type: ignore[assignment]
        self._by_endpoint[port.id] = cb
        cb.stage = Stage.WHISPER
        # After the browser's answer is through (a dial that fails at once ends the browser call).
        asyncio.get_running_loop().call_soon(lambda: cb.stage is Stage.WHISPER and self._whisper(cb))

    def browser_failed(self, leg: BrowserAgentLeg) -> None:
        cb = self._calls.get(leg.call_id)
        if cb is None or cb.agent_legs.pop(leg, None) is None:  # type: ignore[call-overload]
            return
        if leg.agent not in cb.agent_legs.values() and cb.stage is Stage.RINGING_AGENT:
            self._router.callback_ring_failed(cb.entry, leg.agent)
            if not cb.agent_legs and cb.stage is Stage.RINGING_AGENT:
                self._release(cb)

    def browser_hung_up(self, leg: BrowserAgentLeg) -> None:
        cb = self._calls.get(leg.call_id)
        if cb is not None and cb.agent_leg is leg:
            self._agent_gone(cb, Ended(EndCause.NORMAL))

    def browser_dtmf(self, leg: BrowserAgentLeg, digits: str) -> None:
        cb = self._calls.get(leg.call_id)
        if cb is not None and cb.stage is Stage.TALKING and cb.endpoint_customer is not None:
            self._m.engine.send_dtmf(cb.endpoint_customer, digits)

    def browser_hold(self, leg: BrowserAgentLeg, port: AnyEndpoint, held: bool) -> None:
        """The customer hears music on hold while the agent holds."""
        cb = self._calls.get(leg.call_id)
        if cb is None or cb.stage is not Stage.TALKING or cb.endpoint_customer is None:
            return
        engine = self._m.engine
        try:
            if held:
                engine.disconnect(cb.endpoint_customer)
                engine.play_file(cb.endpoint_customer, HOLD_MUSIC, loop=True)
            else:
                engine.stop_playback(cb.endpoint_customer)
                engine.connect(port, cb.endpoint_customer)
        except MediaError as exc:
            log.warning("callback %s: cannot %s: %s", cb.call_id, "hold" if held else "resume", exc)

    def stop_ringing(self, call_id: str, agent: str) -> None:
        cb = self._calls.get(call_id)
        if cb is None:
            return
        for leg, who in list(cb.agent_legs.items()):
            if who == agent and leg is not cb.agent_leg:
                del cb.agent_legs[leg]
                leg.listener = None
                leg.hangup()
        if cb.stage is Stage.RINGING_AGENT and not cb.agent_legs:
            self._release(cb)

    def _on_agent(self, cb: _Callback, leg: Leg, event: LegEvent) -> None:
        assert isinstance(leg, OutboundLeg)
        if isinstance(event, Answered):
            agent = cb.agent_legs.get(leg)
            if cb.agent_leg is not None or agent is None or not self._router.callback_answered_by(cb.entry, agent):
                leg.hangup()
                return
            negotiated = self._negotiated(cb.offer_agent, event.sdp)
            if negotiated is None:
                cb.agent_leg = leg
                self._end(cb, "system", "agent_media")
                self._router.callback_failed(cb.entry, "agent_media")
                return
            cb.agent_leg, cb.agent = leg, agent
            for other in list(cb.agent_legs):
                if other is not leg:
                    del cb.agent_legs[other]
                    other.listener = None
                    other.hangup()
            cb.endpoint_agent = follow_answer(self._m.engine, cb.endpoint_agent, negotiated)
            self._whisper(cb)
        elif isinstance(event, Ended):
            if leg is cb.agent_leg:
                self._agent_gone(cb, event)
                return
            agent = cb.agent_legs.pop(leg, None)
            if agent is not None and agent not in cb.agent_legs.values() and cb.stage is Stage.RINGING_AGENT:
                # The ACD may offer it to someone else at once (new legs on this endpoint).
                self._router.callback_ring_failed(cb.entry, agent)
                if not cb.agent_legs and cb.stage is Stage.RINGING_AGENT:
                    self._release(cb)   # nobody rings for it now; a later offer starts afresh
        elif isinstance(event, Offer):
            self._renegotiate(leg, event.sdp, cb.endpoint_agent)

    def _whisper(self, cb: _Callback) -> None:
        """The agent hears what this call is before the number rings."""
        cb.stage = Stage.WHISPER
        try:
            number = say_digits(cb.entry.callback.lstrip("+"), cb.language)
        except SayError:
            number = []
        pcm = prompt_audio(self._m.engine.prompts, ["queue/callback-whisper", *number], cb.language, self._sound_dirs)
        if pcm is not None:
            try:
                cb.play_id, cb.playing = self._m.engine.play(cb.endpoint_agent, pcm), pcm
                return
            except MediaError as exc:
                log.warning("callback %s: no whisper: %s", cb.call_id, exc)
        self._dial(cb)

    def _agent_gone(self, cb: _Callback, event: Ended) -> None:
        """The agent hung up: the end of the talk, or a try given up before the number answered."""
        if cb.stage is Stage.TALKING:
            self._end(cb, "callee", "normal")
            self._router.callback_ended(cb.entry, "callee")
            return
        self._end(cb, "callee", "agent_hangup")
        self._router.callback_failed(cb.entry, "agent_hangup")

    # ------------------------------------------------------------- the number called back

    def _dial(self, cb: _Callback) -> None:
        """Dial the number through the dialplan: its registered phones if it is an extension,
        else out through the first outbound route that takes it."""
        m = self._m
        cb.stage = Stage.DIALLING
        cb.attempt = self._router.callback_dialling(cb.entry)
        number = cb.entry.callback
        queue_number = cb.entry.queue_id
        destination = m.dialplan.resolve(number, queue_number, datetime.now(UTC), m.default_route).destination
        try:
            # The agent's phone's codec first: no transcoding if the number called back takes it.
            agent_phone = cb.endpoint_agent if isinstance(cb.agent_leg, OutboundLeg) else None
            cb.endpoint_customer, offer = self._offer(first=codec_of(agent_phone) if agent_phone else None)
        except MediaError as exc:
            log.warning("callback %s: no media endpoint: %s", cb.call_id, exc)
            self._failed(cb, "no_media", 503)
            return
        self._by_endpoint[cb.endpoint_customer.id] = cb
        cb.offer_customer = offer.to_bytes()
        try:
            m.engine.play_tone(cb.endpoint_agent, "ringback", m.tone_country)
        except MediaError as exc:
            log.warning("callback %s: no ringback for the agent: %s", cb.call_id, exc)
        local = m.sessions.local_host
        from_addr = NameAddr(SipUri("sip", queue_number, None, local, None), None, {})
        if destination.kind is Kind.EXTENSION and m.registrar.lookup(destination.target):
            to_addr = NameAddr(SipUri("sip", destination.target, None, local, None), None, {})
            for binding in m.registrar.lookup(destination.target):
                self._start_customer_leg(cb, OutboundLeg(
                    m.sessions, target=binding.target(), request_uri=parse_uri(binding.contact_uri),
                    from_addr=from_addr, to_addr=to_addr, sdp=cb.offer_customer))
        elif destination.kind is Kind.OUTBOUND and (choice := select_route(m.routes, destination.target)):
            route, cb.route_number = choice
            cb.trunks, cb.caller_id = m.trunks_for(route), route.caller_id
            if cb.trunks:
                self._dial_trunk(cb)
        if not cb.customer_legs:
            log.info("callback %s: %s is not reachable (%s)", cb.call_id, number, destination)
            self._failed(cb, "unreachable", 404)
            return
        cb.timer = asyncio.get_running_loop().call_later(m.policy.ring_timeout, self._no_answer, cb)

    def _dial_trunk(self, cb: _Callback) -> None:
        """Out through the route's next trunk, From the route's caller ID (else the trunk's
        account, else the queue's number), answering the provider's challenge."""
        trunk = cb.trunks.pop(0)
        settings = trunk.settings
        user = cb.caller_id.number if cb.caller_id else (settings.username or cb.entry.queue_id)
        display = cb.caller_id.name if cb.caller_id else None
        cb.trunk_name = trunk.name
        number = cb.route_number
        leg = OutboundLeg(self._m.sessions, target=trunk.address,  # type: ignore[arg-type]
                          request_uri=trunk.request_uri(number),
                          from_addr=NameAddr(SipUri("sip", user, None, settings.domain, None), display, {}),
                          to_addr=NameAddr(SipUri("sip", number, None, settings.domain, None), None, {}),
                          sdp=cb.offer_customer, auth=trunk.digest())
        self._start_customer_leg(cb, leg)

    def _start_customer_leg(self, cb: _Callback, leg: OutboundLeg) -> None:
        leg.listener = lambda leg, event, cb=cb: self._on_customer(cb, leg, event)
        cb.customer_legs.append(leg)
        leg.start()

    def _on_customer(self, cb: _Callback, leg: Leg, event: LegEvent) -> None:
        assert isinstance(leg, OutboundLeg)
        m = self._m
        if isinstance(event, Answered):
            negotiated = self._negotiated(leg.local_sdp, event.sdp)
            if cb.customer_leg is not None or cb.stage is not Stage.DIALLING or negotiated is None:
                leg.hangup()
                return
            assert cb.endpoint_customer is not None
            cb.customer_leg, cb.stage, cb.answered_at = leg, Stage.TALKING, time.time()
            if cb.timer is not None:
                cb.timer.cancel()
            for other in list(cb.customer_legs):
                if other is not leg:
                    other.listener = None
                    other.hangup()
            cb.customer_legs = [leg]
            cb.endpoint_customer = follow_answer(m.engine, cb.endpoint_customer, negotiated)
            m.engine.stop_playback(cb.endpoint_agent)
            m.engine.connect(cb.endpoint_agent, cb.endpoint_customer)
            log.info("callback %s: %s answered; bridged to agent %s", cb.call_id, cb.entry.callback, cb.agent)
            if m.recording is not None:
                cb.recording_ref = m.recording.bridged_legs(
                    cb.recording_key, cb.call_id, cb.endpoint_customer, cb.endpoint_agent, queue=cb.entry.queue_id,
                    answered_by=cb.agent, trunk=cb.trunk_name)
            self._router.callback_connected(cb.entry)
        elif isinstance(event, Ended):
            if leg is cb.customer_leg:
                self._end(cb, "caller", "normal")
                self._router.callback_ended(cb.entry, "caller")
                return
            if leg in cb.customer_legs:
                cb.customer_legs.remove(leg)
            cb.status = max(cb.status, event.status)
            if cb.customer_legs or cb.stage is not Stage.DIALLING:
                return
            if cb.trunks and ((event.cause is EndCause.FAILED and event.status in (0, 408))
                              or 500 <= event.status < 600):
                self._dial_trunk(cb)   # RFC 3261 §21.5: that provider failed; another may not
                return
            cause = {EndCause.BUSY: "busy", EndCause.NO_ANSWER: "no_answer"}.get(event.cause, "failed")
            self._failed(cb, cause, event.status)
        elif isinstance(event, Offer):
            self._renegotiate(leg, event.sdp, cb.endpoint_customer)

    def _no_answer(self, cb: _Callback) -> None:
        cb.timer = None
        if cb.stage is Stage.DIALLING:
            self._failed(cb, "no_answer", 480)

    def _failed(self, cb: _Callback, cause: str, status: int) -> None:
        """The try failed: the agent is told nothing more than the end of the ringback."""
        cb.status = status or cb.status
        self._end(cb, "system", cause)
        self._router.callback_failed(cb.entry, cause)

    # ------------------------------------------------------------- media and the end

    def on_media_event(self, event: MediaEvent) -> bool:
        cb = self._by_endpoint.get(getattr(event, "endpoint_id", -1))
        if cb is None:
            return False
        if isinstance(event, PromptDone):
            if event.play_id == cb.play_id:
                cb.play_id = cb.playing = None
                if cb.stage is Stage.WHISPER and event.completed:
                    self._dial(cb)
        elif isinstance(event, RtpTimeout):
            log.info("callback %s: RTP timeout", cb.call_id)
            if cb.stage is Stage.TALKING:
                self._end(cb, "system", "rtp_timeout")
                self._router.callback_ended(cb.entry, "system")
            elif cb.stage in (Stage.WHISPER, Stage.DIALLING):
                self._failed(cb, "rtp_timeout", 0)
        return True

    def drain(self) -> None:
        """Shutdown: end every callback under way (a try in progress counts as failed)."""
        for cb in list(self._calls.values()):
            stage = cb.stage
            self._end(cb, "system", "shutdown")
            if stage is Stage.TALKING:
                self._router.callback_ended(cb.entry, "system")
            elif stage in (Stage.WHISPER, Stage.DIALLING):
                self._router.callback_failed(cb.entry, "shutdown")

    def _end(self, cb: _Callback, side: str, cause: str) -> None:
        """Hang up what is left of the callback and free its ports: before the ACD hears of it,
        which may offer the same entry again at once (a new `_Callback`)."""
        if cb.stage is Stage.ENDED:
            return
        was_answered = cb.agent_leg is not None
        cb.stage = Stage.ENDED
        if cb.timer is not None:
            cb.timer.cancel()
        for leg in [*cb.agent_legs, *cb.customer_legs]:
            leg.listener = None
            leg.hangup()
        if cb.recording_ref and self._m.recording is not None:
            self._m.recording.legs_ended(cb.recording_key)   # before the endpoints go: the file ends here
        self._release(cb)
        if was_answered:
            ended = time.time()
            disposition = Disposition.ANSWERED if cb.answered_at is not None else _disposition(cause)
            self._m.write_cdr(CdrRecord(
                call_id=cb.call_id, segment=CDR_SEGMENT_BASE + cb.attempt, caller=cb.entry.queue_id,
                callee=cb.entry.callback, started_at=cb.started_at, ended_at=ended, disposition=disposition,
                hangup_side=side, hangup_cause=cause, answered_by=cb.agent, answered_at=cb.answered_at,
                sip_status=cb.status, trunk=cb.trunk_name, caller_name="callback",
                codec=getattr(cb.endpoint_customer or cb.endpoint_agent, "codec", ""),
                recording_ref=cb.recording_ref))

    def _release(self, cb: _Callback) -> None:
        """Forget the callback's legs and free its media ports."""
        if self._calls.get(cb.call_id) is cb:
            del self._calls[cb.call_id]
        for endpoint in (cb.endpoint_agent, cb.endpoint_customer):
            if endpoint is not None and self._by_endpoint.pop(endpoint.id, None) is not None:
                try:
                    self._m.engine.destroy(endpoint)
                except MediaError:
                    pass

    # ------------------------------------------------------------- SDP

    def _offer(self, first: Codec | None = None) -> tuple[Endpoint, SessionDescription]:
        m = self._m
        return offer_leg(m.engine, m.media_address, m.codecs, first=first, session_id=m.next_session_id(),
                         rtp_timeout=m.policy.rtp_timeout)

    @staticmethod
    def _negotiated(offer: bytes, answer: bytes) -> NegotiatedMedia | None:
        try:
            return parse_answer(parse(offer), parse(answer)) if answer else None
        except SdpError:
            return None

    def _renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint | None) -> None:
        """A re-INVITE or UPDATE with an offer (hold, a session refresh): answered on the same
        endpoint, keeping its codec unless the offer drops it (RFC 3264 §6.1), following the far
        end if its address moved."""
        if endpoint is None:
            leg.reject_offer(488)
            return
        m = self._m
        outcome = answer_reoffer(m.engine, leg, sdp, endpoint, m.codecs, [m.next_session_id(), 1], m.media_address)
        cb = self._by_endpoint.get(endpoint.id)
        if outcome is not None and cb is not None:
            if cb.endpoint_agent.id == endpoint.id:
                cb.endpoint_agent = outcome[0]
            elif cb.endpoint_customer is not None and cb.endpoint_customer.id == endpoint.id:
                cb.endpoint_customer = outcome[0]


def _disposition(cause: str) -> Disposition:
    """A try the customer never answered, by why it ended (Asterisk's dispositions: an agent
    who hangs up while the number rings cancels it, as a caller's CANCEL would)."""
    return {"busy": Disposition.BUSY, "no_answer": Disposition.NO_ANSWER,
            "agent_hangup": Disposition.CANCELLED}.get(cause, Disposition.FAILED)
