"""The two halves of a B2BUA call leg (RFC 3261 §13-15): `InboundLeg`, the UAS side of an INVITE
we received, and `OutboundLeg`, the UAC side of one we send. Each owns its dialog and reports what
happens as `LegEvent`s to one listener. SDP travels as bytes: media is not this layer's business.
`sipstack.session.SessionLayer` routes the traffic of their dialogs to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sipstack.addressing import Address
from sipstack.dialog import Dialog, DialogError, DialogState
from sipstack.errors import SipParseError
from sipstack.headers import Headers
from sipstack.leg_events import (
    Answered,
    Confirmed,
    EndCause,
    Ended,
    LegEvent,
    LegState,
    Listener,
    Offer,
    Progress,
    Refer,
    Replaces,
)
from sipstack.message import (
    REASON_PHRASES,
    Request,
    Response,
    generate_call_id,
    generate_tag,
    make_response,
)
from sipstack.session_timer import (
    DEFAULT_SESSION_EXPIRES,
    SESSION_EXPIRED,
    SessionIntervalTooSmall,
    SessionTimer,
    SessionTimerLeg,
    min_se_of,
    offer_headers,
)
from sipstack.transaction import T1, T2, ClientTransaction
from sipstack.transaction_layer import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimeout,
)
from sipstack.trunk_auth import DigestClient
from sipstack.uri import NameAddr, SipUri, Uri

if TYPE_CHECKING:
    from sipstack.session import SessionLayer

log = logging.getLogger(__name__)

# RFC 3261 §13.3.1.4: a 2xx is retransmitted until ACKed, for at most 64*T1.
ACK_WAIT = 64 * T1
#: Seconds the implicit subscription of a REFER lasts (RFC 3515 §2.4.4 leaves it to the
#: notifier; it ends sooner with the final NOTIFY). Long enough for a transfer target to ring.
REFER_EXPIRES = 120


class Leg(SessionTimerLeg):
    """What both directions share: the dialog, the listener, ending, in-dialog requests."""

    def __init__(self, layer: SessionLayer) -> None:
        self.layer = layer
        self.server = layer.server
        self.dialog: Dialog | None = None
        self.state = LegState.CALLING
        self.listener: Listener | None = None
        self.remote: Address | None = None
        self.local_sdp: bytes = b""
        self.remote_sdp: bytes = b""
        self._pending_offer: RequestReceived | None = None
        self._pending_refer: RequestReceived | None = None
        #: The REFER subscription's `id` (the REFER's CSeq, RFC 3515 §2.4.6), None when there is
        #: none to notify (none accepted, already terminated, or `Refer-Sub: false`).
        self._refer_id: int | None = None

    # ------------------------------------------------------------- shared API

    def hangup(self) -> None:
        """End the leg from our side, whatever its state."""
        raise NotImplementedError

    def accept_offer(self, sdp: bytes) -> None:
        """Answer a re-INVITE/UPDATE the listener was told of with `Offer`."""
        event, self._pending_offer = self._pending_offer, None
        if event is None:
            return
        if sdp:
            self.local_sdp = sdp
        response = make_response(event.request, 200, to_tag=self.dialog.id.local_tag if self.dialog else None,
                                 headers=[("Contact", self.layer.contact(event.source)),
                                          *self._refreshed(event.request)], body=sdp)
        if sdp:
            response.headers.add("Content-Type", "application/sdp")
        self.server.respond(event, response)

    def reject_offer(self, status: int = 488) -> None:
        event, self._pending_offer = self._pending_offer, None
        if event is not None:
            self.server.respond(event, make_response(event.request, status))

    def _emit(self, event: LegEvent) -> None:
        if self.listener is not None:
            try:
                self.listener(self, event)
            except Exception:
                log.exception("leg listener failed on %s", type(event).__name__)

    def _end(self, cause: EndCause, status: int = 0, reason: str = "", *, by_remote: bool = True) -> None:
        if self.state is LegState.ENDED:
            return
        self._cancel_expiry()
        self.state = LegState.ENDED
        if self.dialog is not None:
            self.dialog.state = DialogState.TERMINATED
        self.layer.forget(self)
        self._emit(Ended(cause, status, reason, by_remote))

    # ------------------------------------------------------------- for the session timer

    def _answered(self) -> bool:
        return self.state is LegState.ANSWERED

    def _expire(self) -> None:
        self._end(EndCause.FAILED, 408, SESSION_EXPIRED, by_remote=False)

    def _in_dialog_headers(self) -> tuple[str, str]:
        assert self.remote is not None
        return self.layer.via(self.remote), self.layer.contact(self.remote)

    def _send_bye(self) -> None:
        if self.dialog is None or self.remote is None:
            return
        bye = self.dialog.create_request("BYE", via=self.layer.via(self.remote))
        self.server.send_request(bye, self.remote)

    def on_in_dialog(self, event: RequestReceived) -> None:
        """A request inside our dialog: BYE, re-INVITE, UPDATE, INFO, ..."""
        request = event.request
        assert self.dialog is not None
        try:
            self.dialog.receive_request(request)
        except DialogError as exc:
            self.server.respond(event, make_response(request, exc.status, exc.reason))
            return
        method = request.method
        if method == "BYE":
            self.server.respond(event, make_response(request, 200))
            self._end(EndCause.NORMAL, by_remote=True)
        elif method in ("INVITE", "UPDATE") and request.body:
            if self._pending_offer is not None:
                # RFC 3261 §14.2: a second offer while one is pending gets 500 with Retry-After.
                self.server.respond(event, make_response(request, 500, headers=[("Retry-After", "1")]))
                return
            self._pending_offer = event
            self.remote_sdp = request.body
            self._emit(Offer(request.body))
        elif method == "INVITE":
            # An offerless re-INVITE asks us to offer (RFC 3264 §5): our current SDP serves.
            self._pending_offer = event
            self.accept_offer(self.local_sdp)
        elif method == "UPDATE":
            # An UPDATE without an offer (a session refresh, RFC 4028 §10) gets no SDP back:
            # an answer needs an offer (RFC 3311 §5.2).
            self._pending_offer = event
            self.accept_offer(b"")
        elif method == "REFER":
            self._on_refer(event)
        elif method in ("INFO", "OPTIONS", "NOTIFY"):
            self.server.respond(event, make_response(request, 200))
        else:
            self.server.respond(event, make_response(request, 501))

    # ------------------------------------------------------------- REFER (RFC 3515)

    def _on_refer(self, event: RequestReceived) -> None:
        request = event.request
        values = request.headers.get_all("Refer-To")
        if len(values) != 1:
            # RFC 3515 §2.4.1: exactly one Refer-To, else 400.
            self.server.respond(event, make_response(request, 400, "Bad Request: one Refer-To is required"))
            return
        try:
            target = NameAddr.parse(values[0]).uri
            if not isinstance(target, SipUri) or not target.user:
                raise SipParseError("Bad Request: Refer-To must be a sip: URI with a user")
            replaces = Replaces.parse(target.headers["Replaces"]) if "Replaces" in target.headers else None
        except SipParseError as exc:
            self.server.respond(event, make_response(request, 400, exc.reason))
            return
        if self._pending_refer is not None or self._refer_id is not None:
            # One transfer at a time on a leg: a second waits for the first to end (RFC 3261 §21.4.27).
            self.server.respond(event, make_response(request, 491))
            return
        self._pending_refer = event
        self._emit(Refer(target, replaces, request.headers.get("Referred-By") or ""))
        if self._pending_refer is not None:
            self.reject_refer(603)  # nobody took it up

    def accept_refer(self) -> None:
        """202 Accepted, then the first NOTIFY: "SIP/2.0 100 Trying" (RFC 3515 §2.4.5)."""
        event, self._pending_refer = self._pending_refer, None
        if event is None or self.dialog is None:
            return
        request = event.request
        # RFC 4488 §4: with `Refer-Sub: false` the referrer wants no NOTIFYs, and says so back.
        no_sub = (request.headers.get("Refer-Sub") or "").strip().lower() == "false"
        headers = [("Contact", self.layer.contact(event.source))]
        if no_sub:
            headers.append(("Refer-Sub", "false"))
        self.server.respond(event, make_response(request, 202, to_tag=self.dialog.id.local_tag, headers=headers))
        if not no_sub:
            self._refer_id = request.cseq.number
            self.notify_refer(100)

    def reject_refer(self, status: int, reason: str | None = None) -> None:
        event, self._pending_refer = self._pending_refer, None
        if event is not None:
            self.server.respond(event, make_response(event.request, status, reason))

    def notify_refer(self, status: int, reason: str | None = None, *,
                     on_done: Callable[[], None] | None = None) -> None:
        """Tell the referrer how the referred call goes: a message/sipfrag status line in a
        NOTIFY (RFC 3515 §2.4.5). A final status (>= 200) terminates the subscription (RFC 6665
        §4.2.2: Subscription-State terminated); `on_done` runs once that NOTIFY is answered or
        has failed — or at once when there is nobody to notify."""
        if self._refer_id is None or self.dialog is None or self.remote is None or self.state is LegState.ENDED:
            if on_done is not None:
                on_done()
            return
        final = status >= 200
        state = "terminated;reason=noresource" if final else f"active;expires={REFER_EXPIRES}"
        body = f"SIP/2.0 {status} {reason or REASON_PHRASES.get(status, 'Unknown')}\r\n".encode()
        notify = self.dialog.create_request(
            "NOTIFY", via=self.layer.via(self.remote), contact=self.layer.contact(self.remote),
            extra=[("Event", f"refer;id={self._refer_id}"), ("Subscription-State", state)],
            body=body, content_type="message/sipfrag;version=2.0")
        if final:
            self._refer_id = None

        def answered(event: ResponseReceived | TransactionTimeout) -> None:
            if isinstance(event, ResponseReceived):
                self.on_response(event)
            if on_done is not None:
                on_done()

        self.server.send_request(notify, self.remote, on_response=answered if final else None)

    def on_response(self, event: ResponseReceived | StrayResponse | TransactionTimeout) -> None:
        """Responses to in-dialog requests we sent (BYE, re-INVITE)."""
        if isinstance(event, (ResponseReceived, StrayResponse)) and self.dialog is not None:
            self.dialog.receive_response(event.response)


class InboundLeg(Leg):
    """The UAS side of an INVITE we received (the caller's leg of a call)."""

    _we_refresh = "uas"

    def __init__(self, layer: SessionLayer, event: RequestReceived) -> None:
        super().__init__(layer)
        self.invite = event
        self.request = event.request
        self.remote = event.source
        self.remote_sdp = event.request.body
        self.local_tag = generate_tag()
        self._retransmit: asyncio.TimerHandle | None = None
        self._answer: Response | None = None
        self._answered_at = 0.0
        self._answer_interval = T1
        #: RFC 4028: checked by the session layer before the INVITE got here.
        try:
            self.session_timer = SessionTimer.negotiate(event.request)
        except (SipParseError, SessionIntervalTooSmall):
            self.session_timer = None
        layer.adopt_invite(self)  # so a CANCEL finds this leg

    @property
    def caller(self) -> NameAddr:
        return self.request.from_addr

    @property
    def callee(self) -> Uri:
        return self.request.uri

    def ring(self, sdp: bytes = b"") -> None:
        """180 Ringing, or 183 Session Progress carrying early media when `sdp` is given."""
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        status = 183 if sdp else 180
        response = self._response(status, sdp)
        self.state = LegState.EARLY
        if self.dialog is None:
            self.dialog = Dialog.as_uas(self.request, response)
            self.layer.track(self)
        self.server.respond(self.invite, response)

    def answer(self, sdp: bytes) -> None:
        """200 OK with our SDP; retransmitted until the ACK comes (RFC 3261 §13.3.1.4)."""
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        response = self._response(200, sdp)
        self.local_sdp = sdp
        if self.dialog is None:
            self.dialog = Dialog.as_uas(self.request, response)
            self.layer.track(self)
        self.dialog.confirm()
        self.state = LegState.ANSWERED
        self._answer = response
        self.server.respond(self.invite, response)
        self._arm_expiry()
        # The retransmission state lives on the leg, not in a closure: a closure that re-arms
        # itself refers to itself, a cycle that only the garbage collector would free, and
        # with it the leg, its dialog and its messages.
        loop = asyncio.get_running_loop()
        self._answered_at = loop.time()
        self._answer_interval = T1
        if not self.remote or not self.remote.reliable:
            self._retransmit = loop.call_later(T1, self._retransmit_answer)
        else:
            self._retransmit = loop.call_later(ACK_WAIT, self._retransmit_answer)

    def _retransmit_answer(self) -> None:
        """RFC 3261 §13.3.1.4: the 2xx again, T1 doubling up to T2, until the ACK comes."""
        self._retransmit = None
        if self._answer is None or self.state is not LegState.ANSWERED:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._answered_at >= ACK_WAIT:
            # §13.3.1.4: no ACK within 64*T1: the session is dead; end it with BYE.
            self._answer = None
            self._send_bye()
            self._end(EndCause.FAILED, reason="no ACK for 2xx", by_remote=False)
            return
        self.server.respond(self.invite, self._answer)
        self._answer_interval = min(self._answer_interval * 2, T2)
        self._retransmit = loop.call_later(self._answer_interval, self._retransmit_answer)

    def reject(self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        self.server.respond(self.invite, make_response(self.request, status, reason, to_tag=self.local_tag,
                                                       headers=headers or []))
        cause = EndCause.BUSY if status in (486, 600) else EndCause.REJECTED
        self._end(cause, status, reason or "", by_remote=False)

    def hangup(self) -> None:
        if self.state in (LegState.CALLING, LegState.EARLY):
            self.reject(480 if self.state is LegState.CALLING else 487)
        elif self.state is LegState.ANSWERED:
            self._stop_retransmit()
            self._send_bye()
            self._end(EndCause.NORMAL, by_remote=False)

    def on_ack(self, ack: AckReceived) -> None:
        if self._answer is not None:
            self._stop_retransmit()
            self._answer = None
            self._emit(Confirmed())

    def on_cancel(self, event: RequestReceived) -> None:
        """RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE if still unanswered."""
        self.server.respond(event, make_response(event.request, 200, to_tag=self.local_tag))
        if self.state in (LegState.CALLING, LegState.EARLY):
            self.server.respond(self.invite, make_response(self.request, 487, to_tag=self.local_tag))
            self._end(EndCause.CANCELLED, 487, "Request Terminated", by_remote=True)

    def _stop_retransmit(self) -> None:
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None

    def _response(self, status: int, sdp: bytes) -> Response:
        headers = [("Contact", self.layer.contact(self.invite.source)),
                   ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY")]
        if status == 200 and self.session_timer is not None:
            # RFC 4028 §9: the 2xx states the interval and the refresher; Require: timer
            # because the caller is the one who must refresh.
            headers += [("Session-Expires", self.session_timer.header()), ("Require", "timer")]
        for rr in self.request.headers.get_all("Record-Route"):
            headers.append(("Record-Route", rr))  # RFC 3261 §12.1.1: copied into the response
        response = make_response(self.request, status, to_tag=self.local_tag, headers=headers, body=sdp)
        if sdp:
            response.headers.add("Content-Type", "application/sdp")
        return response

    def _end(self, cause: EndCause, status: int = 0, reason: str = "", *, by_remote: bool = True) -> None:
        self._stop_retransmit()
        super()._end(cause, status, reason, by_remote=by_remote)


class OutboundLeg(Leg):
    """The UAC side of an INVITE we send (towards the callee). It offers a session timer
    (RFC 4028) of `session_expires` seconds, None for none: a callee or provider that vanishes
    without a BYE then ends the leg within that time even if media keeps arriving from elsewhere."""

    _we_refresh = "uac"

    def __init__(self, layer: SessionLayer, *, target: Address, request_uri: Uri, from_addr: NameAddr,
                 to_addr: NameAddr, sdp: bytes, extra_headers: list[tuple[str, str]] | None = None,
                 auth: DigestClient | None = None,
                 session_expires: int | None = DEFAULT_SESSION_EXPIRES) -> None:
        super().__init__(layer)
        self.remote = target
        #: Answers the far end's 401/407 (a provider authenticating our calls on its trunk).
        self.auth = auth
        self.local_sdp = sdp
        self.local_tag = generate_tag()
        headers = Headers()
        headers.add("Via", layer.via(target))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(from_addr.uri, from_addr.display_name, {"tag": self.local_tag})))
        headers.add("To", str(NameAddr(to_addr.uri, to_addr.display_name, {})))
        # A fresh Call-ID per leg: nothing of the other leg's identifiers crosses the B2BUA.
        headers.add("Call-ID", generate_call_id(layer.local_host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", layer.contact(target))
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY")
        for name, value in [*(offer_headers(session_expires) if session_expires else []), *(extra_headers or [])]:
            headers.add(name, value)
        if sdp:
            headers.add("Content-Type", "application/sdp")
        self.request = Request("INVITE", request_uri, headers, sdp)
        self.transaction: ClientTransaction | None = None
        self._cancelled = False
        self._retried_interval = False

    def start(self) -> None:
        self.transaction = self.server.send_request(self.request, self.remote,  # type: ignore[arg-type]
                                                    on_response=self.on_response)

    def _resend(self, replace: dict[str, str], add: list[tuple[str, str]]) -> None:
        """The INVITE again after a 401/407 (RFC 3261 §22.2) or a 422 (RFC 4028 §7.4): same
        Call-ID, From tag and To, CSeq one higher (§8.1.3.5), a new branch since it is a new
        transaction; headers named in `replace` get the new value (an empty one drops them)."""
        old = self.request
        headers = Headers()
        for name, value in old.headers:
            if name == "Via":
                value = self.layer.via(self.remote)  # type: ignore[arg-type]
            elif name == "CSeq":
                value = f"{old.cseq.number + 1} INVITE"
            elif name in replace:
                value = replace[name]
                if not value:
                    continue
            headers.add(name, value)
        for name, value in add:
            headers.add(name, value)
        self.request = Request("INVITE", old.uri, headers, old.body)
        self.start()

    def cancel(self) -> None:
        """RFC 3261 §9.1: CANCEL an unanswered INVITE (only after a provisional response is
        strictly required; sending earlier is tolerated by every stack we meet and avoids a
        call that rings on after the caller hung up)."""
        if self.state not in (LegState.CALLING, LegState.EARLY) or self._cancelled:
            return
        self._cancelled = True
        headers = Headers()
        headers.add("Via", self.request.headers.get("Via") or "")  # same branch as the INVITE
        for route in self.request.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", self.request.headers.get("From") or "")
        headers.add("To", self.request.headers.get("To") or "")
        headers.add("Call-ID", self.request.call_id)
        headers.add("CSeq", f"{self.request.cseq.number} CANCEL")
        cancel = Request("CANCEL", self.request.uri, headers)
        self.server.send_request(cancel, self.remote, on_response=self.on_response)  # type: ignore[arg-type]

    def hangup(self) -> None:
        if self.state in (LegState.CALLING, LegState.EARLY):
            self.cancel()
            self._end(EndCause.CANCELLED, by_remote=False)
        elif self.state is LegState.ANSWERED:
            self._send_bye()
            self._end(EndCause.NORMAL, by_remote=False)

    def on_response(self, event: ResponseReceived | StrayResponse | TransactionTimeout) -> None:
        if isinstance(event, TransactionTimeout):
            if event.transaction is self.transaction and self.state in (LegState.CALLING, LegState.EARLY):
                self._end(EndCause.NO_ANSWER if self.state is LegState.EARLY else EndCause.FAILED,
                          408, "Request Timeout")
            return
        response = event.response
        if response.cseq.method != "INVITE" or response.cseq.number != self.request.cseq.number:
            super().on_response(event)
            return
        status = response.status
        if status < 200:
            if status > 100 and response.to_addr.tag and self.state is not LegState.ENDED:
                if self.dialog is None:
                    self.dialog = Dialog.as_uac(self.request, response)
                    self.layer.track(self)
                self.state = LegState.EARLY
                if response.body:
                    self.remote_sdp = response.body
                self._emit(Progress(status, response.body))
            return
        if status < 300:
            self._on_2xx(response)
            return
        if self.state is LegState.ENDED:
            return
        if status in (401, 407) and self.auth is not None and not self._cancelled and self.dialog is None:
            # The INVITE transaction ACKed the challenge itself (§17.1.1.3). Answered once per
            # challenge: a second one to our credentials (not stale) means they are wrong.
            credentials = self.auth.answer(response, "INVITE", str(self.request.uri))
            if credentials is not None:
                self._resend({"Authorization": "", "Proxy-Authorization": ""}, credentials)
                return
        if status == 422 and not self._retried_interval and not self._cancelled and self.dialog is None:
            # RFC 4028 §7.4: our interval is below the callee's minimum: once more with its Min-SE.
            min_se = min_se_of(response)
            if min_se is not None and self.request.headers.get("Session-Expires") is not None:
                self._retried_interval = True
                self._resend({"Session-Expires": str(min_se), "Min-SE": str(min_se)}, [])
                return
        if status in (486, 600):
            cause = EndCause.BUSY
        elif status in (408, 480, 487):
            cause = EndCause.CANCELLED if self._cancelled else EndCause.NO_ANSWER
        else:
            cause = EndCause.REJECTED
        self._end(cause, status, response.reason)

    def _on_2xx(self, response: Response) -> None:
        """ACK every 2xx (retransmissions too: §13.2.2.4); the first one answers the leg. A 2xx
        that races our CANCEL or hang-up is ACKed and at once ended with BYE."""
        if self.dialog is None or self.dialog.id.remote_tag != (response.to_addr.tag or ""):
            if self.dialog is not None:
                # A second fork answered (§13.2.2.4): confirm and end that dialog at once.
                other = Dialog.as_uac(self.request, response)
                self._ack(other)
                other_bye = other.create_request("BYE", via=self.layer.via(self.remote))  # type: ignore[arg-type]
                self.server.send_request(other_bye, self.remote)  # type: ignore[arg-type]
                return
            self.dialog = Dialog.as_uac(self.request, response)
            self.layer.track(self)
        self.dialog.receive_response(response)
        self._ack(self.dialog)
        if self.state in (LegState.CALLING, LegState.EARLY):
            if self._cancelled:
                self._send_bye()
                self._end(EndCause.CANCELLED, by_remote=False)
                return
            self.state = LegState.ANSWERED
            self.remote_sdp = response.body or self.remote_sdp
            self.session_timer = SessionTimer.from_answer(response)
            self._arm_expiry()
            self._emit(Answered(self.remote_sdp))

    def _ack(self, dialog: Dialog) -> None:
        ack = dialog.create_request("ACK", via=self.layer.via(self.remote))  # type: ignore[arg-type]
        self.server.send_stateless(ack.to_bytes(), self.remote)  # type: ignore[arg-type]

