"""The WebRTC bridge: a browser's audio in and out of the media engine.

Browsers speak ICE/DTLS-SRTP and Opus at 48 kHz; the engine speaks 20 ms frames of 16-bit PCM at
`BUS_RATE` (8 kHz). aiortc terminates the browser's side in Python (the architecture's one
exception to "no per-packet Python"), and this module moves frames across:

    browser --Opus--> aiortc decoder --48 kHz stereo--> Resampler --8 kHz, 160 samples--> engine port
    browser <--Opus-- aiortc encoder (resamples to 48 kHz) <--8 kHz, 160 samples-- engine port

Both directions resample with libswresample (PyAV's AudioResampler). Toward the browser the
frames are handed to aiortc at 8 kHz: its Opus encoder runs every frame through its own
AudioResampler (to 48 kHz stereo) anyway, so upsampling here first would resample twice; and its
sender computes the RFC 6465 audio level over every sample in pure Python, six times cheaper on
160 samples than on 960 (measured: 0.12 ms against 0.74 ms per frame on a loaded core).

The engine side is anything with `read_frame()`/`write_frame()` (`FrameLink`), normally a PCM port
of the `MediaEngine` (`EnginePortLink`), so the resampling and pacing are testable on their own.

ICE: the server offers host candidates only, so answering never waits on a STUN or TURN server
(gathering host candidates is binding a socket per local address). Browsers behind NAT get the
configured STUN/TURN servers (`WebRtcSettings.ice_servers`) and trickle their reflexive and relay
candidates to us; we learn the rest as peer-reflexive candidates (RFC 8445 §7.3.1.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from mediacore.engine import BUS_FRAME, MediaEngine, PcmPort
from mediacore.errors import MediaError
from mediacore.prompts import BUS_RATE

log = logging.getLogger(__name__)

#: WebRTC's audio clock: Opus always runs its RTP clock at 48 kHz (RFC 7587 §4.1).
WEBRTC_RATE = 48000
#: One packet per 20 ms, the ptime browsers use for Opus and the engine's frame.
PTIME = 0.020
WEBRTC_FRAME = int(WEBRTC_RATE * PTIME)
#: Frames from the engine waiting to be sent to the browser, at most. The engine and this bridge
#: tick on the same monotonic clock but are scheduled independently; 3 frames (60 ms) absorb the
#: loop's scheduling jitter, and anything beyond is dropped so latency cannot creep up.
MAX_QUEUED_FRAMES = 3
#: Frames queued from the engine before the first is sent, and again after the queue ran dry:
#: one frame of allowance (the second waits while the first plays) so that the next frame
#: arriving a few milliseconds after its tick (the two clocks drift in phase; a busy machine
#: delays either) finds one queued instead of leaving a gap of silence. Costs 20 ms of delay.
JITTER_FRAMES = 2
#: If the event loop stalls longer than this, restart the send clock instead of bursting out
#: every frame missed (a burst only fills the browser's jitter buffer with stale audio).
MAX_LATENESS = 0.200
#: Largest SDP accepted from a browser. Chromium's audio-only offers are ~3-5 KB; a bound keeps
#: a hostile client from making the SDP parser chew megabytes.
MAX_SDP_BYTES = 64 * 1024

#: Remote candidates accepted per peer connection. A browser offers a handful (host, mDNS,
#: reflexive and relay per interface); every one adds pairs to check (RFC 8445 §6.1.2), so a
#: hostile client must not add thousands.
MAX_REMOTE_CANDIDATES = 64

_FRAME_BYTES = 2 * BUS_FRAME
_SILENCE = bytes(_FRAME_BYTES)


class FrameLink(Protocol):
    """The engine side of a bridge: 20 ms frames of int16 mono PCM at BUS_RATE."""

    def read_frame(self) -> bytes | None:
        """The next frame the engine produced for the browser, None if there is none yet."""

    def write_frame(self, pcm: bytes) -> None:
        """Hand the engine the browser's next frame."""


