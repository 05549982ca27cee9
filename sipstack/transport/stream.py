"""SIP over TCP and TLS (RFC 3261 §18.3): messages framed by Content-Length on a byte stream,
with RFC 5626 §3.5.1 CRLF keep-alives answered."""

from __future__ import annotations

import asyncio
import logging
import ssl

from sipstack.addressing import Address, Transport
from sipstack.errors import SipParseError
from sipstack.framing import KeepAlive, StreamFramer
from sipstack.transport.base import FlowTable, MessageSink

log = logging.getLogger(__name__)

# Connections that never send a complete message are closed after this long, so an attacker
# cannot hold thousands of idle sockets (phones refresh or keep alive far more often).
IDLE_TIMEOUT = 900.0


class StreamFlow(asyncio.Protocol):
    def __init__(self, kind: Transport, sink: MessageSink, flows: FlowTable) -> None:
        self._kind = kind
        self._sink = sink
        self._flows = flows
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.address = Address(kind, "", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.address = Address(self._kind, host, port, self._flows.new_id())
        self._flows.add(self)
        self._touch()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            frames = self._framer.feed(data)
        except SipParseError as exc:
            # The stream cannot be re-synchronised after a framing error: drop the connection.
            log.warning("closing %s: %s", self.address, exc.reason)
            self.close()
            return
        for frame in frames:
            if isinstance(frame, KeepAlive):
                self.send(b"\r\n")  # RFC 5626 §3.5.1: pong
            else:
                self._sink(frame, self.address)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._flows.remove(self)

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self.close)


async def listen_stream(kind: Transport, host: str, port: int, sink: MessageSink, flows: FlowTable,
                        ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: StreamFlow(kind, sink, flows), host, port,
                                    ssl=ssl_context, reuse_address=True)


async def connect_stream(kind: Transport, host: str, port: int, sink: MessageSink, flows: FlowTable,
                         ssl_context: ssl.SSLContext | None = None) -> StreamFlow:
    """Open an outbound connection (to a trunk or a phone whose flow is gone)."""
    loop = asyncio.get_running_loop()
    _, flow = await loop.create_connection(lambda: StreamFlow(kind, sink, flows), host, port,
                                           ssl=ssl_context, server_hostname=host if ssl_context else None)
    return flow
