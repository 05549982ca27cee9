"""The wallboard's way onto an agent's call: a browser is no media leg, so the server first
rings the supervisor's own phone (every registered contact of their extension, like any call
to it) and hands the answered line to `acd.supervision`, which listens, whispers, barges or
takes over with it.

The line is offered the codecs of every call leg (acd.leg_codecs: G.711 µ-law first by
default) with RFC 4733 events (the keys 5-8 work on it as on a desk phone's own supervision
call). Until it is handed over to the agent's call by a take-over, the line's re-INVITEs are
answered here on its one endpoint.

The line writes a CDR when it ends (rung and not answered too): on the agent's call's id, with
segments from 200 (the call's own use 1 and up, its callbacks 100 and up), the supervisor's
extension as caller and their user name as caller_name, and as callee the supervision code of
the last action on the agent — "*55" + agent for listen, as a desk phone would have dialled
it, whose own supervision call's CDR reads the same. What the line was for is read from the
supervisor's seat (acd.supervision) it was rung for. A line handed over by a take-over has no
row of its own: its talk is the agent's call's next segment. The line is never recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from acd.cdr import SEGMENT_SUPERVISOR_LINE, CdrRecord, Disposition
from acd.leg_codecs import answer_reoffer, follow_answer, offer_leg
from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from sipstack.offer_answer import parse_answer
from sipstack.sdp import SdpError, parse
from sipstack.session import Answered, EndCause, Ended, Leg, LegEvent, Offer, OutboundLeg
from sipstack.uri import NameAddr, SipUri, parse_uri

if TYPE_CHECKING:
    from acd.calls import CallManager
    from acd.supervision import Seat

log = logging.getLogger(__name__)

#: How long the supervisor's phone may ring (s): they asked for the call a moment ago, so
#: shorter than an ordinary call's ring timeout.
RING_TIMEOUT = 30.0
#: The supervisor lines' CDR segments on an agent's call start above its callbacks' (acd.cdr).
CDR_SEGMENT_BASE = SEGMENT_SUPERVISOR_LINE
#: Agents' calls whose line count is remembered (for the next segment number): far more than
#: are supervised at once, so a count is never forgotten while its call can get another line.
SEGMENTS_REMEMBERED = 1000


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
        #: For the CDR: the supervisor's extension, when the phone was rung and answered, the
        #: highest SIP status a leg ended with, and the seat (action, agent, call) it serves.
        self.extension = ""
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.status = 0
        self.seat: Seat | None = None

    # ------------------------------------------------------------- what supervision calls

    def hangup(self, reason: str) -> None:
        """End the line (ringing: CANCEL; answered: BYE) and free its endpoint, quietly."""
        log.info("supervisor line %s ends: %s", self.seat_id, reason)
        self._finish(None, cause=reason)

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
        self.find_seat()
        if isinstance(event, Ended):
            self.status = max(self.status, event.status)
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
        self.answered_at = time.time()
        self._stop_timer()
        for other in self.legs:
            if other is not leg:          # RFC 3261 §16.7-style: CANCEL the forks that lost
                other.listener = None
                other.hangup()
        self.legs = [leg]
        try:
            self.endpoint = follow_answer(self._dialer.engine, self.endpoint, negotiated)
        except MediaError as exc:
            log.warning("supervisor line %s: %s", self.seat_id, exc)
            self._finish("media")
            return
        self._on_answer(self)

    def _renegotiate(self, leg: Leg, sdp: bytes) -> None:
        """RFC 3264 §6.1: a re-INVITE (hold, a refresh) answered on the same endpoint, keeping
        its codec unless the offer drops it."""
        calls = self._dialer.calls
        outcome = answer_reoffer(calls.engine, leg, sdp, self.endpoint, calls.codecs, self.origin, calls.media_address)
        if outcome is not None:
            self.endpoint = outcome[0]

    def arm(self, seconds: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(seconds, self._ring_timeout)

    def _ring_timeout(self) -> None:
        self._timer = None
        if self.leg is None:
            self._finish("no_answer")

    # ------------------------------------------------------------- ending

    def find_seat(self) -> None:
        """Learn which seat the line serves (once the supervision that rang it has added it)."""
        if self.seat is None:
            self.seat = self._dialer.seat_of(self.seat_id)

    def _finish(self, reason: str | None, *, cause: str = "") -> None:
        """Hang up every leg, free the endpoint and write the CDR; `reason` goes to on_end
        (None: we chose to, for `cause`)."""
        if self._done:
            return
        self._done = True
        self.find_seat()     # before on_end: the supervision forgets the seat there
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
        self._dialer.write_cdr(self, reason or cause, by_phone=reason in ("hangup", "busy"))
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
        #: Supervisor lines so far per agent's call (their CDR segments), the newest last.
        self._segments: dict[str, int] = {}

    @property
    def engine(self) -> MediaEngine:
        return self._calls.engine

    @property
    def media_address(self) -> str:
        return self._calls.media_address

    @property
    def calls(self) -> CallManager:
        return self._calls

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
        session_id = m.next_session_id()
        try:
            endpoint, sdp = offer_leg(m.engine, m.media_address, m.codecs, session_id=session_id,
                                      rtp_timeout=m.policy.rtp_timeout)
        except MediaError as exc:
            raise NoPhone(f"no media port free: {exc}") from None
        offer = sdp.to_bytes()
        line = RungLine(self, seat_id, endpoint, offer, session_id, on_answer, on_end)
        line.extension = extension
        # The supervision adds the seat once this returns: the line learns it on the next turn.
        asyncio.get_running_loop().call_soon(line.find_seat)
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

    def seat_of(self, seat_id: str) -> Seat | None:
        """The supervisor's seat a line was rung for (None once supervision forgot it)."""
        supervision = self._calls.supervision
        if supervision is None:
            return None
        return next((seat for seat in supervision.seats if seat.id == seat_id), None)

    def write_cdr(self, line: RungLine, cause: str, *, by_phone: bool) -> None:
        """The line's CDR (see the module's doc): on the agent's call, or on the line's own id
        when the seat was never known."""
        from acd.supervision import CODES  # acd.supervision imports this module

        seat = line.seat
        codes = {action: f"*5{digit}" for digit, action in CODES.items()}
        call_id, segment, callee = line.seat_id, CDR_SEGMENT_BASE + 1, ""
        if seat is not None:
            callee = codes[seat.action] + seat.agent
            if seat.target_id:
                call_id, segment = seat.target_id, self._next_segment(seat.target_id)
        ended = time.time()
        answered = line.answered_at is not None
        self._calls.write_cdr(CdrRecord(
            call_id=call_id, segment=segment, caller=line.extension, callee=callee,
            caller_name=seat.username if seat is not None else "", started_at=line.started_at, ended_at=ended,
            disposition=_disposition(answered, cause), hangup_side="caller" if by_phone else "system",
            hangup_cause=cause, answered_by=line.extension if answered else "", answered_at=line.answered_at,
            sip_status=line.status, codec=getattr(line.endpoint, "codec", "")))

    def _next_segment(self, call_id: str) -> int:
        count = self._segments.pop(call_id, 0) + 1
        self._segments[call_id] = count          # the newest last: the oldest go first
        while len(self._segments) > SEGMENTS_REMEMBERED:
            del self._segments[next(iter(self._segments))]
        return CDR_SEGMENT_BASE + count


def _disposition(answered: bool, cause: str) -> Disposition:
    """Asterisk's disposition of a line: a ringing line we gave up on (the supervised call
    ended first) is CANCELLED, as a caller's CANCEL would be."""
    if answered:
        return Disposition.ANSWERED
    if cause == "busy":
        return Disposition.BUSY
    if cause == "no_answer":
        return Disposition.NO_ANSWER
    if cause in ("bad_answer", "media", "failed"):
        return Disposition.FAILED
    return Disposition.CANCELLED
