"""Running the declared endpoints under Starlette: authentication, request checking, JSON
in and out, and one error shape.

Errors are always `{"error": {"code", "message", "field"?}}`:
- a `CrmError` keeps its status and stable code (404, 409, 422, 403);
- a body that is not JSON is 400 `request.malformed_json`;
- no or a bad credential is 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3);
- an unknown path is 404, a known path with another method 405 with `Allow` (RFC 9110 §15.5.6);
- anything unexpected is logged and answered 500 `internal`, without internals in the message.

Routes sharing a path are served by one Starlette route that dispatches on the method, so a wrong
method gets our JSON 405 rather than Starlette's plain text; static paths are matched before
parametrised ones (`/messages/templates` before `/messages/{message_id}`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from enum import Enum
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from crm.access import Actor
from crm.common import Page
from crm.db import IntegrityError
from crm.errors import CrmError, ValidationError
from crm.service import Crm
from webui.api.registry import Call, Endpoint
from webui.api.validate import check, parse_query

log = logging.getLogger(__name__)

#: A request body larger than this is refused before parsing (the largest legitimate one is a
#: 100,000-character knowledge-base article, at most 400 kB of UTF-8).
MAX_BODY_BYTES = 1_000_000

Authenticator = Callable[[Request], Awaitable[Actor | None]]


def bearer_authenticator(crm: Crm) -> Authenticator:
    """Actors from `Authorization: Bearer <API token>` (RFC 6750 §2.1)."""

    async def authenticate(request: Request) -> Actor | None:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return await crm.tokens.authenticate(credentials.strip())

    return authenticate


def plain(value: Any) -> Any:
    """Records as JSON-ready values: dataclasses to objects, enums to their values, pages to objects."""
    if isinstance(value, Page):
        return {"items": [plain(i) for i in value.items], "total": value.total, "offset": value.offset,
                "limit": value.limit, "total_exact": value.total_exact, "has_more": value.has_more}  # fmt: skip
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def error(status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def unauthenticated(invalid: bool) -> JSONResponse:
    challenge = 'Bearer realm="callcenter"' + (', error="invalid_token"' if invalid else "")
    return error(401, "auth.unauthenticated", "an API token is required (Authorization: Bearer ...)"
                 if not invalid else "the API token is unknown, expired or revoked",
                 headers={"WWW-Authenticate": challenge})  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # RFC 8259 §6: no NaN or Infinity


async def _body(request: Request, endpoint: Endpoint) -> Any:
    if endpoint.body is None:
        return None
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _Malformed(413, "request.too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        value: Any = {}
    else:
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _Malformed(400, "request.malformed_json", f"the body is not JSON: {exc}") from None
    return check(value, endpoint.body, "")


class _Malformed(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _parse(endpoint: Endpoint, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    path = {p.name: parse_query(request.path_params[p.name], p.schema, p.name) for p in endpoint.path_params}
    query: dict[str, Any] = {}
    for param in endpoint.query:
        raw = request.query_params.get(param.name)
        if raw is None or (raw == "" and not param.required):
            if param.required:
                raise ValidationError(param.name, "is required", code="field.required")
            continue
        query[param.name] = parse_query(raw, param.schema, param.name)
    return path, query


async def _run(endpoint: Endpoint, crm: Crm, authenticate: Authenticator, request: Request) -> Response:
    actor: Actor | None = None
    if not endpoint.public:
        presented = "authorization" in request.headers
        actor = await authenticate(request)
        if actor is None:
            return unauthenticated(invalid=presented)
    try:
        path, query = _parse(endpoint, request)
        body = await _body(request, endpoint)
        result = await endpoint.handler(Call(crm, actor, path, query, body, request))
    except _Malformed as exc:
        return error(exc.status, exc.code, exc.message)
    except ValidationError as exc:
        return error(exc.status, exc.code, exc.message, field=exc.field)
    except CrmError as exc:
        # RFC 9110 §11.6.1: a 401 carries a challenge (the login endpoint's wrong password).
        challenge = {"WWW-Authenticate": 'Bearer realm="callcenter"'} if exc.status == 401 else None
        return error(exc.status, exc.code, exc.message, headers=challenge)
    except IntegrityError as exc:
        # A constraint the service did not foresee (a race between two writers): the request clashed.
        log.warning("%s %s refused by a database constraint: %s", request.method, request.url.path, exc)
        return error(409, "crm.constraint", "the change clashes with stored data")
    except Exception:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, "internal", "internal error; the server log has the details")
    if endpoint.status == 204:
        return Response(status_code=204)
    return JSONResponse(plain(result), status_code=endpoint.status)


def _order(path: str) -> tuple[int, ...]:
    # Per segment: literal before parameter, so the first match Starlette finds is the right one.
    return tuple(1 if seg.startswith("{") else 0 for seg in path.strip("/").split("/"))


def build_routes(endpoints: Iterable[Endpoint], crm: Crm, authenticate: Authenticator) -> list[BaseRoute]:
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        methods = by_path.setdefault(endpoint.path, {})
        if endpoint.method in methods:
            raise ValueError(f"{endpoint.method} {endpoint.path} declared twice")
        methods[endpoint.method] = endpoint
    routes: list[BaseRoute] = []
    for path in sorted(by_path, key=lambda p: (len(p.strip("/").split("/")), _order(p), p)):
        routes.append(Route(path, _dispatcher(by_path[path], crm, authenticate),
                            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))  # fmt: skip
    routes.append(Route("/{rest:path}", _not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
    return routes


def _dispatcher(methods: dict[str, Endpoint], crm: Crm, authenticate: Authenticator) -> Callable[[Request], Awaitable[Response]]:
    allow = ", ".join(sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())))

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        endpoint = methods.get(method)
        if endpoint is None:
            return error(405, "request.method_not_allowed", f"{request.method} is not allowed here; use {allow}",
                         headers={"Allow": allow})  # fmt: skip
        return await _run(endpoint, crm, authenticate, request)

    return dispatch


async def _not_found(request: Request) -> Response:
    return error(404, "request.unknown_path", f"no API endpoint at {request.url.path}")
