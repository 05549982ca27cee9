"""The transaction layer (RFC 3261 §17.1.3, §17.2.3, §18): matches messages to transactions,
creates server transactions for new requests, and keeps every transaction's timers in one heap.

Sans-IO: `receive`, `send_request`, `respond` and `on_timer` return `Send` actions for the
transport glue and events for the transaction user.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from sipstack.addressing import Address, Transport
from sipstack.headers import split_list
from sipstack.message import Request, Response, make_response
from sipstack.transaction import (
    T1,
    T2,
    T4,
    Action,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    DeliverResponse,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    Terminated,
    TimedOut,
    TxState,
)
from sipstack.uri import Via

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


@dataclass(slots=True)
class RequestReceived:
    """A new request; the TU answers it through `TransactionLayer.respond(transaction, ...)`."""

    request: Request
    source: Address
    transaction: ServerTransaction


@dataclass(slots=True)
class AckReceived:
    """An ACK that matched no server transaction: the ACK of a 2xx, for the dialog (§13.2.2.4)."""

    request: Request
    source: Address


@dataclass(slots=True)
class ResponseReceived:
    response: Response
    transaction: ClientTransaction


@dataclass(slots=True)
class StrayResponse:
    """A response no client transaction waits for, e.g. a 2xx retransmitted after Timer M."""

    response: Response
    source: Address


@dataclass(slots=True)
class TransactionTimeout:
    transaction: ClientTransaction | ServerTransaction


Event = RequestReceived | AckReceived | ResponseReceived | StrayResponse | TransactionTimeout


@dataclass
class Output:
    """What one call into the layer produced."""

    sends: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: New INVITE server transactions: once the TU has seen their RequestReceived, the owner
    #: calls `send_trying` for each (RFC 3261 §17.2.1: a 100 unless the TU answered already).
    trying: list[ServerInviteTransaction] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.sends += other.sends
        self.events += other.events
        self.trying += other.trying


def server_key(request: Request) -> str:
    """RFC 3261 §17.2.3: branch + sent-by + method (ACK matches its INVITE; CANCEL stands apart)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return f"{branch}|{via.host}:{via.port or ''}|{method}"
    # RFC 2543 peers: match on the fields §17.2.3 lists for them.
    to_tag = request.to_addr.tag if request.method != "ACK" else None
    return (f"2543|{request.uri}|{to_tag or ''}|{request.from_addr.tag or ''}|{request.call_id}"
            f"|{request.cseq.number}|{via}|{method}")


def client_key(branch: str, method: str) -> str:
    """RFC 3261 §17.1.3: the top Via branch and the CSeq method (ACK is never a client tx)."""
    return f"{branch}|{'INVITE' if method == 'ACK' else method}"


def response_destination(request: Request, source: Address) -> Address:
    """RFC 3261 §18.2.2 with RFC 3581: where a response to `request` goes.

    Over a connection the response goes back on it; over UDP to the source address when the
    client asked for rport, otherwise to the address it came from and the port in Via."""
    if source.transport.reliable:
        return source
    via = request.top_via
    if via.has_rport:
        return source
    return Address(Transport.UDP, source.host, via.port or 5060)


def stamp_via(message: Request | Response, source: Address, request: Request | None = None) -> None:
    """RFC 3261 §18.2.1 and RFC 3581 §4: record where a request really came from in its top
    Via (received=, rport=), so every response finds its way back through NAT.

    Applied to the *response's* copy of the Via (which make_response took from the request):
    the result on the wire is the same, and the request stays untouched, so nothing parsed
    from it has to be parsed again. With `request` given, its already-parsed top Via is the
    template and only that one value is rewritten."""
    top = (request or message).top_via
    params = top.params
    host = source.host
    if top.has_rport:
        port = str(source.port)
        if params.get("received") == host and params.get("rport") == port:
            return
        params = {**params, "received": host, "rport": port}
    elif top.host != host:
        if params.get("received") == host:
            return
        params = {**params, "received": host}
    else:
        return
    stamped = str(Via(top.transport, top.host, top.port, params, top.protocol))
    fields = message.headers._fields
    i = next((i for i, f in enumerate(fields) if f[0] == "via"), -1)
    if i < 0:
        return
    f = fields[i]
    # The first Via field may hold several comma-separated values: only the first changes,
    # and the field keeps its place.
    value = f[2]
    if "," in value:
        values = split_list(value)
        values[0] = stamped
        stamped = ", ".join(values)
    fields[i] = (f[0], f[1], stamped)
    message.headers._changed()


