"""Calls a browser agent places to anything beyond the echo test and other browsers: a desk
phone, a ring group, a queue, the IVR, a conference room, a feature code, an outside number.

Such a call is a B2BUA call (acd.calls.Call) like a desk phone's, so it gets the same routing,
features, recording rules, CDR and events; only its caller side differs. Where a desk phone's
call has an inbound SIP leg and an RTP endpoint negotiated from the INVITE's offer, a browser's
call has `BrowserCallerLeg` and the browser call's engine leg (`BrowserCall.port`):

- the leg's "offer" is ours: the site's codecs, so the callee is offered the site's first
  codec first (the engine transcodes to and from the browser's port whatever the callee takes);
- `ring()` (the callee rings, or the call waits in a queue) plays the engine's ringback tone
  toward the browser (the page has none of its own); `answer()` stops it and tells the browser
  (`WebRtcAgents.connected`), and the session is confirmed at once (there is no ACK to wait for);
- `hangup()` (the call ended or was refused) ends the browser call with a reason the page
  shows: busy, unreachable (404), no_answer, unavailable (5xx), forbidden, or remote_hangup;
- the agent's hang-up reaches the call as the caller's BYE or CANCEL (`Ended`, by the remote),
  so the callee's leg gets a BYE after the answer and a CANCEL before it.

In-call keys and hold from the page reach the far end as on incoming calls (`SipSide`): RFC 4733
events (or in-band tones) toward a SIP callee, the same digit events the engine would report for
an IVR, mailbox or queue that answered the call here.

A SIP callee (a desk phone, an outside number) is a party the agent can hand on, as in a
consultation before an attended transfer (`CalleeSide`, acd.browser_sip_side): completing the
transfer moves it into the agent's other call (the caller's, `join_calls(moved_side="b")`) or on
to another browser agent; a three-way call puts it into the room. A local destination that
answered (an IVR, a mailbox, a queue) cannot be moved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from acd import browser_sip_side as moves
from acd.browser_transfer import AgentCallError
from acd.calls import Call, CallManager
from acd.hold import hold_changed
from acd.webrtc_agents import BrowserCall, SipSide, WebRtcAgents, dtmf_tones
from mediacore.engine import AnyEndpoint, Endpoint
from mediacore.errors import MediaError
from mediacore.events import DtmfDigit, MediaEvent
from sipstack.leg_events import Confirmed, EndCause, Ended, LegEvent
from sipstack.offer_answer import NegotiatedMedia, assign_payload_types, build_offer

if TYPE_CHECKING:
    from sipstack.legs import Leg

log = logging.getLogger(__name__)

#: RFC 4733 §2.5.1.3: how long each key press from the page lasts, as a phone's would.
KEY_MS = 100
#: The SDP port of our stand-in offer when the browser's leg is a PCM port (no socket): the
#: discard port (RFC 863), never sent to — the Call takes the port itself (`_caller_endpoint`).
NO_PORT = 9


def failure_reason(status: int, answered: bool) -> str:
    """What the softphone shows when the SIP side ended the call: the far end hung up after an
    answer; before it, the reason the final response gave (RFC 3261 §21)."""
    if answered:
        return "remote_hangup"
    if status in (486, 600):
        return "busy"
    if status in (404, 484, 604):
        return "unreachable"
    if status in (403, 603):
        return "forbidden"
    if 500 <= status < 600:
        return "unavailable"
    return "no_answer"   # 480, 408, 487, our own ring timer


class BrowserCallerLeg:
    """The caller's side of a browser agent's B2BUA call: what `Call` uses of an InboundLeg."""

    def __init__(self, dialer: BrowserDialer, browser: BrowserCall, offer: bytes) -> None:
        self.dialer = dialer
        self.browser = browser
        #: The offer the Call negotiates its caller codec from (ours, see the module's docstring).
        self.remote_sdp = offer
        self.listener: Callable[[Leg, LegEvent], None] | None = None
        self.call: BrowserCallerCall | None = None
        self._ringback = False
        self._ended = False
        #: The Call has started (its CallStarted is out): from then on its end is the Call's.
        self.started = False
        #: In a three-way call the callee is a room member by this id (`into_room`): the Call's
        #: end is reported to the room, and the agent's browser call is the agent's own.
        self.member_id: str | None = None

    def ring(self, sdp: bytes = b"") -> None:
        """The callee rings (180) or the call waits for an agent: ringback to the browser."""
        if self._ringback or self._ended or self.call is None:
            return
        m = self.call.manager
        try:
            m.engine.play_tone(self.browser.port, "ringback", m.tone_country)
            self._ringback = True
        except MediaError as exc:
            log.warning("browser call %s: no ringback: %s", self.browser.id, exc)

    def answer(self, sdp: bytes) -> None:
        """The Call answered its caller (the callee took it, or an IVR, a queue, a feature code
        did): the browser talks from now on."""
        if self._ended or self.call is None:
            return
        self._stop_ringback()
        self.dialer.agents.connected(self.browser.id, CalleeSide(self.call, self.dialer))
        # No ACK comes from a browser: the session is confirmed with the answer (a feature
        # code's call ends on it, like a desk phone's after its ACK).
        asyncio.get_running_loop().call_soon(self._emit, Confirmed())

    def reject_offer(self, status: int = 488) -> None:
        """Never asked: the browser makes no SIP offers (its media is renegotiated over the
        WebSocket, with the worker)."""

    def hangup(self) -> None:
        """The Call ended (the callee hung up, refused, or nobody answered): so does the browser
        call, saying why."""
        if self._ended:
            return
        self._ended = True
        self._stop_ringback()
        call = self.call
        reason = failure_reason(call.status if call else 0, bool(call and call.answered_at))
        self.dialer.agents.end_call(self.member_id or self.browser.id, reason)

    # An attended transfer or a three-way call from the softphone (acd.browser_sip_side) takes
    # the agent's browser call away from this Call, or gives the Call another one.

    def let_go(self) -> None:
        """The callee was moved to another call: this Call's end no longer ends the agent's
        browser call (which the softphone ends itself, `transferred`)."""
        self._ended = True
        self._stop_ringback()
        if self.browser.on_end == self.agent_hung_up:
            self.browser.on_end = None

    def take_browser(self, browser: BrowserCall) -> None:
        """Attended transfer: the callee goes on with the agent of `browser` (whose hang-up now
        ends the Call, through its `CalleeSide`)."""
        if self.browser.on_end == self.agent_hung_up:
            self.browser.on_end = None
        self._stop_ringback()
        self.browser = browser

    def into_room(self, member_id: str) -> None:
        """Three-way call: the callee is room member `member_id`; the agent's browser call
        stays in the room as the agent's own member, apart from this Call."""
        self._stop_ringback()
        self.member_id = member_id
        if self.browser.on_end == self.agent_hung_up:
            self.browser.on_end = None

    def agent_hung_up(self, reason: str) -> None:
        """The agent hung up (or the browser went away): the caller's side of the Call ends —
        RFC 3261 §9.1 CANCEL toward a callee still ringing, §15 BYE after its answer."""
        if self._ended:
            return
        self._ended = True
        self._stop_ringback()
        if not self.started:
            return   # hung up before the call began: it never will
        answered = self.call is not None and self.call.answered_at is not None
        self._emit(Ended(EndCause.NORMAL if answered else EndCause.CANCELLED, 0, reason, by_remote=True))

    def _stop_ringback(self) -> None:
        if self._ringback and self.call is not None:
            self._ringback = False
            try:
                self.call.manager.engine.stop_playback(self.browser.port)
            except MediaError:
                pass   # the browser's leg is gone already

    def _emit(self, event: LegEvent) -> None:
        if self.listener is not None:
            self.listener(self, event)  # type: ignore[arg-type]


