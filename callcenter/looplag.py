"""How late the event loop runs what is due: the one number that says whether the server's
single loop keeps up (SIP timers, call control, HTTP, WebSockets all wait behind whatever
callback is running).

A timer asks to run every `interval` seconds and records how late it actually ran. A callback
that hogs the loop for 30 ms makes the next tick 0-30 ms late, so over time the histogram shows
how long anything due had to wait. It costs one timer callback per interval (20 per second by
default): nothing next to the work it watches.

Served in Prometheus' histogram form on /metrics (`callcenter_event_loop_lag_seconds`), so an
operator can alert on, say, the p99 over five minutes; the bench reads the same endpoint.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Seconds between ticks. 50 ms catches every stall of a few milliseconds or more often enough
#: for a p99 over a minute (1200 samples) while costing next to nothing.
INTERVAL = 0.050
#: Bucket upper bounds in milliseconds, dense where the goals sit (p99 < 10 ms for browser
#: agents, issue #7) and wide enough to show a stall of seconds.
BUCKETS_MS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0,
              250.0, 500.0, 1000.0, 2500.0)
METRIC = "callcenter_event_loop_lag_seconds"


@dataclass(frozen=True)
class LagSnapshot:
    """The histogram at one moment; subtract two for what happened in between."""

    counts: tuple[int, ...]
    "Ticks per bucket of BUCKETS_MS (not cumulative); the last entry counts the ones above."
    total_ms: float
    "Sum of every tick's lag."
    max_ms: float
    "Largest lag seen since the monitor started."

    @property
    def count(self) -> int:
        return sum(self.counts)

    def __sub__(self, earlier: LagSnapshot) -> LagSnapshot:
        return LagSnapshot(tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True)),
                           self.total_ms - earlier.total_ms, self.max_ms)

    def quantile_ms(self, q: float) -> float:
        """The q-quantile (0..1), interpolated linearly inside its bucket as Prometheus'
        histogram_quantile does; NaN with no ticks."""
        total = self.count
        if total == 0:
            return math.nan
        rank = q * total
        seen = 0
        value = BUCKETS_MS[-1]
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if index < len(BUCKETS_MS):   # above the last bound, its bound is all we know
                    low = BUCKETS_MS[index - 1] if index else 0.0
                    value = low + (BUCKETS_MS[index] - low) * (rank - seen) / count
                break
            seen += count
        # Never above the largest lag seen (interpolation spreads a bucket's ticks evenly).
        return min(value, self.max_ms) if self.max_ms > 0 else value


class LoopLagMonitor:
    """Measures the running loop's lateness every `interval` seconds (see the module doc)."""

    def __init__(self, interval: float = INTERVAL) -> None:
        if not 0.001 <= interval <= 10.0:
            raise ValueError(f"the loop lag interval must be 0.001..10 s, got {interval}")
        self.interval = interval
        self._counts = [0] * (len(BUCKETS_MS) + 1)
        self._total_ms = 0.0
        self._max_ms = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._handle is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        snap = self.snapshot()
        if snap.count:
            log.info("event loop lag: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d ticks",
                     snap.quantile_ms(0.5), snap.quantile_ms(0.99), snap.max_ms, snap.count)

    def record(self, lag_ms: float) -> None:
        """Count one observation (the timer does; tests may too)."""
        lag_ms = max(0.0, lag_ms)
        self._counts[bisect.bisect_left(BUCKETS_MS, lag_ms)] += 1
        self._total_ms += lag_ms
        self._max_ms = max(self._max_ms, lag_ms)

    def snapshot(self) -> LagSnapshot:
        return LagSnapshot(tuple(self._counts), self._total_ms, self._max_ms)

    def prometheus(self) -> list[str]:
        """The histogram in Prometheus' text format (seconds, cumulative buckets)."""
        lines = [f"# HELP {METRIC} How late the event loop ran a timer that was due (every {self.interval:g} s)",
                 f"# TYPE {METRIC} histogram"]
        cumulative = 0
        for bound, count in zip(BUCKETS_MS, self._counts, strict=False):
            cumulative += count
            lines.append(f'{METRIC}_bucket{{le="{bound / 1000:g}"}} {cumulative}')
        cumulative += self._counts[-1]
        lines.append(f'{METRIC}_bucket{{le="+Inf"}} {cumulative}')
        lines.append(f"{METRIC}_sum {self._total_ms / 1000:.6f}")
        lines.append(f"{METRIC}_count {cumulative}")
        lines.append("# HELP callcenter_event_loop_lag_max_seconds Largest event loop lag since start")
        lines.append("# TYPE callcenter_event_loop_lag_max_seconds gauge")
        lines.append(f"callcenter_event_loop_lag_max_seconds {self._max_ms / 1000:.6f}")
        return lines

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.record(1000.0 * (now - self._due))
        # The next tick is due one interval after this one ran, not after it was due: a stall
        # is counted once, not again by a burst of catch-up ticks.
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)


def parse_prometheus(text: str) -> LagSnapshot:
    """The loop lag histogram back from /metrics text (for benches and probes)."""
    cumulative: dict[float, int] = {}
    total = peak = 0.0
    for line in text.splitlines():
        if line.startswith(f"{METRIC}_bucket{{le=\""):
            bound, value = line[len(METRIC) + 12:].split('"} ')
            cumulative[math.inf if bound == "+Inf" else float(bound) * 1000] = int(float(value))
        elif line.startswith(f"{METRIC}_sum "):
            total = float(line.split()[1]) * 1000
        elif line.startswith("callcenter_event_loop_lag_max_seconds "):
            peak = float(line.split()[1]) * 1000
    if not cumulative:
        raise ValueError(f"no {METRIC} histogram in the text")
    counts, previous = [], 0
    for bound in (*BUCKETS_MS, math.inf):
        value = next((v for b, v in cumulative.items() if math.isclose(b, bound, rel_tol=1e-9) or b == bound), previous)
        counts.append(value - previous)
        previous = value
    return LagSnapshot(tuple(counts), total, peak)
