"""The engine's frame path on loopback sockets: echo, the adaptive jitter buffer with loss
concealment, PCM ports (the WebRTC bridge) and codec changes.

Senders here pace their packets at 20 ms like a phone; assertions allow for the scheduling of a
shared machine by checking what the engine reports (late packets) rather than timing.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mediacore.codecs import get_decoder, get_encoder
from mediacore.engine import BUS_FRAME
from mediacore.rtp import RtpPacket
from native import g711

FRAME = 160


async def paced(send, items, interval: float = 0.02) -> None:
    """Call send(item) for each item on a 20 ms schedule (absolute, so delays do not add up)."""
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        send(item)


async def receive_until_quiet(peer, first_timeout: float = 5.0, quiet: float = 0.5) -> list[RtpPacket]:
    """Every packet until none arrives for `quiet` seconds."""
    got = [RtpPacket.parse((await peer.recv(first_timeout))[0])]
    while True:
        try:
            got.append(RtpPacket.parse((await peer.recv(quiet))[0]))
        except TimeoutError:
            return got


def dominant_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def assert_one_stream(packets: list[RtpPacket], ssrc: int) -> None:
    """RFC 3550 §5.1: one SSRC, sequence +1 and timestamp +160 per 20 ms packet."""
    assert {p.ssrc for p in packets} == {ssrc}
    assert packets[0].marker
    for before, after in zip(packets, packets[1:], strict=False):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == FRAME


def tone_packets(make_tone, count: int, *, frequency: float = 1000.0, ssrc: int = 0x5150,
                 codec: str = "PCMU", pt: int = 0) -> list[RtpPacket]:
    encoder = get_encoder(codec)
    audio = make_tone(frequency, FRAME * count)
    return [RtpPacket(pt, 100 + i, 8000 + i * FRAME, ssrc, encoder.encode(audio[i * FRAME:(i + 1) * FRAME]),
                      marker=i == 0) for i in range(count)]


async def test_echo_returns_the_callers_audio_on_our_own_stream(engine, peers, make_tone):
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.echo(a)
    # 1003 Hz: no two of the 25 frames are alike (a 1000 Hz frame would repeat every 20 ms).
    sent = tone_packets(make_tone, 25, frequency=1003.0)
    await paced(lambda p: phone.send_rtp(p, a.local_port), sent)
    got = await receive_until_quiet(phone)
    stats = engine.stats(a)

    assert stats.frame_mode
    assert_one_stream(got, stats.ssrc_out)
    assert stats.ssrc_out != sent[0].ssrc
    assert {p.payload_type for p in got} == {0}
    # Every packet that was not too late for its turn comes back unchanged (µ-law decodes and
    # re-encodes to the same octets), in order; after the caller stops, a few concealment frames
    # fade out and the stream ends.
    sent_payloads = [p.payload for p in sent]
    assert len(set(sent_payloads)) == len(sent)
    echoed = [p.payload for p in got if p.payload in sent_payloads]
    assert echoed == [x for x in sent_payloads if x in echoed]
    assert len(echoed) + stats.late == len(sent)
    audio = np.concatenate([get_decoder("PCMU").decode(x) for x in echoed])
    assert dominant_frequency(audio) == pytest.approx(1000.0, abs=20)


async def test_echo_off_and_disconnect_stop_the_echo(engine, peers, make_tone, until):
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.echo(a)
    await paced(lambda p: phone.send_rtp(p, a.local_port), tone_packets(make_tone, 5))
    await receive_until_quiet(phone)
    engine.echo(a, False)
    await paced(lambda p: phone.send_rtp(p, a.local_port), tone_packets(make_tone, 5, ssrc=77))
    await until(lambda: engine.stats(a).packets_in == 10)
    await asyncio.sleep(0.1)
    assert phone.pending() == 0
    assert not engine.stats(a).frame_mode


# Sequence numbers the test network loses and swaps (losses among the first 32 packets, whose
# codes below are unique, so the frame after each loss can be found).
LOST = {10, 25, 29}
SWAPPED = [(20, 21), (30, 31), (45, 46)]
# Each packet carries one µ-law code from segment 7 (|x| > 16000) repeated: concealment frames
# (halved and quieter) decode to other segments, so every frame is identifiable.
SEGMENT7 = [0x80 + i for i in range(16)] + list(range(16))


async def test_jitter_buffer_reorders_conceals_loss_and_counts(engine, peers):
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.echo(a)
    packets = {i: RtpPacket(0, 5000 + i, 160 * i, 0xAB, bytes([SEGMENT7[i % 32]]) * FRAME) for i in range(60)}
    order = [i for i in range(60) if i not in LOST]
    for x, y in SWAPPED:
        i, j = order.index(x), order.index(y)
        order[i], order[j] = order[j], order[i]
    await paced(lambda i: phone.send_rtp(packets[i], a.local_port), order)
    got = await receive_until_quiet(phone)
    stats = engine.stats(a)

    # One continuous outgoing stream despite the holes and the disorder.
    assert_one_stream(got, stats.ssrc_out)
    codes = [p.payload[0] for p in got]
    real = [c for c in codes if c in SEGMENT7]
    expected = [SEGMENT7[i % 32] for i in sorted(order)]
    # Swapped packets are played in sequence order; only packets counted late are missing.
    it = iter(expected)
    assert all(code in it for code in real)                 # `real` is a subsequence
    assert len(real) + stats.late + stats.discarded == len(order)
    # Each loss became concealment: the previous frame repeated 6 dB down (not silence).
    for lost in LOST:
        before = SEGMENT7[(lost - 1) % 32]
        if before in real:
            k = codes.index(before)
            faded = g711.ulaw_decode(bytes([codes[k + 1]]))[0]
            assert faded == pytest.approx(g711.ulaw_decode(bytes([before]))[0] / 2, rel=0.07)
    assert stats.concealed >= len(LOST)
    assert stats.packets_lost == len(LOST)          # RFC 3550 A.3, on the received stream


async def test_jitter_buffer_deepens_after_late_packets(engine, peers):
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.echo(a)
    packets = [RtpPacket(0, i, 160 * i, 0xCD, bytes([0x85]) * FRAME) for i in range(40)]
    await paced(lambda p: phone.send_rtp(p, a.local_port), packets[:15])
    await asyncio.sleep(0.15)          # the network holds 7 packets back, then delivers at once
    await paced(lambda p: phone.send_rtp(p, a.local_port), packets[15:])
    await receive_until_quiet(phone)
    stats = engine.stats(a)
    assert stats.late >= 1
    assert stats.jitter_depth > 2                   # started at 2 packets (40 ms)


async def test_pcm_port_frames_become_rtp_and_rtp_becomes_frames(engine, peers, make_tone, until):
    port = engine.create_pcm_port()
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.connect(port, a)

    # WebRTC side -> phone: frames written to the port leave endpoint a as µ-law RTP.
    audio = make_tone(1000.0, FRAME * 20)
    frames = [audio[i * FRAME:(i + 1) * FRAME] for i in range(20)]
    await paced(lambda f: engine.write_frame(port, f.tobytes()), frames)
    got = await receive_until_quiet(phone)
    assert [p.payload for p in got] == [g711.ulaw_encode(f) for f in frames]
    assert {p.ssrc for p in got} == {engine.stats(a).ssrc_out}
    assert got[0].marker

    # Phone -> WebRTC side: RTP into a comes out of the port as bus frames.
    sent = tone_packets(make_tone, 20, frequency=440.0)
    collected: list[bytes] = []

    def send_and_read(packet: RtpPacket) -> None:
        phone.send_rtp(packet, a.local_port)
        while (frame := engine.read_frame(port)) is not None:
            collected.append(frame)

    await paced(send_and_read, sent)
    decoded = {get_decoder("PCMU").decode(p.payload).tobytes() for p in sent}

    def played_or_late() -> int:
        while (frame := engine.read_frame(port)) is not None:
            collected.append(frame)
        return sum(f in decoded for f in collected) + engine.stats(a).late

    # Every packet comes out of the port as a frame, unless it arrived too late for its turn.
    await until(lambda: played_or_late() == 20)
    real = [f for f in collected if f in decoded]
    samples = np.frombuffer(b"".join(real), dtype=np.int16)
    assert dominant_frequency(samples) == pytest.approx(440.0, abs=20)
    assert all(len(f) == 2 * BUS_FRAME for f in collected)


async def test_pcm_port_requests_are_checked(engine):
    from mediacore import MediaError

    port = engine.create_pcm_port()
    a = engine.create_endpoint()
    with pytest.raises(MediaError, match="320 bytes"):
        engine.write_frame(port, b"\x00" * 10)
    with pytest.raises(MediaError, match="int16"):
        engine.write_frame(port, np.zeros(FRAME, dtype=np.float32))
    with pytest.raises(MediaError, match="not a PCM port"):
        engine.read_frame(a)
    with pytest.raises(MediaError, match="PCM port"):
        engine.set_remote(port, "127.0.0.1", 4000)
    assert engine.read_frame(port) is None          # nothing produced yet: never blocks
    for _ in range(12):                             # 4 more than the ring: oldest dropped
        engine.write_frame(port, np.zeros(FRAME, dtype=np.int16))
    assert engine.stats(port).port_overruns == 4
    engine.destroy(port)
    with pytest.raises(MediaError, match="does not exist"):
        engine.write_frame(port, b"\x00" * 320)


async def test_codec_change_switches_the_relay_to_the_new_law(engine, peers, make_tone):
    a = engine.create_endpoint("PCMU", 0)
    b = engine.create_endpoint("PCMU", 0)
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    sent = tone_packets(make_tone, 4)
    trunk.send_rtp(sent[0], a.local_port)
    assert (await phone.recv_rtp(1))[0].payload == sent[0].payload
    b2 = engine.set_codec(b, "PCMA", 8)         # the phone's re-INVITE moved to A-law
    assert (b2.codec, b2.payload_type, b2.id) == ("PCMA", 8, b.id)
    for packet in sent[1:]:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(3)
    assert [p.payload_type for p in got] == [8, 8, 8]
    assert [p.payload for p in got] == [g711.ulaw_to_alaw(p.payload) for p in sent[1:]]
    assert engine.stats(b).dropped == 0 and not engine.stats(a).frame_mode   # still a relay


async def test_a_prompt_plays_into_a_pcm_port_frame_by_frame(engine, next_event):
    from mediacore.events import PromptDone

    port = engine.create_pcm_port()
    prompt = (np.arange(FRAME * 6) % 2000 - 1000).astype(np.int16)
    play_id = engine.play(port, prompt)
    assert await next_event(engine, lambda e: isinstance(e, PromptDone)) == PromptDone(port.id, play_id, True)
    frames = []
    while (frame := engine.read_frame(port)) is not None:
        frames.append(frame)
    assert b"".join(frames) == prompt.tobytes()


async def test_codec_change_on_a_frame_leg_reencodes_its_output(engine, peers, make_tone):
    a = engine.create_endpoint("PCMU", 0)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.echo(a)
    a = engine.set_codec(a, "PCMA", 8)
    sent = tone_packets(make_tone, 10, frequency=1003.0, codec="PCMA", pt=8)
    await paced(lambda p: phone.send_rtp(p, a.local_port), sent)
    got = await receive_until_quiet(phone)
    assert {p.payload_type for p in got} == {8}
    sent_payloads = {p.payload for p in sent}
    assert sum(p.payload in sent_payloads for p in got) + engine.stats(a).late == 10
