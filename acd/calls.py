"""Calls: the B2BUA that joins a caller's leg to a callee's leg, signalling and media.

A call from a registered extension: authenticate the INVITE (407), negotiate the caller's
offer, route the dialled number, ring every registered contact of the target at once, and on
the first answer bridge the two media endpoints in the engine and answer the caller. A number
that is no extension but matches an outbound route leaves through the route's first trunk
that is up. A call from a trunk (by source address or to its registered account) needs no
digest: its DID leads to an internal number, and it is routed like an internal call from
there — never to an outbound route, so a trunk cannot be used to call out. Whatever
ends first — either side's BYE, CANCEL, a rejection, the no-answer timer, RTP silence, the
maximum duration — ends the other leg too and writes one CDR.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from acd.agent_legs import AgentLegs
from acd.browser_ringing import SipRinging
from acd.call_recording import CallRecorder
from acd.call_segments import Segments
from acd.cdr import CdrRecord, CdrWriter, Disposition
from acd.dialing import Dialing
from acd.dialplan import Destination, Dialplan, Kind
from acd.directory import ExtensionDirectory
from acd.events import CallAnswered, CallEnded, CallStarted, CdrWritten
from acd.features import (
    ExtensionFeatures,
    FeatureError,
    FeatureStore,
    ForwardChain,
    apply_feature_code,
    parse_feature_code,
)
from acd.hold import hold_changed
from acd.leg_codecs import DEFAULT_CODECS, answer_reoffer, follow_answer, offer_leg, open_endpoint, sdp_codecs
from acd.queue_calls import QueueRouter
from acd.routing import OutboundRoute, select_route
from acd.supervision import Supervision, parse_supervision
from acd.transfer import BlindTransfer, Parties, on_refer
from acd.voicemail_calls import VoicemailCalls
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import MediaEvent, RtpTimeout
from sipstack.offer_answer import Codec, NegotiatedMedia, build_answer, parse_answer, select_media
from sipstack.registrar import Registrar
from sipstack.sdp import SdpError, parse
from sipstack.server import SipServer
from sipstack.session import (
    SESSION_EXPIRED,
    Answered,
    Confirmed,
    EndCause,
    Ended,
    InboundLeg,
    Leg,
    LegEvent,
    Offer,
    OutboundLeg,
    Progress,
    Refer,
    SessionLayer,
)
from sipstack.transaction_layer import RequestReceived
from sipstack.trunk_manager import Trunk, TrunkManager
from sipstack.uri import NameAddr, SipUri, parse_uri

log = logging.getLogger(__name__)

# The codecs the engine relays and transcodes natively (G.711, Opus, L16), in our order of
# preference: what a CallManager offers and accepts unless `[media] codecs` says otherwise.
ENGINE_CODECS = sdp_codecs(DEFAULT_CODECS)


@dataclass
class CallPolicy:
    #: Seconds the callee may ring before the caller gets 480 (Asterisk's Dial timeout).
    ring_timeout: float = 60.0
    #: Seconds of RTP silence from either side after which the call is torn down.
    rtp_timeout: float = 30.0
    #: Longest call allowed, in seconds; 0 for no limit.
    max_duration: float = 4 * 3600.0


class CallManager:
    """Accepts new INVITEs from the session layer and runs a `Call` for each."""

    def __init__(self, server: SipServer, sessions_factory: Callable[[Callable[[RequestReceived], None]], SessionLayer],
                 engine: MediaEngine, directory: ExtensionDirectory, cdr: CdrWriter,
                 publish: Callable[[object], None], media_address: str, policy: CallPolicy,
                 *, trunks: TrunkManager | None = None, routes: Sequence[OutboundRoute] = (),
                 queues: QueueRouter | None = None, dialplan: Dialplan | None = None,
                 features: FeatureStore | None = None) -> None:
        self.server = server
        self.dialplan = dialplan or Dialplan()
        self.features = features
        #: Rings browser agents (WebRTC softphones) by extension; None without them.
        self.browser_agents: SipRinging | None = None
        #: Runs an IVR flow on an answered call (`ivr:NAME` destinations); None until an IVR
        #: engine is wired in: the call is answered and waits for the caller to hang up.
        self.ivr: Callable[[Call, str], None] | None = None
        #: Puts an answered call into conference room NUMBER (`conference:NUMBER`); None: no rooms.
        self.conference: Callable[[Call, str], None] | None = None
        #: Mailboxes: `voicemail:`/`voicemailmain` destinations and extensions' fallback; None: none.
        self.voicemail: VoicemailCalls | None = None
        #: Supervisors' listen/whisper/barge codes (*55/*56/*57 + agent); None: not offered.
        self.supervision: Supervision | None = None
        #: Records bridged calls by the recording rules (acd.call_recording); None: no recording.
        self.recording: CallRecorder | None = None
        self.queues = queues
        self.trunks = trunks
        self.routes = list(routes)
        self.sessions = sessions_factory(self.on_invite)
        self.engine = engine
        self.directory = directory
        self.cdr = cdr
        self.publish = publish
        self.media_address = media_address
        #: Whose call-progress tones callers hear in band (mediacore.tones: "CN" or "US").
        self.tone_country = "CN"
        #: The codecs legs offer and accept, in our order of preference (`[media] codecs`).
        self.codecs: tuple[Codec, ...] = ENGINE_CODECS
        self.policy = policy
        self.calls: dict[str, Call] = {}
        self._by_endpoint: dict[int, Call] = {}
        self._session_ids = itertools.count(secrets.randbelow(2**31))
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def registrar(self) -> Registrar:
        return self.server.registrar

    def on_invite(self, event: RequestReceived) -> None:
        trunk = self.trunks.inbound(event.request, event.source) if self.trunks is not None else None
        if trunk is not None:
            from_uri = event.request.from_addr.uri
            caller = (from_uri.user if isinstance(from_uri, SipUri) else None) or "anonymous"
            call = Call(self, event, caller, trunk=trunk)
        else:
            username = self.server.authenticate(event, proxy=True)
            if username is None:
                return  # challenged (407) or refused
            call = Call(self, event, username)
        self.calls[call.id] = call
        call.start()

    def default_route(self, number: str) -> Destination:
        """The built-in plan for a number no dialplan rule takes: a queue, an extension, an
        outbound route, else 404."""
        if self.queues is not None and self.queues.queue_for(number) is not None:
            return Destination(Kind.QUEUE, number)
        if self.directory.get(number) is not None:
            return Destination(Kind.EXTENSION, number)
        if select_route(self.routes, number) is not None:
            return Destination(Kind.OUTBOUND, number)
        return Destination(Kind.HANGUP, status=404)

    def save_features(self, features: ExtensionFeatures) -> None:
        """Apply an extension's new settings now and write them to the database behind."""
        assert self.features is not None
        self.spawn(self.features.save(features), f"the features of {features.extension}")

    def trunks_for(self, route: OutboundRoute) -> list[Trunk]:
        """The route's trunks that are up now, in its failover order."""
        if self.trunks is None:
            return []
        found = [self.trunks.get(name) for name in route.trunks]
        return [trunk for trunk in found if trunk is not None and trunk.up]

    def on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, RtpTimeout):
            call = self._by_endpoint.get(event.endpoint_id)
            if call is not None:
                call.hangup("rtp_timeout", side="system")

    def next_session_id(self) -> int:
        return next(self._session_ids)

    def track_endpoint(self, endpoint: Endpoint, call: Call) -> None:
        self._by_endpoint[endpoint.id] = call

    def forget_endpoint(self, endpoint: Endpoint) -> None:
        self._by_endpoint.pop(endpoint.id, None)

    def call_of(self, leg: Leg) -> Call | None:
        """The call a leg belongs to (a Replaces names a dialog, not a call)."""
        for call in self.calls.values():
            if leg is call.inbound or leg is call.answered_leg:
                return call
        return None

    def release(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        for endpoint in call.endpoints:
            self._by_endpoint.pop(endpoint.id, None)

    def write_cdr(self, record: CdrRecord) -> None:
        self.spawn(self.cdr.write(record), f"the CDR of call {record.call_id}")
        self.publish(CdrWritten(record))

    def spawn(self, write: Coroutine[Any, Any, object], what: str) -> None:
        """Run a database write of the call layer in the background: a failure is logged,
        and `drain` waits for it at shutdown."""
        task = asyncio.get_running_loop().create_task(self._write(write, what))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    @staticmethod
    async def _write(write: Coroutine[Any, Any, object], what: str) -> None:
        try:
            await write
        except Exception:
            log.exception("could not write %s", what)

    async def drain(self) -> None:
        """Hang up every call and wait for their CDRs (shutdown)."""
        for call in list(self.calls.values()):
            call.hangup("shutdown", side="system")
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


class Call(Dialing, AgentLegs, Segments, Parties):
    """One call: the caller's leg, the callee's (or the legs ringing), their media endpoints."""

    def __init__(self, manager: CallManager, event: RequestReceived, caller: str, *,
                 trunk: Trunk | None = None, caller_leg: Any = None, dialled: str = "") -> None:
        self.manager = manager
        self.id = uuid.uuid4().hex
        # A browser agent's call has no INVITE: its caller leg is the softphone (acd.browser_caller).
        self.inbound = caller_leg if caller_leg is not None else InboundLeg(manager.sessions, event)
        self.inbound.listener = self._on_inbound
        self.caller = caller
        request = event.request if caller_leg is None else None
        self.dialled = (request.uri.user or "" if request is not None and isinstance(request.uri, SipUri)
                        else dialled)
        #: For a call from a trunk: the trunk, the DID dialled and the display name it sent.
        self.from_trunk = trunk
        self.did = ""
        self.caller_name = ""
        if trunk is not None:
            self.did, extension = trunk.did_of(request)
            self.dialled = extension or ""
            self.caller_name = request.from_addr.display_name or ""
        #: The trunk the call left through (outbound), and those still to try if it fails.
        self.trunk_name = trunk.name if trunk is not None else ""
        self._trunk_queue: list[Trunk] = []
        self._route_number = ""
        self._route: OutboundRoute | None = None
        self.outbound: list[OutboundLeg] = []
        self.answered_leg: OutboundLeg | None = None
        self.endpoints: list[Endpoint] = []
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.offer_b = None
        self.codec_a: NegotiatedMedia | None = None
        self.status = 0
        self._ended = False
        self._timers: list[asyncio.TimerHandle] = []
        #: Per endpoint, the o= session id and version of the SDP we send that leg (RFC 4566
        #: §5.2: the id stays, the version goes up with every new offer or answer).
        self._session_id = manager.next_session_id()
        self._origins: dict[int, list[int]] = {}
        #: A queue call waits in the ACD; its agent legs ring the agents it offers the call to.
        self.queue_id: str | None = None
        self.agent_legs: dict[OutboundLeg, str] = {}
        self.answered_agent: str | None = None
        #: A feature code (agent log-in, DND, forwards): answered, applied, hung up.
        self._feature: str | None = None
        #: The ringing step under way (an extension, a ring group member, a trunk): its timer,
        #: and what follows when nobody answers (a forward, the next member, a fallback).
        self._step: asyncio.TimerHandle | None = None
        self._on_step_failed: Callable[[int, EndCause], None] | None = None
        self._leg_target: dict[OutboundLeg, str] = {}
        self._answered_ext: str | None = None
        self._chain: ForwardChain | None = None
        self._steps = 0
        #: The transfer under way (acd.blind_transfer), and legs handed over to another call by one.
        self.transfer: BlindTransfer | None = None
        #: The sides ("a", "b") whose party holds the call (acd.hold: the other hears music).
        self.held_by: set[str] = set()
        self._detached: set[Leg] = set()
        #: The number of the party on each side ("a": the caller's side, "b": the callee's).
        self._parties: dict[str, str] = {}
        #: CDR segment: a completed transfer closes one and opens the next (acd.cdr).
        self.segment = 1
        #: The call's recording (its path under the recordings directory), "" if not recorded.
        self.recording_ref = ""
        #: The prompt language the caller chose in an IVR ("zh-CN", "en"); "": the queue's or site's.
        self.language = ""

    # ------------------------------------------------------------- set-up

    def start(self) -> None:
        m = self.manager
        m.publish(CallStarted(self.id, self.caller, self.dialled, self.started_at))
        try:
            offer = parse(self.inbound.remote_sdp) if self.inbound.remote_sdp else None
        except SdpError as exc:
            self._refuse(400, f"Bad Request: malformed SDP ({exc})")
            return
        if offer is None:
            # A late offer (INVITE without SDP) is legal but not supported yet: say so plainly.
            self._refuse(488, "Not Acceptable Here: an SDP offer is required")
            return
        if self.from_trunk is not None and not self.dialled:
            self._refuse(404, "Not Found: unknown DID")
            return
        destination = Destination(Kind.HANGUP, status=404)
        supervise = self.from_trunk is None and m.supervision is not None and parse_supervision(self.dialled)
        if self.from_trunk is None and ((m.queues is not None and m.queues.is_feature(self.dialled))
                                        or (m.features is not None and parse_feature_code(self.dialled))):
            self._feature = self.dialled
        elif supervise:
            log.info("call %s: %s dials supervision code %s", self.id, self.caller, self.dialled)
        else:
            resolution = m.dialplan.resolve(self.dialled, self.caller, datetime.now(UTC), m.default_route)
            destination = resolution.destination
            log.info("call %s: %s dials %s -> %s (%s)", self.id, self.caller, self.dialled, destination,
                     ", ".join(resolution.trail) or "built-in plan")
            if destination.kind is Kind.HANGUP:
                self._refuse(destination.status, None)  # before any media port is taken
                return
        session_id = self._session_id
        # One negotiation: choose the caller's codec, open its endpoint, answer with its port.
        self.codec_a = select_media(offer, m.codecs)
        if self.codec_a is None:
            names = ", ".join(dict.fromkeys(c.name for c in m.codecs))
            self._refuse(488, f"Not Acceptable Here: no common codec ({names})")
            return
        session_b = m.next_session_id()
        try:
            self.endpoint_a = self._caller_endpoint(self.codec_a)
            # The callee is offered the caller's codec first, so the engine relays without
            # transcoding when it takes it, and our other codecs after it (then it transcodes).
            self.endpoint_b, self.offer_b = offer_leg(m.engine, m.media_address, m.codecs, first=self.codec_a.codec,
                                                      session_id=session_b, rtp_timeout=m.policy.rtp_timeout)
        except MediaError as exc:
            log.warning("call %s: no media endpoint: %s", self.id, exc)
            self._refuse(503, "Service Unavailable: no media port free")
            return
        self.endpoints.append(self.endpoint_b)
        m.track_endpoint(self.endpoint_b, self)
        self.answer_a = build_answer(offer, self.codec_a, address=m.media_address, port=self.endpoint_a.local_port,
                                     session_id=session_id, session_version=1)
        self._origins = {self.endpoint_a.id: [session_id, 1], self.endpoint_b.id: [session_b, 1]}
        if self._feature is not None:
            self._run_feature()
            return
        if supervise and m.supervision is not None:
            self._answer_locally(f"supervise:{self.dialled}")
            m.supervision.start(self, self.dialled)
            return
        self._go(destination)

    def _ring(self, bindings: list, from_addr: NameAddr, to_addr: NameAddr) -> None:
        """Ring every registered contact of the extension at once."""
        m = self.manager
        for binding in bindings:
            leg = OutboundLeg(m.sessions, target=binding.target(), request_uri=parse_uri(binding.contact_uri),
                              from_addr=from_addr, to_addr=to_addr, sdp=self.offer_b.to_bytes())
            leg.listener = self._on_outbound
            self.outbound.append(leg)
            leg.start()

    # ------------------------------------------------------------- queue calls

    def _run_feature(self) -> None:
        m = self.manager
        assert self._feature is not None
        code = parse_feature_code(self._feature) if m.features is not None else None
        if code is not None and m.features is not None:
            try:
                m.save_features(apply_feature_code(m.features.get(self.caller), code))
            except FeatureError as exc:
                self._refuse(403, f"Forbidden: {exc}")
                return
        elif m.queues is None or not m.queues.feature(self.caller, self._feature, time.time()):
            self._refuse(403, "Forbidden: this extension is no agent of any queue")
            return
        # Answer and hang up once the ACK is in: the phone shows a short answered call.
        self.answered_at = time.time()
        self.inbound.answer(self.answer_a.to_bytes())

    def _caller_endpoint(self, negotiated: NegotiatedMedia) -> Endpoint:
        """The caller's endpoint, sending where its offer said (a browser caller brings its own)."""
        endpoint = self._endpoint(negotiated)
        self.manager.engine.set_remote(endpoint, negotiated.remote_address, negotiated.remote_port)
        return endpoint

    def _endpoint(self, negotiated: NegotiatedMedia) -> Endpoint:
        m = self.manager
        endpoint = open_endpoint(m.engine, negotiated.codec, telephone_event_pt=negotiated.telephone_event_pt,
                                 rtp_timeout=m.policy.rtp_timeout)
        self.endpoints.append(endpoint)
        m.track_endpoint(endpoint, self)
        return endpoint

    def _endpoint_changed(self, updated: Endpoint) -> None:
        """An endpoint's codec changed (engine.set_codec returns a new record of the same leg):
        every place the call keeps it sees the new one."""
        self.endpoints = [updated if e.id == updated.id else e for e in self.endpoints]
        for name in ("endpoint_a", "endpoint_b"):
            current = getattr(self, name, None)
            if current is not None and current.id == updated.id:
                setattr(self, name, updated)

    # ------------------------------------------------------------- leg events

    def _on_inbound(self, leg: Leg, event: LegEvent) -> None:
        if isinstance(event, Confirmed) and self._feature is not None:
            self.hangup(f"feature {self._feature}", side="system")
        elif isinstance(event, Ended):
            side = "caller" if event.by_remote else "system"
            self._finish(event.cause, side, event.status,
                         cause_text="session_timer" if event.reason == SESSION_EXPIRED else None)
        elif isinstance(event, Offer):
            self._renegotiate(leg, event.sdp, getattr(self, "endpoint_a", None))
        elif isinstance(event, Refer):
            on_refer(self, leg, event)

    def _on_outbound(self, leg: Leg, event: LegEvent) -> None:
        if isinstance(event, Refer):
            on_refer(self, leg, event)
        elif isinstance(event, Progress):
            if self.transfer is not None:
                self.transfer.ringing()
            elif self.answered_leg is None and self.answered_at is None:
                self.inbound.ring()
        elif isinstance(event, Answered):
            agent = self.agent_legs.get(leg)
            if self.answered_leg is not None or (
                    agent is not None and self.manager.queues is not None
                    and not self.manager.queues.answered(self, agent, time.time())):
                leg.hangup()
                return
            self.answered_agent = agent
            self._connect(leg, event.sdp)
        elif isinstance(event, Ended):
            if leg is self.answered_leg:
                self._finish(event.cause, "callee" if event.by_remote else "system", event.status,
                             cause_text="session_timer" if event.reason == SESSION_EXPIRED else None)
                return
            if leg in self.outbound:
                self.outbound.remove(leg)
            agent = self.agent_legs.pop(leg, None)
            if agent is not None:
                # A queue call keeps waiting: the ACD offers it to someone else.
                self._agent_ring_failed(agent)
                return
            self.status = max(self.status, event.status)
            if (not self.outbound and self.answered_leg is None and not self._ended and self._trunk_queue
                    and _provider_failed(event)):
                # The trunk could not take the call: the next trunk of the route may.
                log.info("call %s: trunk %s failed (%s %s); trying the next", self.id, self.trunk_name,
                         event.status, event.reason)
                self._trunk_queue = [t for t in self._trunk_queue if t.up]
                if self._trunk_queue:
                    self._dial_trunk()
                    return
            if (not self.outbound and self.answered_leg is None and not self._ended
                    and not (self.manager.browser_agents and self.manager.browser_agents.ringing(self.id))):
                status = 486 if event.cause is EndCause.BUSY else (event.status if event.status >= 400 else 480)
                if status in (401, 407):
                    status = 503  # a provider refusing our trunk credentials: not the caller's to answer
                self._step_failed(status, event.cause)
        elif isinstance(event, Offer):
            self._renegotiate(leg, event.sdp, getattr(self, "endpoint_b", None))

    def _renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint | None) -> None:
        """A re-INVITE/UPDATE with a new offer (hold, unhold, a moved address, a codec change):
        answer it per RFC 3264 §6.1 (a sendonly offer gets recvonly, and so on) on the same
        endpoint, keeping its codec unless the offer drops it, and follow the remote address if
        it changed. Hold is the far end's business here: the engine keeps relaying whatever
        arrives."""
        if endpoint is None:
            leg.reject_offer(488)
            return
        m = self.manager
        outcome = answer_reoffer(m.engine, leg, sdp, endpoint, m.codecs, self._origins[endpoint.id],
                                 m.media_address)
        if outcome is None:
            return
        updated, negotiated = outcome
        if updated is not endpoint:
            self._endpoint_changed(updated)
            if updated is getattr(self, "endpoint_a", None):
                self.codec_a = negotiated
        side = self.side_of(leg)
        if side is not None and self.transfer is None:
            hold_changed(self, side, negotiated.remote_hold)

    def _connect(self, leg: Leg, sdp: bytes) -> None:
        m = self.manager
        try:
            negotiated = parse_answer(self.offer_b, parse(sdp)) if sdp else None  # type: ignore[arg-type]
        except SdpError:
            negotiated = None
        if negotiated is None:
            leg.hangup()
            return
        self.answered_leg = leg
        answered_here = self.answered_at is not None   # an IVR answered it before it was routed on
        if not answered_here:
            self.answered_at = time.time()
        self._answered_ext = self._leg_target.get(leg)
        if self._step is not None:
            self._step.cancel()
            self._step = None
        for other in list(self.outbound):
            if other is not leg:
                other.hangup()  # RFC 3261 §16.7-style: CANCEL the forks that lost
        if m.browser_agents is not None:
            m.browser_agents.stop(self.id, "answered_elsewhere")
        try:
            # The callee may have answered in another codec than the caller's: the engine
            # transcodes between the two endpoints from here on.
            self._endpoint_changed(follow_answer(m.engine, self.endpoint_b, negotiated))
        except MediaError as exc:
            log.warning("call %s: cannot follow the callee's answer: %s", self.id, exc)
            self.hangup("media", side="system")
            return
        if answered_here:
            m.engine.stop_playback(self.endpoint_a)    # the hold music or ringback it heard
        m.engine.connect(self.endpoint_a, self.endpoint_b)
        if m.recording is not None:
            m.recording.bridged(self)
        if answered_here:
            m.engine.set_rtp_timeout(self.endpoint_b, m.policy.rtp_timeout)
            if self.transfer is not None:
                self.transfer.reached()
            return
        self.inbound.answer(self.answer_a.to_bytes())
        m.publish(CallAnswered(self.id, self.answered_by, self.answered_at))
        self._arm_max_duration()

    def _arm_max_duration(self) -> None:
        m = self.manager
        if m.policy.max_duration:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(m.policy.max_duration,
                                                lambda: self.hangup("max_duration", side="system")))

    @property
    def answered_by(self) -> str:
        """Who took the call: the agent, the extension that answered (after forwards and in
        ring groups), the echo test or IVR, else the number dialled."""
        return self.answered_agent or self._answered_ext or self.dialled

    # ------------------------------------------------------------- ending

    def hangup(self, reason: str, *, side: str) -> None:
        """End the call from inside (RTP timeout, maximum duration, shutdown, supervisor):
        both legs are hung up by `_finish`."""
        self._finish(EndCause.NORMAL if self.answered_at else EndCause.FAILED, side, 0, cause_text=reason)

    def _refuse(self, status: int, reason: str | None, *, cause: EndCause | None = None) -> None:
        if self.transfer is not None and not self._ended:
            self.transfer.failed(status)   # the transferor hears it; the call goes on or ends there
            return
        self.status = status
        if not self._ended and isinstance(self.inbound, InboundLeg):  # not a party a transfer put there
            self.inbound.listener = None
            self.inbound.reject(status, reason)
        self._finish(cause or (EndCause.BUSY if status == 486 else EndCause.REJECTED), "system", status)

    def _finish(self, cause: EndCause, side: str, status: int, *, cause_text: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        for timer in self._timers:
            timer.cancel()
        if self._step is not None:
            self._step.cancel()
        if self.transfer is not None:
            self.transfer.abandoned()   # before the CDR: the segment to the target ends unanswered
        m = self.manager
        if self.queue_id is not None and m.queues is not None:
            m.queues.ended(self, side, time.time())
        # The other leg(s) end with this one (not a party a transfer moved to another call).
        if side != "caller" and self.inbound not in self._detached:
            self.inbound.listener = None
            self.inbound.hangup()
        for leg in [*self.outbound, *([self.answered_leg] if self.answered_leg else [])]:
            if leg not in self._detached:
                leg.listener = None
                leg.hangup()
        if m.recording is not None:
            m.recording.ended(self)   # before the legs go: the file ends with the call
        loss = None
        for endpoint in self.endpoints:
            try:
                stats = m.engine.stats(endpoint)
                if endpoint is self.endpoints[0]:
                    loss = round(100 * stats.loss_fraction, 3)
                log.info("call %s leg port %d: in %d out %d lost %d dropped %d malformed %d jitter %.1f ms",
                         self.id, endpoint.local_port, stats.packets_in, stats.packets_out, stats.packets_lost,
                         stats.dropped, stats.malformed, stats.jitter_ms)
                m.engine.destroy(endpoint)
            except MediaError:
                pass
        m.release(self)
        ended = time.time()
        record = self._record(ended, _disposition(cause, self.answered_at is not None), side,
                              cause_text or cause.value, status or self.status, loss)
        m.write_cdr(record)
        m.publish(CallEnded(self.id, str(record.disposition), side, record.hangup_cause, record.duration,
                            record.billsec, ended))


def _provider_failed(event: Ended) -> bool:
    """A trunk's refusal that says nothing about the callee — no answer to the INVITE at all,
    408, or a 5xx server failure — so another trunk is worth trying (RFC 3261 §21.5: 5xx are
    the server's failures; 486 busy or 404 would be the same on any trunk)."""
    return (event.cause is EndCause.FAILED and event.status in (0, 408)) or 500 <= event.status < 600


def _disposition(cause: EndCause, answered: bool) -> Disposition:
    if answered:
        return Disposition.ANSWERED
    return {
        EndCause.BUSY: Disposition.BUSY,
        EndCause.CANCELLED: Disposition.CANCELLED,
        EndCause.NO_ANSWER: Disposition.NO_ANSWER,
        EndCause.REJECTED: Disposition.FAILED,
        EndCause.FAILED: Disposition.FAILED,
        EndCause.NORMAL: Disposition.NO_ANSWER,
    }[cause]

