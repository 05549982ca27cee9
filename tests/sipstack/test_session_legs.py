"""An inbound INVITE session through the real SipServer and SessionLayer, without sockets (the
server's datagrams are collected as parsed messages): RFC 3261 §17.2.1 and §13.3.1.4."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from sipstack import legs
from sipstack.addressing import Address, Transport
from sipstack.leg_events import Confirmed, EndCause, Ended, LegEvent
from sipstack.message import Request, Response, parse_message
from sipstack.registrar import RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.session import InboundLeg, Leg, SessionLayer

CALLER = Address(Transport.UDP, "127.0.0.1", 5070)


def invite() -> bytes:
    return (b"INVITE sip:1002@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-inv;rport\r\n"
            b"From: <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:1002@127.0.0.1>\r\n"
            b"Call-ID: legs@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@127.0.0.1:5070>\r\n"
            b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def in_dialog(method: str, cseq: int, to_tag: str, branch: str) -> bytes:
    return (f"{method} sip:callcenter@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
            f"From: <sip:1001@127.0.0.1>;tag=caller\r\nTo: <sip:1002@127.0.0.1>;tag={to_tag}\r\n"
            f"Call-ID: legs@127.0.0.1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class Site:
    """The server with a session layer whose INVITEs become InboundLegs nobody answers yet."""

    def __init__(self) -> None:
        self.server = SipServer(ServerSettings(nonce_secret=b"k" * 32), SecurityPolicy(), RegistrarPolicy(),
                                lambda user: None)
        self.sent: list[Request | Response] = []
        self.server.attach(asyncio.get_running_loop(), lambda data, _: self.sent.append(parse_message(data)))
        self.legs: list[InboundLeg] = []
        self.events: list[LegEvent] = []
        self.layer = SessionLayer(self.server, "127.0.0.1", {"sip_udp": 5060}, self._on_invite)

    def _on_invite(self, event: object) -> None:
        leg = InboundLeg(self.layer, event)  # type: ignore[arg-type]
        leg.listener = self._on_event
        self.legs.append(leg)

    def _on_event(self, leg: Leg, event: LegEvent) -> None:
        self.events.append(event)

    def statuses(self) -> list[int]:
        return [m.status for m in self.sent if isinstance(m, Response)]

    async def until(self, condition: object, what: str) -> None:
        for _ in range(1000):
            if condition():  # type: ignore[operator]
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"never happened: {what}")


@pytest.fixture
def fast_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legs, "T1", 0.01)
    monkeypatch.setattr(legs, "T2", 0.04)
    monkeypatch.setattr(legs, "ACK_WAIT", 0.3)


async def test_an_invite_the_tu_does_not_answer_at_once_gets_100_trying() -> None:
    site = Site()
    site.server.on_message(invite(), CALLER)
    assert site.statuses() == [100] and len(site.legs) == 1


async def test_the_2xx_is_retransmitted_until_the_ack_comes(fast_timers: None) -> None:
    site = Site()
    site.server.on_message(invite(), CALLER)
    leg = site.legs[0]
    leg.answer(b"")
    await site.until(lambda: site.statuses().count(200) >= 4, "three retransmissions of the 200")
    site.server.on_message(in_dialog("ACK", 1, leg.local_tag, "z9hG4bK-ack"), CALLER)
    assert any(isinstance(e, Confirmed) for e in site.events)
    after_ack = site.statuses().count(200)
    await asyncio.sleep(0.1)  # T2 twice over: no more retransmissions
    assert site.statuses().count(200) == after_ack


async def test_a_2xx_never_acked_ends_the_leg_with_bye(fast_timers: None) -> None:
    site = Site()
    site.server.on_message(invite(), CALLER)
    site.legs[0].answer(b"")
    await site.until(lambda: any(isinstance(e, Ended) for e in site.events), "the leg ended")
    ended = next(e for e in site.events if isinstance(e, Ended))
    assert ended.cause is EndCause.FAILED and ended.reason == "no ACK for 2xx" and not ended.by_remote
    assert isinstance(site.sent[-1], Request) and site.sent[-1].method == "BYE"


async def test_an_ended_call_is_freed_by_reference_counting_alone() -> None:
    # No reference cycle holds a leg (with its dialog and messages) once it ended: at a few
    # hundred calls per second the garbage collector would otherwise walk them all.
    site = Site()
    gc.disable()
    try:
        site.server.on_message(invite(), CALLER)
        leg = site.legs.pop()
        leg.answer(b"")
        site.server.on_message(in_dialog("ACK", 1, leg.local_tag, "z9hG4bK-ack"), CALLER)
        site.server.on_message(in_dialog("BYE", 2, leg.local_tag, "z9hG4bK-bye"), CALLER)
        assert any(isinstance(e, Ended) for e in site.events)
        assert site.statuses()[-1] == 200
        gone = weakref.ref(leg)
        del leg
        assert gone() is None
    finally:
        gc.enable()
