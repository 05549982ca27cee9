"""Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3).

Over a stream the end of a message is known only from Content-Length, which
is therefore mandatory there. Between messages a peer may send RFC 5626
§3.5.1 keep-alives: a "ping" is CRLFCRLF (answered by a CRLF "pong"); a lone
CRLF (a pong, or the CRLF that RFC 3261 §7.5 says to ignore before a
start-line) is skipped.

A WebSocket message (RFC 7118) carries exactly one SIP message and goes to
parse_message directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipstack.errors import SipParseError
from sipstack.message import MAX_LINE_LENGTH, MAX_MESSAGE_SIZE

__all__ = ["KeepAlive", "StreamFramer", "is_keepalive_datagram"]

# End of the header block: an empty line (CRLF, or bare LF from lenient peers).
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH_RE = re.compile(rb"(?:content-length|l)[ \t]*:[ \t]*(.*)", re.IGNORECASE)


@dataclass(frozen=True)
class KeepAlive:
    """An RFC 5626 §3.5.1 keep-alive "ping" (CRLFCRLF) received on a stream;
    the transport answers it with a CRLF "pong"."""


_KEEPALIVE = KeepAlive()


def is_keepalive_datagram(data: bytes) -> bool:
    """True for a UDP datagram carrying only CRLFs (or NULs), which user
    agents send to keep NAT bindings open; it is not a SIP message."""
    return bool(data) and not data.strip(b"\r\n\x00 ")


class StreamFramer:
    """Sans-IO framer: ``feed`` bytes as they arrive, get complete messages
    (each the bytes of one message, to give to parse_message) and KeepAlives.
    After it raises SipParseError it stays failed: close the connection."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        # Where to resume looking for the end of the header block.
        self._scan_from = 0
        # Set once the header block is known: total length of the message.
        self._need: int | None = None
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[bytes | KeepAlive] = []
        try:
            while self._next(out):
                pass
        except SipParseError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        return out

    def _next(self, out: list[bytes | KeepAlive]) -> bool:
        """Take one item off the buffer; False when more data is needed."""
        buf = self._buffer
        if self._need is None:
            # Between messages: keep-alives and stray line breaks.
            if buf[:1] in (b"\r", b"\n"):
                if buf.startswith(b"\r\n\r\n"):
                    del buf[:4]
                    out.append(_KEEPALIVE)
                    return True
                if buf.startswith(b"\n"):
                    del buf[:1]
                    return True
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    return False  # maybe the start of a ping: wait
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                    return True
                raise SipParseError("Bad Request: stray CR in stream", 400)
            m = _HEAD_END_RE.search(buf, max(0, self._scan_from - 3))
            if m is None:
                self._scan_from = len(buf)
                if len(buf) > self._max:
                    raise SipParseError("Message Too Large", 513)
                return False
            head_len = m.end()
            length = self._content_length(bytes(buf[:m.start()]))
            self._need = head_len + length
            if self._need > self._max:
                raise SipParseError("Message Too Large", 513)
        if len(buf) < self._need:
            return False
        message = bytes(buf[:self._need])
        del buf[:self._need]
        self._need = None
        self._scan_from = 0
        out.append(message)
        return True

    @staticmethod
    def _content_length(head: bytes) -> int:
        value: bytes | None = None
        lines = head.split(b"\n")
        for i, raw in enumerate(lines[1:], 1):
            line = raw.rstrip(b"\r")
            if len(line) > MAX_LINE_LENGTH:
                raise SipParseError("Bad Request: header line too long", 400)
            m = _CONTENT_LENGTH_RE.match(line)
            if m is None:
                continue
            found = m.group(1)
            # RFC 3261 §7.3.1: the value may continue on folded lines.
            for cont in lines[i + 1:]:
                if cont[:1] not in (b" ", b"\t"):
                    break
                found += b" " + cont.strip()
            found = found.strip()
            if value is not None and found != value:
                raise SipParseError("Bad Request: conflicting Content-Length headers", 400)
            value = found
        if value is None:
            # RFC 3261 §18.3: Content-Length MUST be present over a stream.
            raise SipParseError("Bad Request: missing Content-Length on a stream transport", 400)
        if not value.isdigit() or len(value) > 10:
            raise SipParseError("Bad Request: malformed Content-Length", 400)
        return int(value)
