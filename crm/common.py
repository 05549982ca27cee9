"""Small shared pieces of the services: the "not given" marker, pages, and input checks.

Every check raises `ValidationError` naming the field, so bad input from the web UI or an import
file comes back as a clear message and never as a crash deeper down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any, Final, Generic, TypeVar

from crm.errors import ValidationError

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class _Unset:
    """Marks an update argument that was not given (as opposed to None, which clears a field)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()

#: Largest page any listing returns; the UI pages, exports stream.
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    #: Matching records; a lower bound when `total_exact` is false (counting stopped early).
    total: int
    offset: int
    limit: int
    total_exact: bool = True

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset", "must be a non-negative integer")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
    return offset, limit


def text(field: str, value: Any, *, max_length: int, required: bool = True) -> str:
    """Stripped text within `max_length` characters; empty only when not `required`."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be text")
    value = value.strip()
    if required and not value:
        raise ValidationError(field, "is required", code="field.required")
    if len(value) > max_length:
        raise ValidationError(field, f"is longer than {max_length} characters", code="field.too_long")
    if "\x00" in value:
        raise ValidationError(field, "contains a NUL character")
    return value


def optional_text(field: str, value: Any, *, max_length: int) -> str | None:
    cleaned = text(field, value, max_length=max_length, required=False)
    return cleaned or None


# Deliberately loose (RFC 5322 is far wider): one @, a dot in the domain, no blanks.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email(field: str, value: Any) -> str | None:
    cleaned = optional_text(field, value, max_length=254)  # RFC 5321 §4.5.3.1.3 path limit
    if cleaned is None:
        return None
    if not _EMAIL.match(cleaned):
        raise ValidationError(field, f"{cleaned!r} is not an e-mail address", code="email.invalid")
    return cleaned.lower()


def iso_date(field: str, value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValidationError(field, f"{value!r} is not a date (YYYY-MM-DD)", code="date.invalid")


def enum_value(field: str, enum: type[E], value: Any) -> E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
        raise ValidationError(field, f"{value!r} is not one of {allowed}") from None


def positive_int(field: str, value: Any, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be an integer")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValidationError(field, "must be positive")
    return value


def tag_list(field: str, values: Sequence[str] | None, *, max_tags: int = 50, max_length: int = 32) -> list[str]:
    """Distinct, stripped tags in the given order."""
    if values is None:
        return []
    if isinstance(values, str):
        raise ValidationError(field, "must be a list of tags, not one string")
    seen: dict[str, None] = {}
    for raw in values:
        tag = text(field, raw, max_length=max_length)
        seen.setdefault(tag, None)
    if len(seen) > max_tags:
        raise ValidationError(field, f"more than {max_tags} tags")
    return list(seen)
