"""公告 in the browser: staff open a notice (which records their read receipt); publishers
(notice.write) list every notice, publish one to everyone or to departments, withdraw it, and
see who has read it."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden, NotFound
from webui.auth import Viewer
from webui.form_values import checked, ids, local_datetime
from webui.pages import Pages


class NoticePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/notices/{notice_id:int}", self.read, methods=["GET"]),
            Route("/admin/notices", self.manage, methods=["GET"]),
            Route("/admin/notices", self.publish, methods=["POST"]),
            Route("/admin/notices/{notice_id:int}", self.receipts, methods=["GET"]),
            Route("/admin/notices/{notice_id:int}/withdraw", self.withdraw, methods=["POST"]),
        ]

    async def read(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            notice = await self.crm.notices.read(viewer.actor, request.path_params["notice_id"])
        except NotFound:
            return self.pages.not_found(request, viewer)
        return self.pages.render(request, viewer, "notice.html", notice=notice)

    async def manage(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            notices = await self.crm.notices.list_all(viewer.actor)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        _, departments = await self.crm.staff_messages.directory(viewer.actor)
        return self.pages.render(request, viewer, "notices_admin.html", status, error=error, notices=notices,
                                 departments=departments, now=self.crm.clock.now().isoformat())  # fmt: skip

    async def publish(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.notices.publish(
                viewer.actor, str(form.get("title", "")), str(form.get("body", "")),
                department_ids=ids(form, "departments"), pinned=checked(form, "pinned"),
                expires_at=local_datetime(form, "expires_at", self.crm.clock.tz, required=False))  # fmt: skip
            return RedirectResponse("/admin/notices", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.manage(r, e, s))

    async def withdraw(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.notices.withdraw(viewer.actor, request.path_params["notice_id"])
            return RedirectResponse("/admin/notices", status_code=303)

        return await self.pages.post_action(request, run, lambda r, e, s: self.manage(r, e, s))

    async def receipts(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.NOTICE_WRITE):
            return self.pages.forbidden(request, viewer)
        notice_id = request.path_params["notice_id"]
        try:
            notice = await self.crm.notices.get(viewer.actor, notice_id)
            receipts = await self.crm.notices.receipts(viewer.actor, notice_id)
        except NotFound:
            return self.pages.not_found(request, viewer)
        return self.pages.render(request, viewer, "notice_receipts.html", notice=notice, receipts=receipts)
