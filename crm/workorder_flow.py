"""The life of an after-sales work order (售后工单), apart from storage.

    pending ──dispatch──▶ dispatched ──complete──▶ completed ──approve──▶ approved
       │       (派工)        │  ▲ dispatch            (完工)    │        (审核通过)
       │                     │  └ (改派)                         │
       └──────void───────────┴──────────void (审核作废)──────────┴──▶ voided

Completion is only possible after dispatch: a completion report for a job nobody was sent to is
the classic fake order (假单) and is refused outright, never stored.
"""

from __future__ import annotations

from enum import StrEnum

from crm.errors import InvalidTransition


class ServiceType(StrEnum):
    INSTALL = "install"  # 安装
    REPAIR = "repair"  # 维修
    MAINTENANCE = "maintenance"  # 保养
    INSPECTION = "inspection"  # 检测


class WorkOrderStatus(StrEnum):
    PENDING = "pending"  # 待派工
    DISPATCHED = "dispatched"  # 已派工
    COMPLETED = "completed"  # 已完工, awaiting audit
    APPROVED = "approved"  # 审核通过
    VOIDED = "voided"  # 作废


class WorkOrderAction(StrEnum):
    DISPATCH = "dispatch"
    COMPLETE = "complete"
    APPROVE = "approve"
    VOID = "void"


class FlagCode(StrEnum):
    """What the fraud checks raise for the auditor's attention."""

    DUPLICATE = "duplicate"  # 重单: same member and serial number within the window
    OUT_OF_WARRANTY = "out_of_warranty"  # 超保: warranty claimed after the warranty ended
    WARRANTY_UNVERIFIED = "warranty_unverified"  # warranty claimed without a purchase date


_TRANSITIONS: dict[tuple[WorkOrderStatus, WorkOrderAction], WorkOrderStatus] = {
    (WorkOrderStatus.PENDING, WorkOrderAction.DISPATCH): WorkOrderStatus.DISPATCHED,
    (WorkOrderStatus.DISPATCHED, WorkOrderAction.DISPATCH): WorkOrderStatus.DISPATCHED,
    (WorkOrderStatus.DISPATCHED, WorkOrderAction.COMPLETE): WorkOrderStatus.COMPLETED,
    (WorkOrderStatus.COMPLETED, WorkOrderAction.APPROVE): WorkOrderStatus.APPROVED,
    (WorkOrderStatus.COMPLETED, WorkOrderAction.VOID): WorkOrderStatus.VOIDED,
    (WorkOrderStatus.PENDING, WorkOrderAction.VOID): WorkOrderStatus.VOIDED,
    (WorkOrderStatus.DISPATCHED, WorkOrderAction.VOID): WorkOrderStatus.VOIDED,
}

OPEN_STATUSES = frozenset({WorkOrderStatus.PENDING, WorkOrderStatus.DISPATCHED})


def next_status(current: WorkOrderStatus, action: WorkOrderAction) -> WorkOrderStatus:
    target = _TRANSITIONS.get((current, action))
    if target is not None:
        return target
    if action is WorkOrderAction.COMPLETE and current is WorkOrderStatus.PENDING:
        raise InvalidTransition(
            "completion refused: the work order was never dispatched (fake order)", code="workorder.not_dispatched"
        )
    raise InvalidTransition(f"cannot {action.value} a work order that is {current.value}",
                            code="workorder.invalid_transition")  # fmt: skip


def allowed_actions(current: WorkOrderStatus) -> list[WorkOrderAction]:
    return [action for (status, action) in _TRANSITIONS if status is current]
