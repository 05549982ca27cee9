"""/api/tickets and /api/work-orders: service tickets and after-sales work orders with their flows."""

from __future__ import annotations

from datetime import date, datetime

from crm.common import Page
from crm.ticket_flow import Priority, TicketStatus, TicketType
from crm.tickets import Ticket, TicketEvent, TicketQuery
from crm.workorder_flow import ServiceType, WorkOrderStatus
from crm.workorders import Part, WorkOrder, WorkOrderEvent, WorkOrderQuery
from webui.api.params import PAGING, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import (
    array,
    boolean,
    date_string,
    datetime_string,
    enum_of,
    identifier,
    integer,
    obj,
    string,
)

api = Section("tickets", "客户服务 / 售后: tickets (consultations, complaints, suggestions) and work orders")

PRIORITY = integer(1, 4)
NOTE = string(8000)


def _day_start(call: Call, day: date | None) -> datetime | None:
    return None if day is None else call.crm.clock.day_bounds(day)[0]


def _day_end(call: Call, day: date | None) -> datetime | None:
    return None if day is None else call.crm.clock.day_bounds(day)[1]


# -- tickets --------------------------------------------------------------------------------------
@api.get("/tickets", Page[Ticket], summary="Tickets: unresolved first, then priority, then due time", query=[
    q("status", enum_of(TicketStatus)), q("open_only", boolean()), q("ticket_type", enum_of(TicketType)),
    q("priority", PRIORITY), q("member_id", identifier()), q("assignee_id", identifier()),
    q("department_id", identifier()), q("overdue_only", boolean()),
    q("created_from", date_string(), description="first calendar day (site time zone)"),
    q("created_to", date_string(), description="last calendar day, inclusive"), *PAGING])  # fmt: skip
async def search_tickets(call: Call) -> Page[Ticket]:
    f = call.query
    query = TicketQuery(
        statuses=frozenset({TicketStatus(f["status"])}) if "status" in f else None, open_only=f.get("open_only", False),
        ticket_type=f.get("ticket_type"), priority=Priority(f["priority"]) if "priority" in f else None,
        member_id=f.get("member_id"), assignee_id=f.get("assignee_id"), department_id=f.get("department_id"),
        created_from=_day_start(call, f.get("created_from")), created_to=_day_end(call, f.get("created_to")),
        overdue_only=f.get("overdue_only", False),
    )  # fmt: skip
    return await call.crm.tickets.search(call.me, query, **paging(call))


@api.post("/tickets", Ticket, status=201, summary="Open a ticket", body=obj({
    "ticket_type": enum_of(TicketType), "subject": string(200, min_length=1), "description": NOTE,
    "member_id": identifier(), "priority": PRIORITY, "category": string(48, nullable=True),
    "channel": string(32, nullable=True), "contact_phone": string(64, nullable=True), "call_id": identifier(),
    "assignee_id": identifier(), "department_id": identifier()}, "ticket_type", "subject"))  # fmt: skip
async def create_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.create(call.me, **call.body)


@api.get("/tickets/{ticket_id}", Ticket, summary="One ticket")
async def get_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.get(call.me, call.path["ticket_id"])


@api.patch("/tickets/{ticket_id}", Ticket, summary="Edit subject, description, priority (moves the due time), category",
           body=obj({"subject": string(200, min_length=1), "description": NOTE, "priority": PRIORITY,
                     "category": string(48, nullable=True)}))  # fmt: skip
async def update_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.update(call.me, call.path["ticket_id"], **call.body)


@api.post("/tickets/{ticket_id}/assign", Ticket, summary="Assign to a user and/or a department",
          body=obj({"assignee_id": identifier(), "department_id": identifier(), "note": NOTE}))  # fmt: skip
async def assign_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.assign(call.me, call.path["ticket_id"], **call.body)


@api.post("/tickets/{ticket_id}/start", Ticket, summary="Start work (受理)", body=obj({}))
async def start_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.start(call.me, call.path["ticket_id"])


@api.post("/tickets/{ticket_id}/resolve", Ticket, summary="Resolve",
          body=obj({"resolution": string(8000, min_length=1)}, "resolution"))  # fmt: skip
async def resolve_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.resolve(call.me, call.path["ticket_id"], call.body["resolution"])


@api.post("/tickets/{ticket_id}/close", Ticket, summary="Close a resolved ticket", body=obj({"note": NOTE}))
async def close_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.close(call.me, call.path["ticket_id"], call.body.get("note", ""))


@api.post("/tickets/{ticket_id}/reopen", Ticket, summary="Reopen (the SLA clock restarts)",
          body=obj({"reason": string(8000, min_length=1)}, "reason"))  # fmt: skip
async def reopen_ticket(call: Call) -> Ticket:
    return await call.crm.tickets.reopen(call.me, call.path["ticket_id"], call.body["reason"])


