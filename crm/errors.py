"""The errors every CRM service raises, each with a stable `code` the web UI translates.

The REST layer maps them to HTTP: NotFound 404, ValidationError 422, Conflict 409,
Forbidden 403, InvalidTransition 409. The English `message` is for logs and API clients; users
see the translation of `code` (e.g. "ticket.invalid_transition" -> 工单状态不允许此操作).
"""

from __future__ import annotations


class CrmError(Exception):
    """Base of all business-rule errors. `code` is stable across releases; `message` is English."""

    status = 400
    default_code = "crm.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class NotFound(CrmError):
    status = 404
    default_code = "crm.not_found"


class ValidationError(CrmError):
    """Input that breaks a rule of the field it was given for."""

    status = 422
    default_code = "crm.invalid"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}", code=code)
        self.field = field

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field}


class Conflict(CrmError):
    """The request is well-formed but clashes with stored data (duplicate key, double booking)."""

    status = 409
    default_code = "crm.conflict"


class Forbidden(CrmError):
    """The actor lacks the permission, or the record is outside the actor's data scope."""

    status = 403
    default_code = "crm.forbidden"


class InvalidTransition(CrmError):
    """The status flow does not allow this action from the record's current status."""

    status = 409
    default_code = "crm.invalid_transition"
