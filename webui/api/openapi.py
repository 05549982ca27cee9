"""The OpenAPI 3.1 document, generated from the declared endpoints (served at /api/openapi.json)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webui.api.registry import Endpoint, Section
from webui.api.schema import Components

API_VERSION = "1.0.0"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable; e.g. ticket.invalid_transition"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the request field at fault, for 422"},
            },
        }
    },
}
_ERROR_STATUSES = {
    "400": "malformed JSON",
    "401": "no or an invalid API token",
    "403": "permission or data scope",
    "404": "no such record",
    "409": "conflict with stored data or the status flow",
    "422": "a field breaks a rule",
}


def _operation(endpoint: Endpoint, components: Components) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": [
            {"name": p.name, "in": "path", "required": True, "schema": p.schema} for p in endpoint.path_params
        ] + [
            {"name": p.name, "in": "query", "required": p.required, "schema": p.schema,
             **({"description": p.description} if p.description else {})}
            for p in endpoint.query
        ],
        "responses": {},
    }  # fmt: skip
    if endpoint.description:
        op["description"] = endpoint.description
    if endpoint.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": endpoint.body}}}
    if endpoint.status == 204:
        op["responses"]["204"] = {"description": "done"}
    else:
        op["responses"][str(endpoint.status)] = {
            "description": "success",
            "content": {"application/json": {"schema": components.of(endpoint.response)}},
        }
    for status, why in _ERROR_STATUSES.items():
        if endpoint.public and status == "403":
            continue
        op["responses"][status] = {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if endpoint.public:
        op["security"] = []
    return op


def build_document(sections: Iterable[Section]) -> dict[str, Any]:
    components = Components()
    components.schemas["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    tags = []
    for section in sections:
        tags.append({"name": section.tag, "description": section.description})
        for endpoint in section.endpoints:
            paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callcenter CRM API",
            "version": API_VERSION,
            "description": "Members, tickets, work orders, appointments, catalogue, surveys, knowledge base, "
            "messaging and reports. Authenticate with `Authorization: Bearer <API token>`.",
        },
        "servers": [{"url": "/api"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API token (cct_...)"}},
        },
        "security": [{"bearer": []}],
    }
