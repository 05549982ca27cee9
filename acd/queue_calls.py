"""Queue calls: a caller who dials a queue number waits in the ACD (hearing ringback) while it
offers the call to agents' phones by the queue's strategy; agents log in and out with
feature codes from their desk phones.

This module joins the sans-IO `Acd` to calls: it turns the ACD's events into ringing and
stopping legs, and call outcomes (answer, ring-out, hang-up) back into ACD input, and keeps
the ACD's timers on the event loop.

Before a call joins its queue, the CRM is asked who is calling (VIP rank, blacklist) and the
queue log who served this caller last (sticky agent), both at once and for at most
`LOOKUP_TIMEOUT`: a slow CRM never keeps a caller waiting longer; without an answer the call is
queued as an ordinary one (priority 0, no preferred agent).

Supervisors act on agents and calls through the `force_*` methods (the REST API in
webui/supervisor_api.py calls them and writes the audit log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.distributor import Acd, AcdError, Event, Offer, Overflowed, QueueLogEntry, StopRinging
from acd.lookups import CallerInfo, CrmLookups
from acd.queues import BlacklistTreatment, PenaltyRule, QueueConfig, QueuedCall, Strategy
from acd.sticky import StickyAgents
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

#: Longest the CRM and the sticky-agent look-ups may hold a caller before they join the queue:
#: short enough that nobody hears it (a ring cycle is 4-6 s), long enough for two index probes
#: on a busy SQLite file.
LOOKUP_TIMEOUT = 0.2


class QueueConfigError(ValueError):
    """A `[[queues]]` table that cannot be used, with the reason."""


class SupervisorRefused(AcdError):
    """A supervisor's action the agent's or call's current state does not allow."""


