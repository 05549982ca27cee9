"""Dialogs (RFC 3261 §12), sans-IO: the state two user agents share for a call — identifiers,
route set, remote target and CSeq counters — and the in-dialog requests built from it.

The B2BUA keeps one dialog per call leg; a dialog never leaks into the other leg (its own
Call-ID, tags and CSeq space), which is what keeps internal details from crossing over.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from sipstack.errors import SipParseError
from sipstack.headers import Headers
from sipstack.message import Request, Response
from sipstack.uri import NameAddr, SipUri, Uri


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class DialogId:
    """RFC 3261 §12: Call-ID plus local and remote tags, from this side's point of view."""

    call_id: str
    local_tag: str
    remote_tag: str


class DialogError(Exception):
    """An in-dialog request that must be refused, with the status to answer (RFC 3261 §12.2.2)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# Methods that refresh the remote target when they carry a Contact (RFC 3261 §12.2, RFC 3311 §5.1,
# RFC 3265 §3.2.6 for NOTIFY).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "NOTIFY", "SUBSCRIBE"})
# Requests that must carry a Contact: the target refreshers, and REFER (RFC 3515 §2.4.1).
CARRIES_CONTACT = TARGET_REFRESH | {"REFER"}


@dataclass
class Dialog:
    id: DialogId
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: list[NameAddr]
    local_seq: int
    remote_seq: int | None
    secure: bool = False
    state: DialogState = DialogState.EARLY
    #: CSeq number of the INVITE that created (or last re-INVITEd) the dialog, for its ACK.
    invite_seq: int = field(default=0)

    # ------------------------------------------------------------- creation

    @classmethod
    def as_uas(cls, request: Request, response: Response) -> Dialog:
        """RFC 3261 §12.1.1: the dialog a UAS enters when it answers `request` with a 101-299
        that carries its To tag."""
        local_tag = response.to_addr.tag
        remote_tag = request.from_addr.tag
        if not local_tag:
            raise ValueError("a dialog-creating response needs a To tag")
        contacts = request.contacts
        if not contacts:
            raise SipParseError("Bad Request: a dialog-creating request needs a Contact")
        routes = [NameAddr.parse(v) for v in request.headers.get_all("Record-Route")]
        return cls(
            id=DialogId(request.call_id, local_tag, remote_tag or ""),
            local_uri=_without_tag(request.to_addr),
            remote_uri=_without_tag(request.from_addr),
            remote_target=contacts[0].uri,
            route_set=routes,
            local_seq=secrets.randbelow(2**31 // 2),
            remote_seq=request.cseq.number,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            invite_seq=request.cseq.number,
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """RFC 3261 §12.1.2: the dialog a UAC enters on a 101-299 with a To tag. The route set
        is the response's Record-Route in reverse."""
        remote_tag = response.to_addr.tag
        if not remote_tag:
            raise ValueError("a dialog-creating response needs a To tag")
        contacts = response.contacts
        target: Uri = contacts[0].uri if contacts else request.uri
        routes = [NameAddr.parse(v) for v in response.headers.get_all("Record-Route")]
        routes.reverse()
        return cls(
            id=DialogId(request.call_id, request.from_addr.tag or "", remote_tag),
            local_uri=_without_tag(request.from_addr),
            remote_uri=_without_tag(request.to_addr),
            remote_target=target,
            route_set=routes,
            local_seq=request.cseq.number,
            remote_seq=None,
            secure=isinstance(request.uri, SipUri) and request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY,
            invite_seq=request.cseq.number,
        )

    # ------------------------------------------------------------- inbound

    def receive_request(self, request: Request) -> None:
        """Check and absorb an in-dialog request (RFC 3261 §12.2.2)."""
        if self.state is DialogState.TERMINATED:
            raise DialogError(481, "Call/Transaction Does Not Exist")
        number = request.cseq.number
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and number <= self.remote_seq:
                # Lower (or a repeat the transaction layer did not absorb): out of order.
                raise DialogError(500, "Server Internal Error: CSeq out of order")
            self.remote_seq = number
        if request.method in TARGET_REFRESH:
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri
        if request.method == "INVITE":
            self.invite_seq = number
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    def receive_response(self, response: Response) -> None:
        """Absorb a response to a request we sent in this dialog: a 2xx to INVITE confirms an
        early dialog and may refresh the target; 481/408 end it (RFC 3261 §12.2.1.2)."""
        method = response.cseq.method
        if 200 <= response.status < 300 and method in TARGET_REFRESH:
            contacts = response.contacts
            if contacts:
                self.remote_target = contacts[0].uri
            if method == "INVITE":
                self.state = DialogState.CONFIRMED
        elif response.status in (481, 408) and self.state is not DialogState.TERMINATED:
            self.state = DialogState.TERMINATED

    def confirm(self) -> None:
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    # ------------------------------------------------------------- outbound

    def create_request(self, method: str, *, via: str, contact: str | None = None,
                       extra: list[tuple[str, str]] | None = None, body: bytes = b"",
                       content_type: str | None = None) -> Request:
        """An in-dialog request (RFC 3261 §12.2.1.1). ACK reuses the INVITE's CSeq number
        (§13.2.2.4); every other method takes the next local CSeq. `via` is the full Via value
        with a fresh branch, which only the transport side can write."""
        if method == "ACK":
            number = self.invite_seq
        else:
            self.local_seq += 1
            number = self.local_seq
            if method == "INVITE":
                self.invite_seq = number
        request_uri, routes = self._request_target()
        headers = Headers()
        headers.add("Via", via)
        for route in routes:
            headers.add("Route", str(route))
        headers.add("Max-Forwards", "70")
        headers.add("From", _with_tag(self.local_uri, self.id.local_tag))
        headers.add("To", _with_tag(self.remote_uri, self.id.remote_tag))
        headers.add("Call-ID", self.id.call_id)
        headers.add("CSeq", f"{number} {method}")
        if contact is not None and method in CARRIES_CONTACT:
            headers.add("Contact", contact)
        for name, value in extra or []:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return Request(method, request_uri, headers, body)

    def _request_target(self) -> tuple[Uri, list[NameAddr]]:
        """RFC 3261 §12.2.1.1: loose routing when the first route has `lr`; otherwise the
        strict-routing form with the first route as Request-URI and the target appended."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        return first.uri, [*self.route_set[1:], NameAddr(self.remote_target, None, {})]

    def matches(self, message: Request | Response, *, inbound: bool = True) -> bool:
        """Does this message belong to the dialog? Inbound requests carry our tag in To."""
        if message.call_id != self.id.call_id:
            return False
        if isinstance(message, Request) and inbound:
            return message.to_addr.tag == self.id.local_tag and (message.from_addr.tag or "") == self.id.remote_tag
        return message.from_addr.tag == self.id.local_tag and (message.to_addr.tag or "") == self.id.remote_tag


def _without_tag(addr: NameAddr) -> NameAddr:
    return NameAddr(addr.uri, addr.display_name, {k: v for k, v in addr.params.items() if k != "tag"})


def _with_tag(addr: NameAddr, tag: str) -> str:
    if not tag:
        return str(addr)
    return str(NameAddr(addr.uri, addr.display_name, {**addr.params, "tag": tag}))
