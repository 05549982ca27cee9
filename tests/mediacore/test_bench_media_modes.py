"""`python -m bench media` in its recording and conference modes, at a size that runs in seconds:
the scenario must produce the result shape the lead's reference runs rely on, with figures that
follow from what was asked."""

from __future__ import annotations

import asyncio
import tempfile
import time

import pytest

from bench import media
from mediacore import MediaEngine, MediaError
from mediacore.rtp import RtpPacket


def run(argv: list[str], port_range: tuple[int, int]) -> dict:
    args = media.parser().parse_args([*argv, "--port-min", str(port_range[0]), "--port-max", str(port_range[1])])
    return media.run(args)


def test_record_mode_records_the_calls_whole_and_cleans_up(port_range, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))    # where the WAV files go
    doc = run(["--calls", "3", "--record", "2", "--duration", "1.5"], port_range)
    assert doc["scenario"] == "media" and doc["params"]["mode"] == "record" and doc["params"]["record"] == 2
    results = doc["results"]
    assert results["packets_sent"] == results["packets_received"] == results["packets_relayed"] > 0
    recorded = results["recordings"]
    assert recorded["recordings"] == recorded["recordings_ok"] == 2 and recorded["errors"] == []
    # 16-bit stereo at 8 kHz: 32,000 bytes a second plus a header, for at least the window.
    assert recorded["duration_min_s"] >= 1.5 * media.RECORDING_MIN_SHARE
    assert recorded["bytes"] >= 2 * 32000 * recorded["duration_min_s"]
    assert list(tmp_path.iterdir()) == []                       # the recordings are gone


def test_conference_mode_measures_every_members_mix(port_range):
    doc = run(["--conferences", "2", "--members", "3", "--duration", "1.5"], port_range)
    params, results = doc["params"], doc["results"]
    assert params["mode"] == "conferences" and params["streams"] == 6
    assert results["members_attempted"] == 6 and results["silent_streams"] == 0
    # Every member spoke to the engine and heard a mix generated on the engine's clock: one
    # packet a tick, numbered without gaps.
    assert results["member_packets_in"] == results["packets_sent"] > 0
    assert results["mix_packets_expected"] > 0 and results["mix_packets_lost"] == 0
    assert results["rtp_loss_pct"] == 0.0 and results["members_ok"] == 6
    assert results["latency_p50_ms"] is None and results["jitter_p99_ms"] >= results["jitter_p50_ms"] >= 0
    assert results["cpu_us_per_member_tick"] > 0


async def test_residence_probe_counts_every_relayed_packet(port_range, peers):
    """The bench's probe of the delay the engine adds: one count per packet read, in a bin
    no later than the time the test waited for it."""
    with pytest.raises(MediaError):
        MediaEngine("127.0.0.1", *port_range, realtime_priority=100)
    with pytest.raises(MediaError):
        MediaEngine("127.0.0.1", *port_range, rtcp_interval=0.0)
    engine = MediaEngine("127.0.0.1", *port_range, measure_residence=True, realtime_priority=0)
    await engine.start()
    try:
        assert not engine.realtime
        a, b = engine.create_endpoint(), engine.create_endpoint()
        trunk, phone = peers(), peers()
        engine.set_remote(b, "127.0.0.1", phone.port)
        engine.connect(a, b)
        started = time.monotonic()
        for i in range(20):
            trunk.send_rtp(RtpPacket(0, i, i * 160, 0x4242, b"\xff" * 160), a.local_port)
        loop = asyncio.get_running_loop()
        for _ in range(20):
            await asyncio.wait_for(loop.sock_recv(phone.sock, 2048), 5)
        waited = time.monotonic() - started
        width, counts = engine.residence_histogram(reset=True)
        assert int(counts.sum()) == 20
        assert int(counts.nonzero()[0][-1]) * width <= waited * 1e9
        assert int(engine.residence_histogram()[1].sum()) == 0      # reset
    finally:
        engine.close()
    plain = MediaEngine("127.0.0.1", *port_range)
    await plain.start()
    try:
        assert plain.residence_histogram() is None
    finally:
        plain.close()


def test_relay_mode_times_packets_from_the_kernels_own_send_and_receive_stamps(port_range):
    doc = run(["--calls", "3", "--duration", "1.5", "--baseline"], port_range)
    params, results = doc["params"], doc["results"]
    assert params["mode"] == "relay" and "kernel" in params["jitter_method"]
    for measured in (results, results["baseline"]):
        assert measured["jitter_method"] == "kernel-tx-to-kernel-rx"
        assert measured["packets_sent"] == measured["packets_received"] > 0
        # Every datagram the generator sent was stamped by the kernel and matched on its return.
        assert measured["tx_stamps_missing"] == 0 and measured["tx_stamps_mismatched"] == 0
        assert measured["tx_stamps_reported"] >= measured["packets_received"]
        # The kernel stamps a datagram after the user-space stamp taken before its sendmmsg: the
        # delay it measures is the smaller, quantile for quantile.
        for q in ("p50", "p99", "max"):
            assert 0 <= measured[f"latency_{q}_ms"] <= measured[f"latency_userstamp_{q}_ms"]
        assert 0 <= measured["jitter_p50_ms"] <= measured["jitter_p99_ms"] <= measured["jitter_max_ms"]
        assert 0 <= measured["rfc3550_jitter_mean_ms"] <= measured["rfc3550_jitter_max_ms"]
        assert measured["runqueue_wait_pct"] >= 0 and measured["generator_runqueue_wait_pct"] >= 0


def test_relay_mode_can_still_measure_the_older_way(port_range):
    doc = run(["--calls", "2", "--duration", "1", "--tx-stamps", "0"], port_range)
    params, results = doc["params"], doc["results"]
    assert "user-space" in params["jitter_method"]
    assert results["jitter_method"] == "userspace-send-stamp-to-kernel-rx" and results["tx_stamps_reported"] == 0
    assert results["jitter_p99_ms"] == results["jitter_userstamp_p99_ms"]
    assert results["latency_p50_ms"] == results["latency_userstamp_p50_ms"]
