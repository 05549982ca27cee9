"""The member's name on a browser agent's ring.

When a SIP call rings a browser agent (`acd.browser_ringing.SipRinging.ring`), the browser is
rung at once with the caller's number and SIP display name; this module then looks the number
up in the CRM (`acd.lookups.CrmLookups.caller`) and, if a member holds it, sends the browser a
follow-up `caller_info` message (docs/webrtc-signalling.md) naming the member and their level.
The look-up never delays the ring: it runs as its own task, bounded by `LOOKUP_TIMEOUT`, and a
slow, failing or empty look-up simply sends nothing.

A ring-all step rings several agents for the same number at the same moment: they share one
look-up (`CallerInfoAnnouncer` keeps the look-ups in flight by number).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from acd.lookups import CallerInfo
from acd.webrtc_agents import BrowserCall, WebRtcAgents

log = logging.getLogger(__name__)

#: Seconds a look-up may take. The CRM answers from indexes in milliseconds; beyond this the
#: agent has most likely answered already (a ring lasts a few seconds) and the name would come
#: too late to help them greet the caller, so the look-up is abandoned.
LOOKUP_TIMEOUT = 1.5
#: Longest caller number looked up (E.164 allows 15 digits; a SIP user part with a prefix or
#: a `tel:` form is a little longer). Anything longer is nobody's number.
MAX_NUMBER_LENGTH = 32


class CallerLookup(Protocol):
    """The part of `acd.lookups.CrmLookups` this module needs."""

    async def caller(self, number: str) -> CallerInfo | None:
        """The member calling from `number` (any form of it), or None."""


@dataclass(frozen=True)
class MemberOnCall:
    """What the agent's page is told about the member calling."""

    member_id: int
    name: str
    vip_rank: int
    "Rank of the member's level; 0 for none or the lowest (the page marks higher ranks VIP)."
    blacklisted: bool

    @classmethod
    def from_caller(cls, info: CallerInfo) -> MemberOnCall:
        return cls(info.member_id, info.name, max(0, info.vip_rank), info.blacklisted)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.member_id, "name": self.name, "vip_rank": self.vip_rank,
                "blacklisted": self.blacklisted}


class CallerInfoAnnouncer:
    """Looks up who rings a browser agent and tells their page (`caller_info`)."""

    def __init__(self, lookups: CallerLookup, *, timeout: float = LOOKUP_TIMEOUT) -> None:
        self.lookups = lookups
        self.timeout = timeout
        self._in_flight: dict[str, asyncio.Task[MemberOnCall | None]] = {}
        self._senders: set[asyncio.Task[None]] = set()

    def announce(self, agents: WebRtcAgents, call: BrowserCall) -> None:
        """Start looking up `call.peer` (the caller's number); when a member is found in time and
        the browser call is still live, send its agent `caller_info`. Returns at once."""
        number = call.peer.strip()
        if not number or len(number) > MAX_NUMBER_LENGTH:
            return
        lookup = self._in_flight.get(number)
        if lookup is None:
            lookup = asyncio.get_running_loop().create_task(self._look_up(number), name=f"caller-info {number}")
            self._in_flight[number] = lookup
            lookup.add_done_callback(lambda _: self._in_flight.pop(number, None))
        sender = asyncio.get_running_loop().create_task(self._send_when_found(agents, call.id, lookup))
        self._senders.add(sender)   # the loop keeps only weak references to tasks
        sender.add_done_callback(self._senders.discard)

    async def drain(self) -> None:
        """Wait until every look-up started so far has answered (or given up) and its
        `caller_info`, if any, has been sent."""
        while self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)

    async def close(self) -> None:
        """Shutdown: abandon the look-ups in flight."""
        for task in [*self._senders, *self._in_flight.values()]:
            task.cancel()
        await asyncio.gather(*self._senders, *self._in_flight.values(), return_exceptions=True)

    async def _look_up(self, number: str) -> MemberOnCall | None:
        try:
            info = await asyncio.wait_for(self.lookups.caller(number), self.timeout)
        except TimeoutError:
            log.warning("caller look-up of %s took over %.1f s: the ring shows no member", number, self.timeout)
            return None
        except Exception:
            # The CRM's trouble must not reach the call: the agent still sees the number.
            log.exception("caller look-up of %s failed", number)
            return None
        return MemberOnCall.from_caller(info) if info is not None else None

    async def _send_when_found(self, agents: WebRtcAgents, call_id: str,
                               lookup: asyncio.Task[MemberOnCall | None]) -> None:
        # shield: a sender cancelled must not cancel the look-up other rings may share.
        member = await asyncio.shield(lookup)
        if member is None:
            return
        agents.inform(call_id, {"type": "caller_info", "call_id": call_id, "member": member.to_json()})
