"""Transfers and three-way calls from a browser agent's softphone (issue #7, #8), on the agent's
side: which far parties the agent's calls have, and what becomes of them.

A browser call's far party is the echo test, another browser agent's call (`BrowserCall.other`),
or a SIP party of the B2BUA (`BrowserCall.sip`, acd.browser_ringing). The SIP party's own moves
(routing it on, moving it to another leg, into a room) are done by the SIP side
(acd.browser_sip_side); this mixin of `WebRtcAgents` checks the agent's request and ends or
rewires the browser calls.

- Blind transfer (`transfer`): the SIP party is routed to the target as a REFER's blind transfer
  would route it (acd.blind_transfer). The agent's call stays up, its media set aside, until the
  target answers (or a local destination takes the call): only then is the outcome known, and a
  failure (404, 480, 486, a feature code's 403) gives the call back to the agent. The agent hears
  `transfer_state` trying/ringing meanwhile and may hang up at once (then a failure ends the call).
- Attended transfer (`attended_transfer`): the agent's two answered calls are joined far party to
  far party; both of the agent's calls end with reason `transferred`.
- Three-way (`conference`): the agent and both far parties move into an ad-hoc room on the
  engine's mixer (`AdHocRoom`); the agent's first call stays, as the agent's member, and the
  second ends (`conference`). The room lives while at least two members remain: the agent may
  hang up and leave the other two talking; the last one left alone is hung up.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediacore.engine import AnyEndpoint, MediaEngine
from mediacore.errors import MediaError

if TYPE_CHECKING:
    from acd.webrtc_agents import BrowserCall, _Agent

log = logging.getLogger(__name__)

#: Ad-hoc rooms are named "adhoc-N": not a number, so never one of the configured (dialable,
#: numeric) rooms of acd.conference_rooms.
ADHOC_PREFIX = "adhoc-"
_room_numbers = itertools.count(1)


class AgentCallError(Exception):
    """A request the call cannot carry out, with a short machine-readable code for the browser."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Member:
    endpoint: AnyEndpoint
    kick: Callable[[str], None]
    "Ends the member's call (the room closed with it alone in it)."


class AdHocRoom:
    """A three-way call's room on the engine's mixer (each member hears the others' sum)."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.name = f"{ADHOC_PREFIX}{next(_room_numbers)}"
        self.room_id = engine.create_room()
        self.members: dict[str, _Member] = {}
        self.closed = False

    def add(self, member_id: str, endpoint: AnyEndpoint, kick: Callable[[str], None]) -> None:
        # An endpoint has one source at a time: what fed it before (a bridge, music on hold) goes.
        self.engine.stop_playback(endpoint)
        self.engine.disconnect(endpoint)
        self.engine.join_room(self.room_id, endpoint)
        self.members[member_id] = _Member(endpoint, kick)

    def left(self, member_id: str) -> None:
        """A member's call ended; with fewer than two left the room closes."""
        member = self.members.pop(member_id, None)
        if member is None or self.closed:
            return
        try:
            self.engine.leave_room(self.room_id, member.endpoint)
        except MediaError:
            pass  # its leg is gone already
        log.info("room %s: %s left (%d remain)", self.name, member_id, len(self.members))
        if len(self.members) < 2:
            self.close("conference_ended")

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        remaining, self.members = list(self.members.values()), {}
        for member in remaining:
            member.kick(reason)
        try:
            self.engine.close_room(self.room_id)
        except MediaError:
            pass  # the engine is shutting down
        log.info("room %s closed", self.name)


