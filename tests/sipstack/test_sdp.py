"""SDP parsing and serialisation (RFC 8866); offer/answer is tests/sipstack/test_offer_answer.py."""

from __future__ import annotations

import pytest

from sipstack import sdp
from sipstack.sdp import Direction, MediaDescription, RtpMap, SdpError, parse
from tests.sipstack.sdp_samples import BARESIP_OFFER, CHROME_OFFER, SIPP_OFFER, crlf

# -- parsing and round trip ---------------------------------------------------

def test_parse_sipp_offer_with_static_payload_type():
    desc = parse(SIPP_OFFER.encode())
    assert desc.origin.username == "user1" and desc.origin.sess_id == 53655765
    assert desc.origin.sess_version == 2353687637 and desc.origin.address == "127.0.0.1"
    assert desc.connection == sdp.Connection("IN", "IP4", "127.0.0.1")
    (audio,) = desc.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == ("audio", 6000, "RTP/AVP", ["0"])
    assert audio.rtpmap == {0: RtpMap(0, "PCMU", 8000, 1)}
    assert audio.direction is Direction.SENDRECV
    assert audio.ptime is None and audio.rtcp_port is None


def test_static_payload_types_need_no_rtpmap():
    desc = parse(SIPP_OFFER.replace("a=rtpmap:0 PCMU/8000\r\n", "").replace("RTP/AVP 0\r\n", "RTP/AVP 0 8 9 18\r\n"))
    assert {pt: str(m) for pt, m in desc.media[0].rtpmap.items()} == {
        0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000"}


def test_parse_baresip_offer():
    desc = parse(BARESIP_OFFER)
    assert desc.attributes == [("tool", "baresip 1.0.0")]
    (audio,) = desc.media
    assert audio.formats == ["0", "8", "9", "96", "101"]
    assert audio.rtpmap[96] == RtpMap(96, "opus", 48000, 2)
    assert audio.rtpmap[101] == RtpMap(101, "telephone-event", 8000, 1)
    assert audio.fmtp == {96: "stereo=1;sprop-stereo=1", 101: "0-15"}
    assert audio.rtcp_port == 20007 and audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    assert ("rtcp-rsize", None) in audio.attributes


def test_chrome_offer_keeps_ice_and_dtls_attributes_verbatim():
    desc = parse(CHROME_OFFER)
    audio, data = desc.media
    assert desc.connection is None and audio.connection == sdp.Connection("IN", "IP4", "0.0.0.0")
    assert ("msid-semantic", " WMS 5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11") in desc.attributes
    assert ("ice-ufrag", "Xq8j") in audio.attributes and ("setup", "actpass") in audio.attributes
    assert ("candidate", "1840965416 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1") \
        in audio.attributes
    assert audio.rtpmap[111] == RtpMap(111, "opus", 48000, 2)
    assert data.formats == ["webrtc-datachannel"] and data.proto == "UDP/DTLS/SCTP"
    assert str(desc) == CHROME_OFFER


@pytest.mark.parametrize("text", [SIPP_OFFER, BARESIP_OFFER, CHROME_OFFER])
def test_round_trip_is_exact(text):
    desc = parse(text)
    assert str(desc) == text
    assert desc.to_bytes() == text.encode()
    assert parse(desc.to_bytes()) == desc


def test_every_field_survives_a_round_trip():
    text = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP4 224.2.17.12/127
b=CT:128
t=2873397496 2873404696
r=7d 1h 0 25h
z=2882844526 -1h 2898848070 0
a=recvonly
m=audio 49170/2 RTP/AVP 0
i=voice
b=AS:64
k=prompt
m=video 51372 RTP/AVP 99
c=IN IP4 224.2.17.13/127
a=rtpmap:99 h263-1998/90000
""")
    desc = parse(text)
    assert desc.timing[0].repeats == ["7d 1h 0 25h"]
    assert desc.media[0].num_ports == 2 and desc.media[0].bandwidths == [("AS", 64)]
    # Session-level direction applies where the media section says nothing.
    assert desc.media[0].direction is Direction.RECVONLY
    assert desc.media_direction(desc.media[1]) is Direction.RECVONLY
    assert str(desc) == text


def test_lf_only_and_missing_optional_lines_are_tolerated():
    desc = parse("v=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\n\n")
    assert desc.session_name == "-" and desc.timing == [sdp.Timing(0, 0)]
    assert str(desc).endswith("t=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with v="),
        ("o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "must start with v="),
        ("v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n", "version"),
        ("v=0\r\ns=-\r\nt=0 0\r\n", "no o= line"),
        ("v=0\r\no=- 1 IN IP4 1.2.3.4\r\ns=-\r\n", "o= needs 6 fields"),
        ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n", "sess-id is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4\r\n", "c= needs"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nb=AS\r\n", "b= needs"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=now 0\r\n", "start time is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nr=1d 1h 0\r\n", "r= without"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nx=unknown\r\n", "unknown SDP line type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nthis is not sdp\r\n", "expected <type>=<value>"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP\r\n", "at least one format"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio five RTP/AVP 0\r\n", "port is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "port out of range"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP PCMU\r\n", "payload type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP 0\r\nt=0 0\r\n", "not allowed after m="),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n",
         "malformed a=rtpmap"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=:value\r\n", "attribute name"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n" + "m=audio 0 RTP/AVP 0\r\n" * 65, "m= lines"),
        ("v=0\r\n" + "a=x\r\n" * 20000, "larger than"),
    ],
)
def test_malformed_input_is_a_clear_sdp_error(text, message):
    with pytest.raises(SdpError, match=message):
        parse(text)


def test_sdp_error_is_a_value_error_and_bad_utf8_is_refused():
    assert issubclass(SdpError, ValueError)
    with pytest.raises(SdpError, match="not UTF-8"):
        parse(b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n")


def test_set_direction_replaces_the_attribute():
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"], attributes=[("sendrecv", None), ("ptime", "20")])
    media.set_direction(Direction.INACTIVE)
    assert media.attributes == [("ptime", "20"), ("inactive", None)]
    assert media.direction is Direction.INACTIVE
