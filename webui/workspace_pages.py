"""我的工作台 in the browser: the employee's home page (reminders, today's schedule, notices,
what is waiting for me) and internal messages (inbox, writing to a colleague or a department).
Everything here is the signed-in user's own; the services enforce that."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from webui.auth import Viewer
from webui.form_values import local_datetime
from webui.pages import PAGE_SIZE, Pages


class WorkspacePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/", self.workspace, methods=["GET"]),
            Route("/schedule", self.add_item, methods=["POST"]),
            Route("/schedule/{item_id:int}/done", self.item_done, methods=["POST"]),
            Route("/messages", self.inbox, methods=["GET"]),
            Route("/messages", self.send, methods=["POST"]),
            Route("/messages/{message_id:int}/read", self.mark_read, methods=["POST"]),
            Route("/messages/read-all", self.mark_all_read, methods=["POST"]),
        ]

    async def workspace(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        actor = viewer.actor
        items = await self.crm.schedule.day(actor)
        return self.pages.render(
            request, viewer, "workspace.html", status, error=error, items=items,
            reminders=await self.crm.schedule.reminders(actor), upcoming=await self.crm.schedule.upcoming(actor),
            notices=await self.crm.notices.current(actor, limit=10), work=await self.crm.workspace.my_work(actor),
            unread_messages=(await self.crm.staff_messages.inbox(actor, unread_only=True, limit=5)).items)  # fmt: skip

    async def add_item(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            tz = self.crm.clock.tz
            starts_at = local_datetime(form, "starts_at", tz)
            assert starts_at is not None
            await self.crm.schedule.add(viewer.actor, str(form.get("title", "")), starts_at,
                                        remind_at=local_datetime(form, "remind_at", tz, required=False),
                                        note=str(form.get("note", "")))  # fmt: skip
            return RedirectResponse("/", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.workspace(r, e, s))

    async def item_done(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.schedule.mark_done(viewer.actor, request.path_params["item_id"])
            return RedirectResponse("/", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.workspace(r, e, s))

    # -- internal messages --------------------------------------------------------------------------
    async def inbox(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            offset = 0
        service = self.crm.staff_messages
        colleagues, departments = await service.directory(viewer.actor)
        return self.pages.render(request, viewer, "messages.html", status, error=error,
                                 page=await service.inbox(viewer.actor, offset=offset, limit=PAGE_SIZE),
                                 sent=await service.sent(viewer.actor, limit=10), departments=departments,
                                 colleagues=[c for c in colleagues if c.id != viewer.actor.user_id])  # fmt: skip

    async def send(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            target = str(form.get("to", ""))  # "user:7" or "department:3" from one drop-down
            kind, _, number = target.partition(":")
            await self.crm.staff_messages.send(
                viewer.actor, str(form.get("subject", "")), str(form.get("body", "")),
                to_user_id=int(number) if kind == "user" and number.isdigit() else None,
                to_department_id=int(number) if kind == "department" and number.isdigit() else None)
            return RedirectResponse("/messages?sent=1", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.inbox(r, e, s))

    async def mark_read(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.staff_messages.mark_read(viewer.actor, request.path_params["message_id"])
            return RedirectResponse(_back(form), status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.inbox(r, e, s))

    async def mark_all_read(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.staff_messages.mark_all_read(viewer.actor)
            return RedirectResponse("/messages", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.inbox(r, e, s))


def _back(form: FormData) -> str:
    target = str(form.get("next", "/messages"))
    return target if target.startswith("/") and not target.startswith("//") else "/messages"



