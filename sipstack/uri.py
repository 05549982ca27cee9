"""SIP, SIPS and tel URIs, name-addr values (From, To, Contact, Route...) and
Via values: parsing, canonical serialisation and comparison.

Grammar from RFC 3261 §25.1 (SIP-URI, name-addr, via-parm), RFC 3966 (tel)
and RFC 5118 (IPv6 references). Parsing is linear: fixed character classes,
no backtracking regular expressions.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

from native.sipscan import split_plain_via

from sipstack.errors import SipParseError
from sipstack.headers import (
    find_quote_end,
    format_params,
    is_token,
    parse_params,
    quote,
    split_list,
    unquote,
)

__all__ = [
    "SipUri",
    "TelUri",
    "AbsoluteUri",
    "Uri",
    "parse_uri",
    "copy_uri",
    "NameAddr",
    "Via",
    "parse_host_port",
    "format_host",
]

_ALNUM = "A-Za-z0-9"
_MARK = r"\-_.!~*'()"
_UNRESERVED = _ALNUM + _MARK
# RFC 3261 §25.1 character classes (as regex class bodies).
_USER_CHARS = _UNRESERVED + r"&=+$,;?/"
_PASSWORD_CHARS = _UNRESERVED + r"&=+$,"
_PARAM_CHARS = _UNRESERVED + r"\[\]/:&+$"
_HNV_CHARS = _UNRESERVED + r"\[\]/?:+$"

# Each alternative starts with a distinct character ("%" is in no class), so
# matching is linear.
_USER_RE = re.compile(rf"(?:[{_USER_CHARS}\u0080-\U0010ffff]|%[0-9A-Fa-f]{{2}})+")
_PASSWORD_RE = re.compile(rf"(?:[{_PASSWORD_CHARS}]|%[0-9A-Fa-f]{{2}})*")
_PARAM_RE = re.compile(rf"(?:[{_PARAM_CHARS}]|%[0-9A-Fa-f]{{2}})+")
_HNV_RE = re.compile(rf"(?:[{_HNV_CHARS}]|%[0-9A-Fa-f]{{2}})*")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")

_SAFE_USER = re.compile(rf"[{_USER_CHARS}]*")
_SAFE_PASSWORD = re.compile(rf"[{_PASSWORD_CHARS}]*")
_SAFE_PARAM = re.compile(rf"[{_PARAM_CHARS}]*")
_SAFE_HNV = re.compile(rf"[{_HNV_CHARS}]*")

# hostname = *( domainlabel "." ) toplabel [ "." ]. Underscores are outside the
# grammar but common in real deployments' host names, so they are accepted.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9\-_]*[A-Za-z0-9_])?)*\.?")
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_STRICT_RE = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# absoluteURI as a server meets it: anything printable but separators that end
# a URI in a header (RFC 3986 §2 characters).
_ABSOLUTE_REST_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# RFC 3966: global-number-digits / local-number-digits.
_TEL_GLOBAL_RE = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*")
_TEL_LOCAL_RE = re.compile(r"[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")
_TEL_VISUAL = str.maketrans("", "", "-.()")

_DEFAULT_CHECKED_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _bad(what: str) -> SipParseError:
    return SipParseError(f"Bad Request: {what}")


def _unescape(text: str) -> str:
    """Decode %HH escapes to UTF-8 text; bytes that are not UTF-8 survive as
    surrogates so they re-escape to the same bytes."""
    if "%" not in text:
        return text
    raw = bytearray()
    last = 0
    for m in _PERCENT_RE.finditer(text):
        raw += text[last:m.start()].encode("utf-8", "surrogateescape")
        raw.append(int(m.group(1), 16))
        last = m.end()
    raw += text[last:].encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "surrogateescape")


def _escape(text: str, safe: re.Pattern[str]) -> str:
    if safe.fullmatch(text):
        return text
    out: list[str] = []
    for ch in text:
        if safe.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _small_int_ok(text: str, limit: int) -> bool:
    # Length first: int() of thousands of digits is slow or refused.
    return len(text) <= 5 and text.isdigit() and text.isascii() and int(text) <= limit


def _parse_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 5:
        raise _bad("malformed port")
    port = int(text)
    if port > 65535:
        raise _bad("port out of range")
    return port


# Enough distinct URIs for every phone of a large site; an attacker sending endless new URIs
# only churns the cache, whose entries are small.
URI_CACHE_SIZE = 8192


def _check_host(host: str) -> str:
    """Validate a host (brackets already removed for IPv6) and normalise it."""
    if not host:
        raise _bad("empty host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad("malformed IPv6 address") from None
        return host.lower()
    if _IPV4_STRICT_RE.fullmatch(host):
        return host
    if _IPV4_RE.fullmatch(host):
        raise _bad("malformed IPv4 address")
    if not _HOSTNAME_RE.fullmatch(host):
        raise _bad("malformed host name")
    return host.lower()


@functools.lru_cache(maxsize=URI_CACHE_SIZE)
def parse_host_port(text: str) -> tuple[str, int | None]:
    """Parse ``host[:port]`` where host may be an ``[IPv6]`` reference;
    returns the host without brackets, lower-cased. Cached: a client writes the
    same sent-by in the Via of every request."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad("unterminated IPv6 reference")
        host = text[1:end]
        if ":" not in host:
            raise _bad("malformed IPv6 reference")
        rest = text[end + 1:]
        if not rest:
            return _check_host(host), None
        if rest[0] != ":":
            raise _bad("malformed host and port")
        return _check_host(host), _parse_port(rest[1:])
    host, colon, port = text.partition(":")
    return _check_host(host), (_parse_port(port) if colon else None)


