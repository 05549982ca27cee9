"""The interactions timeline: one newest-first list of a member's calls, tickets, work orders,
points entries and notes.

This module owns the `calls` table (filled from the ACD's CDR events: one row per call, with
Asterisk's dispositions) and the agents' notes (小记). The timeline is one UNION ALL query; each
branch reads its own member index. Every branch yields the same columns, whose meaning depends on
the kind of item:

=========== ================ =========== ============= ========== =============== ===========
kind        title            status      subtype       value      ref             user_id
=========== ================ =========== ============= ========== =============== ===========
call        caller → callee  disposition direction     duration s recording ref   agent
ticket      subject          status      ticket type   priority   —               assignee
work_order  product model    status      service type  —          serial number   technician
points      reason           —           earn/spend/.. amount     reference       entered by
note        text             —           —             —          —               author
=========== ================ =========== ============= ========== =============== ===========
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.errors import NotFound, ValidationError
from crm.phones import PhoneNormaliser

MAX_NOTE_LENGTH = 4000
MAX_TIMELINE_PAGE = 200


class CallDirection(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Disposition(StrEnum):
    """Asterisk's CDR dispositions, which operators and their reports already know."""

    ANSWERED = "ANSWERED"
    NO_ANSWER = "NO ANSWER"
    BUSY = "BUSY"
    FAILED = "FAILED"
    CONGESTION = "CONGESTION"


class TimelineKind(StrEnum):
    CALL = "call"
    TICKET = "ticket"
    WORK_ORDER = "work_order"
    POINTS = "points"
    NOTE = "note"


@dataclass(frozen=True)
class TimelineItem:
    kind: TimelineKind
    id: int
    occurred_at: str
    title: str
    status: str | None
    subtype: str | None
    value: int | None
    ref: str | None
    user_id: int | None


@dataclass(frozen=True)
class CallRecord:
    id: int
    call_uuid: str | None
    direction: CallDirection
    caller: str
    callee: str
    member_id: int | None
    agent_id: int | None
    queue: str | None
    started_at: str
    answered_at: str | None
    duration: int
    billsec: int
    disposition: Disposition
    recording_ref: str | None


COLUMNS = "kind, id, occurred_at, title, status, subtype, value, ref, user_id"

_BRANCHES: dict[TimelineKind, str] = {
    TimelineKind.CALL: (
        "SELECT 'call' AS kind, c.id AS id, c.started_at AS occurred_at, c.caller || ' → ' || c.callee AS title,"
        " c.disposition AS status, c.direction AS subtype, c.duration AS value, c.recording_ref AS ref,"
        " c.agent_id AS user_id FROM calls c WHERE c.member_id = ?"
    ),
    TimelineKind.TICKET: (
        "SELECT 'ticket' AS kind, t.id AS id, t.created_at AS occurred_at, t.subject AS title, t.status AS status,"
        " t.ticket_type AS subtype, t.priority AS value, NULL AS ref, t.assignee_id AS user_id"
        " FROM tickets t WHERE t.member_id = ? AND {scope}"
    ),
    TimelineKind.WORK_ORDER: (
        "SELECT 'work_order' AS kind, w.id AS id, w.created_at AS occurred_at, w.product_model AS title,"
        " w.status AS status, w.service_type AS subtype, NULL AS value, w.serial_no AS ref,"
        " w.technician_id AS user_id FROM work_orders w WHERE w.member_id = ? AND {scope}"
    ),
    TimelineKind.POINTS: (
        "SELECT 'points' AS kind, p.id AS id, p.created_at AS occurred_at, p.reason AS title, NULL AS status,"
        " p.kind AS subtype, p.amount AS value, p.reference AS ref, p.created_by AS user_id"
        " FROM points_entries p WHERE p.member_id = ?"
    ),
    TimelineKind.NOTE: (
        "SELECT 'note' AS kind, n.id AS id, n.created_at AS occurred_at, n.body AS title, NULL AS status,"
        " NULL AS subtype, NULL AS value, NULL AS ref, n.created_by AS user_id FROM member_notes n WHERE n.member_id = ?"
    ),
}


def _readable_kinds(actor: Actor, kinds: Iterable[TimelineKind] | None) -> list[TimelineKind]:
    """The kinds the actor may read: calls need call.read, tickets ticket.read, and so on."""
    needs = {
        TimelineKind.CALL: access.CALL_READ,
        TimelineKind.TICKET: access.TICKET_READ,
        TimelineKind.WORK_ORDER: access.WORKORDER_READ,
        TimelineKind.POINTS: access.MEMBER_READ,
        TimelineKind.NOTE: access.MEMBER_READ,
    }
    wanted = list(TimelineKind) if kinds is None else [TimelineKind(k) for k in kinds]
    return [k for k in wanted if actor.can(needs[k])]


