"""Queue calls: a caller who dials a queue number waits in the ACD (hearing ringback, or — in a queue that
answers — music and announcements, acd.queue_treatment) while it offers the call to agents' phones by the
queue's strategy; agents log in and out with feature codes from their desk phones. A caller may leave a
queued callback instead (a key, the queue's overflow, the IVR): the ACD keeps its place,
acd.callback_calls places the legs when it is served, and acd.callbacks keeps it in the database.

This module joins the sans-IO `Acd` to calls: it turns the ACD's events into ringing and stopping legs,
and call outcomes (answer, ring-out, hang-up) back into ACD input, and keeps the ACD's timers on the loop.

Before a call joins its queue, the CRM is asked who is calling (VIP rank, blacklist) and the queue log
who served this caller last (sticky agent), both at once and for at most `LOOKUP_TIMEOUT`: a slow CRM
never keeps a caller waiting longer; without an answer the call is queued as an ordinary one.

Supervisors act on agents and calls through the `force_*` methods (webui/supervisor_api.py, audited);
agents on themselves from the softphone through acd.agent_presence, told of every change by `on_agent`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acd.agents import Agent, AgentState, Membership, NotReadyReason
from acd.distributor import Acd
from acd.distributor_events import (
    AcdError,
    AgentChanged,
    CallbackChanged,
    Connected,
    Event,
    Offer,
    Overflowed,
    QueueLogEntry,
    StopRinging,
)
from acd.lookups import CallerInfo, CrmLookups
from acd.queues import BlacklistTreatment, PenaltyRule, QueueConfig, QueuedCall, Strategy, Treatment, dialable
from acd.recording_rules import RecordingRule, RecordingRuleError
from acd.sticky import StickyAgents
from acd.wallboard import Wallboard

if TYPE_CHECKING:
    from acd.callback_calls import CallbackDialer
    from acd.callbacks import CallbackStore
    from acd.calls import Call, CallManager
    from acd.queue_treatment import QueueTreatment
    from mediacore.events import MediaEvent

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
    #: The queue's recording rule (acd.recording_rules), None: the site's `[recording]` default.
    recording: RecordingRule | None = None
    #: Agents' skills (extension → skill → level 1-10), from the table's `skills`.
    skills: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> QueueDefinition:
        """One `[[queues]]` table, with Asterisk's names: number, name, strategy, wrapuptime,
        maxlen, max_wait, overflow, ring_timeout, joinempty, leavewhenempty, members
        (["1001", "1002:2"] — extension[:penalty]), blacklist ("normal", "last", "reject"),
        sticky_days (0: off); what a waiting caller hears (acd.queues.Treatment: answer, moh,
        language, announce_position, announce_frequency, periodic_announce,
        periodic_announce_frequency, callback_key); callback_attempts, callback_retry_delay;
        skills ({"1001" = {"vip" = 5}}: the agents' skill levels, 1-10)."""
        known = {"number", "name", "strategy", "wrapuptime", "maxlen", "max_wait", "overflow", "ring_timeout",
                 "joinempty", "leavewhenempty", "members", "service_level", "max_missed", "penalty_rules",
                 "blacklist", "sticky_days", "recording", "callback_attempts", "callback_retry_delay",
                 "skills"} | Treatment.KEYS
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
        try:
            config.treatment = Treatment.from_table(table, f"queue {number}")
        except ValueError as exc:
            raise QueueConfigError(str(exc)) from None
        if config.treatment.moh and not Path(config.treatment.moh).is_file():
            raise QueueConfigError(f"queue {number}: moh {config.treatment.moh!r} is no file")
        attempts, delay = table.get("callback_attempts", 3), table.get("callback_retry_delay", 300)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise QueueConfigError(f"queue {number}: callback_attempts must be 1-20")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise QueueConfigError(f"queue {number}: callback_retry_delay must be seconds >= 0")
        config.callback_attempts, config.callback_retry_delay = attempts, float(delay)
        skills = _skills(table.get("skills", {}), number)
        try:
            recording = RecordingRule.parse(table["recording"]) if "recording" in table else None
        except RecordingRuleError as exc:
            raise QueueConfigError(f"queue {number}: {exc}") from None
        return cls(number, config, members, recording, skills)


class QueueRouter:
    def __init__(self, queues: list[QueueDefinition], names: Callable[[str], str],
                 on_log: Callable[[QueueLogEntry], None] | None = None, *,
                 lookups: CrmLookups | None = None, sticky: StickyAgents | None = None,
                 lookup_timeout: float = LOOKUP_TIMEOUT) -> None:
        self.acd = Acd()
        self.numbers = {q.number: q.config.id for q in queues}
        memberships: dict[str, dict[str, Membership]] = {}
        skills: dict[str, dict[str, int]] = {}
        for queue in queues:
            self.acd.add_queue(queue.config)
            for extension, penalty in queue.members:
                memberships.setdefault(extension, {})[queue.config.id] = Membership(penalty)
            for extension, levels in queue.skills.items():
                skills.setdefault(extension, {}).update(levels)
        for extension, queues_of in memberships.items():
            self.acd.add_agent(Agent(extension, names(extension), queues=queues_of, skills=skills.get(extension, {})))
        self.calls: dict[str, Call] = {}
        self.wallboard = Wallboard(self.acd)
        self._on_log = on_log
        self.on_agent: Callable[[str], None] | None = None   # an agent's state changed (acd.agent_presence)
        self._timer: asyncio.TimerHandle | None = None
        self._lookups = lookups
        self._sticky = sticky
        self._lookup_timeout = lookup_timeout
        #: Calls whose look-ups are under way, not yet in the ACD.
        self._joining: dict[str, asyncio.Task[None]] = {}
        #: Their queue and arrival time, for the abandon of a caller who hangs up meanwhile.
        self._arrivals: dict[str, tuple[str, float]] = {}
        #: Skills an IVR asked for, per call, until the call joins its queue.
        self._required: dict[str, dict[str, int]] = {}
        #: The waiting callers' audio and the callbacks' legs (`attach`); None in sans-IO use.
        self.treatment: QueueTreatment | None = None
        self.dialer: CallbackDialer | None = None
        self._store: CallbackStore | None = None

    def attach(self, manager: CallManager, *, store: CallbackStore | None = None,
               sound_dirs: tuple[Path, ...] | None = None) -> None:
        """Play waiting callers' music and announcements on `manager`'s engine, place
        callbacks through its sessions and dialplan, and keep callbacks in `store`."""
        from acd.callback_calls import CallbackDialer
        from acd.prompt_catalogue import SOUNDS
        from acd.queue_treatment import QueueTreatment

        dirs = sound_dirs or (SOUNDS,)
        self.treatment = QueueTreatment(manager.engine, self.acd, on_callback_key=self._callback_key, sound_dirs=dirs)
        self.dialer = CallbackDialer(manager, self, sound_dirs=dirs)
        self._store = store

    async def restore(self) -> int:
        """Put the callbacks still pending in storage back in their queues (after a restart)."""
        if self._store is None:
            return 0
        now = time.time()
        restored = 0
        for entry in await self._store.pending():
            if entry.queue_id not in self.acd.queues:
                log.warning("callback %s to %s: queue %s is no longer configured; kept in storage",
                            entry.call_id, entry.callback, entry.queue_id)
                continue
            try:
                self._handle(self.acd.add_callback(entry, now, restored=True), now)
            except AcdError as exc:
                log.warning("callback %s not restored: %s", entry.call_id, exc)
                continue
            restored += 1
        if restored:
            log.info("%d pending callbacks restored", restored)
        return restored

    def on_media_event(self, event: MediaEvent) -> bool:
        """Engine events of waiting callers (keys, announcements ending) and of callbacks."""
        return bool((self.treatment is not None and self.treatment.on_media_event(event))
                    or (self.dialer is not None and self.dialer.on_media_event(event)))

    async def close(self) -> None:
        """Shutdown: end callbacks under way, then wait for the storage writes."""
        if self.dialer is not None:
            self.dialer.drain()
        if self._store is not None:
            await self._store.close()

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

    def is_agent(self, extension: str) -> bool:
        return extension in self.acd.agents

    def set_busy(self, extension: str, busy: bool, now: float) -> None:
        """The agent `extension` is (or no longer is) on a direct call (acd.direct_calls): no
        queue offers meanwhile, their state untouched."""
        if extension in self.acd.agents:
            self._handle(self.acd.set_busy(extension, busy, now), now)

    def counts(self, call_id: str, extension: str) -> bool:
        """Whether the ACD has `call_id` as the agent's queue call (it counts that one itself)."""
        connection = self.acd.connected.get(call_id)
        return connection is not None and connection.agent_id == extension

    # ------------------------------------------------------------- calls

    def enqueue(self, call: Call, queue_id: str, now: float) -> None:
        """The call joins the queue: at once, or after the look-ups when any are wired in. A
        queue that answers its callers does so once the call is in it (not to refuse it then)."""
        self.calls[call.id] = call
        if self._lookups is None and (self._sticky is None or not self.acd.queues[queue_id].sticky_days):
            self._join(call, queue_id, now, None, None)
            return
        self._arrivals[call.id] = (queue_id, now)
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
        self._arrivals.pop(call.id, None)
        if self._joining.pop(call.id, None) is None or call.id not in self.calls:
            return  # the caller hung up meanwhile
        self._join(call, queue_id, arrived, info if isinstance(info, CallerInfo) else None,
                   preferred if isinstance(preferred, str) else None)

    def _join(self, call: Call, queue_id: str, arrived: float, info: CallerInfo | None,
              preferred: str | None) -> None:
        now = time.time()
        queued = QueuedCall(call.id, queue_id, arrived, caller=call.caller,
                            priority=max(0, info.vip_rank) if info is not None else 0,
                            preferred_agent=preferred, blacklisted=info is not None and info.blacklisted,
                            skills=self._required.pop(call.id, {}))
        events = self.acd.enqueue(queued, max(now, arrived))
        entry = self.acd.waiting.get(call.id)
        if self.treatment is not None and entry is not None and not entry.callback:
            queue = self.acd.queues[queue_id]
            if queue.treatment.answer and call.answered_at is None:
                call.answer_in_queue()
            if call.answered_at is not None:   # answered here, or by the IVR that sent it
                self.treatment.start(call.id, call.endpoint_a, queue, language=call.language)
        self._handle(events, now)

    def require_skills(self, call_id: str, skills: dict[str, int]) -> None:
        """The skills an IVR asks for this call, applied when it joins its queue next."""
        if skills:
            self._required[call_id] = dict(skills)

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
        self._required.pop(call.id, None)
        if self.treatment is not None:
            self.treatment.stop(call.id)
        if call.id not in self.calls:
            return
        del self.calls[call.id]
        joining = self._joining.pop(call.id, None)
        if joining is not None:
            joining.cancel()  # gone before the look-ups ended: never in the ACD, yet an abandon (#8)
            queue_id, arrived = self._arrivals.pop(call.id)
            queued = QueuedCall(call.id, queue_id, arrived, caller=call.caller)
            self._handle(self.acd.abandoned_before_joining(queued, now), now)
            return
        if side == "callee":
            events = self.acd.agent_hangup(call.id, now)
        else:
            events = self.acd.caller_hangup(call.id, now)
        self._handle(events, now)

    # ------------------------------------------------------------- queued callbacks

    def _callback_key(self, call_id: str) -> None:
        """The waiting caller pressed the queue's callback key: book it, confirm, hang up."""
        call = self.calls.get(call_id)
        if call is None or call_id not in self.acd.waiting:
            return
        now = time.time()
        ringing = sorted(self.acd.waiting[call_id].offered_to)
        try:
            events = self.acd.book_callback(call_id, call.caller, now)
        except AcdError as exc:
            log.info("call %s: no callback: %s", call_id, exc)
            return
        # From now on the entry has no live leg: the caller's hang-up is no abandon, and its
        # offers (the next one included) are the callback dialer's. The caller's own offer stops.
        del self.calls[call_id]
        for agent in ringing:
            call.stop_ringing(agent)
        self._handle(events, now)
        self._confirm_and_hang_up(call)

    def callback_booked(self, call: Call) -> None:
        """The call overflowed to a callback (acd.calls.Call.overflow): confirm, hang up."""
        self._confirm_and_hang_up(call)

    def book_callback(self, queue_number: str, number: str, now: float) -> bool:
        """A callback booked from outside the queue (the IVR's callback node); False if the
        queue or the number will not do."""
        queue_id = self.queue_for(queue_number)
        if queue_id is None or not dialable(number):
            log.warning("callback to %r in queue %r not booked: no such queue or no number", number, queue_number)
            return False
        entry = QueuedCall(uuid.uuid4().hex, queue_id, now, caller=number, callback=number)
        self._handle(self.acd.add_callback(entry, now, source="ivr"), now)
        return True

    def _confirm_and_hang_up(self, call: Call) -> None:
        if self.treatment is None:
            call.hangup("callback_booked", side="system")
            return
        queue = self.acd.queues.get(call.queue_id or "")
        language = call.language or (queue.treatment.language if queue is not None else "zh-CN")
        if call.answered_at is None:
            call.answer_in_queue()   # answered for the confirmation alone
        self.treatment.say_then(call.id, call.endpoint_a, ["queue/callback-booked"], language,
                                lambda: call.hangup("callback_booked", side="system"))

    def _offer_callback(self, offer: Offer, now: float) -> None:
        entry = self.acd.waiting.get(offer.call_id)
        if entry is None or not entry.callback:
            return
        language = self.acd.queues[entry.queue_id].treatment.language
        for agent in offer.agent_ids:
            if self.dialer is None or not self.dialer.ring_agent(entry, agent, language):
                self._handle(self.acd.ring_timeout(entry.call_id, agent, now), now)

    def callback_answered_by(self, entry: QueuedCall, agent: str) -> bool:
        """An agent's phone answered a callback; False if the ACD no longer offers it to them."""
        return self._apply(lambda now: self.acd.answered(entry.call_id, agent, now))

    def callback_ring_failed(self, entry: QueuedCall, agent: str) -> None:
        self._apply(lambda now: self.acd.ring_timeout(entry.call_id, agent, now))

    def callback_dialling(self, entry: QueuedCall) -> int:
        now = time.time()
        attempt = self.acd.callback_dialling(entry.call_id, now)
        self._handle([], now)
        return attempt

    def callback_connected(self, entry: QueuedCall) -> None:
        self._apply(lambda now: self.acd.callback_answered(entry.call_id, now))

    def callback_failed(self, entry: QueuedCall, cause: str) -> None:
        self._apply(lambda now: self.acd.callback_failed(entry.call_id, cause, now))

    def callback_ended(self, entry: QueuedCall, side: str) -> None:
        """The talk of a callback ended: `side` "callee" is the agent, else the caller."""
        if side == "callee":
            self._apply(lambda now: self.acd.agent_hangup(entry.call_id, now))
        else:
            self._apply(lambda now: self.acd.caller_hangup(entry.call_id, now))

    def _apply(self, step: Callable[[float], list[Event]]) -> bool:
        now = time.time()
        try:
            events = step(now)
        except AcdError as exc:
            log.info("queue: %s", exc)
            return False
        self._handle(events, now)
        return True

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
                self._handle([AgentChanged(agent_id, agent.state, reason)], now)
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
        # Offers withdrawn because another agent took the call (a ringall) say so to a browser.
        taken = {event.call_id for event in events if isinstance(event, Connected)}
        for event in events:
            call = self.calls.get(getattr(event, "call_id", ""))
            if isinstance(event, Offer) and call is not None:
                for agent in event.agent_ids:
                    if not call.ring_agent(agent):
                        # No phone of the agent is registered: count it as a missed offer.
                        self._handle(self.acd.ring_timeout(call.id, agent, now), now)
            elif isinstance(event, Offer):
                self._offer_callback(event, now)
            elif isinstance(event, StopRinging) and call is not None:
                call.stop_ringing(event.agent_id, "answered_elsewhere" if event.call_id in taken else "no_answer")
            elif isinstance(event, StopRinging) and self.dialer is not None:
                self.dialer.stop_ringing(event.call_id, event.agent_id)
            elif isinstance(event, Connected) and self.treatment is not None:
                self.treatment.stop(event.call_id)
            elif isinstance(event, Overflowed):
                self.calls.pop(event.call_id, None)
                if self.treatment is not None:
                    self.treatment.stop(event.call_id)
                if call is not None:
                    call.overflow(event.destination, event.reason)
            elif isinstance(event, CallbackChanged) and self._store is not None:
                self._store.save(event)
            elif isinstance(event, AgentChanged) and self.on_agent is not None:
                self.on_agent(event.agent_id)
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


def _skills(table: object, number: str) -> dict[str, dict[str, int]]:
    """`skills = {"1001" = {"vip" = 5, "en" = 3}}`: extension → skill → level 1-10."""
    if not isinstance(table, dict):
        raise QueueConfigError(f"queue {number}: skills must be a table of extension = {{skill = level}}")
    skills: dict[str, dict[str, int]] = {}
    for extension, levels in table.items():
        if not str(extension).isdigit() or not isinstance(levels, dict):
            raise QueueConfigError(f"queue {number}: skills of {extension!r} must be a table of skill = level")
        for skill, level in levels.items():
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
                raise QueueConfigError(f"queue {number}: skill {skill!r} of {extension} must be a level 1-10")
        skills[str(extension)] = {str(k): int(v) for k, v in levels.items()}
    return skills


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
