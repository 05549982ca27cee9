"""Header fields: an ordered, case-insensitive multimap, and the value grammar
shared by many fields (comma lists, generic parameters, quoted strings).

RFC 3261 §7.3: field names are case-insensitive and several have a compact
form; fields of the same name may be combined into one comma-separated list
only where the field's grammar is a list (§7.3.1), so splitting is done per
field name, never blindly (Authorization and WWW-Authenticate contain commas
that do not separate values).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from native.sipscan import NameTable, has_controls, parse_plain_params
from native.sipscan import is_token as native_is_token

from sipstack.errors import SipParseError

__all__ = [
    "Headers",
    "canonical_name",
    "has_bad_controls",
    "is_token",
    "parse_params",
    "format_params",
    "split_list",
    "unquote",
    "quote",
    "LIST_HEADERS",
]

# RFC 3261 §7.3.3 and later RFCs (3265, 3515, 3892, 3841, 4028, 4474): compact forms.
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

# Canonical spelling of the names a SIP element meets (RFC 3261 §20 and
# extensions). Unknown names are written as received.
_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Answer-Mode", "Authentication-Info", "Authorization",
    "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-ID",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info",
    "Event", "Expires", "Flow-Timer", "From", "History-Info", "Identity", "Identity-Info",
    "In-Reply-To", "Join", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
    "P-Asserted-Identity", "P-Associated-URI", "P-Called-Party-ID", "P-Charging-Vector",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-Sub",
    "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Resource-Priority", "Retry-After", "Route", "RSeq",
    "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long
# Lookup key of a name: the lower-cased long form.
_KEY: dict[str, str] = {k: v.lower() for k, v in _CANONICAL.items()}
# (key, canonical name) of the known names in the spellings met on the wire (lower case,
# canonical, upper case): the parser's one dict look-up per field, no lower() call for them.
WIRE_NAMES: dict[str, tuple[str, str]] = {
    spelling: (_KEY[spelling.lower()], _CANONICAL[spelling.lower()])
    for low in _CANONICAL
    for spelling in (low, low.upper(), _CANONICAL[low])
}
# The same for the native header splitter, which matches names in any letter case.
WIRE_NAME_TABLE = NameTable({low: (_KEY[low], _CANONICAL[low]) for low in _CANONICAL})

# Fields whose grammar is a comma-separated list (RFC 3261 §7.3.1 allows them to be
# combined into one field, so they must be split to see every value).
LIST_HEADERS: frozenset[str] = frozenset({
    "accept", "accept-contact", "accept-encoding", "accept-language", "accept-resource-priority",
    "alert-info", "allow", "allow-events", "call-info", "contact", "content-encoding",
    "content-language", "diversion", "error-info", "history-info", "in-reply-to",
    "p-asserted-identity", "p-associated-uri", "p-preferred-identity", "path", "proxy-require",
    "reason", "record-route", "reject-contact", "request-disposition", "require",
    "resource-priority", "route", "security-client", "security-server", "security-verify",
    "service-route", "supported", "unsupported", "via", "warning",
})

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
# gen-value = token / host / quoted-string (quoted strings are handled apart):
# token characters plus the brackets and colons of an IPv6 reference.
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return native_is_token(text)


def has_bad_controls(value: str) -> bool:
    """True when ``value`` holds a control character that RFC 3261 §25.1 does
    not allow there: CR and LF never (they would end the field), other
    controls (but HTAB) only as a quoted-pair inside a quoted string."""
    if not has_controls(value):
        return False
    in_quote = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch in "\r\n":
            return True
        if in_quote:
            if ch == "\\":
                if i + 1 < n and value[i + 1] in "\r\n":
                    return True
                i += 2
                continue
            if ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        if ch != "\t" and _CONTROL_RE.match(ch):
            return True
        i += 1
    return False


def _key(name: str) -> str:
    info = WIRE_NAMES.get(name)
    if info is not None:
        return info[0]
    low = name.lower()
    return _KEY.get(low, low)


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms are expanded
    ("i" -> "Call-ID"), unknown names are returned as given."""
    return _CANONICAL.get(name.lower(), name)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), not splitting
    inside quoted strings or ``<...>``. Empty elements are dropped."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip() for part in value.split(",")) if p]
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1  # quoted-pair: the next character is literal
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def unquote(text: str) -> str:
    """The content of a quoted-string (RFC 3261 §25.1), quoted-pairs resolved."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise SipParseError("Bad Request: malformed quoted string")
    inner = text[1:-1]
    if "\\" not in inner:
        if '"' in inner:
            raise SipParseError("Bad Request: malformed quoted string")
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= len(inner):
                raise SipParseError("Bad Request: malformed quoted string")
            out.append(inner[i + 1])
            i += 2
            continue
        if ch == '"':
            raise SipParseError("Bad Request: malformed quoted string")
        out.append(ch)
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """``text`` as a quoted-string: backslash, double quote and control
    characters are written as quoted-pairs (RFC 3261 §25.1); CR and LF,
    which no quoted-pair can carry, become spaces."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    if _CONTROL_RE.search(text):
        text = _CONTROL_RE.sub(lambda m: " " if m.group(0) in "\r\n" else "\\" + m.group(0), text)
    return '"' + text + '"'


