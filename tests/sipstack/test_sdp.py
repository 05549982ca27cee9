"""SDP parsing and serialisation (RFC 8866) and offer/answer (RFC 3264)."""

from __future__ import annotations

import pytest

from sipstack import sdp
from sipstack.sdp import (
    Codec,
    Direction,
    MediaDescription,
    NegotiatedMedia,
    RtpMap,
    SdpError,
    build_offer,
    negotiate_answer,
    parse,
    parse_answer,
)


def crlf(text: str) -> str:
    return "\r\n".join(text.strip().splitlines()) + "\r\n"


# SIPp 3.6.1's built-in uac scenario (sipp -sd uac), keywords filled in.
SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# baresip 1.0.0 as captured on this machine (g711, g722, opus modules), plus
# the a=rtcp line (RFC 3605) such clients add when RTCP is not on port + 1.
BARESIP_OFFER = crlf("""
v=0
o=- 2204210468 466723998 IN IP4 192.0.2.2
s=-
c=IN IP4 192.0.2.2
t=0 0
a=tool:baresip 1.0.0
m=audio 20002 RTP/AVP 0 8 9 96 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=rtcp:20007 IN IP4 192.0.2.2
a=ssrc:3811941783 cname:sip:1001@127.0.0.1
a=minptime:20
a=ptime:20
""")

# A browser offer (shape of Chrome's createOffer for audio and a data channel).
CHROME_OFFER = crlf("""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1840965416 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1
a=ice-ufrag:Xq8j
a=ice-pwd:pS1c0m3Lb2o6b9u3YzT4Uq7f
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11 0f8a6c4e-4a65-4a9a-8d7e-1b2c3d4e5f60
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001234567 cname:n3E7rVw1b2Yc4d5e
a=ssrc:1001234567 msid:5c7a7e0e-2f06-4b8a-9d6c-9d7b8d0f3c11 0f8a6c4e-4a65-4a9a-8d7e-1b2c3d4e5f60
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:Xq8j
a=ice-pwd:pS1c0m3Lb2o6b9u3YzT4Uq7f
a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:1
a=sctp-port:5000
a=max-message-size:262144
""")

PCMU = Codec("PCMU", 8000)
PCMA = Codec("PCMA", 8000)
G722 = Codec("G722", 8000)
OPUS = Codec("opus", 48000, 2)


def _answer(offer_text: str, supported=(PCMA, PCMU), **kwargs):
    return negotiate_answer(parse(offer_text), supported, address="127.0.0.1", port=30000,
                            session_id=7, session_version=1, **kwargs)


def _offer_with(direction_line: str = "a=sendrecv", connection: str = "198.51.100.5") -> str:
    return crlf(f"""
v=0
o=alice 1 2 IN IP4 198.51.100.5
s=call
c=IN IP4 {connection}
t=0 0
m=audio 4000 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
{direction_line}
""")


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


# -- offers -----------------------------------------------------------------------

def test_build_offer_assigns_static_and_dynamic_payload_types():
    offer = build_offer("203.0.113.1", 40000, [OPUS, PCMA, PCMU, G722], session_id=42, session_version=3)
    text = str(offer)
    assert text.startswith("v=0\r\no=- 42 3 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\n")
    (audio,) = parse(text).media
    assert audio.port == 40000 and audio.proto == "RTP/AVP"
    # opus takes the first dynamic type; one telephone-event per clock rate.
    assert audio.formats == ["96", "8", "0", "9", "97", "101"]
    assert audio.rtpmap[97] == RtpMap(97, "telephone-event", 48000)
    assert audio.rtpmap[101] == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtp == {97: "0-16", 101: "0-16"}
    assert audio.ptime == 20 and audio.direction is Direction.SENDRECV


def test_build_offer_ipv6_hold_and_bad_arguments():
    offer = build_offer("2001:db8::1", 40000, [PCMU], telephone_event=False, direction=Direction.SENDONLY,
                        session_id=1, session_version=2, ptime=30)
    assert offer.connection == sdp.Connection("IN", "IP6", "2001:db8::1")
    assert offer.media[0].formats == ["0"] and offer.media[0].direction is Direction.SENDONLY
    assert offer.media[0].ptime == 30
    with pytest.raises(ValueError):
        build_offer("1.2.3.4", 0, [PCMU], session_id=1, session_version=1)
    with pytest.raises(ValueError):
        build_offer("1.2.3.4", 4000, [], session_id=1, session_version=1)
    with pytest.raises(ValueError):
        build_offer("1.2.3.4", 4000, [Codec("L16", 16000, payload_type=0), PCMU], session_id=1,
                    session_version=1)


