"""Stream behaviour of the engine: symmetric RTP through NATs, continuity across re-connects,
RFC 3550 receiver statistics, RTP timeouts, and hostile or broken input."""

from __future__ import annotations

import struct

from mediacore import RtpTimeout, StreamStats
from mediacore.rtp import RtpPacket

FRAME = 160


def pcmu(seq: int, ts: int, ssrc: int, *, pt: int = 0, fill: int = 0x55) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, bytes([fill]) * FRAME)


async def test_symmetric_rtp_latches_to_the_natted_source(engine, peers):
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    trunk = peers()
    signalled = peers()     # the address the phone put in its SDP (its private address)
    natted = peers()        # the address its packets really come from, after the NAT
    engine.set_remote(b, "127.0.0.1", signalled.port)
    engine.connect(a, b)

    # Before the phone has sent anything, media goes where signalling said.
    trunk.send_rtp(pcmu(1, 0, 7), a.local_port)
    await signalled.recv_rtp(1)
    # The phone's first packet arrives from the NAT's port: the engine answers there from now on.
    natted.send_rtp(pcmu(500, 0, 0xFEED), b.local_port)
    for seq in range(2, 6):
        trunk.send_rtp(pcmu(seq, seq * FRAME, 7), a.local_port)
    assert len(await natted.recv_rtp(4)) == 4
    assert signalled.pending() == 0
    stats = engine.stats(b)
    assert stats.latched and stats.remote == ("127.0.0.1", natted.port)


async def test_latched_leg_ignores_foreign_sources_but_follows_a_nat_rebinding(engine, peers, until):
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    trunk, phone, intruder, rebound = peers(), peers(), peers(), peers()
    engine.set_remote(a, "127.0.0.1", trunk.port)
    engine.connect(a, b)
    phone.send_rtp(pcmu(100, 0, 0xAAAA), b.local_port)
    await until(lambda: engine.stats(b).latched)
    # Another source with another SSRC cannot hijack the leg (nor inject audio into the call).
    intruder.send_rtp(pcmu(1, 0, 0xBAD), b.local_port)
    await until(lambda: engine.stats(b).dropped == 1)
    trunk.send_rtp(pcmu(1, 0, 7), a.local_port)
    await phone.recv_rtp(1)
    # The same stream (same SSRC) from a new port is the phone's NAT binding changing.
    rebound.send_rtp(pcmu(101, FRAME, 0xAAAA), b.local_port)
    await until(lambda: engine.stats(b).remote == ("127.0.0.1", rebound.port))
    trunk.send_rtp(pcmu(2, FRAME, 7), a.local_port)
    await rebound.recv_rtp(1)
    assert intruder.pending() == 0 and phone.pending() == 0
    assert engine.stats(b).packets_in == 2


async def test_outgoing_stream_stays_continuous_across_reconnects(engine, peers):
    # A call is transferred: B's receiver first hears A, then C, then A again. It must see one
    # SSRC, sequence numbers +1 each packet, timestamps moving forward at least one frame, and
    # the marker bit where the source changed (RFC 3550 §5.1, RFC 3551 §4.1).
    a, b, c = engine.create_endpoint(), engine.create_endpoint(), engine.create_endpoint()
    feed_a, feed_c, phone = peers(), peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    for i in range(5):
        feed_a.send_rtp(pcmu(60000 + i, 1000 + i * FRAME, 0xA), a.local_port)
    first = await phone.recv_rtp(5)
    engine.connect(c, b)
    for i in range(5):
        feed_c.send_rtp(pcmu(17 + i, 999_999 + i * FRAME, 0xC), c.local_port)
    second = await phone.recv_rtp(5)
    engine.connect(a, b)
    for i in range(5, 10):
        feed_a.send_rtp(pcmu(60000 + i, 1000 + i * FRAME, 0xA), a.local_port)
    third = await phone.recv_rtp(5)

    got = first + second + third
    assert len({p.ssrc for p in got}) == 1
    seqs = [p.sequence_number for p in got]
    assert all((after - before) & 0xFFFF == 1 for before, after in zip(seqs, seqs[1:], strict=False))
    for run in (first, second, third):
        assert run[0].marker and not any(p.marker for p in run[1:])
        assert all((q.timestamp - p.timestamp) & 0xFFFFFFFF == FRAME for p, q in zip(run, run[1:], strict=False))
    for before, after in ((first[-1], second[0]), (second[-1], third[0])):
        step = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        assert FRAME <= step < 8000 * 60   # forward, by at least the last packet's duration


