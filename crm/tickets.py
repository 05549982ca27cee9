"""客户服务: tickets (consultations, complaints, suggestions) through their status flow.

A ticket is assigned to a user or to a department (which one of its people then claims by
starting it). Its due time comes from the SLA table (per type and priority); reopening restarts
the clock. Every change appends to the ticket's own history and to the audit log. Listings put
unresolved tickets first, then by priority, then by due time — what a supervisor looks at first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database, Transaction
from crm.dictionaries import DictionaryService
from crm.errors import Forbidden, NotFound, ValidationError
from crm.phones import PhoneNormaliser
from crm.ticket_flow import (
    DONE_STATUSES,
    OPEN_STATUSES,
    Priority,
    TicketAction,
    TicketStatus,
    TicketType,
    next_status,
)

MAX_SUBJECT = 200
MAX_BODY = 8000
#: Longest SLA one can configure: a quarter. Longer is a typo in minutes.
MAX_SLA_MINUTES = 90 * 24 * 60


@dataclass(frozen=True)
class Ticket:
    id: int
    ticket_type: TicketType
    priority: Priority
    status: TicketStatus
    subject: str
    description: str
    member_id: int | None
    category: str | None
    channel: str | None
    contact_phone: str | None
    call_id: int | None
    assignee_id: int | None
    department_id: int | None
    created_by: int | None
    due_at: str | None
    resolution: str | None
    reopen_count: int
    created_at: str
    updated_at: str
    resolved_at: str | None
    closed_at: str | None
    #: Open and past its due time, as of the read.
    overdue: bool


@dataclass(frozen=True)
class TicketEvent:
    id: int
    ticket_id: int
    action: str
    from_status: str | None
    to_status: str | None
    body: str
    actor_id: int | None
    actor_name: str
    created_at: str


@dataclass(frozen=True)
class TicketQuery:
    statuses: frozenset[TicketStatus] | None = None
    open_only: bool = False
    ticket_type: TicketType | None = None
    priority: Priority | None = None
    member_id: int | None = None
    assignee_id: int | None = None
    department_id: int | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    overdue_only: bool = False


@dataclass(frozen=True)
class TicketSummary:
    """A supervisor's period view in numbers."""

    total: int
    by_type: dict[str, int]
    by_status: dict[str, int]
    open: int
    overdue: int


_ORDER = (
    " ORDER BY CASE WHEN t.status IN ('resolved', 'closed') THEN 1 ELSE 0 END, t.priority DESC,"
    " CASE WHEN t.due_at IS NULL THEN 1 ELSE 0 END, t.due_at, t.id DESC"
)


