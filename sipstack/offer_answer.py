"""The offer/answer model (RFC 3264) for the one audio stream a contact-center leg carries.

``select_media`` reads an offer once and chooses the stream and codec to accept;
``build_answer`` writes the answer for that choice once the local RTP port is known, so a
B2BUA can open its media endpoint for the chosen codec in between without negotiating twice
(``negotiate_answer`` does both when the port is known already). ``build_offer`` writes our
offers and ``parse_answer`` reads the answer to one. The result, ``NegotiatedMedia``, is what
``acd`` hands to ``mediacore``. Session descriptions themselves are ``sipstack.sdp``.

Codec choice when we answer: the offerer's order of preference (RFC 3264 §6.1 lets the
answerer choose; following the offerer means the caller gets the codec it asked for first),
restricted to the codecs we support, except that a leg that already runs a codec keeps it as
long as a new offer still lists it (a re-INVITE for hold or a refresh must not switch codecs
under a running call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sipstack.sdp import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
)

__all__ = [
    "DEFAULT_PTIME",
    "TELEPHONE_EVENT",
    "Codec",
    "NegotiatedMedia",
    "assign_payload_types",
    "build_answer",
    "build_offer",
    "negotiate_answer",
    "parse_answer",
    "select_media",
]

DEFAULT_PTIME = 20  # RFC 3551 §4.5: 20 ms is the default packetisation for audio
TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_FMTP = "0-16"  # RFC 4733 §3.2: DTMF 0-9, *, #, A-D and flash
_DYNAMIC_PTS = range(96, 128)  # RFC 3551 §3: dynamic payload types
_RTP_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})  # what our media engine terminates
# RFC 7587 §7: Opus is always "opus/48000/2" in a=rtpmap, whatever it carries.
_OPUS = "opus"
_OPUS_CLOCK = 48000


@dataclass
class Codec:
    """A codec as we configure it; ``payload_type`` is set once negotiated."""

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int | None = None
    fmtp: str | None = None

    def matches(self, entry: RtpMap) -> bool:
        # RFC 8866 §6.6: encoding names are case-insensitive.
        if self.name.lower() != entry.encoding.lower() or self.clock_rate != entry.clock_rate:
            return False
        # RFC 7587 §7 makes Opus "/2" always; a peer that writes "opus/48000" means the same codec.
        return self.channels == entry.channels or self.name.lower() == _OPUS

    @property
    def is_telephone_event(self) -> bool:
        return self.name.lower() == TELEPHONE_EVENT


@dataclass
class NegotiatedMedia:
    """The outcome of offer/answer for the audio stream, as ``mediacore`` needs it."""

    remote_address: str
    """Where to send RTP (the c= address; 0.0.0.0 for an RFC 2543 hold)."""
    remote_port: int
    """The remote RTP port (RTCP on ``remote_rtcp_port`` or port + 1)."""
    codec: Codec
    """The codec to use, named as we configured it, with the payload type to send and the
    peer's format parameters for it (what it receives: RFC 7587 §6.1 for Opus)."""
    telephone_event_pt: int | None
    """RFC 4733 payload type for DTMF at the codec's clock rate, None if the peer has none."""
    direction: Direction
    """What *we* do: sendrecv, sendonly (we play, they hold), recvonly, inactive."""
    ptime: int
    """Packetisation interval in ms the remote asked for (a=ptime, default 20)."""
    remote_hold: bool = False
    """The remote does not want our media: a=sendonly/inactive or c=0.0.0.0 from it."""
    remote_rtcp_port: int | None = None
    """a=rtcp from the remote (RFC 3605), None for the default port + 1."""
    mline: int = 0
    """Index of the accepted m= line in the offer (``build_answer`` answers that one)."""
    local_fmtp: str | None = None
    """Our own format parameters for the codec, stated in the answer (None: echo the offer's)."""


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _check_port(port: int) -> None:
    if not 0 < port <= 65535:
        raise ValueError(f"RTP port {port} outside 1-65535")


def _static_pt(codec: Codec) -> int | None:
    for pt, entry in STATIC_PAYLOAD_TYPES.items():
        if codec.channels == entry.channels and codec.matches(entry):
            return pt
    return None


