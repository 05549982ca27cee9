"""Which party is on which side of a call (acd.transfer.Parties) when a browser agent answered
it: the agent's engine leg is the callee's side while it stands in for the call's callee
endpoint, and no longer once a transfer installs another callee or the caller leaves for a
three-way room. Real engine legs (an RTP endpoint, a PCM port) on the real media engine."""

from __future__ import annotations

from dataclasses import dataclass

from acd.transfer import Parties
from mediacore.engine import MediaEngine


@dataclass(eq=False)
class _Leg:
    """A SIP leg as far as the side bookkeeping sees one (identity only)."""

    name: str


class _Call(Parties):
    def __init__(self, engine: MediaEngine) -> None:
        self.inbound = _Leg("caller")  # type: ignore[assignment]
        self.answered_leg = None
        self.answered_at = 1.0
        self.endpoint_a = engine.create_endpoint()
        self.endpoint_b = engine.create_endpoint()
        self._parties = {}


async def test_a_browser_agents_leg_is_the_callee_side_while_it_stands_in_for_the_callee(engine: MediaEngine) -> None:
    call = _Call(engine)
    assert call.browser_port is None and call.side_of(call.inbound) is None   # nobody answered yet
    port = engine.create_pcm_port()
    call.set_browser(port)
    # The caller's re-INVITEs now hold and resume toward the agent.
    assert call.side_of(call.inbound) == "a"
    assert call.party_port("b") is port and call.party_port("a", other=True) is port
    assert call.party_port("a") is call.endpoint_a and call.party_port("b", other=True) is call.endpoint_a
    # What a transfer moves or drops is still the call's own SIP endpoint.
    assert call.endpoint_of("b") is call.endpoint_b


async def test_a_transfer_that_installs_another_callee_ends_the_agents_part(engine: MediaEngine) -> None:
    call = _Call(engine)
    port = engine.create_pcm_port()
    call.set_browser(port)
    before = call.endpoint_b
    # A blind transfer puts a fresh endpoint on the callee's side for its target ...
    call.endpoint_b = engine.create_endpoint()
    assert call.browser_port is None and call.party_port("b") is call.endpoint_b
    # ... and, when it fails, gives the call back as it was: the agent again.
    call.endpoint_b = before
    assert call.browser_port is port
    # An attended transfer installs a SIP party with its leg.
    call.answered_leg = _Leg("target")  # type: ignore[assignment]
    assert call.browser_port is None and call.side_of(call.answered_leg) == "b"


async def test_a_caller_in_a_three_way_room_is_bridged_to_the_room(engine: MediaEngine) -> None:
    call = _Call(engine)
    call.set_browser(engine.create_pcm_port())
    room = engine.create_room()
    call.entered_room("a", room)
    assert call.browser_port is None and call.party_port("b") is call.endpoint_b
    assert (call.adhoc_room, call.room_side) == (room, "a")
    assert call.side_of(call.inbound) == "a"   # its hold leaves the room (acd.hold)