def _branch(actor: Actor, kind: TimelineKind, member_id: int) -> tuple[str, list[Any]]:
    template = _BRANCHES[kind]
    params: list[Any] = [member_id]
    if kind is TimelineKind.TICKET:
        cond, extra = scopes.ticket_condition(actor, "t")
        return template.format(scope=cond), params + extra
    if kind is TimelineKind.WORK_ORDER:
        cond, extra = scopes.work_order_condition(actor, "w")
        return template.format(scope=cond), params + extra
    return template, params


def recent_query(
    actor: Actor, member_id: int, per_kind: int, kinds: Iterable[TimelineKind] | None = None
) -> tuple[str, list[Any]] | None:
    """A UNION ALL of the newest `per_kind` items of each readable kind (for the caller-ID card),
    or None when the actor may read none of them. Rows come unsorted across kinds."""
    parts: list[str] = []
    params: list[Any] = []
    for index, kind in enumerate(_readable_kinds(actor, kinds)):
        sql, p = _branch(actor, kind, member_id)
        parts.append(f"SELECT * FROM ({sql} ORDER BY occurred_at DESC, id DESC LIMIT ?) AS r{index}")
        params += [*p, per_kind]
    if not parts:
        return None
    return " UNION ALL ".join(parts), params


def item_from_row(row: dict[str, Any]) -> TimelineItem:
    return TimelineItem(
        kind=TimelineKind(row["kind"]), id=row["id"], occurred_at=row["occurred_at"], title=row["title"],
        status=row["status"], subtype=row["subtype"], value=row["value"], ref=row["ref"], user_id=row["user_id"],
    )  # fmt: skip


def newest_first(items: Iterable[TimelineItem]) -> list[TimelineItem]:
    return sorted(items, key=lambda i: (i.occurred_at, i.id), reverse=True)


def _call(row: dict[str, Any]) -> CallRecord:
    return CallRecord(
        id=row["id"], call_uuid=row["call_uuid"], direction=CallDirection(row["direction"]), caller=row["caller"],
        callee=row["callee"], member_id=row["member_id"], agent_id=row["agent_id"], queue=row["queue"],
        started_at=row["started_at"], answered_at=row["answered_at"], duration=row["duration"],
        billsec=row["billsec"], disposition=Disposition(row["disposition"]), recording_ref=row["recording_ref"],
    )  # fmt: skip


