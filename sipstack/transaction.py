"""RFC 3261 §17 transaction state machines, sans-IO.

Each transaction is fed messages and the current time and answers with *actions*: bytes to
send and events for the transaction user (TU). Timers are explicit deadlines: the owner asks
`deadline` and calls `on_timer(now)` when it has passed, so tests drive them with a fake clock.

RFC 6026 is applied to INVITE transactions: a 2xx moves the server transaction to Accepted
(absorbing INVITE retransmissions for Timer L) and the client one to Accepted (passing further
2xx to the TU for Timer M), instead of RFC 3261's immediate termination that lost them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipstack.headers import Headers
from sipstack.message import Request, Response

if TYPE_CHECKING:
    from sipstack.addressing import Address

# RFC 3261 §17.1.1.1 / Table 4 timer values, in seconds.
T1 = 0.5  # RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message remains in the network


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# Actions and events are made for every message: plain slotted dataclasses, which are built
# several times faster than frozen ones (those set each field through object.__setattr__).
@dataclass(slots=True)
class Send:
    """Put `data` on the wire towards `destination` (a retransmission or a first send)."""

    data: bytes
    destination: Address


@dataclass(slots=True)
class DeliverResponse:
    """A response the client transaction passes up to its TU."""

    response: Response


@dataclass(frozen=True)
class TimedOut:
    """Timer B / F / H fired: the peer never answered (or never ACKed)."""


@dataclass(frozen=True)
class Terminated:
    """The transaction is over; its owner forgets it."""


Action = Send | DeliverResponse | TimedOut | Terminated


class _Timers:
    """Named deadlines of one transaction (absolute times, seconds). The earliest is kept up to
    date as timers start and stop: the transaction layer asks for it after every message."""

    __slots__ = ("_deadlines", "earliest")

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        #: The earliest deadline, None when no timer runs.
        self.earliest: float | None = None

    def start(self, name: str, at: float) -> None:
        deadlines = self._deadlines
        old = deadlines.get(name)
        deadlines[name] = at
        earliest = self.earliest
        if earliest is None or at < earliest:
            self.earliest = at
        elif old is not None and old == earliest and at != old:
            # The earliest timer was restarted later: another may be first now.
            self.earliest = min(deadlines.values())

    def stop(self, name: str) -> None:
        at = self._deadlines.pop(name, None)
        if at is not None and at == self.earliest:
            self.earliest = min(self._deadlines.values(), default=None)

    def running(self, name: str) -> bool:
        return name in self._deadlines

    def clear(self) -> None:
        self._deadlines.clear()
        self.earliest = None

    def due(self, now: float) -> list[str]:
        names = sorted((at, name) for name, at in self._deadlines.items() if at <= now)
        return [name for _, name in names]


class Transaction:
    """What the four state machines share: state, timers, the last message sent."""

    def __init__(self, key: str, destination: Address, reliable: bool, t1: float, t2: float, t4: float) -> None:
        self.key = key
        self.destination = destination
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.state = TxState.TRYING
        self.timers = _Timers()
        self._last: bytes | None = None
        self._interval = t1
        #: The deadline the transaction layer last put in its heap for us (None: none there).
        self.scheduled: float | None = None

    @property
    def deadline(self) -> float | None:
        return self.timers.earliest

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    @property
    def responded(self) -> bool:
        """True once the transaction has sent something (a response, for a server one)."""
        return self._last is not None

    def _send(self, data: bytes) -> Send:
        self._last = data
        return Send(data, self.destination)

    def _resend(self) -> list[Action]:
        return [Send(self._last, self.destination)] if self._last is not None else []

    def _terminate(self) -> list[Action]:
        self.state = TxState.TERMINATED
        self.timers.clear()
        return [Terminated()]

    def _wait_or_terminate(self, timer: str, now: float, duration: float) -> list[Action]:
        """Enter a lingering state for `duration` (unreliable transports), or end at once."""
        if self.reliable or duration <= 0:
            return self._terminate()
        self.timers.start(timer, now + duration)
        return []

    def on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for name in self.timers.due(now):
            if self.terminated:
                break
            self.timers.stop(name)
            actions += self._fire(name, now)
        return actions

    def _fire(self, name: str, now: float) -> list[Action]:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- client side


class ClientTransaction(Transaction):
    def __init__(self, key: str, request: Request, destination: Address, reliable: bool, *,
                 t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        super().__init__(key, destination, reliable, t1, t2, t4)
        self.method = request.method
        #: Released once no retransmission or ACK can need it: at load tens of thousands of
        #: transactions linger for Timers D/J/K and should hold bytes, not parsed messages.
        self.request: Request | None = request

    def start(self, now: float) -> list[Action]:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_response(self, response: Response, now: float) -> list[Action]:  # pragma: no cover
        raise NotImplementedError

    def transport_error(self) -> list[Action]:
        """RFC 3261 §17.1.4: a transport failure is reported as a timeout to the TU."""
        if self.terminated:
            return []
        return [TimedOut(), *self._terminate()]


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 (Figure 5) with RFC 6026's Accepted state."""

    def start(self, now: float) -> list[Action]:
        self.state = TxState.CALLING
        if not self.reliable:
            self.timers.start("A", now + self.t1)
        self.timers.start("B", now + 64 * self.t1)
        assert self.request is not None
        return [self._send(self.request.to_bytes())]

    def on_response(self, response: Response, now: float) -> list[Action]:
        status = response.status
        if self.state in (TxState.CALLING, TxState.PROCEEDING):
            if status < 200:
                self.state = TxState.PROCEEDING
                self.timers.stop("A")
                self.timers.stop("B")  # §17.1.1.2: once a provisional arrives, B no longer applies
                return [DeliverResponse(response)]
            if status < 300:
                # RFC 6026 §8.4: Accepted; the TU ACKs 2xx itself, retransmitted 2xx go up.
                self.state = TxState.ACCEPTED
                self.timers.clear()
                self.timers.start("M", now + 64 * self.t1)
                self.request = None
                return [DeliverResponse(response)]
            self.state = TxState.COMPLETED
            self.timers.clear()
            assert self.request is not None
            ack = self._send(build_ack_for_non_2xx(self.request, response).to_bytes())
            self.request = None
            return [ack, DeliverResponse(response), *self._wait_or_terminate("D", now, 32.0)]
        if self.state is TxState.ACCEPTED and 200 <= status < 300:
            return [DeliverResponse(response)]
        if self.state is TxState.COMPLETED and status >= 300:
            return self._resend()  # §17.1.1.2: retransmitted final response: ACK again, not to the TU
        return []

    def cancel_sent(self, now: float) -> list[Action]:
        """Our CANCEL for this INVITE went out (RFC 3261 §9.1): if no final response comes
        within 64*T1, the transaction is given up as cancelled. Without this an INVITE in
        Proceeding, which has no timer of its own (§17.1.1.2), would live for ever once the
        callee that sent the provisional vanishes and answers neither CANCEL nor INVITE."""
        if self.state in (TxState.CALLING, TxState.PROCEEDING) and not self.timers.running("cancel"):
            self.timers.start("cancel", now + 64 * self.t1)
        return []

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "cancel" and self.state in (TxState.CALLING, TxState.PROCEEDING):
            # §9.1: "consider the original transaction cancelled and ... destroy" it; the TU
            # hears of it as a timeout, like Timer B, so whatever waits on it lets go.
            return [TimedOut(), *self._terminate()]
        if name == "A" and self.state is TxState.CALLING:
            self._interval *= 2  # §17.1.1.2: A doubles with no cap
            self.timers.start("A", now + self._interval)
            return self._resend()
        if name == "B" and self.state is TxState.CALLING:
            return [TimedOut(), *self._terminate()]
        if name in ("D", "M"):
            return self._terminate()
        return []


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    def start(self, now: float) -> list[Action]:
        self.state = TxState.TRYING
        if not self.reliable:
            self.timers.start("E", now + self.t1)
        self.timers.start("F", now + 64 * self.t1)
        assert self.request is not None
        return [self._send(self.request.to_bytes())]

    def on_response(self, response: Response, now: float) -> list[Action]:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []  # §17.1.2.2: retransmitted finals in Completed are absorbed
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return [DeliverResponse(response)]
        self.state = TxState.COMPLETED
        self.timers.clear()
        self.request = None
        return [DeliverResponse(response), *self._wait_or_terminate("K", now, self.t4)]

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "E" and self.state in (TxState.TRYING, TxState.PROCEEDING):
            # §17.1.2.2: doubles up to T2 while Trying; in Proceeding it fires every T2.
            if self.state is TxState.TRYING:
                self._interval = min(self._interval * 2, self.t2)
            else:
                self._interval = self.t2
            self.timers.start("E", now + self._interval)
            return self._resend()
        if name == "F" and self.state in (TxState.TRYING, TxState.PROCEEDING):
            return [TimedOut(), *self._terminate()]
        if name == "K":
            return self._terminate()
        return []


