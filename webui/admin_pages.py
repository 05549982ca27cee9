"""Administration: the departments tree, users (and creating one, and ending all of a user's
sessions), the roles' permission matrix and each role's IP allow-list (crm.networks). Only roles
holding org.read see them; the changes need org.write (checked by the organisation service
itself; ending sessions is checked here, as sessions are the web layer's)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import Forbidden, ValidationError
from crm.networks import parse_network
from webui.auth import Viewer
from webui.ip_allow import address_of
from webui.pages import Pages
from webui.profile_pages import audit_sessions_ended


class AdminPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/admin/users", self.users, methods=["GET"]),
            Route("/admin/users", self.create_user, methods=["POST"]),
            Route("/admin/users/{user_id:int}/sessions/end", self.end_sessions, methods=["POST"]),
            Route("/admin/roles", self.roles, methods=["GET"]),
            Route("/admin/roles/{role}/networks", self.set_networks, methods=["POST"]),
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
                                 error=error, can_write=viewer.actor.can(access.ORG_WRITE),
                                 notice=self._notice(request, viewer))  # fmt: skip

    async def roles(self, request: Request, error: str = "", status: int = 200) -> Response:
        """The roles' IP allow-lists, with the viewer's own address (what a list must keep)."""
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        try:
            roles = await self.crm.org.list_roles(viewer.actor)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        return self.pages.render(request, viewer, "admin_roles.html", status, roles=roles, error=error,
                                 can_write=viewer.actor.can(access.ORG_WRITE), address=address_of(request),
                                 notice=self._notice(request, viewer))  # fmt: skip

    def _notice(self, request: Request, viewer: Viewer) -> str:
        t = self.pages.translator(request, viewer)
        ended = request.query_params.get("ended", "")
        if ended.isdigit():
            return t("admin.sessions_ended", count=int(ended))
        if request.query_params.get("networks") == "saved":
            return t("admin.networks_saved")
        return ""

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

    async def end_sessions(self, request: Request) -> Response:
        """Sign a user out everywhere (a leaver, a stolen laptop): every session ends at once."""
        user_id = request.path_params["user_id"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            viewer.actor.require(access.ORG_WRITE)
            await self.crm.org.get_user(viewer.actor, user_id)  # 404 for an unknown user
            ended = await self.pages.sessions.end_all(user_id)
            await audit_sessions_ended(self.crm, viewer.actor, user_id, ended, "all")
            if user_id == viewer.actor.user_id:
                return self.pages.to_login(request)
            return RedirectResponse(f"/admin/users?ended={ended}", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.users(r, error, status))

    async def set_networks(self, request: Request) -> Response:
        """Save a role's allow-list: one network (CIDR) per line, empty for anywhere."""
        role = request.path_params["role"]

        async def run(viewer: Viewer, form: FormData) -> Response:
            entries = [e for e in str(form.get("networks", "")).replace(",", "\n").split() if e]
            t = self.pages.translator(request, viewer)
            for entry in entries:  # name the first bad entry in the user's language
                try:
                    parse_network(entry)
                except ValidationError:
                    return await self.roles(request, t("error.network.invalid_entry", entry=entry[:64]), 400)
            await self.crm.org.set_role_networks(viewer.actor, role, entries, address=address_of(request))
            return RedirectResponse("/admin/roles?networks=saved", status_code=303)

        return await self.pages.post_action(request, run, lambda r, error, status: self.roles(r, error, status))
