"""The B2BUA's side of browser agents: a SIP call (acd.calls.Call) rings a registered browser
(acd.webrtc_agents.WebRtcAgents) and, when the agent answers, the caller's endpoint is connected
to the browser call's engine leg. `SipRinging` keeps which browser calls ring (or talk) for which
SIP call, so a SIP call that ends first ends its browser side too."""

from __future__ import annotations

import logging
from typing import Protocol

from acd.events import CallEnded
from acd.webrtc_agents import AgentCallError, BrowserCall, SipSide, WebRtcAgents
from mediacore.engine import AnyEndpoint

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


class SipRinging:
    """The B2BUA's hook for browser agents: `ring` a registered browser for a SIP call, and
    `on_event` (subscribed to the bus) ends the browser side when the SIP call ends first
    (the caller hung up or cancelled, the ring timer ran out)."""

    def __init__(self, agents: WebRtcAgents) -> None:
        self.agents = agents
        self._rung: dict[str, list[str]] = {}   # SIP call id -> its browser call ids

    def ring(self, call: RingingCall, extension: str, caller_name: str) -> bool:
        """Ring `extension`'s browser for `call`; False if no browser is registered for it."""
        if not self.agents.is_registered(extension):
            return False
        rung: list[BrowserCall] = []

        def on_answer(port: AnyEndpoint) -> SipSide:
            # The first browser to answer takes the call; any other still ringing stops.
            for other_id in self._rung.get(call.id, []):
                if other_id != rung[0].id:
                    self.agents.end_call(other_id, "answered_elsewhere")
            self._rung[call.id] = [rung[0].id]   # until the call ends (on_event)
            call.connect_browser(port, extension)
            return _CallerSide(call, port)

        def on_end(reason: str) -> None:
            remaining = [c for c in self._rung.get(call.id, []) if c != rung[0].id]
            if remaining:
                self._rung[call.id] = remaining
                return
            self._rung.pop(call.id, None)
            call.browser_failed(486 if reason in ("rejected", "busy") else 480, reason in ("rejected", "busy"))

        try:
            browser_call = self.agents.ring(extension, call.caller, caller_name, on_answer=on_answer, on_end=on_end)
        except AgentCallError as exc:
            log.info("call %s: browser agent %s not rung: %s", call.id, extension, exc)
            return False
        rung.append(browser_call)
        self._rung.setdefault(call.id, []).append(browser_call.id)
        return True

    def ringing(self, call_id: str) -> bool:
        """Whether a browser still rings (or talks) for the SIP call: the call's ring step is
        not over while one does."""
        return bool(self._rung.get(call_id))

    def stop(self, call_id: str, reason: str = "remote_hangup") -> None:
        """The SIP call ended or stopped ringing this browser: end its browser side(s)."""
        for browser_id in self._rung.pop(call_id, []):
            self.agents.end_call(browser_id, reason)

    def on_event(self, event: object) -> None:
        if isinstance(event, CallEnded):
            self.stop(event.call_id)
