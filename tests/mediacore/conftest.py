"""Fixtures for the media tests: a started engine on a private port range and plain UDP sockets
on 127.0.0.1 acting as the far ends of calls (phones, trunks, NATs)."""

from __future__ import annotations

import asyncio
import random
import socket

import numpy as np
import pytest

from mediacore import MediaEngine, MediaEvent
from mediacore.rtp import RtpPacket

# A private range below the ephemeral ports (32768-60999), at a random offset so that two test
# sessions on the machine rarely meet; the engine skips pairs another program holds anyway.
RANGE_SIZE = 200


class Peer:
    """A far end: one UDP socket on 127.0.0.1 that sends and receives RTP."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.host = host
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.host, port))

    def send_rtp(self, packet: RtpPacket, port: int) -> None:
        self.send(packet.serialize(), port)

    async def recv(self, timeout: float = 5.0) -> tuple[bytes, tuple]:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recvfrom(self.sock, 4096), timeout)

    async def recv_rtp(self, count: int, timeout: float = 5.0) -> list[RtpPacket]:
        return [RtpPacket.parse((await self.recv(timeout))[0]) for _ in range(count)]

    def pending(self) -> int:
        """Datagrams already queued on the socket (without waiting)."""
        count = 0
        while True:
            try:
                self.sock.recvfrom(4096)
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def port_range() -> tuple[int, int]:
    # Other programs on a busy machine (a bench, a server under test) may hold whole blocks of
    # this space: take a range whose pairs are all free right now, trying other offsets if not.
    for _ in range(50):
        base = 20000 + 2 * random.randrange(0, (10000 - RANGE_SIZE) // 2)
        if _all_free(base, base + RANGE_SIZE):
            break
    return base, base + RANGE_SIZE - 1


def _all_free(first: int, end: int) -> bool:
    held = []
    try:
        for port in range(first, end):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(sock)
            sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()
    return True


@pytest.fixture
async def engine(port_range):
    eng = MediaEngine("127.0.0.1", *port_range)
    await eng.start()
    eng.received = []   # every event delivered, in order
    eng.arrived = asyncio.Event()

    def handler(event: MediaEvent) -> None:
        eng.received.append(event)
        eng.arrived.set()

    eng.set_event_handler(handler)
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def peers():
    made: list[Peer] = []

    def make(family: int = socket.AF_INET, host: str = "127.0.0.1") -> Peer:
        peer = Peer(family, host)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


async def wait_for_event(engine: MediaEngine, predicate, timeout: float = 5.0) -> MediaEvent:
    """The first event (already received or arriving within `timeout`) matching `predicate`."""

    async def scan() -> MediaEvent:
        seen = 0
        while True:
            for event in engine.received[seen:]:
                if predicate(event):
                    return event
            seen = len(engine.received)
            engine.arrived.clear()
            await engine.arrived.wait()

    return await asyncio.wait_for(scan(), timeout)


@pytest.fixture
def next_event():
    return wait_for_event


async def wait_until(condition, timeout: float = 5.0) -> None:
    """Let the engine thread work until `condition()` holds; fail after `timeout` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
def until():
    return wait_until


def tone(frequency: float, samples: int, amplitude: float = 10000.0, rate: int = 8000, start: int = 0) -> np.ndarray:
    t = np.arange(start, start + samples) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


@pytest.fixture
def make_tone():
    return tone
