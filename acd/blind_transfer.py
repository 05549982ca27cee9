"""Blind transfer (RFC 3515 REFER without Replaces) to any number the transferor could dial.

The transferor's REFER names a number. We accept it (202 and NOTIFY "100 Trying", RFC 3515
§2.4.5) and route the party who stays as if that party had dialled the number — through the
call's own dialplan and dialing (acd.dialing), so the number may be an extension (with its DND,
forwards and mailbox), a ring group, a queue, an IVR, a conference room, a mailbox, or an
outside number through the outbound routes and their trunks. The dialplan is read with the
transferor as the one dialling: what the transferor may dial, it may transfer to. Feature
codes (agent log-in, DND, supervisor codes) are no destinations: NOTIFY 403.

The party who stays is put on the call's caller side ("a") and the transferor's leg is set
aside; the call then goes on like a call answered by an IVR that routes on: ringback (or the
queue's music) in band while the target rings. The transferor hears how it goes by NOTIFY —
"180 Ringing", then "200 OK" once the target answers or a local destination (queue, IVR, room,
mailbox) takes the call, or the failure (404, 480, 486, 503, ...) — and is hung up after the
final 200. On a failure the call goes back to how it was, if the transferor is still there;
else it ends.

CDR: the conversation before the transfer is segment N, ending when the transfer began (cause
"blind transfer"); the staying party's call to the target is segment N+1, from then on, with
its own answer time, the staying party as caller and the number transferred to as callee.

The transferor is "the transferor side" (`Transferor`): a SIP leg that sent the REFER
(`SipTransferor`, above), or a browser agent's softphone (acd.browser_transfer), which hears the
same outcomes as WebSocket messages instead of NOTIFYs. The routing, CDR and recording are the
same for both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from acd.cdr import CdrRecord
from acd.dialplan import Kind
from acd.features import parse_feature_code
from acd.hold import release_hold
from acd.leg_codecs import codec_of, offer_leg
from mediacore.engine import Endpoint
from mediacore.errors import MediaError
from sipstack.sdp import SessionDescription
from sipstack.session import Ended, Leg, LegEvent, Offer

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)

#: The call's routing state that a transfer's new routing overwrites, restored when it fails
#: with the transferor still on the line (segment N goes on as if nothing happened).
ROUTING_STATE = ("caller", "caller_name", "dialled", "from_trunk", "trunk_name", "status", "queue_id",
                 "answered_agent", "_answered_ext", "_route", "_route_number", "_trunk_queue", "_chain",
                 "_steps", "_on_step_failed", "_leg_target", "offer_b", "outbound")


class Transferor(Protocol):
    """The party handing its call on: what a blind transfer tells it and asks of it."""

    side: str
    "The transferor's side of the call (\"a\" caller, \"b\" callee); the other party stays."
    legs: tuple[Leg, ...]
    "The transferor's SIP legs, if any (no longer the call's agent legs once it transfers)."

    def accept(self) -> None:
        """The transfer is taken on (RFC 3515 §2.4.5: 202 Accepted, NOTIFY 100 Trying)."""

    def progress(self, status: int, reason: str | None = None) -> None:
        """How it goes: 180 (the target rings), or the final failure status (403, 404, 486, ...)."""

    def watch(self, transfer: BlindTransfer) -> None:
        """From now on the transferor hanging up ends only its own part: `transfer.transferor_gone`."""

    def succeeded(self) -> None:
        """The target took the call: tell the transferor (final 200) and let it go."""

    def leave(self) -> None:
        """The call ended while the target was being reached: end the transferor's part."""

    def rejoin(self, call: Call) -> None:
        """The transfer failed with the transferor still there: bridge it with the party again
        (the call's routing state is already as it was)."""


