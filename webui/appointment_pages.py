"""Appointments in the browser: an expert's day — what is booked and which slots are free for
a service — and booking a slot for a member. Double booking is refused by the service, also
when two agents book the same slot from pages opened at the same time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm.appointments import AppointmentQuery
from crm.catalogue import ItemKind
from crm.errors import Forbidden, ValidationError
from crm.members import MemberQuery
from webui.auth import Viewer
from webui.pages import Pages


class AppointmentPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/appointments", self.day, methods=["GET"]),
            Route("/appointments", self.book, methods=["POST"]),
        ]

    async def day(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        params = request.query_params
        try:
            experts = await self.crm.experts.list_experts(viewer.actor)
            services = (await self.crm.catalogue.items(kind=ItemKind.SERVICE, limit=200)).items
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        expert = next((e for e in experts if str(e.user_id) == params.get("expert")), experts[0] if experts else None)
        offered = [s for s in services if expert is None or s.id in expert.service_ids]
        item = next((s for s in offered if str(s.id) == params.get("item")), offered[0] if offered else None)
        try:
            day = date.fromisoformat(params.get("day", ""))
        except ValueError:
            day = self.crm.clock.today() + timedelta(days=1)
        booked, slots = [], []
        if expert is not None:
            start, end = self.crm.clock.day_bounds(day)  # the site's calendar day, as UTC instants
            booked = (await self.crm.appointments.search(viewer.actor, AppointmentQuery(
                expert_id=expert.user_id, starts_from=start, starts_to=end), limit=100)).items
            if item is not None:
                slots = await self.crm.appointments.free_slots(viewer.actor, expert.user_id, day, item.id)
        return self.pages.render(request, viewer, "appointments.html", status, experts=experts, expert=expert,
                                 services=offered, item=item, day=day, booked=booked, slots=slots, error=error)

    async def book(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            phone = str(form.get("member_phone", "")).strip()
            found = await self.crm.members.search(viewer.actor, MemberQuery(phone=phone), limit=1) if phone else None
            if not found or not found.items:
                raise ValidationError("member_phone", "no member has this phone number", code="workorder.no_member")
            try:
                starts_at = datetime.fromisoformat(str(form.get("starts_at", "")).replace("Z", "+00:00"))
                expert_id, item_id = int(str(form.get("expert_id"))), int(str(form.get("item_id")))
            except ValueError:
                raise ValidationError("starts_at", "not a time slot", code="appointment.bad_slot") from None
            await self.crm.appointments.book(viewer.actor, member_id=found.items[0].id, expert_id=expert_id,
                                             item_id=item_id, starts_at=starts_at, channel="web")
            query = urlencode({"expert": expert_id, "item": item_id, "day": form.get("day", "")})
            return RedirectResponse(f"/appointments?{query}", status_code=303)

        async def refused(r: Request, error: str, status: int) -> Response:
            return await self.day(r, error, status)

        return await self.pages.post_action(request, run, refused)
