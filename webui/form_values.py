"""Reading typed values out of HTML form fields, with the field named in the error.

Browsers send `<input type="datetime-local">` as `YYYY-MM-DDTHH:MM` without a zone: it is a
wall-clock time at the site, so it is read in the site's time zone (the CRM clock's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData, ImmutableMultiDict

from crm.errors import ValidationError


def local_datetime(form: FormData, field: str, tz: ZoneInfo, *, required: bool = True) -> datetime | None:
    raw = str(form.get(field, "")).strip()
    if not raw:
        if required:
            raise ValidationError(field, "is required", code="field.required")
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(field, f"{raw[:40]!r} is not a date and time", code="date.invalid") from None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def optional_id(form: FormData, field: str) -> int | None:
    raw = str(form.get(field, "")).strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValidationError(field, "is not a valid choice")
    return int(raw)


def ids(form: FormData, field: str) -> list[int]:
    out = []
    for raw in form.getlist(field):
        text = str(raw).strip()
        if not text.isdigit() or len(text) > 18:
            raise ValidationError(field, "is not a valid choice")
        out.append(int(text))
    return out


def checked(form: ImmutableMultiDict[str, Any], field: str) -> bool:
    """A checkbox (a form's or a query string's): present with a true value."""
    return str(form.get(field, "")) in ("1", "on", "true", "yes")
