"""How the engine thread reads its sockets (medialoop.pxd, RX_SINGLE_GAP_NS): a stream read one
datagram at a time while it keeps its 20 ms rhythm still has every packet of a burst relayed, in
order, with nothing left behind in the socket."""

from __future__ import annotations

import asyncio

from mediacore import MediaEngine
from mediacore.rtp import RtpPacket

SSRC = 0x5EED


def packet(seq: int) -> RtpPacket:
    return RtpPacket(0, seq, seq * 160, SSRC, bytes([seq & 0x7F]) * 160)


async def relay_pair(engine: MediaEngine, peers):
    a, b = engine.create_endpoint(), engine.create_endpoint()
    trunk, phone = peers(), peers()
    engine.set_remote(b, "127.0.0.1", phone.port)
    engine.connect(a, b)
    return a, b, trunk, phone


async def test_a_burst_after_a_steady_stream_is_relayed_whole_and_in_order(engine, peers):
    a, _b, trunk, phone = await relay_pair(engine, peers)
    sent = 0
    # A stream at its 20 ms rhythm: the engine reads its socket one datagram at a time ...
    for _ in range(8):
        trunk.send_rtp(packet(sent), a.local_port)
        sent += 1
        await asyncio.sleep(0.02)
    # ... then a burst (a network queue letting go): epoll reports the socket again and the
    # rest is read in one batch, without waiting for the stream's next packet to come.
    for _ in range(12):
        trunk.send_rtp(packet(sent), a.local_port)
        sent += 1
    got = await phone.recv_rtp(sent)
    # And back to the rhythm.
    for _ in range(4):
        await asyncio.sleep(0.02)
        trunk.send_rtp(packet(sent), a.local_port)
        sent += 1
    got += await phone.recv_rtp(4)
    payloads = [p.payload[0] for p in got]
    assert payloads == [i & 0x7F for i in range(sent)]
    # Relayed as one stream: our SSRC, sequence numbers one apart.
    assert len({p.ssrc for p in got}) == 1
    assert all((q.sequence_number - p.sequence_number) % 65536 == 1 for p, q in zip(got, got[1:], strict=False))
    assert phone.pending() == 0