# -- answers (we are the answerer) --------------------------------------------------

def test_answer_picks_our_preferred_codec_in_the_offers_payload_type():
    answer, media = _answer(BARESIP_OFFER, supported=(G722, PCMU, PCMA))
    assert media == NegotiatedMedia(
        remote_address="192.0.2.2", remote_port=20002, codec=Codec("G722", 8000, 1, 9, None),
        telephone_event_pt=101, direction=Direction.SENDRECV, ptime=20, remote_hold=False,
        remote_rtcp_port=20007)
    (audio,) = parse(str(answer)).media
    assert audio.formats == ["9", "101"] and audio.port == 30000
    assert audio.fmtp[101] == "0-15"  # the offerer's events, echoed
    assert audio.direction is Direction.SENDRECV
    assert answer.origin.sess_id == 7 and answer.connection.address == "127.0.0.1"


def test_codec_names_compare_case_insensitively_with_dynamic_numbers():
    offer = crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.9
s=-
c=IN IP4 10.0.0.9
t=0 0
m=audio 7078 RTP/AVP 112 110 100
a=rtpmap:112 OPUS/48000/2
a=rtpmap:110 pcmu/8000
a=rtpmap:100 TELEPHONE-EVENT/8000
""")
    _, media = _answer(offer, supported=(PCMU,))
    assert media.codec == Codec("PCMU", 8000, 1, 110, None)
    assert media.telephone_event_pt == 100
    _, media = _answer(offer, supported=(OPUS, PCMU))
    assert media.codec.payload_type == 112 and media.codec.name == "opus"


def test_opus_answer_prefers_telephone_event_at_the_same_clock_rate():
    answer, media = _answer(CHROME_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), supported=(OPUS,))
    assert media.codec.payload_type == 111 and media.codec.fmtp == "minptime=10;useinbandfec=1"
    assert media.telephone_event_pt == 110
    # The browser's address is 0.0.0.0 here (trickle ICE): reported as a hold.
    assert media.remote_hold is True


def test_no_common_codec_rejects_every_stream():
    answer, media = _answer(BARESIP_OFFER, supported=(Codec("G729", 8000),))
    assert media is None
    assert [(m.media, m.port) for m in answer.media] == [("audio", 0)]
    assert answer.media[0].formats == ["0", "8", "9", "96", "101"]


def test_webrtc_profile_is_rejected_here():
    answer, media = _answer(CHROME_OFFER)
    assert media is None
    assert [(m.media, m.port, m.proto) for m in answer.media] == [
        ("audio", 0, "UDP/TLS/RTP/SAVPF"), ("application", 0, "UDP/DTLS/SCTP")]


def test_video_is_rejected_audio_accepted_with_the_same_number_of_m_lines():
    offer = _offer_with() + "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
    answer, media = _answer(offer)
    assert [(m.media, m.port) for m in answer.media] == [("audio", 30000), ("video", 0)]
    assert media.codec.name == "PCMA" and media.remote_port == 4000
    assert parse(str(answer)).media[1].formats == ["96"]


def test_second_audio_stream_is_rejected():
    offer = _offer_with() + "m=audio 4004 RTP/AVP 0\r\n"
    answer, media = _answer(offer)
    assert [m.port for m in answer.media] == [30000, 0]
    assert media.remote_port == 4000


@pytest.mark.parametrize(
    ("offered", "answered", "hold"),
    [
        ("a=sendrecv", Direction.SENDRECV, False),
        ("a=sendonly", Direction.RECVONLY, True),  # they put us on hold (music on hold to us)
        ("a=inactive", Direction.INACTIVE, True),
        ("a=recvonly", Direction.SENDONLY, False),
        ("", Direction.SENDRECV, False),
    ],
)
def test_answer_direction_follows_rfc3264_section_6_1(offered, answered, hold):
    answer, media = _answer(_offer_with(offered))
    assert media.direction is answered and media.remote_hold is hold
    assert parse(str(answer)).media[0].direction is answered


def test_rfc2543_hold_with_zero_address():
    _, media = _answer(_offer_with("a=sendrecv", connection="0.0.0.0"))
    assert media.remote_hold is True and media.direction is Direction.RECVONLY
    assert media.remote_address == "0.0.0.0"
    _, resumed = _answer(_offer_with("a=sendrecv"))
    assert resumed.remote_hold is False and resumed.direction is Direction.SENDRECV


def test_session_level_direction_and_our_own_direction():
    offer = _offer_with("").replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    _, media = _answer(offer)
    assert media.direction is Direction.RECVONLY and media.remote_hold
    # We hold them: we only send (music on hold).
    answer, media = _answer(_offer_with(), direction=Direction.SENDONLY)
    assert media.direction is Direction.SENDONLY
    _, media = _answer(_offer_with("a=sendonly"), direction=Direction.SENDONLY)
    assert media.direction is Direction.INACTIVE


def test_offer_without_connection_address_is_an_error():
    with pytest.raises(SdpError, match="no c= line"):
        _answer("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n")


# -- answers to our offers (we are the offerer) ----------------------------------------

def test_offer_answer_round_trip_between_two_of_us():
    offer = build_offer("10.0.0.1", 40000, [OPUS, PCMA, PCMU], session_id=1, session_version=1)
    answer, theirs = negotiate_answer(parse(str(offer)), [PCMU, PCMA], address="10.0.0.2", port=50000,
                                      session_id=9, session_version=1)
    ours = parse_answer(offer, parse(str(answer)))
    assert theirs.codec == Codec("PCMU", 8000, 1, 0, None)
    assert ours == NegotiatedMedia("10.0.0.2", 50000, Codec("PCMU", 8000, 1, 0, None), 101,
                                   Direction.SENDRECV, 20, False, None)
    assert theirs.remote_address == "10.0.0.1" and theirs.remote_port == 40000
    assert theirs.telephone_event_pt == 101


def test_parse_answer_direction_is_ours():
    offer = build_offer("10.0.0.1", 40000, [PCMU], direction=Direction.SENDONLY, session_id=1,
                        session_version=2)
    answer, _ = negotiate_answer(offer, [PCMU], address="10.0.0.2", port=50000, session_id=9,
                                 session_version=1)
    ours = parse_answer(offer, answer)
    assert answer.media[0].direction is Direction.RECVONLY
    assert ours.direction is Direction.SENDONLY and ours.remote_hold is False


def test_parse_answer_follows_the_answerers_payload_type_and_order():
    offer = build_offer("10.0.0.1", 40000, [PCMA, PCMU], session_id=1, session_version=1)
    answer = parse(crlf("""