@api.get("/tickets/{ticket_id}/history", list[TicketEvent], summary="The ticket's history, oldest first")
async def ticket_history(call: Call) -> list[TicketEvent]:
    return await call.crm.tickets.history(call.me, call.path["ticket_id"])


@api.post("/tickets/{ticket_id}/comments", TicketEvent, status=201, summary="Comment on a ticket",
          body=obj({"body": string(8000, min_length=1)}, "body"))  # fmt: skip
async def comment_ticket(call: Call) -> TicketEvent:
    return await call.crm.tickets.comment(call.me, call.path["ticket_id"], call.body["body"])


# -- work orders ----------------------------------------------------------------------------------
@api.get("/work-orders", Page[WorkOrder], summary="Work orders: open first, then newest", query=[
    q("status", enum_of(WorkOrderStatus)), q("member_id", identifier()), q("technician_id", identifier()),
    q("flagged_only", boolean()), q("serial_no", string(64)), *PAGING])  # fmt: skip
async def search_work_orders(call: Call) -> Page[WorkOrder]:
    f = call.query
    query = WorkOrderQuery(
        statuses=frozenset({WorkOrderStatus(f["status"])}) if "status" in f else None, member_id=f.get("member_id"),
        technician_id=f.get("technician_id"), flagged_only=f.get("flagged_only", False), serial_no=f.get("serial_no"),
    )  # fmt: skip
    return await call.crm.work_orders.search(call.me, query, **paging(call))


@api.post("/work-orders", WorkOrder, status=201, summary="Open a work order (派工单), optionally dispatching it", body=obj({
    "member_id": identifier(), "service_type": enum_of(ServiceType), "product_model": string(64, min_length=1),
    "serial_no": string(64, min_length=1), "purchase_date": date_string(nullable=True), "warranty_claim": boolean(),
    "warranty_months": integer(0, 120, nullable=True), "fault_description": string(4000), "address": string(200),
    "region": string(64, nullable=True), "contact_phone": string(64, nullable=True),
    "appointment_at": datetime_string(nullable=True), "ticket_id": identifier(nullable=True), "dispatch": boolean(),
    "technician_id": identifier(nullable=True)}, "member_id", "service_type", "product_model", "serial_no"))  # fmt: skip
async def create_work_order(call: Call) -> WorkOrder:
    return await call.crm.work_orders.create(call.me, **call.body)


@api.get("/work-orders/{work_order_id}", WorkOrder, summary="One work order")
async def get_work_order(call: Call) -> WorkOrder:
    return await call.crm.work_orders.get(call.me, call.path["work_order_id"])


@api.get("/work-orders/{work_order_id}/history", list[WorkOrderEvent], summary="The work order's history")
async def work_order_history(call: Call) -> list[WorkOrderEvent]:
    return await call.crm.work_orders.history(call.me, call.path["work_order_id"])


@api.post("/work-orders/{work_order_id}/dispatch", WorkOrder, summary="Dispatch (派工) or re-dispatch; no technician: balanced",
          body=obj({"technician_id": identifier(), "note": string(4000)}))  # fmt: skip
async def dispatch_work_order(call: Call) -> WorkOrder:
    return await call.crm.work_orders.dispatch(call.me, call.path["work_order_id"], **call.body)


PART = obj({"part_no": string(64, min_length=1), "name": string(100, min_length=1), "quantity": integer(1, 10_000)},
           "part_no", "name", "quantity")  # fmt: skip


@api.post("/work-orders/{work_order_id}/complete", WorkOrder, summary="Report completion (完工单)", body=obj({
    "customer_requests": string(4000), "customer_opinion": string(4000), "device_state": string(4000, min_length=1),
    "parts": array(PART, 50), "service_date": date_string(nullable=True), "note": string(4000)}, "device_state"))  # fmt: skip
async def complete_work_order(call: Call) -> WorkOrder:
    body = dict(call.body)
    parts = [Part(p["part_no"], p["name"], p["quantity"]) for p in body.pop("parts", [])]
    return await call.crm.work_orders.complete(call.me, call.path["work_order_id"], parts=parts, **body)


@api.post("/work-orders/{work_order_id}/approve", WorkOrder, summary="Audit: approve (审核通过)", body=obj({"note": string(4000)}))
async def approve_work_order(call: Call) -> WorkOrder:
    return await call.crm.work_orders.approve(call.me, call.path["work_order_id"], note=call.body.get("note", ""))


@api.post("/work-orders/{work_order_id}/void", WorkOrder, summary="Void (作废)",
          body=obj({"reason": string(4000, min_length=1)}, "reason"))  # fmt: skip
async def void_work_order(call: Call) -> WorkOrder:
    return await call.crm.work_orders.void(call.me, call.path["work_order_id"], call.body["reason"])