class BrowserCallerCall(Call):
    """A B2BUA call whose caller is a browser agent: its caller endpoint is the browser call's
    engine leg, owned (and destroyed) by acd.webrtc_agents, not by the call."""

    def __init__(self, manager: CallManager, leg: BrowserCallerLeg, caller: str, caller_name: str,
                 dialled: str) -> None:
        super().__init__(manager, None, caller, caller_leg=leg, dialled=dialled)  # type: ignore[arg-type]
        self.caller_name = caller_name
        self.browser_leg = leg
        leg.call = self

    def _caller_endpoint(self, negotiated: NegotiatedMedia) -> AnyEndpoint:  # type: ignore[override]
        # Not in `endpoints`: the Call never destroys it, and its silence (a held or muted
        # browser sends none through a PCM port) is no reason to end the call.
        return self.browser_leg.browser.port


class CalleeSide:
    """The far side of a browser agent's call when the B2BUA placed it (a `SipSide`)."""

    def __init__(self, call: BrowserCallerCall, dialer: BrowserDialer) -> None:
        self.call = call
        self.dialer = dialer

    def send_dtmf(self, digits: str) -> None:
        call, m = self.call, self.call.manager
        try:
            if call.answered_leg is not None:   # a SIP callee: as its caller's phone would send them
                callee = call.endpoint_b
                if callee.telephone_event_pt is not None:
                    m.engine.send_dtmf(callee, digits, KEY_MS)   # RFC 4733
                else:
                    m.engine.play(callee, dtmf_tones(digits))    # in band, ITU-T Q.23
                return
        except MediaError as exc:
            log.warning("call %s: keys not sent: %s", call.id, exc)
            return
        # Answered here (an IVR, a mailbox, a waiting queue, a room): the keys are the same digit
        # events the engine reports for a phone's RFC 4733 packets on the caller's endpoint.
        for digit in digits:
            self.dialer.deliver(DtmfDigit(call.endpoint_a.id, digit, KEY_MS, source="signalled"))

    def hangup(self, reason: str) -> None:
        self.call.browser_leg.agent_hung_up(reason)

    def hold(self, held: bool) -> None:
        # The caller's side ("a") holds: the callee hears music on hold (acd.hold).
        if self.call.answered_leg is not None:
            hold_changed(self.call, "a", held)

    @property
    def number(self) -> str:
        return self.call.dialled

    @property
    def movable(self) -> bool:
        # A SIP callee can be handed on; a local destination (an IVR, a mailbox, a queue) cannot.
        return self.call.answered_leg is not None and not self.call.ended

    def sip_party(self) -> tuple[BrowserCallerCall, str]:
        """The B2BUA call and the side its SIP party is on (the callee's, "b"): what an
        attended transfer moves into the agent's other call (`_CallerSide.join`)."""
        return self.call, "b"

    def blind_transfer(self, call: BrowserCall, target: str) -> None:
        raise AgentCallError("not_supported", "a call the agent placed is handed on by consulting "
                             "and completing the transfer")

    def move_to(self, call: BrowserCall) -> SipSide:
        """Attended transfer: the callee goes on with another browser agent (`call`)."""
        self._movable_or_refuse()
        moves.placed_call_to_browser(self.call, call)
        return CalleeSide(self.call, self.dialer)

    def join(self, other: SipSide) -> None:
        # The agent's other call hosts the join when it is one the agent answered (its
        # `_CallerSide.join`); two calls the agent placed have no such host.
        raise AgentCallError("not_supported", "two calls the agent placed cannot be joined; "
                             "complete the transfer from the call the agent answered")

    def enter_room(self, member_id: str, room_id: int | None = None) -> AnyEndpoint:
        """Three-way call: the callee joins the room (`room_id`)."""
        self._movable_or_refuse()
        return moves.placed_call_into_room(self.call, member_id, room_id)

    def _movable_or_refuse(self) -> None:
        if not self.movable:
            raise AgentCallError("not_supported", "this call's other party cannot be moved")


