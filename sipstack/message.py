"""SIP requests and responses: parsing one complete message, checking what
RFC 3261 requires of it, serialising it, and building responses.

The parser is sans-IO: it takes the bytes of one message (a UDP datagram, a
WebSocket message, or what StreamFramer cut from a TCP/TLS stream) and
returns a Request or Response, or raises SipParseError carrying the status
a server answers with. Header values stay raw strings; the structured views
(Via, From, To, CSeq, Contact...) are parsed on first access (by
`sipstack.fields`) and cached until the headers change.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from native.sipscan import find_head_end, is_call_id, serialize_message, split_header_block

from sipstack.errors import SipParseError
from sipstack.fields import (
    MAX_DELTA_SECONDS,
    CSeq,
    bad_request,
    is_rfc1123_date,
    optional_small_int,
    parse_call_id,
    parse_contacts,
    parse_cseq,
    parse_cseq_header,
    parse_expires,
    parse_from,
    parse_max_forwards,
    parse_record_routes,
    parse_routes,
    parse_small_int,
    parse_to,
    parse_vias,
)
from sipstack.headers import WIRE_NAME_TABLE, Headers, has_bad_controls, is_token
from sipstack.identifiers import BRANCH_MAGIC_COOKIE, generate_branch, generate_call_id, generate_tag
from sipstack.status import REASON_PHRASES, reason_phrase
from sipstack.uri import URI_CACHE_SIZE, NameAddr, SipUri, Uri, Via, copy_uri, parse_uri

# CSeq, the reason phrases and the identifier generators live in sipstack.fields,
# sipstack.status and sipstack.identifiers; they are exported from here too, where the
# layers above have always found them.
__all__ = [
    "CSeq",
    "Request",
    "Response",
    "Message",
    "parse_message",
    "make_response",
    "response_for_error",
    "generate_tag",
    "generate_branch",
    "generate_call_id",
    "REASON_PHRASES",
    "MAX_MESSAGE_SIZE",
    "MAX_HEADER_FIELDS",
    "MAX_VIA_COUNT",
    "MAX_LINE_LENGTH",
    "BRANCH_MAGIC_COOKIE",
]

# A UDP datagram cannot carry more than 65,535 bytes (RFC 768 length field),
# so no legitimate message is larger on any transport; a stream peer declaring
# more is trying to make us buffer without bound (answered 513, RFC 3261 §21.5.14).
MAX_MESSAGE_SIZE = 65535
# A real INVITE carries 15-40 fields; proxies add a few each. 256 leaves room for
# long Route sets and Record-Route while bounding the work per message.
MAX_HEADER_FIELDS = 256
# Max-Forwards starts at 70 (RFC 3261 §8.1.1.6) and every proxy adds one Via, so
# a request with more than 70 Via values has looped or been crafted (483).
MAX_VIA_COUNT = 70
# Same bound as Apache's LimitRequestFieldSize (8190) and nginx's large header
# buffer (8k): long enough for any real header field, short enough that one
# line cannot be used to exhaust memory or CPU.
MAX_LINE_LENGTH = 8192

_VERSION_RE = re.compile(r"SIP/(\d{1,4})\.(\d{1,4})", re.IGNORECASE)
# Header lines may carry HTAB; any other control character is malformed.
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The same but for CR and LF, which separate the lines of a header block.
_CTL_IN_BLOCK_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

T = TypeVar("T")

_bad = bad_request


class Message:
    """What requests and responses share: the header views and serialisation.

    Each view is parsed on first access and cached with the Headers' version, so a change
    to the headers is seen; the hot views check the cache inline (one call less per access:
    the stack reads them dozens of times per call)."""

    headers: Headers
    body: bytes
    version: str
    _cache: dict[str, tuple[Headers, int, Any]]

    def _cached(self, key: str, parse: Callable[[Headers], T]) -> T:
        h = self.headers
        entry = self._cache.get(key)
        if entry is not None and entry[0] is h and entry[1] == h._version:
            return entry[2]
        value = parse(h)
        self._cache[key] = (h, h._version, value)
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 §20.8)."""
        entry = self._cache.get("call-id")
        h = self.headers
        if entry is not None and entry[0] is h and entry[1] == h._version:
            return entry[2]
        return self._cached("call-id", parse_call_id)

    @property
    def cseq(self) -> CSeq:
        """The CSeq (RFC 3261 §20.16). Treat the returned object as read-only."""
        entry = self._cache.get("cseq")
        h = self.headers
        if entry is not None and entry[0] is h and entry[1] == h._version:
            return entry[2]
        return self._cached("cseq", parse_cseq_header)

    @property
    def from_addr(self) -> NameAddr:
        """The From header (RFC 3261 §20.20). Read-only: the object is shared with every
        message carrying the same From text (a cache); change the header to change the
        message."""
        entry = self._cache.get("from")
        h = self.headers
        if entry is not None and entry[0] is h and entry[1] == h._version:
            return entry[2]
        return self._cached("from", parse_from)

    @property
    def to_addr(self) -> NameAddr:
        """The To header (RFC 3261 §20.39). Read-only, like from_addr."""
        entry = self._cache.get("to")
        h = self.headers
        if entry is not None and entry[0] is h and entry[1] == h._version:
            return entry[2]
        return self._cached("to", parse_to)

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first (RFC 3261 §20.42)."""
        return list(self._cached("via", parse_vias))

    @property
    def top_via(self) -> Via:
        """The topmost Via value; SipParseError when there is none."""
        entry = self._cache.get("via")
        h = self.headers
        if entry is not None and entry[0] is h and entry[1] == h._version:
            vias = entry[2]
        else:
            vias = self._cached("via", parse_vias)
        if not vias:
            raise _bad("missing Via header")
        return vias[0]

    @property
    def is_wildcard_contact(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 §10.2.2, REGISTER only)."""
        values = self.headers._lookup().get("contact")
        return values is not None and len(values) == 1 and values[0].strip(" \t") == "*"

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value; an empty list for ``*`` or no Contact."""
        return list(self._cached("contact", parse_contacts))

    @property
    def routes(self) -> list[NameAddr]:
        """Every Route value, in order (RFC 3261 §20.34)."""
        return list(self._cached("route", parse_routes))

    @property
    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route value, in order (RFC 3261 §20.30)."""
        return list(self._cached("record-route", parse_record_routes))

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255, RFC 3261 §20.22), None when absent."""
        return self._cached("max-forwards", parse_max_forwards)

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds (RFC 3261 §20.19), None when absent."""
        return self._cached("expires", parse_expires)

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written (media type and parameters)."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.strip(" \t")

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The message as sent on the wire, with a correct Content-Length."""
        start_line = self._start_line()
        if type(self.body) is bytes:
            # All-ASCII text (nearly every message) is copied into the bytes natively.
            wire = serialize_message(start_line, self.headers._fields, self.body)
            if wire is not None:
                return wire
        lines = [start_line]
        length = str(len(self.body))
        wrote_length = False
        for key, name, value in self.headers._fields:
            if key == "content-length":
                if not wrote_length:
                    lines.append(f"Content-Length: {length}")
                    wrote_length = True
                continue
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {length}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


@dataclass(eq=True)
class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    method: str
    uri: Uri
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    _cache: dict[str, tuple[Headers, int, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"


@dataclass(eq=True)
class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    _cache: dict[str, tuple[Headers, int, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


# --- parsing ---------------------------------------------------------------


_LINE_BREAKS = (b"\r", b"\n")


def _check_version(text: str, headers: Headers | None) -> str:
    if text == "SIP/2.0":
        return text
    m = _VERSION_RE.fullmatch(text)
    if m is None:
        raise _bad("malformed SIP-Version", headers)
    if (int(m.group(1)), int(m.group(2))) != (2, 0):
        raise SipParseError("Version Not Supported", 505, headers)
    return "SIP/2.0"


def parse_message(data: bytes) -> Request | Response:
    """Parse one complete SIP message (RFC 3261 §7) and check what §8.1.1
    requires of it. Raises SipParseError carrying the status to answer."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message Too Large", 513)
    if type(data) is not bytes:
        data = bytes(data)  # a bytearray or memoryview: the scanners read bytes
    # RFC 3261 §7.5: CRLFs before the start-line are ignored.
    start = 0
    if data[:1] in _LINE_BREAKS:
        while data[start:start + 1] in _LINE_BREAKS and start < len(data):
            start += 1
    head_end, body_start = find_head_end(data, start)
    if head_end < start:
        if not data[start:].strip():
            raise _bad("empty message")
        raise _bad("header block not terminated by an empty line")
    try:
        head = data[start:head_end].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("header block is not valid UTF-8") from None
    scanned = split_header_block(head, WIRE_NAME_TABLE, MAX_HEADER_FIELDS, MAX_LINE_LENGTH)
    if scanned is None:
        # Not a plain block (folding, bare LF line ends, a control character, a bad name,
        # a limit reached): the full parser finds what is wrong, or unfolds what is legal.
        start_line, headers = _split_header_block(head)
    else:
        start_line, fields, index = scanned
        headers = Headers._from_wire(fields, index)

    message: Request | Response
    if start_line[:4].upper() == "SIP/":
        message = _parse_status_line(start_line, headers)
    else:
        message = _parse_request_line(start_line, headers)

    body = data[body_start:]
    length_values = headers._lookup().get("content-length")
    if length_values:
        if len(length_values) > 1 and len({v.strip(" \t") for v in length_values}) > 1:
            raise _bad("conflicting Content-Length headers", headers)
        length_text = length_values[0].strip(" \t")
        if not length_text.isdigit() or not length_text.isascii() or len(length_text) > 10:
            raise _bad("malformed Content-Length", headers)
        length = int(length_text)
        if length > len(body):
            raise _bad("Content-Length larger than the message body", headers)
        # RFC 3261 §18.3: octets after the declared body are discarded.
        body = body[:length]
    message.body = body
    _validate(message)
    return message


