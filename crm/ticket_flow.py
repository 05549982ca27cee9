"""The status flow of a ticket (服务单), apart from storage so the rules read in one place.

    new ──assign──▶ assigned ──start──▶ in_progress ──resolve──▶ resolved ──close──▶ closed
     ▲                 ▲  ▲                  │                       │                  │
     │                 │  └─────assign───────┘                       │                  │
     └──────reopen (no assignee)──┴────────reopen (has assignee)─────┴──────────────────┘

Assigning again while assigned or in progress hands the ticket over (the new assignee starts it).
Reopening a resolved or closed ticket sends it back to its assignee, or to `new` if it has none.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from crm.errors import InvalidTransition


class TicketType(StrEnum):
    CONSULTATION = "consultation"  # 咨询
    COMPLAINT = "complaint"  # 投诉
    SUGGESTION = "suggestion"  # 建议


class Priority(IntEnum):
    LOW = 1  # 低
    NORMAL = 2  # 普通
    HIGH = 3  # 高
    URGENT = 4  # 紧急


class TicketStatus(StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class TicketAction(StrEnum):
    ASSIGN = "assign"
    START = "start"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"


OPEN_STATUSES = frozenset({TicketStatus.NEW, TicketStatus.ASSIGNED, TicketStatus.IN_PROGRESS})
DONE_STATUSES = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})

_TRANSITIONS: dict[tuple[TicketStatus, TicketAction], TicketStatus] = {
    (TicketStatus.NEW, TicketAction.ASSIGN): TicketStatus.ASSIGNED,
    (TicketStatus.ASSIGNED, TicketAction.ASSIGN): TicketStatus.ASSIGNED,
    (TicketStatus.IN_PROGRESS, TicketAction.ASSIGN): TicketStatus.ASSIGNED,
    (TicketStatus.ASSIGNED, TicketAction.START): TicketStatus.IN_PROGRESS,
    (TicketStatus.IN_PROGRESS, TicketAction.RESOLVE): TicketStatus.RESOLVED,
    (TicketStatus.RESOLVED, TicketAction.CLOSE): TicketStatus.CLOSED,
    (TicketStatus.RESOLVED, TicketAction.REOPEN): TicketStatus.ASSIGNED,
    (TicketStatus.CLOSED, TicketAction.REOPEN): TicketStatus.ASSIGNED,
}


def next_status(current: TicketStatus, action: TicketAction, *, has_assignee: bool) -> TicketStatus:
    """The status after `action`, or InvalidTransition naming both."""
    target = _TRANSITIONS.get((current, action))
    if target is None:
        raise InvalidTransition(
            f"cannot {action.value} a ticket that is {current.value}", code="ticket.invalid_transition"
        )
    if action is TicketAction.REOPEN and not has_assignee:
        return TicketStatus.NEW
    return target


def allowed_actions(current: TicketStatus) -> list[TicketAction]:
    """What the UI may offer for a ticket in `current` status."""
    return [action for (status, action) in _TRANSITIONS if status is current]
