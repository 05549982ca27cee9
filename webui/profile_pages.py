"""个人设置: the signed-in user's own page: who they are, changing the password (修改密码), the
sessions they have open and signing out of the others or everywhere (a lost phone, a shared
PC left signed in). Ending sessions is audited like any other write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import audit
from crm.access import Actor
from crm.errors import Forbidden, ValidationError
from crm.passwords import MIN_PASSWORD_CHARS
from crm.service import Crm
from webui.auth import SESSION_COOKIE, Viewer
from webui.pages import Pages


async def audit_sessions_ended(crm: Crm, actor: Actor, user_id: int, count: int, which: str) -> None:
    """One audit entry for signing a user out of `which` ("others", "all") sessions."""
    async with crm.db.transaction() as tx:
        await audit.record(tx, crm.clock, actor, "user", user_id, "end_sessions",
                           after={"sessions": which, "ended": count})  # fmt: skip


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ProfilePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/profile", self.show, methods=["GET"]),
            Route("/profile/password", self.change_password, methods=["POST"]),
            Route("/profile/sessions/end-others", self.end_others, methods=["POST"]),
            Route("/profile/sessions/end-all", self.end_all, methods=["POST"]),
        ]

    async def show(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        assert viewer.actor.user_id is not None
        user = await self.crm.org.get_user(viewer.actor, viewer.actor.user_id)
        sessions = await self.pages.sessions.list_for_user(user.id, viewer.session)
        notice = ""
        ended = request.query_params.get("ended", "")
        if ended.isdigit():
            notice = self.pages.translator(request, viewer)("profile.ended", count=int(ended))
        elif request.query_params.get("password") == "changed":
            notice = self.pages.translator(request, viewer)("profile.password_changed")
        return self.pages.render(request, viewer, "profile.html", status, user=user, sessions=sessions,
                                 error=error, notice=notice, stamp=_stamp, min_password=MIN_PASSWORD_CHARS)  # fmt: skip

    async def _refused(self, request: Request, error: str, status: int) -> Response:
        return await self.show(request, error, status)

    async def change_password(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert viewer.actor.user_id is not None
            new = str(form.get("new_password", ""))
            if new != str(form.get("confirm_password", "")):
                raise ValidationError("confirm_password", "the two new passwords differ", code="password.mismatch")
            try:
                await self.crm.org.set_password(viewer.actor, viewer.actor.user_id, new,
                                                old_password=str(form.get("old_password", "")))  # fmt: skip
            except Forbidden as exc:  # the current password was wrong: say so on the form
                return await self.show(request, self.pages.refusal(request, viewer, exc), 403)
            # A changed password ends every other session: whoever knew the old one is out.
            ended = await self.pages.sessions.end_others(viewer.session)
            await audit_sessions_ended(self.crm, viewer.actor, viewer.actor.user_id, ended, "others")
            return RedirectResponse("/profile?password=changed", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def end_others(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert viewer.actor.user_id is not None
            ended = await self.pages.sessions.end_others(viewer.session)
            await audit_sessions_ended(self.crm, viewer.actor, viewer.actor.user_id, ended, "others")
            return RedirectResponse(f"/profile?ended={ended}", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def end_all(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert viewer.actor.user_id is not None
            ended = await self.pages.sessions.end_all(viewer.actor.user_id)
            await audit_sessions_ended(self.crm, viewer.actor, viewer.actor.user_id, ended, "all")
            response = self.pages.to_login(request)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        return await self.pages.post_action(request, run, self._refused)