def _split_header_block(head: str) -> tuple[str, Headers]:
    """The start-line and header fields of a header block, every RFC 3261 §7.3 rule
    applied: the reference for native.sipscan.split_header_block and the parser of
    what it leaves alone."""
    crlf = "\r" in head
    lines = head.split("\r\n") if crlf else head.split("\n")
    start_line = lines[0]
    headers = Headers()
    if len(lines) - 1 > MAX_HEADER_FIELDS:
        # Counting physical lines over-counts folded fields; that errs safe.
        raise _bad("too many header fields")
    if crlf and (head.count("\r") != len(lines) - 1 or head.count("\n") != len(lines) - 1):
        raise _bad("bare CR or LF in header block")
    # One scan of the whole block; the rare hit gets a closer look, since
    # controls are legal as quoted-pairs (RFC 4475 §3.1.1.2).
    if _CTL_IN_BLOCK_RE.search(head):
        if _CTL_RE.search(start_line):
            raise _bad("control character in start line")
        if any(has_bad_controls(line) for line in lines[1:]):
            raise _bad("control character in header")
    if len(head) > MAX_LINE_LENGTH and any(len(line) > MAX_LINE_LENGTH for line in lines):
        raise _bad("line too long")

    pending_name: str | None = None
    pending_value = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            # RFC 3261 §7.3.1: a line starting with whitespace continues the
            # previous field; the line break and whitespace become one SP.
            if pending_name is None:
                raise _bad("continuation line before the first header", headers)
            more = line.strip(" \t")
            if more:
                pending_value = f"{pending_value} {more}" if pending_value else more
                if len(pending_value) > MAX_LINE_LENGTH:
                    raise _bad("header value too long", headers)
            continue
        if pending_name is not None and not headers._append_parsed(pending_name, pending_value):
            raise _bad("malformed header name", headers)
        colon = line.find(":")
        if colon <= 0:
            raise _bad("header line without a name and colon", headers)
        pending_name = line[:colon].rstrip(" \t")
        pending_value = line[colon + 1:].strip(" \t")
    if pending_name is not None and not headers._append_parsed(pending_name, pending_value):
        raise _bad("malformed header name", headers)

    return start_line, headers


