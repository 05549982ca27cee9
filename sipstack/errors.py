"""Exceptions of the SIP stack.

One exception type carries everything a server needs to refuse a malformed
message: the response code, a reason phrase that says what is wrong, and the
header fields that did parse (so the response can still copy Via, From, To,
Call-ID and CSeq, RFC 3261 §8.2.6.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sipstack.headers import Headers

__all__ = ["SipError", "SipParseError"]


class SipError(Exception):
    """Base class of every error raised by the SIP stack."""


def _safe_reason(reason: str) -> str:
    # The reason is written verbatim into a Status-Line (RFC 3261 §25.1,
    # Reason-Phrase): keep it printable ASCII on one line whatever the caller
    # passed, so a peer's bytes echoed into it cannot break the response.
    cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in reason)
    return cleaned[:200]


class SipParseError(SipError):
    """A message (or part of one) is malformed or must be refused.

    ``status`` is the SIP response code to answer a request with: 400 malformed,
    505 bad version, 513 too large, 416 unsupported URI scheme, 420 bad
    extension, 483 too many hops. ``reason`` is usable as the Reason-Phrase.
    ``headers`` holds the header fields that did parse, or None.
    """

    def __init__(self, reason: str, status: int = 400, headers: Headers | None = None) -> None:
        self.reason = _safe_reason(reason)
        self.status = status
        self.headers = headers
        super().__init__(self.reason)

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
