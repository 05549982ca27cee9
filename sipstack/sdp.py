"""SDP (RFC 8866, formerly RFC 4566): the session description as data.

``parse`` turns a session description into dataclasses and ``str()`` turns it
back, CRLF-terminated, keeping every attribute verbatim and in order (ICE,
DTLS, ssrc lines of a WebRTC offer survive a round trip untouched). The
offer/answer rules (RFC 3264) that choose a codec from these live in
``sipstack.offer_answer``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "parse",
]

# A SIP INVITE over UDP keeps its SDP under ~1300 bytes; a browser offer with
# audio, video and simulcast runs to ~10 KiB. 64 KiB accepts every real body
# and bounds the work a hostile one can cause.
MAX_SDP_BYTES = 65536
# Bundled WebRTC offers seldom carry more than a dozen m-lines.
MAX_MEDIA = 64
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`{|}~0-9A-Za-z-]+")
_RTPMAP_RE = re.compile(r"(\d{1,3}) +([^/\s]+)/(\d+)(?:/(\d+))?\s*")


class SdpError(ValueError):
    """A malformed or unusable session description (answer with 400 or 488)."""


class Direction(enum.Enum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, *, send: bool, receive: bool) -> Direction:
        if send:
            return cls.SENDRECV if receive else cls.SENDONLY
        return cls.RECVONLY if receive else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(send=self.receives, receive=self.sends)


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass
class Origin:
    """o= (RFC 8866 §5.2)."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (f"{self.username} {self.sess_id} {self.sess_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass
class Connection:
    """c= (RFC 8866 §5.7); ``address`` keeps any /ttl/count suffix."""

    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class Timing:
    """t= and its r= lines (RFC 8866 §5.9, §5.10); 0 0 means unbounded."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RtpMap:
    """a=rtpmap (RFC 8866 §6.6), or a static payload type (RFC 3551 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.encoding}/{self.clock_rate}{suffix}"


# RFC 3551 §6 table 4 and 5: audio and video payload types usable without a=rtpmap.
# G722's RTP clock is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1), (3, "GSM", 8000, 1), (4, "G723", 8000, 1), (5, "DVI4", 8000, 1),
        (6, "DVI4", 16000, 1), (7, "LPC", 8000, 1), (8, "PCMA", 8000, 1), (9, "G722", 8000, 1),
        (10, "L16", 44100, 2), (11, "L16", 44100, 1), (12, "QCELP", 8000, 1), (13, "CN", 8000, 1),
        (14, "MPA", 90000, 1), (15, "G728", 8000, 1), (16, "DVI4", 11025, 1),
        (17, "DVI4", 22050, 1), (18, "G729", 8000, 1), (25, "CelB", 90000, 1),
        (26, "JPEG", 90000, 1), (28, "nv", 90000, 1), (31, "H261", 90000, 1),
        (32, "MPV", 90000, 1), (33, "MP2T", 90000, 1), (34, "H263", 90000, 1),
    )
}


def _parse_rtpmap(value: str) -> RtpMap:
    match = _RTPMAP_RE.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed a=rtpmap:{value}")
    pt, clock = int(match.group(1)), int(match.group(3))
    if pt > 127 or clock == 0:
        raise SdpError(f"malformed a=rtpmap:{value}")
    channels = int(match.group(4)) if match.group(4) else 1
    return RtpMap(pt, match.group(2), clock, channels or 1)


Attribute = tuple[str, str | None]


