"""Call transfers (RFC 3515 REFER) on a bridged call, from either party.

Blind: the transferor's REFER names a number; the party who stays is routed there as if it had
dialled it (acd.blind_transfer).

Attended: the REFER's Refer-To carries `Replaces` (RFC 3891) naming the transferor's other
call. The party of that other call is moved into this one in the transferor's place, and the
transferor's leg of the other call is hung up with it.

`Parties` is the part of a call that transfers (and a supervisor's take-over, acd.takeover)
work through: which party is on which side, moving parties and endpoints in and out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from acd.blind_transfer import BlindTransfer, hang_up, recording_follows, tell_queue
from acd.cdr import CdrRecord
from acd.hold import release_hold
from mediacore.engine import AnyEndpoint, Endpoint
from mediacore.errors import MediaError
from sipstack.session import Leg, LegEvent, Refer

if TYPE_CHECKING:
    from acd.calls import Call, CallManager

log = logging.getLogger(__name__)


class Parties:
    """The part of `Call` (a mixin) that transfers work through: which party is on which side,
    and moving parties and endpoints in and out of the call."""

    manager: CallManager
    caller: str
    inbound: Leg
    answered_leg: Leg | None
    answered_at: float | None
    endpoint_a: Endpoint
    endpoint_b: Endpoint
    endpoints: list[Endpoint]
    transfer: BlindTransfer | None
    _ended: bool
    _timers: list[asyncio.TimerHandle]
    _origins: dict[int, list[int]]
    _detached: set[Leg]
    _parties: dict[str, str]
    #: The sides ("a", "b") whose party holds the call now (acd.hold).
    held_by: set[str]
    #: A browser agent's engine leg standing in for the callee (`Call.connect_browser`), with
    #: the id of the callee endpoint it stands in for: it is the "b" party only while that
    #: endpoint is still the call's (a transfer that installs another callee ends it).
    _browser: tuple[int, AnyEndpoint] | None = None
    #: An ad-hoc three-way room (acd.browser_transfer) one side's party was moved into, and
    #: that side: the party is bridged to the room's mix, not to the other side.
    adhoc_room: int | None = None
    room_side: str = "a"

    if TYPE_CHECKING:  # defined by Call
        answered_by: str
        def _on_inbound(self, leg: Leg, event: LegEvent) -> None: ...
        def _on_outbound(self, leg: Leg, event: LegEvent) -> None: ...
        def _renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint | None) -> None: ...
        def close_segment(self, side: str, cause: str) -> None: ...
        def segment_record(self, side: str, cause: str) -> CdrRecord: ...

    @property
    def ended(self) -> bool:
        return self._ended

    def side_of(self, leg: Leg | None) -> str | None:
        """"a" for the caller's side of a bridged call, "b" for the callee's, else None. The
        caller of a call a browser agent answered (or that is in a three-way room) has a side
        too: its re-INVITEs hold and resume like any party's."""
        if leg is None or self.answered_at is None:
            return None
        if self.answered_leg is None:
            bridged = self.browser_port is not None or self.adhoc_room is not None
            return "a" if bridged and leg is self.inbound else None
        return "a" if leg is self.inbound else "b" if leg is self.answered_leg else None

    def endpoint_of(self, side: str | None, *, other: bool = False) -> Endpoint:
        """The call's own SIP endpoint on `side` (the one a transfer moves or drops)."""
        return self.endpoint_b if (side == "b") != other else self.endpoint_a

    # -- the party actually bridged on each side: a SIP endpoint, or a browser agent's leg

    def set_browser(self, port: AnyEndpoint) -> None:
        """A browser agent's engine leg takes the callee's place (it answered, or an attended
        transfer moved the caller to it)."""
        self._browser = (self.endpoint_b.id, port)

    @property
    def browser_port(self) -> AnyEndpoint | None:
        """The browser agent's leg that is the call's "b" party now, else None (also once the
        caller left the agent for a three-way room: the room is what it is bridged to)."""
        if self._browser is None or self.answered_leg is not None or self.adhoc_room is not None:
            return None
        endpoint_id, port = self._browser
        return port if endpoint_id == self.endpoint_b.id else None

    def party_port(self, side: str | None, *, other: bool = False) -> AnyEndpoint:
        """The engine leg of the party on `side` as bridged now: what hold, recording and
        supervision must reach (a browser agent's leg rather than the unused callee endpoint)."""
        if (side == "b") != other:
            return self.browser_port or self.endpoint_b
        return self.endpoint_a

    def entered_room(self, side: str, room_id: int) -> None:
        """The party on `side` was moved into an ad-hoc three-way room (acd.browser_sip_side)."""
        self.adhoc_room, self.room_side = room_id, side

    def party_number(self, side: str | None, *, other: bool = False) -> str:
        key = "b" if (side == "b") != other else "a"
        return self._parties.get(key) or (self.answered_by if key == "b" else self.caller)

    def new_endpoint(self, codec: str, payload_type: int) -> Endpoint:
        m = self.manager
        endpoint = m.engine.create_endpoint(codec, payload_type, rtp_timeout=m.policy.rtp_timeout,
                                            telephone_event_pt=101)
        self.endpoints.append(endpoint)
        m.track_endpoint(endpoint, self)
        return endpoint

    def set_origin(self, endpoint: Endpoint, session_id: int, version: int = 1) -> None:
        """The o= session id and version of the SDP we send on `endpoint`'s leg (a leg moved in
        from elsewhere keeps counting where it was: RFC 4566 §5.2)."""
        self._origins[endpoint.id] = [session_id, version]

    def origin_of(self, endpoint: Endpoint) -> list[int] | None:
        return self._origins.get(endpoint.id)

    def add_timer(self, timer: asyncio.TimerHandle) -> None:
        self._timers.append(timer)

    def renegotiate(self, leg: Leg, sdp: bytes, endpoint: Endpoint) -> None:
        self._renegotiate(leg, sdp, endpoint)

    def restore_listener(self, side: str | None) -> None:
        if side == "a":
            self.inbound.listener = self._on_inbound
        elif self.answered_leg is not None:
            self.answered_leg.listener = self._on_outbound

    def install_party(self, side: str | None, leg: Leg, endpoint: Endpoint, number: str) -> None:
        """Put `leg` with `endpoint` on `side` in place of the party there (a transfer)."""
        m = self.manager
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        m.track_endpoint(endpoint, self)
        self._parties[side or "a"] = number
        self._parties["joined"] = number  # who answered the new segment (the CDR's answered_by)
        if side == "a":
            self.inbound, self.endpoint_a = leg, endpoint  # type: ignore[assignment]
            leg.listener = self._on_inbound
        else:
            self.answered_leg, self.endpoint_b = leg, endpoint  # type: ignore[assignment]
            leg.listener = self._on_outbound

    def detach_party(self, side: str, *, other: bool = False) -> tuple[Leg, Endpoint, str]:
        """Hand the party on `side` (or the other side) over to another call: this call will no
        longer end its leg nor destroy its endpoint."""
        key = "b" if (side == "b") != other else "a"
        leg = self.inbound if key == "a" else self.answered_leg
        assert leg is not None
        endpoint = self.endpoint_of(key)
        number = self.party_number(key)
        self._detached.add(leg)
        leg.listener = None
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
        return leg, endpoint, number

    def drop_endpoint(self, endpoint: Endpoint) -> None:
        m = self.manager
        if endpoint in self.endpoints:
            self.endpoints.remove(endpoint)
        m.forget_endpoint(endpoint)
        self._origins.pop(endpoint.id, None)
        try:
            m.engine.destroy(endpoint)
        except MediaError:
            pass


