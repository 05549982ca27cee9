"""Agents' presence as they see it themselves: an agent changes their own state (log in, log out,
ready, not ready with a reason code) from the softphone page, and every change of their state —
theirs, a supervisor's, a desk phone's feature code (*61-*64), the ACD's own (an offer ringing,
the call, wrap-up, auto not-ready after missed offers) — is pushed to the pages they have open.

The ACD's changes reach here through `QueueRouter.on_agent`, called with the agent of every
`AgentChanged` event it handles. A change costs one set insertion; the pushes go out once per
turn of the event loop with the agent's final state, so a burst (ready, then at once reserved
for the next caller) is one message, and a state already shown is not sent again.
Nothing here waits: a listener's `send` only queues the message (webui.softphone).
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import Any, Protocol

from acd.agents import Agent, AgentState, NotReadyReason
from acd.queue_calls import FEATURE_LOGIN, NotFound, QueueRouter, SupervisorRefused


class PresenceListener(Protocol):
    """An agent's open page (its WebSocket)."""

    def send(self, message: dict[str, Any]) -> None:
        """Queue one JSON message to the page; never blocks."""


class PresenceError(Exception):
    """An agent's own state change the ACD refuses; `code` is the signalling's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Action(enum.StrEnum):
    """What an agent may do to their own state (the `action` of an `agent_state` message)."""

    LOGIN = "login"
    LOGOUT = "logout"
    READY = "ready"
    NOT_READY = "not_ready"


#: Reason codes an agent may choose: every one but the system's own (auto not-ready).
AGENT_REASONS = tuple(r for r in NotReadyReason if r is not NotReadyReason.AFTER_CALL)


@dataclass(frozen=True)
class Outcome:
    """An action the ACD took: the state before and after (for the audit log)."""

    before: dict[str, Any]
    after: dict[str, Any]


class AgentPresence:
    def __init__(self, router: QueueRouter) -> None:
        self.router = router
        self._listeners: dict[str, set[PresenceListener]] = {}
        #: Per agent with a page open: the state last pushed (state, reason, since, wrap-up end).
        self._shown: dict[str, tuple[object, ...]] = {}
        self._dirty: set[str] = set()
        self._flush_scheduled = False

    # ------------------------------------------------------------- pages

    def is_agent(self, extension: str | None) -> bool:
        return extension is not None and self.router.is_agent(extension)

    def subscribe(self, extension: str, listener: PresenceListener) -> None:
        """`listener` (a page of `extension`) hears every change from now on, and its state now."""
        if not self.is_agent(extension):
            return
        self._listeners.setdefault(extension, set()).add(listener)
        message = self.message(extension)
        self._shown[extension] = _key(message)
        listener.send(message)

    def unsubscribe(self, extension: str, listener: PresenceListener) -> None:
        listeners = self._listeners.get(extension)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self._listeners[extension]
            self._shown.pop(extension, None)

    def message(self, extension: str) -> dict[str, Any]:
        """The `agent_state` message of the agent now (docs/webrtc-signalling.md)."""
        agent = self._agent(extension)
        queues = self.router.acd.queues
        message: dict[str, Any] = {
            "type": "agent_state", "state": agent.state.value,
            "reason": agent.reason.value if agent.reason is not None else None,
            "since": agent.state_since or None, "now": time.time(),
            # The queues the agent serves, each with its penalty (lower is offered first).
            "queues": [{"id": queue_id, "name": queues[queue_id].name, "penalty": membership.penalty}
                       for queue_id, membership in sorted(agent.queues.items()) if queue_id in queues],
        }
        if agent.state is AgentState.WRAP_UP:
            message["wrap_up_until"] = agent.wrap_up_until
        return message

    # ------------------------------------------------------------- changes made by the ACD

    def changed(self, agent_id: str) -> None:
        """The ACD changed `agent_id` (QueueRouter.on_agent): push once this turn of the loop ends."""
        if agent_id not in self._listeners:
            return   # no page open: nothing to do
        self._dirty.add(agent_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for agent_id in dirty:
            listeners = self._listeners.get(agent_id)
            if not listeners:
                continue
            message = self.message(agent_id)
            key = _key(message)
            if self._shown.get(agent_id) == key:
                continue
            self._shown[agent_id] = key
            for listener in list(listeners):
                listener.send(message)

    # ------------------------------------------------------------- the agent's own actions

    def act(self, extension: str | None, action: str, reason: str | None = None,
            now: float | None = None) -> Outcome:
        """The agent `extension` changes their own state. Raises PresenceError (with the code
        the page shows) when they are in no queue or their state does not allow it."""
        if extension is None or not self.is_agent(extension):
            raise PresenceError("not_an_agent", "you are a member of no queue: ask a supervisor to add you to one")
        try:
            wanted = Action(action)
        except ValueError:
            raise PresenceError("bad_action", f"action is one of {[a.value for a in Action]}") from None
        not_ready_reason = _reason(reason) if wanted is Action.NOT_READY else None
        now = time.time() if now is None else now
        agent = self._agent(extension)
        before = _state(agent)
        state = agent.state
        try:
            if wanted is Action.LOGIN:
                # Already logged in: nothing to do (the desk phone's *61 does the same).
                self.router.feature(extension, FEATURE_LOGIN, now)
            elif wanted is Action.LOGOUT:
                # On a call or in wrap-up: logged out after it (Asterisk's pending removal).
                # Logged out already: nothing to do (no second REMOVEMEMBER in the queue log).
                if state is not AgentState.LOGGED_OUT:
                    self.router.force_logout(extension, now)
            elif state is AgentState.LOGGED_OUT:
                raise PresenceError("logged_out", "log in first")
            elif wanted is Action.READY:
                if state in (AgentState.RESERVED, AgentState.ON_CALL):
                    raise PresenceError("on_call", "you are ready again after the call")
                self.router.force_ready(extension, now)
            else:
                assert not_ready_reason is not None
                if state is AgentState.ON_CALL:
                    raise PresenceError("on_call", "not ready is possible after the call (in wrap-up)")
                self.router.force_not_ready(extension, not_ready_reason, now)
        except SupervisorRefused as exc:   # the checks above leave the ACD nothing to refuse; kept as a net
            raise PresenceError("bad_state", str(exc)) from None
        except NotFound as exc:
            raise PresenceError("not_an_agent", str(exc)) from None
        return Outcome(before, _state(agent))

    def _agent(self, extension: str) -> Agent:
        agent = self.router.acd.agents.get(extension)
        if agent is None:
            raise PresenceError("not_an_agent", f"{extension} is a member of no queue")
        return agent


def _reason(raw: str | None) -> NotReadyReason:
    """The agent's reason code; none given: other (as the supervisors' API defaults)."""
    if raw is None:
        return NotReadyReason.OTHER
    for reason in AGENT_REASONS:
        if reason.value == raw:
            return reason
    raise PresenceError("bad_reason", f"reason is one of {[r.value for r in AGENT_REASONS]}")


def _state(agent: Agent) -> dict[str, Any]:
    return {"agent": agent.id, "state": agent.state.value, "reason": agent.reason.value if agent.reason else None}


def _key(message: dict[str, Any]) -> tuple[object, ...]:
    return message["state"], message["reason"], message["since"], message.get("wrap_up_until")
