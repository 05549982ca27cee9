"""Wallboard figures: per queue (waiting, longest wait, answered, abandoned, service level,
average wait, agents ready for a call, queued callbacks pending) and per agent (state, time in
state, on a direct call, current caller, calls, average handle time).

Counters are fed from the queue log as it is written (so they agree with it); live figures
are read from the ACD at the moment of the snapshot. Counting starts with the process (a
day's totals across restarts come from the queue_log table in reports).
"""

from __future__ import annotations

from dataclasses import dataclass

from acd.agents import AgentState
from acd.distributor import Acd, QueueLogEntry


@dataclass
class QueueCounters:
    answered: int = 0
    abandoned: int = 0
    timed_out: int = 0
    within_service_level: int = 0
    total_wait: float = 0.0


class Wallboard:
    def __init__(self, acd: Acd) -> None:
        self.acd = acd
        self.counters: dict[str, QueueCounters] = {q: QueueCounters() for q in acd.queues}

    def record(self, entry: QueueLogEntry) -> None:
        counters = self.counters.get(entry.queue_id)
        if counters is None:
            return
        if entry.event == "CONNECT":
            wait = float(entry.data[0]) if entry.data else 0.0
            counters.answered += 1
            counters.total_wait += wait
            if wait <= self.acd.queues[entry.queue_id].service_level:
                counters.within_service_level += 1
        elif entry.event == "ABANDON":
            counters.abandoned += 1
        elif entry.event in ("EXITWITHTIMEOUT", "EXITEMPTY"):
            counters.timed_out += 1

    def snapshot(self, now: float) -> dict[str, list[dict[str, object]]]:
        queues = []
        for queue_id, queue in self.acd.queues.items():
            entries = [c for c in self.acd.waiting.values() if c.queue_id == queue_id]
            waiting = [c for c in entries if not c.callback]   # callers on the line
            c = self.counters[queue_id]
            offered = c.answered + c.abandoned + c.timed_out
            queues.append({
                "id": queue_id, "name": queue.name, "waiting": len(waiting),
                "longest_wait": round(max((call.waited(now) for call in waiting), default=0.0)),
                "answered": c.answered, "abandoned": c.abandoned,
                "service_level_pct": round(100 * c.within_service_level / offered, 1) if offered else None,
                "average_wait": round(c.total_wait / c.answered, 1) if c.answered else None,
                # Ready and free: an agent on a direct call is offered nothing until it ends.
                "agents_ready": sum(1 for a in self.acd.members[queue_id]
                                    if a.state is AgentState.READY and a.id not in self.acd.busy),
                # Booked callbacks not yet made (those being dialled count as connected calls).
                "callbacks": len(entries) - len(waiting),
            })
        agents = []
        for agent in self.acd.agents.values():
            caller = ""
            if agent.call_id:
                call = self.acd.waiting.get(agent.call_id) or (
                    conn.call if (conn := self.acd.connected.get(agent.call_id)) else None)
                caller = call.caller if call is not None else ""
            agents.append({
                "id": agent.id, "name": agent.name, "state": agent.state.value,
                "reason": agent.reason.value if agent.reason else None,
                # On a call the queues did not give them (acd.direct_calls); the state stays as it is.
                "busy": agent.id in self.acd.busy,
                "in_state": round(now - agent.state_since) if agent.state_since else 0,
                "caller": caller, "call_id": agent.call_id, "calls": agent.calls_taken,
                "average_handle_time": round(agent.talk_seconds / agent.calls_taken) if agent.calls_taken else None,
            })
        return {"queues": queues, "agents": agents}
