"""售后回访 / 客户调查外呼: return visits — follow-up calls to members, with their outcome and
survey answers.

Visits come from three places:
- automatically, in the same transaction as the event that calls for one: a service order
  completed (`crm.orders`), an after-sales work order approved at audit (`crm.workorders`);
  `create_followup` is the hook, due a configurable number of days later
  (`visit.followup_delay_days`, default 3), with the survey of `visit.followup_survey_id` if set;
- survey campaigns over a member filter (the same filter as member search), spread round-robin
  over the agents given;
- by hand.

Unassigned visits are a pool every agent with visit.read sees and may claim (as unowned members
are). A visit ends with an outcome: reached (with the survey's answers, when it has a survey),
refused, or unreachable — which may instead be kept open for another attempt at a later time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationError
from crm.surveys import Answer, SurveyService, SurveyStatus

if TYPE_CHECKING:
    from crm.members import MemberQuery, MemberService

FOLLOWUP_DELAY_KEY = "visit.followup_delay_days"
FOLLOWUP_SURVEY_KEY = "visit.followup_survey_id"
DEFAULT_FOLLOWUP_DELAY_DAYS = 3
#: A campaign creates one visit per member in one transaction; beyond this, narrow the filter
#: (or split it by level or tag): nobody calls fifty thousand members in one campaign.
MAX_CAMPAIGN_MEMBERS = 50_000
MAX_ASSIGNEES = 200


class VisitReason(StrEnum):
    ORDER = "order"  # after a completed service order
    WORK_ORDER = "work_order"  # after an approved after-sales work order
    CAMPAIGN = "campaign"  # 客户调查
    MANUAL = "manual"


class VisitStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class VisitOutcome(StrEnum):
    REACHED = "reached"  # 已回访
    UNREACHABLE = "unreachable"  # 无法接通
    REFUSED = "refused"  # 拒访


@dataclass(frozen=True)
class ReturnVisit:
    id: int
    member_id: int
    reason: VisitReason
    order_id: int | None
    work_order_id: int | None
    campaign_id: int | None
    survey_id: int | None
    staff_id: int | None
    assignee_id: int | None
    status: VisitStatus
    outcome: VisitOutcome | None
    attempts: int
    note: str
    due_at: str | None
    created_by: int | None
    created_at: str
    updated_at: str
    completed_at: str | None
    answers: tuple[Answer, ...] = ()
    #: The closed ticket or completed appointment this visit follows up, if any.
    ticket_id: int | None = None
    appointment_id: int | None = None


@dataclass(frozen=True)
class Campaign:
    id: int
    survey_id: int
    name: str
    filter: dict[str, Any]
    task_count: int
    due_at: str | None
    created_by: int | None
    created_at: str


@dataclass(frozen=True)
class VisitQuery:
    status: VisitStatus | None = None
    reason: VisitReason | None = None
    assignee_id: int | None = None
    unassigned_only: bool = False
    member_id: int | None = None
    campaign_id: int | None = None
    due_before: datetime | None = None
    completed_from: datetime | None = None
    completed_to: datetime | None = None


def visit_condition(actor: Actor, alias: str = "v") -> tuple[str, list[object]]:
    """Own: assigned to me (or created by me); department: my subtree's; unassigned: everyone's pool."""
    return access.scope_condition(
        actor, user_columns=[f"{alias}.assignee_id", f"{alias}.created_by"], public_if_null=f"{alias}.assignee_id"
    )


async def create_followup(
    tx: Transaction, clock: Clock, *, member_id: int, staff_id: int | None,
    order_id: int | None = None, work_order_id: int | None = None,
) -> int | None:  # fmt: skip
    """The return visit after a completed order or an approved work order, inside the caller's
    transaction; None if that source already has one (a re-approval must not call twice)."""
    column, source = ("order_id", order_id) if order_id is not None else ("work_order_id", work_order_id)
    if source is None:
        raise ValueError("create_followup needs an order or a work order")
    if await tx.fetch_value(f"SELECT 1 FROM return_visits WHERE {column} = ?", (source,)):
        return None
    delay = await tx.fetch_value("SELECT value FROM settings WHERE key = ?", (FOLLOWUP_DELAY_KEY,))
    survey = await tx.fetch_value(
        "SELECT s.id FROM settings k JOIN surveys s ON CAST(s.id AS TEXT) = k.value WHERE k.key = ? AND s.status = 'active'",
        (FOLLOWUP_SURVEY_KEY,),
    )
    now = clock.now()
    due = now + timedelta(days=int(delay) if delay is not None else DEFAULT_FOLLOWUP_DELAY_DAYS)
    reason = VisitReason.ORDER if order_id is not None else VisitReason.WORK_ORDER
    return await tx.insert(
        f"INSERT INTO return_visits (member_id, reason, {column}, survey_id, staff_id, status, due_at, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?) RETURNING id",
        (member_id, reason.value, source, survey, staff_id, to_iso(due), to_iso(now), to_iso(now)),
    )


class VisitService:
    def __init__(self, db: Database, clock: Clock, members: MemberService, surveys: SurveyService) -> None:
        self.db = db
        self.clock = clock
        self.members = members
        self.surveys = surveys

    async def create(
        self,
        actor: Actor,
        *,
        member_id: int,
        survey_id: int | None = None,
        assignee_id: int | None = None,
        staff_id: int | None = None,
        due_at: datetime | None = None,
        note: str = "",
    ) -> ReturnVisit:
        """A visit by hand (回访登记)."""
        actor.require(access.VISIT_WRITE)
        note = common.text("note", note, max_length=2000, required=False)
        if assignee_id is not None and assignee_id != actor.user_id:
            actor.require(access.VISIT_ASSIGN)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            if survey_id is not None:
                await self._active_survey(tx, survey_id)
            for field, user in (("assignee_id", assignee_id), ("staff_id", staff_id)):
                if user is not None:
                    await self._check_user(tx, field, user)
            now = to_iso(self.clock.now())
            visit_id = await tx.insert(
                "INSERT INTO return_visits (member_id, reason, survey_id, staff_id, assignee_id, status, note, due_at,"
                " created_by, created_at, updated_at) VALUES (?, 'manual', ?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING id",
                (member_id, survey_id, staff_id, assignee_id, note, to_iso(due_at) if due_at else None,
                 actor.user_id, now, now),
            )  # fmt: skip
            visit = await self._visit(tx, visit_id)
            await audit.record(tx, self.clock, actor, "return_visit", visit_id, "create", after=visit)
        return visit

    async def follow_up(
        self,
        actor: Actor,
        *,
        ticket_id: int | None = None,
        appointment_id: int | None = None,
        survey_id: int | None = None,
        assignee_id: int | None = None,
        due_at: datetime | None = None,
        note: str = "",
    ) -> ReturnVisit:
        """回访 after a resolved or closed ticket, or a completed appointment (exactly one): the
        member is asked about that service; for an appointment, about its expert. One visit per
        ticket or appointment (Conflict on a second)."""
        actor.require(access.VISIT_WRITE)
        note = common.text("note", note, max_length=2000, required=False)
        if (ticket_id is None) == (appointment_id is None):
            raise ValidationError("source", "choose one ticket or one appointment", code="visit.source")
        if assignee_id is not None and assignee_id != actor.user_id:
            actor.require(access.VISIT_ASSIGN)
        async with self.db.transaction() as tx:
            if ticket_id is not None:
                source = await scopes.require_ticket(tx, actor, ticket_id)
                if source["status"] not in ("resolved", "closed"):
                    raise InvalidTransition(f"ticket {ticket_id} is {source['status']}: visit after it is resolved",
                                            code="visit.source_open")  # fmt: skip
                if source["member_id"] is None:
                    raise ValidationError("ticket_id", f"ticket {ticket_id} has no member", code="visit.no_member")
                member_id, staff_id, column, key = source["member_id"], source["assignee_id"], "ticket_id", ticket_id
            else:
                source = await tx.fetch_one("SELECT * FROM appointments WHERE id = ?", (appointment_id,))
                if source is None:
                    raise NotFound(f"appointment {appointment_id} does not exist", code="appointment.not_found")
                await scopes.require_member(tx, actor, source["member_id"])
                if source["status"] != "completed":
                    raise InvalidTransition(f"appointment {appointment_id} is {source['status']}: visit after it is"
                                            " completed", code="visit.source_open")  # fmt: skip
                member_id, staff_id = source["member_id"], source["expert_id"]
                column, key = "appointment_id", appointment_id
            if await tx.fetch_value(f"SELECT 1 FROM return_visits WHERE {column} = ?", (key,)):
                raise Conflict(f"{column.removesuffix('_id')} {key} already has a return visit", code="visit.duplicate")
            if survey_id is not None:
                await self._active_survey(tx, survey_id)
            if assignee_id is not None:
                await self._check_user(tx, "assignee_id", assignee_id)
            now = to_iso(self.clock.now())
            visit_id = await tx.insert(
                f"INSERT INTO return_visits (member_id, reason, {column}, survey_id, staff_id, assignee_id, status,"
                " note, due_at, created_by, created_at, updated_at)"
                " VALUES (?, 'manual', ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING id",
                (member_id, key, survey_id, staff_id, assignee_id, note, to_iso(due_at) if due_at else None,
                 actor.user_id, now, now),
            )  # fmt: skip
            visit = await self._visit(tx, visit_id)
            await audit.record(tx, self.clock, actor, "return_visit", visit_id, "create", after=visit)
        return visit

    async def start_campaign(
        self,
        actor: Actor,
        *,
        survey_id: int,
        name: str,
        query: MemberQuery,
        assignee_ids: Sequence[int] = (),
        due_at: datetime | None = None,
    ) -> Campaign:
        """One visit with the survey for every member matching `query` (skipping blacklisted
        members), assigned round-robin to `assignee_ids` or left in the pool."""
        actor.require(access.VISIT_ASSIGN)
        actor.require(access.MEMBER_READ)
        name = common.text("name", name, max_length=100)
        if isinstance(assignee_ids, str) or len(assignee_ids) > MAX_ASSIGNEES:
            raise ValidationError("assignee_ids", f"a list of at most {MAX_ASSIGNEES} users")
        assignees = list(dict.fromkeys(assignee_ids))
        condition, params = self.members.filter_condition(actor, query)
        async with self.db.transaction() as tx:
            await self._active_survey(tx, survey_id)
            for user in assignees:
                await self._check_user(tx, "assignee_ids", user)
            rows = await tx.fetch_all(
                f"SELECT m.id FROM members m WHERE {condition} AND m.blacklisted = 0 ORDER BY m.id LIMIT ?",
                [*params, MAX_CAMPAIGN_MEMBERS + 1],
            )
            if not rows:
                raise ValidationError("query", "no member matches the filter", code="campaign.empty")
            if len(rows) > MAX_CAMPAIGN_MEMBERS:
                raise ValidationError("query", f"more than {MAX_CAMPAIGN_MEMBERS} members match: narrow the filter",
                                      code="campaign.too_large")  # fmt: skip
            now = to_iso(self.clock.now())
            due = to_iso(due_at) if due_at else None
            filter_json = json.dumps({k: v for k, v in asdict(query).items() if v is not None}, ensure_ascii=False)
            campaign_id = await tx.insert(
                "INSERT INTO survey_campaigns (survey_id, name, filter_json, task_count, due_at, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (survey_id, name, filter_json, len(rows), due, actor.user_id, now),
            )
            await tx.execute_many(
                "INSERT INTO return_visits (member_id, reason, campaign_id, survey_id, assignee_id, status, due_at,"
                " created_by, created_at, updated_at) VALUES (?, 'campaign', ?, ?, ?, 'open', ?, ?, ?, ?)",
                [(row["id"], campaign_id, survey_id, assignees[i % len(assignees)] if assignees else None, due,
                  actor.user_id, now, now) for i, row in enumerate(rows)],
            )  # fmt: skip
            campaign = await self._campaign(tx, campaign_id)
            await audit.record(tx, self.clock, actor, "survey_campaign", campaign_id, "create", after=campaign)
        return campaign

    async def assign(self, actor: Actor, visit_id: int, assignee_id: int | None) -> ReturnVisit:
        """Claim a visit (assign to oneself: visit.write), hand it over or back to the pool (visit.assign)."""
        actor.require(access.VISIT_WRITE)
        if assignee_id != actor.user_id:
            actor.require(access.VISIT_ASSIGN)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, visit_id)
            if before.status is not VisitStatus.OPEN:
                raise InvalidTransition(f"visit {visit_id} is {before.status.value}", code="visit.not_open")
            if before.assignee_id not in (None, actor.user_id) and not actor.can(access.VISIT_ASSIGN):
                raise Forbidden(f"visit {visit_id} is someone else's", code="visit.not_assignee")
            if assignee_id is not None:
                await self._check_user(tx, "assignee_id", assignee_id)
            await tx.execute("UPDATE return_visits SET assignee_id = ?, updated_at = ? WHERE id = ?",
                             (assignee_id, to_iso(self.clock.now()), visit_id))  # fmt: skip
            return await self._finish(tx, actor, before, "assign")

    async def record_outcome(
        self,
        actor: Actor,
        visit_id: int,
        outcome: VisitOutcome | str,
        *,
        note: str = "",
        answers: Sequence[Answer] = (),
        retry_at: datetime | None = None,
    ) -> ReturnVisit:
        """The call's result. `reached` with a survey needs its answers (required questions);
        `unreachable` with `retry_at` keeps the visit open for another attempt then."""
        actor.require(access.VISIT_WRITE)
        result = common.enum_value("outcome", VisitOutcome, outcome)
        note = common.text("note", note, max_length=2000, required=False)
        if retry_at is not None and result is not VisitOutcome.UNREACHABLE:
            raise ValidationError("retry_at", "only an unreachable member is tried again")
        if retry_at is not None and retry_at <= self.clock.now():
            raise ValidationError("retry_at", "must be in the future", code="date.in_past")
        if answers and result is not VisitOutcome.REACHED:
            raise ValidationError("answers", "answers come only from a member who was reached")
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, visit_id)
            if before.status is not VisitStatus.OPEN:
                raise InvalidTransition(f"visit {visit_id} is {before.status.value}", code="visit.not_open")
            if before.assignee_id not in (None, actor.user_id) and not actor.can(access.VISIT_ASSIGN):
                raise Forbidden(f"visit {visit_id} is someone else's", code="visit.not_assignee")
            now = to_iso(self.clock.now())
            survey = await SurveyService.load(tx, before.survey_id) if before.survey_id is not None else None
            if result is VisitOutcome.REACHED and survey is not None and survey.status is SurveyStatus.ACTIVE:
                await self.surveys.store_response(
                    tx, survey, return_visit_id=visit_id, member_id=before.member_id, staff_id=before.staff_id,
                    actor=actor, answers=answers,
                )  # fmt: skip
            elif answers:
                raise ValidationError("answers", "this visit has no survey taking answers", code="survey.not_active")
            if retry_at is not None:
                await tx.execute(
                    "UPDATE return_visits SET attempts = attempts + 1, outcome = ?, note = ?, due_at = ?,"
                    " assignee_id = COALESCE(assignee_id, ?), updated_at = ? WHERE id = ?",
                    (result.value, note, to_iso(retry_at), actor.user_id, now, visit_id),
                )
            else:
                await tx.execute(
                    "UPDATE return_visits SET attempts = attempts + 1, outcome = ?, note = ?, status = 'done',"
                    " assignee_id = COALESCE(assignee_id, ?), completed_at = ?, updated_at = ? WHERE id = ?",
                    (result.value, note, actor.user_id, now, now, visit_id),
                )
            return await self._finish(tx, actor, before, "outcome")

    async def cancel(self, actor: Actor, visit_id: int, reason: str) -> ReturnVisit:
        actor.require(access.VISIT_ASSIGN)
        reason = common.text("reason", reason, max_length=2000)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, visit_id)
            if before.status is not VisitStatus.OPEN:
                raise InvalidTransition(f"visit {visit_id} is {before.status.value}", code="visit.not_open")
            await tx.execute("UPDATE return_visits SET status = 'cancelled', note = ?, updated_at = ? WHERE id = ?",
                             (reason, to_iso(self.clock.now()), visit_id))  # fmt: skip
            return await self._finish(tx, actor, before, "cancel")

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, visit_id: int) -> ReturnVisit:
        actor.require(access.VISIT_READ)
        async with self.db.reading() as r:
            visit = await self._visible(r, actor, visit_id)
            answers = await SurveyService.answers_of(r, visit_id)
        return dataclasses.replace(visit, answers=tuple(answers))

    async def search(
        self, actor: Actor, query: VisitQuery | None = None, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[ReturnVisit]:
        """Open visits first, soonest due first (回访记录: filter by completion period)."""
        actor.require(access.VISIT_READ)
        offset, limit = common.page_bounds(offset, limit)
        query = query or VisitQuery()
        scope_sql, params = visit_condition(actor, "v")
        where = [scope_sql]
        for column, value in (("v.status", query.status and VisitStatus(query.status).value),
                              ("v.reason", query.reason and VisitReason(query.reason).value),
                              ("v.assignee_id", query.assignee_id), ("v.member_id", query.member_id),
                              ("v.campaign_id", query.campaign_id)):  # fmt: skip
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.unassigned_only:
            where.append("v.assignee_id IS NULL")
        for column, op, value in (("v.due_at", "<", query.due_before), ("v.completed_at", ">=", query.completed_from),
                                  ("v.completed_at", "<", query.completed_to)):  # fmt: skip
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(to_iso(value))
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM return_visits v WHERE {condition}", params)
            rows = await r.fetch_all(
                f"SELECT v.* FROM return_visits v WHERE {condition} ORDER BY CASE WHEN v.status = 'open' THEN 0 ELSE 1"
                " END, CASE WHEN v.due_at IS NULL THEN 1 ELSE 0 END, v.due_at, v.id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return common.Page([_visit(row) for row in rows], int(total), offset, limit)

    async def campaign(self, actor: Actor, campaign_id: int) -> Campaign:
        actor.require(access.VISIT_READ)
        async with self.db.reading() as r:
            return await self._campaign(r, campaign_id)

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    async def _active_survey(tx: Transaction, survey_id: int) -> None:
        status = await tx.fetch_value("SELECT status FROM surveys WHERE id = ?", (survey_id,))
        if status is None:
            raise ValidationError("survey_id", f"survey {survey_id} does not exist", code="survey.not_found")
        if status != SurveyStatus.ACTIVE.value:
            raise ValidationError("survey_id", f"survey {survey_id} is {status}, not active", code="survey.not_active")

    @staticmethod
    async def _check_user(tx: Transaction, field: str, user_id: int) -> None:
        if await tx.fetch_value("SELECT 1 FROM users WHERE id = ? AND active = 1", (user_id,)) is None:
            raise ValidationError(field, f"user {user_id} is not an active user", code="user.not_found")

    async def _visible(self, tx: Transaction, actor: Actor, visit_id: int) -> ReturnVisit:
        sql, params = visit_condition(actor, "v")
        row = await tx.fetch_one(
            f"SELECT v.*, CASE WHEN {sql} THEN 1 ELSE 0 END AS in_scope FROM return_visits v WHERE v.id = ?",
            (*params, visit_id),
        )
        if row is None:
            raise NotFound(f"return visit {visit_id} does not exist", code="return_visit.not_found")
        if not row.pop("in_scope"):
            raise Forbidden(f"return visit {visit_id} is outside {actor.username}'s data scope", code="auth.out_of_scope")
        return _visit(row)

    async def _visit(self, tx: Transaction, visit_id: int) -> ReturnVisit:
        row = await tx.fetch_one("SELECT * FROM return_visits WHERE id = ?", (visit_id,))
        if row is None:
            raise NotFound(f"return visit {visit_id} does not exist", code="return_visit.not_found")
        return _visit(row)

    async def _finish(self, tx: Transaction, actor: Actor, before: ReturnVisit, action: str) -> ReturnVisit:
        after = await self._visit(tx, before.id)
        await audit.record(tx, self.clock, actor, "return_visit", before.id, action, before=before, after=after)
        return dataclasses.replace(after, answers=tuple(await SurveyService.answers_of(tx, before.id)))

    @staticmethod
    async def _campaign(tx: Transaction, campaign_id: int) -> Campaign:
        row = await tx.fetch_one("SELECT * FROM survey_campaigns WHERE id = ?", (campaign_id,))
        if row is None:
            raise NotFound(f"campaign {campaign_id} does not exist", code="campaign.not_found")
        return Campaign(row["id"], row["survey_id"], row["name"], json.loads(row["filter_json"]), row["task_count"],
                        row["due_at"], row["created_by"], row["created_at"])  # fmt: skip


def _visit(row: dict[str, Any]) -> ReturnVisit:
    return ReturnVisit(
        id=row["id"], member_id=row["member_id"], reason=VisitReason(row["reason"]), order_id=row["order_id"],
        work_order_id=row["work_order_id"], campaign_id=row["campaign_id"], survey_id=row["survey_id"],
        staff_id=row["staff_id"], assignee_id=row["assignee_id"], status=VisitStatus(row["status"]),
        outcome=VisitOutcome(row["outcome"]) if row["outcome"] else None, attempts=row["attempts"], note=row["note"],
        due_at=row["due_at"], created_by=row["created_by"], created_at=row["created_at"],
        updated_at=row["updated_at"], completed_at=row["completed_at"], ticket_id=row.get("ticket_id"),
        appointment_id=row.get("appointment_id"),
    )  # fmt: skip
