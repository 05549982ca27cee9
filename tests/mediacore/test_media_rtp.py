"""RTP packets as dataclasses (RFC 3550 §5.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediacore.rtp import RtpError, RtpPacket

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    extension=st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4]),
)


@given(packets)
def test_serialize_then_parse_is_identity(packet):
    if packet.extension_profile is None:
        packet = RtpPacket(**{**packet.__dict__, "extension": b""})
    assert RtpPacket.parse(packet.serialize()) == packet


def test_fixed_header_layout():
    raw = RtpPacket(8, 0x1234, 0x01020304, 0xCAFEBABE, b"\xd5", marker=True).serialize()
    assert raw == bytes.fromhex("8088 1234 01020304 cafebabe d5".replace(" ", ""))


def test_padding_is_removed():
    raw = RtpPacket(0, 1, 2, 3, b"abc").serialize()
    padded = bytes([raw[0] | 0x20]) + raw[1:] + b"\x00\x02"
    assert RtpPacket.parse(padded).payload == b"abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00", "too short"),
        (bytes([0x40]) + bytes(11), "version 1"),
        (bytes([0x81]) + bytes(11), "CSRC"),
        (bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x01", "extension"),
        (bytes([0xA0]) + bytes(10) + b"\x00\x00", "padding"),
    ],
)
def test_malformed_packets_raise_rtp_error(data, message):
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(data)
