"""The codecs of a call's SIP legs (acd.leg_codecs): the configured list, the offers legs make,
and an endpoint that follows the codec a callee answered with, on a real media engine."""

from __future__ import annotations

import pytest

from acd.leg_codecs import (
    DEFAULT_CODECS,
    OPUS_FMTP,
    CodecConfigError,
    codec_of,
    follow_answer,
    offer_leg,
    sdp_codecs,
)
from sipstack.offer_answer import Codec, parse_answer
from sipstack.sdp import parse


def test_configured_names_become_sdp_codecs_in_their_order():
    codecs = sdp_codecs(["opus", "pcmu", "L16/16000", "PCMU"])
    assert [(c.name, c.clock_rate, c.channels) for c in codecs] == [
        ("opus", 48000, 2), ("PCMU", 8000, 1), ("L16", 16000, 1)]
    assert codecs[0].fmtp == OPUS_FMTP and codecs[1].payload_type == 0
    everything = sdp_codecs(DEFAULT_CODECS)
    assert [f"{c.name}/{c.clock_rate}" for c in everything] == [
        "PCMU/8000", "PCMA/8000", "opus/48000", "L16/16000", "L16/8000", "L16/48000"]


@pytest.mark.parametrize("names", [["G729"], [], "PCMU", [1]])
def test_unusable_codec_lists_are_refused_clearly(names):
    with pytest.raises(CodecConfigError):
        sdp_codecs(names)


async def test_a_callee_is_offered_the_callers_codec_first_and_may_answer_another(engine):
    supported = sdp_codecs(DEFAULT_CODECS)
    caller_codec = Codec("opus", 48000, 2, payload_type=111)
    endpoint, offer = offer_leg(engine, "127.0.0.1", supported, first=caller_codec, session_id=42,
                                rtp_timeout=None)
    (audio,) = offer.media
    names = [str(audio.rtpmap[int(f)]) for f in audio.formats]
    assert names[:3] == ["opus/48000/2", "PCMU/8000", "PCMA/8000"]
    assert {"telephone-event/48000", "telephone-event/8000", "telephone-event/16000"} <= set(names)
    # Until the answer, the endpoint runs the first codec with the events at its clock rate.
    assert (endpoint.codec, endpoint.clock_rate, endpoint.payload_type) == ("opus", 48000, int(audio.formats[0]))
    assert str(audio.rtpmap[endpoint.telephone_event_pt]) == "telephone-event/48000"
    assert endpoint.local_port == audio.port and offer.origin.sess_id == 42
    # A PCMU-only callee answers: the endpoint switches to PCMU (the engine transcodes).
    answer = parse("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    negotiated = parse_answer(offer, answer)
    switched = follow_answer(engine, endpoint, negotiated)
    assert switched.id == endpoint.id
    assert (switched.codec, switched.clock_rate, switched.payload_type, switched.telephone_event_pt) == (
        "PCMU", 8000, 0, 101)
    assert codec_of(switched) == Codec("PCMU", 8000, 1, 0, None)
    # The same answer again changes nothing: the record comes back as it is.
    assert follow_answer(engine, switched, negotiated) is switched
    engine.destroy(switched)


async def test_a_leg_without_another_offers_our_list_as_configured(engine):
    endpoint, offer = offer_leg(engine, "127.0.0.1", sdp_codecs(["PCMA", "opus"]), session_id=7, rtp_timeout=30.0)
    assert offer.media[0].formats[:2] == ["8", "96"]
    assert (endpoint.codec, endpoint.payload_type, endpoint.telephone_event_pt) == ("PCMA", 8, 101)
    engine.destroy(endpoint)


def test_the_codec_list_is_read_from_the_toml_file(tmp_path):
    from callcenter.config import ConfigError, load_config

    path = tmp_path / "callcenter.toml"
    path.write_text('[media]\ncodecs = ["opus", "PCMA"]\n')
    assert [c.name for c in load_config(path).media.sdp_codecs()] == ["opus", "PCMA"]
    assert [c.name for c in load_config(None).media.sdp_codecs()][:3] == ["PCMU", "PCMA", "opus"]
    path.write_text('[media]\ncodecs = ["PCMU", "G729"]\n')
    with pytest.raises(ConfigError, match="unknown codec 'G729'"):
        load_config(path)
