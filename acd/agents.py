"""Agents and their states, as a contact center's supervisor knows them.

logged out → ready ⇄ not ready (with a reason code) → reserved (ringing) → on call →
wrap-up → ready. An agent is in at most one call; the ACD never leaves one reserved or on a
call without that call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"
    RESERVED = "reserved"      # a call is being offered (ringing)
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"        # after-call work (Asterisk's wrapuptime)


class NotReadyReason(enum.Enum):
    """Reason codes for not ready (置忙), reported on the wallboard and in the queue log."""

    BREAK = "break"
    LUNCH = "lunch"
    TRAINING = "training"
    MEETING = "meeting"
    AFTER_CALL = "after_call"      # set by the system: missed offers (auto not-ready)
    OTHER = "other"


@dataclass
class Membership:
    """An agent's place in one queue: a lower penalty is tried first (Asterisk's penalty)."""

    penalty: int = 0


@dataclass
class Agent:
    id: str
    name: str
    state: AgentState = AgentState.LOGGED_OUT
    state_since: float = 0.0
    reason: NotReadyReason | None = None
    #: queue id → membership.
    queues: dict[str, Membership] = field(default_factory=dict)
    #: skill → level 1..10 (higher is better).
    skills: dict[str, int] = field(default_factory=dict)
    #: The call the agent is reserved for or talking on.
    call_id: str | None = None
    calls_taken: int = 0
    talk_seconds: float = 0.0
    last_call_end: float = 0.0
    #: Offers not answered in a row (reset by an answer); auto not-ready at the queue's limit.
    missed_in_row: int = 0
    wrap_up_until: float = 0.0

    @property
    def available(self) -> bool:
        return self.state is AgentState.READY

    def set(self, state: AgentState, now: float, reason: NotReadyReason | None = None) -> None:
        self.state = state
        self.state_since = now
        self.reason = reason if state is AgentState.NOT_READY else None
