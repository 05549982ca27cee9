"""ACD decisions at scale: `python -m bench acd --agents 200 --callers 500 --json OUT`.

Drives the sans-IO distributor directly (no network: this measures the decisions, not SIP):
agents spread over queues, a backlog of waiting callers kept topped up, agents answering,
talking, wrapping up, going on breaks and letting some offers ring out, on a simulated clock.
Every call into the ACD is timed; the figures are the latency of those decisions.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.distributor import Acd
from acd.queues import QueueConfig, QueuedCall, Strategy
from bench.common import write_result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def run(agents: int, queues: int, callers: int, events: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    acd = Acd(random.Random(seed))
    strategies = list(Strategy)
    for q in range(queues):
        acd.add_queue(QueueConfig(f"q{q}", f"queue {q}", strategies[q % len(strategies)], wrapuptime=15,
                                  ring_timeout=15, max_wait=0))
    for a in range(agents):
        home = a % queues
        # Each agent serves its home queue first and a neighbour at a higher penalty.
        memberships = {f"q{home}": Membership(0), f"q{(home + 1) % queues}": Membership(2)}
        acd.add_agent(Agent(f"a{a}", f"agent {a}", queues=memberships, skills={"zh": rng.randint(5, 10)}))
    now = 0.0
    timings: list[float] = []
    calls = 0

    def timed(fn, *args) -> list:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        result = fn(*args)
        timings.append(time.perf_counter() - t0)
        return result

    for a in range(agents):
        timed(acd.login, f"a{a}", now)
    talking: list[tuple[float, str]] = []
    for _ in range(events):
        now += rng.uniform(0.01, 0.2)
        while len(acd.waiting) < callers:
            calls += 1
            call = QueuedCall(f"c{calls}", f"q{rng.randrange(queues)}", now, caller=f"138{calls:08d}",
                              priority=10 if rng.random() < 0.1 else 0)
            timed(acd.enqueue, call, now)
        ringing = [(c.call_id, agent) for c in acd.waiting.values() for agent in c.offered_to]
        if ringing:
            call_id, agent_id = rng.choice(ringing)
            if rng.random() < 0.9:
                timed(acd.answered, call_id, agent_id, now)
                talking.append((now + rng.uniform(30, 300), call_id))
            else:
                timed(acd.ring_timeout, call_id, agent_id, now)
        talking.sort()
        while talking and talking[0][0] <= now:
            _, call_id = talking.pop(0)
            timed(acd.agent_hangup if rng.random() < 0.5 else acd.caller_hangup, call_id, now)
        if rng.random() < 0.02:
            agent = acd.agents[f"a{rng.randrange(agents)}"]
            if agent.state is AgentState.READY:
                timed(acd.not_ready, agent.id, NotReadyReason.BREAK, now)
            elif agent.state is AgentState.NOT_READY:
                timed(acd.ready, agent.id, now)
        timed(acd.tick, now)
    offers = sum(1 for e in acd.log if e.event == "CONNECT")
    ms = [t * 1000 for t in timings]
    return {"ops": len(ms), "connected": offers, "latency_p50_ms": round(percentile(ms, 50), 3),
            "latency_p99_ms": round(percentile(ms, 99), 3), "latency_max_ms": round(max(ms), 3),
            "ops_per_s": round(len(ms) / sum(timings), 1), "simulated_s": round(now, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench acd")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--callers", type=int, default=500, help="callers kept waiting")
    parser.add_argument("--events", type=int, default=5000, help="simulation steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.agents, args.queues, args.callers, args.events, args.seed)
    write_result(args.json, "acd", vars(args) | {"json": None}, results)
    return 0