class TransactionLayer:
    def __init__(self, *, t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        self._timers = dict(t1=t1, t2=t2, t4=t4)
        self._server: dict[str, ServerTransaction] = {}
        self._client: dict[str, ClientTransaction] = {}
        self._heap: list[tuple[float, int, str, bool]] = []
        self._seq = itertools.count()

    # ------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    @property
    def next_deadline(self) -> float | None:
        while self._heap:
            at, _, key, is_server = self._heap[0]
            tx = (self._server if is_server else self._client).get(key)
            if tx is not None and tx.timers.earliest == at:
                return at
            heapq.heappop(self._heap)  # stale entry: the transaction moved on or ended
            if tx is not None and tx.scheduled == at:
                tx.scheduled = None
        return None

    def find_invite_for_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """RFC 3261 §9.2: the INVITE server transaction a CANCEL refers to."""
        via = cancel.top_via
        if (via.branch or "").startswith(MAGIC_COOKIE):
            key = f"{via.branch}|{via.host}:{via.port or ''}|INVITE"
        else:
            key = server_key(Request("INVITE", cancel.uri, cancel.headers))
        tx = self._server.get(key)
        return tx if isinstance(tx, ServerInviteTransaction) else None

    # ------------------------------------------------------------- inbound

    def receive(self, message: Request | Response, source: Address, now: float) -> Output:
        if isinstance(message, Response):
            return self._receive_response(message, source, now)
        return self._receive_request(message, source, now)

    def _receive_request(self, request: Request, source: Address, now: float) -> Output:
        key = server_key(request)
        tx = self._server.get(key)
        if tx is not None:
            return self._run(tx, tx.on_retransmission(request, now))
        if request.method == "ACK":
            return Output(events=[AckReceived(request, source)])
        destination = response_destination(request, source)
        kind = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = kind(key, request, destination, source.reliable, source=source, **self._timers)
        self._server[key] = tx
        out = Output(events=[RequestReceived(request, source, tx)])
        if isinstance(tx, ServerInviteTransaction):
            out.trying.append(tx)
        return out

    def _receive_response(self, response: Response, source: Address, now: float) -> Output:
        branch = response.top_via.branch or ""
        tx = self._client.get(client_key(branch, response.cseq.method))
        if tx is None:
            return Output(events=[StrayResponse(response, source)])
        return self._run(tx, tx.on_response(response, now))

    # ------------------------------------------------------------- outbound

    def send_request(self, request: Request, destination: Address, now: float) -> tuple[ClientTransaction, Output]:
        """Start a client transaction. The request's top Via must carry a fresh branch."""
        branch = request.top_via.branch or ""
        key = client_key(branch, request.method)
        if key in self._client:
            raise ValueError(f"a client transaction with branch {branch} exists already")
        kind = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        tx = kind(key, request, destination, destination.reliable, **self._timers)
        self._client[key] = tx
        out = self._run(tx, tx.start(now))
        if request.method == "CANCEL":
            # RFC 3261 §9.1: the CANCEL carries its INVITE's branch; that INVITE is given up
            # 64*T1 from now unless a final response ends it first.
            invite = self._client.get(client_key(branch, "INVITE"))
            if isinstance(invite, ClientInviteTransaction):
                out.extend(self._run(invite, invite.cancel_sent(now)))
        return tx, out

    def send_trying(self, tx: ServerInviteTransaction, now: float) -> Output:
        """RFC 3261 §17.2.1: the 100 Trying of a new INVITE, sent at once (not after 200 ms)
        so the client stops retransmitting — unless the TU, which saw the request first,
        already answered it (a 407 challenge, a 486): then the 100 would be one more datagram
        for nothing."""
        if tx.state is not TxState.PROCEEDING or tx.request is None or tx.responded:
            return Output()
        return self.respond(tx, make_response(tx.request, 100), now)

    def respond(self, tx: ServerTransaction, response: Response, now: float) -> Output:
        # Every response of a transaction gets the same stamped Via: worked out for the
        # first one, reused (by the text it replaces) for the rest.
        fields = response.headers._fields
        first = next((i for i, f in enumerate(fields) if f[0] == "via"), -1)
        if first >= 0:
            stamp = tx.via_stamp
            original = fields[first]
            if stamp is not None and stamp[0] == original[2]:
                if stamp[1] != original[2]:
                    fields[first] = (original[0], original[1], stamp[1])
                    response.headers._changed()
            else:
                stamp_via(response, tx.source, tx.request)
                tx.via_stamp = (original[2], fields[first][2])
        return self._run(tx, tx.respond(response, now))

    def transport_error(self, tx: ClientTransaction | ServerTransaction) -> Output:
        return self._run(tx, tx.transport_error())

    # ------------------------------------------------------------- time

    def on_timer(self, now: float) -> Output:
        out = Output()
        while self._heap and self._heap[0][0] <= now:
            at, _, key, is_server = heapq.heappop(self._heap)
            tx = (self._server if is_server else self._client).get(key)
            if tx is None:
                continue
            if tx.timers.earliest != at:
                if tx.scheduled == at:
                    tx.scheduled = None
                continue
            tx.scheduled = None  # its heap entry is gone; _run pushes the next one
            out.extend(self._run(tx, tx.on_timer(now)))
        return out

    # ------------------------------------------------------------- plumbing

    def _run(self, tx: ClientTransaction | ServerTransaction, actions: list[Action]) -> Output:
        out = Output()
        for action in actions:
            kind = type(action)
            if kind is Send:
                out.sends.append(action)  # type: ignore[arg-type]
            elif kind is DeliverResponse:
                out.events.append(ResponseReceived(action.response, tx))  # type: ignore[arg-type, union-attr]
            elif kind is TimedOut:
                out.events.append(TransactionTimeout(tx))
            elif kind is Terminated:
                table = self._server if isinstance(tx, ServerTransaction) else self._client
                table.pop(tx.key, None)
        deadline = tx.timers.earliest
        if deadline is None:
            tx.scheduled = None
        elif deadline != tx.scheduled and not tx.terminated:
            # One heap entry per deadline: most messages leave a transaction's timers as they were.
            tx.scheduled = deadline
            heapq.heappush(self._heap, (deadline, next(self._seq), tx.key, isinstance(tx, ServerTransaction)))
        return out
