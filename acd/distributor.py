"""The automatic call distributor, sans-IO: fed calls, agent actions and time; answers with
what to do (ring these agents, stop ringing, overflow) and a queue log.

The call-control layer acts on the events (rings agents' phones or browsers, bridges the
call) and reports back (`answered`, `ring_timeout`, `caller_hangup`, `agent_hangup`). Every
decision is O(agents in the queue); time only enters as `now`.

Queue log events carry Asterisk's queue_log names (ENTERQUEUE, CONNECT, COMPLETECALLER,
COMPLETEAGENT, TRANSFER, ABANDON, RINGNOANSWER, RINGCANCELED, EXITWITHTIMEOUT, FULL, JOINEMPTY,
EXITEMPTY, ADDMEMBER, REMOVEMEMBER, PAUSE, UNPAUSE) so existing reports and habits carry over.
Ours differ in two data fields: ENTERQUEUE carries the caller and the priority the call was
queued with (its VIP rank), and a blacklisted caller a queue refuses is logged as BLACKLISTED.

Queued callbacks (Asterisk has none; the names follow its style): a waiting entry whose caller
hung up and keeps their place and priority, with a number to call back instead of a live leg.
CALLBACKREQ(number|source) books one (source: key, overflow, ivr); when it reaches an agent
who answers, CONNECT as usual, then CALLBACKDIAL(number|attempt) as the number is dialled,
CALLBACKDONE(number|attempt) when it answers (COMPLETE* follow at the end of the talk), or
CALLBACKRETRY(number|attempt|cause) and the entry waits `callback_retry_delay` before it is
offered again, until CALLBACKFAIL(number|attempts|cause) after `callback_attempts` tries.
Callbacks are exempt from max_wait, maxlen and leavewhenempty: nobody is on the line.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from dataclasses import dataclass
from heapq import merge

from acd.agents import Agent, AgentState, NotReadyReason
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
from acd.queues import (
    BLACKLIST_PRIORITY,
    BlacklistTreatment,
    CallbackStatus,
    QueueConfig,
    QueuedCall,
    Selector,
    dialable,
    eligible,
)
from acd.wait_estimate import WaitEstimator

#: The records live in acd.distributor_events; named here too, so the ACD and what it answers
#: with come from one import.
__all__ = ["Acd", "AcdError", "AgentChanged", "CallbackChanged", "Connected", "Event", "Offer", "Overflowed",
           "QueueLogEntry", "StopRinging"]


@dataclass
class _Connection:
    call: QueuedCall
    agent_id: str
    answered_at: float


class Acd:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.queues: dict[str, QueueConfig] = {}
        self.agents: dict[str, Agent] = {}
        self.members: dict[str, list[Agent]] = {}
        self.waiting: dict[str, QueuedCall] = {}
        self.connected: dict[str, _Connection] = {}
        self.log: list[QueueLogEntry] = []
        self._selector = Selector(rng)
        self._pending_logout: set[str] = set()
        #: Agents ready for an offer: when none is, a decision costs nothing.
        self._ready: set[str] = set()
        #: Per queue, its waiting calls in service order (priority, then arrival).
        self._order: dict[str, list[tuple[int, float, str]]] = {}
        self.estimator = WaitEstimator()
        #: Connected callbacks whose number is being dialled now (CALLBACKDIAL logged).
        self._dialling: set[str] = set()
        #: Agents on a call the queues did not give them (`set_busy`): never in `_ready`.
        self.busy: set[str] = set()

    # ------------------------------------------------------------- configuration

    def add_queue(self, queue: QueueConfig) -> None:
        self.queues[queue.id] = queue
        self.members.setdefault(queue.id, [])
        self._order.setdefault(queue.id, [])

    def add_agent(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        for queue_id in agent.queues:
            self.members.setdefault(queue_id, []).append(agent)

    # ------------------------------------------------------------- agents

    def login(self, agent_id: str, now: float) -> list[Event]:
        agent = self._agent(agent_id)
        if agent.state is not AgentState.LOGGED_OUT:
            return []
        self._set(agent, AgentState.READY, now)
        agent.missed_in_row = 0
        self._log(now, "NONE", agent, "ADDMEMBER")
        return [AgentChanged(agent.id, agent.state, None), *self.dispatch(now)]

    def logout(self, agent_id: str, now: float) -> list[Event]:
        agent = self._agent(agent_id)
        if agent.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            self._pending_logout.add(agent_id)  # after the call and its wrap-up
            return []
        events = self._withdraw_offer(agent, now) if agent.state is AgentState.RESERVED else []
        self._set(agent, AgentState.LOGGED_OUT, now)
        self._log(now, "NONE", agent, "REMOVEMEMBER")
        events.append(AgentChanged(agent.id, agent.state, None))
        return events + self._empty_queues(now) + self.dispatch(now)

    def ready(self, agent_id: str, now: float) -> list[Event]:
        agent = self._agent(agent_id)
        if agent.state not in (AgentState.NOT_READY, AgentState.WRAP_UP):
            return []
        was_paused = agent.state is AgentState.NOT_READY
        self._set(agent, AgentState.READY, now)
        agent.missed_in_row = 0
        if was_paused:
            self._log(now, "NONE", agent, "UNPAUSE")
        return [AgentChanged(agent.id, agent.state, None), *self.dispatch(now)]

    def not_ready(self, agent_id: str, reason: NotReadyReason, now: float) -> list[Event]:
        agent = self._agent(agent_id)
        if agent.state not in (AgentState.READY, AgentState.WRAP_UP, AgentState.RESERVED):
            return []
        events = self._withdraw_offer(agent, now) if agent.state is AgentState.RESERVED else []
        self._set(agent, AgentState.NOT_READY, now, reason)
        self._log(now, "NONE", agent, "PAUSE", reason.value)
        return [*events, AgentChanged(agent.id, agent.state, reason), *self.dispatch(now)]

    def set_busy(self, agent_id: str, busy: bool, now: float) -> list[Event]:
        """The agent is (or no longer is) on a call the queues did not give them — a direct
        call on a desk phone or the softphone. Asterisk's member "in use" with ringinuse=no: no
        offer meanwhile, yet no state change (no PAUSE; a ready agent stays ready). An offer
        ringing them is withdrawn, no missed offer; freed, they get the next waiting call at once."""
        agent = self._agent(agent_id)
        if busy == (agent_id in self.busy):
            return []
        if not busy:
            self.busy.discard(agent_id)
            if agent.state is AgentState.READY:
                self._ready.add(agent_id)
            return self.dispatch(now)
        self.busy.add(agent_id)
        self._ready.discard(agent_id)
        call = self.waiting.get(agent.call_id or "") if agent.state is AgentState.RESERVED else None
        if call is None:
            return []
        call.offered_to.discard(agent_id)
        self._ring_canceled(call, agent, now)
        self._release(agent, now)
        return [StopRinging(call.call_id, agent_id), AgentChanged(agent_id, AgentState.READY, None), *self.dispatch(now)]

    # ------------------------------------------------------------- calls

    def enqueue(self, call: QueuedCall, now: float) -> list[Event]:
        """A call joins its queue. `call.entered_at`, when set and not in the future, is kept
        as its arrival (the call-control layer may have spent a moment asking the CRM who is
        calling): the caller's place and wait count from when they arrived."""
        queue = self.queues[call.queue_id]
        if call.call_id in self.waiting or call.call_id in self.connected:
            raise AcdError(f"call {call.call_id} is in a queue already")
        if call.blacklisted and queue.blacklist is BlacklistTreatment.REJECT:
            self.log.append(QueueLogEntry(now, call.call_id, queue.id, "NONE", "BLACKLISTED", (call.caller,)))
            return [Overflowed(call.call_id, "", "blacklist")]
        if call.blacklisted and queue.blacklist is BlacklistTreatment.LAST:
            call.priority = BLACKLIST_PRIORITY
        if not 0 < call.entered_at <= now:
            call.entered_at = now
        logged_in = [a for a in self.members[queue.id] if a.state is not AgentState.LOGGED_OUT]
        if not logged_in and not queue.joinempty:
            self.log.append(QueueLogEntry(now, call.call_id, queue.id, "NONE", "JOINEMPTY"))
            return self._overflow(call, now, "no_agents")
        in_queue = sum(1 for c in self.waiting.values() if c.queue_id == queue.id and not c.callback)
        if queue.maxlen and in_queue >= queue.maxlen:
            self.log.append(QueueLogEntry(now, call.call_id, queue.id, "NONE", "FULL"))
            return self._overflow(call, now, "maxlen")
        self.waiting[call.call_id] = call
        insort(self._order[queue.id], (-call.priority, call.entered_at, call.call_id))
        self.log.append(QueueLogEntry(now, call.call_id, queue.id, "NONE", "ENTERQUEUE",
                                      (call.caller, str(call.priority))))
        return self.dispatch(now)

    def answered(self, call_id: str, agent_id: str, now: float) -> list[Event]:
        call = self.waiting.get(call_id)
        agent = self._agent(agent_id)
        if call is None or agent_id not in call.offered_to:
            raise AcdError(f"call {call_id} was not offered to {agent_id}")
        events: list[Event] = [StopRinging(call_id, other) for other in sorted(call.offered_to) if other != agent_id]
        for other in sorted(call.offered_to - {agent_id}):
            self._release(self.agents[other], now)
            self._ring_canceled(call, self.agents[other], now)
            events.append(AgentChanged(other, AgentState.READY, None))
        del self.waiting[call_id]
        self._unorder(call)
        call.offered_to = {agent_id}
        self._set(agent, AgentState.ON_CALL, now)
        agent.missed_in_row = 0
        self.connected[call_id] = _Connection(call, agent_id, now)
        self._log(now, call_id, agent, "CONNECT", str(round(call.waited(now))), queue_id=call.queue_id)
        self.estimator.waited(call.queue_id, call.waited(now))
        events += [Connected(call_id, agent_id), AgentChanged(agent_id, AgentState.ON_CALL, None)]
        return events + self.dispatch(now)

    def ring_timeout(self, call_id: str, agent_id: str, now: float) -> list[Event]:
        """The agent let the offer ring out (or rejected it): offer the call elsewhere."""
        call = self.waiting.get(call_id)
        agent = self._agent(agent_id)
        if call is None or agent_id not in call.offered_to:
            return []
        call.offered_to.discard(agent_id)
        call.declined_by.add(agent_id)
        queue = self.queues[call.queue_id]
        self._log(now, call_id, agent, "RINGNOANSWER", str(round((now - call.offered_at) * 1000)), queue_id=queue.id)
        agent.missed_in_row += 1
        events: list[Event] = [StopRinging(call_id, agent_id)]
        if queue.max_missed and agent.missed_in_row >= queue.max_missed:
            agent.call_id = None
            self._set(agent, AgentState.NOT_READY, now, NotReadyReason.AFTER_CALL)
            self._log(now, "NONE", agent, "PAUSE", "auto")
            events.append(AgentChanged(agent_id, AgentState.NOT_READY, NotReadyReason.AFTER_CALL))
        else:
            self._release(agent, now)
            events.append(AgentChanged(agent_id, AgentState.READY, None))
        return events + self.dispatch(now)

    def caller_hangup(self, call_id: str, now: float) -> list[Event]:
        """The caller hung up: an abandon while waiting or ringing, else the end of the talk."""
        call = self.waiting.pop(call_id, None)
        if call is not None:
            self._unorder(call)
            events: list[Event] = []
            for agent_id in sorted(call.offered_to):
                self._release(self.agents[agent_id], now)
                self._ring_canceled(call, self.agents[agent_id], now)
                events += [StopRinging(call_id, agent_id), AgentChanged(agent_id, AgentState.READY, None)]
            self.log.append(QueueLogEntry(now, call_id, call.queue_id, "NONE", "ABANDON",
                                          ("1", str(round(call.waited(now))))))
            return events + self.dispatch(now)
        return self._complete(call_id, now, "COMPLETECALLER")

    def abandoned_before_joining(self, call: QueuedCall, now: float) -> list[Event]:
        """The caller hung up before the call could join its queue (while the call-control
        layer asked the CRM who is calling): from the caller's side they reached the queue and
        left it unserved, so ENTERQUEUE at their arrival and ABANDON now, and the wallboard
        counts the abandon. The ACD's state is untouched: the call was never in it."""
        queue = self.queues[call.queue_id]
        if call.call_id in self.waiting or call.call_id in self.connected:
            raise AcdError(f"call {call.call_id} is in a queue already")
        arrived = call.entered_at if 0 < call.entered_at <= now else now
        self.log.append(QueueLogEntry(arrived, call.call_id, queue.id, "NONE", "ENTERQUEUE",
                                      (call.caller, str(call.priority))))
        self.log.append(QueueLogEntry(now, call.call_id, queue.id, "NONE", "ABANDON",
                                      ("1", str(round(now - arrived)))))
        return []

    def agent_hangup(self, call_id: str, now: float) -> list[Event]:
        return self._complete(call_id, now, "COMPLETEAGENT")

    def transferred(self, call_id: str, now: float, destination: str) -> list[Event]:
        """The agent transferred the call away (to `destination`, an extension or number): the
        agent's part ends, wrap-up applies, and TRANSFER names who has the caller now."""
        return self._complete(call_id, now, "TRANSFER", destination)

    # ------------------------------------------------------------- time

    def tick(self, now: float) -> list[Event]:
        events: list[Event] = []
        for agent in self.agents.values():
            if agent.state is AgentState.WRAP_UP and agent.wrap_up_until <= now:
                events += self._after_wrap_up(agent, now)
        for call in list(self.waiting.values()):
            queue = self.queues[call.queue_id]
            for agent_id in sorted(call.offered_to):
                if now - call.offered_at >= queue.ring_timeout:
                    events += self.ring_timeout(call.call_id, agent_id, now)
            if (call.call_id in self.waiting and queue.max_wait and not call.callback
                    and call.waited(now) >= queue.max_wait):
                events += self._leave(call, now, "EXITWITHTIMEOUT", "max_wait")
        return events + self.dispatch(now)

    def next_deadline(self) -> float | None:
        deadlines = [a.wrap_up_until for a in self.agents.values() if a.state is AgentState.WRAP_UP]
        for call in self.waiting.values():
            queue = self.queues[call.queue_id]
            if call.offered_to:
                deadlines.append(call.offered_at + queue.ring_timeout)
            elif call.not_before:
                deadlines.append(call.not_before)  # a callback waiting out its retry delay
            if queue.max_wait and not call.callback:
                deadlines.append(call.entered_at + queue.max_wait)
            for rule in queue.penalty_rules:
                if call.entered_at + rule.after > call.offered_at:
                    deadlines.append(call.entered_at + rule.after)
        return min(deadlines, default=None)

    def dispatch(self, now: float) -> list[Event]:
        """Offer waiting calls to ready agents: highest priority first, then longest wait.

        Only queues with a ready member are looked at, each in its service order, and a queue
        is left as soon as none of its members can take its next plain call: the cost follows
        the agents who are free, not the length of the queues."""
        events: list[Event] = []
        if not self._ready:
            return events
        queue_ids = {q for agent_id in self._ready for q in self.agents[agent_id].queues if self._order.get(q)}
        heads = merge(*(self._order[q] for q in sorted(queue_ids)))
        exhausted: set[str] = set()
        for _, _, call_id in heads:
            if not self._ready:
                break
            call = self.waiting[call_id]
            if call.offered_to or call.queue_id in exhausted or call.not_before > now:
                continue
            queue = self.queues[call.queue_id]
            members = self.members[queue.id]
            free = [a for a in members if a.id not in self.busy] if self.busy else members
            chosen = self._selector.choose(queue, members, eligible(free, queue, call, now), call)
            if not chosen:
                if not call.skills and call.preferred_agent is None:
                    exhausted.add(queue.id)  # nobody here can take an ordinary call now
                continue
            call.offered_at = now
            for agent in chosen:
                self._set(agent, AgentState.RESERVED, now)
                agent.call_id = call.call_id
                call.offered_to.add(agent.id)
                events.append(AgentChanged(agent.id, AgentState.RESERVED, None))
            events.append(Offer(call.call_id, tuple(a.id for a in chosen)))
        return events

    # ------------------------------------------------------------- figures

    def position(self, call_id: str) -> int:
        """1-based place of a waiting call in its queue (for announce-position); queued
        callbacks ahead count: they are served first."""
        call = self.waiting[call_id]
        return bisect_left(self._order[call.queue_id], (-call.priority, call.entered_at, call.call_id)) + 1

    def estimated_wait(self, call_id: str) -> float | None:
        """Seconds the waiting call is expected to wait still (acd.wait_estimate), or None."""
        call = self.waiting[call_id]
        staffed = sum(1 for a in self.members[call.queue_id]
                      if a.state not in (AgentState.LOGGED_OUT, AgentState.NOT_READY))
        return self.estimator.estimate(call.queue_id, self.position(call_id), staffed)

    def callbacks(self, queue_id: str) -> list[QueuedCall]:
        """The queue's pending callbacks, in service order."""
        return [c for _, _, call_id in self._order.get(queue_id, ()) if (c := self.waiting[call_id]).callback]

    # ------------------------------------------------------------- queued callbacks

    def book_callback(self, call_id: str, number: str, now: float) -> list[Event]:
        """The waiting caller asked to be called back at `number` (and hangs up): the entry
        keeps its place and priority; an offer ringing now is withdrawn (the caller is gone)."""
        call = self.waiting.get(call_id)
        if call is None or call.callback:
            raise AcdError(f"call {call_id} is not waiting in a queue")
        if not dialable(number):
            raise AcdError(f"{number!r} cannot be called back")
        events: list[Event] = []
        for agent_id in sorted(call.offered_to):
            self._release(self.agents[agent_id], now)
            self._ring_canceled(call, self.agents[agent_id], now)
            events += [StopRinging(call_id, agent_id), AgentChanged(agent_id, AgentState.READY, None)]
        call.offered_to = set()
        call.callback = number
        events.append(self._booked(call, now, "key"))
        return events + self.dispatch(now)

    def add_callback(self, call: QueuedCall, now: float, *, source: str = "ivr",
                     restored: bool = False) -> list[Event]:
        """A callback booked from outside the queue (an IVR), or one read back from storage
        after a restart (`restored`: no new log row, its place and tries as they were)."""
        if call.queue_id not in self.queues:
            raise AcdError(f"no queue {call.queue_id}")
        if call.call_id in self.waiting or call.call_id in self.connected:
            raise AcdError(f"call {call.call_id} is in a queue already")
        if not dialable(call.callback):
            raise AcdError(f"{call.callback!r} cannot be called back")
        if not 0 < call.entered_at <= now:
            call.entered_at = now
        call.offered_to = set()
        self.waiting[call.call_id] = call
        insort(self._order[call.queue_id], (-call.priority, call.entered_at, call.call_id))
        events: list[Event] = [] if restored else [self._booked(call, now, source)]
        return events + self.dispatch(now)

    def callback_dialling(self, call_id: str, now: float) -> int:
        """The agent heard the whisper; the number is dialled now. Returns the attempt number."""
        connection = self._callback_connection(call_id)
        call = connection.call
        call.attempts += 1
        self._dialling.add(call_id)
        self._log(now, call_id, self.agents[connection.agent_id], "CALLBACKDIAL", call.callback, str(call.attempts),
                  queue_id=call.queue_id)
        return call.attempts

    def callback_answered(self, call_id: str, now: float) -> list[Event]:
        """The called-back number answered: agent and caller talk, as any queue call."""
        connection = self._callback_connection(call_id)
        call = connection.call
        self._dialling.discard(call_id)
        self._log(now, call_id, self.agents[connection.agent_id], "CALLBACKDONE", call.callback, str(call.attempts),
                  queue_id=call.queue_id)
        connection.answered_at = now  # talk time counts from here
        return [self._changed(call, CallbackStatus.DONE)]

    def callback_failed(self, call_id: str, cause: str, now: float) -> list[Event]:
        """The try failed (busy, no answer, the agent hung up first): the agent is free again at
        once; the entry waits `callback_retry_delay` in its old place, or is given up after
        `callback_attempts` tries. An agent who hung up before the number was dialled does not
        use up a try, and the entry goes to someone else first."""
        connection = self._callback_connection(call_id)
        del self.connected[call_id]
        call = connection.call
        queue = self.queues[call.queue_id]
        agent = self.agents[connection.agent_id]
        dialled = call_id in self._dialling
        self._dialling.discard(call_id)
        events: list[Event] = []
        agent.call_id = None
        if agent.id in self._pending_logout:
            events += self._after_wrap_up(agent, now)
        else:
            self._release(agent, now)
            events.append(AgentChanged(agent.id, AgentState.READY, None))
        if dialled and call.attempts >= queue.callback_attempts:
            self._log(now, call_id, agent, "CALLBACKFAIL", call.callback, str(call.attempts), cause, queue_id=queue.id)
            return [*events, self._changed(call, CallbackStatus.FAILED), *self.dispatch(now)]
        if dialled:
            call.not_before = now + queue.callback_retry_delay
            self._log(now, call_id, agent, "CALLBACKRETRY", call.callback, str(call.attempts), cause, queue_id=queue.id)
        else:
            call.declined_by.add(agent.id)
        call.offered_to = set()
        self.waiting[call_id] = call
        insort(self._order[queue.id], (-call.priority, call.entered_at, call_id))
        return [*events, self._changed(call, CallbackStatus.PENDING), *self.dispatch(now)]

    # ------------------------------------------------------------- internals

    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise AcdError(f"unknown agent {agent_id}") from None

    def _log(self, now: float, call_id: str, agent: Agent, event: str, *data: str, queue_id: str = "NONE") -> None:
        self.log.append(QueueLogEntry(now, call_id, queue_id, agent.id, event, tuple(data)))

    def _set(self, agent: Agent, state: AgentState, now: float, reason: NotReadyReason | None = None) -> None:
        agent.set(state, now, reason)
        if state is AgentState.READY and agent.id not in self.busy:
            self._ready.add(agent.id)
        else:
            self._ready.discard(agent.id)

    def _release(self, agent: Agent, now: float) -> None:
        agent.call_id = None
        self._set(agent, AgentState.READY, now)

    def _ring_canceled(self, call: QueuedCall, agent: Agent, now: float) -> None:
        """The agent's ringing ended because another agent answered or the caller left
        (Asterisk's RINGCANCELED, with the ring time in ms): with ringall, who else rang."""
        self._log(now, call.call_id, agent, "RINGCANCELED", str(round((now - call.offered_at) * 1000)),
                  queue_id=call.queue_id)

    def _withdraw_offer(self, agent: Agent, now: float) -> list[Event]:
        call = self.waiting.get(agent.call_id or "")
        agent.call_id = None
        if call is None:
            return []
        call.offered_to.discard(agent.id)
        return [StopRinging(call.call_id, agent.id)]

    def _complete(self, call_id: str, now: float, event: str, *extra: str) -> list[Event]:
        connection = self.connected.pop(call_id, None)
        if connection is None:
            return []
        agent = self.agents[connection.agent_id]
        call = connection.call
        queue = self.queues[call.queue_id]
        talk = now - connection.answered_at
        self.estimator.handled(queue.id, talk + queue.wrapuptime)
        agent.calls_taken += 1
        agent.talk_seconds += talk
        agent.last_call_end = now
        agent.call_id = None
        # Asterisk's layouts: COMPLETE*(holdtime|calltime), TRANSFER(extension|context|holdtime|calltime).
        context = ("",) if extra else ()
        self._log(now, call_id, agent, event, *extra, *context, str(round(connection.answered_at - call.entered_at)),
                  str(round(talk)), queue_id=queue.id)
        if queue.wrapuptime > 0:
            self._set(agent, AgentState.WRAP_UP, now)
            agent.wrap_up_until = now + queue.wrapuptime
            return [AgentChanged(agent.id, AgentState.WRAP_UP, None)]
        return self._after_wrap_up(agent, now) + self.dispatch(now)

    def _after_wrap_up(self, agent: Agent, now: float) -> list[Event]:
        if agent.id in self._pending_logout:
            self._pending_logout.discard(agent.id)
            self._set(agent, AgentState.LOGGED_OUT, now)
            self._log(now, "NONE", agent, "REMOVEMEMBER")
            return [AgentChanged(agent.id, AgentState.LOGGED_OUT, None)]
        self._set(agent, AgentState.READY, now)
        return [AgentChanged(agent.id, AgentState.READY, None)]

    def _unorder(self, call: QueuedCall) -> None:
        order = self._order[call.queue_id]
        key = (-call.priority, call.entered_at, call.call_id)
        i = bisect_left(order, key)
        if i < len(order) and order[i] == key:
            del order[i]

    def _leave(self, call: QueuedCall, now: float, log_event: str, reason: str) -> list[Event]:
        del self.waiting[call.call_id]
        self._unorder(call)
        events: list[Event] = []
        for agent_id in sorted(call.offered_to):
            self._release(self.agents[agent_id], now)
            self._ring_canceled(call, self.agents[agent_id], now)
            events += [StopRinging(call.call_id, agent_id), AgentChanged(agent_id, AgentState.READY, None)]
        call.offered_to = set()
        self.log.append(QueueLogEntry(now, call.call_id, call.queue_id, "NONE", log_event,
                                      (str(round(call.waited(now))),)))
        return events + self._overflow(call, now, reason)

    def _overflow(self, call: QueuedCall, now: float, reason: str) -> list[Event]:
        """The call goes to the queue's overflow. For "callback" it stays as a queued callback
        in its place (a caller without a number to call back is let go instead)."""
        queue = self.queues[call.queue_id]
        if queue.overflow != "callback":
            return [Overflowed(call.call_id, queue.overflow, reason)]
        if call.callback or not dialable(call.caller):
            return [Overflowed(call.call_id, "", reason)]
        call.callback = call.caller
        self.waiting[call.call_id] = call
        insort(self._order[queue.id], (-call.priority, call.entered_at, call.call_id))
        return [Overflowed(call.call_id, "callback", reason), self._booked(call, now, "overflow")]

    def _booked(self, call: QueuedCall, now: float, source: str) -> CallbackChanged:
        self.log.append(QueueLogEntry(now, call.call_id, call.queue_id, "NONE", "CALLBACKREQ", (call.callback, source)))
        return self._changed(call, CallbackStatus.PENDING)

    @staticmethod
    def _changed(call: QueuedCall, status: CallbackStatus) -> CallbackChanged:
        return CallbackChanged(call.call_id, call.queue_id, call.callback, status, call.attempts, call.not_before,
                               call.entered_at, call.priority)

    def _callback_connection(self, call_id: str) -> _Connection:
        connection = self.connected.get(call_id)
        if connection is None or not connection.call.callback:
            raise AcdError(f"call {call_id} is no callback an agent took")
        return connection

    def _empty_queues(self, now: float) -> list[Event]:
        """Callers in a queue whose last agent logged out leave it (leavewhenempty)."""
        events: list[Event] = []
        for call in list(self.waiting.values()):
            queue = self.queues[call.queue_id]
            if not call.callback and queue.leavewhenempty and all(a.state is AgentState.LOGGED_OUT for a in self.members[queue.id]):
                events += self._leave(call, now, "EXITEMPTY", "no_agents")
        return events
