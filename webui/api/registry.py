"""The REST API's route table: each endpoint declared once — method, path, parameters, request
and response schema, handler — from which both the Starlette routes and the OpenAPI 3.1
document are built, so the document describes exactly what runs.

Endpoint modules create a `Section` and declare handlers on it:

    api = Section("members", "会员管理")

    @api.get("/members/{member_id}", Member, summary="One member")
    async def get_member(call: Call) -> Member:
        return await call.crm.members.get(call.actor, call.path["member_id"])

Handlers stay thin: they turn the checked request into a service call and return its record.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from webui.api.schema import ID

if TYPE_CHECKING:
    from starlette.requests import Request

    from crm.access import Actor
    from crm.service import Crm

_PATH_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass
class Call:
    """One checked request as a handler sees it."""

    crm: Crm
    #: None only on public endpoints.
    actor: Actor | None
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    request: Request

    @property
    def me(self) -> Actor:
        assert self.actor is not None, "public endpoints have no actor"
        return self.actor


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: Any
    status: int
    query: tuple[Param, ...]
    path_params: tuple[Param, ...]
    body: dict[str, Any] | None
    public: bool
    description: str

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


@dataclass
class Section:
    """The endpoints of one area (one OpenAPI tag)."""

    tag: str
    description: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        response: Any,
        *,
        summary: str,
        status: int = 200,
        query: list[Param] | None = None,
        body: dict[str, Any] | None = None,
        public: bool = False,
        path_params: dict[str, dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint. Path parameters are positive integer ids unless `path_params` says otherwise."""

        def register(handler: Handler) -> Handler:
            names = _PATH_PARAM.findall(path)
            params = tuple(Param(n, (path_params or {}).get(n, ID), True) for n in names)
            self.endpoints.append(Endpoint(
                method=method, path=path, handler=handler, summary=summary, tag=self.tag, response=response,
                status=status, query=tuple(query or ()), path_params=params, body=body, public=public,
                description=(handler.__doc__ or "").strip(),
            ))  # fmt: skip
            return handler

        return register

    def get(self, path: str, response: Any, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, response, **kw)

    def post(self, path: str, response: Any, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, response, **kw)

    def put(self, path: str, response: Any, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, response, **kw)

    def patch(self, path: str, response: Any, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, response, **kw)

    def delete(self, path: str, response: Any, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, response, **kw)


def q(name: str, schema: dict[str, Any], *, required: bool = False, description: str = "") -> Param:
    """A query parameter."""
    return Param(name, schema, required, description)