def _session(address: str, session_id: int, session_version: int,
             media: list[MediaDescription]) -> SessionDescription:
    return SessionDescription(
        origin=Origin("-", session_id, session_version, "IN", _addrtype(address), address),
        session_name="-",
        connection=Connection("IN", _addrtype(address), address),
        media=media,
    )


# ---------------------------------------------------------------------------
# Offers


def assign_payload_types(codecs: Sequence[Codec], *, telephone_event: bool = True) -> list[Codec]:
    """``codecs`` (new objects) with payload types: a codec's own, else its RFC 3551 static
    one, else a free dynamic one (96-127). With ``telephone_event``, one telephone-event is
    added per clock rate in use (RFC 4733 §2.1: events use the audio stream's clock). Knowing
    the types before the offer is written lets a media endpoint be opened with them first."""
    chosen: list[Codec] = []
    used: set[int] = set()
    for codec in codecs:
        pt = codec.payload_type if codec.payload_type is not None else _static_pt(codec)
        if pt is not None and (pt in used or not 0 <= pt <= 127):
            raise ValueError(f"payload type {pt} for {codec.name} is repeated or out of range")
        if pt is not None:
            used.add(pt)
        chosen.append(Codec(codec.name, codec.clock_rate, codec.channels, pt, codec.fmtp))
    if telephone_event:
        have = {c.clock_rate for c in chosen if c.is_telephone_event}
        for rate in dict.fromkeys(c.clock_rate for c in chosen if not c.is_telephone_event):
            if rate not in have:
                # 101 is the customary DTMF payload type: use it when free.
                pt = 101 if rate == 8000 and 101 not in used else None
                if pt is not None:
                    used.add(pt)
                chosen.append(Codec(TELEPHONE_EVENT, rate, 1, pt, TELEPHONE_EVENT_FMTP))
                have.add(rate)
    free = (pt for pt in _DYNAMIC_PTS if pt not in used)
    for codec in chosen:
        if codec.payload_type is None:
            codec.payload_type = next(free, None)
            if codec.payload_type is None:
                raise ValueError("more codecs than dynamic payload types 96-127")
            used.add(codec.payload_type)
    return chosen


def build_offer(
    address: str,
    port: int,
    codecs: Sequence[Codec],
    *,
    telephone_event: bool = True,
    direction: Direction = Direction.SENDRECV,
    session_id: int,
    session_version: int,
    ptime: int = DEFAULT_PTIME,
) -> SessionDescription:
    """An offer for one audio stream with ``codecs`` in our order of preference, payload
    types as ``assign_payload_types`` gives them."""
    _check_port(port)
    if not codecs:
        raise ValueError("build_offer needs at least one codec")
    chosen = assign_payload_types(codecs, telephone_event=telephone_event)
    attributes: list[Attribute] = []
    for codec in chosen:
        entry = RtpMap(codec.payload_type or 0, codec.name, codec.clock_rate, codec.channels)
        attributes.append(("rtpmap", f"{codec.payload_type} {entry}"))
        if codec.fmtp:
            attributes.append(("fmtp", f"{codec.payload_type} {codec.fmtp}"))
    attributes.append(("ptime", str(ptime)))
    attributes.append((direction.value, None))
    media = MediaDescription("audio", port, "RTP/AVP", [str(c.payload_type) for c in chosen],
                             attributes=attributes)
    return _session(address, session_id, session_version, [media])


# ---------------------------------------------------------------------------
# Answers (we are the answerer)


def _is_held(connection: Connection | None) -> bool:
    # RFC 3264 §8.4: RFC 2543 endpoints hold a call by setting c= to 0.0.0.0.
    return connection is not None and connection.address.split("/")[0] == "0.0.0.0"


def _effective_direction(sdp: SessionDescription, media: MediaDescription) -> tuple[Direction, bool]:
    """The peer's direction for ``media`` and whether it amounts to a hold."""
    declared = sdp.media_direction(media)
    if _is_held(sdp.media_connection(media)):
        declared = Direction.from_flags(send=declared.sends, receive=False)
    return declared, not declared.receives


