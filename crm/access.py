"""Who is acting, what they may do, and which records they may see.

Permissions are plain strings named `<area>.<verb>`; a role is a set of them plus a data scope
(本人 own / 本部门 department / 全部 all). Services call `actor.require(...)` once at their
boundary and build their WHERE clauses with `scope_condition`, so a rule lives in one place.

Department scope covers the actor's department and every department below it in the tree
(本部门及下属部门), found through the departments' materialised path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from crm.errors import Forbidden

# -- permissions --------------------------------------------------------------------------
ORG_READ = "org.read"
ORG_WRITE = "org.write"  # departments, users, roles
SETTINGS_WRITE = "settings.write"  # dictionaries, member levels, SLA, fraud rules
AUDIT_READ = "audit.read"
MEMBER_READ = "member.read"
MEMBER_WRITE = "member.write"
POINTS_WRITE = "points.write"  # earn and spend in the normal course of business
POINTS_ADJUST = "points.adjust"  # manual corrections, possibly below zero
TICKET_READ = "ticket.read"
TICKET_WRITE = "ticket.write"  # create, comment, work on, resolve, close, reopen, claim
TICKET_ASSIGN = "ticket.assign"  # hand a ticket to someone else or to a department
WORKORDER_READ = "workorder.read"
WORKORDER_WRITE = "workorder.write"  # create and dispatch (派工)
WORKORDER_COMPLETE = "workorder.complete"  # record completion (完工)
WORKORDER_AUDIT = "workorder.audit"  # approve or void (审核)
WORKORDER_RECEIVE = "workorder.receive"  # may be dispatched to: field technicians
CALL_READ = "call.read"
CALL_WRITE = "call.write"  # CDR ingestion
CATALOGUE_APPROVE = "catalogue.approve"
REPORT_READ = "report.read"
# -- second increment ---------------------------------------------------------------------
APPOINTMENT_READ = "appointment.read"
APPOINTMENT_WRITE = "appointment.write"  # book, reschedule, cancel (电话预约)
APPOINTMENT_CONSULT = "appointment.consult"  # an expert's notes, recommendations, completion (专家咨询)
SCHEDULE_WRITE = "schedule.write"  # experts: profiles, services, weekly hours, days off
CATALOGUE_WRITE = "catalogue.write"  # propose new or changed items; approval publishes them
ORDER_READ = "order.read"
ORDER_WRITE = "order.write"  # service purchases (服务购买): create, payment, completion, cancellation
VISIT_READ = "visit.read"
VISIT_WRITE = "visit.write"  # carry out return visits (回访): outcome and survey answers
VISIT_ASSIGN = "visit.assign"  # hand return visits to others, start survey campaigns
SURVEY_WRITE = "survey.write"  # survey definitions (客户调查)
KNOWLEDGE_READ = "knowledge.read"  # internal (non-public) articles
KNOWLEDGE_WRITE = "knowledge.write"
MESSAGE_READ = "message.read"  # the outbox
MESSAGE_SEND = "message.send"  # one SMS or e-mail to one member or number
MESSAGE_BULK = "message.bulk"  # bulk sending over a member filter (群发)
TEMPLATE_WRITE = "template.write"  # SMS/e-mail templates and greeting days
BACKUP_RUN = "backup.run"  # 数据管理: backup, verification, restore
# -- third increment ----------------------------------------------------------------------
NOTICE_WRITE = "notice.write"  # 公告: publish and withdraw notices, see read receipts

ALL_PERMISSIONS: frozenset[str] = frozenset(
    {
        ORG_READ, ORG_WRITE, SETTINGS_WRITE, AUDIT_READ,
        MEMBER_READ, MEMBER_WRITE, POINTS_WRITE, POINTS_ADJUST,
        TICKET_READ, TICKET_WRITE, TICKET_ASSIGN,
        WORKORDER_READ, WORKORDER_WRITE, WORKORDER_COMPLETE, WORKORDER_AUDIT, WORKORDER_RECEIVE,
        CALL_READ, CALL_WRITE, CATALOGUE_APPROVE, REPORT_READ,
        APPOINTMENT_READ, APPOINTMENT_WRITE, APPOINTMENT_CONSULT, SCHEDULE_WRITE, CATALOGUE_WRITE,
        ORDER_READ, ORDER_WRITE, VISIT_READ, VISIT_WRITE, VISIT_ASSIGN, SURVEY_WRITE,
        KNOWLEDGE_READ, KNOWLEDGE_WRITE, MESSAGE_READ, MESSAGE_SEND, MESSAGE_BULK, TEMPLATE_WRITE, BACKUP_RUN,
        NOTICE_WRITE,
    }
)  # fmt: skip


class DataScope(StrEnum):
    OWN = "own"
    DEPARTMENT = "department"
    ALL = "all"

    @property
    def breadth(self) -> int:
        return {"own": 0, "department": 1, "all": 2}[self.value]


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf a service call runs (or SYSTEM for internal jobs)."""

    user_id: int | None
    username: str
    permissions: frozenset[str]
    data_scope: DataScope
    department_id: int | None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, *permissions: str) -> None:
        """Raise Forbidden unless the actor holds every one of `permissions`."""
        missing = [p for p in permissions if p not in self.permissions]
        if missing:
            raise Forbidden(
                f"{self.username} lacks permission {', '.join(missing)}", code="auth.permission_denied"
            )


#: Internal jobs (CDR ingestion, schedulers, the demo seeder): every permission, every record.
SYSTEM = Actor(None, "system", ALL_PERMISSIONS, DataScope.ALL, None)

# Departments whose path starts with the actor's department path: the subtree.
_SUBTREE_SQL = "SELECT d.id FROM departments d WHERE d.path LIKE (SELECT p.path FROM departments p WHERE p.id = ?) || '%'"


def scope_condition(
    actor: Actor,
    *,
    user_columns: Sequence[str],
    department_column: str | None = None,
    public_if_null: str | None = None,
) -> tuple[str, list[object]]:
    """SQL condition (and its parameters) limiting a query to the records `actor` may see.

    `user_columns` name the columns holding the users a record belongs to (owner, assignee,
    creator); `department_column` the department that handles it. `public_if_null` names a
    column whose NULL makes the record visible to all: unowned members are the public pool
    (公海) every agent may serve.
    """
    if actor.data_scope is DataScope.ALL or actor.user_id is None:
        return "1 = 1", []
    parts: list[str] = []
    params: list[object] = []
    if public_if_null:
        parts.append(f"{public_if_null} IS NULL")
    if actor.data_scope is DataScope.OWN or actor.department_id is None:
        for column in user_columns:
            parts.append(f"{column} = ?")
            params.append(actor.user_id)
    else:
        users_in_subtree = f"SELECT u.id FROM users u WHERE u.department_id IN ({_SUBTREE_SQL})"
        for column in user_columns:
            parts.append(f"{column} IN ({users_in_subtree})")
            params.append(actor.department_id)
        if department_column:
            parts.append(f"{department_column} IN ({_SUBTREE_SQL})")
            params.append(actor.department_id)
    return "(" + " OR ".join(parts) + ")", params
