"""The engine as an object: port allocation, lifecycle, shutdown and clear errors."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from mediacore import MediaEngine, MediaError, StreamStats
from mediacore.rtp import RtpPacket


def can_bind(port: int, host: str = "127.0.0.1") -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


async def test_ports_are_even_rtp_odd_rtcp_and_run_out_cleanly(port_range, next_event):
    low = port_range[0] + 1                         # odd: the first pair starts one higher
    engine = MediaEngine("127.0.0.1", low, low + 4)  # room for exactly two pairs
    await engine.start()
    engine.received, engine.arrived = [], asyncio.Event()
    engine.set_event_handler(lambda e: (engine.received.append(e), engine.arrived.set()))
    try:
        first = engine.create_endpoint()
        second = engine.create_endpoint()
        assert sorted([first.local_port, second.local_port]) == [low + 1, low + 3]
        assert not can_bind(first.local_port) and not can_bind(first.rtcp_port)
        with pytest.raises(MediaError, match="no free RTP port pair"):
            engine.create_endpoint()
        engine.destroy(first)
        # The port is free again once the engine thread has closed the sockets and said so.
        await next_event(engine, lambda e: isinstance(e, StreamStats) and e.endpoint_id == first.id)
        third = engine.create_endpoint()
        assert third.local_port == first.local_port and third.id != first.id
    finally:
        engine.close()


async def test_ports_held_by_another_program_are_skipped(port_range):
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", port_range[0] + 1))   # the RTCP port of the first pair
    engine = MediaEngine("127.0.0.1", port_range[0], port_range[0] + 5)
    await engine.start()
    try:
        assert engine.create_endpoint().local_port == port_range[0] + 2
    finally:
        engine.close()
        squatter.close()


async def test_close_with_endpoints_open_stops_the_thread_and_frees_the_ports(port_range, peers):
    engine = MediaEngine("127.0.0.1", *port_range)
    await engine.start()
    tid = engine.engine_thread_id
    assert os.path.exists(f"/proc/self/task/{tid}")
    a, b = engine.create_endpoint(), engine.create_endpoint(rtp_timeout=5)
    engine.connect(a, b)
    peer = peers()
    engine.set_remote(b, "127.0.0.1", peer.port)
    for seq in range(20):
        peer.send_rtp(RtpPacket(0, seq, seq * 160, 1, bytes(160)), a.local_port)
    await peer.recv_rtp(1)
    engine.close()
    assert not os.path.exists(f"/proc/self/task/{tid}")
    for endpoint in (a, b):
        assert can_bind(endpoint.local_port) and can_bind(endpoint.rtcp_port)
    engine.close()   # idempotent
    with pytest.raises(MediaError, match="closed"):
        engine.create_endpoint()
    with pytest.raises(MediaError, match="closed"):
        engine.stats(a)


async def test_requests_before_start_are_refused(port_range):
    engine = MediaEngine("127.0.0.1", *port_range)
    with pytest.raises(MediaError, match="not started"):
        engine.create_endpoint()
    engine.close()


async def test_bad_requests_get_clear_errors(engine):
    with pytest.raises(MediaError, match="not supported"):
        engine.create_endpoint("G729", 18)
    with pytest.raises(MediaError, match="0..127"):
        engine.create_endpoint("PCMU", 128)
    with pytest.raises(MediaError, match="RFC 5761"):
        engine.create_endpoint("PCMU", 72)
    with pytest.raises(MediaError, match="different payload types"):
        engine.create_endpoint("PCMU", 0, telephone_event_pt=0)
    with pytest.raises(MediaError, match="rtp_timeout"):
        engine.create_endpoint(rtp_timeout=0)
    a = engine.create_endpoint("pcma", 8)   # encoding names are case-insensitive
    assert a.codec == "PCMA"
    with pytest.raises(MediaError, match="IP address"):
        engine.set_remote(a, "phone.example.com", 4000)
    with pytest.raises(MediaError, match="IPv6"):
        engine.set_remote(a, "::1", 4000)
    with pytest.raises(MediaError, match="port"):
        engine.set_remote(a, "127.0.0.1", 0)
    with pytest.raises(MediaError, match="itself"):
        engine.connect(a, a)
    engine.destroy(a)
    for call in (engine.stats, engine.destroy, engine.disconnect):
        with pytest.raises(MediaError, match="does not exist"):
            call(a)
    with pytest.raises(MediaError, match="does not exist"):
        engine.connect(a, engine.create_endpoint())


def test_bad_configuration_is_refused():
    with pytest.raises(MediaError, match="IP address"):
        MediaEngine("localhost", 10000, 10099)
    with pytest.raises(MediaError, match="port range"):
        MediaEngine("127.0.0.1", 20000, 10000)
    with pytest.raises(MediaError, match="pair"):
        MediaEngine("127.0.0.1", 20000, 20000)


async def test_unusable_bind_address_is_reported_at_start(port_range):
    engine = MediaEngine("192.0.2.1", *port_range)   # TEST-NET-1: not an address of this host
    with pytest.raises(MediaError, match="cannot bind"):
        await engine.start()
    engine.close()


async def test_ipv6_legs_relay(port_range, peers):
    try:
        engine = MediaEngine("::1", *port_range)
        await engine.start()
    except MediaError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        a, b = engine.create_endpoint(), engine.create_endpoint("PCMA", 8)
        trunk, phone = peers(socket.AF_INET6, "::1"), peers(socket.AF_INET6, "::1")
        engine.set_remote(b, "::1", phone.port)
        engine.connect(a, b)
        trunk.send_rtp(RtpPacket(0, 1, 0, 1, bytes([0xFF]) * 160), a.local_port)
        got = (await phone.recv_rtp(1))[0]
        assert got.payload_type == 8 and got.payload == bytes([0xD5]) * 160   # µ-law 0 -> A-law 0
        assert engine.stats(a).remote == ("::1", trunk.port)
    finally:
        engine.close()


async def test_a_failing_event_handler_does_not_stop_delivery(engine, peers, next_event, until):
    calls = []

    def handler(event):
        calls.append(event)
        raise RuntimeError("bug in the caller")

    engine.set_event_handler(handler)
    a = engine.create_endpoint()
    b = engine.create_endpoint()
    engine.destroy(a)
    engine.destroy(b)
    await until(lambda: len(calls) == 2)
    assert {e.endpoint_id for e in calls} == {a.id, b.id}


async def test_command_bursts_beyond_the_ring_are_applied_in_order(engine, peers):
    # More commands than the 4096-slot ring: the caller waits for room instead of losing any,
    # and the engine applies them in the order given (the last set_remote wins).
    a, b = engine.create_endpoint(), engine.create_endpoint()
    decoy, phone, trunk = peers(), peers(), peers()
    engine.connect(a, b)
    for i in range(6000):
        engine.set_remote(b, "127.0.0.1", decoy.port if i % 2 else phone.port)
        engine.set_rtp_timeout(b, 1 + i)
    engine.set_remote(b, "127.0.0.1", phone.port)
    trunk.send_rtp(RtpPacket(0, 1, 0, 1, bytes(160)), a.local_port)
    await phone.recv_rtp(1)
    assert decoy.pending() == 0