class NotFound(AcdError):
    """No such agent, or no such call in a queue."""


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
        (["1001", "1002:2"] — extension[:penalty]), blacklist ("normal", "last", "reject"),
        sticky_days (0: off)."""
        known = {"number", "name", "strategy", "wrapuptime", "maxlen", "max_wait", "overflow", "ring_timeout",
                 "joinempty", "leavewhenempty", "members", "service_level", "max_missed", "penalty_rules",
                 "blacklist", "sticky_days"}
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
        try:
            blacklist = BlacklistTreatment(table.get("blacklist", "normal"))
        except ValueError:
            raise QueueConfigError(f"queue {number}: blacklist must be one of "
                                   f"{[b.value for b in BlacklistTreatment]}") from None
        sticky_days = table.get("sticky_days", 0)
        if isinstance(sticky_days, bool) or not isinstance(sticky_days, int | float) or sticky_days < 0:
            raise QueueConfigError(f"queue {number}: sticky_days must be a number of days >= 0")
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
            service_level=float(table.get("service_level", 20)), penalty_rules=rules, blacklist=blacklist,
            sticky_days=float(sticky_days))
        return cls(number, config, members)


class QueueRouter:
    def __init__(self, queues: list[QueueDefinition], names: Callable[[str], str],
                 on_log: Callable[[QueueLogEntry], None] | None = None, *,
                 lookups: CrmLookups | None = None, sticky: StickyAgents | None = None,
                 lookup_timeout: float = LOOKUP_TIMEOUT) -> None:
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
        self._lookups = lookups
        self._sticky = sticky
        self._lookup_timeout = lookup_timeout
        #: Calls whose look-ups are under way, not yet in the ACD.
        self._joining: dict[str, asyncio.Task[None]] = {}

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
        """The call joins the queue: at once, or after the look-ups when any are wired in."""
        self.calls[call.id] = call
        if self._lookups is None and (self._sticky is None or not self.acd.queues[queue_id].sticky_days):
            self._join(call, queue_id, now, None, None)
            return
        self._joining[call.id] = asyncio.get_running_loop().create_task(
            self._look_up_and_join(call, queue_id, now), name=f"queue-join-{call.id}")

    async def _look_up_and_join(self, call: Call, queue_id: str, arrived: float) -> None:
        queue = self.acd.queues[queue_id]
        caller_task = sticky_task = None
        if self._lookups is not None:
            caller_task = asyncio.ensure_future(self._lookups.caller(call.caller))
        if self._sticky is not None and queue.sticky_days:
            sticky_task = asyncio.ensure_future(self._sticky.preferred(call.caller, queue.sticky_days, arrived))
        tasks = [t for t in (caller_task, sticky_task) if t is not None]
        try:
            await asyncio.wait(tasks, timeout=self._lookup_timeout)
        finally:
            for task in tasks:
                task.cancel()
        info = _result(caller_task, "caller look-up", call.caller, self._lookup_timeout)
        preferred = _result(sticky_task, "sticky-agent look-up", call.caller, self._lookup_timeout)
        if self._joining.pop(call.id, None) is None or call.id not in self.calls:
            return  # the caller hung up meanwhile
        self._join(call, queue_id, arrived, info if isinstance(info, CallerInfo) else None,
                   preferred if isinstance(preferred, str) else None)

    def _join(self, call: Call, queue_id: str, arrived: float, info: CallerInfo | None,
              preferred: str | None) -> None:
        now = time.time()
        queued = QueuedCall(call.id, queue_id, arrived, caller=call.caller,
                            priority=max(0, info.vip_rank) if info is not None else 0,
                            preferred_agent=preferred, blacklisted=info is not None and info.blacklisted)
        self._handle(self.acd.enqueue(queued, max(now, arrived)), now)

    def transferred(self, call: Call, target: str, now: float) -> None:
        """The agent's blind or attended transfer of a queue call to `target` completed: the
        agent's part ends (wrap-up applies) and the queue log names who has the caller now."""
        if self.calls.pop(call.id, None) is None:
            return
        self._handle(self.acd.transferred(call.id, now, target), now)

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
        joining = self._joining.pop(call.id, None)
        if joining is not None:
            joining.cancel()  # gone before the look-ups finished: it never joined the queue
            return
        if side == "callee":
            events = self.acd.agent_hangup(call.id, now)
        else:
            events = self.acd.caller_hangup(call.id, now)
        self._handle(events, now)

    # ------------------------------------------------------------- supervisor

    def agent_state(self, agent_id: str) -> tuple[AgentState, NotReadyReason | None]:
        agent = self._agent(agent_id)
        return agent.state, agent.reason

    def force_ready(self, agent_id: str, now: float) -> AgentState:
        """Make the agent ready: logged in if logged out, out of a break or wrap-up."""
        agent = self._agent(agent_id)
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            raise SupervisorRefused(f"agent {agent_id} is {agent.state.value}: ready after the call")
        if agent.state is AgentState.LOGGED_OUT:
            self._handle(self.acd.login(agent_id, now), now)
        else:
            self._handle(self.acd.ready(agent_id, now), now)
        return agent.state

    def force_not_ready(self, agent_id: str, reason: NotReadyReason, now: float) -> AgentState:
        """Put the agent on not ready with `reason`; a call ringing them goes to others."""
        agent = self._agent(agent_id)
        if agent.state in (AgentState.LOGGED_OUT, AgentState.ON_CALL):
            raise SupervisorRefused(f"agent {agent_id} is {agent.state.value}")
        if agent.state is AgentState.NOT_READY:
            if agent.reason is not reason:
                agent.reason = reason  # a new reason code for the same break
                self.acd.log.append(QueueLogEntry(now, "NONE", "NONE", agent_id, "PAUSE", (reason.value,)))
                self._handle([], now)
            return agent.state
        self._handle(self.acd.not_ready(agent_id, reason, now), now)
        return agent.state

    def force_logout(self, agent_id: str, now: float) -> AgentState:
        """Log the agent out (after the call and its wrap-up if on one)."""
        self._agent(agent_id)
        self._handle(self.acd.logout(agent_id, now), now)
        return self.acd.agents[agent_id].state

    def force_hangup(self, call_id: str) -> None:
        """End a queue call, waiting or connected, on both sides."""
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound(f"no call {call_id} in a queue")
        call.hangup("supervisor", side="system")

    def _agent(self, agent_id: str) -> Agent:
        agent = self.acd.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}")
        return agent

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


def _result(task: asyncio.Future[object] | None, what: str, caller: str, timeout: float) -> object:
    """A look-up's answer, or None if it failed or did not finish in time (logged, never raised)."""
    if task is None or not task.done() or task.cancelled():
        if task is not None:
            log.info("%s for %s: no answer within %.0f ms", what, caller, timeout * 1000)
        return None
    exc = task.exception()
    if exc is not None:
        log.warning("%s for %s failed: %s", what, caller, exc)
        return None
    return task.result()
