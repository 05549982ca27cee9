"""Transcoding in the engine: G.711, L16 (8/16/48 kHz) and Opus through the codec slot, on
loopback sockets. A tone goes in as one codec and must come out as another at the right
frequency and level, on one continuous stream stamped in the output codec's clock; what lies
above the 8 kHz bus's band must be removed, not folded into it (aliasing)."""

from __future__ import annotations

import numpy as np
import pytest

from mediacore import MediaError
from mediacore.codecs import UnsupportedCodec, engine_codec
from mediacore.events import DtmfDigit, StreamStats
from mediacore.opus_library import load_libopus
from mediacore.rtp import RtpPacket
from native import codecslot, g711, opus
from tests.mediacore.test_engine_frames import paced, receive_until_quiet

OPUS_PT = 111


@pytest.fixture(autouse=True, scope="module")
def libopus() -> None:
    load_libopus()


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate), magnitude


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    freqs, magnitude = spectrum(samples, rate)
    return float(freqs[np.argmax(magnitude)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def level_db(samples: np.ndarray, reference: float) -> float:
    return 20 * np.log10(max(rms(samples), 1e-3) / reference)     # digital silence: -137 dB


def steady(samples: np.ndarray, rate: int) -> np.ndarray:
    """The middle of a received tone: without the jitter buffer's start and concealed end."""
    return samples[len(samples) // 5: len(samples) * 3 // 5 + rate // 10][: rate // 2]


# What each codec puts in one 20 ms payload and takes out of it.

def encode_packets(codec: str, rate: int, audio: np.ndarray, *, pt: int, ssrc: int = 0x1234) -> list[RtpPacket]:
    step = rate // 50
    encoder = opus.OpusEncoder(48000, 1, 32000) if codec == "opus" else None
    packets = []
    for i in range(len(audio) // step):
        frame = audio[i * step:(i + 1) * step]
        if codec == "PCMU":
            payload = g711.ulaw_encode(frame)
        elif codec == "PCMA":
            payload = g711.alaw_encode(frame)
        elif codec == "L16":
            payload = frame.astype(">i2").tobytes()      # RFC 3551 §4.5.11: network byte order
        else:
            payload = encoder.encode(frame)
        packets.append(RtpPacket(pt, 1000 + i, 5000 + i * step, ssrc, payload, marker=i == 0))
    return packets


def decode_packets(codec: str, packets: list[RtpPacket]) -> np.ndarray:
    decoder = opus.OpusDecoder(48000, 1) if codec == "opus" else None
    parts = []
    for p in packets:
        if codec == "PCMU":
            parts.append(g711.ulaw_decode(p.payload))
        elif codec == "PCMA":
            parts.append(g711.alaw_decode(p.payload))
        elif codec == "L16":
            parts.append(np.frombuffer(p.payload, dtype=">i2").astype(np.int16))
        else:
            parts.append(decoder.decode(p.payload))
    return np.concatenate(parts)


def assert_one_stream(packets: list[RtpPacket], *, pt: int, step: int) -> None:
    """RFC 3550 §5.1: one SSRC, sequence +1 and the codec's 20 ms of clock per packet."""
    assert len({p.ssrc for p in packets}) == 1
    assert {p.payload_type for p in packets} == {pt}
    for before, after in zip(packets, packets[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == step


async def transcode(engine, peers, source: tuple, sink: tuple, audio: np.ndarray) -> tuple[list[RtpPacket], object, object]:
    """Send `audio` as `source` (codec, rate, pt) into endpoint a, connected to b with `sink`;
    return the packets b sent to its far end."""
    a = engine.create_endpoint(source[0], source[2], clock_rate=source[1])
    b = engine.create_endpoint(sink[0], sink[2], clock_rate=sink[1])
    trunk, phone = peers(), peers()
    engine.set_remote(a, "127.0.0.1", trunk.port)
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    packets = encode_packets(source[0], source[1], audio, pt=source[2])
    await paced(lambda p: trunk.send_rtp(p, a.local_port), packets)
    return await receive_until_quiet(phone), a, b


INPUT_RMS = 10000 / np.sqrt(2)


@pytest.mark.parametrize(("source", "sink"), [
    (("PCMU", 8000, 0), ("opus", 48000, OPUS_PT)),
    (("opus", 48000, OPUS_PT), ("PCMU", 8000, 0)),
    (("L16", 16000, 97), ("PCMA", 8000, 8)),
    (("PCMA", 8000, 8), ("L16", 16000, 97)),
    (("L16", 48000, 98), ("L16", 8000, 99)),
    (("L16", 48000, 98), ("opus", 48000, OPUS_PT)),
], ids=["pcmu-opus", "opus-pcmu", "l16_16k-pcma", "pcma-l16_16k", "l16_48k-l16_8k", "l16_48k-opus"])
async def test_a_tone_is_transcoded_at_its_frequency_and_level(engine, peers, source, sink):
    audio = sine(1000.0, 0.6, source[1])
    got, a, b = await transcode(engine, peers, source, sink, audio)

    assert_one_stream(got, pt=sink[2], step=sink[1] // 50)
    assert got[0].marker
    assert engine.stats(a).frame_mode and engine.stats(b).dropped == 0
    if sink[0] == "L16":
        assert {len(p.payload) for p in got} == {2 * sink[1] // 50}
    out = steady(decode_packets(sink[0], got), sink[1])
    assert peak_frequency(out, sink[1]) == pytest.approx(1000.0, abs=10)
    assert level_db(out, INPUT_RMS) == pytest.approx(0.0, abs=2.0)


async def test_l16_is_big_endian_on_the_wire(engine, peers):
    # A ramp through the engine at the bus rate: µ-law in, L16/8000 out, sample for sample (the
    # µ-law decoding of each code word, in network byte order).
    codes = bytes(range(0, 256, 2)) + bytes(range(1, 256, 2)) + bytes(range(0, 256, 8))
    packets = [RtpPacket(0, 10 + i, 160 * i, 0x99, codes[:160] if i % 2 else codes[-160:]) for i in range(20)]
    a = engine.create_endpoint("PCMU", 0)
    b = engine.create_endpoint("L16", 96, clock_rate=8000)
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    await paced(lambda p: trunk.send_rtp(p, a.local_port), packets)
    got = await receive_until_quiet(phone)
    expected = {g711.ulaw_decode(p.payload).astype(">i2").tobytes() for p in packets}
    assert sum(p.payload in expected for p in got) + engine.stats(a).late >= len(packets)


async def test_nothing_above_the_bus_band_aliases_into_it(engine, peers):
    # 3.4 kHz from 48 kHz down to the 8 kHz bus: the tone stays where it is, and nothing big
    # appears below 3 kHz (a poor decimator would fold images and leak into the speech band).
    # L16 out, so that G.711's own distortion (its 3rd harmonic folds to 2.2 kHz) is not measured.
    got, _, _ = await transcode(engine, peers, ("L16", 48000, 98), ("L16", 8000, 99), sine(3400.0, 0.6, 48000))
    out = steady(decode_packets("L16", got), 8000)
    freqs, magnitude = spectrum(out, 8000)
    peak = magnitude.max()
    assert freqs[np.argmax(magnitude)] == pytest.approx(3400.0, abs=10)
    assert magnitude[freqs < 3000].max() < peak * 10 ** (-50 / 20)
    assert level_db(out, INPUT_RMS) == pytest.approx(0.0, abs=2.0)


@pytest.mark.parametrize("source", [("L16", 16000, 97), ("L16", 48000, 98), ("opus", 48000, OPUS_PT)],
                         ids=["l16_16k", "l16_48k", "opus"])
async def test_a_tone_above_4khz_does_not_reach_the_8khz_side(engine, peers, source):
    # 5 kHz is above the bus's Nyquist frequency: it must be filtered out (70 dB stopband), not
    # folded to 3 kHz.
    got, _, _ = await transcode(engine, peers, source, ("PCMU", 8000, 0), sine(5000.0, 0.6, source[1]))
    out = steady(decode_packets("PCMU", got), 8000)
    assert level_db(out, INPUT_RMS) < -40.0


async def test_opus_legs_relay_packets_untouched(engine, peers):
    a = engine.create_endpoint("opus", OPUS_PT)
    b = engine.create_endpoint("OPUS", 96)               # the far ends chose other dynamic PTs
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    sent = encode_packets("opus", 48000, sine(1000.0, 0.2, 48000), pt=OPUS_PT)
    for packet in sent:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(len(sent))
    assert [p.payload for p in got] == [p.payload for p in sent]
    assert {p.payload_type for p in got} == {96}
    assert [(p.timestamp - got[0].timestamp) & 0xFFFFFFFF for p in got] == [960 * i for i in range(len(sent))]
    assert not engine.stats(a).frame_mode
    assert a.codec == "opus" and a.clock_rate == 48000


async def test_switching_codec_mid_call_keeps_the_audio_flowing(engine, peers):
    a = engine.create_endpoint("PCMU", 0)
    b = engine.create_endpoint("PCMU", 0)
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    packets = encode_packets("PCMU", 8000, sine(1000.0, 1.8, 8000), pt=0)

    def send(i: int) -> None:
        if i == 30:
            engine.set_codec(b, "opus", OPUS_PT)         # the phone's re-INVITE moved to Opus
        elif i == 60:
            engine.set_codec(b, "PCMA", 8)               # ... and then to A-law
        trunk.send_rtp(packets[i], a.local_port)

    await paced(send, range(len(packets)))
    got = await receive_until_quiet(phone)
    runs = [[got[0]]]
    for p in got[1:]:
        if p.payload_type == runs[-1][-1].payload_type:
            runs[-1].append(p)
        else:
            runs.append([p])
    assert [r[0].payload_type for r in runs] == [0, OPUS_PT, 8]
    # Each clock rate is its own stream (RFC 7160 §4.1: a new SSRC), stamped in its own clock.
    assert len({r[0].ssrc for r in runs}) == 3
    for run, step in zip(runs, (160, 960, 160), strict=True):
        assert len(run) >= 15
        assert_one_stream(run[1:-1], pt=run[0].payload_type, step=step)
    for run, codec, rate in zip(runs, ("PCMU", "opus", "PCMA"), (8000, 48000, 8000), strict=True):
        out = decode_packets(codec, run[3:-3])
        assert peak_frequency(out, rate) == pytest.approx(1000.0, abs=20)
        assert level_db(out[len(out) // 4:], INPUT_RMS) == pytest.approx(0.0, abs=3.0)
    assert not engine.stats(a).frame_mode                # A-law again: back to the relay


async def test_telephone_events_on_an_opus_leg_count_48khz_units(engine, peers, next_event):
    # RFC 4733 §2.3.5: durations are in the audio codec's RTP clock, 48 kHz for Opus.
    b = engine.create_endpoint("opus", OPUS_PT, telephone_event_pt=101)
    phone = peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.send_dtmf(b, "5", 100)
    got = await receive_until_quiet(phone, quiet=0.3)
    events = [p for p in got if p.payload_type == 101]
    durations = [int.from_bytes(p.payload[2:4], "big") for p in events]
    assert durations == [960, 1920, 2880, 3840, 4800, 4800, 4800]
    assert len({p.timestamp for p in events}) == 1
    with pytest.raises(MediaError, match="40..1365 ms"):
        engine.send_dtmf(b, "5", 2000)                   # 96000 units do not fit 16 bits

    for i, duration in enumerate((960, 1920, 2880, 2880, 2880)):
        end = 0x80 if i >= 2 else 0
        payload = bytes([7, end | 10]) + duration.to_bytes(2, "big")
        phone.send_rtp(RtpPacket(101, 50 + i, 96000, 0x777, payload, marker=i == 0), b.local_port)
    assert await next_event(engine, lambda e: isinstance(e, DtmfDigit)) == DtmfDigit(b.id, "7", 60)


async def test_key_presses_reach_a_peer_of_another_codec_as_events_in_its_clock(engine, peers, next_event):
    # A µ-law trunk and an Opus phone meet through frames, so the trunk's event packets are not
    # relayed: each key press is sent to the phone anew once it is complete, in 48 kHz units.
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    b = engine.create_endpoint("opus", OPUS_PT, telephone_event_pt=96)
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    for i, duration in enumerate((160, 320, 480, 640, 800, 800, 800)):
        end = 0x80 if i >= 4 else 0
        payload = bytes([5, end | 10]) + duration.to_bytes(2, "big")
        trunk.send_rtp(RtpPacket(101, 20 + i, 4000, 0x555, payload, marker=i == 0), a.local_port)
    assert await next_event(engine, lambda e: isinstance(e, DtmfDigit)) == DtmfDigit(a.id, "5", 100)
    events = [p for p in await receive_until_quiet(phone) if p.payload_type == 96]
    assert [p.payload[0] for p in events] == [5] * len(events)
    assert int.from_bytes(events[-1].payload[2:4], "big") == 4800 and events[-1].payload[1] & 0x80
    assert len({p.timestamp for p in events}) == 1 and events[0].marker


async def test_codec_states_are_freed_on_destroy_and_on_codec_change(engine, next_event):
    before = codecslot.live_states()
    legs = [engine.create_endpoint("opus", OPUS_PT) for _ in range(5)]
    legs.append(engine.create_endpoint("L16", 97, clock_rate=16000))
    legs.append(engine.create_endpoint("L16", 97, clock_rate=8000))      # no state needed
    assert codecslot.live_states() == before + 6
    engine.set_codec(legs[0], "PCMU", 0)
    engine.set_codec(legs[1], "L16", 97, clock_rate=48000)
    for leg in legs:
        engine.destroy(leg)
    for leg in legs:
        await next_event(engine, lambda e, i=leg.id: isinstance(e, StreamStats) and e.final and e.endpoint_id == i)
    assert codecslot.live_states() == before


async def test_unknown_codecs_and_rates_are_refused_clearly(engine):
    with pytest.raises(ValueError, match="'G729' is not supported"):
        engine.create_endpoint("G729", 18)
    with pytest.raises(MediaError, match="L16 needs a clock rate"):
        engine.create_endpoint("L16", 97)
    with pytest.raises(UnsupportedCodec, match="opus runs at 48000 Hz"):
        engine.create_endpoint("opus", OPUS_PT, clock_rate=8000)
    with pytest.raises(UnsupportedCodec, match="PCMU runs at 8000 Hz .* not 16000"):
        engine.create_endpoint("PCMU", 0, clock_rate=16000)
    a = engine.create_endpoint("pcmu", 0)
    assert a.codec == "PCMU"
    with pytest.raises(ValueError, match="L16 runs at 8000 or 16000 or 48000 Hz"):
        engine.set_codec(a, "L16", 97, clock_rate=44100)
    assert engine_codec("Opus").frame_ticks == 960
    assert engine_codec("l16", 16000).frame_ticks == 320
    assert engine.endpoints == [a]                       # nothing half-made was left behind
