"""Hold and unhold through the B2BUA (issue #4): music on hold to the held party.

A phone holds its call with a re-INVITE or UPDATE whose offer says a=sendonly or a=inactive (or,
the RFC 2543 way, c=0.0.0.0; RFC 3264 §8.4), and resumes it with a=sendrecv. The B2BUA answers
the offer itself (acd.calls `_renegotiate`, recvonly/inactive per RFC 3264 §6.1) and does not
pass the hold on to the other leg: the other party's phone never learns of it. So the B2BUA
must do what the holding phone asked of it: stop relaying between the two parties, and play
music on hold to the party left waiting (what Asterisk's `MOH` class does), until the holder
resumes. Each side may hold on its own; while both hold, neither hears anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from acd.dialing import HOLD_MUSIC
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
    relay, and music on hold to a party whose other party holds (and who does not hold)."""
    m = call.manager
    a, b = call.endpoint_a, call.endpoint_b
    try:
        if not call.held_by:
            for endpoint in (a, b):
                m.engine.stop_playback(endpoint)
                m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)
            m.engine.connect(a, b)
            return
        # Nothing of the holder reaches the held party, nor the other way (RFC 3264 §5.1: a
        # recvonly/inactive answer means we send nothing to a sendonly/inactive holder).
        m.engine.disconnect(a)
        for side, other in (("a", "b"), ("b", "a")):
            endpoint = call.endpoint_of(side)
            if other in call.held_by and side not in call.held_by:
                m.engine.play_file(endpoint, HOLD_MUSIC, loop=True)
            else:
                m.engine.stop_playback(endpoint)
            # A holder may send nothing at all (a=inactive): its silence must not end the call.
            m.engine.set_rtp_timeout(endpoint, None if side in call.held_by else m.policy.rtp_timeout)
    except MediaError as exc:
        log.warning("call %s: cannot set the media for hold: %s", call.id, exc)


def release_hold(call: Call) -> None:
    """A transfer is changing the parties: whoever held, held the party leaving. Stop the music
    on both sides; the transfer connects the media it wants."""
    if not call.held_by:
        return
    call.held_by.clear()
    m = call.manager
    for side in SIDES:
        endpoint = call.endpoint_of(side)
        try:
            m.engine.stop_playback(endpoint)
            m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)
        except MediaError:
            pass  # already destroyed
