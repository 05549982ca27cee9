"""Offer/answer (RFC 3264) for one audio stream: which codec we accept and how we answer,
what we offer, and what an answer to our offer means."""

from __future__ import annotations

import pytest

from sipstack import sdp
from sipstack.offer_answer import (
    Codec,
    NegotiatedMedia,
    assign_payload_types,
    build_answer,
    build_offer,
    negotiate_answer,
    parse_answer,
    select_media,
)
from sipstack.sdp import Direction, RtpMap, SdpError, parse
from tests.sipstack.sdp_samples import BARESIP_OFFER, CHROME_OFFER, crlf

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

def test_answer_takes_the_offerers_first_codec_we_support_in_its_payload_type():
    answer, media = _answer(BARESIP_OFFER, supported=(G722, PCMA))
    assert media == NegotiatedMedia(
        remote_address="192.0.2.2", remote_port=20002, codec=Codec("PCMA", 8000, 1, 8, None),
        telephone_event_pt=101, direction=Direction.SENDRECV, ptime=20, remote_hold=False,
        remote_rtcp_port=20007)
    (audio,) = parse(str(answer)).media
    assert audio.formats == ["8", "101"] and audio.port == 30000
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
    # Opus was offered first but is not supported by the answerer: PCMA is the next choice.
    assert theirs.codec == Codec("PCMA", 8000, 1, 8, None)
    assert ours == NegotiatedMedia("10.0.0.2", 50000, Codec("PCMA", 8000, 1, 8, None), 101,
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




# -- the codecs of a contact-center leg (G.711, Opus, L16) ------------------------------

OUR_OPUS = Codec("opus", 48000, 2, fmtp="maxplaybackrate=8000;sprop-maxcapturerate=8000")
L16_WIDE = Codec("L16", 16000)
OURS = (PCMU, PCMA, OUR_OPUS, L16_WIDE, Codec("L16", 8000), Codec("L16", 48000))


def _audio_offer(formats: str, *lines: str) -> str:
    body = "\n".join(lines)
    return crlf(f"""
v=0
o=- 1 1 IN IP4 192.0.2.7
s=-
c=IN IP4 192.0.2.7
t=0 0
m=audio 5004 RTP/AVP {formats}
{body}
""")


OPUS_FIRST = _audio_offer("111 0 101 110", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1;stereo=1",
                          "a=rtpmap:101 telephone-event/48000", "a=rtpmap:110 telephone-event/8000")


def test_an_offer_of_opus_then_pcmu_is_answered_in_opus_the_callers_first_choice():
    answer, media = negotiate_answer(parse(OPUS_FIRST), OURS, address="10.0.0.1", port=30000, session_id=1,
                                     session_version=1)
    assert media.codec == Codec("opus", 48000, 2, 111, "useinbandfec=1;stereo=1")   # the peer's fmtp
    # RFC 4733 §2.1: events at the codec's clock, 48000 for Opus, not the 8000 ones.
    assert media.telephone_event_pt == 101
    (audio,) = parse(str(answer)).media
    assert audio.formats == ["111", "101"]
    assert str(audio.rtpmap[111]) == "opus/48000/2"                  # RFC 7587 §7
    # RFC 7587 §6.1: the answer's fmtp says what we receive, not an echo of theirs.
    assert audio.fmtp[111] == "maxplaybackrate=8000;sprop-maxcapturerate=8000"


def test_an_offer_of_pcmu_then_opus_is_answered_in_pcmu():
    offer = _audio_offer("0 111 101", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000")
    _, media = negotiate_answer(parse(offer), OURS, address="10.0.0.1", port=30000, session_id=1,
                                session_version=1)
    assert media.codec.name == "PCMU" and media.codec.payload_type == 0 and media.telephone_event_pt == 101


def test_our_order_does_not_override_the_offerers():
    offer = _audio_offer("8 0")
    assert select_media(parse(offer), (PCMU, PCMA)).codec.name == "PCMA"


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_l16_is_accepted_at_the_rate_its_rtpmap_says(rate):
    offer = _audio_offer("98 99", f"a=rtpmap:98 L16/{rate}", f"a=rtpmap:99 telephone-event/{rate}")
    answer, media = negotiate_answer(parse(offer), OURS, address="10.0.0.1", port=30000, session_id=1,
                                     session_version=1)
    assert media.codec == Codec("L16", rate, 1, 98, None) and media.telephone_event_pt == 99
    assert parse(str(answer)).media[0].rtpmap[98] == RtpMap(98, "L16", rate)


def test_l16_we_cannot_run_is_refused():
    # RFC 3551 §6: static 10 and 11 are L16 at 44.1 kHz (stereo and mono); stereo at 16 kHz neither.
    for offer in (_audio_offer("10 11"), _audio_offer("98", "a=rtpmap:98 L16/16000/2")):
        answer, media = negotiate_answer(parse(offer), OURS, address="10.0.0.1", port=30000, session_id=1,
                                         session_version=1)
        assert media is None and answer.media[0].port == 0


def test_a_codec_we_lack_is_refused_and_any_other_taken():
    assert select_media(parse(_audio_offer("18 3")), OURS) is None          # G729, GSM
    media = select_media(parse(_audio_offer("18 3 8")), OURS)
    assert media.codec.name == "PCMA"


def test_opus_written_without_its_channel_count_is_still_opus():
    offer = _audio_offer("96", "a=rtpmap:96 opus/48000")
    answer, media = negotiate_answer(parse(offer), OURS, address="10.0.0.1", port=30000, session_id=1,
                                     session_version=1)
    assert media.codec.name == "opus" and media.codec.payload_type == 96
    assert parse(str(answer)).media[0].rtpmap[96] == RtpMap(96, "opus", 48000, 1)   # their rtpmap, echoed


def test_opus_with_only_8000_hz_events_keeps_them_rather_than_none():
    # baresip 1.0 offers Opus with telephone-event/8000 only: the keys must still work.
    offer = _audio_offer("111 101", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000")
    answer, media = negotiate_answer(parse(offer), OURS, address="10.0.0.1", port=30000, session_id=1,
                                     session_version=1)
    assert media.codec.name == "opus" and media.telephone_event_pt == 101
    assert parse(str(answer)).media[0].formats == ["111", "101"]
    # Events at neither the codec's rate nor 8000 are not used.
    offer = _audio_offer("111 102", "a=rtpmap:111 opus/48000/2", "a=rtpmap:102 telephone-event/16000")
    assert select_media(parse(offer), OURS).telephone_event_pt is None


def test_a_reoffer_keeps_the_running_codec_unless_it_is_dropped():
    running = Codec("PCMU", 8000, payload_type=0)
    offer = parse(_audio_offer("8 0 111", "a=rtpmap:111 opus/48000/2"))
    assert select_media(offer, OURS, keep=running).codec.name == "PCMU"
    assert select_media(offer, OURS).codec.name == "PCMA"
    dropped = parse(_audio_offer("111 8", "a=rtpmap:111 opus/48000/2"))
    assert select_media(dropped, OURS, keep=running).codec.name == "opus"


def test_select_then_answer_is_one_negotiation_with_the_port_known_later():
    offer = parse(OPUS_FIRST)
    media = select_media(offer, OURS)
    answer = build_answer(offer, media, address="10.0.0.1", port=41000, session_id=5, session_version=1)
    same, _ = negotiate_answer(offer, OURS, address="10.0.0.1", port=41000, session_id=5, session_version=1)
    assert str(answer) == str(same)
    refused = build_answer(offer, None, address="10.0.0.1", port=41000, session_id=5, session_version=1)
    assert [m.port for m in refused.media] == [0]


def test_the_first_audio_stream_with_a_codec_we_have_is_accepted():
    offer = parse(_audio_offer("18") + "m=audio 5006 RTP/AVP 0\r\n")
    answer, media = negotiate_answer(offer, OURS, address="10.0.0.1", port=30000, session_id=1, session_version=1)
    assert media.mline == 1 and media.remote_port == 5006
    assert [m.port for m in answer.media] == [0, 30000]


def test_payload_types_are_known_before_the_offer_is_written():
    codecs = assign_payload_types([OUR_OPUS, PCMU, PCMA, L16_WIDE])
    assert [(c.name, c.clock_rate, c.payload_type) for c in codecs] == [
        ("opus", 48000, 96), ("PCMU", 8000, 0), ("PCMA", 8000, 8), ("L16", 16000, 97),
        ("telephone-event", 48000, 98), ("telephone-event", 8000, 101), ("telephone-event", 16000, 99)]
    offer = build_offer("10.0.0.1", 40000, codecs, session_id=1, session_version=1)
    assert offer.media[0].formats == [str(c.payload_type) for c in codecs]
    assert offer.media[0].fmtp[96] == OUR_OPUS.fmtp


def test_a_callee_may_answer_our_offer_in_another_codec_than_our_first():
    offer = build_offer("10.0.0.1", 40000, assign_payload_types([PCMU, OUR_OPUS, PCMA]), session_id=1,
                        session_version=1)
    answer = parse(_audio_offer("96 97", "a=rtpmap:96 opus/48000/2", "a=fmtp:96 useinbandfec=1",
                                "a=rtpmap:97 telephone-event/48000"))
    ours = parse_answer(offer, answer)
    assert ours.codec == Codec("opus", 48000, 2, 96, "useinbandfec=1")
    assert ours.telephone_event_pt == 97 and ours.local_fmtp == OUR_OPUS.fmtp