def format_host(host: str) -> str:
    """A host as written in a URI or Via: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def _same_host(a: str, b: str) -> bool:
    if a == b:
        return True
    if ":" in a and ":" in b:
        try:
            return ipaddress.IPv6Address(a) == ipaddress.IPv6Address(b)
        except ValueError:
            return False
    return False


@functools.lru_cache(maxsize=URI_CACHE_SIZE)
def _parse_sip_uri_cached(text: str) -> SipUri:
    return SipUri._parse_uncached(text)


@dataclass
class SipUri:
    """A sip: or sips: URI (RFC 3261 §19.1). ``user`` and ``password`` are
    unescaped, parameter and header names and values too; parameter names are
    lower-cased and a flag parameter (``lr``) has the value None."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        # A phone sends the same few URIs in every message (Request-URI, From, To, Contact):
        # validate each text once and hand out copies, since callers may change theirs.
        u = _parse_sip_uri_cached(text)
        return cls(u.scheme, u.user, u.password, u.host, u.port, dict(u.params), dict(u.headers))

    @classmethod
    def _parse_uncached(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise _bad("not a SIP URI")
        user = password = None
        # RFC 3261 §25.1: "@" appears unescaped only as the end of userinfo.
        at = rest.find("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1:]
            u, pcolon, p = userinfo.partition(":")
            if not _USER_RE.fullmatch(u):
                raise _bad("malformed user part of SIP URI")
            user = _unescape(u)
            if pcolon:
                if not _PASSWORD_RE.fullmatch(p):
                    raise _bad("malformed password in SIP URI")
                password = _unescape(p)
        qmark = rest.find("?")
        header_text = None
        if qmark >= 0:
            header_text = rest[qmark + 1:]
            rest = rest[:qmark]
        hostport, semi, param_text = rest.partition(";")
        host, port = parse_host_port(hostport)
        params: dict[str, str | None] = {}
        if semi:
            for piece in param_text.split(";"):
                name, eq, value = piece.partition("=")
                if not _PARAM_RE.fullmatch(name):
                    raise _bad("malformed SIP URI parameter")
                if eq and not _PARAM_RE.fullmatch(value):
                    raise _bad("malformed SIP URI parameter value")
                params.setdefault(_unescape(name).lower(), _unescape(value) if eq else None)
        headers: dict[str, str] = {}
        if header_text is not None:
            for piece in header_text.split("&"):
                name, eq, value = piece.partition("=")
                if not eq or not name or not _HNV_RE.fullmatch(name) or not _HNV_RE.fullmatch(value):
                    raise _bad("malformed SIP URI header")
                headers.setdefault(_unescape(name), _unescape(value))
        if "ttl" in params:
            ttl = params["ttl"]
            if ttl is None or not _small_int_ok(ttl, 255):
                raise _bad("malformed ttl parameter")
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _SAFE_USER))
            if self.password is not None:
                parts.append(":")
                parts.append(_escape(self.password, _SAFE_PASSWORD))
            parts.append("@")
        parts.append(format_host(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts.append(";" + _escape(name, _SAFE_PARAM))
            if value is not None:
                parts.append("=" + _escape(value, _SAFE_PARAM))
        if self.headers:
            parts.append("?")
            parts.append("&".join(
                f"{_escape(k, _SAFE_HNV)}={_escape(v, _SAFE_HNV)}" for k, v in self.headers.items()))
        return "".join(parts)

    def __hash__(self) -> int:
        return hash((self.scheme, self.user, self.password, self.host, self.port,
                     frozenset(self.params.items()), frozenset(self.headers.items())))

    @property
    def host_port(self) -> str:
        """``host[:port]`` with IPv6 in brackets, e.g. ``[::1]:5060``."""
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def transport(self) -> str:
        """The lower-case ``transport`` parameter; default "udp", "tls" for sips
        (RFC 3263 §4.1)."""
        value = self.params.get("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    @property
    def aor(self) -> str:
        """The address-of-record form: ``scheme:user@host[:port]`` with every
        parameter and header removed (RFC 3261 §10.3 step 5)."""
        user = "" if self.user is None else _escape(self.user, _SAFE_USER) + "@"
        return f"{self.scheme}:{user}{self.host_port}"

    def equivalent(self, other: object) -> bool:
        """URI comparison of RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri):
            return False
        if self.scheme != other.scheme:
            return False
        # Userinfo is case-sensitive; escapes are already decoded.
        if self.user != other.user or self.password != other.password:
            return False
        if not _same_host(self.host, other.host) or self.port != other.port:
            return False
        # user, ttl, method, maddr and transport must match if present in
        # either; other parameters only when present in both.
        for name in _DEFAULT_CHECKED_PARAMS:
            if (name in self.params) != (name in other.params):
                return False
        for name, value in self.params.items():
            if name in other.params:
                theirs = other.params[name]
                if (value is None) != (theirs is None):
                    return False
                if value is not None and theirs is not None and value.lower() != theirs.lower():
                    return False
        # URI header components are never ignored.
        mine = {k.lower(): v for k, v in self.headers.items()}
        ours = {k.lower(): v for k, v in other.headers.items()}
        return mine == ours


@dataclass
class TelUri:
    """A tel: URI (RFC 3966): ``number`` as written (visual separators kept)."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> TelUri:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() != "tel":
            raise _bad("not a tel URI")
        number, semi, param_text = rest.partition(";")
        if not (_TEL_GLOBAL_RE.fullmatch(number) or _TEL_LOCAL_RE.fullmatch(number)):
            raise _bad("malformed telephone number in tel URI")
        params: dict[str, str | None] = {}
        if semi:
            for piece in param_text.split(";"):
                name, eq, value = piece.partition("=")
                if not _PARAM_RE.fullmatch(name) or (eq and not _PARAM_RE.fullmatch(value)):
                    raise _bad("malformed tel URI parameter")
                params.setdefault(name.lower(), value if eq else None)
        return cls(number, params)

    def __str__(self) -> str:
        return "tel:" + self.number + format_params(self.params)

    def __hash__(self) -> int:
        return hash((self.number, frozenset(self.params.items())))

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 §4 comparison)."""
        return self.number.translate(_TEL_VISUAL)

    def equivalent(self, other: object) -> bool:
        """RFC 3966 §4: numbers compared without visual separators, parameters
        compared case-insensitively whatever their order."""
        if not isinstance(other, TelUri):
            return False
        if self.digits.lower() != other.digits.lower():
            return False
        mine = {k: (v.lower() if v else v) for k, v in self.params.items()}
        ours = {k: (v.lower() if v else v) for k, v in other.params.items()}
        return mine == ours


@dataclass
class AbsoluteUri:
    """A URI of any other scheme (http:, urn:, mailto:...), kept as written so
    a server can answer 416 Unsupported URI Scheme."""

    scheme: str
    text: str

    @classmethod
    def parse(cls, text: str) -> AbsoluteUri:
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.fullmatch(scheme) or not _ABSOLUTE_REST_RE.fullmatch(rest):
            raise _bad("malformed URI")
        return cls(scheme.lower(), text)

    def __str__(self) -> str:
        return self.text

    def __hash__(self) -> int:
        return hash((self.scheme, self.text))

    def equivalent(self, other: object) -> bool:
        return isinstance(other, AbsoluteUri) and self.text == other.text


Uri = SipUri | TelUri | AbsoluteUri


def parse_uri(text: str) -> Uri:
    """Parse any URI: sip/sips, tel, or another scheme kept as AbsoluteUri."""
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        return SipUri.parse(text)
    if scheme == "tel":
        return TelUri.parse(text)
    return AbsoluteUri.parse(text)


def _parse_uri_shared(text: str) -> Uri:
    """parse_uri for the shared NameAddr parses: a SIP URI is the cached object itself,
    not a copy (whoever gets a NameAddr of their own gets a copy of its URI then)."""
    scheme = text.partition(":")[0].lower()
    if scheme in ("sip", "sips"):
        return _parse_sip_uri_cached(text)
    if scheme == "tel":
        return TelUri.parse(text)
    return AbsoluteUri.parse(text)


def _display_name_needs_quotes(name: str) -> bool:
    words = name.split(" ")
    return not all(w and is_token(w) for w in words)


@dataclass
class NameAddr:
    """A ``[display-name] <URI> *(;param)`` value (From, To, Contact, Route,
    Record-Route, Refer-To...). ``params`` are the header's parameters (after
    ``>``, or after an addr-spec written without ``<>``, RFC 3261 §20.10)."""

    uri: Uri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3), or None."""
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr or addr-spec value with its header parameters."""
        shared = _parse_name_addr_cached(text)
        return cls(copy_uri(shared.uri), shared.display_name, dict(shared.params))

    @staticmethod
    def parse_shared(text: str) -> NameAddr:
        """Like parse, but the object is shared with every other caller parsing the same
        text (a cache: a phone sends the same From, To and Contact in every message), so it
        must not be changed. For checking a value without paying for a copy."""
        return _parse_name_addr_cached(text)

    @classmethod
    def _parse_uncached(cls, text: str) -> NameAddr:
        s = text.strip(" \t")
        if not s:
            raise _bad("empty address")
        if s[0] == "<":
            # <URI> and header parameters, the usual form: no display name to look for.
            return cls._parse_bracketed(s, None)
        display: str | None = None
        if s[0] == '"':
            end = find_quote_end(s, 0)
            display = unquote(s[:end])
            rest = s[end:].lstrip(" \t")
            if not rest.startswith("<"):
                raise _bad("display name not followed by <URI>")
            return cls._parse_bracketed(rest, display)
        # name-addr when a "<" comes before any ":" (a display name has no
        # colon, an addr-spec starts with a scheme and a colon; a "<" after
        # that is inside a quoted parameter value).
        lt = s.find("<")
        colon = s.find(":")
        if lt >= 0 and (colon < 0 or lt < colon):
            words = s[:lt].split()
            # display-name = *(token LWS): non-ASCII words are accepted too,
            # because user agents send unquoted UTF-8 names.
            for w in words:
                if not (is_token(w) or (not w.isascii() and _relaxed_word(w))):
                    raise _bad("invalid characters in display name")
            if words:
                display = " ".join(words)
            return cls._parse_bracketed(s[lt:], display)
        # addr-spec without <>: the URI cannot contain ";", "," or "?" here,
        # so the first ";" starts the header's parameters (RFC 3261 §20.10).
        uri_text, semi, param_text = s.partition(";")
        uri_text = uri_text.rstrip(" \t")
        if any(c in uri_text for c in ' \t,?"'):
            raise _bad("URI with special characters must be enclosed in <>")
        uri = _parse_uri_shared(uri_text)
        params = parse_params(";" + param_text, "address") if semi else {}
        return cls(uri, None, params)

    @classmethod
    def _parse_bracketed(cls, s: str, display: str | None) -> NameAddr:
        gt = s.find(">")
        if gt < 0:
            raise _bad("missing > after URI")
        uri = _parse_uri_shared(s[1:gt])
        rest = s[gt + 1:]
        params = parse_params(rest, "address") if rest.strip(" \t") else {}
        return cls(uri, display, params)

    @classmethod
    def parse_list(cls, value: str) -> list[NameAddr]:
        """Parse a comma-separated list (Contact, Route, Record-Route...);
        commas inside quotes or ``<>`` do not split."""
        return [cls.parse(part) for part in split_list(value)]

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display_name is not None:
            name = self.display_name
            if name == "" or _display_name_needs_quotes(name):
                name = quote(name)
            out = f"{name} {out}"
        return out + format_params(self.params)


@functools.lru_cache(maxsize=URI_CACHE_SIZE)
def _parse_name_addr_cached(text: str) -> NameAddr:
    return NameAddr._parse_uncached(text)


def copy_uri(uri: Uri) -> Uri:
    """A copy of ``uri`` whose parameters (and headers) can be changed independently."""
    if isinstance(uri, SipUri):
        return SipUri(uri.scheme, uri.user, uri.password, uri.host, uri.port, dict(uri.params),
                      dict(uri.headers))
    if isinstance(uri, TelUri):
        return TelUri(uri.number, dict(uri.params))
    return AbsoluteUri(uri.scheme, uri.text)


def _relaxed_word(word: str) -> bool:
    return all((ord(c) > 127) or is_token(c) for c in word)


_TRANSPORT_CHARS = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


@dataclass
class Via:
    """One via-parm (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;params``.
    ``transport`` is upper-case; ``host`` has no brackets."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        s = text.strip(" \t")
        plain = split_plain_via(s)
        if plain is not None:
            # Written as everybody writes it: one native scan finds every part.
            name, version, transport, sent_by, params = plain
            host, port = parse_host_port(sent_by)
        else:
            name, version, transport, host, port, params = cls._parse_parts(s)
        rport = params.get("rport")
        if rport is not None and not (_small_int_ok(rport, 65535) and int(rport) > 0):
            raise _bad("malformed Via rport")
        ttl = params.get("ttl")
        if ttl is not None and not _small_int_ok(ttl, 255):
            raise _bad("malformed Via ttl")
        return cls(transport.upper(), host, port, params, f"{name.upper()}/{version}")

    @staticmethod
    def _parse_parts(s: str) -> tuple[str, str, str, str, int | None, dict[str, str | None]]:
        """(protocol name, version, transport, host, port, params) of any via-parm."""
        # sent-protocol = protocol-name SLASH protocol-version SLASH transport,
        # SLASH = SWS "/" SWS
        first = s.find("/")
        second = s.find("/", first + 1) if first >= 0 else -1
        if second < 0:
            raise _bad("malformed Via sent-protocol")
        name = s[:first].strip(" \t")
        version = s[first + 1:second].strip(" \t")
        if not is_token(name) or not is_token(version):
            raise _bad("malformed Via sent-protocol")
        rest = s[second + 1:].lstrip(" \t")
        m = _TRANSPORT_CHARS.match(rest)
        if m is None:
            raise _bad("malformed Via transport")
        transport = m.group(0)
        rest = rest[m.end():]
        if not rest or rest[0] not in " \t":
            raise _bad("missing sent-by in Via")
        rest = rest.lstrip(" \t")
        semi = rest.find(";")
        sent_by = (rest if semi < 0 else rest[:semi]).rstrip(" \t")
        # RFC 3261 §25.1 allows LWS around the port colon; nobody sends it,
        # but it is legal.
        if " " in sent_by or "\t" in sent_by:
            if sent_by.startswith("[") or sent_by.count(":") != 1:
                raise _bad("malformed Via sent-by")
            sent_by = "".join(sent_by.split())
        host, port = parse_host_port(sent_by)
        params = parse_params(rest[semi:], "Via") if semi >= 0 else {}
        return name, version, transport, host, port, params

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written in the Via."""
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The value of ``rport`` (RFC 3581), None when absent or valueless."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def has_rport(self) -> bool:
        """True when the Via carries ``rport``, with or without a value."""
        return "rport" in self.params


def parse_via_list(value: str) -> list[Via]:
    """Every via-parm of one Via field value."""
    return [Via.parse(part) for part in split_list(value)]
