"""In-band DTMF through the engine: key presses sent as tones in the audio (trunks without
RFC 4733) are reported once each as DtmfDigit(source="inband"), whatever the leg's codec; speech
is not mistaken for digits; the leg keeps relaying to its peer while it listens."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mediacore.events import DtmfDigit
from mediacore.opus_library import load_libopus
from mediacore.rtp import RtpPacket
from native import g711, opus

KEYPAD = "123A456B789C*0#D"
ROWS = (697.0, 770.0, 852.0, 941.0)            # ITU-T Q.23
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
# -10 dBm0 per tone (0 dBm0 is a sine of peak 22706): a typical sending level.
TONE_PEAK = 22706 * 10 ** (-10 / 20)
ON_MS, OFF_MS = 80, 80


def dtmf_audio(digits: str, rate: int = 8000) -> np.ndarray:
    """Silence, then each digit as ON_MS of its two tones and OFF_MS of silence."""
    parts = [np.zeros(rate // 10)]
    t = np.arange(rate * ON_MS // 1000) / rate
    for digit in digits:
        k = KEYPAD.index(digit)
        row, column = ROWS[k // 4], COLUMNS[k % 4]
        parts.append(TONE_PEAK * (np.sin(2 * np.pi * row * t) + np.sin(2 * np.pi * column * t)))
        parts.append(np.zeros(rate * OFF_MS // 1000))
    parts.append(np.zeros(rate // 5))
    return np.round(np.concatenate(parts)).astype(np.int16)


def speech_like(seconds: float, rate: int = 8000, seed: int = 7) -> np.ndarray:
    """Voiced sounds (a gliding pitch with its harmonics shaped by moving formants, as vowels
    are) mixed with noise, at a talker's level: what talk-off protection must reject."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 140 + 60 * np.sin(2 * np.pi * 1.3 * t) + 25 * np.sin(2 * np.pi * 4.1 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    formants = (700 + 300 * np.sin(2 * np.pi * 0.7 * t), 1200 + 500 * np.sin(2 * np.pi * 0.45 * t))
    voice = np.zeros(n)
    for h in range(1, 26):
        frequency = h * pitch
        gain = sum(np.exp(-((frequency - f) / 180.0) ** 2) for f in formants) + 0.05
        voice += gain / h ** 0.5 * np.sin(h * phase)
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    mix = voice * syllables / np.abs(voice).max() * 12000 + rng.normal(0, 800, n)
    return np.clip(np.round(mix), -32768, 32767).astype(np.int16)


def packets_of(audio: np.ndarray, codec: str, pt: int, rate: int = 8000) -> list[RtpPacket]:
    step = rate // 50
    encoder = opus.OpusEncoder(48000, 1, 32000) if codec == "opus" else None
    out = []
    for i in range(len(audio) // step):
        frame = audio[i * step:(i + 1) * step]
        payload = g711.ulaw_encode(frame) if codec == "PCMU" else encoder.encode(frame)
        out.append(RtpPacket(pt, 300 + i, 7000 + i * step, 0xD7F, payload, marker=i == 0))
    return out


async def paced(send, items, interval: float = 0.02) -> None:
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        send(item)


def inband_digits(engine) -> list[DtmfDigit]:
    return [e for e in engine.received if isinstance(e, DtmfDigit)]


async def test_all_16_digits_in_g711_audio_are_reported_once_and_the_relay_goes_on(
        engine, peers, next_event, until):
    a = engine.create_endpoint("PCMU", 0)
    b = engine.create_endpoint("PCMA", 8)
    trunk, agent = peers(), peers()
    engine.set_remote(b, "127.0.0.1", agent.port)
    engine.connect(a, b)
    engine.detect_inband_dtmf(a)
    sent = packets_of(dtmf_audio(KEYPAD), "PCMU", 0)
    await paced(lambda p: trunk.send_rtp(p, a.local_port), sent)
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "D")

    digits = inband_digits(engine)
    assert "".join(d.digit for d in digits) == KEYPAD
    assert {d.source for d in digits} == {"inband"} and {d.endpoint_id for d in digits} == {a.id}
    assert all(ON_MS - 30 <= d.duration_ms <= ON_MS + 30 for d in digits)
    # The agent heard the tones through the µ-law -> A-law relay, packet for packet.
    await until(lambda: engine.stats(b).packets_out == len(sent))
    relayed = [RtpPacket.parse(agent.sock.recvfrom(4096)[0]).payload for _ in sent]
    assert relayed == [g711.ulaw_to_alaw(p.payload) for p in sent]
    assert engine.stats(a).frame_mode

    engine.detect_inband_dtmf(a, False)                  # off: back to the plain relay
    await until(lambda: not engine.stats(a).frame_mode)


