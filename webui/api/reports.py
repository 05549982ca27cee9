"""/api/reports: rows for the management charts (calendar days of the site's time zone)."""

from __future__ import annotations

from crm.reports import AppointmentRow, CallRow, CallSource, CountRow, LevelRow, Period, SalesRow
from crm.surveys import Satisfaction
from crm.visits import VisitReason
from crm.workorders import TechnicianStats
from webui.api.registry import Call, Section, q
from webui.api.schema import date_string, enum_of, string

api = Section("reports", "统计报表: tickets, work orders, appointments, sales, members, satisfaction, calls")

SPAN = [q("first_day", date_string(), required=True), q("last_day", date_string(), required=True,
                                                         description="inclusive; at most 731 days after first_day")]  # fmt: skip
PERIOD = q("period", enum_of(Period))


def _span(call: Call) -> tuple:
    return call.query["first_day"], call.query["last_day"]


@api.get("/reports/tickets", list[CountRow], summary="Tickets created per period by type, status or priority",
         query=[*SPAN, q("by", string(8, enum=["type", "status", "priority"])), PERIOD])  # fmt: skip
async def report_tickets(call: Call) -> list[CountRow]:
    return await call.crm.reports.tickets(call.me, *_span(call), by=call.query.get("by", "type"),
                                          period=call.query.get("period", Period.DAY))  # fmt: skip


@api.get("/reports/work-orders", list[TechnicianStats], summary="Work orders per technician (考核)", query=SPAN)
async def report_work_orders(call: Call) -> list[TechnicianStats]:
    return await call.crm.reports.work_orders_by_technician(call.me, *_span(call))


@api.get("/reports/appointments", list[AppointmentRow], summary="Appointments per expert or service, by outcome",
         query=[*SPAN, q("by", string(8, enum=["expert", "service"]))])  # fmt: skip
async def report_appointments(call: Call) -> list[AppointmentRow]:
    return await call.crm.reports.appointments(call.me, *_span(call), by=call.query.get("by", "expert"))


@api.get("/reports/sales", list[SalesRow], summary="Paid sales per catalogue item", query=SPAN)
async def report_sales(call: Call) -> list[SalesRow]:
    return await call.crm.reports.sales_by_item(call.me, *_span(call))


@api.get("/reports/members/growth", list[CountRow], summary="New members per period by source channel",
         query=[*SPAN, PERIOD])  # fmt: skip
async def report_member_growth(call: Call) -> list[CountRow]:
    return await call.crm.reports.member_growth(call.me, *_span(call), period=call.query.get("period", Period.DAY))


@api.get("/reports/members/levels", list[LevelRow], summary="Members per level now")
async def report_member_levels(call: Call) -> list[LevelRow]:
    return await call.crm.reports.member_levels(call.me)


@api.get("/reports/satisfaction", Satisfaction, summary="Satisfaction: average, 1-5 distribution, per staff member",
         query=[*SPAN, q("reason", enum_of(VisitReason))])  # fmt: skip
async def report_satisfaction(call: Call) -> Satisfaction:
    return await call.crm.reports.satisfaction(call.me, *_span(call), reason=call.query.get("reason"))


@api.get("/reports/calls", list[CallRow], summary="Call volume, answered, abandoned, average handle time",
         query=[*SPAN, q("source", enum_of(CallSource)), PERIOD])  # fmt: skip
async def report_calls(call: Call) -> list[CallRow]:
    return await call.crm.reports.calls(call.me, *_span(call), source=call.query.get("source", CallSource.CDR),
                                        period=call.query.get("period", Period.DAY))  # fmt: skip
