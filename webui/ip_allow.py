"""Where a request comes from, and the per-role IP allow-lists (crm.networks) on every request of
a signed-in user.

The client's address is the socket peer. X-Forwarded-For is believed only when the peer is a
configured trusted proxy (`[security] trusted_proxies`, default none): anybody can send the
header, so trusting it from everywhere would let a caller pick the address the allow-list
sees. With trusted proxies, the list is read from the right (the hop nearest to us) and the
first address that is not itself a trusted proxy is the client (the proxies' documented
"rightmost untrusted" rule; the left-hand entries are whatever the client claimed).

The guard checks every HTTP request and WebSocket handshake carrying a session cookie or an API
token: if none of the user's roles allows the address, the answer is a 403 page (JSON under
/api, a refused handshake for WebSockets), logged and audited. Sign-in itself is checked by
crm.org.authenticate. The session is kept: back on an allowed network, it works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from html import escape
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from crm.errors import CrmError, ValidationError
from crm.networks import Network, parse_address, parse_networks, role_allows
from crm.service import Crm
from webui.i18n import LOCALES, Translator, best_locale
from webui.sessions import SessionStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "cc_session"  # = webui.auth.SESSION_COOKIE (auth imports this module, not the reverse)
#: Where a user whose address is refused may still go: sign out, sign in as someone else, the
#: stylesheet of the refusal page, and the probes of monitoring.
OPEN_PATHS = ("/login", "/logout", "/lang", "/static/", "/healthz", "/metrics")
#: A refused user's browser keeps asking (every page, every poll): one audit entry per user and
#: address within this many seconds is enough to see it happened.
AUDIT_INTERVAL = 600.0
#: Bound of the memory of recent audit entries (user, address) -> when.
MAX_REMEMBERED = 10_000
STATE_KEY = "client_address"


class ClientAddress:
    """Reads the client's address out of an ASGI scope, honouring trusted proxies only."""

    def __init__(self, trusted_proxies: Sequence[str] = ()) -> None:
        try:
            self.trusted: tuple[Network, ...] = parse_networks(list(trusted_proxies), field="trusted_proxies")
        except ValidationError as exc:
            raise ValueError(exc.message) from None

    def _is_trusted(self, text: str) -> bool:
        return bool(self.trusted) and role_allows(self.trusted, parse_address(text))

    def of(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        if not self._is_trusted(peer):
            return _normal(peer)
        hops: list[str] = []
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return _normal(hop[:64])
        return _normal(hops[0][:64]) if hops else _normal(peer)


def _normal(text: str) -> str:
    """The canonical form of an IP (::ffff:10.0.0.1 -> 10.0.0.1), anything else unchanged."""
    address = parse_address(text)
    return str(address) if address is not None else text


def address_of(request: Request) -> str:
    """The client address the guard decided on for this request (the peer when unguarded)."""
    state = request.scope.get("state") or {}
    if STATE_KEY in state:
        return str(state[STATE_KEY])
    return _normal(request.client.host) if request.client else ""


class AddressGuard:
    """ASGI middleware enforcing the allow-lists on signed-in requests (see the module doc)."""

    def __init__(self, app: ASGIApp, *, crm: Crm, sessions: SessionStore, addresses: ClientAddress) -> None:
        self.app = app
        self.crm = crm
        self.sessions = sessions
        self.addresses = addresses
        self._audited: dict[tuple[int, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        address = self.addresses.of(scope)
        scope.setdefault("state", {})[STATE_KEY] = address
        path: str = scope.get("path", "")
        if path.startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)  # a WebSocket handshake is no Request
        user_id, locale = await self._user_of(request)
        if user_id is None or await self.crm.org.address_allowed(user_id, address):
            await self.app(scope, receive, send)
            return
        log.warning("refused %s %s for user %d from %s: address not in any of the user's role allow-lists",
                    scope.get("method", "WS"), path, user_id, address)
        await self._audit(user_id, address, path)
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": "address not allowed"})
            return
        response = self._refusal(request, address, locale)
        await response(scope, receive, send)

    async def _user_of(self, request: HTTPConnection) -> tuple[int | None, str | None]:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            session = await self.sessions.get(token)
            if session is not None:
                return session.user_id, session.locale
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secret.strip():
            actor = await self.crm.tokens.authenticate(secret.strip())
            if actor is not None and actor.user_id is not None:
                return actor.user_id, None
        return None, None

    async def _audit(self, user_id: int, address: str, path: str) -> None:
        now = time.monotonic()
        key = (user_id, address)
        last = self._audited.get(key)
        if last is not None and now - last < AUDIT_INTERVAL:
            return
        if len(self._audited) >= MAX_REMEMBERED:
            self._audited = {k: v for k, v in self._audited.items() if now - v < AUDIT_INTERVAL}
        self._audited[key] = now
        try:
            await self.crm.org.record_refused_address(user_id, address, path[:200])
        except CrmError:
            pass  # the user was removed meanwhile: the 403 stands, there is nobody to audit

    def _refusal(self, request: HTTPConnection, address: str, locale: str | None) -> Response:
        t = Translator(best_locale(locale or request.cookies.get("cc_lang")))
        text = t("error.address_not_allowed.text", address=address)
        if request.url.path.startswith("/api"):
            # The REST API's error shape (webui.api.http.error).
            return JSONResponse({"error": {"code": "auth.address_not_allowed", "message": text}}, status_code=403)
        return HTMLResponse(_page(t, text), status_code=403)


def _page(t: Translator, text: str) -> str:
    """A self-contained refusal page: no navigation (the user may not use it from here), a way
    out (sign out) and the address, so the user can tell their administrator."""
    title = escape(t("error.address_not_allowed.title"))
    lang = escape(t.locale if t.locale in LOCALES else "zh-CN")
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f'<link rel="stylesheet" href="/static/app.css"></head><body><main><section class="card narrow">'
            f'<h1>{title}</h1><p role="alert">{escape(text)}</p>'
            f'<p><a href="/login">{escape(t("error.address_not_allowed.other_user"))}</a></p>'
            f"</section></main></body></html>")


def guard_options(crm: Crm, sessions: SessionStore, trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments of the guard for Starlette's Middleware(AddressGuard, **options)."""
    return {"crm": crm, "sessions": sessions, "addresses": ClientAddress(trusted_proxies)}
