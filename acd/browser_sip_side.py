"""The SIP side of a browser agent's transfers and three-way calls (acd.browser_transfer): what
becomes of the B2BUA call (acd.calls.Call) whose caller talks to a browser agent.

The browser agent is the call's callee (side "b"): its engine leg took the place of the callee's
endpoint (`Call.connect_browser`), and `SipRinging` files the browser call under the SIP call so
that the SIP call's end ends it. Every move below changes that filing with the media.

- Blind transfer: `BrowserTransferor` is the acd.blind_transfer `Transferor` for a browser: the
  REFER's NOTIFYs become WebSocket messages; the routing, CDR segments and recording are the
  blind transfer's own.
- Attended transfer to another browser agent (`move_to_browser`): the caller's endpoint is
  bridged to that agent's leg; the CDR segment closes ("attended transfer") and the next one is
  the caller with that agent, as acd.transfer does for Replaces.
- Attended transfer between two SIP parties (`join_calls`): the party of the second call moves
  into the first call in the agent's place (`Parties.detach_party`/`install_party`, as for
  Replaces); the second call's CDR ends with "transferred".
- Three-way call (`enter_room`): the caller's endpoint joins the room; the call stays the caller's
  call (one CDR, answered by the agent), and its end is reported to the room. The room is kept
  (`Parties.entered_room`): the party's own hold leaves the room and its resume rejoins it.

A call the agent placed from the softphone (acd.browser_caller) has the agent on side "a" and the
SIP callee on side "b": `join_calls(moved_side="b")` moves that callee into another call,
`placed_call_to_browser` hands it to another browser agent, `placed_call_into_room` puts it into
a three-way room.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from acd.blind_transfer import BlindTransfer, recording_follows, tell_queue
from acd.browser_transfer import AgentCallError
from acd.hold import release_hold
from acd.webrtc_agents import CallState
from mediacore.engine import AnyEndpoint
from mediacore.errors import MediaError

if TYPE_CHECKING:
    from acd.browser_ringing import SipRinging
    from acd.calls import Call
    from acd.webrtc_agents import BrowserCall, SipSide, WebRtcAgents

log = logging.getLogger(__name__)


def b2bua_call(call: object) -> Call:
    """The B2BUA call behind a browser call's SIP side, or a clear refusal (a SIP side that is
    not one, e.g. a test's stand-in, cannot be moved)."""
    if not hasattr(call, "manager") or getattr(call.manager, "browser_agents", None) is None:
        raise AgentCallError("not_supported", "this call cannot be transferred")
    return call  # type: ignore[return-value]


def ringing_of(call: Call) -> SipRinging:
    ringing = call.manager.browser_agents
    assert ringing is not None
    return ringing


class _Leaving:
    """The far side of the agent's browser call while a blind transfer is under way: the agent
    hanging up only leaves (the transfer goes on, and ends the call if it fails)."""

    def __init__(self, transfer: BlindTransfer) -> None:
        self.transfer = transfer

    def hangup(self, reason: str) -> None:
        self.transfer.transferor_gone = True

    def hold(self, held: bool) -> None:
        pass  # refused before it gets here (WebRtcAgents.hold)

    def send_dtmf(self, digits: str) -> None:
        pass  # refused before it gets here (WebRtcAgents.dtmf)


class BrowserTransferor:
    """A browser agent blind-transferring its SIP caller (acd.blind_transfer.Transferor)."""

    side = "b"
    legs = ()

    def __init__(self, call: Call, browser: BrowserCall, agents: WebRtcAgents, caller_side: SipSide) -> None:
        self.call = call
        self.browser = browser
        self.agents = agents
        self.caller_side = caller_side
        self.target = ""

    def accept(self) -> None:
        self.agents.tell(self.browser, {"type": "transfer_state", "call_id": self.browser.id, "state": "trying",
                                        "target": self.target})

    def progress(self, status: int, reason: str | None = None) -> None:
        if status < 200:
            self.agents.tell(self.browser, {"type": "transfer_state", "call_id": self.browser.id,
                                            "state": "ringing", "target": self.target})
            return
        self.agents.tell(self.browser, {"type": "error", "code": "transfer_failed", "call_id": self.browser.id,
                                        "status": status, "target": self.target,
                                        "message": reason or f"the transfer to {self.target} failed ({status})"})

    def watch(self, transfer: BlindTransfer) -> None:
        # The browser call is no longer the SIP call's to end: the target's browser, if the
        # target is one, must not be taken for it (SipRinging.ringing, stop).
        ringing_of(self.call).release(self.call.id, self.browser.id)
        self.browser.transferring = True
        self.browser.sip = _Leaving(transfer)

    def succeeded(self) -> None:
        self.agents.end_call(self.browser.id, "transferred")

    def leave(self) -> None:
        self.agents.end_call(self.browser.id, "remote_hangup")

    def rejoin(self, call: Call) -> None:
        m = call.manager
        browser = self.browser
        browser.transferring = False
        browser.sip = self.caller_side
        ringing_of(call).adopt(call.id, browser.id)
        if browser.held:   # back as it was: on hold, the caller hearing music
            call.hold_for_browser(browser.port, True)
        else:
            m.engine.connect(call.endpoint_a, browser.port)
        m.engine.set_rtp_timeout(call.endpoint_a, m.policy.rtp_timeout)
        self.agents.send_state(browser)