class BrowserTransfers:
    """The part of `WebRtcAgents` (a mixin) that hands a browser agent's calls on."""

    engine: MediaEngine
    _agents: dict[str, _Agent]
    #: Far parties in an ad-hoc room that are no browser call (SIP parties), by member id.
    _room_members: dict[str, AdHocRoom]

    if TYPE_CHECKING:  # defined by WebRtcAgents
        def _answered_call(self, extension: str, call_id: str) -> BrowserCall: ...
        def _end(self, call: BrowserCall, reason: str) -> None: ...
        def _send(self, call: BrowserCall, message: dict[str, Any]) -> None: ...

    def tell(self, call: BrowserCall, message: dict[str, Any]) -> None:
        """Send the agent of `call` a message (the SIP side reports a transfer's progress)."""
        self._send(call, message)

    def send_state(self, call: BrowserCall) -> None:
        self._send(call, {"type": "state", **call.summary()})

    # -- blind transfer --------------------------------------------------------------------------

    def transfer(self, extension: str, call_id: str, target: str) -> None:
        """Blind transfer of the call's far party to `target` (any number the agent could dial).
        Progress and outcome come as `transfer_state`, `error`/`transfer_failed` and `state`."""
        call = self._controllable(extension, call_id)
        target = target.strip()
        if not target or len(target) > 32 or not all(c.isdigit() or c in "*#+" for c in target):
            raise AgentCallError("bad_number", "a number is 1-32 of 0-9 * # +")
        if call.sip is None:
            raise AgentCallError("not_supported", "only a call with a phone or an outside caller can be "
                                 "transferred blind; use consult and complete transfer with another browser agent")
        call.sip.blind_transfer(call, target)

    # -- attended transfer -------------------------------------------------------------------------

    def attended_transfer(self, extension: str, call_id: str, to_call_id: str) -> None:
        """Join the far parties of the agent's two answered calls; the agent leaves both."""
        first, second = self._pair(extension, call_id, to_call_id)
        try:
            self._join(first, second)
        except MediaError as exc:
            raise AgentCallError("no_media", f"the calls cannot be joined: {exc}") from None
        log.info("browser calls %s and %s of %s: attended transfer", first.id, second.id, extension)
        for call in (first, second):
            self._let_go(call, "transferred")

    def _join(self, first: BrowserCall, second: BrowserCall) -> None:
        if first.sip is not None and second.sip is not None:
            # The call that can take the other's party in stays (a call the agent answered).
            keep, give = ((first.sip, second.sip) if getattr(first.sip, "hosts_join", False)
                          else (second.sip, first.sip))
            keep.join(give)
        elif first.sip is not None and second.other is not None:
            self._sip_to_browser(first, second.other)
        elif second.sip is not None and first.other is not None:
            self._sip_to_browser(second, first.other)
        else:
            one, two = first.other, second.other
            assert one is not None and two is not None
            self.engine.connect(one.port, two.port)
            one.other, two.other = two, one
            for party, peer in ((one, two), (two, one)):
                agent = self._agents.get(peer.agent)
                party.peer, party.peer_name = peer.agent, agent.name if agent else ""
                self.send_state(party)

    def _sip_to_browser(self, agents_call: BrowserCall, party: BrowserCall) -> None:
        """The SIP party of the agent's call goes on with another browser agent (`party`)."""
        assert agents_call.sip is not None
        sip = agents_call.sip
        party.sip = sip.move_to(party)
        party.other = None
        party.peer, party.peer_name = sip.number, agents_call.peer_name
        self.send_state(party)

    # -- three-way call ----------------------------------------------------------------------------

    def conference(self, extension: str, call_id: str, with_call_id: str) -> AdHocRoom:
        """The agent (on `call_id`'s leg) and both far parties in one ad-hoc room."""
        first, second = self._pair(extension, call_id, with_call_id)
        try:
            room = AdHocRoom(self.engine)
        except MediaError as exc:
            raise AgentCallError("no_media", f"no conference room: {exc}") from None
        try:
            for call in (first, second):
                self._far_party_into(room, call)
        except MediaError as exc:
            room.close("conference_ended")
            raise AgentCallError("no_media", f"no conference room: {exc}") from None
        first.sip = first.other = None
        first.room = room
        if first.held:
            first.held = False
            first.bridge.set_held(False)
        room.add(first.id, first.port, lambda reason: self._end(first, reason))
        log.info("browser agent %s: three-way call in room %s", extension, room.name)
        self._let_go(second, "conference")
        first.peer, first.peer_name = room.name, ""
        self.send_state(first)
        return room

    def _far_party_into(self, room: AdHocRoom, call: BrowserCall) -> None:
        if call.sip is not None:
            sip = call.sip
            member_id = f"{room.name}:{call.id}"
            # The room's id lets the party's own hold leave and rejoin the room (acd.hold).
            endpoint = sip.enter_room(member_id, room_id=room.room_id)
            self._room_members[member_id] = room
            room.add(member_id, endpoint, sip.hangup)
            call.sip = None
        elif call.other is not None:
            party = call.other
            party.other, call.other = None, None
            party.room = room
            party.peer, party.peer_name = room.name, ""
            room.add(party.id, party.port, lambda reason: self._end(party, reason))
            self.send_state(party)

    # -- internals ---------------------------------------------------------------------------------

    def _controllable(self, extension: str, call_id: str) -> BrowserCall:
        call = self._answered_call(extension, call_id)
        if call.transferring:
            raise AgentCallError("bad_state", "the call is being transferred")
        if call.room is not None:
            raise AgentCallError("bad_state", "the call is a three-way call")
        if call.echo:
            raise AgentCallError("not_supported", "the echo test cannot be transferred")
        return call

    def _pair(self, extension: str, call_id: str, other_id: str) -> tuple[BrowserCall, BrowserCall]:
        if call_id == other_id:
            raise AgentCallError("bad_state", "name two different calls")
        first = self._controllable(extension, call_id)
        second = self._controllable(extension, other_id)
        for call in (first, second):
            if call.sip is not None and not call.sip.movable:
                raise AgentCallError("not_supported", "this call's other party cannot be moved")
            if call.sip is None and (call.other is None or call.other.state.value != "answered"):
                raise AgentCallError("bad_state", "both calls must be answered")
        return first, second

    def _let_go(self, call: BrowserCall, reason: str) -> None:
        """The agent's call ends without ending its far party (moved elsewhere)."""
        call.sip, call.other, call.on_end = None, None, None
        self._end(call, reason)
