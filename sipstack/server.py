"""The SIP server: every incoming message passes through here on its way up.

Per message: flood guard (by packet source only) → parser → request checks → transaction
layer → the transaction user: REGISTER to the registrar, OPTIONS answered, everything else to
the handler the layer above installs (the B2BUA). Timers of all transactions are one
`loop.call_at` that is re-armed to the earliest deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sipstack.addressing import Address
from sipstack.auth import AuthResult, DigestAlgorithm, DigestAuthenticator, DigestCredentials, NonceManager
from sipstack.errors import SipParseError
from sipstack.headers import Headers
from sipstack.message import Request, Response, generate_tag, make_response, parse_message
from sipstack.registrar import Registrar, RegistrarPolicy
from sipstack.registrar_store import BindingStore
from sipstack.security import FloodGuard, SecurityEvent, SecurityPolicy
from sipstack.transaction import ClientTransaction, Send
from sipstack.transaction_layer import (
    AckReceived,
    Output,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
    response_destination,
    stamp_via,
)
from sipstack.uri import SipUri
from sipstack.validate import check_request

log = logging.getLogger(__name__)
trace = logging.getLogger("sipstack.trace")
security_log = logging.getLogger("callcenter.security")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE, REFER, NOTIFY"
ACCEPT = "application/sdp"
#: Option tags we implement (RFC 3261 §19.2): `path` (RFC 3327) and `outbound` (RFC 5626) for
#: clients behind connections, `replaces` (RFC 3891) and `timer` (RFC 4028) for calls.
SUPPORTED = ("path", "outbound", "replaces", "timer")


@dataclass
class ServerSettings:
    realm: str = "callcenter"
    user_agent: str = "callcenter/0.1"
    nonce_lifetime: float = 300.0
    nonce_secret: bytes = b""
    digest_algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5)


#: Looks up the digest password of a SIP account (an extension); None when there is none.
SecretLookup = Callable[[str], "str | None"]
#: Handles a request that is not REGISTER/OPTIONS (calls); installed by the layer above.
RequestHandler = Callable[["SipServer", RequestReceived], None]
#: What a client transaction reports to whoever sent its request.
ClientEvent = ResponseReceived | TransactionTimeout
ResponseCallback = Callable[[ClientEvent], None]


class SipServer:
    def __init__(self, settings: ServerSettings, security: SecurityPolicy, registrar: RegistrarPolicy,
                 secrets: SecretLookup, store: BindingStore | None = None) -> None:
        self.settings = settings
        self.transactions = TransactionLayer()
        self.registrar = Registrar(registrar)
        self.guard = FloodGuard(security, on_event=self._security_event)
        nonces = NonceManager(settings.nonce_secret or _random_secret(), settings.nonce_lifetime)
        self.auth = DigestAuthenticator(settings.realm, nonces, settings.digest_algorithms)
        self.secrets = secrets
        self.store = store
        self.request_handler: RequestHandler | None = None
        self.response_handler: Callable[[ResponseReceived | StrayResponse | TransactionTimeout], None] | None = None
        self.ack_handler: Callable[[AckReceived], None] | None = None
        #: Per client transaction (by key), who gets its responses until the final one.
        self._callbacks: dict[str, ResponseCallback] = {}
        self.counters: Counter[str] = Counter()
        self._senders: dict[str, Callable[[bytes, Address], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------- wiring

    def attach(self, loop: asyncio.AbstractEventLoop, sender: Callable[[bytes, Address], None]) -> None:
        """`sender` puts bytes on the wire towards an Address (the transport manager)."""
        self._loop = loop
        self._send_bytes = sender

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ------------------------------------------------------------- inbound

    def on_message(self, data: bytes, source: Address) -> None:
        now = self.now()
        if not self.guard.admit(source.host, now):
            self.counters["dropped_banned"] += 1
            return  # banned sources get no answer at all
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("recv %s %d bytes\n%s", source, len(data), data.decode("utf-8", "replace"))
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.counters["parse_errors"] += 1
            log.info("malformed message from %s: %s", source, exc.reason)
            self._reject_unparsable(data, exc, source)
            return
        if isinstance(message, Request):
            self.counters[f"rx_{message.method}"] += 1
            rejection = check_request(message, supported=SUPPORTED)
            if rejection is not None:
                if message.method != "ACK":
                    self.counters["tx_error_responses"] += 1
                    stamp_via(rejection, source)
                    self._add_to_tag(rejection)
                    self._send_bytes(rejection.to_bytes(), response_destination(message, source))
                return
        else:
            self.counters["rx_response"] += 1
        self._process(self.transactions.receive(message, source, now))

    def flow_closed(self, address: Address) -> None:
        if address.flow is not None and self.store is not None:
            gone = self.registrar.drop_flow(address.flow)
            if gone:
                self.store.save([], gone)

    # ------------------------------------------------------------- outbound API for the TU

    def respond(self, event: RequestReceived, response: Response) -> None:
        if "Server" not in response.headers:
            response.headers.add("Server", self.settings.user_agent)
        self._process(self.transactions.respond(event.transaction, response, self.now()))

    def send_request(self, request: Request, destination: Address,
                     on_response: ResponseCallback | None = None) -> ClientTransaction:
        """Send `request` in a new client transaction. With `on_response`, that transaction's
        responses and its timeout go there instead of to `response_handler`: every provisional
        and the first final response (or the timeout). Later retransmitted 2xx of an INVITE
        (RFC 6026 §8.4) go to `response_handler`, which finds the dialog."""
        tx, out = self.transactions.send_request(request, destination, self.now())
        if on_response is not None:
            self._callbacks[tx.key] = on_response
        self._process(out)
        return tx

    def send_stateless(self, data: bytes, destination: Address) -> None:
        self._send_bytes(data, destination)

    # ------------------------------------------------------------- internals

    def _process(self, out: Output) -> None:
        for send in out.sends:
            self._emit(send)
        for event in out.events:
            try:
                self._dispatch(event)
            except Exception:
                log.exception("handler failed on %s", type(event).__name__)
                if isinstance(event, RequestReceived) and not event.transaction.terminated:
                    try:
                        self.respond(event, make_response(event.request, 500, to_tag=generate_tag()))
                    except Exception:
                        pass
        for tx in out.trying:
            # After the TU had the INVITE: a 407 or a 486 it sent at once makes the 100 needless.
            self._process(self.transactions.send_trying(tx, self.now()))
        self._arm_timer()

    def _emit(self, send: Send) -> None:
        if trace.isEnabledFor(logging.DEBUG):
            trace.debug("send %s %d bytes\n%s", send.destination, len(send.data),
                        send.data.decode("utf-8", "replace"))
        self._send_bytes(send.data, send.destination)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            method = event.request.method
            if method == "REGISTER":
                self._on_register(event)
            elif method == "OPTIONS" and (event.request.to_addr.tag is None):
                self._on_options(event)
            elif self.request_handler is not None:
                self.request_handler(self, event)
            else:
                status = 480 if method in ("INVITE", "MESSAGE", "SUBSCRIBE") else 481
                if method not in ALLOW and method not in ("MESSAGE", "SUBSCRIBE"):
                    status = 501
                self.respond(event, make_response(event.request, status, to_tag=generate_tag()))
        elif isinstance(event, AckReceived):
            if self.ack_handler is not None:
                self.ack_handler(event)
        elif isinstance(event, (ResponseReceived, TransactionTimeout)) and isinstance(
                event.transaction, ClientTransaction) and event.transaction.key in self._callbacks:
            key = event.transaction.key
            callback = self._callbacks[key]
            if isinstance(event, TransactionTimeout) or event.response.status >= 200:
                del self._callbacks[key]
            callback(event)
        elif isinstance(event, (ResponseReceived, StrayResponse, TransactionTimeout)):
            if self.response_handler is not None:
                self.response_handler(event)

    def _arm_timer(self) -> None:
        deadline = self.transactions.next_deadline
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._process(self.transactions.on_timer(self.now()))

    # ------------------------------------------------------------- REGISTER, OPTIONS

    def authenticate(self, event: RequestReceived, *, proxy: bool = False) -> str | None:
        """Digest-authenticate a request (RFC 3261 §22). Returns the authenticated username, or
        None after answering the request with the challenge or refusal it deserves."""
        request = event.request
        now = self.now()
        header = "Proxy-Authorization" if proxy else "Authorization"
        challenge_status = 407 if proxy else 401
        for value in request.headers.get_all(header):
            try:
                credentials = DigestCredentials.parse(value)
            except SipParseError as exc:
                self.respond(event, make_response(request, 400, exc.reason, to_tag=generate_tag()))
                return None
            if credentials.realm != self.settings.realm:
                continue  # credentials for another hop (RFC 3261 §22.3)
            secret = self.secrets(credentials.username)
            result = self.auth.verify(credentials, method=request.method, password=secret, now=now)
            if result is AuthResult.OK:
                return credentials.username
            if result is AuthResult.STALE:
                self._challenge(event, challenge_status, stale=True)
                return None
            self.counters["auth_failures"] += 1
            self.guard.auth_failed(event.source.host, now, detail=credentials.username)
            self.respond(event, make_response(request, 403, "Forbidden: wrong user name or password",
                                              to_tag=generate_tag()))
            return None
        self._challenge(event, challenge_status, stale=False)
        return None

    def _challenge(self, event: RequestReceived, status: int, *, stale: bool) -> None:
        name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
        headers = [(name, value) for value in self.auth.challenge_headers(self.now(), stale=stale)]
        self.respond(event, make_response(event.request, status, to_tag=generate_tag(), headers=headers))

    def _on_register(self, event: RequestReceived) -> None:
        request = event.request
        to_uri = request.to_addr.uri
        if not isinstance(to_uri, SipUri) or not to_uri.user:
            self.respond(event, make_response(request, 404, "Not Found: To must be a sip: URI with a user",
                                              to_tag=generate_tag()))
            return
        username = self.authenticate(event)
        if username is None:
            return
        if username != to_uri.user:
            # §10.3 step 4: an authenticated user may only register its own address of record.
            self.respond(event, make_response(request, 403, "Forbidden: may not register another user",
                                              to_tag=generate_tag()))
            return
        decision = self.registrar.process(request, to_uri.user, event.source, time.time(), generate_tag())
        if decision.response.status == 200:
            decision.response.headers.add("Supported", ", ".join(SUPPORTED))
            self.counters["registrations"] += 1
        if self.store is not None and (decision.upserted or decision.removed):
            self.store.save(decision.upserted, decision.removed)
        self.respond(event, decision.response)

    def _on_options(self, event: RequestReceived) -> None:
        # RFC 3261 §11.2: say what we can do; used by phones and trunks as a keep-alive.
        headers = [("Allow", ALLOW), ("Accept", ACCEPT), ("Accept-Encoding", "identity"),
                   ("Accept-Language", "zh-CN, en"), ("Supported", ", ".join(SUPPORTED))]
        self.respond(event, make_response(event.request, 200, to_tag=generate_tag(), headers=headers))

    # ------------------------------------------------------------- errors

    def _reject_unparsable(self, data: bytes, exc: SipParseError, source: Address) -> None:
        """Answer a malformed request statelessly when the headers a response needs survived
        (RFC 3261 §8.2: a UAS answers 400 with the reason), else drop it silently."""
        headers = exc.headers
        if headers is None or data[:4] == b"SIP/" or not data.strip():
            return
        needed = ("Via", "From", "To", "Call-ID", "CSeq")
        if not all(h in headers for h in needed):
            return
        if (headers.get("CSeq") or "").split()[-1:] == ["ACK"]:
            return  # never answer an ACK
        reply = Headers()
        for name in needed:
            for value in (headers.get_all(name) if name == "Via" else [headers.get(name) or ""]):
                reply.add(name, value)
        reply.add("Server", self.settings.user_agent)
        response = Response(exc.status, exc.reason, reply)
        self.counters["tx_error_responses"] += 1
        self._add_to_tag(response)
        # No Via could be trusted enough to route by: answer the packet's source.
        self._send_bytes(response.to_bytes(), source)

    @staticmethod
    def _add_to_tag(response: Response) -> None:
        to = response.headers.get("To")
        if to is not None and ";tag=" not in to.replace(" ", "").lower():
            response.headers.set("To", f"{to};tag={generate_tag()}")

    def _security_event(self, event: SecurityEvent) -> None:
        record = asdict(event)
        record["kind"] = event.kind.value if hasattr(event.kind, "value") else str(event.kind)
        security_log.warning("security %s", json.dumps(record, ensure_ascii=False))
        self.counters[f"security_{record['kind']}"] += 1


def _random_secret() -> bytes:
    import secrets

    return secrets.token_bytes(32)
