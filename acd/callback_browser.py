"""A browser agent rung for a queued callback (acd.callback_calls): the agent's softphone rings
like their desk phones do, and once answered its engine leg is where the whisper, the ringback
and then the customer's audio go.

`BrowserAgentLeg` stands among the callback's agent legs beside the desk phones' SIP legs, so
the dialer stops, and hangs up, a ringing browser the way it does a phone (`hangup()`); what the
browser does comes back through `BrowserLegOwner`. The ringing itself is acd.browser_ringing's
`SipRinging`, under a key of its own per callback ("callback-" + the queue log's call id): the
caller's original call may end meanwhile, and its CallEnded must not stop the callback's ringing.
"""

from __future__ import annotations

from typing import Protocol

from acd.browser_ringing import SipRinging
from mediacore.engine import AnyEndpoint

#: What the agent's softphone shows as the caller's name on a callback.
CALLBACK_DISPLAY = "callback"


class BrowserLegOwner(Protocol):
    """The callback dialer, as a browser agent's leg reports to it."""

    def browser_claims(self, leg: BrowserAgentLeg) -> bool:
        """The agent answered: True if the callback is still theirs to take (the ACD agrees)."""

    def browser_answered(self, leg: BrowserAgentLeg, port: AnyEndpoint) -> None:
        """The agent answered and took it: `port` is the browser call's engine leg."""

    def browser_failed(self, leg: BrowserAgentLeg) -> None:
        """The browser refused or rang out before answering."""

    def browser_hung_up(self, leg: BrowserAgentLeg) -> None:
        """The agent hung up (or their browser went away) after answering."""

    def browser_dtmf(self, leg: BrowserAgentLeg, digits: str) -> None:
        """The agent pressed keys during the call: toward the customer."""

    def browser_hold(self, leg: BrowserAgentLeg, port: AnyEndpoint, held: bool) -> None:
        """The agent held or resumed the call."""


class BrowserAgentLeg:
    """One agent's browser rung for one callback."""

    def __init__(self, ringing: SipRinging, call_id: str, agent: str, number: str, owner: BrowserLegOwner) -> None:
        self.ringing = ringing
        self.call_id = call_id
        "The callback's (queue log) call id."
        self.agent = agent
        self.number = number
        "The number to be called back, shown to the agent."
        self.owner = owner
        self.ended = False
        #: Unused: set to None by the dialer like a SIP leg's, whose events come to a listener.
        self.listener: object = None

    @property
    def key(self) -> str:
        return f"callback-{self.call_id}"

    def start(self) -> bool:
        """Ring the agent's browser; False if it has none registered (or cannot take a call)."""
        return self.ringing.ring(_Ringing(self), self.agent, CALLBACK_DISPLAY,
                                 claim=lambda: not self.ended and self.owner.browser_claims(self),
                                 on_failed=lambda status, busy: self._failed())

    def hangup(self) -> None:
        """Stop the browser ringing, or end its call: the dialer's side ends it."""
        if not self.ended:
            self.ended = True
            self.ringing.stop_agent(self.key, self.agent, "remote_hangup")

    def _failed(self) -> None:
        if not self.ended:
            self.ended = True
            self.owner.browser_failed(self)


class _Ringing:
    """The callback as acd.browser_ringing.RingingCall: what the browser call reaches."""

    def __init__(self, leg: BrowserAgentLeg) -> None:
        self.leg = leg
        self.id = leg.key
        self.caller = leg.number

    def connect_browser(self, port: AnyEndpoint, extension: str) -> None:
        self.leg.owner.browser_answered(self.leg, port)

    def browser_failed(self, status: int, busy: bool) -> None:
        self.leg._failed()

    def send_dtmf_to_caller(self, digits: str) -> None:
        self.leg.owner.browser_dtmf(self.leg, digits)

    def hangup(self, reason: str, *, side: str) -> None:
        # Only the answered browser is left under the key: forget it (its call has ended).
        self.leg.ringing.stop(self.leg.key)
        if not self.leg.ended:
            self.leg.ended = True
            self.leg.owner.browser_hung_up(self.leg)

    def hold_for_browser(self, port: AnyEndpoint, held: bool) -> None:
        self.leg.owner.browser_hold(self.leg, port, held)