async def test_loss_and_reordering_are_counted_per_rfc3550(engine, peers, until):
    a = engine.create_endpoint()
    trunk = peers()
    order = [*range(0, 10), *range(13, 20), 21, 20, *range(22, 30)]   # 10-12 lost, 20/21 swapped
    for seq in order:
        trunk.send_rtp(pcmu(65530 + seq, seq * FRAME, 0x55), a.local_port)   # wraps past 65535
    await until(lambda: engine.stats(a).packets_in == len(order))
    stats = engine.stats(a)
    # A.1: the first packet is the probation packet, so expected counts from the second one.
    assert stats.packets_expected == 29
    assert stats.packets_lost == 3
    assert stats.loss_fraction == 3 / 29


async def test_interarrival_jitter_follows_rfc3550_a8(engine, peers, until):
    # Timestamps 20 ms apart arriving back to back: each transit difference D is about 160
    # units, so J = J + (|D| - J)/16 climbs towards 20 ms; equal timestamps keep J near zero.
    steady = engine.create_endpoint()
    burst = engine.create_endpoint()
    sender = peers()
    for i in range(60):
        sender.send_rtp(pcmu(i, 0, 1), steady.local_port)
        sender.send_rtp(pcmu(i, i * FRAME, 2), burst.local_port)
    await until(lambda: engine.stats(steady).packets_in == 60 and engine.stats(burst).packets_in == 60)
    # (A scheduling stall of the sender or the engine of T ms adds T/16 ms; allow for 80 ms.)
    assert engine.stats(steady).jitter_ms < 5.0
    assert 10.0 < engine.stats(burst).jitter_ms <= 20.0


async def test_malformed_datagrams_are_counted_and_dropped(engine, peers, until):
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    good = pcmu(1, 0, 3).serialize()
    broken = [
        b"",                                          # empty datagram
        b"\x80\x00\x00",                              # shorter than the fixed header
        bytes([0x40]) + good[1:],                     # RTP version 1
        bytes([0x8F]) + good[1:20],                   # 15 CSRCs announced, 2 present
        bytes([0x90]) + good[1:12] + b"\xbe\xde\x00\x09",   # extension longer than the packet
        bytes([0xA0]) + good[1:-1] + b"\xff",         # padding longer than the packet
        bytes([0xA0]) + good[1:-1] + b"\x00",         # padding count of zero
        good + bytes(3000),                           # larger than any MTU: truncated
    ]
    for datagram in broken:
        trunk.send(datagram, a.local_port)
    trunk.send(struct.pack("!BBHI", 0x81, 201, 1, 0x1234), a.local_port)   # RTCP RR, rtcp-mux
    trunk.send(good, a.local_port)
    got = await phone.recv_rtp(1)
    assert got[0].payload == bytes([0x55]) * FRAME
    await until(lambda: engine.stats(a).malformed == len(broken))
    stats = engine.stats(a)
    assert stats.packets_in == 1 and stats.rtcp_packets_in == 1
    assert phone.pending() == 0


async def test_rtcp_port_is_port_plus_one(engine, peers, until):
    a = engine.create_endpoint()
    assert a.rtcp_port == a.local_port + 1 and a.local_port % 2 == 0
    peer = peers()
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)   # RFC 3550 §6.4.2, no blocks
    peer.send(receiver_report, a.rtcp_port)
    peer.send(b"junk", a.rtcp_port)
    await until(lambda: engine.stats(a).rtcp_packets_in == 1 and engine.stats(a).malformed == 1)


async def test_rtp_timeout_fires_once_after_media_stops(engine, peers, next_event, until):
    talking = engine.create_endpoint(rtp_timeout=0.3)
    silent = engine.create_endpoint(rtp_timeout=0.3)   # never received media: never times out
    peer = peers()
    for i in range(3):
        peer.send_rtp(pcmu(i, i * FRAME, 9), talking.local_port)
    event = await next_event(engine, lambda e: isinstance(e, RtpTimeout))
    assert event == RtpTimeout(talking.id)
    # Media resumes and stops again: a second timeout.
    peer.send_rtp(pcmu(3, 3 * FRAME, 9), talking.local_port)
    await until(lambda: engine.stats(talking).packets_in == 4)
    await next_event(engine, lambda e: isinstance(e, RtpTimeout) and engine.received.count(e) == 2)
    assert {e.endpoint_id for e in engine.received if isinstance(e, RtpTimeout)} == {talking.id}
    assert silent.id not in {e.endpoint_id for e in engine.received}


async def test_destroy_reports_final_stats(engine, peers, next_event, until):
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    for i in range(7):
        trunk.send_rtp(pcmu(i, i * FRAME, 4), a.local_port)
    await phone.recv_rtp(7)
    engine.destroy(a)
    final = await next_event(engine, lambda e: isinstance(e, StreamStats) and e.endpoint_id == a.id)
    assert final.final and final.packets_in == 7 and final.ssrc_in == 4
    # B lost its source: what the phone sends now goes nowhere, and is counted.
    phone.send_rtp(pcmu(1, 0, 5), b.local_port)
    await until(lambda: engine.stats(b).dropped == 1)
    assert engine.stats(b).packets_out == 7
