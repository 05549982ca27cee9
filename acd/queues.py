"""Queues: their configuration (Asterisk's keys where a user knows them), the calls waiting in
them, and the ring strategies that pick which agents to offer a call to."""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


class CallbackStatus(enum.Enum):
    """A queued callback's life: waiting for an agent (and retried), reached, or given up."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def dialable(number: str) -> bool:
    """A caller ID the system can call back: digits, optionally with a leading +."""
    digits = number[1:] if number.startswith("+") else number
    return digits.isdigit() and len(digits) <= 32


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
class Treatment:
    """A waiting caller's audio and keys, with Asterisk's names where it has them."""

    #: Answer the caller on joining so music and announcements can play (else ringback).
    answer: bool = False
    #: Music on hold: a sound file, "" for the shipped music.
    moh: str = ""
    #: Prompt language: "zh-CN" or "en".
    language: str = "zh-CN"
    #: Say "callers ahead of you: N" and the estimated wait on joining and every
    #: `announce_frequency` seconds (0: on joining only); skipped at the head of the queue.
    announce_position: bool = False
    announce_frequency: float = 0.0
    #: A prompt name played every `periodic_announce_frequency` seconds ("" for none).
    periodic_announce: str = ""
    periodic_announce_frequency: float = 60.0
    #: A key (one of 0-9 * #) that books a callback: the caller hangs up and keeps their place.
    callback_key: str = ""

    #: The `[[queues]]` keys this reads.
    KEYS: ClassVar[frozenset[str]] = frozenset({
        "answer", "moh", "language", "announce_position", "announce_frequency", "periodic_announce",
        "periodic_announce_frequency", "callback_key"})

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> Treatment:
        """The treatment keys of one `[[queues]]` table; ValueError says what is wrong."""
        def flag(key: str) -> bool:
            value = table.get(key, False)
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {key} must be true or false")
            return value

        def seconds(key: str, default: float) -> float:
            value = table.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{where}: {key} must be a number of seconds >= 0")
            return float(value)

        def text(key: str) -> str:
            value = table.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string")
            return value

        language = text("language") or "zh-CN"
        if language not in ("zh-CN", "en"):
            raise ValueError(f"{where}: language must be zh-CN or en")
        key = text("callback_key")
        if key and (len(key) != 1 or key not in "0123456789*#"):
            raise ValueError(f"{where}: callback_key must be one key of 0-9, * or #")
        periodic = text("periodic_announce")
        if periodic and not all(part and all(c.isalnum() or c in "-_" for c in part) for part in periodic.split("/")):
            raise ValueError(f"{where}: periodic_announce must be a prompt name such as queue/hold")
        return cls(answer=flag("answer"), moh=text("moh"), language=language,
                   announce_position=flag("announce_position"),
                   announce_frequency=seconds("announce_frequency", 0.0), periodic_announce=periodic,
                   periodic_announce_frequency=seconds("periodic_announce_frequency", 60.0), callback_key=key)


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
    #: What a waiting caller hears (acd.queue_treatment). Without `answer` the caller hears
    #: ringback and nothing else applies: in-band audio needs an answered call.
    treatment: Treatment = field(default_factory=Treatment)
    #: Queued callbacks (acd.callbacks): how often a callback is tried, and how long after a
    #: failed try (busy, no answer) it is offered to an agent again.
    callback_attempts: int = 3
    callback_retry_delay: float = 300.0


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
    #: A queued callback: the number to call back (the entry has no live leg); "" for a caller
    #: on the line.
    callback: str = ""
    #: Tries made to reach the callback's number, and the earliest time it is offered again.
    attempts: int = 0
    not_before: float = 0.0

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
