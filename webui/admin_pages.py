"""Administration: the departments tree, users (and creating one), and the roles' permission
matrix. Only roles holding org.read see them; creating users needs org.write (checked by the
organisation service itself)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden
from webui.auth import Viewer
from webui.pages import Pages


class AdminPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/admin/users", self.users, methods=["GET"]),
            Route("/admin/users", self.create_user, methods=["POST"]),
        ]

    async def users(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        org = self.crm.org
        try:
            tree = await org.department_tree(viewer.actor)
            departments = await org.list_departments(viewer.actor)
            users = await org.list_users(viewer.actor)
            roles = await org.list_roles(viewer.actor)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        permissions = sorted({p for role in roles for p in role.permissions} | set(access.ALL_PERMISSIONS))
        return self.pages.render(request, viewer, "admin_users.html", status, tree=tree, users=users, roles=roles,
                                 departments={d.id: d for d in departments}, permissions=permissions,
                                 error=error, can_write=viewer.actor.can(access.ORG_WRITE))

    async def create_user(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            department = str(form.get("department_id", ""))
            await self.crm.org.create_user(
                viewer.actor, str(form.get("username", "")), str(form.get("display_name", "")),
                str(form.get("password", "")), roles=[str(r) for r in form.getlist("roles")],
                department_id=int(department) if department.isdigit() else None,
                extension=str(form.get("extension", "")).strip() or None)
            return RedirectResponse("/admin/users", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.users(r, error, status))