def _pick_telephone_event(media: MediaDescription, rtpmap: dict[int, RtpMap], clock_rate: int) -> int | None:
    # RFC 4733 §2.1: events in a stream use the audio codec's clock (telephone-event/48000 next
    # to Opus), so that rate is taken when offered. Phones in the field (baresip 1.0 among them)
    # pair Opus with telephone-event/8000 only; taking that rather than nothing keeps their
    # keys working (the digits arrive; only the durations are in the other clock's units).
    events = [entry for fmt in media.formats if fmt.isdigit() and (entry := rtpmap.get(int(fmt))) is not None
              and entry.encoding.lower() == TELEPHONE_EVENT]
    for wanted in (clock_rate, 8000):
        for entry in events:
            if entry.clock_rate == wanted:
                return entry.payload_type
    return None


def _remote_address(sdp: SessionDescription, media: MediaDescription) -> str:
    connection = sdp.media_connection(media)
    if connection is None:
        raise SdpError(f"no c= line for m={media.media} (RFC 8866 §5.7)")
    return connection.address.split("/")[0]


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m-line, with port 0 and the offered formats.
    return MediaDescription(media.media, 0, media.proto, list(media.formats))


def _choose(media: MediaDescription, rtpmap: dict[int, RtpMap], ours: Sequence[Codec],
            keep: Codec | None) -> tuple[Codec, int] | None:
    offered = [rtpmap[int(f)] for f in media.formats if f.isdigit() and int(f) in rtpmap]
    if keep is not None:
        for entry in offered:
            if keep.matches(entry):
                return keep, entry.payload_type
    for entry in offered:   # the offerer's order of preference
        for codec in ours:
            if codec.matches(entry):
                return codec, entry.payload_type
    return None


def select_media(
    offer: SessionDescription,
    supported: Sequence[Codec],
    *,
    keep: Codec | None = None,
    direction: Direction | None = None,
    telephone_event: bool = True,
) -> NegotiatedMedia | None:
    """Choose the stream and codec to accept in ``offer`` (RFC 3264 §6): its first usable
    audio stream, in the first of its codecs (the offerer's preference) that is one of
    ``supported`` — or ``keep``, the codec the leg runs now, if the offer still lists it.
    ``direction`` is what we want (default: whatever the offer allows); the result follows
    RFC 3264 §6.1. None when no audio stream has a codec we support."""
    wanted = direction or Direction.SENDRECV
    ours = [c for c in supported if not c.is_telephone_event]
    for index, media in enumerate(offer.media):
        if (media.media.lower() != "audio" or media.port == 0
                or media.proto.upper() not in _RTP_PROTOS):
            continue
        rtpmap = media.rtpmap
        match = _choose(media, rtpmap, ours, keep)
        if match is None:
            continue
        codec, pt = match
        remote, remote_hold = _effective_direction(offer, media)
        fmtp = media.fmtp
        return NegotiatedMedia(
            remote_address=_remote_address(offer, media),
            remote_port=media.port,
            codec=Codec(codec.name, codec.clock_rate, codec.channels, pt, fmtp.get(pt)),
            telephone_event_pt=_pick_telephone_event(media, rtpmap, codec.clock_rate) if telephone_event else None,
            direction=Direction.from_flags(send=remote.receives and wanted.sends,
                                           receive=remote.sends and wanted.receives),
            ptime=media.ptime or DEFAULT_PTIME,
            remote_hold=remote_hold,
            remote_rtcp_port=media.rtcp_port,
            mline=index,
            local_fmtp=codec.fmtp,
        )
    return None


