"""Hold and unhold through the B2BUA (issue #4): music on hold to the held party.

A phone holds its call with a re-INVITE or UPDATE whose offer says a=sendonly or a=inactive (or,
the RFC 2543 way, c=0.0.0.0; RFC 3264 §8.4), and resumes it with a=sendrecv. The B2BUA answers
the offer itself (acd.calls `_renegotiate`, recvonly/inactive per RFC 3264 §6.1) and does not
pass the hold on to the other leg: the other party's phone never learns of it. So the B2BUA
must do what the holding phone asked of it: stop relaying between the two parties, and play
music on hold to the party left waiting (what Asterisk's `MOH` class does), until the holder
resumes. Each side may hold on its own; while both hold, neither hears anything.

A browser agent holds from the softphone (`Call.hold_for_browser`) and is side "b" of the call
it answered (side "a" of one it placed): the same rules, one code path, toward whichever party
is bridged now.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from acd.dialing import HOLD_MUSIC
from mediacore.engine import AnyEndpoint, Endpoint
from mediacore.errors import MediaError

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)

SIDES = ("a", "b")


def hold_changed(call: Call, side: str, holds: bool) -> None:
    """The party on `side` ("a" or "b") of a bridged call just held (`holds`) or resumed it:
    set the media to match, if that changes anything."""
    before = set(call.held_by)
    if holds:
        call.held_by.add(side)
    else:
        call.held_by.discard(side)
    if call.held_by == before:
        return  # a refresh or a codec change, not a hold
    log.info("call %s: %s %s the call", call.id, call.party_number(side), "holds" if holds else "resumes")
    apply_hold(call)


def apply_hold(call: Call) -> None:
    """Make the engine match `call.held_by`: relay both ways when nobody holds; otherwise no
    relay, and music on hold to a party whose other party holds (and who does not hold).
    The parties are whoever is bridged now (`Parties.party_port`): a SIP endpoint, a browser
    agent's leg, or, for a party in a three-way room, the room."""
    m = call.manager
    try:
        if call.adhoc_room is not None:
            _hold_in_room(call)
            return
        a, b = call.party_port("a"), call.party_port("b")
        if not call.held_by:
            for port in (a, b):
                m.engine.stop_playback(port)
                _rtp_timeout(call, port, m.policy.rtp_timeout)
            m.engine.connect(a, b)
            return
        # Nothing of the holder reaches the held party, nor the other way (RFC 3264 §5.1: a
        # recvonly/inactive answer means we send nothing to a sendonly/inactive holder).
        m.engine.disconnect(a)
        for side, other in (("a", "b"), ("b", "a")):
            port = call.party_port(side)
            if other in call.held_by and side not in call.held_by:
                m.engine.play_file(port, HOLD_MUSIC, loop=True)
            else:
                m.engine.stop_playback(port)
            # A holder may send nothing at all (a=inactive): its silence must not end the call.
            _rtp_timeout(call, port, None if side in call.held_by else m.policy.rtp_timeout)
    except MediaError as exc:
        log.warning("call %s: cannot set the media for hold: %s", call.id, exc)


def _hold_in_room(call: Call) -> None:
    """A party in a three-way room holds: it leaves the room's mix (the others talk on; RFC 3264
    §5.1, it is sent nothing) and joins it again when it resumes."""
    m = call.manager
    room, side = call.adhoc_room, call.room_side
    assert room is not None
    port = call.party_port(side)
    if side in call.held_by:
        m.engine.leave_room(room, port)
        _rtp_timeout(call, port, None)
    else:
        m.engine.join_room(room, port)
        _rtp_timeout(call, port, m.policy.rtp_timeout)


def _rtp_timeout(call: Call, port: AnyEndpoint, seconds: float | None) -> None:
    """Only the call's own RTP endpoints time out: a browser agent's leg (a PCM port, or an
    endpoint toward a WebRTC worker) is watched by acd.webrtc_agents, not by the call."""
    if isinstance(port, Endpoint) and any(e.id == port.id for e in call.endpoints):
        call.manager.engine.set_rtp_timeout(port, seconds)


def release_hold(call: Call) -> None:
    """A transfer is changing the parties: whoever held, held the party leaving. Stop the music
    on both sides; the transfer connects the media it wants."""
    if not call.held_by:
        return
    call.held_by.clear()
    m = call.manager
    for side in SIDES:
        port = call.party_port(side)
        try:
            m.engine.stop_playback(port)
            _rtp_timeout(call, port, m.policy.rtp_timeout)
        except MediaError:
            pass  # already destroyed
