"""Call events published on the in-process bus for the layers above (wallboard, CRM timeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acd.cdr import CdrRecord


@dataclass(frozen=True)
class CallStarted:
    """A call entered the system."""

    call_id: str
    caller: str
    callee: str
    at: float


@dataclass(frozen=True)
class CallAnswered:
    call_id: str
    #: The extension (or agent) that answered.
    answered_by: str
    at: float


@dataclass(frozen=True)
class CallEnded:
    call_id: str
    #: One of the CDR dispositions: ANSWERED, NO ANSWER, BUSY, FAILED, CANCELLED.
    disposition: str
    #: "caller", "callee" or "system".
    hangup_side: str
    hangup_cause: str
    duration: float
    billsec: float
    at: float


@dataclass(frozen=True)
class CdrWritten:
    """One CDR row (a call, or one segment of a transferred call) was handed to the database:
    for the CRM's interaction timeline."""

    record: CdrRecord