def _parse_status_line(line: str, headers: Headers) -> Response:
    parts = line.split(" ", 2)
    version = _check_version(parts[0], headers)
    if len(parts) < 2:
        raise _bad("malformed Status-Line", headers)
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise _bad("malformed status code", headers)
    # An empty Reason-Phrase is legal (RFC 4475 §3.1.1.13); a missing SP
    # before it is accepted too.
    reason = parts[2] if len(parts) == 3 else ""
    return Response(int(code), reason, headers, b"", version)


def _parse_request_line(line: str, headers: Headers) -> Request:
    try:
        method, uri, version = _checked_request_line(line)
    except SipParseError as exc:
        exc.headers = headers
        raise
    return Request(method, copy_uri(uri), headers, b"", version)


# Every REGISTER to a registrar, every request within a dialog repeats its Request-Line:
# each distinct line is checked once (the URI is copied for each Request). Same bound as
# the URI caches: new lines from an attacker only churn it.
@functools.lru_cache(maxsize=URI_CACHE_SIZE)
def _checked_request_line(line: str) -> tuple[str, Uri, str]:
    # Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP
    # between the elements and none around them (RFC 4475 §3.1.2.8-10).
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _bad("malformed Request-Line")
    method, uri_text, version_text = parts
    version = _check_version(version_text, None)
    if not is_token(method):
        raise _bad("malformed method")
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        raise _bad(f"malformed Request-URI ({exc.reason.removeprefix('Bad Request: ')})") from None
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI.
        raise _bad("Request-URI must not contain headers")
    return method, uri, version


