"""INVITE sessions (RFC 3261 §13-15): the signalling half of a B2BUA call leg.

`SessionLayer` sits between the SIP server and the legs: it routes in-dialog requests, CANCELs
and responses to the leg they belong to, and hands new INVITEs to whoever accepts calls. The
legs themselves (`InboundLeg`, the UAS side of an INVITE we received; `OutboundLeg`, the UAC
side of one we send) are in `sipstack.legs`, what they report (`LegEvent`) in
`sipstack.leg_events`; this module is the one name the layers above import them by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sipstack import session_timer
from sipstack.addressing import Address, Transport
from sipstack.errors import SipParseError
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
from sipstack.legs import ACK_WAIT, REFER_EXPIRES, InboundLeg, Leg, OutboundLeg
from sipstack.message import Request, Response, generate_branch, generate_tag, make_response
from sipstack.session_timer import SESSION_EXPIRED, SessionIntervalTooSmall, SessionTimer
from sipstack.transaction_layer import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTimeout,
)
from sipstack.uri import SipUri

if TYPE_CHECKING:
    from sipstack.server import SipServer

# The leg classes and events live in sipstack.legs and sipstack.leg_events; callers import them
# from here, the one name for INVITE sessions.
__all__ = [
    "ACK_WAIT", "REFER_EXPIRES", "SESSION_EXPIRED",
    "Answered", "Confirmed", "EndCause", "Ended", "InboundLeg", "Leg", "LegEvent", "LegState",
    "Listener", "Offer", "OutboundLeg", "Progress", "Refer", "Replaces", "SessionLayer",
]


class SessionLayer:
    """Routes INVITE-session traffic between the SIP server and the legs."""

    def __init__(self, server: SipServer, local_host: str, ports: dict[str, int],
                 on_invite: Callable[[RequestReceived], None]) -> None:
        self.server = server
        self.local_host = local_host
        self.ports = ports
        self.on_invite = on_invite
        self._dialogs: dict[tuple[str, str, str], Leg] = {}
        self._invites: dict[int, InboundLeg] = {}
        self._contacts: dict[tuple[Transport, str, int | None], str] = {}
        server.request_handler = self._on_request
        server.response_handler = self._on_response
        server.ack_handler = self._on_ack

    # ------------------------------------------------------------- addressing

    def via(self, towards: Address) -> str:
        transport = towards.transport
        port = self.ports.get(f"sip_{transport.value}") or self.ports.get("sip_udp")
        return f"SIP/2.0/{transport.via_name} {self.local_host}:{port};branch={generate_branch()};rport"

    def contact(self, towards: Address) -> str:
        transport = towards.transport
        port = self.ports.get(f"sip_{transport.value}") or self.ports.get("sip_udp")
        key = (transport, self.local_host, port)
        contact = self._contacts.get(key)
        if contact is None:
            # The same few values serve every call: written once per transport and port.
            uri = SipUri("sip", "callcenter", None, self.local_host, port,
                         {} if transport.value == "udp" else {"transport": transport.value})
            contact = self._contacts[key] = f"<{uri}>"
        return contact

    # ------------------------------------------------------------- bookkeeping

    def track(self, leg: Leg) -> None:
        assert leg.dialog is not None
        d = leg.dialog.id
        self._dialogs[(d.call_id, d.local_tag, d.remote_tag)] = leg

    def adopt_invite(self, leg: InboundLeg) -> None:
        self._invites[id(leg.invite.transaction)] = leg

    def forget(self, leg: Leg) -> None:
        """A leg ended: later requests in its dialog get 481. The INVITE client transaction
        stays mapped until its final response, so a 2xx racing our CANCEL is still ACKed
        and ended with BYE."""
        if isinstance(leg, InboundLeg):
            self._invites.pop(id(leg.invite.transaction), None)
        self._drop(leg)

    def __len__(self) -> int:
        return len(self._dialogs)

    def find_dialog(self, call_id: str, tag: str, other_tag: str) -> Leg | None:
        """The leg of a dialog named by its Call-ID and two tags in either order (a Replaces
        names them as its sender sees them, RFC 3891 §3)."""
        return self._dialogs.get((call_id, tag, other_tag)) or self._dialogs.get((call_id, other_tag, tag))

    # ------------------------------------------------------------- events from the server

    def _find(self, message: Request | Response, inbound: bool) -> Leg | None:
        if inbound and isinstance(message, Request):
            key = (message.call_id, message.to_addr.tag or "", message.from_addr.tag or "")
        else:
            key = (message.call_id, message.from_addr.tag or "", message.to_addr.tag or "")
        return self._dialogs.get(key)

    def _on_request(self, server: SipServer, event: RequestReceived) -> None:
        request = event.request
        if request.method == "CANCEL":
            tx = server.transactions.find_invite_for_cancel(request)
            leg = self._invites.get(id(tx)) if tx is not None else None
            if leg is None:
                server.respond(event, make_response(request, 481, to_tag=generate_tag()))
                return
            leg.on_cancel(event)
            return
        if request.to_addr.tag:
            leg = self._find(request, inbound=True)
            if leg is None or leg.dialog is None:
                server.respond(event, make_response(request, 481))
                return
            leg.on_in_dialog(event)
            return
        if request.method == "INVITE":
            try:
                SessionTimer.negotiate(request)
            except SessionIntervalTooSmall:
                # RFC 4028 §9: 422 with our minimum; the caller retries with at least that.
                server.respond(event, make_response(request, 422, to_tag=generate_tag(),
                                                    headers=[("Min-SE", str(session_timer.MIN_SE))]))
                return
            except SipParseError as exc:
                server.respond(event, make_response(request, exc.status, exc.reason, to_tag=generate_tag()))
                return
            self.on_invite(event)
            return
        status = 501 if request.method not in ("BYE", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY") else 481
        server.respond(event, make_response(request, status, to_tag=generate_tag()))

    def _on_ack(self, event: AckReceived) -> None:
        leg = self._find(event.request, inbound=True)
        if isinstance(leg, InboundLeg):
            leg.on_ack(event)

    def _on_response(self, event: ResponseReceived | StrayResponse | TransactionTimeout) -> None:
        """Responses no sender asked for by callback: to in-dialog requests (BYE), and 2xx
        retransmitted after the INVITE's first final response. Found by dialog."""
        if isinstance(event, TransactionTimeout):
            return
        leg = self._find(event.response, inbound=False)
        if leg is not None:
            leg.on_response(event)

    def _drop(self, leg: Leg) -> None:
        if leg.dialog is not None:
            d = leg.dialog.id
            self._dialogs.pop((d.call_id, d.local_tag, d.remote_tag), None)


