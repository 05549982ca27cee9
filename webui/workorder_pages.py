"""After-sales work orders in the browser: 派工 dispatch → 完工 completion → 审核 audit, with the
fraud checks' flags (duplicate, out of warranty, unverified warranty) shown as warnings."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden, NotFound, ValidationError
from crm.members import MemberQuery
from crm.workorder_flow import ServiceType
from crm.workorders import WorkOrderQuery
from webui.auth import Viewer
from webui.pages import PAGE_SIZE, Pages

ACTIONS = ("dispatch", "complete", "approve", "void")


class WorkOrderPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/workorders", self.board, methods=["GET"]),
            Route("/workorders", self.create, methods=["POST"]),
            Route("/workorders/{order_id:int}", self.detail, methods=["GET"]),
            Route("/workorders/{order_id:int}/{action}", self.act, methods=["POST"]),
        ]

    async def board(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        flagged = request.query_params.get("flagged") == "1"
        try:
            page = await self.crm.work_orders.search(viewer.actor, WorkOrderQuery(flagged_only=flagged), limit=PAGE_SIZE)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        return self.pages.render(request, viewer, "workorders.html", status, page=page, flagged=flagged,
                                 error=error, service_types=list(ServiceType),
                                 can_write=viewer.actor.can(access.WORKORDER_WRITE))

    async def create(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            phone = str(form.get("member_phone", "")).strip()
            found = await self.crm.members.search(viewer.actor, MemberQuery(phone=phone), limit=1) if phone else None
            if not found or not found.items:
                raise ValidationError("member_phone", "no member has this phone number", code="workorder.no_member")
            order = await self.crm.work_orders.create(
                viewer.actor, member_id=found.items[0].id, service_type=str(form.get("service_type", "")),
                product_model=str(form.get("product_model", "")), serial_no=str(form.get("serial_no", "")),
                purchase_date=str(form.get("purchase_date", "")) or None, warranty_claim=form.get("warranty_claim") == "1",
                fault_description=str(form.get("fault_description", "")))
            return RedirectResponse(f"/workorders/{order.id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.board(r, error, status))

    async def detail(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        order_id = request.path_params["order_id"]
        try:
            order = await self.crm.work_orders.get(viewer.actor, order_id)
            history = await self.crm.work_orders.history(viewer.actor, order_id)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        except NotFound:
            return self.pages.not_found(request, viewer)
        technician = None
        if order.technician_id is not None:
            try:
                technician = await self.crm.org.get_user(viewer.actor, order.technician_id)
            except Forbidden:
                technician = None  # a role without org.read sees the order, not the staff list
        return self.pages.render(request, viewer, "workorder.html", status, order=order, history=history, error=error,
                                 technician=technician, can_audit=viewer.actor.can(access.WORKORDER_AUDIT))

    async def act(self, request: Request) -> Response:
        action = request.path_params["action"]
        order_id = request.path_params["order_id"]
        if action not in ACTIONS:
            return self.pages.not_found(request, await self.pages.viewer(request))

        async def run(viewer: Viewer, form: FormData) -> Response:
            service, actor = self.crm.work_orders, viewer.actor
            if action == "dispatch":
                await service.dispatch(actor, order_id)  # balanced automatic dispatch
            elif action == "complete":
                await service.complete(actor, order_id, customer_requests=str(form.get("customer_requests", "")),
                                       customer_opinion=str(form.get("customer_opinion", "")),
                                       device_state=str(form.get("device_state", "")))
            elif action == "approve":
                await service.approve(actor, order_id, note=str(form.get("note", "")))
            else:
                await service.void(actor, order_id, str(form.get("reason", "")))
            return RedirectResponse(f"/workorders/{order_id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.detail(r, error, status))
