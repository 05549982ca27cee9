"""RTP packets as dataclasses (RFC 3550 §5.1), for the Python side: tests, tools and the
WebRTC bridge. The engine parses and rewrites packets natively and never uses this module."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mediacore.errors import MediaError

RTP_VERSION = 2
_FIXED = struct.Struct("!BBHII")


class RtpError(MediaError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    "7-bit payload type."
    sequence_number: int
    "16-bit sequence number, +1 per packet."
    timestamp: int
    "32-bit sampling instant of the first octet, in the codec's clock rate."
    ssrc: int
    "Synchronisation source."
    payload: bytes = b""
    "The codec payload (padding removed)."
    marker: bool = False
    "Profile-defined; for audio, the first packet of a talkspurt (RFC 3551 §4.1)."
    csrc: tuple[int, ...] = ()
    "Contributing sources (at most 15)."
    extension_profile: int | None = None
    "Header extension profile (RFC 3550 §5.3.1, 0xBEDE for RFC 8285 one-byte), None if absent."
    extension: bytes = b""
    "Header extension data, a multiple of 4 octets."

    def serialize(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError("at most 15 CSRCs")
        if len(self.extension) % 4:
            raise RtpError("header extension length must be a multiple of 4 octets")
        has_ext = self.extension_profile is not None
        out = bytearray(
            _FIXED.pack(
                (RTP_VERSION << 6) | (0x10 if has_ext else 0) | len(self.csrc),
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        )
        for csrc in self.csrc:
            out += struct.pack("!I", csrc)
        if has_ext:
            out += struct.pack("!HH", self.extension_profile, len(self.extension) // 4)
            out += self.extension
        out += self.payload
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < _FIXED.size:
            raise RtpError(f"RTP packet too short: {len(data)} octets")
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        offset = _FIXED.size
        count = b0 & 0x0F
        if offset + 4 * count > len(data):
            raise RtpError("CSRC list runs past the end of the packet")
        csrc = struct.unpack_from(f"!{count}I", data, offset)
        offset += 4 * count
        profile = None
        extension = b""
        if b0 & 0x10:
            if offset + 4 > len(data):
                raise RtpError("header extension runs past the end of the packet")
            profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if offset + 4 * words > len(data):
                raise RtpError("header extension runs past the end of the packet")
            extension = bytes(data[offset : offset + 4 * words])
            offset += 4 * words
        end = len(data)
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or offset + padding > len(data):
                raise RtpError("invalid padding length")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(b1 & 0x80),
            csrc=tuple(csrc),
            extension_profile=profile,
            extension=extension,
        )