def blind_transfer(call: Call, browser: BrowserCall, target: str, agents: WebRtcAgents, caller_side: SipSide) -> None:
    """The agent of `browser` transfers the caller of `call` to `target`. Begins on the next turn
    of the loop, so the browser hears its request accepted (`ok`) before how it goes."""
    if call.transfer is not None or call.ended:
        raise AgentCallError("bad_state", "the call is being transferred already")
    transferor = BrowserTransferor(call, browser, agents, caller_side)
    transferor.target = target
    browser.transferring = True   # no hold, keys or second transfer meanwhile

    def begin() -> None:
        if browser.state is not CallState.ANSWERED or browser.sip is not caller_side:
            return   # the call ended (or changed) in between: nothing to transfer
        if call.ended or call.transfer is not None or not BlindTransfer(call, transferor, target).start():
            browser.transferring = False   # refused at once (told why): the call goes on as it was
            agents.send_state(browser)

    asyncio.get_running_loop().call_soon(begin)


def move_to_browser(call: Call, old: BrowserCall, party: BrowserCall) -> AnyEndpoint:
    """Attended transfer: the caller of `call` (talking to `old`'s agent) goes on with the agent of
    `party`. Returns the engine leg the caller is bridged to."""
    m = call.manager
    ringing = ringing_of(call)
    ringing.release(call.id, old.id)
    ringing.adopt(call.id, party.id)
    release_hold(call)
    m.engine.stop_playback(call.endpoint_a)   # the music on hold the consulting agent left it
    call.close_segment("callee", "attended transfer")
    tell_queue(call, "b", party.agent)
    # The next segment is the caller with that agent (the CDR's callee and answered_by).
    call._parties["b"] = call._parties["joined"] = party.agent
    call._answered_ext = party.agent
    m.engine.connect(call.endpoint_a, party.port)
    m.engine.set_rtp_timeout(call.endpoint_a, m.policy.rtp_timeout)
    call.set_browser(party.port)
    recording_follows(call)   # the same file goes on with that agent on the right
    log.info("call %s: attended transfer by %s to browser agent %s", call.id, old.agent, party.agent)
    return party.port


def join_calls(call: Call, other: Call, old: BrowserCall | None, old_other: BrowserCall | None,
               moved_side: str = "a") -> None:
    """Attended transfer between two SIP parties: the party of `other` on `moved_side` (its
    caller, or the callee of a call the agent placed) takes the agent's place in `call`
    (acd.transfer's Replaces does the same), and `other` ends."""
    m = call.manager
    ringing = ringing_of(call)
    if old is not None:
        ringing.release(call.id, old.id)
    if old_other is not None:
        ringing.release(other.id, old_other.id)
    for each in (call, other):
        release_hold(each)
        try:
            m.engine.stop_playback(each.endpoint_a)
        except MediaError:
            pass
    placed_by_agent = getattr(other, "browser_leg", None)   # acd.browser_caller's BrowserCallerLeg
    if placed_by_agent is not None:
        # The agent's own call ends as `transferred` (acd.browser_transfer), not by `other` ending.
        placed_by_agent.let_go()
    moved_leg, moved_endpoint, moved_number = other.detach_party(moved_side)
    origin = other.origin_of(moved_endpoint)
    other.hangup("transferred", side="system")
    unused = call.endpoint_b   # the callee's endpoint, idle since the browser answered
    call.close_segment("callee", "attended transfer")
    tell_queue(call, "b", moved_number)
    call.install_party("b", moved_leg, moved_endpoint, moved_number)
    # RFC 4566 §5.2: the SDP we send the moved party goes on with its o= id and version.
    call.set_origin(moved_endpoint, *(origin or [m.next_session_id(), 1]))
    m.engine.connect(call.endpoint_a, moved_endpoint)
    for endpoint in (call.endpoint_a, moved_endpoint):
        m.engine.set_rtp_timeout(endpoint, m.policy.rtp_timeout)
    recording_follows(call)
    if unused is not moved_endpoint:
        call.drop_endpoint(unused)
    log.info("call %s: attended transfer joins %s from call %s", call.id, moved_number, other.id)


def enter_room(call: Call, browser: BrowserCall, member_id: str, room_id: int | None = None) -> AnyEndpoint:
    """Three-way call: the caller of `call` leaves `browser` for a room (the room joins it)."""
    ringing = ringing_of(call)
    ringing.release(call.id, browser.id)
    ringing.adopt(call.id, member_id)
    release_hold(call)
    if room_id is not None:
        call.entered_room("a", room_id)   # its hold and resume leave and rejoin the room (acd.hold)
    return call.endpoint_a


def placed_call_to_browser(call: Call, party: BrowserCall) -> None:
    """Attended transfer of a call a browser agent placed (acd.browser_caller): its SIP callee
    (side "b") goes on with the agent of `party` in the placing agent's place (side "a")."""
    m = call.manager
    leg = call.inbound   # the BrowserCallerLeg: its browser call is now `party`'s
    release_hold(call)
    m.engine.stop_playback(call.endpoint_b)   # the music on hold the placing agent left it
    call.close_segment("caller", "attended transfer")
    call._parties["a"] = party.agent
    leg.take_browser(party)  # type: ignore[attr-defined]
    call.endpoint_a = party.port  # type: ignore[assignment]
    m.engine.connect(party.port, call.endpoint_b)
    recording_follows(call)
    log.info("call %s: attended transfer joins %s with browser agent %s", call.id, call.party_number("b"),
             party.agent)


def placed_call_into_room(call: Call, member_id: str, room_id: int | None) -> AnyEndpoint:
    """Three-way call from a call a browser agent placed: its SIP callee joins the room; the
    agent's browser call is the agent's own member from now on, no longer the call's caller."""
    release_hold(call)
    call.inbound.into_room(member_id)  # type: ignore[attr-defined]
    if room_id is not None:
        call.entered_room("b", room_id)
    return call.endpoint_b