v=0
o=- 5 5 IN IP4 10.0.0.3
s=-
c=IN IP4 10.0.0.3
t=0 0
m=audio 6000 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=rtcp:6009
"""))
    ours = parse_answer(offer, answer)
    assert ours.codec.name == "PCMU" and ours.telephone_event_pt == 101 and ours.remote_rtcp_port == 6009


def test_parse_answer_rejections_and_violations():
    offer = build_offer("10.0.0.1", 40000, [PCMU], session_id=1, session_version=1)
    rejected = parse("v=0\r\no=- 5 5 IN IP4 10.0.0.3\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n")
    assert parse_answer(offer, rejected) is None
    two_lines = parse(str(rejected) + "m=video 0 RTP/AVP 96\r\n")
    with pytest.raises(SdpError, match="m-lines"):
        parse_answer(offer, two_lines)
    foreign = parse("v=0\r\no=- 5 5 IN IP4 10.0.0.3\r\ns=-\r\nc=IN IP4 10.0.0.3\r\nt=0 0\r\n"
                    "m=audio 6000 RTP/AVP 18\r\n")
    with pytest.raises(SdpError, match="no codec from the offer"):
        parse_answer(offer, foreign)


def test_set_direction_replaces_the_attribute():
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"], attributes=[("sendrecv", None), ("ptime", "20")])
    media.set_direction(Direction.INACTIVE)
    assert media.attributes == [("ptime", "20"), ("inactive", None)]
    assert media.direction is Direction.INACTIVE
