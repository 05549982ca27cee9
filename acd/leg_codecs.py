"""The codecs a call's SIP legs speak: which we offer and accept, and how a leg's media
endpoint follows the SDP.

Every leg may run any codec the media engine transcodes (G.711 µ-law and A-law, Opus, L16 at
8, 16 or 48 kHz): a caller is answered in the first codec of its offer that we support, a leg
we call is offered the other leg's codec first (the engine then relays without transcoding
when the callee takes it) and the others after it, and when the callee answers with another
one the endpoint is switched to that codec and the engine transcodes between the two. Which
codecs are on is the operator's choice (`[media] codecs`, in order of preference).

Signalling and media meet here (ARCHITECTURE.md): `sipstack.offer_answer` knows SDP codec
names, `mediacore` knows engine codecs; these functions turn one into the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.prompts import BUS_RATE
from sipstack.offer_answer import (
    Codec,
    NegotiatedMedia,
    assign_payload_types,
    build_answer,
    build_offer,
    select_media,
)
from sipstack.sdp import SdpError, SessionDescription, parse
from sipstack.session import Leg

__all__ = [
    "CODEC_NAMES",
    "DEFAULT_CODECS",
    "CodecConfigError",
    "answer_reoffer",
    "codec_of",
    "follow_answer",
    "offer_leg",
    "open_endpoint",
    "sdp_codecs",
]

# RFC 7587 §6.1: the fmtp of our Opus says what we receive and send. The engine decodes to and
# encodes from its mixing bus (mediacore.prompts.BUS_RATE), so wider audio than that would be
# sent for nothing; in-band FEC, DTX and stereo stay at their defaults (off).
OPUS_FMTP = f"maxplaybackrate={BUS_RATE};sprop-maxcapturerate={BUS_RATE}"

_PCMU = Codec("PCMU", 8000, payload_type=0)
_PCMA = Codec("PCMA", 8000, payload_type=8)
# RFC 7587 §7: "opus/48000/2" in SDP whatever is carried; the payload type is dynamic.
_OPUS = Codec("opus", 48000, 2, fmtp=OPUS_FMTP)
# RFC 3551 §4.5.11: L16 is 16-bit big-endian PCM; the rate comes from a=rtpmap (the static
# types 10 and 11 are 44.1 kHz, which the engine does not run).
_L16 = {rate: Codec("L16", rate) for rate in (16000, 8000, 48000)}

#: The names `[media] codecs` takes, each the SDP codecs it turns on. "L16" alone is every
#: rate the engine runs, "L16/16000" one of them.
CODEC_NAMES: dict[str, tuple[Codec, ...]] = {
    "PCMU": (_PCMU,),
    "PCMA": (_PCMA,),
    "opus": (_OPUS,),
    "L16": tuple(_L16.values()),
    **{f"L16/{rate}": (codec,) for rate, codec in _L16.items()},
}
#: Every codec the engine transcodes, G.711 first: what phones and trunks take everywhere.
DEFAULT_CODECS: tuple[str, ...] = ("PCMU", "PCMA", "opus", "L16")


class CodecConfigError(ValueError):
    """A codec list that cannot be used (an unknown name, nothing at all)."""


def sdp_codecs(names: Iterable[str]) -> tuple[Codec, ...]:
    """The SDP codecs for configured names, in their order (names compare case-insensitively;
    a name given twice counts once)."""
    lookup = {name.lower(): codecs for name, codecs in CODEC_NAMES.items()}
    if isinstance(names, str):
        raise CodecConfigError("codecs must be a list of names, e.g. [\"PCMU\", \"PCMA\", \"opus\"]")
    result: list[Codec] = []
    for name in names:
        codecs = lookup.get(name.lower()) if isinstance(name, str) else None
        if codecs is None:
            raise CodecConfigError(f"unknown codec {name!r}: use {', '.join(CODEC_NAMES)}")
        result.extend(c for c in codecs if c not in result)
    if not result:
        raise CodecConfigError("codecs must name at least one codec")
    return tuple(result)


def codec_of(endpoint: Endpoint) -> Codec:
    """The SDP codec an endpoint runs now, with its payload type."""
    opus = endpoint.codec.lower() == "opus"
    return Codec(endpoint.codec, endpoint.clock_rate, 2 if opus else 1, endpoint.payload_type,
                 OPUS_FMTP if opus else None)


def _same(a: Codec, b: Codec) -> bool:
    return a.name.lower() == b.name.lower() and a.clock_rate == b.clock_rate


def _offer_order(supported: Sequence[Codec], first: Codec | None) -> list[Codec]:
    if first is None:
        return list(supported)
    # The other leg's codec keeps our fmtp for it; its payload type is chosen afresh here.
    head = next((c for c in supported if _same(c, first)), first)
    head = Codec(head.name, head.clock_rate, head.channels, None, head.fmtp)
    return [head, *(c for c in supported if not _same(c, first))]


def open_endpoint(engine: MediaEngine, codec: Codec, *, telephone_event_pt: int | None,
                  rtp_timeout: float | None) -> Endpoint:
    """A media endpoint running `codec` (its payload type, clock rate) with RFC 4733 events on
    `telephone_event_pt`. MediaError when no port is free or the codec cannot run."""
    return engine.create_endpoint(codec.name, codec.payload_type or 0, clock_rate=codec.clock_rate,
                                  rtp_timeout=rtp_timeout, telephone_event_pt=telephone_event_pt)


def offer_leg(engine: MediaEngine, address: str, supported: Sequence[Codec], *, first: Codec | None = None,
              session_id: int, rtp_timeout: float | None) -> tuple[Endpoint, SessionDescription]:
    """Open the endpoint of a leg we call and write our offer for it: `first` (the other
    leg's codec: no transcoding if the callee takes it) then the rest of `supported`, with
    telephone-event at each clock rate. The endpoint runs the first codec until the answer
    says otherwise (`follow_answer`). MediaError when no port is free."""
    codecs = assign_payload_types(_offer_order(supported, first))
    head = codecs[0]
    event_pt = next((c.payload_type for c in codecs if c.is_telephone_event and c.clock_rate == head.clock_rate),
                    None)
    endpoint = open_endpoint(engine, head, telephone_event_pt=event_pt, rtp_timeout=rtp_timeout)
    offer = build_offer(address, endpoint.local_port, codecs, session_id=session_id, session_version=1)
    return endpoint, offer


def _retarget(engine: MediaEngine, endpoint: Endpoint, negotiated: NegotiatedMedia) -> Endpoint:
    codec = negotiated.codec
    if (_same(codec, codec_of(endpoint)) and codec.payload_type == endpoint.payload_type
            and negotiated.telephone_event_pt == endpoint.telephone_event_pt):
        return endpoint
    return engine.set_codec(endpoint, codec.name, codec.payload_type or 0, clock_rate=codec.clock_rate,
                            telephone_event_pt=negotiated.telephone_event_pt)


def follow_answer(engine: MediaEngine, endpoint: Endpoint, negotiated: NegotiatedMedia) -> Endpoint:
    """The answer to our offer came: the endpoint switches to the codec, payload types and
    address it names. Returns the endpoint's new record (the same leg). MediaError if the
    engine cannot."""
    endpoint = _retarget(engine, endpoint, negotiated)
    engine.set_remote(endpoint, negotiated.remote_address, negotiated.remote_port)
    return endpoint


def answer_reoffer(engine: MediaEngine, leg: Leg, sdp: bytes, endpoint: Endpoint, supported: Sequence[Codec],
                   origin: list[int], address: str) -> tuple[Endpoint, NegotiatedMedia] | None:
    """A re-INVITE or UPDATE offer on a running leg (hold, resume, a refresh, a moved address,
    a codec change; RFC 3264 §8): answered on the same endpoint, keeping its codec unless the
    offer drops it (then the offer's first supported codec, and the engine transcodes), RTP
    sent to the new address unless it is a hold. `origin` is the leg's [o= session id,
    version]; the version goes up (RFC 8866 §5.2). Returns the endpoint's record and the
    outcome, or None after a 488 (unreadable, nothing in common)."""
    try:
        offer = parse(sdp)
        negotiated = select_media(offer, supported, keep=codec_of(endpoint))
    except SdpError:
        negotiated = None
    if negotiated is None:
        leg.reject_offer(488)
        return None
    try:
        endpoint = _retarget(engine, endpoint, negotiated)
    except MediaError:
        leg.reject_offer(488)
        return None
    origin[1] += 1
    answer = build_answer(offer, negotiated, address=address, port=endpoint.local_port, session_id=origin[0],
                          session_version=origin[1])
    if not negotiated.remote_hold and negotiated.remote_address not in ("0.0.0.0", "::"):
        engine.set_remote(endpoint, negotiated.remote_address, negotiated.remote_port)
    leg.accept_offer(answer.to_bytes())
    return endpoint, negotiated
