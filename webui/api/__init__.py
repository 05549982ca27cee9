"""The REST API under /api: JSON endpoints over the CRM services, with an OpenAPI 3.1 document.

The composition root mounts it:

    from webui.api import api_routes
    Mount("/api", routes=api_routes(crm))

`api_routes` serves `/api/openapi.json` too; `openapi_document()` builds the same document
without a server (for docs and client generators). Requests authenticate with
`Authorization: Bearer <API token>` (crm.tokens); pass `authenticate=` to accept other credentials
as well (the web UI's cookie session will produce the same `Actor`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from crm.service import Crm
from webui.api import appointments, auth, catalogue, knowledge, members, messaging, reports, surveys, tickets
from webui.api.http import Authenticator, bearer_authenticator, build_routes
from webui.api.openapi import build_document
from webui.api.registry import Section

SECTIONS: tuple[Section, ...] = (
    auth.api, members.api, tickets.api, appointments.api, catalogue.api, surveys.api, knowledge.api, messaging.api,
    reports.api,
)  # fmt: skip


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every endpoint (paths relative to the /api mount)."""
    return build_document(SECTIONS)


def api_routes(crm: Crm, *, authenticate: Authenticator | None = None) -> list[BaseRoute]:
    """The routes to mount under /api. `authenticate` defaults to API tokens (Bearer)."""
    document = openapi_document()

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    endpoints = [endpoint for section in SECTIONS for endpoint in section.endpoints]
    return [Route("/openapi.json", openapi_json), *build_routes(endpoints, crm, authenticate or bearer_authenticator(crm))]


__all__ = ["api_routes", "openapi_document", "Authenticator"]
