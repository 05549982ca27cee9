"""/api/experts, /api/appointments, /api/orders: expert schedules, bookings, consultations, purchases."""

from __future__ import annotations

from crm.appointments import Appointment, AppointmentQuery, AppointmentStatus, Recommendation, Slot
from crm.availability import ExceptionKind
from crm.common import Page
from crm.experts import Expert, HoursSpec, ScheduleException
from crm.orders import Order, OrderLine, OrderQuery, OrderStatus, PaymentMethod
from webui.api.params import PAGING, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import (
    MAX_INT,
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

api = Section("appointments", "电话预约 / 专家咨询 / 服务购买: experts, bookings, consultations, orders")

HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", "maxLength": 5}


# -- experts --------------------------------------------------------------------------------------
@api.get("/experts", list[Expert], summary="Bookable experts; with item_id those who perform that service",
         query=[q("item_id", identifier()), q("include_inactive", boolean())])  # fmt: skip
async def list_experts(call: Call) -> list[Expert]:
    return await call.crm.experts.list_experts(call.me, item_id=call.query.get("item_id"),
                                               include_inactive=call.query.get("include_inactive", False))  # fmt: skip


@api.get("/experts/{user_id}", Expert, summary="One expert with services and weekly hours")
async def get_expert(call: Call) -> Expert:
    return await call.crm.experts.get(call.me, call.path["user_id"])


@api.put("/experts/{user_id}", Expert, summary="Make a user bookable, or update the profile and services",
         body=obj({"title": string(64), "bio": string(2000), "active": boolean(),
                   "service_ids": array(identifier(), 200)}))  # fmt: skip
async def put_expert(call: Call) -> Expert:
    return await call.crm.experts.put_expert(call.me, call.path["user_id"], **call.body)


@api.put("/experts/{user_id}/hours", Expert, summary="Replace the weekly working hours (local time, Monday = 0)",
         body=obj({"hours": array(obj({"weekday": integer(0, 6), "start": HHMM, "end": HHMM}, "weekday", "start", "end"),
                                  28)}, "hours"))  # fmt: skip
async def set_hours(call: Call) -> Expert:
    hours = [HoursSpec(h["weekday"], h["start"], h["end"]) for h in call.body["hours"]]
    return await call.crm.experts.set_hours(call.me, call.path["user_id"], hours)


@api.get("/experts/{user_id}/exceptions", list[ScheduleException], summary="Days off and extra hours in a range",
         query=[q("first_day", date_string(), required=True), q("last_day", date_string(), required=True)])  # fmt: skip
async def list_exceptions(call: Call) -> list[ScheduleException]:
    return await call.crm.experts.exceptions(call.me, call.path["user_id"], call.query["first_day"], call.query["last_day"])


@api.post("/experts/{user_id}/exceptions", ScheduleException, status=201, summary="Add a day off, time off or extra hours",
          body=obj({"day": date_string(), "kind": enum_of(ExceptionKind), "start": HHMM, "end": HHMM,
                    "note": string(200)}, "day", "kind"))  # fmt: skip
async def add_exception(call: Call) -> ScheduleException:
    b = dict(call.body)
    return await call.crm.experts.add_exception(call.me, call.path["user_id"], b.pop("day"), b.pop("kind"), **b)


@api.delete("/expert-exceptions/{exception_id}", None, status=204, summary="Remove a schedule exception")
async def remove_exception(call: Call) -> None:
    await call.crm.experts.remove_exception(call.me, call.path["exception_id"])


@api.get("/experts/{user_id}/slots", list[Slot], summary="Free start times on a day for a service",
         query=[q("day", date_string(), required=True), q("item_id", identifier(), required=True)])  # fmt: skip
async def free_slots(call: Call) -> list[Slot]:
    return await call.crm.appointments.free_slots(call.me, call.path["user_id"], call.query["day"], call.query["item_id"])


# -- appointments ---------------------------------------------------------------------------------
@api.get("/appointments", Page[Appointment], summary="Appointments by start time", query=[
    q("expert_id", identifier()), q("member_id", identifier()), q("status", enum_of(AppointmentStatus)),
    q("starts_from", datetime_string()), q("starts_to", datetime_string()), *PAGING])  # fmt: skip
async def search_appointments(call: Call) -> Page[Appointment]:
    f = call.query
    query = AppointmentQuery(f.get("expert_id"), f.get("member_id"), f.get("status"), f.get("starts_from"), f.get("starts_to"))
    return await call.crm.appointments.search(call.me, query, **paging(call))


@api.post("/appointments", Appointment, status=201, summary="Book (refused with 409 when the expert or member is busy)",
          body=obj({"member_id": identifier(), "expert_id": identifier(), "item_id": identifier(),
                    "starts_at": datetime_string(), "note": string(4000), "channel": string(32, nullable=True),
                    "order_id": identifier(nullable=True)}, "member_id", "expert_id", "item_id", "starts_at"))  # fmt: skip
async def book(call: Call) -> Appointment:
    return await call.crm.appointments.book(call.me, **call.body)


@api.get("/appointments/{appointment_id}", Appointment, summary="One appointment")
async def get_appointment(call: Call) -> Appointment:
    return await call.crm.appointments.get(call.me, call.path["appointment_id"])


@api.post("/appointments/{appointment_id}/reschedule", Appointment, summary="Move to another time (or expert)",
          body=obj({"starts_at": datetime_string(), "expert_id": identifier(), "note": string(4000)}, "starts_at"))  # fmt: skip
async def reschedule(call: Call) -> Appointment:
    return await call.crm.appointments.reschedule(call.me, call.path["appointment_id"], **call.body)


@api.post("/appointments/{appointment_id}/cancel", Appointment, summary="Cancel",
          body=obj({"reason": string(4000, min_length=1)}, "reason"))  # fmt: skip
async def cancel_appointment(call: Call) -> Appointment:
    return await call.crm.appointments.cancel(call.me, call.path["appointment_id"], call.body["reason"])


@api.post("/appointments/{appointment_id}/no-show", Appointment, summary="Mark as no-show (爽约)", body=obj({}))
async def no_show(call: Call) -> Appointment:
    return await call.crm.appointments.mark_no_show(call.me, call.path["appointment_id"])


@api.post("/appointments/{appointment_id}/consultation", Appointment, summary="The expert's notes and recommendations",
          body=obj({"notes": string(4000, min_length=1), "customer_needs": string(4000),
                    "recommendations": array(obj({"item_id": identifier(), "note": string(500)}, "item_id"), 20)},
                   "notes"))  # fmt: skip
async def record_consultation(call: Call) -> Appointment:
    recs = [Recommendation(r["item_id"], r.get("note", "")) for r in call.body.get("recommendations", [])]
    return await call.crm.appointments.record_consultation(call.me, call.path["appointment_id"], notes=call.body["notes"],
                                                           customer_needs=call.body.get("customer_needs", ""),
                                                           recommendations=recs)  # fmt: skip


@api.post("/appointments/{appointment_id}/complete", Appointment, summary="The member was served", body=obj({}))
async def complete_appointment(call: Call) -> Appointment:
    """Completes a paid order the appointment delivers, which schedules its return visit."""
    return await call.crm.appointments.complete(call.me, call.path["appointment_id"])


# -- orders ---------------------------------------------------------------------------------------
@api.get("/orders", Page[Order], summary="Orders, newest first",
         query=[q("member_id", identifier()), q("status", enum_of(OrderStatus)), *PAGING])  # fmt: skip
async def search_orders(call: Call) -> Page[Order]:
    query = OrderQuery(member_id=call.query.get("member_id"), status=call.query.get("status"))
    return await call.crm.orders.search(call.me, query, **paging(call))


@api.post("/orders", Order, status=201, summary="A purchase at today's catalogue prices (amounts in CNY fen)",
          body=obj({"member_id": identifier(), "lines": array(obj({"item_id": identifier(), "quantity": integer(1, 1000)},
                                                                  "item_id", "quantity"), 50, min_items=1),
                    "appointment_id": identifier(nullable=True), "note": string(500)}, "member_id", "lines"))  # fmt: skip
async def create_order(call: Call) -> Order:
    b = call.body
    lines = [OrderLine(line["item_id"], line["quantity"]) for line in b["lines"]]
    return await call.crm.orders.create(call.me, member_id=b["member_id"], lines=lines,
                                        appointment_id=b.get("appointment_id"), note=b.get("note", ""))  # fmt: skip


@api.get("/orders/{order_id}", Order, summary="One order")
async def get_order(call: Call) -> Order:
    return await call.crm.orders.get(call.me, call.path["order_id"])


@api.post("/orders/{order_id}/pay", Order, summary="Record payment in full",
          body=obj({"method": enum_of(PaymentMethod), "amount_cents": integer(0, MAX_INT)}, "method", "amount_cents"))  # fmt: skip
async def pay_order(call: Call) -> Order:
    return await call.crm.orders.pay(call.me, call.path["order_id"], **call.body)


@api.post("/orders/{order_id}/complete", Order, summary="The service was delivered", body=obj({}))
async def complete_order(call: Call) -> Order:
    return await call.crm.orders.complete(call.me, call.path["order_id"])


@api.post("/orders/{order_id}/cancel", Order, summary="Cancel a pending order or refund a paid one",
          body=obj({"reason": string(500, min_length=1)}, "reason"))  # fmt: skip
async def cancel_order(call: Call) -> Order:
    return await call.crm.orders.cancel(call.me, call.path["order_id"], call.body["reason"])