class BrowserDialer:
    """`WebRtcAgents.dial_sip`: the B2BUA places a browser agent's call as a desk phone's."""

    def __init__(self, calls: CallManager, agents: WebRtcAgents, *,
                 deliver: Callable[[MediaEvent], None] | None = None,
                 agent_name: Callable[[str], str] | None = None) -> None:
        self.calls = calls
        self.agents = agents
        #: Where media events go (the engine's handler): the page's keys for a call answered here.
        self.deliver: Callable[[MediaEvent], None] = deliver or (lambda event: None)
        self.agent_name = agent_name or (lambda extension: "")

    def __call__(self, browser: BrowserCall) -> None:
        """Place the call of `browser` (ringing, outbound). It starts on the next turn of the
        loop, after the browser has heard of its call: a refusal then ends a call it knows."""
        m = self.calls
        offer = _offer(m, browser.port)
        leg = BrowserCallerLeg(self, browser, offer)
        call = BrowserCallerCall(m, leg, browser.agent, self.agent_name(browser.agent), browser.peer)
        browser.on_end = leg.agent_hung_up

        def start() -> None:
            if leg._ended:
                return   # the agent hung up at once
            m.calls[call.id] = call
            leg.started = True
            log.info("call %s: browser agent %s dials %s (browser call %s)", call.id, browser.agent,
                     browser.peer, browser.id)
            call.start()

        asyncio.get_running_loop().call_soon(start)


def _offer(m: CallManager, port: AnyEndpoint) -> bytes:
    """Our stand-in for the caller's SDP offer: every codec of the site, in its order."""
    codecs = assign_payload_types(m.codecs)
    rtp_port = port.local_port if isinstance(port, Endpoint) else NO_PORT
    return build_offer(m.media_address, rtp_port, codecs, session_id=m.next_session_id(),
                       session_version=1).to_bytes()
