"""A queue offer to browser agents (acd.browser_ringing.SipRinging with `claim` and `on_failed`),
on the real media engine and browser-agent registry: each agent's browser is one offer of the
ACD — its refusal is that agent's missed offer alone, the ACD may have given the call to someone
else by the time the agent answers, and a withdrawn offer stops that agent's browser only."""

from __future__ import annotations

from typing import Any

import pytest

from acd.browser_ringing import SipRinging
from acd.webrtc_agents import AgentCallError, WebRtcAgents


class Client:
    """A browser's signalling end: the messages its page is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def ended(self, call_id: str) -> str | None:
        ends = [m for m in self.messages if m.get("call_id") == call_id and m.get("state") == "ended"]
        return ends[-1]["reason"] if ends else None


class QueueCall:
    """acd.calls.Call as SipRinging sees it, recording what reaches it."""

    id = "queue-call-1"
    caller = "13900139001"

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def connect_browser(self, port, extension: str) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("connected", extension))

    def browser_failed(self, status: int, busy: bool) -> None:
        self.events.append(("ring step failed", status))

    def send_dtmf_to_caller(self, digits: str) -> None:
        self.events.append(("dtmf", digits))

    def hangup(self, reason: str, *, side: str) -> None:
        self.events.append(("hangup", reason, side))

    def hold_for_browser(self, port, held: bool) -> None:  # type: ignore[no-untyped-def]
        self.events.append(("hold", held))


@pytest.fixture
async def agents(engine):  # type: ignore[no-untyped-def]
    registry = WebRtcAgents(engine)
    try:
        yield registry
    finally:
        await registry.close()


def offer(ringing: SipRinging, call: QueueCall, extension: str, claims: list[str], *,
          allow: bool = True) -> bool:
    return ringing.ring(call, extension, "王女士", claim=lambda: claims.append(extension) or allow,
                        on_failed=lambda status, busy: call.events.append(("missed", extension, status, busy)))


async def test_each_browsers_refusal_is_that_agents_missed_offer_and_the_others_ring_on(agents) -> None:  # type: ignore[no-untyped-def]
    ringing, call, claims = SipRinging(agents), QueueCall(), []
    first, second = Client(), Client()
    agents.register("2001", "林晓", first)
    agents.register("2002", "陈佳怡", second)
    assert offer(ringing, call, "2001", claims) and offer(ringing, call, "2002", claims)
    assert not offer(ringing, call, "2003", claims)      # no browser registered: nothing rings
    [one], [two] = agents.calls_of("2001"), agents.calls_of("2002")

    agents.reject("2001", one.id)
    assert call.events == [("missed", "2001", 486, True)]   # not the whole ring step failing
    assert not ringing.rings(call.id, "2001") and ringing.rings(call.id, "2002")

    # The ACD withdraws its offer to 2002 (its ring timeout): that browser stops, nothing is missed twice.
    ringing.stop_agent(call.id, "2002", "no_answer")
    assert second.ended(two.id) == "no_answer"
    assert call.events == [("missed", "2001", 486, True)] and claims == []
    assert not ringing.ringing(call.id)


async def test_an_answer_the_acd_no_longer_allows_ends_that_browser_and_connects_nothing(agents) -> None:  # type: ignore[no-untyped-def]
    ringing, call, claims = SipRinging(agents), QueueCall(), []
    client = Client()
    agents.register("2001", "林晓", client)
    assert offer(ringing, call, "2001", claims, allow=False)
    [browser_call] = agents.calls_of("2001")
    with pytest.raises(AgentCallError) as refused:
        agents.answer("2001", browser_call.id)
    assert refused.value.code == "answered_elsewhere"
    assert claims == ["2001"] and call.events == []        # neither connected nor counted as missed
    assert client.ended(browser_call.id) == "answered_elsewhere"
    assert agents.calls_of("2001") == [] and not ringing.ringing(call.id)


async def test_the_agent_the_acd_gives_the_call_connects_and_the_other_browsers_stop(agents) -> None:  # type: ignore[no-untyped-def]
    ringing, call, claims = SipRinging(agents), QueueCall(), []
    first, second = Client(), Client()
    agents.register("2001", "林晓", first)
    agents.register("2002", "陈佳怡", second)
    offer(ringing, call, "2001", claims)
    offer(ringing, call, "2002", claims)
    [one], [two] = agents.calls_of("2001"), agents.calls_of("2002")
    agents.answer("2002", two.id)
    assert claims == ["2002"] and call.events == [("connected", "2002")]
    assert first.ended(one.id) == "answered_elsewhere"
    assert ringing.rings(call.id, "2002") and not ringing.rings(call.id, "2001")
    # The agent hangs up: the SIP call hears it from the agent's side.
    agents.hangup("2002", two.id)
    assert call.events[-1] == ("hangup", "agent hangup", "callee")