def _validate(message: Request | Response) -> None:
    """RFC 3261 §8.1.1 mandatory headers, present once and well-formed."""
    h = message.headers
    index = h._index or h._lookup()
    # The views parsed here go straight into the message's cache (as the properties
    # would put them), so nothing is parsed twice. Contact values are only checked: their
    # shared parse is cached by text, and the message's own copy is made when asked for.
    version = h._version
    cache = message._cache
    try:
        cseq = parse_cseq(_one(index, "cseq", "CSeq"))
        cache["cseq"] = (h, version, cseq)
        call_id = _one(index, "call-id", "Call-ID").strip(" \t")
        if not is_call_id(call_id):
            raise _bad("malformed Call-ID")
        cache["call-id"] = (h, version, call_id)
        cache["from"] = (h, version, NameAddr.parse_shared(_one(index, "from", "From")))
        cache["to"] = (h, version, NameAddr.parse_shared(_one(index, "to", "To")))
        values = index.get("max-forwards")
        cache["max-forwards"] = (h, version, None if values is None else optional_small_int(
            h, "max-forwards", "Max-Forwards", 255))
        values = index.get("expires")
        cache["expires"] = (h, version, None if values is None else optional_small_int(
            h, "expires", "Expires", MAX_DELTA_SECONDS))
        vias = parse_vias(h)
        cache["via"] = (h, version, vias)
        if not vias:
            raise _bad("missing Via header")
        if len(vias) > MAX_VIA_COUNT:
            raise SipParseError("Too Many Hops", 483)
        if "contact" in index:
            contacts = h.get_all("Contact")
            if contacts != ["*"]:
                if "*" in contacts:
                    raise _bad("Contact * mixed with other contacts")
                # Every value parses before any expires is looked at: the first error
                # found is the one reported.
                for contact in [NameAddr.parse_shared(value) for value in contacts]:
                    expires = contact.params.get("expires")
                    if expires is not None:
                        parse_small_int(expires, MAX_DELTA_SECONDS, "Contact expires")
            elif (not isinstance(message, Request) and len(index["contact"]) == 1
                  and index["contact"][0].strip(" \t") == "*"):
                raise _bad("Contact * in a response")
        date = index.get("date")
        if date is not None and not is_rfc1123_date(date[0]):
            raise _bad("malformed Date (RFC 3261 §20.17 requires GMT)")
    except SipParseError as exc:
        exc.headers = h
        raise
    if isinstance(message, Request) and cseq.method != message.method:
        raise _bad("CSeq method does not match request method", h)


def _one(index: dict[str, list[str]], key: str, name: str) -> str:
    """The value of a header that must be present exactly once (see fields.single_value)."""
    values = index.get(key)
    if not values:
        raise _bad(f"missing {name} header")
    if len(values) > 1:
        raise _bad(f"more than one {name} header")
    return values[0]


# --- building ----------------------------------------------------------------


# RFC 3261 §8.2.6.2: header fields every response copies from its request (To apart).
_COPIED_TO_RESPONSES = frozenset({"via", "from", "call-id", "cseq"})


def make_response(request: Request, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"") -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6.2: Via (all, in order),
    From, To (with ``to_tag`` added when To has none, never for 100), Call-ID
    and CSeq copied; Timestamp copied into a 100 (§8.2.6.1)."""
    if not 100 <= status <= 699:
        raise ValueError(f"status code out of range: {status}")
    h = Headers()
    copied = h._fields
    for f in request.headers._fields:
        # Fields are (key, canonical name, value): copied as they are.
        key = f[0]
        if key in _COPIED_TO_RESPONSES:
            copied.append(f)
        elif key == "to":
            if to_tag and status != 100 and request.to_addr.tag is None:
                f = (key, f[1], f"{f[2]};tag={to_tag}")
            copied.append(f)
        elif key == "timestamp" and status == 100:
            copied.append(f)
    h._version = len(copied)
    for name, value in headers:
        h.add(name, value)
    if reason is None:
        reason = reason_phrase(status)
    return Response(status, reason, h, body)


def response_for_error(error: SipParseError, *, to_tag: str | None = None) -> Response | None:
    """The response refusing a request that failed to parse, or None when it
    cannot be answered (no well-formed Via to send it along).

    RFC 3261 §8.2.6.2: From, To, Call-ID and CSeq are copied as received,
    even when one of them is what is wrong, so the client can match the
    response; absent ones are left out (RFC 4475 §3.3.1: "ideally, it will
    respond with a 400"). A To that parses and has no tag gets ``to_tag``
    (a fresh one when None).
    Only call this for requests: responses that fail to parse are dropped.
    """
    if error.headers is None or error.status < 400:
        return None
    h = error.headers
    try:
        if not parse_vias(h):
            return None
    except SipParseError:
        return None
    if to_tag is None:
        to_tag = generate_tag()
    out = Headers()
    for value in h.get_fields("Via"):
        out._append_trusted("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = h.get(name)
        if value is None:
            continue
        if name == "To":
            try:
                if NameAddr.parse(value).tag is None:
                    value = f"{value};tag={to_tag}"
            except SipParseError:
                pass
        out._append_trusted(name, value)
    return Response(error.status, error.reason, out)


