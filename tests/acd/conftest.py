"""Fixtures of the call-routing tests that run on a real media engine: the engine on a private
port range, and callers (UDP sockets on 127.0.0.1) that press RFC 4733 keys and speak."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import numpy as np
import pytest
import soundfile

from acd.prompt_catalogue import texts
from acd.say import LANGUAGES
from mediacore import MediaEngine
from mediacore.codecs import get_decoder, get_encoder
from mediacore.rtp import RtpPacket

EVENT_PT = 101
KEYS = {str(d): d for d in range(10)} | {"*": 10, "#": 11}


@pytest.fixture
async def engine():
    base = 20000 + 2 * random.randrange(0, 4900)
    eng = MediaEngine("127.0.0.1", base, base + 99)
    await eng.start()
    try:
        yield eng
    finally:
        eng.close()


class Caller:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.seq = 1
        self.ts = 1000

    def press(self, key: str, target: int) -> None:
        for i, duration in enumerate((160, 320, 640, 640, 640)):
            end = i >= 2
            payload = struct.pack("!BBH", KEYS[key], (0x80 if end else 0) | 10, duration)
            packet = RtpPacket(EVENT_PT, self.seq, self.ts, 0x1234, payload, marker=i == 0)
            self.sock.sendto(packet.serialize(), ("127.0.0.1", target))
            self.seq += 1
        self.ts += 2000

    async def speak(self, target: int, seconds: float, frequency: float = 500.0) -> None:
        """Paced µ-law audio (a tone) as a phone sends it."""
        encoder = get_encoder("PCMU")
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(int(seconds * 50)):
            await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
            t = (np.arange(160) + 160 * i) / 8000
            frame = np.round(5000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
            packet = RtpPacket(0, self.seq, self.ts, 0x1234, encoder.encode(frame))
            self.sock.sendto(packet.serialize(), ("127.0.0.1", target))
            self.seq += 1
            self.ts += 160

    def audio_packets(self) -> int:
        """Non-silent audio packets received so far (prompts reach the caller)."""
        count = 0
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return count
            packet = RtpPacket.parse(data)
            pcm = np.frombuffer(packet.payload, dtype=np.uint8)
            count += int(packet.payload_type == 0 and (pcm != 0xFF).any() and (pcm != 0x7F).any())

    def heard(self) -> np.ndarray:
        """The audio received so far (µ-law decoded), emptying the socket."""
        decoder = get_decoder("PCMU")
        frames = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            packet = RtpPacket.parse(data)
            if packet.payload_type == 0:
                frames.append(decoder.decode(packet.payload))
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sounds(tmp_path):
    """Every catalogue prompt as a short tone (0.1 s; 'ivr/welcome' 0.3 s), so flows run fast."""
    root = tmp_path / "sounds"
    for language in LANGUAGES:
        for index, name in enumerate(texts(language)):
            path = root / language / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            seconds = 0.3 if name == "ivr/welcome" else 0.1
            t = np.arange(int(8000 * seconds)) / 8000
            tone = (8000 * np.sin(2 * np.pi * (300 + 10 * index) * t)).astype(np.int16)
            soundfile.write(path, tone, 8000, subtype="PCM_16")
    return root


@pytest.fixture
def make_caller():
    made: list[Caller] = []

    def make() -> Caller:
        caller = Caller()
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.close()