# ---------------------------------------------------------------- server side


class ServerTransaction(Transaction):
    def __init__(self, key: str, request: Request, destination: Address, reliable: bool, *,
                 source: Address | None = None, t1: float = T1, t2: float = T2, t4: float = T4) -> None:
        super().__init__(key, destination, reliable, t1, t2, t4)
        #: Where the request came from (for Via received/rport); defaults to the destination.
        self.source = source or destination
        self.method = request.method
        #: Released with the final response (see ClientTransaction.request).
        self.request: Request | None = request
        #: (first Via field as copied from the request, as stamped): the layer works out the
        #: stamp of RFC 3261 §18.2.1 once and gives every response the same.
        self.via_stamp: tuple[str, str] | None = None

    def respond(self, response: Response, now: float) -> list[Action]:  # pragma: no cover
        raise NotImplementedError

    def on_retransmission(self, request: Request, now: float) -> list[Action]:  # pragma: no cover
        raise NotImplementedError

    def transport_error(self) -> list[Action]:
        if self.terminated:
            return []
        return self._terminate()


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 (Figure 7) with RFC 6026's Accepted state."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.state = TxState.PROCEEDING

    def respond(self, response: Response, now: float) -> list[Action]:
        if self.state is not TxState.PROCEEDING:
            if self.state is TxState.ACCEPTED and 200 <= response.status < 300:
                # RFC 6026 §8.5: the TU's 2xx retransmissions pass through Accepted.
                return [Send(response.to_bytes(), self.destination)]
            raise TransactionError(f"cannot send {response.status} in state {self.state.value}")
        send = self._send(response.to_bytes())
        if response.status < 200:
            return [send]
        self.request = None
        if response.status < 300:
            self.state = TxState.ACCEPTED
            self.timers.start("L", now + 64 * self.t1)
            return [send]
        self.state = TxState.COMPLETED
        if not self.reliable:
            self.timers.start("G", now + self.t1)
        self.timers.start("H", now + 64 * self.t1)
        return [send]

    def on_retransmission(self, request: Request, now: float) -> list[Action]:
        if request.method == "ACK":
            if self.state is TxState.COMPLETED:
                # §17.2.1: ACK for a non-2xx final ends retransmissions; linger for Timer I.
                self.state = TxState.CONFIRMED
                self.timers.clear()
                return self._wait_or_terminate("I", now, self.t4)
            return []
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED):
            return self._resend()  # §17.2.1: absorb retransmitted INVITE, repeat last response
        return []  # Accepted / Confirmed: absorbed

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "G" and self.state is TxState.COMPLETED:
            self._interval = min(self._interval * 2, self.t2)
            self.timers.start("G", now + self._interval)
            return self._resend()
        if name == "H" and self.state is TxState.COMPLETED:
            return [TimedOut(), *self._terminate()]  # the ACK never came
        if name in ("I", "L"):
            return self._terminate()
        return []


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8)."""

    def respond(self, response: Response, now: float) -> list[Action]:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            raise TransactionError(f"cannot send {response.status} in state {self.state.value}")
        send = self._send(response.to_bytes())
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return [send]
        self.request = None
        self.state = TxState.COMPLETED
        return [send, *self._wait_or_terminate("J", now, 64 * self.t1)]

    def on_retransmission(self, request: Request, now: float) -> list[Action]:
        # §17.2.2: in Trying the request is absorbed; later the last response is repeated.
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED):
            return self._resend()
        return []

    def _fire(self, name: str, now: float) -> list[Action]:
        if name == "J":
            return self._terminate()
        return []


class TransactionError(Exception):
    """The TU asked a transaction for something its state does not allow."""


def build_ack_for_non_2xx(request: Request, response: Response) -> Request:
    """RFC 3261 §17.1.1.3: the ACK the client transaction itself sends for a 3xx-6xx."""
    headers = Headers()
    headers.add("Via", request.headers.get("Via") or "")  # the top Via only, same branch
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.headers.get("Call-ID") or "")
    headers.add("CSeq", f"{request.cseq.number} ACK")
    return Request("ACK", request.uri, headers)
