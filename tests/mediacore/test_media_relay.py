"""End-to-end relay through the native engine on loopback sockets.

Peer 1 plays a trunk sending to endpoint A, peer 2 an agent phone behind endpoint B; the engine
bridges A and B. What arrives must be one continuous RTP stream per receiver (RFC 3550 §5.1,
§8.2), carry the same audio (checked by FFT and level), and use each leg's own codec and payload
type.
"""

from __future__ import annotations

import numpy as np
import pytest

from mediacore.codecs import get_decoder, get_encoder
from mediacore.rtp import RtpPacket
from native import g711

FRAME = 160   # 20 ms at 8 kHz


def tone_packets(make_tone, codec: str, count: int, *, pt: int, ssrc: int = 0x11223344,
                 seq0: int = 1000, ts0: int = 5000, frequency: float = 1000.0) -> list[RtpPacket]:
    encoder = get_encoder(codec)
    audio = make_tone(frequency, FRAME * count)
    return [
        RtpPacket(pt, (seq0 + i) & 0xFFFF, (ts0 + i * FRAME) & 0xFFFFFFFF, ssrc,
                  encoder.encode(audio[i * FRAME:(i + 1) * FRAME]), marker=(i == 0))
        for i in range(count)
    ]


def dominant_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def rms_dbfs(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768))


def assert_continuous(packets: list[RtpPacket], samples_per_packet: int = FRAME) -> None:
    assert len({p.ssrc for p in packets}) == 1
    for before, after in zip(packets, packets[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == samples_per_packet


async def bridged_pair(engine, peers, codec_a="PCMU", pt_a=0, codec_b="PCMU", pt_b=0, **kw):
    a = engine.create_endpoint(codec_a, pt_a, **kw)
    b = engine.create_endpoint(codec_b, pt_b, **kw)
    trunk, phone = peers(), peers()
    engine.set_remote(a, "127.0.0.1", trunk.port)
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    return a, b, trunk, phone


async def test_tone_is_relayed_as_one_continuous_stream(engine, peers, make_tone):
    a, b, trunk, phone = await bridged_pair(engine, peers)
    sent = tone_packets(make_tone, "PCMU", 50, pt=0)
    for packet in sent:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(50)

    assert_continuous(got)
    stats_a, stats_b = engine.stats(a), engine.stats(b)
    # RFC 3550 §8.2: B's stream is ours, with our SSRC; the trunk's SSRC does not leak through.
    assert got[0].ssrc == stats_b.ssrc_out != sent[0].ssrc
    assert [p.payload_type for p in got] == [0] * 50
    assert got[0].marker
    assert [p.payload for p in got] == [p.payload for p in sent]

    audio = np.concatenate([get_decoder("PCMU").decode(p.payload) for p in got])
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=8000 / len(audio) * 2)
    original = make_tone(1000.0, len(audio))
    assert rms_dbfs(audio) == pytest.approx(rms_dbfs(original), abs=0.5)

    assert stats_a.packets_in == 50 and stats_a.bytes_in == sum(len(p.serialize()) for p in sent)
    assert stats_b.packets_out == 50
    assert stats_a.packets_lost == 0 and stats_a.malformed == 0 and stats_a.dropped == 0
    assert stats_a.ssrc_in == sent[0].ssrc
    assert stats_b.remote == ("127.0.0.1", phone.port)


async def test_both_directions_are_relayed(engine, peers, make_tone):
    a, b, trunk, phone = await bridged_pair(engine, peers)
    for packet in tone_packets(make_tone, "PCMU", 10, pt=0, ssrc=1):
        trunk.send_rtp(packet, a.local_port)
    for packet in tone_packets(make_tone, "PCMU", 10, pt=0, ssrc=2, frequency=440.0):
        phone.send_rtp(packet, b.local_port)
    to_phone = await phone.recv_rtp(10)
    to_trunk = await trunk.recv_rtp(10)
    assert_continuous(to_phone)
    assert_continuous(to_trunk)
    assert to_trunk[0].ssrc == engine.stats(a).ssrc_out
    assert to_phone[0].ssrc == engine.stats(b).ssrc_out
    assert to_trunk[0].ssrc != to_phone[0].ssrc


@pytest.mark.parametrize(("codec_a", "pt_a", "codec_b", "pt_b"), [("PCMU", 0, "PCMA", 8), ("PCMA", 8, "PCMU", 0)])
async def test_g711_laws_are_transcoded_between_legs(engine, peers, make_tone, codec_a, pt_a, codec_b, pt_b):
    a, b, trunk, phone = await bridged_pair(engine, peers, codec_a, pt_a, codec_b, pt_b)
    sent = tone_packets(make_tone, codec_a, 25, pt=pt_a)
    for packet in sent:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(25)

    assert [p.payload_type for p in got] == [pt_b] * 25
    convert = g711.ulaw_to_alaw if codec_a == "PCMU" else g711.alaw_to_ulaw
    assert [p.payload for p in got] == [convert(p.payload) for p in sent]
    audio = np.concatenate([get_decoder(codec_b).decode(p.payload) for p in got])
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=8000 / len(audio) * 2)
    assert rms_dbfs(audio) == pytest.approx(rms_dbfs(make_tone(1000.0, len(audio))), abs=0.5)