class SipTransferor:
    """A SIP leg's REFER (RFC 3515): the outcome goes back as NOTIFYs of the implicit subscription."""

    def __init__(self, leg: Leg, side: str) -> None:
        self.leg = leg
        self.side = side
        self.legs = (leg,)

    def accept(self) -> None:
        self.leg.accept_refer()

    def progress(self, status: int, reason: str | None = None) -> None:
        self.leg.notify_refer(status, reason)

    def watch(self, transfer: BlindTransfer) -> None:
        def on_event(leg: Leg, event: LegEvent) -> None:
            if isinstance(event, Ended):
                transfer.transferor_gone = True
            elif isinstance(event, Offer) and transfer.old is not None:
                transfer.call.renegotiate(leg, event.sdp, transfer.old)

        self.leg.listener = on_event

    def succeeded(self) -> None:
        leg = self.leg
        leg.listener = None
        # RFC 3515 §2.4.5: the final NOTIFY carries the outcome; then the transferor leaves (its
        # own BYE may well cross ours: either ends the leg).
        leg.notify_refer(200, on_done=lambda: hang_up(leg))

    def leave(self) -> None:
        hang_up(self.leg)

    def rejoin(self, call: Call) -> None:
        m = call.manager
        m.engine.connect(call.endpoint_a, call.endpoint_b)
        for endpoint in (call.endpoint_a, call.endpoint_b):
            m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)


@dataclass
class _Before:
    """How the call stood when the REFER came."""
    inbound: Leg
    answered_leg: Leg | None
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    parties: dict[str, str]
    routing: dict[str, Any]


