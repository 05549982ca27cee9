"""Queues: their configuration (Asterisk's keys where a user knows them), the calls waiting in
them, and the ring strategies that pick which agents to offer a call to."""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from acd.agents import Agent


class Strategy(enum.Enum):
    RINGALL = "ringall"          # every available agent of the best penalty tier at once
    LEASTRECENT = "leastrecent"  # the one whose last call ended longest ago
    FEWESTCALLS = "fewestcalls"  # the one who took the fewest calls
    RANDOM = "random"
    RRMEMORY = "rrmemory"        # round robin, remembering where it stopped
    LINEAR = "linear"            # always in member order, from the first


class BlacklistTreatment(enum.Enum):
    """What a queue does with a caller the CRM has blacklisted (黑名单)."""

    NORMAL = "normal"  # served like anyone else
    LAST = "last"      # behind every other caller, whatever their rank
    REJECT = "reject"  # not queued: refused at once


#: The priority a blacklisted caller gets under `BlacklistTreatment.LAST`: VIP ranks are >= 0.
BLACKLIST_PRIORITY = -1


@dataclass
class PenaltyRule:
    """After `after` seconds of waiting, agents up to `max_penalty` may take the call and
    required skill levels drop by `relax_skills` (Asterisk's penalty rules, FreeSWITCH tiers)."""

    after: float
    max_penalty: int
    relax_skills: int = 0


@dataclass
class QueueConfig:
    id: str
    name: str
    strategy: Strategy = Strategy.RINGALL
    #: Seconds of after-call work before the agent is offered calls again.
    wrapuptime: float = 10.0
    #: Most callers waiting at once; 0 for no limit. A caller beyond it goes to `overflow`.
    maxlen: int = 0
    #: Longest wait in seconds before the caller goes to `overflow`; 0 for no limit.
    max_wait: float = 0.0
    #: Where overflowing callers go: another queue id, "voicemail:EXT", "callback", or "" (hang up).
    overflow: str = ""
    #: Join when no agent is logged in (Asterisk's joinempty); leave then (leavewhenempty).
    joinempty: bool = False
    leavewhenempty: bool = True
    #: Seconds an offer rings before it counts as missed and the call is offered elsewhere.
    ring_timeout: float = 15.0
    #: Unanswered offers in a row after which an agent is set not ready (0: never).
    max_missed: int = 3
    #: Answered within this many seconds counts towards the service level.
    service_level: float = 20.0
    penalty_rules: list[PenaltyRule] = field(default_factory=list)
    blacklist: BlacklistTreatment = BlacklistTreatment.NORMAL
    #: The agent who last served a caller is offered the call first if that was within this
    #: many days (sticky agent); 0 turns it off.
    sticky_days: float = 0.0


@dataclass
class QueuedCall:
    call_id: str
    queue_id: str
    entered_at: float
    caller: str = ""
    #: Higher first (VIP levels from the CRM); equal priorities keep arrival order.
    priority: int = 0
    #: skill → minimum level; relaxed by the queue's penalty rules as the wait grows.
    skills: dict[str, int] = field(default_factory=dict)
    #: The agent who served this caller last, tried first when ready (sticky agent).
    preferred_agent: str | None = None
    #: The CRM has blacklisted the caller: the queue's `blacklist` treatment applies.
    blacklisted: bool = False
    #: Agents currently ringing for this call.
    offered_to: set[str] = field(default_factory=set)
    #: Agents who let it ring out; not offered again while others are available.
    declined_by: set[str] = field(default_factory=set)
    offered_at: float = 0.0

    def waited(self, now: float) -> float:
        return now - self.entered_at


def eligible(agents: Sequence[Agent], queue: QueueConfig, call: QueuedCall, now: float) -> list[Agent]:
    """Available agents who may take `call` now: penalty and skills within what the call's
    wait allows, and not one who just let it ring out (unless nobody else is left)."""
    waited = call.waited(now)
    max_penalty = 0
    relax = 0
    for rule in queue.penalty_rules:
        if waited >= rule.after:
            max_penalty = max(max_penalty, rule.max_penalty)
            relax = max(relax, rule.relax_skills)
    candidates = []
    for agent in agents:
        membership = agent.queues.get(queue.id)
        if membership is None or not agent.available:
            continue
        if queue.penalty_rules and membership.penalty > max_penalty:
            continue
        if any(agent.skills.get(skill, 0) < level - relax for skill, level in call.skills.items()):
            continue
        candidates.append(agent)
    fresh = [a for a in candidates if a.id not in call.declined_by]
    return fresh or candidates


class Selector:
    """Picks agents for a call by the queue's strategy. Holds the round-robin memory."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rr_last: dict[str, str] = {}
        self._rng = rng or random.Random()

    def choose(self, queue: QueueConfig, members: Sequence[Agent], candidates: list[Agent],
               call: QueuedCall) -> list[Agent]:
        if not candidates:
            return []
        if call.preferred_agent is not None:
            for agent in candidates:
                if agent.id == call.preferred_agent:
                    return [agent]  # sticky agent: the one who served this caller last
        # The best penalty tier goes first (lower is better), whatever the strategy.
        best = min(a.queues[queue.id].penalty for a in candidates)
        tier = [a for a in candidates if a.queues[queue.id].penalty == best]
        strategy = queue.strategy
        if strategy is Strategy.RINGALL:
            return tier
        if strategy is Strategy.LEASTRECENT:
            return [min(tier, key=lambda a: (a.last_call_end, a.id))]
        if strategy is Strategy.FEWESTCALLS:
            return [min(tier, key=lambda a: (a.calls_taken, a.last_call_end, a.id))]
        if strategy is Strategy.RANDOM:
            return [self._rng.choice(tier)]
        order = [a for a in members if a in tier]  # member order (the queue's configuration)
        if strategy is Strategy.LINEAR:
            return [order[0]]
        # RRMEMORY: the first after the one chosen last time, wrapping around.
        ids = [a.id for a in members]
        last = self._rr_last.get(queue.id)
        start = ids.index(last) + 1 if last in ids else 0
        ranked = sorted(order, key=lambda a: (ids.index(a.id) - start) % len(ids))
        self._rr_last[queue.id] = ranked[0].id
        return [ranked[0]]
