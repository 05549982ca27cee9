"""Registrar (RFC 3261 §10.3) and location service, sans-IO.

`Registrar.process` decides a REGISTER against the bindings in memory and returns the response
plus the changes to persist; the owner applies them to the store (see `registrar_store`).
Bindings remember the flow the REGISTER came over (RFC 5626): requests for a phone behind NAT,
or a browser whose Contact host is `*.invalid` (RFC 7118), go back over that same flow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from sipstack.addressing import Address, Transport
from sipstack.errors import SipParseError
from sipstack.message import Request, Response, make_response
from sipstack.uri import NameAddr, SipUri, parse_uri

# A phone registers a handful of contacts (desk phone, softphone, mobile); more than this for
# one AOR is a misconfiguration or an attack filling memory.
MAX_CONTACTS_PER_AOR = 10


@dataclass
class Binding:
    aor: str
    #: The Contact as registered (name-addr with its params, less `expires`).
    contact: str
    #: Its URI alone, canonical: the key that identifies the binding within the AOR (§10.3).
    contact_uri: str
    expires_at: float  # wall-clock seconds since the epoch, so it survives a restart
    call_id: str
    cseq: int
    source: Address
    instance: str | None = None
    reg_id: str | None = None
    user_agent: str = ""
    #: A NAT sits between the phone and us: it claims (Via, Contact) one address but its packets
    #: come from another. Requests then go to the address packets came from.
    nat: bool = False

    def expires_in(self, now: float) -> int:
        return max(0, int(round(self.expires_at - now)))

    def target(self) -> Address:
        """Where requests for this binding go. Over a live connection: that connection (RFC 5626).
        Behind NAT: the address its packets came from (RFC 3581's logic, applied to requests).
        Otherwise: the Contact itself, which also serves third-party registrations."""
        if self.source.flow is not None or self.nat:
            return self.source
        uri = parse_uri(self.contact_uri)
        if not isinstance(uri, SipUri):
            return self.source
        transport = uri.params.get("transport") or ("tls" if uri.scheme == "sips" else "udp")
        try:
            kind = Transport(transport.lower())
        except ValueError:
            return self.source
        if kind.reliable and kind not in (Transport.TCP, Transport.TLS):
            return self.source  # a WebSocket client is reachable only over its socket
        default = 5061 if kind is Transport.TLS else 5060
        return Address(kind, uri.host, uri.port or default)


@dataclass
class RegistrarDecision:
    response: Response
    #: Bindings written (inserted or refreshed) and removed by this REGISTER, for the store.
    upserted: list[Binding] = field(default_factory=list)
    removed: list[Binding] = field(default_factory=list)


@dataclass
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


class Registrar:
    def __init__(self, policy: RegistrarPolicy) -> None:
        self.policy = policy
        self._bindings: dict[str, list[Binding]] = {}

    # ------------------------------------------------------------- location service

    def load(self, bindings: list[Binding]) -> None:
        for b in bindings:
            self._bindings.setdefault(b.aor, []).append(b)

    def lookup(self, aor: str, now: float | None = None) -> list[Binding]:
        """Live bindings of an AOR, most recently registered first."""
        now = time.time() if now is None else now
        live = [b for b in self._bindings.get(aor, []) if b.expires_at > now]
        return sorted(live, key=lambda b: b.expires_at, reverse=True)

    def expire(self, now: float) -> list[Binding]:
        """Drop bindings whose time ran out; returns them for the store."""
        gone: list[Binding] = []
        for aor in list(self._bindings):
            keep = []
            for b in self._bindings[aor]:
                (keep if b.expires_at > now else gone).append(b)
            if keep:
                self._bindings[aor] = keep
            else:
                del self._bindings[aor]
        return gone

    def drop_flow(self, flow: int) -> list[Binding]:
        """A connection closed. Bindings that can only be reached over it end with it: RFC 5626
        §5.2 outbound registrations (with reg-id) and WebSocket clients (RFC 7118 §5: their
        Contact is unreachable). A plain TCP/TLS phone stays registered; requests to it open a
        new connection to its Contact."""
        gone: list[Binding] = []
        for aor in list(self._bindings):
            keep = []
            for b in self._bindings[aor]:
                if b.source.flow != flow:
                    keep.append(b)
                elif b.reg_id is not None or b.source.transport in (Transport.WS, Transport.WSS):
                    gone.append(b)
                else:
                    keep.append(replace(b, source=replace(b.source, flow=None)))
            if keep:
                self._bindings[aor] = keep
            else:
                del self._bindings[aor]
        return gone

    @property
    def aor_count(self) -> int:
        return len(self._bindings)

    @property
    def binding_count(self) -> int:
        return sum(len(v) for v in self._bindings.values())

    # ------------------------------------------------------------- REGISTER

    def process(self, request: Request, aor: str, source: Address, now: float,
                to_tag: str) -> RegistrarDecision:
        """RFC 3261 §10.3 steps 6-8 for an authenticated, authorised REGISTER of `aor`."""
        try:
            return self._process(request, aor, source, now, to_tag)
        except SipParseError as exc:
            return RegistrarDecision(make_response(request, exc.status, exc.reason, to_tag=to_tag))

    def _process(self, request: Request, aor: str, source: Address, now: float, to_tag: str) -> RegistrarDecision:
        header_expires = request.expires
        call_id, cseq = request.call_id, request.cseq.number
        current = {b.contact_uri: b for b in self._bindings.get(aor, []) if b.expires_at > now}
        decision = RegistrarDecision(make_response(request, 200, to_tag=to_tag))
        contacts_raw = request.headers.get_all("Contact")

        if request.is_wildcard_contact:
            # §10.3 step 6: "*" only with Expires: 0 and as the only Contact.
            if header_expires != 0 or len(contacts_raw) != 1:
                return self._reject(request, 400, "Bad Request: Contact * needs Expires: 0 and no other Contact", to_tag)
            for b in current.values():
                if b.call_id == call_id and cseq <= b.cseq:
                    return self._reject(request, 500, "Server Internal Error: out-of-order REGISTER", to_tag)
            decision.removed = list(current.values())
            current = {}
        else:
            for contact, raw in zip(request.contacts, request.headers.get_all("Contact"), strict=True):
                expires = self._expires_for(contact, header_expires)
                if 0 < expires < self.policy.min_expires:
                    # §10.3 step 7: too brief: tell the client the least we accept.
                    response = make_response(request, 423, to_tag=to_tag,
                                             headers=[("Min-Expires", str(self.policy.min_expires))])
                    return RegistrarDecision(response)
                expires = min(expires, self.policy.max_expires)
                uri = str(contact.uri)
                existing = current.get(uri)
                if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                    return self._reject(request, 500, "Server Internal Error: out-of-order REGISTER", to_tag)
                if expires == 0:
                    if existing is not None:
                        decision.removed.append(current.pop(uri))
                    continue
                binding = Binding(
                    aor=aor,
                    contact=raw.strip() if "expires" not in contact.params else
                    str(replace(contact, params={k: v for k, v in contact.params.items() if k != "expires"})),
                    contact_uri=uri,
                    expires_at=now + expires,
                    call_id=call_id,
                    cseq=cseq,
                    source=source,
                    instance=contact.params.get("+sip.instance"),
                    reg_id=contact.params.get("reg-id"),
                    user_agent=(request.headers.get("User-Agent") or "")[:200],
                    nat=_behind_nat(request, contact, source),
                )
                current[uri] = binding
                decision.upserted.append(binding)
            if len(current) > MAX_CONTACTS_PER_AOR:
                return self._reject(request, 403, f"Forbidden: more than {MAX_CONTACTS_PER_AOR} contacts", to_tag)

        if current:
            self._bindings[aor] = list(current.values())
        else:
            self._bindings.pop(aor, None)
        # §10.3 step 8: the 200 lists every current binding with its remaining time.
        for b in sorted(current.values(), key=lambda b: b.expires_at):
            decision.response.headers.add("Contact", f"{b.contact};expires={b.expires_in(now)}")
        decision.response.headers.add("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
        return decision

    def _expires_for(self, contact: NameAddr, header_expires: int | None) -> int:
        raw = contact.params.get("expires")
        if raw is not None:
            try:
                return max(0, int(raw))
            except ValueError:
                raise SipParseError(f"Bad Request: Contact expires={raw!r} is not a number") from None
        if header_expires is not None:
            return max(0, header_expires)
        return self.policy.default_expires

    @staticmethod
    def _reject(request: Request, status: int, reason: str, to_tag: str) -> RegistrarDecision:
        return RegistrarDecision(make_response(request, status, reason, to_tag=to_tag))



def _behind_nat(request: Request, contact: NameAddr, source: Address) -> bool:
    """The phone's own view (top Via sent-by and Contact agree) differs from where its packets
    come from: something rewrote the address on the way. A Contact that differs from the Via
    is a registration on someone else's behalf, not NAT."""
    uri = contact.uri
    if not isinstance(uri, SipUri):
        return False
    via = request.top_via
    claimed = (via.host, via.port or 5060)
    if (uri.host, uri.port or 5060) != claimed:
        return False
    return (source.host, source.port) != claimed
