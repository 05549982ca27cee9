"""The event loop lag monitor: a callback that hogs the loop shows up as lateness of the
monitor's timer, in the histogram served on /metrics."""

from __future__ import annotations

import asyncio
import math
import time

from callcenter.looplag import BUCKETS_MS, LagSnapshot, LoopLagMonitor, parse_prometheus


async def test_a_callback_that_blocks_the_loop_shows_up_as_lag() -> None:
    monitor = LoopLagMonitor(interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.1)
        quiet = monitor.snapshot()
        assert quiet.count >= 3
        time.sleep(0.06)   # a callback holding the loop for 60 ms: the next tick is that late
        await asyncio.sleep(0.05)
        after = monitor.snapshot()
    finally:
        monitor.stop()
    window = after - quiet
    assert window.count >= 1
    assert window.max_ms >= 40
    assert window.quantile_ms(1.0) >= 30
    stopped = monitor.snapshot().count
    await asyncio.sleep(0.05)
    assert monitor.snapshot().count == stopped   # stop() ends the ticks


def test_quantiles_interpolate_inside_buckets_and_never_exceed_the_largest_lag() -> None:
    monitor = LoopLagMonitor()
    for lag in [0.2] * 98 + [7.0, 9.0]:
        monitor.record(lag)
    monitor.record(-0.5)   # a timer that fired early counts as on time
    snap = monitor.snapshot()
    assert snap.count == 101
    assert snap.quantile_ms(0.5) <= 0.5
    assert 6.0 <= snap.quantile_ms(0.995) <= 9.0
    assert snap.quantile_ms(1.0) == 9.0
    assert math.isnan(LagSnapshot((0,) * (len(BUCKETS_MS) + 1), 0.0, 0.0).quantile_ms(0.99))


def test_the_histogram_round_trips_through_the_prometheus_text() -> None:
    monitor = LoopLagMonitor()
    for lag in (0.3, 1.5, 4.5, 11.0, 3000.0):
        monitor.record(lag)
    text = "\n".join(monitor.prometheus())
    assert 'callcenter_event_loop_lag_seconds_bucket{le="0.005"} 3' in text
    assert 'callcenter_event_loop_lag_seconds_bucket{le="+Inf"} 5' in text
    assert "callcenter_event_loop_lag_seconds_count 5" in text
    parsed = parse_prometheus(text + "\nother_metric 1\n")
    assert parsed.counts == monitor.snapshot().counts
    assert parsed.max_ms == 3000.0 and abs(parsed.total_ms - 3017.3) < 0.01