async def test_digits_in_opus_audio_are_reported_once(engine, peers, next_event):
    load_libopus()
    a = engine.create_endpoint("opus", 111)
    b = engine.create_endpoint("PCMU", 0)
    trunk, agent = peers(), peers()
    engine.set_remote(b, "127.0.0.1", agent.port)
    engine.connect(a, b)
    engine.detect_inband_dtmf(a)
    await paced(lambda p: trunk.send_rtp(p, a.local_port), packets_of(dtmf_audio(KEYPAD, 48000), "opus", 111, 48000))
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "D")
    digits = inband_digits(engine)
    assert "".join(d.digit for d in digits) == KEYPAD
    assert {d.source for d in digits} == {"inband"}


async def test_speech_gives_no_digits(engine, peers, until):
    a = engine.create_endpoint("PCMU", 0)
    trunk = peers()
    engine.detect_inband_dtmf(a)
    sent = packets_of(speech_like(2.0), "PCMU", 0)
    await paced(lambda p: trunk.send_rtp(p, a.local_port), sent)
    await until(lambda: engine.stats(a).packets_in == len(sent))
    await asyncio.sleep(0.3)                             # the buffered tail is played out
    assert inband_digits(engine) == []


async def test_a_press_signalled_both_as_events_and_as_tones_is_reported_once(engine, peers, next_event):
    # Many trunks send RFC 4733 events and leave the tones in the audio as well.
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    trunk = peers()
    engine.detect_inband_dtmf(a)
    audio = dtmf_audio("9")
    tone_start, tone_frames = 5, ON_MS // 20                 # 100 ms of silence first
    packets = []
    for i, p in enumerate(packets_of(audio, "PCMU", 0)):
        k = i - tone_start
        if 0 <= k < tone_frames + 3:                         # updates, then the end three times
            duration = min(k + 1, tone_frames) * 160
            flags = (0x80 if k >= tone_frames - 1 else 0) | 10
            event = RtpPacket(101, 0, 7000 + tone_start * 160, 0xD7F, bytes([9, flags]) + duration.to_bytes(2, "big"),
                              marker=k == 0)
            packets.append([p, event])
        else:
            packets.append([p])
    seq = 0

    def send(group: list[RtpPacket]) -> None:
        nonlocal seq
        for packet in group:                                 # one sequence space for both (§2.1)
            trunk.send_rtp(RtpPacket(packet.payload_type, seq, packet.timestamp, packet.ssrc, packet.payload,
                                     marker=packet.marker), a.local_port)
            seq += 1

    await paced(send, packets)
    assert await next_event(engine, lambda e: isinstance(e, DtmfDigit)) == DtmfDigit(a.id, "9", ON_MS)
    await asyncio.sleep(0.3)
    assert [(d.digit, d.source) for d in inband_digits(engine)] == [("9", "rfc4733")]


@pytest.mark.parametrize("on", [True, False])
async def test_detection_requests_are_checked(engine, on):
    from mediacore import MediaError

    a = engine.create_endpoint("PCMU", 0)
    engine.detect_inband_dtmf(a, on)
    engine.destroy(a)
    with pytest.raises(MediaError, match="does not exist"):
        engine.detect_inband_dtmf(a, on)
