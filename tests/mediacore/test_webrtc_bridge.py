"""The WebRTC bridge between two aiortc peers in this process: a "browser" peer (aiortc standing
in for Chromium) and the server's `WebRtcBridge`, over real ICE/DTLS-SRTP on this host's
addresses. Audio flows both ways as Opus at 48 kHz and reaches the engine side as 8 kHz frames
of the same pitch; with the real engine's PCM port in echo, the browser hears itself."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from mediacore.engine import BUS_FRAME, MediaEngine
from mediacore.errors import MediaError
from mediacore.prompts import BUS_RATE
from mediacore.webrtc import (
    WEBRTC_FRAME,
    WEBRTC_RATE,
    EnginePortLink,
    IceServer,
    Resampler,
    WebRtcBridge,
    pcm_frame,
)

pytestmark = pytest.mark.timeout(60)


def sine(frequency: float, start: int, samples: int, rate: int, amplitude: float = 8000.0) -> bytes:
    t = np.arange(start, start + samples) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16).tobytes()


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    windowed = pcm.astype(np.float64) * np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * rate / len(pcm)


class ToneTrack(MediaStreamTrack):
    """The browser's microphone: a steady tone at 48 kHz in 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / WEBRTC_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = pcm_frame(sine(self.frequency, self._pts, WEBRTC_FRAME, WEBRTC_RATE), WEBRTC_RATE, self._pts)
        self._pts += WEBRTC_FRAME
        return frame


class ToneLink:
    """The engine side without an engine: a tone at 8 kHz, one frame per 20 ms of its clock
    (as the engine produces them), and a record of what it is given."""

    def __init__(self, frequency: float) -> None:
        self.frequency = frequency
        self.sample = 0
        self.written: list[bytes] = []
        self._start = time.monotonic()

    def read_frame(self) -> bytes | None:
        if self.sample >= (time.monotonic() - self._start) * BUS_RATE:
            return None
        pcm = sine(self.frequency, self.sample, BUS_FRAME, BUS_RATE)
        self.sample += BUS_FRAME
        return pcm

    def write_frame(self, pcm: bytes) -> None:
        assert len(pcm) == 2 * BUS_FRAME
        self.written.append(pcm)


class Browser:
    """An aiortc peer that offers audio the way a browser does and records what it hears."""

    def __init__(self, frequency: float) -> None:
        self.pc = RTCPeerConnection()
        self.pc.addTrack(ToneTrack(frequency))
        self.heard: list[np.ndarray] = []
        self.rates: set[int] = set()
        self._recorder: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._recorder = asyncio.get_running_loop().create_task(self._record(track))

    async def _record(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.rates.add(frame.sample_rate)
            samples = frame.to_ndarray().reshape(-1)
            if frame.layout.name == "stereo":
                samples = samples[0::2]  # packed s16 stereo: left channel
            self.heard.append(samples)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def last(self, seconds: float) -> np.ndarray:
        pcm = np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)
        return pcm[-int(seconds * WEBRTC_RATE):]

    async def close(self) -> None:
        await self.pc.close()
        if self._recorder is not None:
            self._recorder.cancel()