class EnginePortLink:
    """A `FrameLink` over a PCM port of the media engine."""

    def __init__(self, engine: MediaEngine, port: PcmPort) -> None:
        self.engine = engine
        self.port = port

    def read_frame(self) -> bytes | None:
        return self.engine.read_frame(self.port)

    def write_frame(self, pcm: bytes) -> None:
        self.engine.write_frame(self.port, pcm)


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server for agents behind NAT (the browser's RTCIceServer)."""

    urls: tuple[str, ...]
    "stun:host:port, turn:host:port?transport=udp, turns:host:443?transport=tcp"
    username: str | None = None
    "TURN only."
    credential: str | None = None
    "TURN only."

    def __post_init__(self) -> None:
        if not self.urls:
            raise MediaError("an ICE server needs at least one URL")
        for url in self.urls:
            scheme = url.split(":", 1)[0].lower()
            if scheme not in ("stun", "stuns", "turn", "turns") or ":" not in url:
                raise MediaError(f"ICE server URL must be stun:, stuns:, turn: or turns:, got {url!r}")
            # RFC 7065 §3: a TURN URI needs credentials to allocate a relay.
            if scheme.startswith("turn") and (self.username is None or self.credential is None):
                raise MediaError(f"TURN server {url!r} needs a username and a credential")

    def to_browser(self) -> dict[str, object]:
        """The RTCIceServer dictionary handed to the browser's RTCPeerConnection."""
        entry: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


@dataclass(frozen=True)
class WebRtcSettings:
    """How agent browsers connect. Configured once per process."""

    ice_servers: tuple[IceServer, ...] = ()
    "STUN/TURN servers handed to browsers (ours offers host candidates only: see the module doc)."


@dataclass
class BridgeStats:
    """What one bridge moved, for the call's log line and the bench."""

    frames_to_engine: int = 0
    "20 ms frames of browser audio written to the engine."
    frames_from_engine: int = 0
    "Frames the engine produced for the browser that were sent."
    engine_underruns: int = 0
    "Send ticks where the engine had no frame ready: silence was sent instead."
    engine_overruns: int = 0
    "Engine frames dropped because more than MAX_QUEUED_FRAMES waited (latency bound)."
    clock_resets: int = 0
    "Times the send clock restarted after the event loop stalled for more than MAX_LATENESS."


# -- resampling -------------------------------------------------------------------------------


class Resampler:
    """int16 mono PCM from one rate to another in fixed-size frames, through libswresample
    (PyAV's AudioResampler: a windowed-sinc filter, so 8 kHz -> 48 kHz adds no images above
    4 kHz and 48 kHz -> 8 kHz filters before decimating). Input frames may be any layout;
    output is mono. The filter delays the signal by a few samples: the first frame out is
    padded with silence at its start, after which every `push` of one input frame's worth
    yields exactly one output frame."""

    def __init__(self, rate_out: int, frame_out: int) -> None:
        self.rate_out = rate_out
        self.frame_out = frame_out
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
        self._pending = bytearray()
        self._primed = False

    def push(self, frame: av.AudioFrame) -> list[bytes]:
        """Resample one frame; return the whole output frames now available (int16 bytes)."""
        for out in self._resampler.resample(frame):
            self._pending += out.to_ndarray().tobytes()
        size = 2 * self.frame_out
        if not self._primed:
            if not self._pending:
                return []
            self._primed = True
            if len(self._pending) < size:
                # The filter's start-up delay: pad once so output is whole frames from now on.
                self._pending[:0] = bytes(size - len(self._pending))
        frames = []
        while len(self._pending) >= size:
            frames.append(bytes(self._pending[:size]))
            del self._pending[:size]
        return frames


def pcm_frame(pcm: bytes, rate: int, pts: int) -> av.AudioFrame:
    """An av.AudioFrame of int16 mono `pcm` at `rate`, timestamped `pts` in 1/rate units."""
    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16",
                                       layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame


# -- the two directions -----------------------------------------------------------------------


class EngineAudioTrack(MediaStreamTrack):
    """What the browser hears: the engine's frames at BUS_RATE (aiortc's Opus encoder resamples
    them to 48 kHz), one every 20 ms on the loop's monotonic clock (aiortc's sender asks for the
    next frame as soon as it has sent one; this track sets the pace)."""

    kind = "audio"

    def __init__(self, link: FrameLink, stats: BridgeStats) -> None:
        super().__init__()
        self._link = link
        self._stats = stats
        self._queue: deque[bytes] = deque()
        self._start: float | None = None
        self._ticks = 0
        self._pts = 0
        self._priming = True
        self.on_hold = False
        "While True the browser hears silence (the engine's frames are still drained)."

    async def recv(self) -> av.AudioFrame | av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        else:
            self._ticks += 1
            due = self._start + self._ticks * PTIME
            if now - due > MAX_LATENESS:
                self._stats.clock_resets += 1
                self._start, self._ticks = now, 0
            elif due > now:
                await asyncio.sleep(due - now)
        frame = self._output(self._next_engine_frame(), self._pts)
        self._pts += BUS_FRAME
        return frame

    def _output(self, pcm: bytes, pts: int) -> av.AudioFrame | av.Packet:
        return pcm_frame(pcm, BUS_RATE, pts)

    def _next_engine_frame(self) -> bytes:
        # Take what the engine has ready, keep the newest few (bounded latency). The engine
        # queues at most a few frames per port; the bound only guards the loop against a link
        # that never runs dry.
        for _ in range(4 * MAX_QUEUED_FRAMES):
            frame = self._link.read_frame()
            if frame is None:
                break
            self._queue.append(frame)
        while len(self._queue) > MAX_QUEUED_FRAMES:
            self._queue.popleft()
            self._stats.engine_overruns += 1
        if self._priming:
            if len(self._queue) < JITTER_FRAMES:
                self._stats.engine_underruns += 1
                return _SILENCE
            self._priming = False
        if not self._queue:
            self._stats.engine_underruns += 1
            self._priming = True
            return _SILENCE
        frame = self._queue.popleft()
        if self.on_hold:
            return _SILENCE
        self._stats.frames_from_engine += 1
        return frame


#: Opus toward the browser when the bridge encodes it itself: mono voice at the engine's 8 kHz
#: (narrowband, RFC 6716 §2.1.2: all a telephone leg carries) needs no more than this.
NARROWBAND_BITRATE = 24000
#: libopus complexity 0-10; 5 costs about a third of 10 here with no audible difference on
#: narrowband voice (measured: 120 µs against 140 µs, aiortc's own 48 kHz stereo path 530 µs).
NARROWBAND_COMPLEXITY = "5"


class OpusEngineTrack(EngineAudioTrack):
    """An `EngineAudioTrack` that hands aiortc ready Opus packets instead of PCM frames.

    aiortc encodes PCM frames in a thread pool, one hand-off per 20 ms frame, after resampling
    them to 48 kHz stereo for its 96 kbit/s encoder. The engine's audio is 8 kHz mono: encoded
    here as it is (Opus takes 8 kHz input, its RTP clock still counts 48 kHz, RFC 7587 §4.1), in
    the loop's thread, it costs a fraction of that. aiortc sends packets as they come (its
    "pre-encoded" path); it then adds no RFC 6464 audio level, which is optional."""

    def __init__(self, link: FrameLink, stats: BridgeStats) -> None:
        super().__init__(link, stats)
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = BUS_RATE
        self._encoder.layout = "mono"
        self._encoder.format = "s16"
        self._encoder.bit_rate = NARROWBAND_BITRATE
        self._encoder.options = {"application": "voip", "compression_level": NARROWBAND_COMPLEXITY}
        self._encoder.time_base = fractions.Fraction(1, BUS_RATE)

    def _output(self, pcm: bytes, pts: int) -> av.AudioFrame | av.Packet:
        packets = self._encoder.encode(pcm_frame(pcm, BUS_RATE, pts))
        if not packets:
            # libopus answers every 20 ms frame with a packet; should it ever hold one back,
            # aiortc's own encoder covers the frame (each Opus packet describes itself).
            return pcm_frame(pcm, BUS_RATE, pts)
        packet = packets[-1]
        # Our frame clock, not the encoder's (which starts at minus its look-ahead): one packet
        # per frame, 160 samples apart, so the RTP timestamps advance by 960 (RFC 7587 §4.1).
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, BUS_RATE)
        return packet


