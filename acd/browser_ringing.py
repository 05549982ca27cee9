"""The B2BUA's side of browser agents: a SIP call (acd.calls.Call) rings a registered browser
(acd.webrtc_agents.WebRtcAgents) and, when the agent answers, the caller's endpoint is connected
to the browser call's engine leg. `SipRinging` keeps which browser calls ring (or talk) for which
SIP call, so a SIP call that ends first ends its browser side too."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from acd import browser_sip_side as moves
from acd.caller_info import CallerInfoAnnouncer
from acd.events import CallEnded
from acd.webrtc_agents import AgentCallError, BrowserCall, SipSide, WebRtcAgents
from mediacore.engine import AnyEndpoint

if TYPE_CHECKING:
    from acd.calls import Call

log = logging.getLogger(__name__)


class RingingCall(Protocol):
    """What a SIP call (acd.calls.Call) offers `SipRinging` when it rings a browser agent."""

    id: str
    caller: str

    def connect_browser(self, port: AnyEndpoint, extension: str) -> None:
        """The agent answered: connect the caller's endpoint to `port` (the browser call's
        engine leg), answer the caller."""

    def browser_failed(self, status: int, busy: bool) -> None:
        """Every browser rung refused or timed out: what follows (a forward, 480, 486)."""

    def send_dtmf_to_caller(self, digits: str) -> None:
        """RFC 4733 events toward the caller."""

    def hangup(self, reason: str, *, side: str) -> None:
        """End the call and its SIP leg(s)."""

    def hold_for_browser(self, port: AnyEndpoint, held: bool) -> None:
        """The agent on `port` held or resumed: music on hold to the caller, or the two joined again."""


class _CallerSide:
    """The SIP caller as the far side of an answered browser call (on the engine leg `port`)."""

    def __init__(self, call: RingingCall, port: AnyEndpoint) -> None:
        self.call = call
        self.port = port

    def hold(self, held: bool) -> None:
        self.call.hold_for_browser(self.port, held)

    def send_dtmf(self, digits: str) -> None:
        self.call.send_dtmf_to_caller(digits)

    def hangup(self, reason: str) -> None:
        self.call.hangup(f"agent {reason}", side="callee")

    @property
    def number(self) -> str:
        return self.call.caller

    @property
    def movable(self) -> bool:
        return hasattr(self.call, "manager")

    #: In an attended transfer between two SIP parties, this call stays and takes the other in.
    hosts_join = True

    def sip_party(self) -> tuple[RingingCall, str]:
        """The B2BUA call and the side its SIP party is on (the caller's, "a")."""
        return self.call, "a"

    # Transfers and three-way calls from the softphone (acd.browser_transfer): the B2BUA call's
    # part of them is acd.browser_sip_side's.

    def blind_transfer(self, call: BrowserCall, target: str) -> None:
        sip_call = moves.b2bua_call(self.call)
        moves.blind_transfer(sip_call, call, target, moves.ringing_of(sip_call).agents, self)

    def move_to(self, call: BrowserCall) -> SipSide:
        sip_call = moves.b2bua_call(self.call)
        return _CallerSide(sip_call, moves.move_to_browser(sip_call, self._own_call(sip_call), call))

    def join(self, other: SipSide) -> None:
        # The other side may be any SIP side that says where its party is (`sip_party`): the
        # caller of another incoming call, or the callee of a call the agent placed.
        party = getattr(other, "sip_party", None)
        if party is None:
            raise AgentCallError("not_supported", "these calls cannot be joined")
        other_call, moved_side = party()
        sip_call, other_call = moves.b2bua_call(self.call), moves.b2bua_call(other_call)
        other_browser = other._browser_call(other_call) if isinstance(other, _CallerSide) else None
        moves.join_calls(sip_call, other_call, self._browser_call(sip_call), other_browser, moved_side)

    def enter_room(self, member_id: str, room_id: int | None = None) -> AnyEndpoint:
        sip_call = moves.b2bua_call(self.call)
        return moves.enter_room(sip_call, self._own_call(sip_call), member_id, room_id)

    def _own_call(self, sip_call: Call) -> BrowserCall:
        found = self._browser_call(sip_call)
        if found is None:
            raise AgentCallError("bad_state", "the call is no longer the agent's")
        return found

    def _browser_call(self, sip_call: Call) -> BrowserCall | None:
        """The browser call this side is the far side of (the one on `port`)."""
        agents = moves.ringing_of(sip_call).agents
        for browser_id in moves.ringing_of(sip_call).browser_calls(sip_call.id):
            found = agents.call_by_id(browser_id)
            if found is not None and found.port is self.port:
                return found
        return None


class SipRinging:
    """The B2BUA's hook for browser agents: `ring` a registered browser for a SIP call, and
    `on_event` (subscribed to the bus) ends the browser side when the SIP call ends first
    (the caller hung up or cancelled, the ring timer ran out)."""

    def __init__(self, agents: WebRtcAgents, *, caller_info: CallerInfoAnnouncer | None = None) -> None:
        self.agents = agents
        #: Tells a rung browser which CRM member calls (`caller_info`, after the ring); None: not told.
        self.caller_info = caller_info
        self._rung: dict[str, list[str]] = {}   # SIP call id -> its browser call ids

    def ring(self, call: RingingCall, extension: str, caller_name: str, *,
             claim: Callable[[], bool] | None = None,
             on_failed: Callable[[int, bool], None] | None = None) -> bool:
        """Ring `extension`'s browser for `call`; False if no browser is registered for it.

        A queue offer (acd.queue_calls) passes `claim` and `on_failed`: `claim()` is asked when
        the agent answers, before anything is connected — False (the ACD gave the call to
        someone else meanwhile) ends this browser's call instead of connecting it; and
        `on_failed(status, busy)` hears this one browser refuse or ring out, in place of
        `call.browser_failed` (which waits for every browser of a ring step)."""
        if not self.agents.is_registered(extension):
            return False
        rung: list[BrowserCall] = []

        def on_answer(port: AnyEndpoint) -> SipSide:
            if claim is not None and not claim():
                # Not ours to take: ended here, and the browser's `answer` is refused with why.
                self._forget(call.id, rung[0].id)
                self.agents.end_call(rung[0].id, "answered_elsewhere")
                raise AgentCallError("answered_elsewhere", "the call was taken by another agent")
            # The first browser to answer takes the call; any other still ringing stops.
            for other_id in self._rung.get(call.id, []):
                if other_id != rung[0].id:
                    self.agents.end_call(other_id, "answered_elsewhere")
            self._rung[call.id] = [rung[0].id]   # until the call ends (on_event)
            call.connect_browser(port, extension)
            return _CallerSide(call, port)

        def on_end(reason: str) -> None:
            status, busy = (486, True) if reason in ("rejected", "busy") else (480, False)
            remaining = self._forget(call.id, rung[0].id)
            if on_failed is not None:
                on_failed(status, busy)
            elif not remaining:
                call.browser_failed(status, busy)

        try:
            browser_call = self.agents.ring(extension, call.caller, caller_name, on_answer=on_answer, on_end=on_end)
        except AgentCallError as exc:
            log.info("call %s: browser agent %s not rung: %s", call.id, extension, exc)
            return False
        rung.append(browser_call)
        self._rung.setdefault(call.id, []).append(browser_call.id)
        if self.caller_info is not None:
            self.caller_info.announce(self.agents, browser_call)
        return True

    def rings(self, call_id: str, extension: str) -> bool:
        """Whether `extension`'s browser still rings (or talks) for the SIP call."""
        mine = {c.id for c in self.agents.calls_of(extension)}
        return any(browser_id in mine for browser_id in self._rung.get(call_id, []))

    def stop_agent(self, call_id: str, extension: str, reason: str = "answered_elsewhere") -> None:
        """Stop `extension`'s browser ringing for the SIP call (the ACD withdrew its offer);
        the other agents' browsers ring on."""
        mine = {c.id for c in self.agents.calls_of(extension)}
        for browser_id in [b for b in self._rung.get(call_id, []) if b in mine]:
            self._forget(call_id, browser_id)
            self.agents.end_call(browser_id, reason)

    def _forget(self, call_id: str, browser_id: str) -> list[str]:
        """Drop one browser call of the SIP call; the ones left."""
        remaining = [c for c in self._rung.get(call_id, []) if c != browser_id]
        if remaining:
            self._rung[call_id] = remaining
        else:
            self._rung.pop(call_id, None)
        return remaining

    def ringing(self, call_id: str) -> bool:
        """Whether a browser still rings (or talks) for the SIP call: the call's ring step is
        not over while one does."""
        return bool(self._rung.get(call_id))

    # A softphone transfer or three-way call (acd.browser_sip_side) refiles the SIP call's
    # browser side: the transferring agent's call is no longer the SIP call's to end.

    def browser_calls(self, call_id: str) -> list[str]:
        return list(self._rung.get(call_id, []))

    def release(self, call_id: str, browser_id: str) -> None:
        self._forget(call_id, browser_id)

    def adopt(self, call_id: str, browser_id: str) -> None:
        self._rung.setdefault(call_id, []).append(browser_id)

    def stop(self, call_id: str, reason: str = "remote_hangup") -> None:
        """The SIP call ended or stopped ringing this browser: end its browser side(s)."""
        for browser_id in self._rung.pop(call_id, []):
            self.agents.end_call(browser_id, reason)

    def on_event(self, event: object) -> None:
        if isinstance(event, CallEnded):
            self.stop(event.call_id)
