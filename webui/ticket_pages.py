"""Service requests (tickets) in the browser: the board, a new ticket, and its flow
(assign → start → resolve → close, reopen). Every rule is the ticket service's; a refused
transition comes back as the service's message on the page."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden, NotFound
from crm.ticket_flow import Priority, TicketType
from crm.tickets import TicketQuery
from webui.auth import Viewer
from webui.pages import PAGE_SIZE, Pages

ACTIONS = ("assign", "start", "resolve", "close", "reopen")


class TicketPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/tickets", self.board, methods=["GET"]),
            Route("/tickets", self.create, methods=["POST"]),
            Route("/tickets/{ticket_id:int}", self.detail, methods=["GET"]),
            Route("/tickets/{ticket_id:int}/{action}", self.act, methods=["POST"]),
        ]

    async def board(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        open_only = request.query_params.get("all") != "1"
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            offset = 0
        try:
            page = await self.crm.tickets.search(viewer.actor, TicketQuery(open_only=open_only),
                                                 offset=offset, limit=PAGE_SIZE)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        return self.pages.render(request, viewer, "tickets.html", status, page=page, open_only=open_only,
                                 types=list(TicketType), priorities=list(Priority), error=error,
                                 can_write=viewer.actor.can(access.TICKET_WRITE))

    async def create(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            try:
                priority = Priority(int(str(form.get("priority", "2"))))
            except ValueError:
                priority = Priority.NORMAL
            ticket = await self.crm.tickets.create(
                viewer.actor, ticket_type=str(form.get("ticket_type", "")), subject=str(form.get("subject", "")),
                description=str(form.get("description", "")), priority=priority,
                contact_phone=str(form.get("contact_phone", "")).strip() or None, channel="web")
            return RedirectResponse(f"/tickets/{ticket.id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.board(r, error, status))

    async def detail(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        ticket_id = request.path_params["ticket_id"]
        try:
            ticket = await self.crm.tickets.get(viewer.actor, ticket_id)
            history = await self.crm.tickets.history(viewer.actor, ticket_id)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        except NotFound:
            return self.pages.not_found(request, viewer)
        assignees = []
        if viewer.actor.can(access.TICKET_ASSIGN) and viewer.actor.can(access.ORG_READ):
            assignees = [u for u in await self.crm.org.list_users(viewer.actor, active=True)]
        return self.pages.render(request, viewer, "ticket.html", status, ticket=ticket, history=history,
                                 assignees=assignees, error=error)

    async def act(self, request: Request) -> Response:
        action = request.path_params["action"]
        ticket_id = request.path_params["ticket_id"]
        if action not in ACTIONS:
            return self.pages.not_found(request, await self.pages.viewer(request))

        async def run(viewer: Viewer, form: FormData) -> Response:
            service, actor = self.crm.tickets, viewer.actor
            if action == "assign":
                assignee = str(form.get("assignee_id", ""))
                await service.assign(actor, ticket_id, note=str(form.get("note", "")),
                                     assignee_id=int(assignee) if assignee.isdigit() else viewer.session.user_id)
            elif action == "start":
                await service.start(actor, ticket_id)
            elif action == "resolve":
                await service.resolve(actor, ticket_id, str(form.get("resolution", "")))
            elif action == "close":
                await service.close(actor, ticket_id, str(form.get("note", "")))
            else:
                await service.reopen(actor, ticket_id, str(form.get("reason", "")))
            return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.detail(r, error, status))