def _first(attributes: list[Attribute], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return value
    return None


def _declared_direction(attributes: list[Attribute]) -> Direction | None:
    found = None
    for key, value in attributes:
        if value is None and key in _DIRECTIONS:
            found = _DIRECTIONS[key]
    return found


@dataclass
class MediaDescription:
    """One m= section (RFC 8866 §5.14) with its i=, c=, b=, k= and a= lines."""

    media: str
    port: int
    proto: str
    formats: list[str]
    num_ports: int = 1
    information: str | None = None
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    # The session-level direction, recorded by parse(), which a media-level
    # attribute overrides (RFC 8866 §6.7). Not serialised.
    session_direction: Direction | None = field(default=None, compare=False, repr=False)

    @property
    def rtpmap(self) -> dict[int, RtpMap]:
        """Payload type -> encoding for this m-line: a=rtpmap, else the static table."""
        result: dict[int, RtpMap] = {}
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) in STATIC_PAYLOAD_TYPES:
                result[int(fmt)] = STATIC_PAYLOAD_TYPES[int(fmt)]
        for key, value in self.attributes:
            if key == "rtpmap" and value is not None:
                entry = _parse_rtpmap(value)
                result[entry.payload_type] = entry
        return result

    @property
    def fmtp(self) -> dict[int, str]:
        """Payload type -> format parameters (a=fmtp, RFC 8866 §6.15)."""
        result: dict[int, str] = {}
        for key, value in self.attributes:
            if key == "fmtp" and value:
                pt, _, params = value.partition(" ")
                if pt.isdigit():
                    result[int(pt)] = params.strip()
        return result

    @property
    def direction(self) -> Direction:
        declared = _declared_direction(self.attributes)
        return declared or self.session_direction or Direction.SENDRECV

    @property
    def ptime(self) -> int | None:
        """a=ptime in milliseconds (RFC 8866 §6.4), None if absent or unreadable."""
        value = _first(self.attributes, "ptime")
        try:
            ptime = round(float(value)) if value is not None else None
        except ValueError:
            return None
        return ptime if ptime and ptime > 0 else None

    @property
    def rtcp_port(self) -> int | None:
        """a=rtcp port (RFC 3605), None if absent (RTCP then goes to port + 1)."""
        value = _first(self.attributes, "rtcp")
        if value is None:
            return None
        head = value.split(" ", 1)[0]
        return int(head) if head.isdigit() and int(head) <= 65535 else None

    def set_direction(self, direction: Direction) -> None:
        """Replace any direction attribute by ``direction``."""
        self.attributes = [(k, v) for k, v in self.attributes if not (v is None and k in _DIRECTIONS)]
        self.attributes.append((direction.value, None))

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.num_ports}" if self.num_ports != 1 else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={kind}:{value}" for kind, value in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        return out