def find_quote_end(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``text[start]`` ('"'),
    or raise when it is unterminated."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError("Bad Request: unterminated quoted string")


def parse_params(text: str, what: str = "header") -> dict[str, str | None]:
    """Parse ``;name[=value]`` generic-params (RFC 3261 §25.1, generic-param).

    ``text`` is what follows the value proper, starting at its first ";"
    (leading whitespace allowed). Names are lower-cased; values are kept
    verbatim (a quoted-string keeps its quotes) so they re-serialise exactly.
    """
    plain = parse_plain_params(text)
    if plain is not None:
        # No whitespace, no quotes, nothing empty: the native scanner did it all.
        return plain
    return _parse_params_general(text, what)


def _parse_params_general(text: str, what: str) -> dict[str, str | None]:
    """parse_params for any text, with every rule (LWS, quoted values) and the errors."""
    params: dict[str, str | None] = {}
    s = text.strip()
    if not s:
        return params
    if '"' not in s:
        pieces = s.split(";")
    else:
        pieces = []
        start = 0
        i = 0
        while i < len(s):
            ch = s[i]
            if ch == '"':
                i = find_quote_end(s, i)
                continue
            if ch == ";":
                pieces.append(s[start:i])
                start = i + 1
            i += 1
        pieces.append(s[start:])
    if pieces[0].strip():
        raise SipParseError(f"Bad Request: unexpected text before {what} parameters")
    for piece in pieces[1:]:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if not native_is_token(name):
            raise SipParseError(f"Bad Request: malformed {what} parameter")
        key = name.lower()
        if not eq:
            params.setdefault(key, None)
            continue
        value = value.strip()
        if value.startswith('"'):
            if find_quote_end(value, 0) != len(value):
                raise SipParseError(f"Bad Request: malformed {what} parameter value")
        elif not _GEN_VALUE_RE.fullmatch(value):
            raise SipParseError(f"Bad Request: malformed {what} parameter value")
        params.setdefault(key, value)
    return params


def format_params(params: dict[str, str | None]) -> str:
    """``;name=value`` pairs as written after a header value."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


class Headers:
    """Ordered multimap of header fields, names case-insensitive with compact
    forms expanded. Iteration yields ``(canonical_name, value)`` per field in
    the order received or added."""

    __slots__ = ("_fields", "_version", "_index")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Each field is (lookup key, canonical name, value).
        self._fields: list[tuple[str, str, str]] = []
        # Bumped on every change so messages can cache what they parsed.
        self._version = 0
        # Lookup key -> values, built on first lookup, dropped on change.
        self._index: dict[str, list[str]] | None = None
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_wire(cls, fields: list[tuple[str, str, str]], index: dict[str, list[str]]) -> Headers:
        """Headers as native.sipscan split them off the wire: ``fields`` as in ``_fields``
        and their look-up index, both already built (and then owned by the new object)."""
        h = cls.__new__(cls)
        h._fields = fields
        h._version = len(fields)
        h._index = index
        return h

    @staticmethod
    def _check(name: str, value: str) -> None:
        # A CR or LF in a value would let a caller inject header fields.
        if name not in WIRE_NAMES and not native_is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if has_bad_controls(value):
            raise ValueError(f"control character in the value of header {name}")

    def _append_trusted(self, name: str, value: str) -> None:
        """Add a field whose name and value the caller already checked."""
        info = WIRE_NAMES.get(name)
        if info is None:
            low = name.lower()
            info = (_KEY.get(low, low), _CANONICAL.get(low, name))
        self._append_field((info[0], info[1], value))

    def _append_field(self, field: tuple[str, str, str]) -> None:
        """Add a ``(key, canonical name, value)`` field, keeping the index if there is one."""
        self._fields.append(field)
        self._version += 1
        index = self._index
        if index is not None:
            values = index.get(field[0])
            if values is None:
                index[field[0]] = [field[2]]
            else:
                values.append(field[2])

    def _append_parsed(self, name: str, value: str) -> bool:
        """Add a field read off the wire (value already checked); False when
        the name is not a token."""
        low = name.lower()
        key = _KEY.get(low)
        if key is None:
            if not native_is_token(name):
                return False
            key = low
        self._fields.append((key, _CANONICAL.get(low, name), value))
        self._version += 1
        self._index = None
        return True

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._fields:
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
            self._index = index
        return index

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        # _check and _append_trusted inlined: the stack adds a few dozen fields per call.
        info = WIRE_NAMES.get(name)
        if info is None:
            if not native_is_token(name):
                raise ValueError(f"invalid header name {name!r}")
            low = name.lower()
            info = (_KEY.get(low, low), _CANONICAL.get(low, name))
        if has_controls(value) and has_bad_controls(value):
            raise ValueError(f"control character in the value of header {name}")
        self._append_field((info[0], info[1], value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first field of that name (or at the top):
        where a proxy puts its Via (RFC 3261 §16.6 step 8)."""
        self._check(name, value)
        key = _key(name)
        index = next((i for i, f in enumerate(self._fields) if f[0] == key), 0)
        self._fields.insert(index, (key, canonical_name(name), value))
        self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one, at the first one's position
        (appended when there was none)."""
        self._check(name, value)
        key = _key(name)
        new = (key, canonical_name(name), value)
        fields: list[tuple[str, str, str]] = []
        placed = False
        for f in self._fields:
            if f[0] == key:
                if not placed:
                    fields.append(new)
                    placed = True
            else:
                fields.append(f)
        if not placed:
            fields.append(new)
        self._fields = fields
        self._changed()

    def remove(self, name: str) -> None:
        """Remove every field of that name (no error when absent)."""
        key = _key(name)
        self._fields = [f for f in self._fields if f[0] != key]
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._index = None

    def get(self, name: str) -> str | None:
        """The value of the first field of that name, or None."""
        index = self._index
        if index is None:
            index = self._lookup()
        values = index.get(_key(name))
        return values[0] if values else None

    def get_fields(self, name: str) -> list[str]:
        """The value of every field of that name, unsplit."""
        index = self._index
        if index is None:
            index = self._lookup()
        return list(index.get(_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        """Every value of that name, splitting comma-separated lists for the
        fields whose grammar is a list (RFC 3261 §7.3.1)."""
        key = _key(name)
        index = self._index
        if index is None:
            index = self._lookup()
        values = index.get(key, ())
        if key not in LIST_HEADERS:
            return list(values)
        out: list[str] = []
        for v in values:
            out.extend(split_list(v))
        return out

    def count(self, name: str) -> int:
        """How many fields of that name there are (not values)."""
        return len(self._lookup().get(_key(name), ()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        index = self._index
        if index is None:
            index = self._lookup()
        return _key(name) in index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._fields:
            yield name, value

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(f[0], f[2]) for f in self._fields] == [(f[0], f[2]) for f in other._fields]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Headers:
        """An independent copy."""
        new = Headers()
        new._fields = list(self._fields)
        return new

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._fields]!r})"
