"""客服管理 — 派工单 / 完工单 / 审核单: after-sales work orders from dispatch to audit.

An agent opens a work order from a customer's call (often from a ticket), dispatches it to a
technician by hand or by balanced automatic dispatch, the technician reports completion
(customer requests, opinion, device state, parts used), and an auditor approves or voids it;
approval schedules the return visit (`crm.visits`).
The fraud checks of `workorder_checks` run at creation and completion and leave flags the auditor
must acknowledge. Technician statistics feed the KPI review (考核).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crm import access, audit, common, scopes, visits
from crm import workorder_checks as checks
from crm.access import Actor
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database, Transaction
from crm.errors import Forbidden, ValidationError
from crm.phones import PhoneNormaliser
from crm.workorder_checks import Finding
from crm.workorder_flow import FlagCode, ServiceType, WorkOrderAction, WorkOrderStatus, next_status

MAX_TEXT = 4000
MAX_PARTS = 50
#: A warranty longer than ten years is a typo.
MAX_WARRANTY_MONTHS = 120


@dataclass(frozen=True)
class Part:
    part_no: str
    name: str
    quantity: int


@dataclass(frozen=True)
class Flag:
    code: FlagCode
    detail: str
    related_work_order_id: int | None
    created_at: str


@dataclass(frozen=True)
class WorkOrder:
    id: int
    member_id: int
    ticket_id: int | None
    service_type: ServiceType
    warranty_claim: bool
    product_model: str
    serial_no: str
    purchase_date: str | None
    warranty_months: int | None
    fault_description: str
    address: str
    region: str | None
    contact_phone: str | None
    appointment_at: str | None
    status: WorkOrderStatus
    technician_id: int | None
    department_id: int | None
    created_by: int | None
    created_at: str
    updated_at: str
    dispatched_at: str | None
    completed_at: str | None
    service_date: str | None
    customer_requests: str | None
    customer_opinion: str | None
    device_state: str | None
    completion_seconds: int | None
    audited_at: str | None
    audited_by: int | None
    audit_note: str | None
    parts: tuple[Part, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class WorkOrderEvent:
    id: int
    work_order_id: int
    action: str
    from_status: str | None
    to_status: str | None
    body: str
    actor_id: int | None
    actor_name: str
    created_at: str


@dataclass(frozen=True)
class WorkOrderQuery:
    statuses: frozenset[WorkOrderStatus] | None = None
    member_id: int | None = None
    technician_id: int | None = None
    flagged_only: bool = False
    serial_no: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True)
class TechnicianStats:
    technician_id: int
    display_name: str
    dispatched: int
    completed: int
    approved: int
    #: Completed orders the audit voided: the number the KPI review looks at.
    voided: int
    open: int
    avg_completion_seconds: float | None


def normalise_serial(serial_no: str) -> str:
    """Upper-case without blanks or dashes: `sn-2026 0001` and `SN20260001` are one machine."""
    cleaned = common.text("serial_no", serial_no, max_length=64)
    return "".join(ch for ch in cleaned.upper() if not ch.isspace() and ch != "-")


class WorkOrderService:
    def __init__(self, db: Database, clock: Clock | None = None, phones: PhoneNormaliser | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()
        self.phones = phones or PhoneNormaliser()

    # -- 派工 --------------------------------------------------------------------------------------
    async def create(
        self,
        actor: Actor,
        *,
        member_id: int,
        service_type: ServiceType | str,
        product_model: str,
        serial_no: str,
        purchase_date: date | str | None = None,
        warranty_claim: bool = True,
        warranty_months: int | None = None,
        fault_description: str = "",
        address: str = "",
        region: str | None = None,
        contact_phone: str | None = None,
        appointment_at: datetime | None = None,
        ticket_id: int | None = None,
        dispatch: bool = False,
        technician_id: int | None = None,
    ) -> WorkOrder:
        """A new work order, `pending`; with `dispatch=True` it is dispatched at once, to
        `technician_id` or else by balanced automatic dispatch."""
        actor.require(access.WORKORDER_WRITE)
        kind = common.enum_value("service_type", ServiceType, service_type)
        product_model = common.text("product_model", product_model, max_length=64)
        serial = normalise_serial(serial_no)
        bought = common.iso_date("purchase_date", purchase_date)
        if bought is not None and bought > self.clock.today():
            raise ValidationError("purchase_date", "is in the future", code="date.in_future")
        if not isinstance(warranty_claim, bool):
            raise ValidationError("warranty_claim", "must be true or false")
        if warranty_months is not None:
            common.positive_int("warranty_months", warranty_months, allow_zero=True)
            if warranty_months > MAX_WARRANTY_MONTHS:
                raise ValidationError("warranty_months", f"must be at most {MAX_WARRANTY_MONTHS}")
        fault = common.text("fault_description", fault_description, max_length=MAX_TEXT, required=False)
        address = common.text("address", address, max_length=200, required=False)
        region = common.optional_text("region", region, max_length=64)
        phone = self.phones.normalise(contact_phone, field="contact_phone").e164 if contact_phone else None
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            if ticket_id is not None:
                await scopes.require_ticket(tx, actor, ticket_id)
            if warranty_months is None:
                warranty_months = await checks.setting_int(tx, checks.DEFAULT_WARRANTY_KEY, checks.DEFAULT_WARRANTY_MONTHS)
            now = self.clock.now()
            order_id = await tx.insert(
                "INSERT INTO work_orders (member_id, ticket_id, service_type, warranty_claim, product_model, serial_no,"
                " purchase_date, warranty_months, fault_description, address, region, contact_phone, appointment_at,"
                " status, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (member_id, ticket_id, kind.value, 1 if warranty_claim else 0, product_model, serial,
                 bought.isoformat() if bought else None, warranty_months, fault, address, region, phone,
                 to_iso(appointment_at) if appointment_at else None, WorkOrderStatus.PENDING.value,
                 actor.user_id, to_iso(now), to_iso(now)),
            )  # fmt: skip
            await self._event(tx, actor, order_id, "create", None, WorkOrderStatus.PENDING, fault)
            service_day = (appointment_at or now).astimezone(self.clock.tz).date()
            findings = [
                await checks.find_duplicate(tx, member_id, serial, now, exclude_id=order_id),
                checks.check_warranty(warranty_claim, bought, warranty_months, service_day),
            ]
            await self._flag(tx, actor, order_id, findings)
            order = await self._order(tx, order_id)
            await audit.record(tx, self.clock, actor, "work_order", order_id, "create", after=order)
            if dispatch:
                order = await self._dispatch(tx, actor, order, technician_id, note="")
        return order

    async def dispatch(self, actor: Actor, work_order_id: int, *, technician_id: int | None = None, note: str = "") -> WorkOrder:
        """派工 (or 改派 when already dispatched): to `technician_id`, or balanced automatic dispatch."""
        actor.require(access.WORKORDER_WRITE)
        note = common.text("note", note, max_length=MAX_TEXT, required=False)
        async with self.db.transaction() as tx:
            order = await self._visible(tx, actor, work_order_id)
            return await self._dispatch(tx, actor, order, technician_id, note=note)

    async def _dispatch(
        self, tx: Transaction, actor: Actor, before: WorkOrder, technician_id: int | None, *, note: str
    ) -> WorkOrder:
        status = next_status(before.status, WorkOrderAction.DISPATCH)
        if technician_id is not None:
            if not await checks.may_receive(tx, technician_id):
                raise ValidationError("technician_id", f"user {technician_id} is not an active technician",
                                      code="workorder.not_technician")  # fmt: skip
            department_id = await tx.fetch_value("SELECT department_id FROM users WHERE id = ?", (technician_id,))
            detail = note
        else:
            pick = await checks.pick_technician(tx, before.region, exclude_id=before.technician_id)
            if pick is None:
                other = " other" if before.technician_id is not None else ""
                raise ValidationError("technician_id", f"no{other} active technician can receive work orders",
                                      code="workorder.no_technician")  # fmt: skip
            technician_id, department_id = pick.technician_id, pick.department_id
            where = "in region" if pick.in_region else "outside region (nobody serves it)"
            detail = f"automatic dispatch {where} {before.region or '-'}; open load {pick.open_load}. {note}".strip()
        now = to_iso(self.clock.now())
        await tx.execute(
            "UPDATE work_orders SET status = ?, technician_id = ?, department_id = ?, dispatched_at = ?, updated_at = ?"
            " WHERE id = ?",
            (status.value, technician_id, department_id, now, now, before.id),
        )
        return await self._finish(tx, actor, before, "dispatch", status, detail)

    # -- 完工 --------------------------------------------------------------------------------------
    async def complete(
        self,
        actor: Actor,
        work_order_id: int,
        *,
        customer_requests: str = "",
        customer_opinion: str = "",
        device_state: str,
        parts: Sequence[Part | tuple[str, str, int]] = (),
        service_date: date | str | None = None,
        note: str = "",
    ) -> WorkOrder:
        """The technician's completion report. Refused for an order never dispatched (假单); by
        anyone but its technician unless the actor may dispatch (a supervisor entering a paper
        report)."""
        actor.require(access.WORKORDER_COMPLETE)
        requests = common.text("customer_requests", customer_requests, max_length=MAX_TEXT, required=False)
        opinion = common.text("customer_opinion", customer_opinion, max_length=MAX_TEXT, required=False)
        state = common.text("device_state", device_state, max_length=MAX_TEXT)
        note = common.text("note", note, max_length=MAX_TEXT, required=False)
        used = self._parts(parts)
        served = common.iso_date("service_date", service_date) or self.clock.today()
        if served > self.clock.today():
            raise ValidationError("service_date", "is in the future", code="date.in_future")
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, work_order_id)
            status = next_status(before.status, WorkOrderAction.COMPLETE)
            if before.technician_id != actor.user_id and not actor.can(access.WORKORDER_WRITE):
                raise Forbidden(f"work order {work_order_id} was dispatched to someone else", code="workorder.not_technician")
            if before.dispatched_at and served < from_iso(before.dispatched_at).astimezone(self.clock.tz).date():
                raise ValidationError("service_date", "is before the dispatch", code="workorder.served_before_dispatch")
            now = self.clock.now()
            seconds = int((now - from_iso(before.dispatched_at)).total_seconds()) if before.dispatched_at else None
            await tx.execute(
                "UPDATE work_orders SET status = ?, completed_at = ?, service_date = ?, customer_requests = ?,"
                " customer_opinion = ?, device_state = ?, completion_seconds = ?, updated_at = ? WHERE id = ?",
                (status.value, to_iso(now), served.isoformat(), requests, opinion, state, seconds, to_iso(now),
                 work_order_id),
            )  # fmt: skip
            await tx.execute_many(
                "INSERT INTO work_order_parts (work_order_id, part_no, name, quantity) VALUES (?, ?, ?, ?)",
                [(work_order_id, p.part_no, p.name, p.quantity) for p in used],
            )
            bought = date.fromisoformat(before.purchase_date) if before.purchase_date else None
            await self._flag(tx, actor, work_order_id, [
                checks.check_warranty(before.warranty_claim, bought, before.warranty_months or 0, served),
            ])  # fmt: skip
            return await self._finish(tx, actor, before, "complete", status, note)

    # -- 审核 --------------------------------------------------------------------------------------
    async def approve(self, actor: Actor, work_order_id: int, *, note: str = "") -> WorkOrder:
        """审核通过. A flagged order needs a note saying why the flags do not stand."""
        actor.require(access.WORKORDER_AUDIT)
        note = common.text("note", note, max_length=MAX_TEXT, required=False)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, work_order_id)
            status = next_status(before.status, WorkOrderAction.APPROVE)
            self._check_not_own(actor, before)
            if before.flags and not note:
                codes = ", ".join(f.code.value for f in before.flags)
                raise ValidationError("note", f"the order is flagged ({codes}): say why it is approved anyway",
                                      code="workorder.flags_unacknowledged")  # fmt: skip
            await self._audited(tx, actor, work_order_id, status, note)
            # 售后回访: the member is asked about the technician's work, same transaction.
            await visits.create_followup(tx, self.clock, member_id=before.member_id, work_order_id=work_order_id,
                                         staff_id=before.technician_id)  # fmt: skip
            return await self._finish(tx, actor, before, "approve", status, note)

    async def void(self, actor: Actor, work_order_id: int, reason: str) -> WorkOrder:
        """作废: an auditor rejects a completed order; before completion, cancelling needs workorder.write."""
        reason = common.text("reason", reason, max_length=MAX_TEXT)
        async with self.db.transaction() as tx:
            before = await self._visible(tx, actor, work_order_id)
            status = next_status(before.status, WorkOrderAction.VOID)
            if before.status is WorkOrderStatus.COMPLETED:
                actor.require(access.WORKORDER_AUDIT)
                self._check_not_own(actor, before)
            else:
                actor.require(access.WORKORDER_WRITE)
            await self._audited(tx, actor, work_order_id, status, reason)
            return await self._finish(tx, actor, before, "void", status, reason)

    # -- reading ------------------------------------------------------------------------------------
    async def get(self, actor: Actor, work_order_id: int) -> WorkOrder:
        actor.require(access.WORKORDER_READ)
        async with self.db.reading() as r:
            return await self._visible(r, actor, work_order_id)

    async def history(self, actor: Actor, work_order_id: int) -> list[WorkOrderEvent]:
        actor.require(access.WORKORDER_READ)
        async with self.db.reading() as r:
            await self._visible(r, actor, work_order_id)
            rows = await r.fetch_all("SELECT * FROM work_order_events WHERE work_order_id = ? ORDER BY id", (work_order_id,))
        return [WorkOrderEvent(**row) for row in rows]

    async def search(
        self, actor: Actor, query: WorkOrderQuery | None = None, *, offset: int = 0, limit: int = common.DEFAULT_PAGE_SIZE
    ) -> common.Page[WorkOrder]:
        """Open orders first, then newest first."""
        actor.require(access.WORKORDER_READ)
        offset, limit = common.page_bounds(offset, limit)
        query = query or WorkOrderQuery()
        scope_sql, params = scopes.work_order_condition(actor, "w")
        where = [scope_sql]
        if query.statuses is not None:
            values = sorted(WorkOrderStatus(s).value for s in query.statuses)
            if not values:
                return common.Page([], 0, offset, limit)
            where.append(f"w.status IN ({', '.join('?' for _ in values)})")
            params += values
        for column, value in (("w.member_id", query.member_id), ("w.technician_id", query.technician_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.serial_no:
            where.append("w.serial_no = ?")
            params.append(normalise_serial(query.serial_no))
        if query.flagged_only:
            where.append("w.id IN (SELECT f.work_order_id FROM work_order_flags f)")
        if query.created_from is not None:
            where.append("w.created_at >= ?")
            params.append(to_iso(query.created_from))
        if query.created_to is not None:
            where.append("w.created_at < ?")
            params.append(to_iso(query.created_to))
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM work_orders w WHERE {condition}", params)
            rows = await r.fetch_all(
                f"SELECT w.id FROM work_orders w WHERE {condition} ORDER BY"
                " CASE WHEN w.status IN ('pending', 'dispatched') THEN 0 ELSE 1 END, w.created_at DESC, w.id DESC"
                " LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            orders = [await self._order(r, row["id"]) for row in rows]
        return common.Page(orders, int(total), offset, limit)

    async def technician_stats(self, actor: Actor, since: datetime, until: datetime) -> list[TechnicianStats]:
        """Per technician in the period: dispatched, completed (and the mean time from dispatch to
        completion), approved and voided at audit; plus what is open now."""
        actor.require(access.REPORT_READ)
        if until <= since:
            raise ValidationError("until", "must be after since")
        lo, hi = to_iso(since), to_iso(until)
        scope_sql, scope_params = access.scope_condition(actor, user_columns=["u.id"])
        rows = await self.db.fetch_all(
            "SELECT u.id, u.display_name,"
            " SUM(CASE WHEN w.dispatched_at >= ? AND w.dispatched_at < ? THEN 1 ELSE 0 END) AS dispatched,"
            " SUM(CASE WHEN w.completed_at >= ? AND w.completed_at < ? THEN 1 ELSE 0 END) AS completed,"
            " AVG(CASE WHEN w.completed_at >= ? AND w.completed_at < ? THEN w.completion_seconds END) AS avg_seconds,"
            " SUM(CASE WHEN w.status = 'approved' AND w.audited_at >= ? AND w.audited_at < ? THEN 1 ELSE 0 END)"
            " AS approved,"
            " SUM(CASE WHEN w.status = 'voided' AND w.completed_at IS NOT NULL AND w.audited_at >= ?"
            " AND w.audited_at < ? THEN 1 ELSE 0 END) AS voided,"
            " SUM(CASE WHEN w.status = 'dispatched' THEN 1 ELSE 0 END) AS open_now"
            " FROM users u LEFT JOIN work_orders w ON w.technician_id = u.id"
            " WHERE u.id IN (SELECT ur.user_id FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id"
            f" WHERE rp.permission = ?) AND {scope_sql}"
            " GROUP BY u.id, u.display_name ORDER BY u.id",
            [lo, hi] * 5 + [access.WORKORDER_RECEIVE, *scope_params],
        )
        return [
            TechnicianStats(r["id"], r["display_name"], r["dispatched"] or 0, r["completed"] or 0, r["approved"] or 0,
                            r["voided"] or 0, r["open_now"] or 0,
                            float(r["avg_seconds"]) if r["avg_seconds"] is not None else None)
            for r in rows
        ]  # fmt: skip

    # -- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _check_not_own(actor: Actor, order: WorkOrder) -> None:
        # Separation of duties: nobody audits the work they did themselves.
        if order.technician_id is not None and order.technician_id == actor.user_id:
            raise Forbidden("a technician cannot audit their own work order", code="workorder.self_audit")

    @staticmethod
    def _parts(parts: Sequence[Part | tuple[str, str, int]]) -> list[Part]:
        if isinstance(parts, str):
            raise ValidationError("parts", "must be a list of parts")
        if len(parts) > MAX_PARTS:
            raise ValidationError("parts", f"at most {MAX_PARTS} lines")
        out = []
        for index, item in enumerate(parts):
            if isinstance(item, Part):
                part_no, name, quantity = item.part_no, item.name, item.quantity
            elif isinstance(item, tuple | list) and len(item) == 3:
                part_no, name, quantity = item
            else:
                raise ValidationError(f"parts[{index}]", "must be (part number, name, quantity)")
            out.append(Part(
                common.text(f"parts[{index}].part_no", part_no, max_length=64),
                common.text(f"parts[{index}].name", name, max_length=100),
                common.positive_int(f"parts[{index}].quantity", quantity),
            ))  # fmt: skip
        return out

    async def _audited(self, tx: Transaction, actor: Actor, work_order_id: int, status: WorkOrderStatus, note: str) -> None:
        now = to_iso(self.clock.now())
        await tx.execute(
            "UPDATE work_orders SET status = ?, audited_at = ?, audited_by = ?, audit_note = ?, updated_at = ? WHERE id = ?",
            (status.value, now, actor.user_id, note or None, now, work_order_id),
        )

    async def _flag(self, tx: Transaction, actor: Actor, work_order_id: int, findings: list[Finding | None]) -> None:
        now = to_iso(self.clock.now())
        for finding in findings:
            if finding is None:
                continue
            exists = await tx.fetch_value(
                "SELECT 1 FROM work_order_flags WHERE work_order_id = ? AND code = ?", (work_order_id, finding.code.value)
            )
            if exists:
                continue
            await tx.execute(
                "INSERT INTO work_order_flags (work_order_id, code, detail, related_work_order_id, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (work_order_id, finding.code.value, finding.detail, finding.related_work_order_id, now),
            )
            await self._event(tx, actor, work_order_id, "flag", None, None, f"{finding.code.value}: {finding.detail}")

    async def _event(
        self, tx: Transaction, actor: Actor, work_order_id: int, action: str,
        from_status: WorkOrderStatus | None, to_status: WorkOrderStatus | None, body: str,
    ) -> None:  # fmt: skip
        await tx.execute(
            "INSERT INTO work_order_events (work_order_id, action, from_status, to_status, body, actor_id, actor_name,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (work_order_id, action, from_status.value if from_status else None, to_status.value if to_status else None,
             body, actor.user_id, actor.username, to_iso(self.clock.now())),
        )  # fmt: skip

    async def _finish(
        self, tx: Transaction, actor: Actor, before: WorkOrder, action: str, status: WorkOrderStatus, body: str
    ) -> WorkOrder:
        await self._event(tx, actor, before.id, action, before.status, status, body)
        after = await self._order(tx, before.id)
        await audit.record(tx, self.clock, actor, "work_order", before.id, action, before=before, after=after)
        return after

    async def _visible(self, tx: Transaction, actor: Actor, work_order_id: int) -> WorkOrder:
        row = await scopes.require_work_order(tx, actor, work_order_id)
        return await self._from_row(tx, row)

    async def _order(self, tx: Transaction, work_order_id: int) -> WorkOrder:
        row = await tx.fetch_one("SELECT * FROM work_orders WHERE id = ?", (work_order_id,))
        assert row is not None, f"work order {work_order_id} vanished inside its transaction"
        return await self._from_row(tx, row)

    @staticmethod
    async def _from_row(tx: Transaction, row: dict[str, Any]) -> WorkOrder:
        parts = await tx.fetch_all("SELECT * FROM work_order_parts WHERE work_order_id = ? ORDER BY id", (row["id"],))
        flags = await tx.fetch_all("SELECT * FROM work_order_flags WHERE work_order_id = ? ORDER BY id", (row["id"],))
        return WorkOrder(
            **{k: row[k] for k in (
                "id", "member_id", "ticket_id", "product_model", "serial_no", "purchase_date", "warranty_months",
                "fault_description", "address", "region", "contact_phone", "appointment_at", "technician_id",
                "department_id", "created_by", "created_at", "updated_at", "dispatched_at", "completed_at",
                "service_date", "customer_requests", "customer_opinion", "device_state", "completion_seconds",
                "audited_at", "audited_by", "audit_note")},
            service_type=ServiceType(row["service_type"]),
            warranty_claim=bool(row["warranty_claim"]),
            status=WorkOrderStatus(row["status"]),
            parts=tuple(Part(p["part_no"], p["name"], p["quantity"]) for p in parts),
            flags=tuple(Flag(FlagCode(f["code"]), f["detail"], f["related_work_order_id"], f["created_at"]) for f in flags),
        )  # fmt: skip
