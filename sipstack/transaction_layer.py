"""The transaction layer (RFC 3261 §17.1.3, §17.2.3, §18): matches messages to transactions,
creates server transactions for new requests, and keeps every transaction's timers in one heap.

Sans-IO: `receive`, `send_request`, `respond` and `on_timer` return `Send` actions for the
transport glue and events for the transaction user.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field, replace

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
)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


@dataclass(frozen=True)
class RequestReceived:
    """A new request; the TU answers it through `TransactionLayer.respond(transaction, ...)`."""

    request: Request
    source: Address
    transaction: ServerTransaction


@dataclass(frozen=True)
class AckReceived:
    """An ACK that matched no server transaction: the ACK of a 2xx, for the dialog (§13.2.2.4)."""

    request: Request
    source: Address


@dataclass(frozen=True)
class ResponseReceived:
    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True)
class StrayResponse:
    """A response no client transaction waits for, e.g. a 2xx retransmitted after Timer M."""

    response: Response
    source: Address


@dataclass(frozen=True)
class TransactionTimeout:
    transaction: ClientTransaction | ServerTransaction


Event = RequestReceived | AckReceived | ResponseReceived | StrayResponse | TransactionTimeout


@dataclass
class Output:
    """What one call into the layer produced."""

    sends: list[Send] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.sends += other.sends
        self.events += other.events


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
    params = dict(top.params)
    if top.host != source.host:
        params["received"] = source.host
    if top.has_rport:
        params["received"] = source.host
        params["rport"] = str(source.port)
    if params == top.params:
        return
    fields = message.headers.get_fields("Via")
    values = split_list(fields[0])  # the first field may hold several comma-separated values
    values[0] = str(replace(top, params=params))
    message.headers.set("Via", ", ".join(values))
    for value in fields[1:]:
        message.headers.add("Via", value)


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
            if tx is not None and tx.deadline == at:
                return at
            heapq.heappop(self._heap)  # stale entry: the transaction moved on or ended
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
        if request.method == "INVITE":
            # §17.2.1: answer 100 at once rather than make the client retransmit.
            out.extend(self.respond(tx, make_response(request, 100), now))
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
        return tx, self._run(tx, tx.start(now))

    def respond(self, tx: ServerTransaction, response: Response, now: float) -> Output:
        stamp_via(response, tx.source, tx.request)
        return self._run(tx, tx.respond(response, now))

    def transport_error(self, tx: ClientTransaction | ServerTransaction) -> Output:
        return self._run(tx, tx.transport_error())

    # ------------------------------------------------------------- time

    def on_timer(self, now: float) -> Output:
        out = Output()
        while self._heap and self._heap[0][0] <= now:
            at, _, key, is_server = heapq.heappop(self._heap)
            tx = (self._server if is_server else self._client).get(key)
            if tx is None or tx.deadline != at:
                continue
            out.extend(self._run(tx, tx.on_timer(now)))
        return out

    # ------------------------------------------------------------- plumbing

    def _run(self, tx: ClientTransaction | ServerTransaction, actions: list[Action]) -> Output:
        out = Output()
        for action in actions:
            if isinstance(action, Send):
                out.sends.append(action)
            elif isinstance(action, DeliverResponse):
                out.events.append(ResponseReceived(action.response, tx))  # type: ignore[arg-type]
            elif isinstance(action, TimedOut):
                out.events.append(TransactionTimeout(tx))
            elif isinstance(action, Terminated):
                table = self._server if isinstance(tx, ServerTransaction) else self._client
                table.pop(tx.key, None)
        deadline = tx.deadline
        if not tx.terminated and deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._seq), tx.key, isinstance(tx, ServerTransaction)))
        return out