def on_refer(call: Call, leg: Leg, refer: Refer) -> None:
    """A REFER arrived on one of the call's legs: start the transfer it asks for, or refuse."""
    if (call.answered_at is None or call.ended or call.transfer is not None or call.side_of(leg) is None
            or call.answered_leg is None):
        # RFC 3515 §2.4.2: a REFER we will not act on is refused; 403 for a call that is not
        # (or no longer) a plain bridged two-party call of two SIP legs (a browser agent's
        # caller is handed on from the softphone, acd.browser_transfer).
        leg.reject_refer(403, "Forbidden: only a bridged call can be transferred")
        return
    if refer.replaces is not None:
        _attended(call, leg, refer)
        return
    BlindTransfer(call, leg, refer.target.user or "").start()


def _attended(call: Call, leg: Leg, refer: Refer) -> None:
    """Refer-To with Replaces: bridge the party of the transferor's other call (named by the
    Replaces dialog) with the party who stays in this one."""
    m = call.manager
    replaces = refer.replaces
    assert replaces is not None
    other_leg = m.sessions.find_dialog(replaces.call_id, replaces.to_tag, replaces.from_tag)
    other = m.call_of(other_leg) if other_leg is not None else None
    other_side = other.side_of(other_leg) if other is not None and other_leg is not None else None
    if other is None or other is call or other_side is None or other.answered_at is None or \
            other.ended or other.transfer is not None or other.answered_leg is None:
        # RFC 3891 §3: no such (confirmed) dialog: 481; said in the REFER's answer.
        leg.reject_refer(481, "Call/Transaction Does Not Exist: Replaces names no call to join")
        return
    side = call.side_of(leg)
    assert side is not None
    leg.accept_refer()
    # Whoever held whom (the transferor its callee, or the target) held the transferor: over.
    release_hold(other)
    release_hold(call)
    # The party of the other call (the transfer target) is moved here, in the transferor's place.
    moved_leg, moved_endpoint, moved_number = other.detach_party(other_side, other=True)
    origin = other.origin_of(moved_endpoint)
    other.hangup("transferred", side="system")
    keep = call.endpoint_of(side, other=True)
    old = call.endpoint_of(side)
    call.close_segment("caller" if side == "a" else "callee", "attended transfer")
    tell_queue(call, side, moved_number)
    call.install_party(side, moved_leg, moved_endpoint, moved_number)
    # RFC 4566 §5.2: the SDP we send the moved party goes on with its o= id and version.
    call.set_origin(moved_endpoint, *(origin or [m.next_session_id(), 1]))
    m.engine.connect(keep, moved_endpoint)
    recording_follows(call)
    call.drop_endpoint(old)
    log.info("call %s: attended transfer joins %s from call %s", call.id, moved_number, other.id)
    leg.listener = None
    leg.notify_refer(200, on_done=lambda: hang_up(leg))
