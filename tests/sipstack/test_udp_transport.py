"""SIP over UDP on a real socket: datagrams reach the sink with their source Address, and the
Address of a peer that keeps sending is one object, kept in a bounded table."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from sipstack.addressing import Address, Transport
from sipstack.transport import udp
from sipstack.transport.udp import UdpTransport


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _peer(peers: list[socket.socket]) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    peers.append(s)
    return s


async def _received(got: list[tuple[bytes, Address]], count: int) -> None:
    for _ in range(500):
        if len(got) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {len(got)} of {count} datagrams arrived")


async def test_datagrams_of_one_peer_come_with_one_address(peers: list[socket.socket]) -> None:
    got: list[tuple[bytes, Address]] = []
    transport = await UdpTransport.listen("127.0.0.1", 0, lambda data, source: got.append((data, source)))
    try:
        phone = _peer(peers)
        for payload in (b"OPTIONS one", b"OPTIONS two"):
            phone.sendto(payload, ("127.0.0.1", transport.local_port))
        await _received(got, 2)
        assert [data for data, _ in got] == [b"OPTIONS one", b"OPTIONS two"]
        assert got[0][1] == Address(Transport.UDP, "127.0.0.1", phone.getsockname()[1])
        assert got[1][1] is got[0][1]
    finally:
        transport.close()


async def test_the_table_of_known_sources_is_bounded(peers: list[socket.socket],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp, "MAX_KNOWN_SOURCES", 2)
    got: list[tuple[bytes, Address]] = []
    transport = await UdpTransport.listen("127.0.0.1", 0, lambda data, source: got.append((data, source)))
    try:
        senders = [_peer(peers) for _ in range(5)]
        for i, sender in enumerate(senders):
            sender.sendto(b"ping %d" % i, ("127.0.0.1", transport.local_port))
            await _received(got, i + 1)
        assert [source.port for _, source in got] == [s.getsockname()[1] for s in senders]
        assert len(transport._sources) <= 2
    finally:
        transport.close()