async def pump_to_engine(track: MediaStreamTrack, link: FrameLink, stats: BridgeStats,
                         muted: Callable[[], bool]) -> None:
    """What the far end hears: the browser's decoded audio (aiortc gives 48 kHz stereo frames),
    downsampled to BUS_RATE and written to the engine in 20 ms frames until the track ends.
    While `muted()` the engine gets silence, so the far end's jitter buffer keeps its clock."""
    resampler = Resampler(BUS_RATE, BUS_FRAME)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        for pcm in resampler.push(frame):
            try:
                link.write_frame(_SILENCE if muted() else pcm)
            except MediaError as exc:
                log.info("WebRTC bridge: engine port gone (%s); stop feeding it", exc)
                return
            stats.frames_to_engine += 1


# -- one agent call ---------------------------------------------------------------------------


@dataclass
class BridgeState:
    """The peer connection's state as the signalling layer reports it."""

    connection: str = "new"
    "RTCPeerConnection.connectionState: new, connecting, connected, failed, closed."
    muted: bool = False
    "The agent's microphone is off: the engine gets silence."
    held: bool = False
    "On hold: silence both ways."
    remote_candidates: int = 0
    "Candidates the browser trickled to the current peer connection."
    history: list[str] = field(default_factory=list)
    "Connection states seen, in order (a handful per call: for the call's log)."