@dataclass
class SessionDescription:
    """A whole session description (RFC 8866 §5)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    zone: str | None = None
    key: str | None = None

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None when there is none."""
        return _declared_direction(self.attributes)

    def media_connection(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to ``media``: its own, else the session's (RFC 8866 §5.7)."""
        return media.connection or self.connection

    def media_direction(self, media: MediaDescription) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 8866 §6.7)."""
        return _declared_direction(media.attributes) or self.direction or Direction.SENDRECV

    def lines(self) -> list[str]:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={email}" for email in self.emails)
        out.extend(f"p={phone}" for phone in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={kind}:{value}" for kind, value in self.bandwidths)
        for timing in self.timing:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend(f"r={repeat}" for repeat in timing.repeats)
        if self.zone is not None:
            out.append(f"z={self.zone}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        for media in self.media:
            out.extend(media.lines())
        return out

    def __str__(self) -> str:
        # RFC 8866 §5: lines end with CRLF.
        return "\r\n".join(self.lines()) + "\r\n"

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8")


# ---------------------------------------------------------------------------
# Parsing


def _int_field(text: str, what: str, line: str) -> int:
    if not text.isdigit():
        raise SdpError(f"{what} is not a number in {line!r}")
    return int(text)


def _parse_connection(value: str, line: str) -> Connection:
    fields = value.split()
    if len(fields) != 3:
        raise SdpError(f"c= needs nettype addrtype address: {line!r}")
    return Connection(*fields)


def _parse_bandwidth(value: str, line: str) -> tuple[str, int]:
    kind, sep, amount = value.partition(":")
    if not sep or not kind:
        raise SdpError(f"b= needs bwtype:bandwidth: {line!r}")
    return kind, _int_field(amount.strip(), "bandwidth", line)


def _parse_attribute(value: str, line: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if _TOKEN_RE.fullmatch(name) is None:
        raise SdpError(f"malformed attribute name in {line!r}")
    if name == "rtpmap":
        _parse_rtpmap(rest)
    return (name, rest if sep else None)


def _parse_media(value: str, line: str) -> MediaDescription:
    fields = value.split()
    if len(fields) < 4:
        raise SdpError(f"m= needs media, port, proto and at least one format: {line!r}")
    media, port_text, proto, formats = fields[0], fields[1], fields[2], fields[3:]
    port_part, sep, count_part = port_text.partition("/")
    port = _int_field(port_part, "port", line)
    num_ports = _int_field(count_part, "number of ports", line) if sep else 1
    if port > 65535 or num_ports < 1:
        raise SdpError(f"port out of range in {line!r}")
    if "RTP/" in proto.upper():
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SdpError(f"RTP payload type {fmt!r} is not 0-127 in {line!r}")
    return MediaDescription(media, port, proto, formats, num_ports)


def parse(text: str | bytes) -> SessionDescription:
    """Parse a session description; raises SdpError with the offending line."""
    if isinstance(text, bytes | bytearray | memoryview):
        raw = bytes(text)
        if len(raw) > MAX_SDP_BYTES:
            raise SdpError(f"session description larger than {MAX_SDP_BYTES} bytes")
        try:
            text = raw.decode("utf-8")  # RFC 8866 §5: UTF-8 unless a=charset says otherwise
        except UnicodeDecodeError as exc:
            raise SdpError(f"session description is not UTF-8: {exc}") from None
    elif len(text) > MAX_SDP_BYTES:
        raise SdpError(f"session description larger than {MAX_SDP_BYTES} bytes")

    # RFC 8866 §5: CRLF, but parsers should accept a bare LF too.
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("session description must start with v=")
    origin: Origin | None = None
    session_name: str | None = None
    seen_version = False
    session = SessionDescription(origin=Origin("-", 0, 0, "IN", "IP4", "0.0.0.0"), timing=[])
    current: MediaDescription | None = None
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"expected <type>=<value>: {line!r}")
        kind, value = line[0], line[2:]
        section: SessionDescription | MediaDescription = current or session
        if kind == "a":
            section.attributes.append(_parse_attribute(value, line))
        elif kind == "c":
            if section.connection is not None:
                raise SdpError(f"more than one c= line in a section is not supported: {line!r}")
            section.connection = _parse_connection(value, line)
        elif kind == "b":
            section.bandwidths.append(_parse_bandwidth(value, line))
        elif kind == "i":
            section.information = value
        elif kind == "k":
            section.key = value
        elif kind == "m":
            current = _parse_media(value, line)
            session.media.append(current)
            if len(session.media) > MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} m= lines")
        elif current is not None and kind in "vosuepzrt":
            raise SdpError(f"{kind}= is not allowed after m=: {line!r}")
        elif kind == "v":
            if seen_version or value.strip() != "0":
                raise SdpError(f"unsupported or repeated version line {line!r}")
            seen_version = True
        elif kind == "o":
            fields = value.split()
            if origin is not None or len(fields) != 6:
                raise SdpError(f"o= needs 6 fields and appears once: {line!r}")
            origin = Origin(fields[0], _int_field(fields[1], "sess-id", line),
                            _int_field(fields[2], "sess-version", line), fields[3], fields[4], fields[5])
        elif kind == "s":
            if session_name is not None:
                raise SdpError(f"repeated s= line: {line!r}")
            session_name = value
        elif kind == "u":
            session.uri = value
        elif kind == "e":
            session.emails.append(value)
        elif kind == "p":
            session.phones.append(value)
        elif kind == "t":
            fields = value.split()
            if len(fields) != 2:
                raise SdpError(f"t= needs start and stop times: {line!r}")
            session.timing.append(Timing(_int_field(fields[0], "start time", line),
                                         _int_field(fields[1], "stop time", line)))
        elif kind == "r":
            if not session.timing:
                raise SdpError(f"r= without a preceding t=: {line!r}")
            session.timing[-1].repeats.append(value)
        elif kind == "z":
            session.zone = value
        else:
            # RFC 8866 §5: a parser must reject a description with a type letter it does not know.
            raise SdpError(f"unknown SDP line type {kind!r}: {line!r}")
    if origin is None:
        raise SdpError("session description has no o= line")
    session.origin = origin
    # s= and t= are mandatory, but some gateways omit them; their meaning is
    # unambiguous ("-" and "0 0"), so they are supplied rather than refused.
    session.session_name = session_name if session_name is not None else "-"
    if not session.timing:
        session.timing.append(Timing())
    for media in session.media:
        media.session_direction = session.direction
    return session
