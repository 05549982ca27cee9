"""JSON Schema (the OpenAPI 3.1 dialect, i.e. JSON Schema 2020-12) for the REST API.

Responses are described from the services' own record types: a frozen dataclass becomes a named
component whose properties come from its type hints, so the document cannot drift from what the
handlers return. Request bodies and query parameters are written by hand with the small builders
below, because they say what a client may send (limits, formats), not what a record holds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import date, datetime
from enum import Enum, IntEnum
from typing import Any, Union

from crm.common import Page

#: Largest integer accepted anywhere: JavaScript's safe integers (RFC 8259 §6 interoperability),
#: far inside SQLite's 64-bit range, so no identifier or amount overflows on the way in.
MAX_INT = 2**53 - 1
ID = {"type": "integer", "minimum": 1, "maximum": MAX_INT}


# -- builders for request schemas -------------------------------------------------------------------
def string(max_length: int, *, min_length: int = 0, enum: list[str] | None = None, fmt: str | None = None,
           nullable: bool = False, description: str | None = None) -> dict[str, Any]:  # fmt: skip
    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if enum is not None:
        schema = {"enum": [*enum, None] if nullable else list(enum)}
    if fmt is not None:
        schema["format"] = fmt
        schema.pop("maxLength", None)
    if description:
        schema["description"] = description
    return schema


def integer(minimum: int = -MAX_INT, maximum: int = MAX_INT, *, nullable: bool = False) -> dict[str, Any]:
    return {"type": ["integer", "null"] if nullable else "integer", "minimum": minimum, "maximum": maximum}


def identifier(*, nullable: bool = False) -> dict[str, Any]:
    return integer(1, MAX_INT, nullable=nullable)


def boolean() -> dict[str, Any]:
    return {"type": "boolean"}


def array(items: dict[str, Any], max_items: int, *, min_items: int = 0) -> dict[str, Any]:
    schema = {"type": "array", "items": items, "maxItems": max_items}
    if min_items:
        schema["minItems"] = min_items
    return schema


def obj(properties: dict[str, dict[str, Any]], *required: str, extra: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


def date_string(*, nullable: bool = False) -> dict[str, Any]:
    return string(10, fmt="date", nullable=nullable)


def datetime_string(*, nullable: bool = False) -> dict[str, Any]:
    return string(40, fmt="date-time", nullable=nullable)


def enum_of(values: type[Enum], *, nullable: bool = False) -> dict[str, Any]:
    return string(64, enum=[str(m.value) for m in values], nullable=nullable)


# -- response schemas from types --------------------------------------------------------------------
class Components:
    """The named schemas of one document, filled as types are described."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def of(self, tp: Any) -> dict[str, Any]:
        """The schema of a Python type used in a service's records."""
        if tp is Any or tp is object:
            return {}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            inner = self.of(options[0]) if len(options) == 1 else {"anyOf": [self.of(a) for a in options]}
            if type(None) not in args:
                return inner
            if set(inner) == {"type"} and isinstance(inner["type"], str):
                return {"type": [inner["type"], "null"]}
            return {"anyOf": [inner, {"type": "null"}]}
        if origin is Page or tp is Page:
            return self._page(args[0] if args else Any)
        if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
            item = args[0] if args else Any
            return {"type": "array", "items": self.of(item)}
        if origin is dict or tp is dict:
            value = args[1] if len(args) == 2 else Any
            return {"type": "object", "additionalProperties": self.of(value)}
        if isinstance(tp, type):
            if issubclass(tp, bool):
                return {"type": "boolean"}
            if issubclass(tp, IntEnum):
                return {"type": "integer", "enum": [int(m) for m in tp]}
            if issubclass(tp, Enum):
                return {"type": "string", "enum": [str(m.value) for m in tp]}
            if issubclass(tp, int):
                return {"type": "integer"}
            if issubclass(tp, float):
                return {"type": "number"}
            if issubclass(tp, str):
                return {"type": "string"}
            if issubclass(tp, datetime):
                return {"type": "string", "format": "date-time"}
            if issubclass(tp, date):
                return {"type": "string", "format": "date"}
            if dataclasses.is_dataclass(tp):
                return self._dataclass(tp)
        raise TypeError(f"no JSON schema for {tp!r}")

    def _page(self, item: Any) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "total", "offset", "limit", "total_exact", "has_more"],
            "properties": {
                "items": {"type": "array", "items": self.of(item)},
                "total": {"type": "integer", "description": "a lower bound when total_exact is false"},
                "offset": {"type": "integer"},
                "limit": {"type": "integer"},
                "total_exact": {"type": "boolean"},
                "has_more": {"type": "boolean"},
            },
        }

    def _dataclass(self, cls: type) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: a record may refer to its own kind
            hints = typing.get_type_hints(cls)
            fields = [f for f in dataclasses.fields(cls)]
            self.schemas[name] = {
                "type": "object",
                "required": [f.name for f in fields],
                "properties": {f.name: self.of(hints[f.name]) for f in fields},
            }
            if cls.__doc__ and not cls.__doc__.startswith(f"{name}("):
                self.schemas[name]["description"] = " ".join(cls.__doc__.split())
        return {"$ref": f"#/components/schemas/{name}"}
