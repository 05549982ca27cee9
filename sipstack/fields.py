"""The header fields the stack itself reads, parsed from a message's Headers: Call-ID, CSeq,
From, To, Via, Contact, Route, Record-Route, Max-Forwards, Expires, Date (RFC 3261 §20).

Each parser takes the Headers and raises SipParseError (400, or the status RFC 3261 names)
when the field is missing, repeated where it may appear once, or malformed. `Message` in
`sipstack.message` caches what they return; `sipstack.message.parse_message` runs them once
to check what §8.1.1 requires of every message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from native.sipscan import is_call_id

from sipstack.errors import SipParseError
from sipstack.headers import Headers, is_token
from sipstack.uri import NameAddr, Via, parse_via_list

__all__ = [
    "CSeq",
    "MAX_CSEQ",
    "MAX_DELTA_SECONDS",
    "bad_request",
    "is_rfc1123_date",
    "parse_call_id",
    "parse_contacts",
    "parse_cseq",
    "parse_cseq_header",
    "parse_expires",
    "parse_from",
    "parse_max_forwards",
    "parse_record_routes",
    "parse_routes",
    "parse_small_int",
    "parse_to",
    "parse_vias",
    "optional_small_int",
    "single_value",
]

# RFC 3261 §8.1.1.5: the CSeq sequence number MUST be less than 2**31.
MAX_CSEQ = 2**31 - 1
# RFC 3261 §20.19 (Expires), §20.10 (Contact expires): delta-seconds up to 2**32-1.
MAX_DELTA_SECONDS = 2**32 - 1

_CSEQ_RE = re.compile(r"(\d+)[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)")
# RFC 3261 §25.1 rfc1123-date; the zone MUST be "GMT" (§20.17).
_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d\d:\d\d:\d\d GMT")


@dataclass
class CSeq:
    """The CSeq header (RFC 3261 §20.16)."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def bad_request(what: str, headers: Headers | None = None) -> SipParseError:
    """The 400 refusing a malformed message, saying what is wrong."""
    return SipParseError(f"Bad Request: {what}", 400, headers)


def parse_cseq(value: str) -> CSeq:
    """A CSeq value (RFC 3261 §20.16: number LWS method)."""
    text = value.strip(" \t")
    number, space, method = text.partition(" ")
    if space and len(number) <= 10 and number.isdigit() and number.isascii() and is_token(method):
        # "1 REGISTER", as written in practice: no regular expression needed.
        if int(number) > MAX_CSEQ:
            raise bad_request("CSeq number out of range")
        return CSeq(int(number), method)
    m = _CSEQ_RE.fullmatch(text)
    if m is None:
        raise bad_request("malformed CSeq")
    digits = m.group(1)
    if len(digits) > 10 or int(digits) > MAX_CSEQ:
        raise bad_request("CSeq number out of range")
    return CSeq(int(digits), m.group(2))


def parse_small_int(value: str, limit: int, name: str) -> int:
    """A non-negative integer field value of at most ``limit`` (delta-seconds, hop counts)."""
    v = value.strip(" \t")
    if not v.isdigit() or not v.isascii() or len(v) > 10 or int(v) > limit:
        raise bad_request(f"malformed or out of range {name}")
    return int(v)


def single_value(h: Headers, key: str, name: str) -> str:
    """The value of a header that must be present exactly once (``key``: its look-up key)."""
    values = (h._index or h._lookup()).get(key)
    if not values:
        raise bad_request(f"missing {name} header")
    if len(values) > 1:
        raise bad_request(f"more than one {name} header")
    return values[0]


def optional_small_int(h: Headers, key: str, name: str, limit: int) -> int | None:
    """A small integer header that may appear at most once; None when absent."""
    values = (h._index or h._lookup()).get(key)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"more than one {name} header")
    return parse_small_int(values[0], limit, name)


def parse_call_id(h: Headers) -> str:
    value = single_value(h, "call-id", "Call-ID").strip(" \t")
    if not is_call_id(value):
        raise bad_request("malformed Call-ID")
    return value


def parse_cseq_header(h: Headers) -> CSeq:
    return parse_cseq(single_value(h, "cseq", "CSeq"))


def parse_from(h: Headers) -> NameAddr:
    """The From value, shared with every caller parsing the same text: not to be changed."""
    return NameAddr.parse_shared(single_value(h, "from", "From"))


def parse_to(h: Headers) -> NameAddr:
    """The To value, shared like parse_from's."""
    return NameAddr.parse_shared(single_value(h, "to", "To"))


def parse_vias(h: Headers) -> list[Via]:
    """Every Via value, topmost first; a field may hold several (RFC 3261 §7.3.1)."""
    out: list[Via] = []
    for value in (h._index or h._lookup()).get("via", ()):
        if "," in value:
            out.extend(parse_via_list(value))
        else:
            # One via-parm: what parse_via_list would find, without splitting.
            value = value.strip()
            if value:
                out.append(Via.parse(value))
    return out


def parse_contacts(h: Headers) -> list[NameAddr]:
    """Every Contact value; an empty list for ``*`` (RFC 3261 §10.2.2) or none."""
    values = h.get_all("Contact")
    if values == ["*"]:
        return []
    if "*" in values:
        raise bad_request("Contact * mixed with other contacts")
    return [NameAddr.parse(v) for v in values]


def parse_routes(h: Headers) -> list[NameAddr]:
    return [NameAddr.parse(v) for v in h.get_all("Route")]


def parse_record_routes(h: Headers) -> list[NameAddr]:
    return [NameAddr.parse(v) for v in h.get_all("Record-Route")]


def parse_max_forwards(h: Headers) -> int | None:
    return optional_small_int(h, "max-forwards", "Max-Forwards", 255)


def parse_expires(h: Headers) -> int | None:
    return optional_small_int(h, "expires", "Expires", MAX_DELTA_SECONDS)


def is_rfc1123_date(value: str) -> bool:
    """True for a Date value as RFC 3261 §20.17 allows it (rfc1123-date in GMT)."""
    return _DATE_RE.fullmatch(value.strip(" \t")) is not None
