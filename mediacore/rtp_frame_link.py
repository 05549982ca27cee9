"""The engine side of a WebRTC bridge over plain RTP, for WebRTC worker processes.

A worker process (mediacore.webrtc_worker) runs aiortc for its browsers; its bridges talk to the
server's media engine through an `RtpFrameLink` each: one ordinary engine RTP endpoint per
browser call, so the server relays, bridges and records the browser like any SIP leg (no Python
per packet in the server process).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

from mediacore.engine import BUS_FRAME
from mediacore.errors import MediaError
from mediacore.rtp import RtpPacket
from mediacore.webrtc import MAX_LATENESS, PTIME
from native import g711

_FRAME_BYTES = 2 * BUS_FRAME
_RTP_HEADER = struct.Struct("!BBHII")

#: Browser frames waiting for the RTP send clock, at most: 160 ms, as much as the engine's own
#: PCM ports hold. aiortc hands over frames in bursts (whatever its jitter buffer released after
#: the worker was busy or descheduled); beyond this the oldest is dropped.
MAX_OUTBOX_FRAMES = 8
#: Above this many waiting frames a tick sends two: a burst is worked off at twice the pace, so
#: the added latency falls back to 40 ms within a few ticks instead of staying up for good.
OUTBOX_CATCH_UP = 2
#: Datagrams read per `read_frame` call at most: a link's socket holds a few packets between two
#: 20 ms ticks; the bound keeps a flood from pinning the worker's loop.
MAX_READ_BURST = 32
#: Kernel receive buffer of a link's socket (see mediacore.engine.SOCKET_BUFFER_BYTES).
LINK_SOCKET_BUFFER = 256 * 1024
_RTP_CODECS = {"PCMU": 8000, "L16": 8000}


@dataclass
class RtpLinkStats:
    """What an `RtpFrameLink` moved over its socket."""

    packets_sent: int = 0
    "RTP packets sent to the engine endpoint."
    packets_received: int = 0
    "RTP packets from the engine endpoint that became frames."
    packets_ignored: int = 0
    "Datagrams dropped: from another address, not RTP, another payload type, late or duplicate."
    outbox_overruns: int = 0
    "Browser frames dropped because more than MAX_OUTBOX_FRAMES waited for the send clock."


class RtpFrameLink:
    """A `FrameLink` over plain RTP: 20 ms packets of G.711 µ-law (PCMU, payload type 0) or
    big-endian L16 at 8 kHz exchanged with an ordinary engine RTP endpoint on the same host.

    A WebRTC worker process runs the bridge; the server's engine treats the worker like any
    SIP leg (relays, bridges, records it natively, no Python per packet in the server). Frames
    from the browser are sent on this link's own 20 ms clock (aiortc's decoder releases them in
    bursts; an RTP receiver expects one packet per ptime); frames from the engine are read from
    the non-blocking socket when the bridge's send clock asks for them.

    Only datagrams from the engine endpoint's address are taken: the socket's port is not
    secret, and the engine's RTCP (to our port + 1, RFC 3550 §11) is not ours to parse.
    """

    def __init__(self, sock: socket.socket, remote: tuple[str, int], *, codec: str = "PCMU",
                 payload_type: int = 0) -> None:
        if codec not in _RTP_CODECS:
            raise MediaError(f"an RTP frame link speaks {' or '.join(_RTP_CODECS)}, not {codec!r}")
        if not 0 <= payload_type <= 127:
            raise MediaError(f"payload type must be 0..127, got {payload_type}")
        self.codec = codec
        self.payload_type = payload_type
        self.remote = (remote[0], int(remote[1]))
        self.stats = RtpLinkStats()
        self._sock = sock
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_SOCKET_BUFFER)
        # RFC 3550 §5.1, §8.1: random SSRC, initial sequence number and timestamp.
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._last_seq: int | None = None
        self._pending = bytearray()
        self._inbox: deque[bytes] = deque()
        self._outbox: deque[bytes] = deque()
        self._clock: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._ticks = 0
        self._closed = False

    @property
    def local_port(self) -> int:
        return int(self._sock.getsockname()[1])

    # FrameLink
    def read_frame(self) -> bytes | None:
        if not self._inbox and not self._closed:
            self._receive()
        return self._inbox.popleft() if self._inbox else None

    def write_frame(self, pcm: bytes) -> None:
        if self._closed:
            raise MediaError("the RTP frame link is closed")
        if len(pcm) != _FRAME_BYTES:
            raise MediaError(f"a frame is {_FRAME_BYTES} bytes, got {len(pcm)}")
        self._outbox.append(pcm)
        while len(self._outbox) > MAX_OUTBOX_FRAMES:
            self._outbox.popleft()
            self.stats.outbox_overruns += 1
        if self._clock is None:
            loop = asyncio.get_running_loop()
            self._start, self._ticks = loop.time(), 0
            self._clock = loop.call_soon(self._tick)

    def close(self) -> None:
        self._closed = True
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        self._sock.close()

    # -- internals -----------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._closed:
            return
        for _ in range(2 if len(self._outbox) > OUTBOX_CATCH_UP else 1):
            if self._outbox:
                self._send(self._outbox.popleft())
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._ticks += 1
        due = self._start + self._ticks * PTIME
        if now - due > MAX_LATENESS:
            self._start, self._ticks, due = now, 0, now   # the loop stalled: no catch-up burst
        self._clock = loop.call_at(due, self._tick)

    def _send(self, pcm: bytes) -> None:
        if self.codec == "PCMU":
            payload = g711.ulaw_encode(pcm)
        else:
            payload = np.frombuffer(pcm, dtype=np.int16).astype(">i2").tobytes()   # RFC 3551 §4.5.11
        header = _RTP_HEADER.pack(0x80, self.payload_type, self._seq, self._ts, self._ssrc)
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + BUS_FRAME) & 0xFFFFFFFF
        try:
            self._sock.sendto(header + payload, self.remote)
        except OSError:
            return   # a full socket buffer or the engine endpoint gone: like loss on the wire
        self.stats.packets_sent += 1

    def _receive(self) -> None:
        for _ in range(MAX_READ_BURST):
            try:
                data, source = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return   # e.g. ICMP port unreachable reported on the socket: nothing to read
            if source[:2] != self.remote:
                self.stats.packets_ignored += 1
                continue
            try:
                packet = RtpPacket.parse(data)
            except MediaError:
                self.stats.packets_ignored += 1
                continue
            if packet.payload_type != self.payload_type or not self._in_order(packet.sequence_number):
                self.stats.packets_ignored += 1
                continue
            if self.codec == "PCMU":
                self._pending += g711.ulaw_decode(packet.payload).tobytes()
            else:
                self._pending += np.frombuffer(packet.payload[: len(packet.payload) & ~1], dtype=">i2") \
                    .astype(np.int16).tobytes()
            self.stats.packets_received += 1
            while len(self._pending) >= _FRAME_BYTES:
                self._inbox.append(bytes(self._pending[:_FRAME_BYTES]))
                del self._pending[:_FRAME_BYTES]

    def _in_order(self, seq: int) -> bool:
        # RFC 3550 §A.1: sequence numbers compare modulo 2^16; a packet not newer than the last
        # one taken is a duplicate or came too late to be useful.
        if self._last_seq is not None and not 0 < (seq - self._last_seq) & 0xFFFF < 0x8000:
            return False
        self._last_seq = seq
        return True
