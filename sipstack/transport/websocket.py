"""SIP over WebSocket (RFC 7118): each WebSocket message carries exactly one SIP message.

The HTTP server owns the socket; it hands each accepted WebSocket here. The object only needs
the small async interface below, which Starlette's `WebSocket` provides.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from sipstack.addressing import Address, Transport
from sipstack.transport.base import FlowTable, MessageSink

log = logging.getLogger(__name__)

SUBPROTOCOL = "sip"  # RFC 7118 §4.1
# Messages queued for a browser that stopped reading; past this the connection is closed
# rather than growing without bound.
MAX_QUEUED = 1000


class WebSocketLike(Protocol):
    async def accept(self, subprotocol: str | None = None) -> None: ...
    async def receive(self) -> dict[str, Any]: ...
    async def send_text(self, data: str) -> None: ...
    async def send_bytes(self, data: bytes) -> None: ...
    async def close(self, code: int = 1000) -> None: ...


class WebSocketFlow:
    def __init__(self, ws: WebSocketLike, address: Address) -> None:
        self._ws = ws
        self.address = address
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(self, data: bytes) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            log.warning("closing %s: peer is not reading", self.address)
            self.close()
            return
        self._queue.put_nowait(data)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def writer(self) -> None:
        while (data := await self._queue.get()) is not None:
            try:
                await self._ws.send_text(data.decode("utf-8"))
            except UnicodeDecodeError:
                await self._ws.send_bytes(data)
        await self._ws.close()


async def serve_websocket(ws: WebSocketLike, peer: tuple[str, int], secure: bool, sink: MessageSink,
                          flows: FlowTable, offered: list[str]) -> None:
    """Run one SIP WebSocket connection until it closes."""
    if SUBPROTOCOL not in offered:
        # RFC 7118 §4.1: the client must ask for the "sip" sub-protocol.
        await ws.close(code=1002)
        return
    await ws.accept(subprotocol=SUBPROTOCOL)
    kind = Transport.WSS if secure else Transport.WS
    flow = WebSocketFlow(ws, Address(kind, peer[0], peer[1], flows.new_id()))
    flows.add(flow)
    writer = asyncio.get_running_loop().create_task(flow.writer())
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes") or (message.get("text") or "").encode("utf-8")
            if data.strip():
                sink(data, flow.address)
    finally:
        flows.remove(flow)
        writer.cancel()
