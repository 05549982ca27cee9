"""Call transfers (RFC 3515 REFER) on a bridged call, from either party.

Blind: the transferor's REFER names a number; we accept it (202), tell the transferor how it
goes (NOTIFY: 100 Trying, then the final status), ring the target on a fresh media endpoint and,
when it answers, bridge it with the party who stays, and hang up the transferor. The
transferor may hang up at any time after the 202 without ending the call. If the target does
not answer, the call goes on with the transferor if it is still there, else it ends.

Attended: the REFER's Refer-To carries `Replaces` (RFC 3891) naming the transferor's other
call. The party of that other call is moved into this one in the transferor's place, and the
transferor's leg of the other call is hung up with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from mediacore.engine import Endpoint
from mediacore.errors import MediaError
from sipstack.sdp import Codec, SdpError, build_offer, parse, parse_answer
from sipstack.session import Answered, EndCause, Ended, Leg, LegEvent, Offer, OutboundLeg, Refer
from sipstack.uri import NameAddr, SipUri, parse_uri

if TYPE_CHECKING:
    from acd.calls import Call, CallManager

log = logging.getLogger(__name__)


class Parties:
    """The part of `Call` (a mixin) that transfers work through: which party is on which side,
    and moving parties and endpoints in and out of the call."""

    manager: CallManager
    caller: str
    inbound: Leg
    answered_leg: Leg | None
    answered_at: float | None
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    endpoints: list[Endpoint]
    transfer: BlindTransfer | None
    _ended: bool
    _timers: list[asyncio.TimerHandle]
    _origins: dict[int, list[int]]
    _detached: set[Leg]
    _parties: dict[str, str]

    if TYPE_CHECKING:  # defined by Call
        answered_by: str
        def _on_inbound(self, leg: Leg, event: LegEvent) -> None: ...
        def _on_outbound(self, leg: Leg, event: LegEvent) -> None: ...
        def _renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint | None) -> None: ...
        def close_segment(self, side: str, cause: str) -> None: ...

    @property
    def ended(self) -> bool:
        return self._ended

    def side_of(self, leg: Leg | None) -> str | None:
        """"a" for the caller's side of a bridged call, "b" for the callee's, else None."""
        if leg is None or self.answered_at is None or self.answered_leg is None:
            return None
        return "a" if leg is self.inbound else "b" if leg is self.answered_leg else None

    def endpoint_of(self, side: str | None, *, other: bool = False) -> Endpoint:
        return self.endpoint_b if (side == "b") != other else self.endpoint_a

    def party_number(self, side: str | None, *, other: bool = False) -> str:
        key = "b" if (side == "b") != other else "a"
        return self._parties.get(key) or (self.answered_by if key == "b" else self.caller)

    def new_endpoint(self, codec: str, payload_type: int) -> Endpoint:
        m = self.manager
        endpoint = m.engine.create_endpoint(codec, payload_type, rtp_timeout=m.policy.rtp_timeout,
                                            telephone_event_pt=101)
        self.endpoints.append(endpoint)
        m.track_endpoint(endpoint, self)
        return endpoint

    def set_origin(self, endpoint: Endpoint, session_id: int) -> None:
        self._origins[endpoint.id] = [session_id, 1]

    def add_timer(self, timer: asyncio.TimerHandle) -> None:
        self._timers.append(timer)

    def renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint) -> None:
        self._renegotiate(leg, sdp, endpoint)

    def restore_listener(self, side: str | None) -> None:
        if side == "a":
            self.inbound.listener = self._on_inbound
        elif self.answered_leg is not None:
            self.answered_leg.listener = self._on_outbound

    def install_party(self, side: str | None, leg: Leg, endpoint: Endpoint, number: str) -> None:
        """Put `leg` with `endpoint` on `side` in place of the party there (a transfer)."""
        m = self.manager
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        m.track_endpoint(endpoint, self)
        self._parties[side or "a"] = number
        self._parties["joined"] = number  # who answered the new segment (the CDR's answered_by)
        if side == "a":
            self.inbound, self.endpoint_a = leg, endpoint  # type: ignore[assignment]
            leg.listener = self._on_inbound
        else:
            self.answered_leg, self.endpoint_b = leg, endpoint  # type: ignore[assignment]
            leg.listener = self._on_outbound

    def detach_party(self, side: str, *, other: bool = False) -> tuple[Leg, Endpoint, str]:
        """Hand the party on `side` (or the other side) over to another call: this call will no
        longer end its leg nor destroy its endpoint."""
        key = "b" if (side == "b") != other else "a"
        leg = self.inbound if key == "a" else self.answered_leg
        assert leg is not None
        endpoint = self.endpoint_of(key)
        number = self.party_number(key)
        self._detached.add(leg)
        leg.listener = None
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
        return leg, endpoint, number

    def drop_endpoint(self, endpoint: Endpoint) -> None:
        m = self.manager
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
        m.forget_endpoint(endpoint)
        self._origins.pop(endpoint.id, None)
        try:
            m.engine.destroy(endpoint)
        except MediaError:
            pass


def on_refer(call: Call, leg: Leg, refer: Refer) -> None:
    """A REFER arrived on one of the call's legs: start the transfer it asks for, or refuse."""
    if call.answered_at is None or call.ended or call.transfer is not None or call.side_of(leg) is None:
        # RFC 3515 §2.4.2: a REFER we will not act on is refused; 403 for a call that is not
        # (or no longer) a plain bridged two-party call.
        leg.reject_refer(403, "Forbidden: only a bridged call can be transferred")
        return
    if refer.replaces is not None:
        _attended(call, leg, refer)
        return
    transfer = BlindTransfer(call, leg, refer.target.user or "")
    call.transfer = transfer
    transfer.start()