class TimelineService:
    def __init__(self, db: Database, clock: Clock | None = None, phones: PhoneNormaliser | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.phones = phones or PhoneNormaliser()

    async def member_timeline(
        self,
        actor: Actor,
        member_id: int,
        *,
        kinds: Iterable[TimelineKind] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[TimelineItem]:
        """Everything that happened with a member, newest first, in one query."""
        actor.require(access.MEMBER_READ)
        if not 1 <= limit <= MAX_TIMELINE_PAGE:
            raise ValidationError("limit", f"must be between 1 and {MAX_TIMELINE_PAGE}")
        offset, _ = common.page_bounds(offset, 1)
        async with self.db.reading() as r:
            await scopes.require_member(r, actor, member_id)
            parts, params = [], []
            for kind in _readable_kinds(actor, kinds):
                sql, p = _branch(actor, kind, member_id)
                parts.append(sql)
                params += p
            if not parts:
                return []
            rows = await r.fetch_all(
                " UNION ALL ".join(parts) + " ORDER BY occurred_at DESC, id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return [item_from_row(row) for row in rows]

    # -- notes ------------------------------------------------------------------------------------
    async def add_note(self, actor: Actor, member_id: int, body: str) -> TimelineItem:
        actor.require(access.MEMBER_WRITE)
        body = common.text("body", body, max_length=MAX_NOTE_LENGTH)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            now = to_iso(self.clock.now())
            note_id = await tx.insert(
                "INSERT INTO member_notes (member_id, body, created_by, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                (member_id, body, actor.user_id, now),
            )
            item = TimelineItem(TimelineKind.NOTE, note_id, now, body, None, None, None, None, actor.user_id)
            await audit.record(tx, self.clock, actor, "member_note", note_id, "create",
                               after={"member_id": member_id, "body": body})  # fmt: skip
        return item

    # -- calls --------------------------------------------------------------------------------------
    async def record_call(
        self,
        actor: Actor,
        *,
        direction: CallDirection | str,
        caller: str,
        callee: str,
        started_at: datetime,
        disposition: Disposition | str,
        duration: int = 0,
        billsec: int = 0,
        answered_at: datetime | None = None,
        agent_id: int | None = None,
        queue: str | None = None,
        recording_ref: str | None = None,
        call_uuid: str | None = None,
        member_id: int | None = None,
    ) -> CallRecord:
        """Store one finished call (a CDR). The member is the one the outside party's number
        belongs to unless given. A CDR delivered twice (same `call_uuid`) is stored once."""
        actor.require(access.CALL_WRITE)
        direction = common.enum_value("direction", CallDirection, direction)
        disposition = common.enum_value("disposition", Disposition, disposition)
        caller = common.text("caller", caller, max_length=128)
        callee = common.text("callee", callee, max_length=128)
        duration = common.positive_int("duration", duration, allow_zero=True)
        billsec = common.positive_int("billsec", billsec, allow_zero=True)
        if billsec > duration:
            raise ValidationError("billsec", "cannot exceed duration")
        call_uuid = common.optional_text("call_uuid", call_uuid, max_length=128)
        recording_ref = common.optional_text("recording_ref", recording_ref, max_length=512)
        queue = common.optional_text("queue", queue, max_length=64)
        async with self.db.transaction() as tx:
            if call_uuid is not None:
                existing = await tx.fetch_one("SELECT * FROM calls WHERE call_uuid = ?", (call_uuid,))
                if existing is not None:
                    return _call(existing)
            if member_id is None:
                outside = {CallDirection.INBOUND: caller, CallDirection.OUTBOUND: callee}.get(direction)
                member_id = await self.member_for_number(tx, outside) if outside else None
            elif await tx.fetch_value("SELECT 1 FROM members WHERE id = ?", (member_id,)) is None:
                raise NotFound(f"member {member_id} does not exist", code="member.not_found")
            if agent_id is not None and await tx.fetch_value("SELECT 1 FROM users WHERE id = ?", (agent_id,)) is None:
                raise ValidationError("agent_id", f"user {agent_id} does not exist", code="user.not_found")
            call_id = await tx.insert(
                "INSERT INTO calls (call_uuid, direction, caller, callee, member_id, agent_id, queue, started_at,"
                " answered_at, duration, billsec, disposition, recording_ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (call_uuid, direction.value, caller, callee, member_id, agent_id, queue, to_iso(started_at),
                 to_iso(answered_at) if answered_at else None, duration, billsec, disposition.value,
                 recording_ref),
            )  # fmt: skip
            row = await tx.fetch_one("SELECT * FROM calls WHERE id = ?", (call_id,))
            assert row is not None
            record = _call(row)
            await audit.record(tx, self.clock, actor, "call", call_id, "create", after=record)
        return record

    async def set_recording(self, actor: Actor, call_id: int, recording_ref: str) -> CallRecord:
        """Attach the recording once the recorder has finished the file (it may outlive the CDR)."""
        actor.require(access.CALL_WRITE)
        recording_ref = common.text("recording_ref", recording_ref, max_length=512)
        async with self.db.transaction() as tx:
            before = await tx.fetch_one("SELECT * FROM calls WHERE id = ?", (call_id,))
            if before is None:
                raise NotFound(f"call {call_id} does not exist", code="call.not_found")
            await tx.execute("UPDATE calls SET recording_ref = ? WHERE id = ?", (recording_ref, call_id))
            after = _call({**before, "recording_ref": recording_ref})
            await audit.record(tx, self.clock, actor, "call", call_id, "set_recording", before=_call(before), after=after)
        return after

    async def get_call(self, actor: Actor, call_id: int) -> CallRecord:
        actor.require(access.CALL_READ)
        row = await self.db.fetch_one("SELECT * FROM calls WHERE id = ?", (call_id,))
        if row is None:
            raise NotFound(f"call {call_id} does not exist", code="call.not_found")
        if row["member_id"] is not None:
            async with self.db.reading() as r:
                await scopes.require_member(r, actor, row["member_id"])
        return _call(row)

    async def member_for_number(self, tx: Transaction, number: str) -> int | None:
        """The member a number belongs to; for a shared landline, the most recently updated one."""
        key = self.phones.lookup_key(number)
        if key is None:
            return None
        return await tx.fetch_value(
            "SELECT m.id FROM member_phones p JOIN members m ON m.id = p.member_id WHERE p.e164 = ?"
            " ORDER BY m.updated_at DESC, m.id DESC LIMIT 1",
            (key,),
        )
