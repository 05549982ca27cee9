"""What every transport hands to the SIP core, and the table of live connections (flows)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Protocol

from sipstack.addressing import Address, Transport

log = logging.getLogger(__name__)

#: Called with each complete SIP message's bytes and where it came from.
MessageSink = Callable[[bytes, Address], None]


class Flow(Protocol):
    """One connection (TCP, TLS or WebSocket) that messages can be sent back over."""

    address: Address

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class FlowTable:
    """Live connections by flow id and by remote address, so a reply or a request to a client
    behind a connection goes back over it (RFC 3261 §18.2.2, RFC 5626 §5.3)."""

    def __init__(self, on_closed: Callable[[Address], None]) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[int, Flow] = {}
        self._by_remote: dict[tuple[Transport, str, int], Flow] = {}
        self._on_closed = on_closed

    def new_id(self) -> int:
        return next(self._ids)

    def add(self, flow: Flow) -> None:
        a = flow.address
        self._by_id[a.flow] = flow  # type: ignore[index]
        self._by_remote[(a.transport, a.host, a.port)] = flow

    def remove(self, flow: Flow) -> None:
        a = flow.address
        if self._by_id.pop(a.flow, None) is None:  # type: ignore[arg-type]
            return
        if self._by_remote.get((a.transport, a.host, a.port)) is flow:
            del self._by_remote[(a.transport, a.host, a.port)]
        self._on_closed(a)

    def find(self, destination: Address) -> Flow | None:
        if destination.flow is not None:
            flow = self._by_id.get(destination.flow)
            if flow is not None:
                return flow
        return self._by_remote.get((destination.transport, destination.host, destination.port))

    def __len__(self) -> int:
        return len(self._by_id)

    def close_all(self) -> None:
        for flow in list(self._by_id.values()):
            flow.close()