async def test_payload_types_are_mapped_per_leg(engine, peers, make_tone):
    # Same codec, different numbers: a dynamic PT for PCMU on one leg, and RFC 4733 events
    # negotiated as 101 on the trunk and 96 on the phone.
    trunk, phone = peers(), peers()
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=101)
    b = engine.create_endpoint("PCMU", 97, telephone_event_pt=96)
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    audio = tone_packets(make_tone, "PCMU", 2, pt=0)
    digit = RtpPacket(101, 1002, 5320, 0x11223344, bytes([5, 0x0A, 0x00, 0xA0]))   # '5', 160 samples
    g729 = RtpPacket(18, 1003, 5480, 0x11223344, bytes(20))                       # not negotiated
    comfort_noise = RtpPacket(13, 1004, 5640, 0x11223344, bytes([40]))            # RFC 3389
    for packet in [*audio, digit, g729, comfort_noise]:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(4)
    assert [p.payload_type for p in got] == [97, 97, 96, 13]
    assert got[2].payload == digit.payload
    assert engine.stats(a).dropped == 1
    # The dropped packet leaves a gap the receiver sees, as it would on the trunk itself.
    assert [p.sequence_number - got[0].sequence_number for p in got] == [0, 1, 2, 4]


async def test_csrc_extension_and_padding_survive_transcoding(engine, peers, make_tone):
    a, b, trunk, phone = await bridged_pair(engine, peers, "PCMU", 0, "PCMA", 8)
    payload = g711.ulaw_encode(make_tone(1000.0, FRAME))
    packet = RtpPacket(0, 7, 1600, 0xABCDEF01, payload, csrc=(0x01020304, 0x05060708),
                       extension_profile=0xBEDE, extension=bytes([0x10, 0xAA, 0, 0]))
    raw = bytearray(packet.serialize())
    raw[0] |= 0x20                       # RFC 3550 §5.1 padding: 3 octets, the last one counts them
    raw += bytes([0, 0, 3])
    trunk.send(bytes(raw), a.local_port)
    data, _ = await phone.recv()
    got = RtpPacket.parse(data)
    assert got.csrc == packet.csrc
    assert (got.extension_profile, got.extension) == (0xBEDE, packet.extension)
    assert got.payload == g711.ulaw_to_alaw(payload)
    assert data[-3:] == bytes([0, 0, 3]) and len(data) == len(raw)


async def test_no_route_means_counted_and_dropped(engine, peers, make_tone, until):
    a = engine.create_endpoint()
    trunk = peers()
    for packet in tone_packets(make_tone, "PCMU", 3, pt=0):
        trunk.send_rtp(packet, a.local_port)
    await until(lambda: engine.stats(a).packets_in == 3)
    sentinel_b = engine.create_endpoint()
    phone = peers()
    engine.set_remote(sentinel_b, "127.0.0.1", phone.port)
    engine.connect(a, sentinel_b)
    trunk.send_rtp(tone_packets(make_tone, "PCMU", 4, pt=0)[3], a.local_port)
    await phone.recv_rtp(1)
    stats = engine.stats(a)
    assert stats.packets_in == 4 and stats.dropped == 3


async def test_disconnect_stops_the_relay_both_ways(engine, peers, make_tone, until):
    a, b, trunk, phone = await bridged_pair(engine, peers)
    engine.disconnect(b)
    sent = tone_packets(make_tone, "PCMU", 6, pt=0)
    for packet in sent[:5]:
        trunk.send_rtp(packet, a.local_port)
    for packet in tone_packets(make_tone, "PCMU", 2, pt=0, ssrc=9):
        phone.send_rtp(packet, b.local_port)
    await until(lambda: engine.stats(a).packets_in == 5 and engine.stats(b).packets_in == 2)
    # Reconnect one way only: what is sent after it is relayed; nothing before it was.
    engine.connect(a, b, both_ways=False)
    trunk.send_rtp(sent[5], a.local_port)
    phone.send_rtp(tone_packets(make_tone, "PCMU", 3, pt=0, ssrc=9)[2], b.local_port)
    got = await phone.recv_rtp(1)
    assert got[0].payload == sent[5].payload
    await until(lambda: engine.stats(b).packets_in == 3)
    assert engine.stats(a).dropped == 5 and engine.stats(b).dropped == 3
    assert phone.pending() == 0 and trunk.pending() == 0
