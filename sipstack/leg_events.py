"""What a call leg tells its listener (the call in `acd`), and the names of its states: the
vocabulary of INVITE sessions (RFC 3261 §13-15) shared by `sipstack.legs` and whoever listens.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipstack.errors import SipParseError
from sipstack.uri import SipUri

if TYPE_CHECKING:
    from sipstack.legs import Leg


class LegState(enum.Enum):
    CALLING = "calling"        # INVITE sent / received, no answer yet
    EARLY = "early"            # provisional response with a dialog
    ANSWERED = "answered"      # 2xx sent or received
    ENDED = "ended"


class EndCause(enum.Enum):
    """Why a leg ended, in the trade's terms (CDR dispositions are derived from these)."""

    NORMAL = "normal"              # BYE after an answer
    CANCELLED = "cancelled"        # caller gave up before the answer
    BUSY = "busy"                  # 486/600
    NO_ANSWER = "no_answer"        # 408/480/487 or our own timer
    REJECTED = "rejected"          # other 4xx-6xx
    FAILED = "failed"              # transport failure, timeout, no ACK


@dataclass(frozen=True)
class Progress:
    """The far end rings (180) or sends early media (183 with SDP)."""

    status: int
    sdp: bytes


@dataclass(frozen=True)
class Answered:
    sdp: bytes


@dataclass(frozen=True)
class Ended:
    cause: EndCause
    status: int = 0
    reason: str = ""
    #: True when the far end ended it (BYE, CANCEL, error response), False when we did.
    by_remote: bool = True


@dataclass(frozen=True)
class Offer:
    """An in-dialog re-INVITE or UPDATE with SDP: the listener answers with `leg.accept_offer`."""

    sdp: bytes


@dataclass(frozen=True)
class Confirmed:
    """The ACK for our 2xx arrived (the inbound leg is fully up)."""


@dataclass(frozen=True)
class Replaces:
    """RFC 3891 §6.1: the dialog a Replaces names, as its sender sees it."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @classmethod
    def parse(cls, value: str) -> Replaces:
        call_id, *params = (p.strip() for p in value.split(";"))
        fields: dict[str, str] = {}
        for param in params:
            name, _, val = param.partition("=")
            fields[name.strip().lower()] = val.strip()
        if not call_id or "to-tag" not in fields or "from-tag" not in fields:
            raise SipParseError("Bad Request: Replaces needs a Call-ID, to-tag and from-tag")
        return cls(call_id, fields["to-tag"], fields["from-tag"], "early-only" in fields)


@dataclass(frozen=True)
class Refer:
    """RFC 3515: the far end asks us to call `target` (an attended transfer when `replaces`
    names one of its other dialogs). The listener answers with `leg.accept_refer()` (and
    reports progress with `leg.notify_refer`) or `leg.reject_refer(status)`."""

    target: SipUri
    replaces: Replaces | None
    referred_by: str


LegEvent = Progress | Answered | Ended | Offer | Confirmed | Refer
Listener = Callable[["Leg", LegEvent], None]
