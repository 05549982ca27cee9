"""Agents on calls the queues did not give them: busy for the ACD until those calls end.

An agent talking on a direct call — from or to their desk phone (another extension, an outside
number through a trunk, a DID routed straight to them) or their browser softphone — must not be
offered a queue call: the desk phone would answer 486 (a missed offer, counted towards auto
not-ready) or ring as call waiting, the browser would ring a second call. Asterisk marks such a
queue member "in use" and skips it (ringinuse=no); so does the ACD here (`Acd.set_busy`), without
a state change of its own: no PAUSE in the queue log, no wrap-up afterwards (it was no queue call).

The call layer's bus events say when: a call answered (`CallAnswered`) makes the agents who are
its parties busy — the caller's extension and whoever answered —, its end (`CallEnded`) frees
them. A transfer changes the parties of a call: the segment it closes is written
(`CdrWritten`) just before the parties move, so the call is looked at again once the transfer's
own step is through. Left out:

- a queue call's agent: the ACD counts that call itself (on call, then wrap-up);
- a supervisor's line (listen, whisper, barge, dialled *55-*57 from a desk phone): listening in
  is no call of the supervisor's own (a wallboard-rung line publishes no answer at all);
- a trunk caller whose number happens to look like an extension.

An agent with calls on two devices (a desk phone and the softphone) stays busy until both end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from acd.events import CallAnswered, CallEnded, CdrWritten

if TYPE_CHECKING:
    from acd.calls import Call, CallManager
    from acd.queue_calls import QueueRouter

log = logging.getLogger(__name__)

#: What a supervision call is answered as (acd.supervision via Call._answer_locally).
SUPERVISION_PREFIX = "supervise:"


class DirectCalls:
    """Keeps `QueueRouter`'s busy marks in step with the agents' direct calls."""

    def __init__(self, calls: CallManager, router: QueueRouter) -> None:
        self._calls = calls
        self._router = router
        #: Call id → the agents it keeps busy now.
        self._by_call: dict[str, frozenset[str]] = {}
        #: Agent → the calls keeping them busy.
        self._by_agent: dict[str, set[str]] = {}

    def on_event(self, event: object) -> None:
        """Subscribed to the bus for CallAnswered, CdrWritten and CallEnded."""
        if isinstance(event, CallAnswered | CallEnded):
            self.update(event.call_id)
        elif isinstance(event, CdrWritten):
            # A transfer writes the closing segment first and moves the parties right after.
            asyncio.get_running_loop().call_soon(self.update, event.record.call_id)

    def calls_of(self, agent: str) -> frozenset[str]:
        """The direct calls keeping `agent` busy now."""
        return frozenset(self._by_agent.get(agent, ()))

    def update(self, call_id: str) -> None:
        """Look at the call's parties now: mark the agents on it busy, free those who left."""
        call = self._calls.calls.get(call_id)
        if call is not None and call.transfer is not None and not call.ended:
            return  # parties half moved: looked at again when the transfer is through or fails
        agents = self._agents_on(call) if call is not None else frozenset()
        before = self._by_call.pop(call_id, frozenset())
        if agents:
            self._by_call[call_id] = agents
        now = time.time()
        for agent in sorted(before - agents):
            held = self._by_agent.get(agent, set())
            held.discard(call_id)
            if not held:
                self._by_agent.pop(agent, None)
                log.info("agent %s: off direct call %s, free for queue calls", agent, call_id)
                self._router.set_busy(agent, False, now)
        for agent in sorted(agents - before):
            held = self._by_agent.setdefault(agent, set())
            first = not held
            held.add(call_id)
            if first:
                log.info("agent %s: on direct call %s, no queue offers until it ends", agent, call_id)
                self._router.set_busy(agent, True, now)

    def _agents_on(self, call: Call) -> frozenset[str]:
        """The agents who are parties of the call now, less the one the ACD gave it to."""
        if call.ended or call.answered_at is None or call.answered_by.startswith(SUPERVISION_PREFIX):
            return frozenset()
        numbers = {call.party_number("b")}
        caller = call.party_number("a")
        if call.from_trunk is None or caller != call.caller:  # the trunk's caller is nobody of ours
            numbers.add(caller)
        return frozenset(n for n in numbers if self._router.is_agent(n) and not self._router.counts(call.id, n))
