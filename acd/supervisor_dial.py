"""The wallboard's way onto an agent's call: a browser is no media leg, so the server first
rings the supervisor's own phone (every registered contact of their extension, like any call
to it) and hands the answered line to `acd.supervision`, which listens, whispers, barges or
takes over with it.

The line speaks G.711 µ-law with RFC 4733 events (every phone takes it, and the keys 5-8 work
on it as on a desk phone's own supervision call). Until it is handed over to the agent's call
by a take-over, the line's re-INVITEs are answered here on its one endpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from sipstack.sdp import Codec, SdpError, build_offer, negotiate_answer, parse, parse_answer
from sipstack.session import Answered, EndCause, Ended, Leg, LegEvent, Offer, OutboundLeg
from sipstack.uri import NameAddr, SipUri, parse_uri

if TYPE_CHECKING:
    from acd.calls import CallManager

log = logging.getLogger(__name__)

CODEC = Codec("PCMU", 8000, payload_type=0)
EVENT_PT = 101
#: How long the supervisor's phone may ring (s): they asked for the call a moment ago, so
#: shorter than an ordinary call's ring timeout.
RING_TIMEOUT = 30.0


class NoPhone(Exception):
    """The supervisor's extension has no phone registered (or no media port is free)."""


class RungLine:
    """The supervisor's phone, rung for a supervision and answered (or still ringing)."""

    def __init__(self, dialer: SupervisorDialer, seat_id: str, endpoint: Endpoint, offer: bytes,
                 session_id: int, on_answer: Callable[[RungLine], None], on_end: Callable[[str], None]) -> None:
        self._dialer = dialer
        self.seat_id = seat_id
        self.endpoint = endpoint
        self.offer = offer
        #: RFC 4566 §5.2: the o= session id stays and the version grows with each new answer.
        self.origin = [session_id, 1]
        self.legs: list[OutboundLeg] = []
        self.leg: OutboundLeg | None = None
        self._on_answer = on_answer
        self._on_end = on_end
        self._timer: asyncio.TimerHandle | None = None
        self._done = False

    # ------------------------------------------------------------- what supervision calls

    def hangup(self, reason: str) -> None:
        """End the line (ringing: CANCEL; answered: BYE) and free its endpoint, quietly."""
        log.info("supervisor line %s ends: %s", self.seat_id, reason)
        self._finish(None)

    def hand_over(self) -> tuple[Leg, Endpoint, list[int]]:
        """A take-over: the answered leg and its endpoint now belong to the agent's call (which
        sets the leg's listener); this line forgets them."""
        assert self.leg is not None
        self._done = True
        self._stop_timer()
        self._dialer.forget(self)
        return self.leg, self.endpoint, self.origin

    # ------------------------------------------------------------- SIP events

    def on_leg(self, leg: Leg, event: LegEvent) -> None:
        assert isinstance(leg, OutboundLeg)
        if isinstance(event, Answered):
            self._answered(leg, event.sdp)
        elif isinstance(event, Ended):
            if leg is self.leg:
                self._finish("hangup" if event.by_remote else "failed")
                return
            if leg in self.legs:
                self.legs.remove(leg)
            if not self.legs and self.leg is None:
                busy = event.cause is EndCause.BUSY or event.status == 486
                self._finish("busy" if busy else "no_answer")
        elif isinstance(event, Offer) and leg is self.leg:
            self._renegotiate(leg, event.sdp)

    def _answered(self, leg: OutboundLeg, sdp: bytes) -> None:
        if self.leg is not None or self._done:
            leg.listener = None
            leg.hangup()
            return
        try:
            negotiated = parse_answer(parse(self.offer), parse(sdp)) if sdp else None
        except SdpError:
            negotiated = None
        if negotiated is None:
            leg.listener = None
            leg.hangup()
            self.legs.remove(leg)
            if not self.legs:
                self._finish("bad_answer")
            return
        self.leg = leg
        self._stop_timer()
        for other in self.legs:
            if other is not leg:          # RFC 3261 §16.7-style: CANCEL the forks that lost
                other.listener = None
                other.hangup()
        self.legs = [leg]
        try:
            self._dialer.engine.set_remote(self.endpoint, negotiated.remote_address, negotiated.remote_port)
        except MediaError as exc:
            log.warning("supervisor line %s: %s", self.seat_id, exc)
            self._finish("media")
            return
        self._on_answer(self)

    def _renegotiate(self, leg: Leg, sdp: bytes) -> None:
        """RFC 3264 §6.1: a re-INVITE (hold, a refresh) answered on the same endpoint and codec."""
        try:
            offer = parse(sdp)
        except SdpError:
            leg.reject_offer(488)
            return
        self.origin[1] += 1
        answer, negotiated = negotiate_answer(offer, [CODEC], address=self._dialer.media_address,
                                              port=self.endpoint.local_port, session_id=self.origin[0],
                                              session_version=self.origin[1])
        if negotiated is None:
            leg.reject_offer(488)
            return
        if not negotiated.remote_hold and negotiated.remote_address not in ("0.0.0.0", "::"):
            self._dialer.engine.set_remote(self.endpoint, negotiated.remote_address, negotiated.remote_port)
        leg.accept_offer(answer.to_bytes())

    def arm(self, seconds: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(seconds, self._ring_timeout)

    def _ring_timeout(self) -> None:
        self._timer = None
        if self.leg is None:
            self._finish("no_answer")

    # ------------------------------------------------------------- ending

    def _finish(self, reason: str | None) -> None:
        """Hang up every leg and free the endpoint; `reason` goes to on_end (None: we chose to)."""
        if self._done:
            return
        self._done = True
        self._stop_timer()
        for leg in self.legs:
            leg.listener = None
            leg.hangup()
        self.legs = []
        try:
            self._dialer.engine.destroy(self.endpoint)
        except MediaError:
            pass
        self._dialer.forget(self)
        if reason is not None:
            self._on_end(reason)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class SupervisorDialer:
    """Rings supervisors' phones for the wallboard's supervision buttons."""

    def __init__(self, calls: CallManager) -> None:
        self._calls = calls
        self.lines: dict[str, RungLine] = {}

    @property
    def engine(self) -> MediaEngine:
        return self._calls.engine

    @property
    def media_address(self) -> str:
        return self._calls.media_address

    def ring(self, seat_id: str, extension: str, display: str, *, on_answer: Callable[[RungLine], None],
             on_end: Callable[[str], None]) -> RungLine:
        """Ring every registered phone of `extension`, showing `display` (what the call is for)."""
        m = self._calls
        extension_ok = m.directory.get(extension)
        bindings = m.registrar.lookup(extension) if extension_ok is not None and extension_ok.enabled else []
        if not bindings:
            browser = m.browser_agents is not None and m.browser_agents.agents.is_registered(extension)
            raise NoPhone(f"extension {extension} has only the browser softphone registered: supervision rings "
                          "desk (SIP) phones only" if browser else f"no phone is registered for extension {extension}")
        try:
            endpoint = m.engine.create_endpoint(CODEC.name, CODEC.payload_type or 0,
                                                rtp_timeout=m.policy.rtp_timeout, telephone_event_pt=EVENT_PT)
        except MediaError as exc:
            raise NoPhone(f"no media port free: {exc}") from None
        session_id = m.next_session_id()
        offer = build_offer(m.media_address, endpoint.local_port, [CODEC], session_id=session_id,
                            session_version=1).to_bytes()
        line = RungLine(self, seat_id, endpoint, offer, session_id, on_answer, on_end)
        local = m.sessions.local_host
        from_addr = NameAddr(SipUri("sip", "supervisor", None, local, None), display, {})
        to_addr = NameAddr(SipUri("sip", extension, None, local, None), None, {})
        for binding in bindings:
            leg = OutboundLeg(m.sessions, target=binding.target(), request_uri=parse_uri(binding.contact_uri),
                              from_addr=from_addr, to_addr=to_addr, sdp=offer)
            leg.listener = line.on_leg
            line.legs.append(leg)
            leg.start()
        line.arm(RING_TIMEOUT)
        self.lines[seat_id] = line
        return line

    def forget(self, line: RungLine) -> None:
        self.lines.pop(line.seat_id, None)