class BlindTransfer:
    def __init__(self, call: Call, transferor: Leg, target: str) -> None:
        self.call = call
        self.transferor = transferor
        self.target = target
        self.side = call.side_of(transferor)
        self.legs: list[OutboundLeg] = []
        self.endpoint: Endpoint | None = None
        self.offer = None
        self.transferor_gone = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        call, m = self.call, self.call.manager
        self.transferor.accept_refer()
        # The transferor is leaving: its BYE from now on ends its leg only.
        self.transferor.listener = self._on_transferor
        extension = m.directory.get(self.target)
        bindings = m.registrar.lookup(self.target) if extension is not None and extension.enabled else []
        if not bindings:
            self._fail(404 if extension is None else 480)
            return
        keep = call.endpoint_of(self.side, other=True)
        old = call.endpoint_of(self.side)
        try:
            self.endpoint = call.new_endpoint(keep.codec, keep.payload_type)
        except MediaError as exc:
            log.warning("call %s: no endpoint for the transfer: %s", call.id, exc)
            self._fail(503)
            return
        # Silence during the transfer (a held party, a transferor gone) must not end the call.
        m.engine.set_rtp_timeout(keep, None)
        m.engine.set_rtp_timeout(old, None)
        session_id = m.next_session_id()
        self.offer = build_offer(m.media_address, self.endpoint.local_port,
                                 [Codec(keep.codec, 8000, payload_type=keep.payload_type)],
                                 session_id=session_id, session_version=1)
        call.set_origin(self.endpoint, session_id)
        local = m.sessions.local_host
        staying = call.party_number(self.side, other=True)
        from_addr = NameAddr(SipUri("sip", staying, None, local, None), None, {})
        to_addr = NameAddr(SipUri("sip", self.target, None, local, None), None, {})
        log.info("call %s: %s transfers %s to %s", call.id, call.party_number(self.side), staying, self.target)
        for binding in bindings:
            leg = OutboundLeg(m.sessions, target=binding.target(), request_uri=parse_uri(binding.contact_uri),
                              from_addr=from_addr, to_addr=to_addr, sdp=self.offer.to_bytes())
            leg.listener = self._on_target
            self.legs.append(leg)
            call.outbound.append(leg)  # ended with the call, should the staying party hang up
            leg.start()
        self._timer = asyncio.get_running_loop().call_later(m.policy.ring_timeout, self._timeout)
        call.add_timer(self._timer)

    # ------------------------------------------------------------- events

    def _on_transferor(self, leg: Leg, event: LegEvent) -> None:
        if isinstance(event, Ended):
            self.transferor_gone = True
        elif isinstance(event, Offer):
            self.call.renegotiate(leg, event.sdp, self.call.endpoint_of(self.side))

    def _on_target(self, leg: Leg, event: LegEvent) -> None:
        assert isinstance(leg, OutboundLeg)
        call = self.call
        if isinstance(event, Answered):
            if call.transfer is not self:
                leg.hangup()
                return
            self._connect(leg, event.sdp)
        elif isinstance(event, Ended):
            if leg in self.legs:
                self.legs.remove(leg)
            if leg in call.outbound:
                call.outbound.remove(leg)
            if not self.legs and call.transfer is self:
                self._fail(486 if event.cause is EndCause.BUSY else (event.status if event.status >= 400 else 480))

    def _timeout(self) -> None:
        if self.call.transfer is self:
            self._fail(480)

    # ------------------------------------------------------------- outcome

    def _connect(self, leg: OutboundLeg, sdp: bytes) -> None:
        call, m = self.call, self.call.manager
        assert self.endpoint is not None and self.offer is not None
        try:
            negotiated = parse_answer(self.offer, parse(sdp)) if sdp else None
        except SdpError:
            negotiated = None
        if negotiated is None:
            leg.hangup()
            return
        for other in self.legs:
            if other is not leg:
                other.listener = None
                other.hangup()
                if other in call.outbound:
                    call.outbound.remove(other)
        self.legs = [leg]
        if leg in call.outbound:
            call.outbound.remove(leg)
        self._stop_timer()
        keep = call.endpoint_of(self.side, other=True)
        m.engine.set_remote(self.endpoint, negotiated.remote_address, negotiated.remote_port)
        m.engine.connect(keep, self.endpoint)
        m.engine.set_rtp_timeout(keep, m.policy.rtp_timeout)
        old = call.endpoint_of(self.side)
        call.close_segment(_side_name(self.side), "blind transfer")
        _tell_queue(call, self.side, self.target)
        call.install_party(self.side, leg, self.endpoint, self.target)
        _recording_follows(call)
        call.drop_endpoint(old)
        call.transfer = None
        log.info("call %s: transferred to %s", call.id, self.target)
        transferor = self.transferor
        # RFC 3515 §2.4.5: the final NOTIFY carries the target's answer; then the transferor
        # leaves (its own BYE may well cross ours: either ends the leg).
        transferor.notify_refer(200, on_done=lambda: _hang_up(transferor))

    def _fail(self, status: int) -> None:
        call, m = self.call, self.call.manager
        self._stop_timer()
        for leg in self.legs:
            leg.listener = None
            leg.hangup()
            if leg in call.outbound:
                call.outbound.remove(leg)
        self.legs = []
        if self.endpoint is not None:
            call.drop_endpoint(self.endpoint)
            self.endpoint = None
        call.transfer = None
        self.transferor.notify_refer(status)
        log.info("call %s: transfer to %s failed (%d)", call.id, self.target, status)
        if self.transferor_gone:
            call.hangup("transfer failed", side="system")
            return
        # The transferor is still there: the call goes on as before.
        call.restore_listener(self.side)
        for endpoint in (call.endpoint_of(self.side), call.endpoint_of(self.side, other=True)):
            m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _tell_queue(call: Call, side: str | None, target: str) -> None:
    """An agent handed a queue call on: the ACD ends the agent's part (wrap-up, queue log)."""
    queues = call.manager.queues
    transferred = getattr(queues, "transferred", None)  # QueueRouter.transferred (acd.queue_calls)
    if side == "b" and call.queue_id is not None and transferred is not None:
        transferred(call, target, time.time())


