"""RTCP from and to the engine's endpoints (RFC 3550 §6), over real UDP sockets on 127.0.0.1.

A far end here is a phone with an RTP socket on an even port and its RTCP socket on the next one
(§11). It reads the engine's compound reports with a small parser written from §6.4-§6.6 and
answers with its own SR/RR, so each rule is checked from the wire.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass, field

import pytest

from mediacore import MediaEngine, MediaEvent, StreamStats
from mediacore.events import RtcpReport
from mediacore.rtp import RtpPacket

FRAME = 160
NTP_UNIX_OFFSET = 2208988800
# Short report intervals keep the tests fast (the default is RFC 3550's 5 s).
INTERVAL = 0.2


# --- a far end: RTP on an even port, RTCP on the next ---------------------------------------


class Phone:
    def __init__(self) -> None:
        for _ in range(100):
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind(("127.0.0.1", 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0:
                rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    rtcp.bind(("127.0.0.1", port + 1))
                except OSError:
                    rtcp.close()
                else:
                    break
            rtp.close()
        else:
            raise RuntimeError("no free even/odd port pair on 127.0.0.1")
        self.rtp, self.rtcp, self.port = rtp, rtcp, port
        self.last_from: tuple[str, int] | None = None   # where the last report came from
        for sock in (rtp, rtcp):
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def send_rtp(self, packet: RtpPacket, port: int) -> None:
        self.rtp.sendto(packet.serialize(), ("127.0.0.1", port))

    def send_rtcp(self, data: bytes, port: int) -> None:
        self.rtcp.sendto(data, ("127.0.0.1", port))

    async def report(self, predicate=lambda packets: True, *, sock: socket.socket | None = None,
                     timeout: float = 5.0) -> list[Rtcp]:
        """The next compound (parsed) on the RTCP socket that satisfies `predicate`."""
        loop = asyncio.get_running_loop()

        async def wait() -> list[Rtcp]:
            while True:
                data, self.last_from = await loop.sock_recvfrom(sock or self.rtcp, 2048)
                packets = parse_compound(data)
                if predicate(packets):
                    return packets

        return await asyncio.wait_for(wait(), timeout)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


@pytest.fixture
def phones():
    made: list[Phone] = []

    def make() -> Phone:
        made.append(Phone())
        return made[-1]

    yield make
    for phone in made:
        phone.close()


@pytest.fixture
async def engine(port_range):
    eng = MediaEngine("127.0.0.1", *port_range, rtcp_interval=INTERVAL)
    await eng.start()
    eng.received = []

    def handler(event: MediaEvent) -> None:
        eng.received.append(event)

    eng.set_event_handler(handler)
    try:
        yield eng
    finally:
        eng.close()


# --- RTCP on the wire, from RFC 3550 §6.4-§6.6 -------------------------------------------------


@dataclass
class Block:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass
class Rtcp:
    type: int
    ssrc: int
    ntp: int = 0
    rtp_ts: int = 0
    packet_count: int = 0
    octet_count: int = 0
    blocks: list[Block] = field(default_factory=list)
    cname: bytes | None = None


def parse_compound(data: bytes) -> list[Rtcp]:
    packets, offset = [], 0
    while offset < len(data):
        first, pt, words = struct.unpack_from("!BBH", data, offset)
        assert first >> 6 == 2 and not first & 0x20, "version 2, no padding"
        body = data[offset:offset + 4 * (words + 1)]
        count = first & 0x1F
        if pt in (200, 201):
            ssrc = struct.unpack_from("!I", body, 4)[0]
            packet = Rtcp(pt, ssrc)
            at = 8
            if pt == 200:
                hi, lo, packet.rtp_ts, packet.packet_count, packet.octet_count = struct.unpack_from("!IIIII", body, 8)
                packet.ntp = hi << 32 | lo
                at = 28
            for k in range(count):
                s, word, hs, jit, lsr, dlsr = struct.unpack_from("!IIIIII", body, at + 24 * k)
                lost = word & 0xFFFFFF
                packet.blocks.append(Block(s, word >> 24, lost - (1 << 24) if lost & 0x800000 else lost,
                                           hs, jit, lsr, dlsr))
        elif pt == 202:
            ssrc = struct.unpack_from("!I", body, 4)[0]
            assert count == 1 and body[8] == 1, "one chunk, CNAME first"
            packet = Rtcp(pt, ssrc, cname=body[10:10 + body[9]])
            assert body[10 + body[9]] == 0 and len(body) % 4 == 0, "END item, 32-bit padding"
        else:
            packet = Rtcp(pt, struct.unpack_from("!I", body, 4)[0])
        packets.append(packet)
        offset += len(body)
    assert offset == len(data)
    return packets


def header(count: int, packet_type: int, body: bytes, padding: bool = False) -> bytes:
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, packet_type, (len(body) + 4) // 4 - 1) + body


def block(ssrc: int, fraction: int, lost: int, highest: int, jitter: int, lsr: int = 0, dlsr: int = 0) -> bytes:
    return struct.pack("!IIIIII", ssrc, fraction << 24 | (lost & 0xFFFFFF), highest, jitter, lsr, dlsr)


def receiver_report(ssrc: int, *blocks: bytes) -> bytes:
    return header(len(blocks), 201, struct.pack("!I", ssrc) + b"".join(blocks))


def sender_report(ssrc: int, ntp: int, rtp_ts: int = 0, packets: int = 0, octets: int = 0) -> bytes:
    return header(0, 200, struct.pack("!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts, packets, octets))


def sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + b"\0"
    return header(1, 202, chunk + b"\0" * (-len(chunk) % 4))


def bye(ssrc: int) -> bytes:
    return header(1, 203, struct.pack("!I", ssrc))


def middle32(ntp: int) -> int:
    return (ntp >> 16) & 0xFFFFFFFF


def ntp_of(unix_seconds: float) -> int:
    return int((unix_seconds + NTP_UNIX_OFFSET) * (1 << 32))


def pcmu(seq: int, ts: int, ssrc: int) -> RtpPacket:
    return RtpPacket(0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, b"\xff" * FRAME)


async def until(condition, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def kinds(packets: list[Rtcp]) -> list[int]:
    return [p.type for p in packets]


# --- reports we send ---------------------------------------------------------------------------


async def test_receiver_report_carries_loss_and_jitter_of_the_stream_we_receive(engine, phones):
    a = engine.create_endpoint()
    phone = phones()
    # 100 packets, 5 of them lost on the way. A.1 puts the first on probation: the report
    # counts from the second (seq 1001), so 99 expected, 94 received.
    lost = {1010, 1020, 1030, 1040, 1050}
    for seq in range(1000, 1100):
        if seq not in lost:
            phone.send_rtp(pcmu(seq, (seq - 1000) * FRAME, 0xCAFE), a.local_port)
    await until(lambda: engine.stats(a).packets_in == 95)
    # Reports start once the RTCP destination is known (here: signalled, port + 1).
    engine.set_remote(a, "127.0.0.1", phone.port)

    report = await phone.report()
    # §6.1: an RR (we have sent no RTP) first, then SDES with our CNAME; from our RTCP port.
    assert kinds(report)[:2] == [201, 202]
    assert phone.last_from == ("127.0.0.1", a.rtcp_port)
    rr, chunk = report[0], report[1]
    assert rr.ssrc == chunk.ssrc == engine.stats(a).ssrc_out
    assert chunk.cname == engine.cname.encode()
    (b,) = rr.blocks
    assert b.ssrc == 0xCAFE
    assert b.cumulative_lost == 5
    assert b.fraction_lost == 5 * 256 // 99
    assert b.highest_seq == 1099
    # A.8: 95 packets sent back to back, their timestamps 160 apart: every transit difference
    # is ~160 units, and J -> 160 (1 - (15/16)^94) ~ 159.6. A stall of the sender moves it by
    # its length / 16 at most per packet.
    assert 120 <= b.jitter <= 165
    assert b.jitter == pytest.approx(engine.stats(a).jitter_ms * 8, abs=1)
    assert b.lsr == 0 and b.dlsr == 0         # no SR from the phone yet

    # The next interval has no new packets: still an RR, without a report block (§6.4).
    quiet = await phone.report()
    assert kinds(quiet)[:2] == [201, 202] and quiet[0].blocks == []
    assert engine.stats(a).rtcp_reports_out >= 2


async def test_every_endpoint_announces_the_engines_one_cname(engine, phones):
    legs = [engine.create_endpoint() for _ in range(2)]
    found = []
    for leg in legs:
        phone = phones()
        engine.set_remote(leg, "127.0.0.1", phone.port)
        found.append(await phone.report())
    cnames = {packets[1].cname for packets in found}
    assert cnames == {engine.cname.encode()}
    assert len(engine.cname) == 24 and int(engine.cname, 16) >= 0    # RFC 7022: 96 random bits
    assert {packets[0].ssrc for packets in found} == {engine.stats(leg).ssrc_out for leg in legs}


async def test_sender_report_and_round_trip_from_the_peers_answer(engine, phones):
    a = engine.create_endpoint()        # toward the phone
    t = engine.create_endpoint()        # toward a trunk whose audio we relay to the phone
    phone, trunk = phones(), phones()
    engine.set_remote(t, "127.0.0.1", trunk.port)
    engine.connect(t, a)
    # The phone speaks first (a latches to it, RFC 4961), then the trunk, relayed to the phone.
    phone_ssrc = 0xBEEF
    for i in range(10):
        phone.send_rtp(pcmu(i, i * FRAME, phone_ssrc), a.local_port)
    await until(lambda: engine.stats(a).packets_in == 10)
    for i in range(10):
        trunk.send_rtp(pcmu(500 + i, i * FRAME, 0x7777), t.local_port)
    loop = asyncio.get_running_loop()
    received = [RtpPacket.parse(await asyncio.wait_for(loop.sock_recv(phone.rtp, 2048), 5)) for _ in range(10)]
    # Then its SR (§6.4.1), which also tells the engine where a's RTCP goes (latched).
    phone_ntp = ntp_of(time.time())
    phone.send_rtcp(sender_report(phone_ssrc, phone_ntp, 0, 10, 10 * FRAME) + sdes(phone_ssrc, b"phone"),
                    a.rtcp_port)

    report = await phone.report()
    seen_at = time.time()
    sr = report[0]
    ours = engine.stats(a).ssrc_out
    assert sr.ssrc == ours == received[0].ssrc
    assert sr.packet_count == 10 and sr.octet_count == 10 * FRAME
    # The NTP time is the wall clock (§6.4.1), and the RTP timestamp the same instant on our
    # stream's clock: at or after the last packet we sent.
    assert abs(sr.ntp / (1 << 32) - NTP_UNIX_OFFSET - seen_at) < 5
    assert 0 <= (sr.rtp_ts - received[-1].timestamp) & 0xFFFFFFFF < 8000 * 5
    (b,) = sr.blocks
    assert b.ssrc == phone_ssrc and b.cumulative_lost == 0 and b.highest_seq == 9
    # LSR echoes the middle 32 bits of the phone's SR; DLSR is the time we held it (1/65536 s).
    assert b.lsr == middle32(phone_ntp)
    assert 0 < b.dlsr < 5 * 65536

    # The phone answers: 25 % of our packets lost in its interval, 7 in all, 10 ms of jitter,
    # claiming it answered at once (DLSR 0) though it held the SR for at least 200 ms.
    await asyncio.sleep(0.2)
    phone.send_rtcp(receiver_report(phone_ssrc, block(ours, 64, 7, 9, 80, middle32(sr.ntp), 0)), a.rtcp_port)
    await until(lambda: any(isinstance(e, RtcpReport) for e in engine.received))
    stats = engine.stats(a)
    assert stats.remote_fraction_lost == 0.25
    assert stats.remote_packets_lost == 7
    assert stats.remote_jitter_ms == pytest.approx(10.0)
    assert stats.round_trip_ms >= 200.0
    claimed = stats.round_trip_ms
    event = next(e for e in engine.received if isinstance(e, RtcpReport))
    assert event.endpoint_id == a.id and event.fraction_lost == 0.25 and event.packets_lost == 7
    assert event.round_trip_ms == claimed and event.stats.remote_jitter_ms == pytest.approx(10.0)

    # An honest DLSR (the time since the SR arrived) leaves only the network's round trip.
    held = int((time.time() - seen_at) * 65536)
    phone.send_rtcp(receiver_report(phone_ssrc, block(ours, 0, 7, 9, 8, middle32(sr.ntp), held)), a.rtcp_port)
    await until(lambda: engine.stats(a).remote_fraction_lost == 0.0)
    assert 0.0 <= engine.stats(a).round_trip_ms < claimed - 150
    # An LSR that is not one of our SRs gives no round trip.
    phone.send_rtcp(receiver_report(phone_ssrc, block(ours, 0, 8, 9, 8, 0x12345678, 0)), a.rtcp_port)
    await until(lambda: engine.stats(a).remote_packets_lost == 8)
    assert engine.stats(a).round_trip_ms < claimed - 150

    # §6.6: the phone leaves.
    phone.send_rtcp(receiver_report(phone_ssrc) + sdes(phone_ssrc, b"phone") + bye(phone_ssrc), a.rtcp_port)
    await until(lambda: engine.stats(a).remote_bye)


@pytest.fixture
async def slow_engine(port_range):
    """An engine whose first periodic report is 15 s away: what reaches the phone is the BYE."""
    eng = MediaEngine("127.0.0.1", *port_range, rtcp_interval=60.0)
    await eng.start()
    eng.received = []
    eng.set_event_handler(eng.received.append)
    try:
        yield eng
    finally:
        eng.close()


async def test_bye_when_an_endpoint_that_sent_rtp_is_destroyed(slow_engine, phones):
    engine = slow_engine
    a = engine.create_endpoint()
    t = engine.create_endpoint()
    silent = engine.create_endpoint()
    phone, trunk = phones(), phones()
    engine.set_remote(a, "127.0.0.1", phone.port)
    engine.set_remote(silent, "127.0.0.1", phone.port)
    engine.set_remote(t, "127.0.0.1", trunk.port)
    engine.connect(t, a)
    trunk.send_rtp(pcmu(1, 0, 0x7777), t.local_port)
    await until(lambda: engine.stats(a).packets_out == 1)
    ours, quiet = engine.stats(a).ssrc_out, engine.stats(silent).ssrc_out
    engine.destroy(silent)    # never sent RTP: no BYE (§6.3.7)
    engine.destroy(a)

    goodbye = await phone.report()
    # §6.1: even a BYE compound starts with the report (an SR: we sent RTP since the last one).
    assert kinds(goodbye) == [200, 202, 203]
    assert goodbye[0].packet_count == 1 and goodbye[1].cname == engine.cname.encode()
    assert goodbye[-1].ssrc == goodbye[0].ssrc == ours
    await until(lambda: len([e for e in engine.received if isinstance(e, StreamStats) and e.final]) == 2)
    final = {e.endpoint_id: e for e in engine.received if isinstance(e, StreamStats) and e.final}
    assert final[a.id].rtcp_reports_out == 1 and final[silent.id].rtcp_reports_out == 0
    # The endpoint that never sent was destroyed first, on the same thread: nothing came from it.
    assert goodbye[0].ssrc != quiet
    with pytest.raises(BlockingIOError):
        phone.rtcp.recv(2048)


# --- reports we receive ------------------------------------------------------------------------


async def test_malformed_rtcp_is_counted_and_ignored_while_rtp_flows(engine, phones):
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    phone, agent = phones(), phones()
    engine.set_remote(b, "127.0.0.1", agent.port)
    engine.connect(a, b)
    ours = engine.stats(a).ssrc_out
    good = receiver_report(0xABC, block(ours, 128, 3, 1, 8))
    broken = [
        good[:20],                                          # truncated inside the report block
        good[:2] + struct.pack("!H", 9) + good[4:],         # length field beyond the datagram
        good[:2] + struct.pack("!H", 1) + good[4:],         # RC=1 but room for no block
        good + b"\0\0\0\0",                                 # lengths do not add up to the datagram
        sdes(0xABC, b"x") + good,                           # A.2: the first packet must be SR/RR
        header(1, 201, good[4:], padding=True) + sdes(0xABC, b"x"),   # padding on a non-last packet
        good + header(1, 202, struct.pack("!IBB", 0xABC, 1, 200) + b"x" * 6),   # SDES item overruns
        good + header(3, 203, struct.pack("!I", 0xABC)),    # BYE announces 3 SSRCs, holds 1
    ]
    for i, datagram in enumerate(broken):
        phone.send_rtp(pcmu(i, i * FRAME, 0xABC), a.local_port)
        phone.send_rtcp(datagram, a.rtcp_port)
    phone.send_rtcp(bytes([0x40]) + good[1:], a.rtcp_port)   # RTP/RTCP version 1: not RTCP at all
    phone.send_rtp(pcmu(len(broken), len(broken) * FRAME, 0xABC), a.local_port)

    got = []
    loop = asyncio.get_running_loop()
    for _ in range(len(broken) + 1):
        got.append(RtpPacket.parse(await asyncio.wait_for(loop.sock_recv(agent.rtp, 2048), 5)))
    assert len(got) == len(broken) + 1                    # RTP kept flowing
    await until(lambda: engine.stats(a).rtcp_malformed == len(broken))
    stats = engine.stats(a)
    assert stats.malformed == 1 and stats.rtcp_packets_in == len(broken)
    # Nothing of a rejected compound was used, not even its valid first packet.
    assert stats.remote_fraction_lost is None and not stats.remote_bye
    assert not [e for e in engine.received if isinstance(e, RtcpReport)]

    # A valid compound after all that is taken in.
    phone.send_rtcp(good + sdes(0xABC, b"phone"), a.rtcp_port)
    await until(lambda: engine.stats(a).remote_fraction_lost == 0.5)
    assert engine.stats(a).remote_packets_lost == 3


async def test_rtcp_multiplexed_on_the_rtp_port_is_answered_there(engine, phones):
    a = engine.create_endpoint()
    phone = phones()
    engine.set_remote(a, "127.0.0.1", phone.port)
    ours = engine.stats(a).ssrc_out
    for i in range(5):
        phone.send_rtp(pcmu(i, i * FRAME, 0x5150), a.local_port)
    # RFC 5761 §4: RTCP on the RTP port, told apart by its packet type.
    phone.rtp.sendto(receiver_report(0x5150, block(ours, 0, -2, 4, 16)) + sdes(0x5150, b"mux"),
                     ("127.0.0.1", a.local_port))
    await until(lambda: engine.stats(a).remote_packets_lost == -2)   # negative: duplicates
    stats = engine.stats(a)
    assert stats.remote_jitter_ms == pytest.approx(2.0) and stats.rtcp_packets_in == 1
    assert stats.packets_in == 5 and stats.malformed == 0
    # From now on our reports come to the RTP port too (§5.1.3: what the peer uses, we use).
    report = await phone.report(lambda ps: ps[0].type == 201, sock=phone.rtp)
    assert report[0].ssrc == ours and report[1].cname == engine.cname.encode()
    assert phone.last_from == ("127.0.0.1", a.local_port)


async def test_arbitrary_datagrams_on_the_rtcp_port_never_upset_the_engine(engine, phones):
    """Random bytes, and valid compounds cut or bit-flipped anywhere: each is either taken in
    whole or counted as malformed, and the endpoint keeps relaying RTP."""
    import random

    rng = random.Random(3550)
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    phone, agent = phones(), phones()
    engine.set_remote(b, "127.0.0.1", agent.port)
    engine.connect(a, b)
    ours = engine.stats(a).ssrc_out
    valid = (sender_report(0xD00D, ntp_of(time.time()), 1, 2, 3) + sdes(0xD00D, b"fuzz")
             + header(0, 204, b"\0" * 8) + bye(0xD00D))
    datagrams = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120))) for _ in range(150)]
    for _ in range(150):
        cut = bytearray(valid[:rng.randrange(1, len(valid) + 1)])
        for _ in range(rng.randrange(0, 3)):
            cut[rng.randrange(len(cut))] ^= 1 << rng.randrange(8)
        datagrams.append(bytes(cut))
    for i, datagram in enumerate(datagrams):
        phone.send_rtcp(datagram, a.rtcp_port)
        if i % 30 == 0:
            phone.send_rtp(pcmu(i, i * FRAME, 0xD00D), a.local_port)
    await until(lambda: engine.stats(a).rtcp_packets_in + engine.stats(a).malformed >= len(datagrams))
    stats = engine.stats(a)
    assert stats.rtcp_packets_in + stats.malformed == len(datagrams)
    assert 0 < stats.rtcp_malformed <= stats.rtcp_packets_in
    # Still relaying, and still reporting on our stream correctly.
    phone.send_rtp(pcmu(999, 999 * FRAME, 0xD00D), a.local_port)
    loop = asyncio.get_running_loop()
    for _ in range(len(range(0, len(datagrams), 30)) + 1):
        RtpPacket.parse(await asyncio.wait_for(loop.sock_recv(agent.rtp, 2048), 5))
    phone.send_rtcp(receiver_report(0xD00D, block(ours, 1, 1, 1, 1)), a.rtcp_port)
    await until(lambda: engine.stats(a).remote_fraction_lost == 1 / 256)
