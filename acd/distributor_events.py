"""What the automatic call distributor (acd.distributor) answers with: the events the
call-control layer acts on, the queue log entries it writes, and the error for an action the
ACD's state does not allow. Plain records, apart from the decisions that make them."""

from __future__ import annotations

from dataclasses import dataclass

from acd.agents import AgentState, NotReadyReason
from acd.queues import CallbackStatus


@dataclass(frozen=True)
class Offer:
    """Ring these agents for this call (several at once for ringall)."""

    call_id: str
    agent_ids: tuple[str, ...]


@dataclass(frozen=True)
class StopRinging:
    call_id: str
    agent_id: str


@dataclass(frozen=True)
class Connected:
    call_id: str
    agent_id: str


@dataclass(frozen=True)
class Overflowed:
    """The call leaves the queue for `destination` (another queue, voicemail, callback, or "")."""

    call_id: str
    destination: str
    reason: str  # "maxlen", "max_wait", "no_agents", "blacklist"


@dataclass(frozen=True)
class AgentChanged:
    agent_id: str
    state: AgentState
    reason: NotReadyReason | None


@dataclass(frozen=True)
class QueueLogEntry:
    at: float
    call_id: str
    queue_id: str
    agent_id: str
    event: str
    data: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallbackChanged:
    """A queued callback was booked or changed: what the call-control layer persists."""

    call_id: str
    queue_id: str
    number: str
    status: CallbackStatus
    attempts: int
    #: When it may be offered again (after a failed try).
    not_before: float
    #: The caller's place: their arrival and priority.
    entered_at: float
    priority: int


Event = Offer | StopRinging | Connected | Overflowed | AgentChanged | CallbackChanged


class AcdError(Exception):
    """An action the current state does not allow (e.g. answering a call not offered)."""