def build_answer(
    offer: SessionDescription,
    negotiated: NegotiatedMedia | None,
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
) -> SessionDescription:
    """The answer to ``offer`` for what ``select_media`` chose: the accepted stream lists just
    the chosen codec plus telephone-event, so both ends know which one is in use; every other
    m-line is rejected with port 0 (all of them when ``negotiated`` is None)."""
    _check_port(port)
    answer_media: list[MediaDescription] = []
    for index, media in enumerate(offer.media):
        if negotiated is None or index != negotiated.mline:
            answer_media.append(_rejected(media))
            continue
        rtpmap, offered_fmtp = media.rtpmap, media.fmtp
        codec = negotiated.codec
        pt = codec.payload_type if codec.payload_type is not None else 0
        if pt not in rtpmap:
            raise ValueError(f"payload type {pt} is not in m-line {index} of the offer")
        attributes: list[Attribute] = [("rtpmap", f"{pt} {rtpmap[pt]}")]
        # RFC 3264 §6.1 / RFC 7587 §6.1: the answer's fmtp says what *we* receive; with nothing
        # of our own to say, the offer's parameters are echoed.
        fmtp = negotiated.local_fmtp if negotiated.local_fmtp is not None else codec.fmtp
        if fmtp:
            attributes.append(("fmtp", f"{pt} {fmtp}"))
        formats = [str(pt)]
        event_pt = negotiated.telephone_event_pt
        if event_pt is not None and event_pt in rtpmap:
            formats.append(str(event_pt))
            attributes.append(("rtpmap", f"{event_pt} {rtpmap[event_pt]}"))
            attributes.append(("fmtp", f"{event_pt} {offered_fmtp.get(event_pt, TELEPHONE_EVENT_FMTP)}"))
        attributes.append(("ptime", str(negotiated.ptime)))
        attributes.append((negotiated.direction.value, None))
        answer_media.append(MediaDescription(media.media, port, media.proto, formats, attributes=attributes))
    return _session(address, session_id, session_version, answer_media)


def negotiate_answer(
    offer: SessionDescription,
    supported: Sequence[Codec],
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
    keep: Codec | None = None,
    direction: Direction | None = None,
    telephone_event: bool = True,
) -> tuple[SessionDescription, NegotiatedMedia | None]:
    """``select_media`` and ``build_answer`` in one, when the local port is known already
    (a re-INVITE on a running leg). Without a common codec every stream is rejected and the
    NegotiatedMedia is None."""
    negotiated = select_media(offer, supported, keep=keep, direction=direction, telephone_event=telephone_event)
    answer = build_answer(offer, negotiated, address=address, port=port, session_id=session_id,
                          session_version=session_version)
    return answer, negotiated


# ---------------------------------------------------------------------------
# Answers to our offers (we are the offerer)


def parse_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia | None:
    """What the peer's answer to our ``offer`` means for our audio stream.

    None when our audio stream was rejected (port 0). Raises SdpError for an
    answer that breaks RFC 3264 §6: a different number of m-lines, or an
    accepted stream with no codec from the offer.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m-lines, the offer {len(offer.media)} "
                       "(RFC 3264 §6)")
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if (ours.media.lower() != "audio" or ours.port == 0
                or ours.proto.upper() not in _RTP_PROTOS):
            continue
        if theirs.port == 0:
            continue
        offered = ours.rtpmap
        codecs = [Codec(e.encoding, e.clock_rate, e.channels, fmtp=ours.fmtp.get(pt))
                  for pt, e in offered.items() if e.encoding.lower() != TELEPHONE_EVENT]
        answered = theirs.rtpmap
        chosen: Codec | None = None
        mine: Codec | None = None
        # RFC 3264 §6.1: the answer lists codecs in the answerer's preference;
        # its payload types are what the answerer receives, so we send with them.
        for fmt in theirs.formats:
            entry = answered.get(int(fmt)) if fmt.isdigit() else None
            if entry is None or entry.encoding.lower() == TELEPHONE_EVENT:
                continue
            mine = next((c for c in codecs if c.matches(entry)), None)
            if mine is not None:
                chosen = Codec(mine.name, mine.clock_rate, mine.channels, entry.payload_type,
                               theirs.fmtp.get(entry.payload_type))
                break
        if chosen is None or mine is None:
            raise SdpError(f"answer accepts m={theirs.media} with no codec from the offer")
        remote, remote_hold = _effective_direction(answer, theirs)
        return NegotiatedMedia(
            remote_address=_remote_address(answer, theirs),
            remote_port=theirs.port,
            codec=chosen,
            telephone_event_pt=_pick_telephone_event(theirs, answered, chosen.clock_rate),
            direction=remote.reversed(),
            ptime=theirs.ptime or DEFAULT_PTIME,
            remote_hold=remote_hold,
            remote_rtcp_port=theirs.rtcp_port,
            mline=index,
            local_fmtp=mine.fmtp,
        )
    return None
