"""Browser-style agents for `python -m bench webrtc`: aiortc peers that sign in like the softphone
page, register over /ws/agent, answer every call that rings them with an offer of their
"microphone" (a steady tone), and measure what they hear.

Each group of agents runs in a process of its own (`run_group`, started with the "spawn" method)
so that the bench's own aiortc work is spread over cores and its loop does not limit what is
measured. The parent drives it over a multiprocessing pipe: the group answers "ready" once
every agent is registered, then `("mark", None)` snapshots the counters (the measurement window
opens) and `("stop", None)` returns each agent's figures for the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.client import ClientConnection, connect

from mediacore.webrtc import WEBRTC_FRAME, WEBRTC_RATE, pcm_frame

#: Seconds of the newest received audio kept per agent for the tone check.
KEEP_SECONDS = 1.0
#: A decoded 20 ms frame quieter than this (RMS) is a gap in the caller's tone (bench.webrtc).
SILENT_RMS = 1000.0


@dataclass
class AgentSpec:
    username: str
    password: str
    extension: str
    tone_hz: float
    "What the agent's microphone sends (the caller must hear it)."
    expect_hz: float
    "What the agent's caller sends (the agent must hear it)."


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    if len(pcm) < 64:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * rate / len(pcm)


class ToneTrack(MediaStreamTrack):
    """The agent's microphone: a steady tone as Opus, one packet per 20 ms. One second of it is
    encoded once and replayed (a whole number of cycles, so the loop is seamless): the bench's
    own CPU goes to the WebRTC transport, like a browser's, not to re-encoding a constant tone."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate, encoder.layout, encoder.format = WEBRTC_RATE, "mono", "s16"
        encoder.bit_rate = 32000
        encoder.time_base = fractions.Fraction(1, WEBRTC_RATE)
        t = np.arange(2 * WEBRTC_RATE) / WEBRTC_RATE
        pcm = np.round(8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16).tobytes()
        packets = []
        for i in range(2 * 50):
            chunk = pcm[2 * i * WEBRTC_FRAME: 2 * (i + 1) * WEBRTC_FRAME]
            packets += [bytes(p) for p in encoder.encode(pcm_frame(chunk, WEBRTC_RATE, i * WEBRTC_FRAME))]
        self._payloads = packets[-50:]   # the second second: past the encoder's start-up
        self._sample = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            wait = self._start + self._sample / WEBRTC_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        packet = av.Packet(self._payloads[(self._sample // WEBRTC_FRAME) % len(self._payloads)])
        packet.pts = self._sample
        packet.time_base = fractions.Fraction(1, WEBRTC_RATE)
        self._sample += WEBRTC_FRAME
        return packet


@dataclass
class Counters:
    frames: int = 0
    "20 ms frames of audio the agent's browser decoded."
    silent: int = 0
    "Of those, frames without the tone (a gap filled with silence or concealment)."
    packets_received: int = 0
    packets_lost: int = 0


@dataclass
class BenchAgent:
    spec: AgentSpec
    http_url: str
    pc: RTCPeerConnection | None = None
    ws: ClientConnection | None = None
    call_id: str | None = None
    answered_at: float | None = None
    ended: str | None = None
    errors: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    mark: Counters | None = None
    heard: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=int(KEEP_SECONDS * 50)))
    _answers: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def sign_in(self) -> str:
        """The session cookie, from the sign-in form as the page does it (CSRF token and all)."""
        async with httpx.AsyncClient(base_url=self.http_url, timeout=30) as client:
            form = await client.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            if token is None:
                raise RuntimeError("no CSRF token on the sign-in page")
            done = await client.post("/login", data={"username": self.spec.username, "password": self.spec.password,
                                                     "csrf": token.group(1)})
            if done.status_code != 303 or "cc_session" not in client.cookies:
                raise RuntimeError(f"{self.spec.username}: sign-in refused ({done.status_code})")
            return str(client.cookies["cc_session"])

    async def register(self) -> None:
        cookie = await self.sign_in()
        ws_url = self.http_url.replace("http://", "ws://", 1) + "/ws/agent"
        self.ws = await connect(ws_url, additional_headers={"Cookie": f"cc_session={cookie}"},
                                origin=self.http_url, max_size=None)  # type: ignore[arg-type]
        await self._send(type="hello", v=1)
        await self._send(type="register")
        registered = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.get_running_loop().create_task(self._read(registered)))
        await asyncio.wait_for(registered, 30)

    async def _send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def _read(self, registered: asyncio.Future[None]) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "registered" and not registered.done():
                    registered.set_result(None)
                elif kind == "incoming" and self.call_id is None:
                    self.call_id = message["call_id"]
                    self._tasks.append(loop.create_task(self._take(message["call_id"])))
                elif kind == "answer":
                    future = self._answers.pop(message.get("call_id"), None)
                    if future is not None and not future.done():
                        future.set_result(message["sdp"])
                elif kind == "error":
                    self.errors.append(f"{message.get('code')}: {message.get('message')}")
                elif kind == "state" and message.get("state") == "ended" and message.get("call_id") == self.call_id:
                    self.ended = message.get("reason") or "ended"

    async def _take(self, call_id: str) -> None:
        """The softphone's answer: offer media for the ringing call, then take it."""
        try:
            pc = self.pc = RTCPeerConnection()
            pc.addTrack(ToneTrack(self.spec.tone_hz))
            pc.on("track", self._on_track)
            await pc.setLocalDescription(await pc.createOffer())
            answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._answers[call_id] = answer
            await self._send(type="offer", call_id=call_id, sdp=pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=await asyncio.wait_for(answer, 30), type="answer"))
            await self._send(type="answer", call_id=call_id)
            self.answered_at = time.monotonic()
        except Exception as exc:
            self.errors.append(f"answering failed: {exc!r}")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.get_running_loop().create_task(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            if frame.layout.name == "stereo":
                samples = samples[0::2]
            self.counters.frames += max(1, round(len(samples) / WEBRTC_FRAME))
            level = samples.astype(np.float64)
            if len(level) == 0 or np.sqrt(np.mean(level * level)) < SILENT_RMS:
                self.counters.silent += 1
            self.heard.append(samples)

    async def receiver_stats(self) -> Counters:
        counters = Counters(frames=self.counters.frames, silent=self.counters.silent)
        if self.pc is not None:
            with contextlib.suppress(Exception):
                for stat in (await self.pc.getStats()).values():
                    if getattr(stat, "type", "") == "inbound-rtp":
                        counters.packets_received = int(stat.packetsReceived)
                        counters.packets_lost = int(stat.packetsLost)
        return counters

    def heard_hz(self) -> float:
        if not self.heard:
            return 0.0
        return dominant_frequency(np.concatenate(list(self.heard))[-WEBRTC_RATE // 2:], WEBRTC_RATE)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()


async def _group(conn: Connection, http_url: str, specs: list[AgentSpec]) -> None:
    loop = asyncio.get_running_loop()
    agents = [BenchAgent(spec, http_url) for spec in specs]
    commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except (EOFError, OSError):   # the bench is gone
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("stop", None))

    loop.add_reader(conn.fileno(), readable)
    try:
        for agent in agents:   # one after another: sign-in hashes a password (scrypt) each time
            await agent.register()
        conn.send(("ready", None))
        while True:
            command, _ = await commands.get()
            if command == "status":
                conn.send(("status", [{"answered": a.answered_at is not None, "frames": a.counters.frames}
                                      for a in agents]))
            elif command == "mark":
                for agent in agents:
                    agent.mark = await agent.receiver_stats()
                conn.send(("marked", None))
            elif command == "stop":
                results = []
                for agent in agents:
                    now = await agent.receiver_stats()
                    start = agent.mark or Counters()
                    results.append({"extension": agent.spec.extension, "frames": now.frames - start.frames,
                                    "silent": now.silent - start.silent,
                                    "packets_received": now.packets_received - start.packets_received,
                                    "packets_lost": now.packets_lost - start.packets_lost,
                                    "heard_hz": round(agent.heard_hz(), 1), "expect_hz": agent.spec.expect_hz,
                                    "ended": agent.ended, "errors": agent.errors[:5]})
                conn.send(("results", results))
                return
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.send(("failed", repr(exc)))
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())
        await asyncio.gather(*(agent.close() for agent in agents), return_exceptions=True)


def run_group(conn: Connection, http_url: str, specs: list[dict[str, Any]]) -> None:
    """A client process's main (multiprocessing target)."""
    import uvloop

    from mediacore.webrtc_worker import WORKER_NICE

    # Browsers stand in for machines of their own: here they compete for the CPU on the same
    # footing as the server's WebRTC workers, not ahead of them.
    os.nice(WORKER_NICE)

    uvloop.run(_group(conn, http_url, [AgentSpec(**spec) for spec in specs]))
