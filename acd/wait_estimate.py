"""The estimated wait a queue announces to a caller ("estimated wait: M minutes").

The formula (the one Erlang-free estimate every ACD starts from): with N agents staffing the
queue and each finishing a call every AHT seconds on average (talk plus wrap-up), an agent
frees up every AHT / N seconds, so the caller at position P (1 = next in line) waits about

    EWT = P × AHT / N

AHT is the mean of the queue's last `RECENT` completed calls. Before any call of the queue has
completed, the mean wait of its last `RECENT` answered calls stands in; with neither, or with
nobody staffing the queue, the wait is unknown and is not announced.
"""

from __future__ import annotations

from collections import deque

#: Calls remembered per queue: few enough that the estimate follows a rush within minutes,
#: enough that one very long call does not swing it.
RECENT = 20


class WaitEstimator:
    def __init__(self) -> None:
        self._handle: dict[str, deque[float]] = {}
        self._wait: dict[str, deque[float]] = {}

    def handled(self, queue_id: str, seconds: float) -> None:
        """A call of the queue completed after `seconds` of talk and wrap-up."""
        self._handle.setdefault(queue_id, deque(maxlen=RECENT)).append(max(0.0, seconds))

    def waited(self, queue_id: str, seconds: float) -> None:
        """A caller of the queue reached an agent after waiting `seconds`."""
        self._wait.setdefault(queue_id, deque(maxlen=RECENT)).append(max(0.0, seconds))

    def estimate(self, queue_id: str, position: int, staffed: int) -> float | None:
        """Seconds a caller at `position` is expected to wait, or None when unknown."""
        if position < 1 or staffed < 1:
            return None
        handle = self._handle.get(queue_id)
        if handle:
            return position * (sum(handle) / len(handle)) / staffed
        wait = self._wait.get(queue_id)
        if wait:
            return sum(wait) / len(wait)
        return None
