"""RFC 4733 telephone-events through the engine: one DtmfDigit per key press received, relayed
with the peer's payload type, and digits sent as events with the packet pattern of §2.5.1."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mediacore.errors import MediaError
from mediacore.events import DtmfDigit
from mediacore.rtp import RtpPacket

EVENT_PT = 101


def key_press(event: int, ts: int, seq: int, duration: int, *, ssrc: int = 0x4733, step: int = 160,
              end_copies: int = 3) -> list[RtpPacket]:
    """What a phone sends for one key press (RFC 4733 §2.5.1): marker on the first packet, one
    update per 20 ms with the same timestamp and a growing duration, the end packet 3 times."""
    packets = []
    durations = list(range(step, duration, step)) + [duration] * end_copies
    for i, dur in enumerate(durations):
        end = i >= len(durations) - end_copies
        payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, dur)
        packets.append(RtpPacket(EVENT_PT, seq + i, ts, ssrc, payload, marker=i == 0))
    return packets


def parse_event(packet: RtpPacket) -> tuple[int, bool, int, int]:
    event, flags, duration = struct.unpack("!BBH", packet.payload)
    return event, bool(flags & 0x80), flags & 0x3F, duration


async def test_one_digit_per_key_press_with_its_duration(engine, peers, next_event):
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    phone = peers()
    presses = [(5, 800), (11, 480), (1, 1600)]           # '5' 100 ms, '#' 60 ms, '1' 200 ms
    seq, ts = 1, 10000
    for event, duration in presses:
        packets = key_press(event, ts, seq, duration)
        packets.append(packets[-1])                       # a network duplicate as well
        for packet in packets:
            phone.send_rtp(packet, a.local_port)
        seq += len(packets)
        ts += duration + 800
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "1")
    digits = [e for e in engine.received if isinstance(e, DtmfDigit)]
    assert digits == [DtmfDigit(a.id, "5", 100), DtmfDigit(a.id, "#", 60), DtmfDigit(a.id, "1", 200)]
    assert digits[0].source == "rfc4733"
    assert engine.stats(a).dtmf_in == 3


async def test_a_press_whose_end_packets_were_lost_is_still_reported_once(engine, peers, next_event):
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    phone = peers()
    for packet in key_press(7, 5000, 1, 640, end_copies=0):     # '7': updates only
        phone.send_rtp(packet, a.local_port)
    for packet in key_press(8, 7000, 10, 320):                  # then '8', complete
        phone.send_rtp(packet, a.local_port)
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "8")
    assert [e for e in engine.received if isinstance(e, DtmfDigit)] == [
        DtmfDigit(a.id, "7", 60), DtmfDigit(a.id, "8", 40)]
    # A press left without end and without a successor ends by timeout (§2.5.2.2).
    for packet in key_press(12, 9000, 20, 480, end_copies=0):   # 'A'
        phone.send_rtp(packet, a.local_port)
    assert await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "A") == \
        DtmfDigit(a.id, "A", 40)


async def test_relayed_legs_report_and_forward_events_with_the_peers_payload_type(engine, peers, next_event, until):
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    b = engine.create_endpoint("PCMA", 8, telephone_event_pt=96)
    c = engine.create_endpoint("PCMU", 0)                        # no telephone-event negotiated
    trunk, phone, old_phone = peers(), peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.set_remote(c, "127.0.0.1", old_phone.port)
    engine.connect(a, b)
    press = key_press(9, 3000, 40, 320)
    for packet in press:
        trunk.send_rtp(packet, a.local_port)
    got = await phone.recv_rtp(len(press))
    assert [p.payload_type for p in got] == [96] * len(press)
    assert [p.payload for p in got] == [p.payload for p in press]
    assert got[0].marker
    assert await next_event(engine, lambda e: isinstance(e, DtmfDigit)) == DtmfDigit(a.id, "9", 40)
    assert not engine.stats(a).frame_mode                        # detection needs no decoding
    # Toward a leg without telephone-event the events cannot be forwarded: dropped and counted.
    engine.connect(a, c)
    dropped = engine.stats(a).dropped
    for packet in key_press(3, 6000, 60, 320):
        trunk.send_rtp(packet, a.local_port)
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "3")
    await until(lambda: engine.stats(a).dropped == dropped + 4)
    assert old_phone.pending() == 0


async def test_sent_digits_follow_rfc4733_timing(engine, peers):
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.send_dtmf(a, "1#", duration_ms=100)
    got = await phone.recv_rtp(14)                              # 2 x (5 updates, 2 more ends)
    assert phone.pending() == 0
    assert {p.payload_type for p in got} == {EVENT_PT}
    assert {p.ssrc for p in got} == {engine.stats(a).ssrc_out}
    assert all((q.sequence_number - p.sequence_number) & 0xFFFF == 1 for p, q in zip(got, got[1:], strict=False))
    for digit, packets in ((1, got[:7]), (11, got[7:])):
        events = [parse_event(p) for p in packets]
        assert packets[0].marker and not any(p.marker for p in packets[1:])   # §2.5.1.1
        assert len({p.timestamp for p in packets}) == 1                       # one event, one ts
        assert [e[0] for e in events] == [digit] * 7
        assert [e[3] for e in events] == [160, 320, 480, 640, 800, 800, 800]  # growing duration
        assert [e[1] for e in events] == [False] * 4 + [True] * 3              # §2.5.1.4: 3 ends
        assert events[0][2] == 10                                             # -10 dBm0
    # The second event starts after the first one's duration and the pause between digits.
    assert (got[7].timestamp - got[0].timestamp) & 0xFFFFFFFF >= 800 + 5 * 160


async def test_audio_is_muted_while_an_event_is_sent(engine, peers):
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    phone = peers()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.play(a, np.full(160 * 40, 3000, dtype=np.int16))    # 0.8 s of audio
    first = await phone.recv_rtp(3)
    engine.send_dtmf(a, "7", duration_ms=60)
    rest = await phone.recv_rtp(30)
    kinds = [p.payload_type for p in first + rest]
    start = kinds.index(EVENT_PT)
    assert kinds[start:start + 5] == [EVENT_PT] * 5             # 60 ms: 3 packets + 2 end copies
    assert EVENT_PT not in kinds[start + 5:] and kinds[start + 5] == 0
    packets = first + rest
    assert all((q.sequence_number - p.sequence_number) & 0xFFFF == 1 for p, q in zip(packets, packets[1:], strict=False))
    # Audio resumes where the event left the timeline, as a new talkspurt.
    resumed = packets[start + 5]
    assert resumed.marker
    assert (resumed.timestamp - packets[start].timestamp) & 0xFFFFFFFF >= 480


async def test_bad_dtmf_requests_are_refused(engine):
    plain = engine.create_endpoint("PCMU", 0)
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    with pytest.raises(MediaError, match="telephone-event"):
        engine.send_dtmf(plain, "1")
    with pytest.raises(MediaError, match="0-9"):
        engine.send_dtmf(a, "12x")
    with pytest.raises(MediaError, match="duration"):
        engine.send_dtmf(a, "1", duration_ms=5)
    with pytest.raises(MediaError, match="at most"):
        engine.send_dtmf(a, "1" * 33)
    engine.send_dtmf(a, "abcd")                                  # letters in either case


async def test_a_press_longer_than_the_duration_field_is_one_digit(engine, peers, next_event):
    # RFC 4733 §2.5.1.3: after 0xFFFF timestamp units the sender starts a new segment stamped
    # where the previous one ran out; it is the same key press.
    a = engine.create_endpoint("PCMU", 0, telephone_event_pt=EVENT_PT)
    phone = peers()
    first = [RtpPacket(EVENT_PT, 1 + i, 1000, 9, struct.pack("!BBH", 0, 10, d), marker=i == 0)
             for i, d in enumerate((160, 32000, 0xFFFF))]
    for packet in first + key_press(0, 1000 + 0xFFFF, 4, 800, ssrc=9):
        phone.send_rtp(packet, a.local_port)
    for packet in key_press(2, 200000, 20, 320, ssrc=9):       # a fence: the next press
        phone.send_rtp(packet, a.local_port)
    await next_event(engine, lambda e: isinstance(e, DtmfDigit) and e.digit == "2")
    assert [e for e in engine.received if isinstance(e, DtmfDigit)] == [
        DtmfDigit(a.id, "0", (0xFFFF + 800) * 1000 // 8000), DtmfDigit(a.id, "2", 40)]