class WebRtcBridge:
    """One browser call leg: an RTCPeerConnection whose audio is bridged to a `FrameLink`.

    The browser makes the offer (it knows its microphone); `accept_offer` returns our answer as
    soon as host candidates are gathered. The browser's candidates trickle in through
    `add_candidate`. A second offer (the browser reconnected, or its network changed) replaces
    the peer connection while the engine side stays: media resumes on the new path (an ICE
    restart in effect, RFC 8445 §9).
    """

    def __init__(self, link: FrameLink, *, on_state: Callable[[str], None] | None = None,
                 narrowband_opus: bool = True) -> None:
        self.link = link
        self.narrowband_opus = narrowband_opus
        "Encode the browser's Opus from the 8 kHz frames here (OpusEngineTrack), not in aiortc."
        self.stats = BridgeStats()
        self.state = BridgeState()
        self._on_state = on_state
        self._pc: RTCPeerConnection | None = None
        self._track: EngineAudioTrack | None = None
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connection_state(self) -> str:
        return self.state.connection

    async def accept_offer(self, sdp: str) -> str:
        """Answer the browser's SDP offer; returns the answer SDP (with our host candidates)."""
        if self._closed:
            raise MediaError("the WebRTC bridge is closed")
        if not isinstance(sdp, str) or not sdp.strip():
            raise MediaError("the offer is empty")
        if len(sdp) > MAX_SDP_BYTES:
            raise MediaError(f"the offer is larger than {MAX_SDP_BYTES} bytes")
        if "m=audio" not in sdp:
            raise MediaError("the offer has no audio stream (m=audio)")
        await self._drop_peer()
        self.state.remote_candidates = 0
        # Host candidates only: no STUN/TURN round trip stands between the offer and our answer.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        track = (OpusEngineTrack if self.narrowband_opus else EngineAudioTrack)(self.link, self.stats)
        track.on_hold = self.state.held
        self._track = track
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", lambda: self._set_state(pc))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            if not audio:
                raise MediaError("the offer has no audio stream we can use")
            audio[0].sender.replaceTrack(track)
            audio[0].direction = "sendrecv"
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except MediaError:
            await self._drop_peer()
            raise
        except Exception as exc:  # aiortc raises ValueError/InvalidStateError on bad SDP
            await self._drop_peer()
            raise MediaError(f"cannot answer the offer: {exc}") from None
        return pc.localDescription.sdp

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None = None,
                            sdp_mline_index: int | None = None) -> None:
        """A trickled remote candidate (the `candidate:` line's value), None at end of candidates."""
        pc = self._pc
        if pc is None or self._closed:
            raise MediaError("no offer yet: a candidate needs a peer connection")
        if candidate is None or candidate == "":
            await pc.addIceCandidate(None)  # type: ignore[arg-type]  # end-of-candidates (RFC 8838 §4.4)
            return
        if self.state.remote_candidates >= MAX_REMOTE_CANDIDATES:
            raise MediaError(f"more than {MAX_REMOTE_CANDIDATES} ICE candidates")
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError):
            # RFC 8839 §5.1: foundation component transport priority address port "typ" type
            raise MediaError(f"malformed ICE candidate: {candidate[:200]!r}") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index if sdp_mline_index is not None else (0 if sdp_mid is None else None)
        if parsed.protocol.lower() != "udp":
            return  # aioice does not do ICE-TCP (RFC 6544); the browser's UDP candidates suffice
        await pc.addIceCandidate(parsed)
        self.state.remote_candidates += 1

    def set_muted(self, muted: bool) -> None:
        """The agent's microphone off: the far end hears silence."""
        self.state.muted = muted

    def set_held(self, held: bool) -> None:
        """Hold: neither side hears the other (the far end's music is the call's business)."""
        self.state.held = held
        if self._track is not None:
            self._track.on_hold = held

    async def close(self) -> None:
        """Hang up the browser side; the engine port is the caller's to destroy."""
        self._closed = True
        await self._drop_peer()
        self.state.connection = "closed"

    # -- internals -----------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        if self._pump is not None:
            self._pump.cancel()
        self._pump = asyncio.get_running_loop().create_task(
            pump_to_engine(track, self.link, self.stats, lambda: self.state.muted or self.state.held),
            name="webrtc-pump")

    def _set_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self._pc:
            return  # a replaced peer connection closing
        self.state.connection = pc.connectionState
        self.state.history.append(pc.connectionState)
        if self._on_state is not None:
            try:
                self._on_state(pc.connectionState)
            except Exception:
                log.exception("WebRTC state handler failed")

    async def _drop_peer(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
        pc, self._pc = self._pc, None
        if self._track is not None:
            self._track.stop()
            self._track = None
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
