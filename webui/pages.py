"""The server-rendered pages: sign-in, the workspace, members. Routes stay thin: rules live in
`crm`, which checks permissions and data scope itself; a refusal becomes a 403 page."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crm import audit
from crm.access import Actor
from crm.errors import CrmError, Forbidden, NotFound
from crm.members import MemberQuery
from crm.service import Crm
from webui.api.http import Authenticator
from webui.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginThrottle, Viewer, client_address, csrf_ok
from webui.i18n import LOCALES, Translator, best_locale
from webui.sessions import SESSION_LIFETIME, SessionStore

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
LANG_COOKIE = "cc_lang"
PAGE_SIZE = 20
#: The kinds of records the audit log can be filtered by.
AUDITED_ENTITIES = ("member", "member_note", "points_entry", "ticket", "work_order", "appointment", "order",
                    "catalogue_item", "kb_article", "survey", "return_visit", "call", "user", "role",
                    "department", "setting")


class Pages:
    def __init__(self, crm: Crm, sessions: SessionStore) -> None:
        self.crm = crm
        self.sessions = sessions
        self.throttle = LoginThrottle()
        # Autoescaping everywhere: member names and notes come from users and callers.
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))

    def routes(self) -> list[Any]:
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/lang", self.set_language, methods=["POST"]),
            Route("/members", self.members),
            Route("/members/{member_id:int}", self.member),
            Route("/admin/audit", self.audit_log),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # ------------------------------------------------------------- plumbing

    async def viewer(self, request: Request) -> Viewer | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        session = await self.sessions.get(token)
        if session is None:
            return None
        try:
            actor = await self.crm.org.actor_for_user(session.user_id)
            user = await self.crm.org.get_user(actor, session.user_id)
        except CrmError:
            return None  # the user was deactivated or removed since signing in
        # The header's unread count (站内消息) on every page: one indexed count.
        unread = await self.crm.staff_messages.unread_count(actor)
        return Viewer(actor, session, user.display_name or user.username, unread)

    def translator(self, request: Request, viewer: Viewer | None) -> Translator:
        chosen = viewer.session.locale if viewer else request.cookies.get(LANG_COOKIE)
        return Translator(best_locale(chosen))

    def render(self, request: Request, viewer: Viewer | None, template: str, status: int = 200,
               csrf: str | None = None, **context: Any) -> HTMLResponse:
        t = self.translator(request, viewer)
        html = self.env.get_template(template).render(
            request=request, viewer=viewer, t=t, locales=LOCALES,
            csrf=csrf or (viewer.session.csrf if viewer else ""), **context)
        response = HTMLResponse(html, status_code=status)
        response.headers["Content-Security-Policy"] = "default-src 'self'; script-src 'self' 'unsafe-inline'"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def forbidden(self, request: Request, viewer: Viewer | None) -> HTMLResponse:
        t = self.translator(request, viewer)
        return self.render(request, viewer, "error.html", 403, title=t("error.forbidden.title"),
                           text=t("error.forbidden.text"))

    def not_found(self, request: Request, viewer: Viewer | None) -> HTMLResponse:
        t = self.translator(request, viewer)
        return self.render(request, viewer, "error.html", 404, title=t("error.notfound.title"), text="")

    async def post_action(self, request: Request, run: Callable[[Viewer, FormData], Awaitable[Response]],
                          on_refusal: Callable[[Request, str, int], Awaitable[Response]]) -> Response:
        """A state-changing form post: signed in, CSRF checked, then `run`; a refusal by the
        services becomes the 403/404 page or `on_refusal` with the reason in the user's language."""
        viewer = await self.viewer(request)
        if viewer is None:
            return self.to_login(request)
        form = await request.form()
        if not csrf_ok(viewer.session.csrf, str(form.get("csrf", ""))):
            return self.forbidden(request, viewer)
        try:
            return await run(viewer, form)
        except Forbidden:
            return self.forbidden(request, viewer)
        except NotFound:
            return self.not_found(request, viewer)
        except CrmError as exc:
            return await on_refusal(request, self.refusal(request, viewer, exc), exc.status)

    def refusal(self, request: Request, viewer: Viewer, exc: CrmError) -> str:
        """A service's refusal in the user's language when the catalogue knows its code."""
        t = self.translator(request, viewer)
        key = f"error.{exc.code}"
        text = t(key)
        return text if text != key else str(exc)

    def api_authenticator(self, bearer: Authenticator) -> Authenticator:
        """The REST API's callers: an API token, else the signed-in browser's session. A cookie
        alone never authorises a change: state-changing calls must also carry the session's
        CSRF token in X-CSRF-Token (the page has it)."""

        async def authenticate(request: Request) -> Actor | None:
            actor = await bearer(request)
            if actor is not None:
                return actor
            token = request.cookies.get(SESSION_COOKIE)
            session = await self.sessions.get(token) if token else None
            if session is None:
                return None
            if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_ok(
                    session.csrf, request.headers.get("x-csrf-token")):
                return None
            try:
                return await self.crm.org.actor_for_user(session.user_id)
            except CrmError:
                return None

        return authenticate

    @staticmethod
    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    def _cookie(self, response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")

    # ------------------------------------------------------------- sign-in

    async def login_form(self, request: Request, error: str = "", username: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.render(request, None, "login.html", status, csrf=token, error=error, username=username)
        self._cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        t = self.translator(request, None)
        if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf", ""))):
            return self.render(request, None, "error.html", 403, title=t("error.forbidden.title"), text=t("error.csrf"))
        username = str(form.get("username", "")).strip()[:64]
        password = str(form.get("password", ""))[:256]
        keys = [f"user:{username.lower()}", f"ip:{client_address(request)}"]
        wait = self.throttle.locked_for(keys)
        if wait:
            return await self.login_form(request, t("login.locked", minutes=int(wait // 60) + 1), username, 429)
        address = client_address(request)
        try:
            actor = (await self.crm.org.authenticate(username, password, address=address)
                     if username and password else None)
        except Forbidden:
            # The per-role IP allow-list (crm.networks); audited by the service.
            log.warning("sign-in of %s refused: address %s is not allowed", username, address)
            return await self.login_form(request, t("error.address_not_allowed.text", address=address), username, 403)
        if actor is None or actor.user_id is None:
            self.throttle.failed(keys)
            return await self.login_form(request, t("login.failed"), username, 401)
        self.throttle.succeeded(keys)
        token, _ = await self.sessions.create(actor.user_id, t.locale, address=address,
                                              user_agent=request.headers.get("user-agent", ""))
        response = RedirectResponse("/", status_code=303)
        self._cookie(response, request, SESSION_COOKIE, token, int(SESSION_LIFETIME))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    async def logout(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is not None:
            form = await request.form()
            if not csrf_ok(viewer.session.csrf, str(form.get("csrf", ""))):
                return self.forbidden(request, viewer)
            await self.sessions.end(viewer.session)
        response = self.to_login(request)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def set_language(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        form = await request.form()
        locale = str(form.get("locale", ""))
        if locale not in LOCALES:
            locale = "zh-CN"
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # never an open redirect
        response = RedirectResponse(target, status_code=303)
        if viewer is not None:
            if not csrf_ok(viewer.session.csrf, str(form.get("csrf", ""))):
                return self.forbidden(request, viewer)
            await self.sessions.set_locale(viewer.session, locale)
        self._cookie(response, request, LANG_COOKIE, locale, 365 * 86400)
        return response

    # ------------------------------------------------------------- pages

    async def members(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self.to_login(request)
        q = request.query_params.get("q", "").strip()[:100]
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            offset = 0
        try:
            page = await self.crm.members.search(viewer.actor, MemberQuery(text=q or None), offset=offset, limit=PAGE_SIZE)
        except Forbidden:
            return self.forbidden(request, viewer)
        return self.render(request, viewer, "members.html", q=q, page=page)

    async def member(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self.to_login(request)
        member_id = request.path_params["member_id"]
        try:
            member = await self.crm.members.get(viewer.actor, member_id)
            timeline = await self.crm.timeline.member_timeline(viewer.actor, member_id, limit=50)
        except Forbidden:
            return self.forbidden(request, viewer)
        except NotFound:
            return self.not_found(request, viewer)
        return self.render(request, viewer, "member.html", member=member, timeline=timeline)

    async def audit_log(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if viewer is None:
            return self.to_login(request)
        entity = request.query_params.get("entity") or None
        if entity not in AUDITED_ENTITIES:
            entity = None
        before = request.query_params.get("before", "")
        try:
            entries = await audit.list_entries(self.crm.db, viewer.actor, entity=entity, limit=PAGE_SIZE * 2,
                                               before_id=int(before) if before.isdigit() else None)
        except Forbidden:
            return self.forbidden(request, viewer)
        return self.render(request, viewer, "audit.html", entries=entries, entity=entity or "",
                           entities=AUDITED_ENTITIES)