async def wait_until(condition, timeout: float = 15.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


# -- resampling on its own -----------------------------------------------------------------


def test_a_1khz_tone_at_8khz_comes_out_at_48khz_with_the_same_pitch_and_level() -> None:
    up = Resampler(WEBRTC_RATE, WEBRTC_FRAME)
    out = []
    for i in range(50):
        out += up.push(pcm_frame(sine(1000, i * BUS_FRAME, BUS_FRAME, BUS_RATE), BUS_RATE, i * BUS_FRAME))
    assert all(len(f) == 2 * WEBRTC_FRAME for f in out)
    assert len(out) == 50  # one 20 ms frame out per 20 ms frame in, from the first
    pcm = np.frombuffer(b"".join(out[10:]), dtype=np.int16)
    assert abs(dominant_frequency(pcm, WEBRTC_RATE) - 1000) < 5
    assert 0.9 < np.sqrt(np.mean(pcm.astype(float) ** 2)) / (8000 / np.sqrt(2)) < 1.1
    # Nothing imaged above the 4 kHz band edge (what a naive sample-repeat would leave at 7 kHz).
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    bins = np.fft.rfftfreq(len(pcm), 1 / WEBRTC_RATE)
    assert spectrum[bins > 4500].max() < spectrum.max() * 1e-2


def test_48khz_stereo_comes_down_to_8khz_mono_frames_of_160_samples() -> None:
    down = Resampler(BUS_RATE, BUS_FRAME)
    out = []
    for i in range(50):
        mono = np.frombuffer(sine(440, i * WEBRTC_FRAME, WEBRTC_FRAME, WEBRTC_RATE), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = WEBRTC_RATE
        frame.pts = i * WEBRTC_FRAME
        frame.time_base = fractions.Fraction(1, WEBRTC_RATE)
        out += down.push(frame)
    assert len(out) == 50 and all(len(f) == 2 * BUS_FRAME for f in out)
    pcm = np.frombuffer(b"".join(out[5:]), dtype=np.int16)
    assert abs(dominant_frequency(pcm, BUS_RATE) - 440) < 5


def test_ice_servers_are_checked_and_handed_to_browsers_as_rtc_ice_servers() -> None:
    stun = IceServer(("stun:stun.example.net:3478",))
    turn = IceServer(("turn:turn.example.net:3478?transport=udp",), username="agent", credential="pw")
    assert stun.to_browser() == {"urls": ["stun:stun.example.net:3478"]}
    assert turn.to_browser() == {"urls": ["turn:turn.example.net:3478?transport=udp"], "username": "agent",
                                 "credential": "pw"}
    with pytest.raises(MediaError, match="username"):
        IceServer(("turn:turn.example.net",))
    with pytest.raises(MediaError, match="stun:"):
        IceServer(("http://example.net",))


# -- two peers -----------------------------------------------------------------------------


async def test_audio_flows_both_ways_between_a_browser_peer_and_the_bridge() -> None:
    browser = Browser(frequency=440)
    link = ToneLink(frequency=1000)
    states: list[str] = []
    bridge = WebRtcBridge(link, on_state=states.append)
    try:
        offer = await browser.offer()
        # Trickle ICE: the offer goes without candidates, which follow one by one.
        lines = offer.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        assert candidates
        bare = "\r\n".join(line for line in lines if not line.startswith("a=candidate:")
                           and line != "a=end-of-candidates") + "\r\n"
        answer = await bridge.accept_offer(bare)
        assert "a=candidate:" in answer  # our host candidates come with the answer
        await browser.accept(answer)
        for candidate in candidates:
            await bridge.add_candidate(candidate, sdp_mid="0", sdp_mline_index=0)
        await bridge.add_candidate(None)
        await wait_until(lambda: bridge.connection_state == "connected")
        await wait_until(lambda: len(link.written) >= 60 and len(browser.heard) >= 60)

        # The browser's 440 Hz at 48 kHz reaches the engine side as 440 Hz at 8 kHz...
        to_engine = np.frombuffer(b"".join(link.written[-25:]), dtype=np.int16)
        assert abs(dominant_frequency(to_engine, BUS_RATE) - 440) < 10
        assert np.sqrt(np.mean(to_engine.astype(float) ** 2)) > 2000  # Opus keeps the level
        # ... and the engine's 1 kHz at 8 kHz reaches the browser as 1 kHz at 48 kHz.
        assert browser.rates == {WEBRTC_RATE}
        heard = browser.last(0.5)
        assert abs(dominant_frequency(heard, WEBRTC_RATE) - 1000) < 10
        assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 2000
        assert bridge.stats.frames_to_engine >= 60 and bridge.stats.frames_from_engine >= 60
        assert "connected" in states

        # Mute: the engine gets silence frames (its clock keeps running), not nothing.
        bridge.set_muted(True)
        before = len(link.written)
        await wait_until(lambda: len(link.written) >= before + 20)
        muted = np.frombuffer(b"".join(link.written[-10:]), dtype=np.int16)
        assert not muted.any()
    finally:
        await bridge.close()
        await browser.close()
    assert bridge.connection_state == "closed"


async def test_a_second_offer_replaces_the_path_and_media_resumes() -> None:
    """The browser reconnected (or changed networks) and offers again: the engine side stays."""
    link = ToneLink(frequency=1000)
    bridge = WebRtcBridge(link)
    first, second = Browser(440), Browser(660)
    try:
        await first.accept(await bridge.accept_offer(await first.offer()))
        await wait_until(lambda: len(link.written) >= 25)
        await second.accept(await bridge.accept_offer(await second.offer()))
        count = len(link.written)
        await wait_until(lambda: len(link.written) >= count + 50)
        to_engine = np.frombuffer(b"".join(link.written[-25:]), dtype=np.int16)
        assert abs(dominant_frequency(to_engine, BUS_RATE) - 660) < 10
        await wait_until(lambda: len(second.heard) >= 25)
    finally:
        await bridge.close()
        await first.close()
        await second.close()


async def test_bad_offers_and_candidates_get_clear_errors() -> None:
    bridge = WebRtcBridge(ToneLink(1000))
    try:
        with pytest.raises(MediaError, match="no offer yet"):
            await bridge.add_candidate("1 1 udp 2130706431 192.0.2.1 5000 typ host")
        with pytest.raises(MediaError, match="empty"):
            await bridge.accept_offer("")
        with pytest.raises(MediaError, match="m=audio"):
            await bridge.accept_offer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
        with pytest.raises(MediaError, match="cannot answer"):
            await bridge.accept_offer("v=0\r\nm=audio nonsense\r\n")
        browser = Browser(440)
        try:
            await bridge.accept_offer(await browser.offer())
            with pytest.raises(MediaError, match="malformed ICE candidate"):
                await bridge.add_candidate("garbage", sdp_mid="0")
        finally:
            await browser.close()
    finally:
        await bridge.close()


# -- through the real engine ---------------------------------------------------------------


@pytest.fixture
async def engine(port_range):
    eng = MediaEngine("127.0.0.1", *port_range)
    await eng.start()
    try:
        yield eng
    finally:
        eng.close()


async def test_the_echo_test_through_the_engine_pcm_port_sends_the_browser_its_own_tone(engine) -> None:
    if not hasattr(MediaEngine, "create_pcm_port"):
        pytest.skip("the media engine has no PCM port yet (create_pcm_port)")
    port = engine.create_pcm_port()
    engine.echo(port)
    browser = Browser(frequency=1000)
    bridge = WebRtcBridge(EnginePortLink(engine, port))
    try:
        await browser.accept(await bridge.accept_offer(await browser.offer()))
        await wait_until(lambda: bridge.stats.frames_from_engine >= 50 and len(browser.heard) >= 100)
        heard = browser.last(0.5)
        # 1 kHz out, through Opus, 48 -> 8 kHz, the engine's echo, 8 -> 48 kHz, Opus, and back.
        assert abs(dominant_frequency(heard, WEBRTC_RATE) - 1000) < 10
        assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 2000
    finally:
        await bridge.close()
        await browser.close()
        engine.destroy(port)