def _recording_follows(call: Call) -> None:
    """Issue #4: the call's one recording goes on with the parties bridged now (same file, the
    new party on the side it took); before the old leg is destroyed, so no audio is lost."""
    if call.manager.recording is not None:
        call.manager.recording.retarget(call)


def _side_name(side: str | None) -> str:
    """The CDR's hang-up side for the transferor's side."""
    return "caller" if side == "a" else "callee"


def _hang_up(leg: Leg) -> None:
    leg.listener = None
    leg.hangup()


def _attended(call: Call, leg: Leg, refer: Refer) -> None:
    """Refer-To with Replaces: bridge the party of the transferor's other call (named by the
    Replaces dialog) with the party who stays in this one."""
    m = call.manager
    replaces = refer.replaces
    assert replaces is not None
    other_leg = m.sessions.find_dialog(replaces.call_id, replaces.to_tag, replaces.from_tag)
    other = m.call_of(other_leg) if other_leg is not None else None
    other_side = other.side_of(other_leg) if other is not None and other_leg is not None else None
    if other is None or other is call or other_side is None or other.answered_at is None or \
            other.ended or other.transfer is not None:
        # RFC 3891 §3: no such (confirmed) dialog: 481; said in the REFER's answer.
        leg.reject_refer(481, "Call/Transaction Does Not Exist: Replaces names no call to join")
        return
    side = call.side_of(leg)
    assert side is not None
    leg.accept_refer()
    # The party of the other call (the transfer target) is moved here, in the transferor's place.
    moved_leg, moved_endpoint, moved_number = other.detach_party(other_side, other=True)
    other.hangup("transferred", side="system")
    keep = call.endpoint_of(side, other=True)
    old = call.endpoint_of(side)
    call.close_segment(_side_name(side), "attended transfer")
    _tell_queue(call, side, moved_number)
    call.install_party(side, moved_leg, moved_endpoint, moved_number)
    m.engine.connect(keep, moved_endpoint)
    _recording_follows(call)
    call.drop_endpoint(old)
    log.info("call %s: attended transfer joins %s from call %s", call.id, moved_number, other.id)
    leg.listener = None
    leg.notify_refer(200, on_done=lambda: _hang_up(leg))