class BlindTransfer:
    """One blind transfer under way on `call` (its `transfer` attribute until it ends).
    `transferor` is the SIP leg that sent the REFER, or another `Transferor`."""

    def __init__(self, call: Call, transferor: Leg | Transferor, target: str) -> None:
        self.call = call
        if isinstance(transferor, Leg):
            transferor = SipTransferor(transferor, call.side_of(transferor) or "a")
        self.transferor: Transferor = transferor
        self.target = target
        self.side = transferor.side
        self.transferor_gone = False
        self.started = 0.0
        self._told_ringing = False
        self._before: _Before | None = None
        self._first: CdrRecord | None = None
        #: The transferor's endpoint, set aside while the target is reached (dropped once it is).
        self.old: Endpoint | None = None
        #: An agent hands a queue call on: the ACD hears of it once the transfer is through.
        self._queue_pending = False

    def start(self) -> bool:
        """Route the staying party to the target; False if refused at once (the transferor was
        told why and the call goes on as it was)."""
        call, m = self.call, self.call.manager
        transferor_number = call.party_number(self.side)
        self.transferor.accept()
        refusal = self._refusal()
        if refusal is not None:
            status, reason = refusal
            log.info("call %s: transfer to %r refused (%d)", call.id, self.target, status)
            self.transferor.progress(status, reason)
            return False
        destination = m.dialplan.resolve(self.target, transferor_number, datetime.now(UTC),
                                         m.default_route).destination
        if destination.kind is Kind.HANGUP:
            log.info("call %s: transfer to %r: nowhere to go (%d)", call.id, self.target, destination.status)
            self.transferor.progress(destination.status or 404)
            return False
        internal = m.directory.get(transferor_number) is not None
        if destination.kind is Kind.OUTBOUND and not internal:
            # A party outside (a customer on a trunk, a number we called out to) must not call
            # out through our trunks by REFER: toll fraud.
            self.transferor.progress(403, "Forbidden: only extensions transfer to outside numbers")
            return False
        keep = call.endpoint_of(self.side, other=True)
        try:
            # The staying party's codec first, our others after it (acd.leg_codecs).
            fresh, offer = offer_leg(m.engine, m.media_address, m.codecs, first=codec_of(keep),
                                     session_id=m.next_session_id(), rtp_timeout=None)
        except MediaError as exc:
            log.warning("call %s: no endpoint for the transfer: %s", call.id, exc)
            self.transferor.progress(503)
            return False
        call.transfer = self
        # The transferor is leaving: its hang-up from now on ends its own part only.
        self.transferor.watch(self)
        # Issue #8: the agent's part of a queue call ends (TRANSFER, wrap-up) when the transfer —
        # by the agent or by the caller — is through or the call ends on the way, not before: a
        # target that cannot be reached gives the call back as it was. Into a queue the call goes
        # at once, and it can join one only once it has left this one.
        self._queue_pending = call.queue_id is not None
        if destination.kind is Kind.QUEUE:
            self._queue_told()
        self._reseat(fresh, offer)
        log.info("call %s: %s transfers %s to %s (%s)", call.id, transferor_number, call.caller,
                 self.target, destination)
        # What an extension may dial includes outside numbers, even for a staying party who came
        # in on a trunk ("forwarded", as an extension's own forward may take a call out).
        call._go(destination, forwarded=internal)
        return True

    def _refusal(self) -> tuple[int, str] | None:
        m, target = self.call.manager, self.target
        if not target:
            return 404, "Not Found: Refer-To names no number"
        is_feature = ((m.queues is not None and m.queues.is_feature(target))
                      or (m.features is not None and parse_feature_code(target) is not None)
                      or target.startswith("*"))
        if is_feature:
            return 403, "Forbidden: a feature code is no transfer target"
        if target == self.call.party_number(self.side, other=True):
            return 403, "Forbidden: the party cannot be transferred to itself"
        return None

    def _reseat(self, fresh: Endpoint, offer: SessionDescription) -> None:
        """Put the staying party on side "a" and a fresh endpoint on side "b" for the target,
        and give the call the routing state of a call from the staying party to the target."""
        call, m = self.call, self.call.manager
        side = self.side
        staying_leg = call.answered_leg if side == "a" else call.inbound
        assert staying_leg is not None
        staying = call.party_number(side, other=True)
        keep, old = call.endpoint_of(side, other=True), call.endpoint_of(side)
        self._before = _Before(call.inbound, call.answered_leg, call.endpoint_a, call.endpoint_b,
                               dict(call._parties), {name: getattr(call, name) for name in ROUTING_STATE})
        # Segment N ends now (written once the transfer is through or the call ends).
        self.started = time.time()   # one instant: segment N ends when N+1 starts
        self._first = call.segment_record("caller" if side == "a" else "callee", "blind transfer", self.started)
        release_hold(call)
        m.engine.disconnect(keep)   # the transferor hears no more of the call
        m.engine.set_rtp_timeout(old, None)  # nor must its silence end the call
        self.old = old
        call.endpoints.append(fresh)
        m.track_endpoint(fresh, call)
        call.set_origin(fresh, offer.origin.sess_id)
        call.inbound, call.endpoint_a = staying_leg, keep  # type: ignore[assignment]
        staying_leg.listener = call._on_inbound
        call.answered_leg, call.endpoint_b = None, fresh
        for leg in (staying_leg, *self.transferor.legs):
            call.agent_legs.pop(leg, None)  # type: ignore[call-overload]
        if side == "a":
            call.from_trunk, call.caller_name = None, ""  # the staying party is who was called
        call._parties = {"a": staying, "b": self.target}
        call.caller, call.dialled = staying, self.target
        call.status, call.queue_id, call.answered_agent, call._answered_ext = 0, None, None, None
        call._route, call._route_number, call._trunk_queue, call._chain = None, "", [], None
        call._steps, call._on_step_failed, call._leg_target, call.outbound = 0, None, {}, []
        call.offer_b = offer
        recording_follows(call)

    # ------------------------------------------------------------- events

    def ringing(self) -> None:
        """A phone of the target rings (180/183 on one of the call's outbound legs)."""
        if not self._told_ringing:
            self._told_ringing = True
            self.transferor.progress(180)

    # ------------------------------------------------------------- outcome

    def reached(self) -> None:
        """The target answered, or a local destination took the call: segment N+1 begins."""
        call, m = self.call, self.call.manager
        call.transfer = None
        self._next_segment(answered=True)
        m.engine.set_rtp_timeout(call.endpoint_a, m.policy.rtp_timeout)
        if self.old is not None:
            call.drop_endpoint(self.old)
            self.old = None
        log.info("call %s: transferred to %s (answered by %s)", call.id, self.target, call.answered_by)
        self._queue_told()
        self.transferor.succeeded()

    def failed(self, status: int) -> None:
        """The target cannot be reached (the call's routing refused it with `status`)."""
        call, m = self.call, self.call.manager
        call.transfer = None
        if call._step is not None:
            call._step.cancel()
            call._step = None
        call._on_step_failed = None
        for leg in call.outbound:
            leg.listener = None
            leg.hangup()
        call.outbound = []
        if m.browser_agents is not None:
            m.browser_agents.stop(call.id, "transfer_failed")
        log.info("call %s: transfer to %s failed (%d)", call.id, self.target, status)
        self.transferor.progress(status)
        if self.transferor_gone:
            # Nobody to go back to: the staying party's call to the target failed.
            self._next_segment(answered=False)
            call.status = status
            self._queue_told()
            call.hangup("transfer failed", side="system")
            return
        self._restore()

    def abandoned(self) -> None:
        """The call is ending (the staying party hung up) while the target was being reached."""
        call = self.call
        call.transfer = None
        self._next_segment(answered=False)
        self._queue_told()
        self.transferor.leave()

    def _queue_told(self) -> None:
        """The transfer is over with the agent out of the call: the ACD ends the agent's part."""
        transferred = getattr(self.call.manager.queues, "transferred", None)  # QueueRouter.transferred
        if self._queue_pending and transferred is not None:
            self._queue_pending = False
            transferred(self.call, self.target, time.time())

    def _next_segment(self, *, answered: bool) -> None:
        call = self.call
        assert self._first is not None
        call.manager.write_cdr(self._first)
        call.segment += 1
        call.started_at = self.started
        call.answered_at = time.time() if answered else None
        call._parties.pop("joined", None)

    def _restore(self) -> None:
        """Back to the call as it was before the REFER, the transferor bridged again."""
        call, m = self.call, self.call.manager
        before = self._before
        assert before is not None
        fresh = call.endpoint_b
        try:
            m.engine.stop_playback(call.endpoint_a)   # the ringback it heard
        except MediaError:
            pass
        call.inbound, call.answered_leg = before.inbound, before.answered_leg  # type: ignore[assignment]
        call.endpoint_a, call.endpoint_b = before.endpoint_a, before.endpoint_b
        call._parties = before.parties
        for name, value in before.routing.items():
            setattr(call, name, value)
        call.inbound.listener = call._on_inbound
        if call.answered_leg is not None:
            call.answered_leg.listener = call._on_outbound
        if fresh is not before.endpoint_b:
            call.drop_endpoint(fresh)
        self.old = None
        try:
            self.transferor.rejoin(call)
        except MediaError as exc:
            log.warning("call %s: cannot bridge the transferor back: %s", call.id, exc)
            call.hangup("transfer failed", side="system")
            return
        recording_follows(call)


# ----------------------------------------------------------------- shared with acd.transfer

def tell_queue(call: Call, side: str | None, target: str) -> None:
    """An agent handed a queue call on: the ACD ends the agent's part (wrap-up, queue log)."""
    queues = call.manager.queues
    transferred = getattr(queues, "transferred", None)  # QueueRouter.transferred (acd.queue_calls)
    if side == "b" and call.queue_id is not None and transferred is not None:
        transferred(call, target, time.time())


def recording_follows(call: Call) -> None:
    """Issue #4: the call's one recording goes on with the parties bridged now (same file, the
    party on side "a" on the left); before the old leg is destroyed, so no audio is lost."""
    if call.manager.recording is not None:
        call.manager.recording.retarget(call)


def hang_up(leg: Leg) -> None:
    leg.listener = None
    leg.hangup()
