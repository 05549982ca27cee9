"""Checking request bodies and query strings against the schemas the OpenAPI document publishes.

A small validator for the subset of JSON Schema our request schemas use (type, enum, minimum,
maximum, minLength, maxLength, format date / date-time, items, minItems, maxItems, properties,
required, additionalProperties, maxProperties, pattern). What it accepts is exactly what the document promises; what it
refuses comes back as a 422 naming the field (`members.phones[2]`), before any service runs.
`date` and `date-time` strings come out as `date` and aware `datetime` objects.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from crm.errors import ValidationError

#: Dates outside these years are typing slips, and far-future instants would overflow the
#: date arithmetic of the services (a booking's end, a due time).
MIN_YEAR = 1900
MAX_YEAR = 2999

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _type_ok(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False  # JSON true is not 1
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _date(field: str, value: str) -> date:
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not a date (YYYY-MM-DD)", code="date.invalid") from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValidationError(field, f"year outside {MIN_YEAR}-{MAX_YEAR}", code="date.out_of_range")
    return parsed


def _datetime(field: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an RFC 3339 date-time", code="date.invalid") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # RFC 3339 §5.6: a date-time carries its offset; a bare local time is ambiguous.
        raise ValidationError(field, "needs a time zone offset (Z or +08:00)", code="date.naive")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise ValidationError(field, f"year outside {MIN_YEAR}-{MAX_YEAR}", code="date.out_of_range")
    return parsed


def check(value: Any, schema: dict[str, Any], field: str) -> Any:
    """`value` if it satisfies `schema` (formats converted), else ValidationError naming `field`."""
    if "enum" in schema:
        if value not in schema["enum"] or isinstance(value, bool) != any(isinstance(e, bool) for e in schema["enum"]):
            allowed = ", ".join("null" if e is None else str(e) for e in schema["enum"])
            raise ValidationError(field, f"must be one of {allowed}")
        return value
    expected = schema.get("type")
    if expected is not None:
        names = [expected] if isinstance(expected, str) else list(expected)
        if not any(_type_ok(value, n) for n in names):
            raise ValidationError(field, f"must be {' or '.join(names)}", code="field.type")
    if value is None:
        return None
    if isinstance(value, str):
        return _string(value, schema, field)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and "integer" in ([expected] if isinstance(expected, str) else expected or []):
            value = int(value)
        if "minimum" in schema and value < schema["minimum"]:
            raise ValidationError(field, f"must be at least {schema['minimum']}", code="field.range")
        if "maximum" in schema and value > schema["maximum"]:
            raise ValidationError(field, f"must be at most {schema['maximum']}", code="field.range")
        return value
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            raise ValidationError(field, f"at most {schema['maxItems']} items", code="field.too_many")
        if len(value) < schema.get("minItems", 0):
            raise ValidationError(field, f"at least {schema['minItems']} items", code="field.required")
        items = schema.get("items", {})
        return [check(v, items, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return _object(value, schema, field)
    return value


def _string(value: str, schema: dict[str, Any], field: str) -> Any:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "is not valid Unicode (lone surrogate)", code="field.encoding") from None
    if len(value) > schema.get("maxLength", len(value)):
        raise ValidationError(field, f"is longer than {schema['maxLength']} characters", code="field.too_long")
    if len(value) < schema.get("minLength", 0):
        raise ValidationError(field, "is required", code="field.required")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        raise ValidationError(field, f"does not match {schema['pattern']}", code="field.pattern")
    fmt = schema.get("format")
    if fmt == "date":
        return _date(field, value)
    if fmt == "date-time":
        return _datetime(field, value)
    return value


def _object(value: dict[str, Any], schema: dict[str, Any], field: str) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    prefix = f"{field}." if field else ""
    if len(value) > schema.get("maxProperties", len(value)):
        raise ValidationError(field, f"at most {schema['maxProperties']} entries", code="field.too_many")
    for name in schema.get("required", []):
        if name not in value:
            raise ValidationError(f"{prefix}{name}", "is required", code="field.required")
    out = {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            out[name] = check(item, properties[name], f"{prefix}{name}")
        elif extra is False:
            raise ValidationError(f"{prefix}{name}", "is not a field of this request", code="field.unknown")
        else:
            out[name] = check(item, extra if isinstance(extra, dict) else {}, f"{prefix}{name}")
    return out


def parse_query(raw: str, schema: dict[str, Any], field: str) -> Any:
    """A query-string value typed by its schema ('true' -> True, '20' -> 20), then checked."""
    expected = schema.get("type")
    names = [expected] if isinstance(expected, str) else list(expected or [])
    value: Any = raw
    if "integer" in names:
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(field, "must be an integer", code="field.type") from None
    elif "boolean" in names:
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValidationError(field, "must be true or false", code="field.type")
        value = lowered in ("true", "1")
    return check(value, schema, field)
