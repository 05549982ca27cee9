"""All listening sockets of the SIP server, and `send`, which picks the way out for an Address."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from sipstack.addressing import Address, Transport
from sipstack.transport.base import FlowTable, MessageSink
from sipstack.transport.stream import connect_stream, listen_stream
from sipstack.transport.udp import UdpTransport
from sipstack.transport.websocket import WebSocketLike, serve_websocket

log = logging.getLogger(__name__)


class TransportManager:
    def __init__(self, sink: MessageSink, on_flow_closed: Callable[[Address], None]) -> None:
        self._sink = sink
        self.flows = FlowTable(on_flow_closed)
        self.udp: UdpTransport | None = None
        self._servers: dict[Transport, asyncio.Server] = {}
        self._client_tls: ssl.SSLContext | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, *, udp_port: int | None = None, tcp_port: int | None = None,
                     tls_port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        if udp_port is not None:
            self.udp = await UdpTransport.listen(host, udp_port, self._sink)
        if tcp_port is not None:
            self._servers[Transport.TCP] = await listen_stream(Transport.TCP, host, tcp_port, self._sink, self.flows)
        if tls_port is not None and tls is not None:
            self._servers[Transport.TLS] = await listen_stream(Transport.TLS, host, tls_port, self._sink,
                                                               self.flows, tls)
            self._client_tls = ssl.create_default_context()

    def port(self, transport: Transport) -> int | None:
        if transport is Transport.UDP:
            return self.udp.local_port if self.udp else None
        server = self._servers.get(transport)
        return server.sockets[0].getsockname()[1] if server else None

    async def serve_websocket(self, ws: WebSocketLike, peer: tuple[str, int], secure: bool,
                              offered: list[str]) -> None:
        await serve_websocket(ws, peer, secure, self._sink, self.flows, offered)

    def send(self, data: bytes, destination: Address) -> None:
        if destination.transport is Transport.UDP:
            if self.udp is not None:
                self.udp.send(data, destination)
            return
        flow = self.flows.find(destination)
        if flow is not None:
            flow.send(data)
        elif destination.transport in (Transport.TCP, Transport.TLS):
            task = asyncio.get_running_loop().create_task(self._connect_and_send(data, destination))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        else:
            # A browser can only be reached over the WebSocket it opened (RFC 7118 §5).
            log.info("no connection to %s any more; message dropped", destination)

    async def _connect_and_send(self, data: bytes, destination: Address) -> None:
        ctx = self._client_tls if destination.transport is Transport.TLS else None
        try:
            flow = await connect_stream(destination.transport, destination.host, destination.port,
                                        self._sink, self.flows, ctx)
        except OSError as exc:
            log.info("cannot connect to %s: %s", destination, exc)
            return
        flow.send(data)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        for server in self._servers.values():
            server.close()
        self.flows.close_all()
        for server in self._servers.values():
            await server.wait_closed()
        for task in list(self._connecting):
            task.cancel()
