"""SIP over UDP (RFC 3261 §18): one datagram, one message."""

from __future__ import annotations

import asyncio
import logging
import socket

from sipstack.addressing import Address, Transport
from sipstack.transport.base import MessageSink

log = logging.getLogger(__name__)

# A burst of thousands of requests per second must not overflow the kernel's default ~200 KB
# receive buffer while the event loop is busy with the previous batch.
SOCKET_BUFFER = 4 * 1024 * 1024
# The peers a server hears from are few (phones, trunks, a proxy) and each sends many datagrams:
# their Address objects are kept for reuse. Past this many the table starts over, so a flood
# from spoofed sources cannot grow it without bound.
MAX_KNOWN_SOURCES = 4096


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink
        self._transport: asyncio.DatagramTransport | None = None
        self._sources: dict[tuple, Address] = {}

    @classmethod
    async def listen(cls, host: str, port: int, sink: MessageSink) -> UdpTransport:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        sock.bind((host, port))
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: cls(sink), sock=sock)
        return protocol

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= MAX_KNOWN_SOURCES:
                self._sources.clear()
            source = self._sources[addr] = Address(Transport.UDP, addr[0], addr[1])
        self._sink(data, source)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction's timers handle the silence.
        log.debug("udp error: %s", exc)

    def send(self, data: bytes, destination: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(data, (destination.host, destination.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
