"""Queue calls: a caller who dials a queue number waits in the ACD (hearing ringback) while it
offers the call to agents' phones by the queue's strategy; agents log in and out with
feature codes from their desk phones.

This module joins the sans-IO `Acd` to calls: it turns the ACD's events into ringing and
stopping legs, and call outcomes (answer, ring-out, hang-up) back into ACD input, and keeps
the ACD's timers on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acd.agents import Agent, Membership, NotReadyReason
from acd.distributor import Acd, AcdError, Event, Offer, Overflowed, QueueLogEntry, StopRinging
from acd.queues import PenaltyRule, QueueConfig, QueuedCall, Strategy
from acd.wallboard import Wallboard

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)

# Desk-phone feature codes (dialled like a number): the FreeSWITCH/Asterisk habit of `*` codes.
FEATURE_LOGIN = "*61"     # log in to every queue I belong to, ready
FEATURE_LOGOUT = "*62"
FEATURE_BREAK = "*63"     # not ready (break)
FEATURE_READY = "*64"
FEATURES = (FEATURE_LOGIN, FEATURE_LOGOUT, FEATURE_BREAK, FEATURE_READY)


class QueueConfigError(ValueError):
    """A `[[queues]]` table that cannot be used, with the reason."""


@dataclass
class QueueDefinition:
    number: str
    config: QueueConfig
    #: Agents (their extensions) in order, each with a penalty.
    members: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> QueueDefinition:
        """One `[[queues]]` table, with Asterisk's names: number, name, strategy, wrapuptime,
        maxlen, max_wait, overflow, ring_timeout, joinempty, leavewhenempty, members
        (["1001", "1002:2"] — extension[:penalty])."""
        known = {"number", "name", "strategy", "wrapuptime", "maxlen", "max_wait", "overflow", "ring_timeout",
                 "joinempty", "leavewhenempty", "members", "service_level", "max_missed", "penalty_rules"}
        unknown = set(table) - known
        if unknown:
            raise QueueConfigError(f"queue: unknown keys {sorted(unknown)}")
        number = str(table.get("number", ""))
        if not number.isdigit():
            raise QueueConfigError(f"queue {number!r}: number must be digits")
        try:
            strategy = Strategy(table.get("strategy", "ringall"))
        except ValueError:
            raise QueueConfigError(f"queue {number}: strategy must be one of {[s.value for s in Strategy]}") from None
        members: list[tuple[str, int]] = []
        for entry in table.get("members", []):
            extension, _, penalty = str(entry).partition(":")
            if not extension.isdigit() or (penalty and not penalty.isdigit()):
                raise QueueConfigError(f"queue {number}: member {entry!r} must be EXTENSION or EXTENSION:PENALTY")
            members.append((extension, int(penalty or 0)))
        rules = [PenaltyRule(float(r["after"]), int(r["max_penalty"]), int(r.get("relax_skills", 0)))
                 for r in table.get("penalty_rules", [])]
        config = QueueConfig(
            id=number, name=str(table.get("name", number)), strategy=strategy,
            wrapuptime=float(table.get("wrapuptime", 10)), maxlen=int(table.get("maxlen", 0)),
            max_wait=float(table.get("max_wait", 0)), overflow=str(table.get("overflow", "")),
            joinempty=bool(table.get("joinempty", False)), leavewhenempty=bool(table.get("leavewhenempty", True)),
            ring_timeout=float(table.get("ring_timeout", 15)), max_missed=int(table.get("max_missed", 3)),
            service_level=float(table.get("service_level", 20)), penalty_rules=rules)
        return cls(number, config, members)


class QueueRouter:
    def __init__(self, queues: list[QueueDefinition], names: Callable[[str], str],
                 on_log: Callable[[QueueLogEntry], None] | None = None) -> None:
        self.acd = Acd()
        self.numbers = {q.number: q.config.id for q in queues}
        memberships: dict[str, dict[str, Membership]] = {}
        for queue in queues:
            self.acd.add_queue(queue.config)
            for extension, penalty in queue.members:
                memberships.setdefault(extension, {})[queue.config.id] = Membership(penalty)
        for extension, queues_of in memberships.items():
            self.acd.add_agent(Agent(extension, names(extension), queues=queues_of))
        self.calls: dict[str, Call] = {}
        self.wallboard = Wallboard(self.acd)
        self._on_log = on_log
        self._timer: asyncio.TimerHandle | None = None

    def queue_for(self, number: str) -> str | None:
        return self.numbers.get(number)

    @staticmethod
    def is_feature(number: str) -> bool:
        return number in FEATURES

    # ------------------------------------------------------------- agents

    def feature(self, extension: str, code: str, now: float) -> bool:
        """Apply a feature code dialled by `extension`; False when it is no agent."""
        if extension not in self.acd.agents:
            return False
        if code == FEATURE_LOGIN:
            events = self.acd.login(extension, now)
        elif code == FEATURE_LOGOUT:
            events = self.acd.logout(extension, now)
        elif code == FEATURE_BREAK:
            events = self.acd.not_ready(extension, NotReadyReason.BREAK, now)
        else:
            events = self.acd.ready(extension, now)
        self._handle(events, now)
        return True

    # ------------------------------------------------------------- calls

    def enqueue(self, call: Call, queue_id: str, now: float) -> None:
        self.calls[call.id] = call
        queued = QueuedCall(call.id, queue_id, now, caller=call.caller)
        self._handle(self.acd.enqueue(queued, now), now)

    def answered(self, call: Call, agent: str, now: float) -> bool:
        """An agent's phone answered; False if the ACD no longer offers it the call."""
        try:
            events = self.acd.answered(call.id, agent, now)
        except AcdError:
            return False
        self._handle(events, now)
        return True

    def ring_failed(self, call: Call, agent: str, now: float) -> None:
        """The agent's phone rejected the call or every contact of it failed."""
        self._handle(self.acd.ring_timeout(call.id, agent, now), now)

    def ended(self, call: Call, side: str, now: float) -> None:
        if call.id not in self.calls:
            return
        del self.calls[call.id]
        if side == "callee":
            events = self.acd.agent_hangup(call.id, now)
        else:
            events = self.acd.caller_hangup(call.id, now)
        self._handle(events, now)

    # ------------------------------------------------------------- plumbing

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            call = self.calls.get(getattr(event, "call_id", ""))
            if isinstance(event, Offer) and call is not None:
                for agent in event.agent_ids:
                    if not call.ring_agent(agent):
                        # No phone of the agent is registered: count it as a missed offer.
                        self._handle(self.acd.ring_timeout(call.id, agent, now), now)
            elif isinstance(event, StopRinging) and call is not None:
                call.stop_ringing(event.agent_id)
            elif isinstance(event, Overflowed):
                self.calls.pop(event.call_id, None)
                if call is not None:
                    call.overflow(event.destination, event.reason)
        for entry in self.acd.log:
            self.wallboard.record(entry)
            if self._on_log is not None:
                self._on_log(entry)
        # The log is kept only until handed on: memory stays flat over a long day.
        del self.acd.log[:]
        self._arm()

    def _arm(self) -> None:
        deadline = self.acd.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # The ACD works in wall-clock seconds; the loop's clock is monotonic.
        delay = max(0.0, deadline - time.time())
        self._timer = loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = time.time()
        self._handle(self.acd.tick(now), now)
