"""Session timers (RFC 4028) on the legs we place: the INVITE offers a timer, a 422 is retried
once with the callee's Min-SE, and whatever the callee's 2xx decides is run — we refresh (with
UPDATE, or a re-INVITE when the callee does not take UPDATE) or we end a session the callee
stopped refreshing with BYE. The callee is a scripted phone on a real UDP socket."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipstack import session, session_timer
from sipstack.addressing import Address, Transport
from sipstack.message import Request, Response, parse_message
from sipstack.registrar import RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.session_timer import SessionTimer, min_se_of, offer_headers
from sipstack.transport.manager import TransportManager
from sipstack.uri import NameAddr, SipUri, parse_uri

pytestmark = pytest.mark.peers

Message = Request | Response
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def test_the_answer_decides_the_timer() -> None:
    def answer(*headers: str) -> Response:
        lines = ["SIP/2.0 200 OK", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", "From: <sip:a@x>;tag=a",
                 "To: <sip:b@x>;tag=b", "Call-ID: c@x", "CSeq: 1 INVITE", *headers, "Content-Length: 0", "", ""]
        message = parse_message("\r\n".join(lines).encode())
        assert isinstance(message, Response)
        return message

    assert SessionTimer.from_answer(answer()) is None
    timer = SessionTimer.from_answer(answer("Session-Expires: 1800;refresher=uas", "Allow: INVITE, UPDATE"))
    assert timer == SessionTimer(1800, "uas") and timer is not None and timer.update_allowed
    timer = SessionTimer.from_answer(answer("Session-Expires: 600"))   # no refresher named: ours
    assert timer == SessionTimer(600, "uac") and timer is not None and not timer.update_allowed
    assert SessionTimer.from_answer(answer("Session-Expires: 30;refresher=uac")) == SessionTimer(90, "uac")
    assert SessionTimer.from_answer(answer("Session-Expires: soon")) is None
    assert dict(offer_headers()) == {"Supported": "timer", "Session-Expires": "1800", "Min-SE": "90"}
    assert dict(offer_headers(10))["Session-Expires"] == "90"
    assert min_se_of(answer("Min-SE: 2400")) == 2400 and min_se_of(answer()) is None


class Callee:
    """The session layer in-process placing one OutboundLeg towards a scripted phone."""

    async def __aenter__(self) -> Callee:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.server = SipServer(ServerSettings(), SecurityPolicy(), RegistrarPolicy(), lambda user: None)
        self.transports = TransportManager(self.server.on_message, self.server.flow_closed)
        self.server.attach(loop, self.transports.send)
        await self.transports.listen("127.0.0.1", udp_port=0)
        port = self.transports.port(Transport.UDP)
        assert port is not None
        self.layer = session.SessionLayer(self.server, "127.0.0.1", {"sip_udp": port}, lambda event: None)
        self.phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.phone.bind(("127.0.0.1", 0))
        self.phone.setblocking(False)
        self.phone_port = self.phone.getsockname()[1]
        self.events: asyncio.Queue[session.LegEvent] = asyncio.Queue()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.phone.close()
        await self.transports.close()

    def place(self) -> session.OutboundLeg:
        target = Address(Transport.UDP, "127.0.0.1", self.phone_port)
        leg = session.OutboundLeg(
            self.layer, target=target, request_uri=parse_uri(f"sip:1002@127.0.0.1:{self.phone_port}"),
            from_addr=NameAddr(SipUri("sip", "1001", None, "127.0.0.1", None), None, {}),
            to_addr=NameAddr(SipUri("sip", "1002", None, "127.0.0.1", None), None, {}), sdp=SDP)
        leg.listener = lambda _, event: self.events.put_nowait(event)
        leg.start()
        return leg

    async def receive(self, first_line: str) -> Request:
        while True:
            data, self.server_addr = await asyncio.wait_for(self.loop.sock_recvfrom(self.phone, 65535), timeout=10)
            if data.startswith(first_line.encode()):
                message = parse_message(data)
                assert isinstance(message, Request)
                return message

    async def respond(self, request: Request, status: str, *headers: str, to_tag: str = "ph") -> None:
        lines = [f"SIP/2.0 {status}"]
        for name, value in request.headers:
            if name == "To" and ";tag=" not in value:
                value = f"{value};tag={to_tag}"
            if name in ("Via", "From", "To", "Call-ID", "CSeq"):
                lines.append(f"{name}: {value}")
        lines += [f"Contact: <sip:1002@127.0.0.1:{self.phone_port}>", *headers, "Content-Length: 0", "", ""]
        await self.loop.sock_sendto(self.phone, "\r\n".join(lines).encode(), self.server_addr)

    async def next_event(self) -> session.LegEvent:
        return await asyncio.wait_for(self.events.get(), timeout=10)


async def test_the_invite_offers_a_timer_and_a_422_is_retried_with_the_callees_minimum() -> None:
    async with Callee() as phone:
        phone.place()
        invite = await phone.receive("INVITE ")
        assert "timer" in (invite.headers.get("Supported") or "")
        assert (invite.headers.get("Session-Expires"), invite.headers.get("Min-SE")) == ("1800", "90")
        await phone.respond(invite, "422 Session Interval Too Small", "Min-SE: 2400")
        again = await phone.receive("INVITE ")
        assert (again.headers.get("Session-Expires"), again.headers.get("Min-SE")) == ("2400", "2400")
        assert again.cseq.number == invite.cseq.number + 1 and again.call_id == invite.call_id
        await phone.respond(again, "422 Session Interval Too Small", "Min-SE: 3600")   # only one retry
        event = await phone.next_event()
        assert isinstance(event, session.Ended) and event.status == 422


@pytest.mark.parametrize("allow", ["INVITE, ACK, BYE, UPDATE", "INVITE, ACK, BYE"])
async def test_asked_to_refresh_the_leg_refreshes_at_half_the_interval(monkeypatch: pytest.MonkeyPatch,
                                                                      allow: str) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE", 3)
    method = "UPDATE" if "UPDATE" in allow else "INVITE"
    async with Callee() as phone:
        phone.place()
        invite = await phone.receive("INVITE ")
        await phone.respond(invite, "200 OK", "Session-Expires: 4;refresher=uac", "Require: timer", f"Allow: {allow}")
        await phone.receive("ACK ")
        assert isinstance(await phone.next_event(), session.Answered)
        for _ in range(2):   # every 2 s, as long as the phone answers
            refresh = await phone.receive(f"{method} ")
            assert refresh.headers.get("Session-Expires") == "4;refresher=uac"
            assert bool(refresh.body) == (method == "INVITE")   # a re-INVITE repeats our SDP
            await phone.respond(refresh, "200 OK")
            if method == "INVITE":
                ack = await phone.receive("ACK ")
                assert ack.cseq.number == refresh.cseq.number
        assert phone.events.empty()
        refresh = await phone.receive(f"{method} ")
        await phone.respond(refresh, "481 Call/Transaction Does Not Exist")   # the phone lost the call
        await phone.receive("BYE ")
        event = await phone.next_event()
        assert isinstance(event, session.Ended)
        assert (event.reason, event.by_remote) == (session_timer.SESSION_EXPIRED, False)


async def test_a_callee_that_stops_refreshing_is_ended_with_bye(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE", 3)
    async with Callee() as phone:
        leg = phone.place()
        invite = await phone.receive("INVITE ")
        await phone.respond(invite, "200 OK", "Session-Expires: 3;refresher=uas", "Allow: INVITE, ACK, BYE, UPDATE")
        await phone.receive("ACK ")
        assert isinstance(await phone.next_event(), session.Answered)
        assert leg.session_timer == SessionTimer(3, "uas")
        bye = await phone.receive("BYE ")   # 3 - min(32, 3/3) = 2 s without a refresh
        assert bye.call_id == invite.call_id
        event = await phone.next_event()
        assert isinstance(event, session.Ended) and event.reason == session_timer.SESSION_EXPIRED


async def test_a_2xx_without_session_expires_means_no_timer() -> None:
    async with Callee() as phone:
        leg = phone.place()
        invite = await phone.receive("INVITE ")
        await phone.respond(invite, "200 OK")
        await phone.receive("ACK ")
        assert isinstance(await phone.next_event(), session.Answered)
        assert leg.session_timer is None and leg._expiry is None
        leg.hangup()
        await phone.receive("BYE ")
