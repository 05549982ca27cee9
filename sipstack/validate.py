"""Checks a careful UAS or proxy makes on a request that parsed, before
processing it, in the order of RFC 3261 §8.2 and §16.3."""

from __future__ import annotations

from collections.abc import Collection

from sipstack.errors import SipParseError
from sipstack.message import Request, Response, generate_tag, make_response, response_for_error
from sipstack.uri import SipUri, TelUri

__all__ = ["check_request", "SUPPORTED_URI_SCHEMES"]

SUPPORTED_URI_SCHEMES = frozenset({"sip", "sips", "tel"})


def _option_tags(request: Request, name: str) -> list[str]:
    if name not in request.headers:
        return []
    return [tag for v in request.headers.get_all(name) for tag in (t.strip() for t in v.split(",")) if tag]


def _tag(to_tag: str | None) -> str:
    # Drawn only for a refusal: most requests pass and need none.
    return generate_tag() if to_tag is None else to_tag


def check_request(request: Request, *, supported: Collection[str], must_forward: bool = False,
                  to_tag: str | None = None) -> Response | None:
    """The response refusing ``request``, or None when it may proceed.

    - Request-URI scheme other than sip, sips, tel: 416 (RFC 3261 §8.2.2.1, §16.3 step 2).
    - ``must_forward`` and Max-Forwards 0: 483 (§16.3 step 3).
    - Require (and, when forwarding, Proxy-Require) naming option tags not in
      ``supported``: 420 with an Unsupported header listing them (§8.2.2.3,
      §16.3 step 5); never for CANCEL, ignored for ACK.

    The refusal carries ``to_tag`` (a fresh tag when None) in its To header
    unless the request's To already has one (RFC 3261 §8.2.6.2).
    """
    is_ack = request.method == "ACK"
    try:
        if not isinstance(request.uri, (SipUri, TelUri)):
            # RFC 3261 §8.2.2.1 / §16.3: an ACK is never answered.
            return None if is_ack else make_response(request, 416, to_tag=_tag(to_tag))
        if must_forward and request.max_forwards == 0:
            return None if is_ack else make_response(request, 483, to_tag=_tag(to_tag))
        if is_ack or request.method == "CANCEL":
            return None
        wanted = _option_tags(request, "Require")
        if must_forward:
            wanted += _option_tags(request, "Proxy-Require")
        if not wanted:
            return None
        # Option tags are tokens, compared case-insensitively (RFC 3261 §7.3.1).
        known = {t.lower() for t in supported}
        unsupported: list[str] = []
        for tag in wanted:
            if tag.lower() not in known and tag not in unsupported:
                unsupported.append(tag)
        if unsupported:
            return make_response(request, 420, to_tag=_tag(to_tag),
                                 headers=[("Unsupported", ", ".join(unsupported))])
    except SipParseError as exc:
        if is_ack:
            return None
        exc.headers = request.headers
        return response_for_error(exc, to_tag=to_tag)
    return None
