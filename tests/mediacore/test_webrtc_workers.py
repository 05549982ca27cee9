"""Browser calls in WebRTC worker processes: a real `mediacore.webrtc_worker` child runs the
aiortc side of the call, an aiortc peer in this test stands in for the browser, and the call's
audio reaches the server's media engine as plain RTP on an ordinary PCMU endpoint, which the
engine relays to a "SIP phone" (a UDP socket of this test) like any leg. Workers end with the
pool, and on their own when the server that started them dies; a killed worker ends its calls
with a reason and the pool starts a new one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mediacore import webrtc_workers
from mediacore.codecs import get_decoder, get_encoder
from mediacore.errors import MediaError
from mediacore.rtp import RtpPacket
from mediacore.rtp_frame_link import MAX_OUTBOX_FRAMES, RtpFrameLink
from mediacore.webrtc import WEBRTC_RATE
from mediacore.webrtc_workers import WORKER_FAILED, RemoteBridge, WebRtcWorkerPool
from tests.mediacore.test_webrtc_bridge import Browser, dominant_frequency, wait_until
from tests.webui.test_softphone_ws import SipCaller

pytestmark = pytest.mark.timeout(60)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


class Phone(SipCaller):
    """The SIP side: an engine endpoint talking PCMU with a UDP socket that sends a tone."""

    def heard(self, packets: int = 25) -> np.ndarray:
        decoder = get_decoder("PCMU")
        return np.concatenate([decoder.decode(p.payload) for p in self.received[-packets:]])


@pytest.fixture
async def pool():
    workers = WebRtcWorkerPool(1, log_level="WARNING")
    try:
        yield workers
    finally:
        await workers.close()


async def connect(bridge: RemoteBridge, browser: Browser) -> None:
    await browser.accept(await bridge.accept_offer(await browser.offer()))
    await wait_until(lambda: bridge.connection_state == "connected")


# -- the link on its own -----------------------------------------------------------------------


async def test_the_rtp_link_sends_one_pcmu_packet_per_20_ms_and_reads_only_its_engine() -> None:
    engine_side = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (engine_side, stranger, sock):
        s.bind(("127.0.0.1", 0))
    link = RtpFrameLink(sock, engine_side.getsockname())
    try:
        tone = np.round(8000 * np.sin(2 * np.pi * 500 * np.arange(160) / 8000)).astype(np.int16).tobytes()
        for _ in range(3):   # a burst from aiortc's decoder goes out on the 20 ms clock
            link.write_frame(tone)
        await asyncio.sleep(0.1)
        engine_side.setblocking(False)
        packets = []
        with contextlib.suppress(BlockingIOError):
            while True:
                packets.append(RtpPacket.parse(engine_side.recv(2048)))
        assert len(packets) == 3 and {p.payload_type for p in packets} == {0}
        assert [(p.sequence_number - packets[0].sequence_number) & 0xFFFF for p in packets] == [0, 1, 2]
        assert [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets] == [0, 160, 320]
        decoded = get_decoder("PCMU").decode(packets[0].payload)
        assert abs(dominant_frequency(decoded, 8000) - 500) < 30

        port = sock.getsockname()
        frame = RtpPacket(0, 7, 0, 99, get_encoder("PCMU").encode(np.frombuffer(tone, np.int16)))
        stranger.sendto(frame.serialize(), port)                      # not the engine: ignored
        engine_side.sendto(b"\x81\xc8garbage-rtcp", port)              # not RTP audio: ignored
        engine_side.sendto(frame.serialize(), port)
        engine_side.sendto(frame.serialize(), port)                    # duplicate: ignored
        await asyncio.sleep(0.05)
        assert link.read_frame() is not None and link.read_frame() is None
        assert link.stats.packets_received == 1 and link.stats.packets_ignored == 3
        with pytest.raises(MediaError, match="320 bytes"):
            link.write_frame(b"\x00" * 10)
        # A long burst keeps the newest 160 ms; the backlog goes out at twice the pace.
        for _ in range(MAX_OUTBOX_FRAMES + 2):
            link.write_frame(tone)
        assert link.stats.outbox_overruns == 2
        await wait_until(lambda: link.stats.packets_sent == 3 + MAX_OUTBOX_FRAMES, 5)
    finally:
        link.close()
        engine_side.close()
        stranger.close()


# -- a call on a worker ------------------------------------------------------------------------


async def test_audio_flows_both_ways_between_the_browser_and_the_engine_through_a_worker(engine, pool) -> None:
    endpoint = engine.create_endpoint("PCMU", 0)
    phone = Phone(engine, frequency=500)
    engine.connect(endpoint, phone.endpoint)   # the B2BUA bridging the agent to the SIP caller
    states: list[str] = []
    bridge = pool.bridge(engine, endpoint, on_state=states.append)
    browser = Browser(frequency=1000)
    try:
        await connect(bridge, browser)
        assert "connected" in states and bridge.worker_pid is not None and bridge.worker_pid != os.getpid()
        await wait_until(lambda: len(phone.received) >= 75 and len(browser.heard) >= 100, 15)
        await asyncio.sleep(0.5)
        # The browser's 1 kHz reaches the SIP phone as PCMU RTP, relayed by the engine ...
        heard = phone.heard()
        assert abs(dominant_frequency(heard, 8000) - 1000) < 15
        assert np.sqrt(np.mean(heard.astype(float) ** 2)) > 2000
        # ... and the phone's 500 Hz reaches the browser.
        assert abs(dominant_frequency(browser.last(0.5), WEBRTC_RATE) - 500) < 10

        # A prompt the engine plays to the agent's endpoint reaches the browser too.
        engine.disconnect(endpoint)
        t = np.arange(8000 * 3) / 8000
        engine.play(endpoint, np.round(6000 * np.sin(2 * np.pi * 750 * t)).astype(np.int16))
        await asyncio.sleep(0.8)
        assert abs(dominant_frequency(browser.last(0.4), WEBRTC_RATE) - 750) < 10

        # Mute: the engine gets silence (not nothing) from the worker.
        engine.connect(endpoint, phone.endpoint)
        bridge.set_muted(True)
        await asyncio.sleep(0.5)
        count = len(phone.received)
        await wait_until(lambda: len(phone.received) >= count + 10)
        assert np.abs(phone.heard(10).astype(int)).max() < 50
        assert (await pool.ping()) == [1]
    finally:
        await bridge.close()
        await browser.close()
        phone.close()
    assert bridge.connection_state == "closed"
    assert bridge.stats.frames_to_engine >= 75 and bridge.stats.frames_from_engine >= 50
    assert bridge.link_stats.packets_sent >= 75 and bridge.link_stats.packets_received >= 50
    assert (await pool.ping()) == [0]


async def test_bad_offers_get_clear_errors_from_the_worker(engine, pool) -> None:
    bridge = pool.bridge(engine, engine.create_endpoint("PCMU", 0))
    try:
        with pytest.raises(MediaError, match="empty"):
            await bridge.accept_offer("")
        with pytest.raises(MediaError, match="m=audio"):
            await bridge.accept_offer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
        with pytest.raises(MediaError, match="no offer yet"):
            await bridge.add_candidate("1 1 udp 2130706431 192.0.2.1 5000 typ host")
        with pytest.raises(MediaError, match="PCMU or L16"):
            pool.bridge(engine, engine.create_endpoint("PCMA", 8))
    finally:
        await bridge.close()
    with pytest.raises(MediaError, match="closed"):
        await bridge.accept_offer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")


async def test_a_killed_worker_ends_its_calls_with_a_reason_and_the_pool_serves_new_calls(engine, pool) -> None:
    failures: list[str] = []
    states: list[str] = []
    bridge = pool.bridge(engine, engine.create_endpoint("PCMU", 0), on_state=states.append,
                         on_failure=failures.append)
    browser = Browser(frequency=1000)
    second = Browser(frequency=600)
    try:
        await connect(bridge, browser)
        pid = bridge.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: failures == [WORKER_FAILED], 10)
        assert states[-1] == "failed" and bridge.connection_state == "failed"
        with pytest.raises(MediaError):
            await bridge.accept_offer(await browser.offer())
        # The slot got a new process, which takes the next call.
        endpoint = engine.create_endpoint("PCMU", 0)
        phone = Phone(engine, frequency=500)
        engine.connect(endpoint, phone.endpoint)
        again = pool.bridge(engine, endpoint)
        try:
            await connect(again, second)
            assert again.worker_pid not in (None, pid)
            assert pool.workers[0].restarts == 1
            await wait_until(lambda: len(phone.received) >= 50, 10)
            assert abs(dominant_frequency(phone.heard(), 8000) - 600) < 15
        finally:
            await again.close()
            phone.close()
    finally:
        await bridge.close()
        await browser.close()
        await second.close()


async def test_a_hung_worker_is_killed_and_replaced(engine, pool, monkeypatch) -> None:
    monkeypatch.setattr(webrtc_workers, "HEARTBEAT_INTERVAL", 0.1)
    monkeypatch.setattr(webrtc_workers, "HEARTBEAT_TIMEOUT", 0.5)
    failures: list[str] = []
    bridge = pool.bridge(engine, engine.create_endpoint("PCMU", 0), on_failure=failures.append)
    assert await pool.ping() == [1]
    pid = bridge.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)   # alive, but answers nothing: as good as deadlocked
    try:
        await wait_until(lambda: failures == [WORKER_FAILED], 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    # The successor gets the real patience back: on a loaded machine half a second is short.
    monkeypatch.setattr(webrtc_workers, "HEARTBEAT_INTERVAL", 5.0)
    monkeypatch.setattr(webrtc_workers, "HEARTBEAT_TIMEOUT", 30.0)
    await wait_until(lambda: not alive(pid), 10)
    assert await pool.ping() == [0]   # the new process answers
    assert pool.workers[0].pid != pid and pool.workers[0].restarts == 1


async def test_workers_end_when_the_pool_closes(engine) -> None:
    pool = WebRtcWorkerPool(2, log_level="WARNING")
    try:
        assert await pool.ping() == [0, 0]
        pids = [w.pid for w in pool.workers]
        assert all(pids) and len(set(pids)) == 2
        # Workers yield the CPU to the server's loop when there is not enough for both.
        assert all(nice_of(pid) == min(19, os.nice(0) + webrtc_workers.WORKER_NICE) for pid in pids)
        bridge = pool.bridge(engine, engine.create_endpoint("PCMU", 0))
        other = pool.bridge(engine, engine.create_endpoint("PCMU", 0))
        assert sorted(w.calls for w in pool.workers) == [1, 1]   # fewest calls first
    finally:
        await pool.close()
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(MediaError, match="closed"):
        pool.start()
    await bridge.close()   # after the pool: nothing to do, no error
    await other.close()


def test_a_worker_exits_by_itself_when_the_server_that_started_it_is_killed(tmp_path: Path) -> None:
    """The server's process dies without closing anything (SIGKILL): its worker sees end of file
    on the channel and exits instead of lingering with open sockets."""
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent("""
        import asyncio, sys
        from mediacore.webrtc_workers import WebRtcWorkerPool

        async def main():
            pool = WebRtcWorkerPool(1, log_level="WARNING")
            await pool.ping()
            print(pool.workers[0].pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """))
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert server.stdout is not None
        worker_pid = int(server.stdout.readline())
        assert alive(worker_pid)
        server.kill()
        server.wait(10)
        deadline = time.monotonic() + 15
        while alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker_pid)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