class TicketService:
    def __init__(self, db: Database, clock: Clock | None = None, phones: PhoneNormaliser | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.phones = phones or PhoneNormaliser()

    # -- creating and editing ---------------------------------------------------------------------
    async def create(
        self,
        actor: Actor,
        *,
        ticket_type: TicketType | str,
        subject: str,
        description: str = "",
        member_id: int | None = None,
        priority: Priority | int = Priority.NORMAL,
        category: str | None = None,
        channel: str | None = None,
        contact_phone: str | None = None,
        call_id: int | None = None,
        assignee_id: int | None = None,
        department_id: int | None = None,
    ) -> Ticket:
        """A new ticket; with an assignee or department it starts `assigned`, else `new`."""
        actor.require(access.TICKET_WRITE)
        kind = common.enum_value("ticket_type", TicketType, ticket_type)
        prio = common.enum_value("priority", Priority, priority)
        subject = common.text("subject", subject, max_length=MAX_SUBJECT)
        description = common.text("description", description, max_length=MAX_BODY, required=False)
        channel = common.optional_text("channel", channel, max_length=32)
        phone = self.phones.normalise(contact_phone, field="contact_phone").e164 if contact_phone else None
        self._check_assign_permission(actor, assignee_id, department_id)
        async with self.db.transaction() as tx:
            if member_id is not None:
                await scopes.require_member(tx, actor, member_id)
            if call_id is not None and await tx.fetch_value("SELECT 1 FROM calls WHERE id = ?", (call_id,)) is None:
                raise NotFound(f"call {call_id} does not exist", code="call.not_found")
            category = await DictionaryService.check_item(tx, "ticket_category", category, field="category")
            department_id = await self._handling_department(tx, assignee_id, department_id)
            now = self.clock.now()
            status = TicketStatus.ASSIGNED if (assignee_id or department_id) else TicketStatus.NEW
            due = await self._due(tx, kind, prio, now)
            ticket_id = await tx.insert(
                "INSERT INTO tickets (member_id, ticket_type, category, priority, status, subject, description, channel,"
                " contact_phone, call_id, assignee_id, department_id, created_by, due_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (member_id, kind.value, category, int(prio), status.value, subject, description, channel, phone,
                 call_id, assignee_id, department_id, actor.user_id, due, to_iso(now), to_iso(now)),
            )  # fmt: skip
            await self._event(tx, actor, ticket_id, "create", None, status, description)
            ticket = await self._ticket(tx, ticket_id)
            await audit.record(tx, self.clock, actor, "ticket", ticket_id, "create", after=ticket)
        return ticket

    async def update(
        self,
        actor: Actor,
        ticket_id: int,
        *,
        subject: str | common._Unset = common.UNSET,
        description: str | common._Unset = common.UNSET,
        priority: Priority | int | common._Unset = common.UNSET,
        category: str | None | common._Unset = common.UNSET,
    ) -> Ticket:
        """Edit the content; a new priority moves the due time to what the SLA says for it."""
        actor.require(access.TICKET_WRITE)
        changes: dict[str, Any] = {}
        if not isinstance(subject, common._Unset):
            changes["subject"] = common.text("subject", subject, max_length=MAX_SUBJECT)
        if not isinstance(description, common._Unset):
            changes["description"] = common.text("description", description, max_length=MAX_BODY, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            if not isinstance(category, common._Unset):
                changes["category"] = await DictionaryService.check_item(tx, "ticket_category", category, field="category")
            if not isinstance(priority, common._Unset):
                prio = common.enum_value("priority", Priority, priority)
                changes["priority"] = int(prio)
                if before.status in OPEN_STATUSES:
                    changes["due_at"] = await self._due(tx, before.ticket_type, prio, from_iso(before.created_at))
            changes["updated_at"] = to_iso(self.clock.now())
            assignments = ", ".join(f"{column} = ?" for column in changes)
            await tx.execute(f"UPDATE tickets SET {assignments} WHERE id = ?", (*changes.values(), ticket_id))
            after = await self._ticket(tx, ticket_id)
            await self._event(tx, actor, ticket_id, "update", before.status, before.status, "")
            await audit.record(tx, self.clock, actor, "ticket", ticket_id, "update", before=before, after=after)
        return after

    async def comment(self, actor: Actor, ticket_id: int, body: str) -> TicketEvent:
        actor.require(access.TICKET_WRITE)
        body = common.text("body", body, max_length=MAX_BODY)
        async with self.db.transaction() as tx:
            ticket = await self._visible(tx, actor, ticket_id)
            event = await self._event(tx, actor, ticket_id, "comment", ticket.status, ticket.status, body)
            await tx.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (event.created_at, ticket_id))
            await audit.record(tx, self.clock, actor, "ticket", ticket_id, "comment", after={"body": body})
        return event

    # -- the status flow --------------------------------------------------------------------------
    async def assign(
        self, actor: Actor, ticket_id: int, *, assignee_id: int | None = None, department_id: int | None = None, note: str = ""
    ) -> Ticket:
        """Hand the ticket to a user (and their department) or to a department's queue.
        Taking it oneself (claiming) needs only ticket.write; handing it to others ticket.assign."""
        actor.require(access.TICKET_WRITE)
        if assignee_id is None and department_id is None:
            raise ValidationError("assignee_id", "give a user or a department to assign to", code="field.required")
        self._check_assign_permission(actor, assignee_id, department_id)
        note = common.text("note", note, max_length=MAX_BODY, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            status = next_status(before.status, TicketAction.ASSIGN, has_assignee=True)
            department_id = await self._handling_department(tx, assignee_id, department_id)
            await tx.execute(
                "UPDATE tickets SET status = ?, assignee_id = ?, department_id = ?, updated_at = ? WHERE id = ?",
                (status.value, assignee_id, department_id, to_iso(self.clock.now()), ticket_id),
            )
            return await self._finish(tx, actor, before, "assign", status, note)

    async def start(self, actor: Actor, ticket_id: int) -> Ticket:
        """Begin work (受理). A ticket queued for a department is claimed by whoever starts it."""
        actor.require(access.TICKET_WRITE)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            self._check_worker(actor, before)
            status = next_status(before.status, TicketAction.START, has_assignee=before.assignee_id is not None)
            assignee = before.assignee_id if before.assignee_id is not None else actor.user_id
            await tx.execute(
                "UPDATE tickets SET status = ?, assignee_id = ?, updated_at = ? WHERE id = ?",
                (status.value, assignee, to_iso(self.clock.now()), ticket_id),
            )
            return await self._finish(tx, actor, before, "start", status, "")

    async def resolve(self, actor: Actor, ticket_id: int, resolution: str) -> Ticket:
        actor.require(access.TICKET_WRITE)
        resolution = common.text("resolution", resolution, max_length=MAX_BODY)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            self._check_worker(actor, before)
            status = next_status(before.status, TicketAction.RESOLVE, has_assignee=before.assignee_id is not None)
            now = to_iso(self.clock.now())
            await tx.execute(
                "UPDATE tickets SET status = ?, resolution = ?, resolved_at = ?, updated_at = ? WHERE id = ?",
                (status.value, resolution, now, now, ticket_id),
            )
            return await self._finish(tx, actor, before, "resolve", status, resolution)

    async def close(self, actor: Actor, ticket_id: int, note: str = "") -> Ticket:
        actor.require(access.TICKET_WRITE)
        note = common.text("note", note, max_length=MAX_BODY, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            status = next_status(before.status, TicketAction.CLOSE, has_assignee=before.assignee_id is not None)
            now = to_iso(self.clock.now())
            await tx.execute(
                "UPDATE tickets SET status = ?, closed_at = ?, updated_at = ? WHERE id = ?", (status.value, now, now, ticket_id)
            )
            return await self._finish(tx, actor, before, "close", status, note)

    async def reopen(self, actor: Actor, ticket_id: int, reason: str) -> Ticket:
        """Back to the assignee (or `new`), with a fresh due time from the SLA."""
        actor.require(access.TICKET_WRITE)
        reason = common.text("reason", reason, max_length=MAX_BODY)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, ticket_id)
            has_assignee = before.assignee_id is not None or before.department_id is not None
            status = next_status(before.status, TicketAction.REOPEN, has_assignee=has_assignee)
            now = self.clock.now()
            due = await self._due(tx, before.ticket_type, before.priority, now)
            await tx.execute(
                "UPDATE tickets SET status = ?, due_at = ?, resolved_at = NULL, closed_at = NULL,"
                " reopen_count = reopen_count + 1, updated_at = ? WHERE id = ?",
                (status.value, due, to_iso(now), ticket_id),
            )
            return await self._finish(tx, actor, before, "reopen", status, reason)

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, ticket_id: int) -> Ticket:
        actor.require(access.TICKET_READ)
        async with self.db.reading() as r:
            return await self._visible(r, actor, ticket_id)

    async def history(self, actor: Actor, ticket_id: int) -> list[TicketEvent]:
        """Everything that happened to the ticket, oldest first: creation, hand-overs, comments."""
        actor.require(access.TICKET_READ)
        async with self.db.reading() as r:
            await self._visible(r, actor, ticket_id)
            rows = await r.fetch_all("SELECT * FROM ticket_events WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [TicketEvent(**row) for row in rows]

    async def search(
        self, actor: Actor, query: TicketQuery | None = None, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[Ticket]:
        """Unresolved first, then by priority (urgent first), then by due time (soonest first)."""
        actor.require(access.TICKET_READ)
        offset, limit = common.page_bounds(offset, limit)
        condition, params = self._conditions(actor, query or TicketQuery())
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM tickets t WHERE {condition}", params)
            rows = await r.fetch_all(f"SELECT t.* FROM tickets t WHERE {condition}{_ORDER} LIMIT ? OFFSET ?",
                                     [*params, limit, offset])  # fmt: skip
        now = to_iso(self.clock.now())
        return common.Page([self._from_row(row, now) for row in rows], int(total), offset, limit)

    async def period(
        self, actor: Actor, first_day: date, last_day: date | None = None, *, offset: int = 0,
        limit: int = common.DEFAULT_PAGE_SIZE, query: TicketQuery | None = None,
    ) -> common.Page[Ticket]:  # fmt: skip
        """Tickets created on the site's calendar days `first_day`..`last_day` (当天或某段时间)."""
        start, end = self._period_bounds(first_day, last_day)
        bounded = dataclasses.replace(query or TicketQuery(), created_from=start, created_to=end)
        return await self.search(actor, bounded, offset=offset, limit=limit)

    async def today(self, actor: Actor, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE) -> common.Page[Ticket]:
        return await self.period(actor, self.clock.today(), offset=offset, limit=limit)

    async def summary(self, actor: Actor, first_day: date, last_day: date | None = None) -> TicketSummary:
        actor.require(access.TICKET_READ)
        start, end = self._period_bounds(first_day, last_day)
        condition, params = self._conditions(actor, TicketQuery(created_from=start, created_to=end))
        now = to_iso(self.clock.now())
        rows = await self.db.fetch_all(
            f"SELECT t.ticket_type, t.status, COUNT(*) AS n,"
            f" SUM(CASE WHEN t.status IN ('new', 'assigned', 'in_progress') AND t.due_at < ? THEN 1 ELSE 0 END) AS late"
            f" FROM tickets t WHERE {condition} GROUP BY t.ticket_type, t.status",
            [now, *params],
        )
        by_type: dict[str, int] = {}
        by_status: dict[str, int] = {}
        for row in rows:
            by_type[row["ticket_type"]] = by_type.get(row["ticket_type"], 0) + row["n"]
            by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        open_count = sum(n for s, n in by_status.items() if TicketStatus(s) in OPEN_STATUSES)
        return TicketSummary(sum(by_type.values()), by_type, by_status, open_count, sum(r["late"] or 0 for r in rows))

    # -- SLA table ----------------------------------------------------------------------------------
    async def sla_table(self) -> dict[tuple[TicketType, Priority], int]:
        rows = await self.db.fetch_all("SELECT * FROM ticket_sla")
        return {(TicketType(r["ticket_type"]), Priority(r["priority"])): r["resolve_minutes"] for r in rows}

    async def set_sla(self, actor: Actor, ticket_type: TicketType | str, priority: Priority | int, resolve_minutes: int) -> None:
        actor.require(access.SETTINGS_WRITE)
        kind = common.enum_value("ticket_type", TicketType, ticket_type)
        prio = common.enum_value("priority", Priority, priority)
        minutes = common.positive_int("resolve_minutes", resolve_minutes)
        if minutes > MAX_SLA_MINUTES:
            raise ValidationError("resolve_minutes", f"must be at most {MAX_SLA_MINUTES}")
        async with self.db.transaction() as tx:
            before = await tx.fetch_value(
                "SELECT resolve_minutes FROM ticket_sla WHERE ticket_type = ? AND priority = ?", (kind.value, int(prio))
            )
            await tx.execute("DELETE FROM ticket_sla WHERE ticket_type = ? AND priority = ?", (kind.value, int(prio)))
            await tx.execute("INSERT INTO ticket_sla (ticket_type, priority, resolve_minutes) VALUES (?, ?, ?)",
                             (kind.value, int(prio), minutes))  # fmt: skip
            key = f"{kind.value}/{prio.name.lower()}"
            await audit.record(tx, self.clock, actor, "ticket_sla", None, "update",
                               before={key: before}, after={key: minutes})  # fmt: skip

    # -- helpers --------------------------------------------------------------------------------------
    def _period_bounds(self, first_day: date, last_day: date | None) -> tuple[datetime, datetime]:
        last_day = last_day or first_day
        if last_day < first_day:
            raise ValidationError("last_day", "is before first_day")
        return self.clock.day_bounds(first_day)[0], self.clock.day_bounds(last_day)[1]

    def _conditions(self, actor: Actor, query: TicketQuery) -> tuple[str, list[Any]]:
        scope_sql, params = scopes.ticket_condition(actor, "t")
        where = [scope_sql]
        statuses: Iterable[TicketStatus] | None = query.statuses
        if query.open_only:
            statuses = OPEN_STATUSES if statuses is None else set(statuses) & OPEN_STATUSES
        if statuses is not None:
            values = sorted(TicketStatus(s).value for s in statuses)
            if not values:
                return "1 = 0", []
            where.append(f"t.status IN ({', '.join('?' for _ in values)})")
            params += values
        for column, value in (
            ("t.ticket_type", query.ticket_type and TicketType(query.ticket_type).value),
            ("t.priority", query.priority and int(query.priority)),
            ("t.member_id", query.member_id),
            ("t.assignee_id", query.assignee_id),
            ("t.department_id", query.department_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.created_from is not None:
            where.append("t.created_at >= ?")
            params.append(to_iso(query.created_from))
        if query.created_to is not None:
            where.append("t.created_at < ?")
            params.append(to_iso(query.created_to))
        if query.overdue_only:
            where.append("t.status IN ('new', 'assigned', 'in_progress') AND t.due_at < ?")
            params.append(to_iso(self.clock.now()))
        return " AND ".join(where), params

    @staticmethod
    def _check_assign_permission(actor: Actor, assignee_id: int | None, department_id: int | None) -> None:
        if department_id is not None or (assignee_id is not None and assignee_id != actor.user_id):
            if not actor.can(access.TICKET_ASSIGN):
                raise Forbidden("assigning tickets to others needs ticket.assign", code="auth.permission_denied")

    @staticmethod
    def _check_worker(actor: Actor, ticket: Ticket) -> None:
        """Work on a ticket assigned to someone else is theirs, unless the actor may reassign."""
        if ticket.assignee_id not in (None, actor.user_id) and not actor.can(access.TICKET_ASSIGN):
            raise Forbidden(f"ticket {ticket.id} is assigned to someone else", code="ticket.not_assignee")

    @staticmethod
    async def _handling_department(tx: Transaction, assignee_id: int | None, department_id: int | None) -> int | None:
        if assignee_id is not None:
            user = await tx.fetch_one("SELECT department_id, active FROM users WHERE id = ?", (assignee_id,))
            if user is None or not user["active"]:
                raise ValidationError("assignee_id", f"user {assignee_id} is not an active user", code="user.not_found")
            if department_id is None:
                department_id = user["department_id"]
        if department_id is not None and await tx.fetch_value("SELECT 1 FROM departments WHERE id = ?", (department_id,)) is None:
            raise ValidationError("department_id", f"department {department_id} does not exist", code="department.not_found")
        return department_id

    @staticmethod
    async def _due(tx: Transaction, kind: TicketType, priority: Priority, start: datetime) -> str | None:
        minutes = await tx.fetch_value(
            "SELECT resolve_minutes FROM ticket_sla WHERE ticket_type = ? AND priority = ?", (kind.value, int(priority))
        )
        return to_iso(start + timedelta(minutes=minutes)) if minutes else None

    async def _event(
        self, tx: Transaction, actor: Actor, ticket_id: int, action: str,
        from_status: TicketStatus | None, to_status: TicketStatus | None, body: str,
    ) -> TicketEvent:  # fmt: skip
        now = to_iso(self.clock.now())
        from_value = from_status.value if from_status else None
        to_value = to_status.value if to_status else None
        event_id = await tx.insert(
            "INSERT INTO ticket_events (ticket_id, action, from_status, to_status, body, actor_id, actor_name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (ticket_id, action, from_value, to_value, body, actor.user_id, actor.username, now),
        )
        return TicketEvent(event_id, ticket_id, action, from_value, to_value, body, actor.user_id, actor.username, now)

    async def _finish(self, tx: Transaction, actor: Actor, before: Ticket, action: str, status: TicketStatus, body: str) -> Ticket:
        await self._event(tx, actor, before.id, action, before.status, status, body)
        after = await self._ticket(tx, before.id)
        await audit.record(tx, self.clock, actor, "ticket", before.id, action, before=before, after=after)
        return after

    async def _visible(self, tx: Transaction, actor: Actor, ticket_id: int) -> Ticket:
        row = await scopes.require_ticket(tx, actor, ticket_id)
        return self._from_row(row, to_iso(self.clock.now()))

    async def _ticket(self, tx: Transaction, ticket_id: int) -> Ticket:
        row = await tx.fetch_one("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        if row is None:
            raise NotFound(f"ticket {ticket_id} does not exist", code="ticket.not_found")
        return self._from_row(row, to_iso(self.clock.now()))

    @staticmethod
    def _from_row(row: dict[str, Any], now: str) -> Ticket:
        status = TicketStatus(row["status"])
        return Ticket(
            id=row["id"], ticket_type=TicketType(row["ticket_type"]), priority=Priority(row["priority"]), status=status,
            subject=row["subject"], description=row["description"], member_id=row["member_id"],
            category=row["category"], channel=row["channel"], contact_phone=row["contact_phone"],
            call_id=row["call_id"], assignee_id=row["assignee_id"], department_id=row["department_id"],
            created_by=row["created_by"], due_at=row["due_at"], resolution=row["resolution"],
            reopen_count=row["reopen_count"], created_at=row["created_at"], updated_at=row["updated_at"],
            resolved_at=row["resolved_at"], closed_at=row["closed_at"],
            overdue=status not in DONE_STATUSES and row["due_at"] is not None and row["due_at"] < now,
        )  # fmt: skip
