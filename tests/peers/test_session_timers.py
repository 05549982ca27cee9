"""Session timers (RFC 4028) with a real phone (SIPp) as the caller: an interval below the
minimum is refused with 422 and Min-SE, an acceptable one is confirmed in the 2xx with the
caller as refresher, and an UPDATE without SDP refreshes it; a session nobody refreshes is ended
with BYE."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipstack import session, session_timer
from sipstack.addressing import Transport
from sipstack.message import Request, Response, parse_message
from sipstack.registrar import RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.session_timer import MIN_SE, SessionIntervalTooSmall, SessionTimer
from sipstack.transaction_layer import RequestReceived
from sipstack.transport.manager import TransportManager
from tests.peers.test_dialplan import Site, site_fixture

pytestmark = pytest.mark.peers

Message = Request | Response

site = site_fixture("")


def invite(*headers: str) -> bytes:
    lines = ["INVITE sip:1002@pbx.example SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
             "From: <sip:1001@pbx.example>;tag=a", "To: <sip:1002@pbx.example>", "Call-ID: x@192.0.2.1",
             "CSeq: 1 INVITE", "Contact: <sip:1001@192.0.2.1>", "Max-Forwards: 70", *headers,
             "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def test_the_uas_chooses_the_interval_and_the_refresher() -> None:
    negotiate = SessionTimer.negotiate
    assert negotiate(parse_message(invite())) is None   # nobody asked, and the caller cannot refresh
    assert negotiate(parse_message(invite("Supported: timer"))) == SessionTimer(1800, "uac")
    # The caller may ask us to refresh: we do, with UPDATE, if it allows UPDATE; else no timer.
    assert negotiate(parse_message(invite("Supported: replaces, timer", "Allow: INVITE, ACK, BYE, UPDATE",
                                          "Session-Expires: 600;refresher=uas"))) == SessionTimer(600, "uas")
    assert negotiate(parse_message(invite("Supported: timer", "Session-Expires: 600;refresher=uas"))) is None
    # A caller without timer support cannot retry after a 422: no timer it could not refresh.
    assert negotiate(parse_message(invite("Session-Expires: 30"))) is None
    with pytest.raises(SessionIntervalTooSmall):
        negotiate(parse_message(invite("Supported: timer", f"Session-Expires: {MIN_SE - 1}")))


def test_a_short_interval_gets_422_and_a_refresh_keeps_the_call(site: Site) -> None:
    try:
        site.phone("1002", "uas_answer.xml")
        result = site.dial("1001", "1002", "timer_uac_refresh.xml", talk_ms=300)
        assert result.successful == 1, result.output
        assert site.phone_result("1002").successful == 1
    finally:
        site.hang_up_phones()
    [cdr] = site.cdrs("1001", 1)
    assert (cdr["disposition"], cdr["hangup_side"]) == ("ANSWERED", "caller")


class Uas:
    """The session layer in-process over a real UDP socket, answering every INVITE at once,
    and a scripted phone. RFC 4028's 90 s minimum would make these tests wait a minute, so
    they lower it (monkeypatch) to a few seconds."""

    async def __aenter__(self) -> Uas:
        loop = asyncio.get_running_loop()
        self.loop = loop
        server = SipServer(ServerSettings(), SecurityPolicy(), RegistrarPolicy(), lambda user: None)
        self.transports = TransportManager(server.on_message, server.flow_closed)
        server.attach(loop, self.transports.send)
        await self.transports.listen("127.0.0.1", udp_port=0)
        port = self.transports.port(Transport.UDP)
        assert port is not None
        self.port = port
        self.ended: asyncio.Future[session.Ended] = loop.create_future()

        def on_invite(event: RequestReceived) -> None:
            leg = session.InboundLeg(layer, event)
            leg.listener = lambda _, e: self.ended.set_result(e) if isinstance(e, session.Ended) else None
            leg.answer(b"")

        layer = session.SessionLayer(server, "127.0.0.1", {"sip_udp": port}, on_invite)
        self.phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.phone.bind(("127.0.0.1", 0))
        self.phone.setblocking(False)
        self.here = f"127.0.0.1:{self.phone.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.phone.close()
        await self.transports.close()

    async def send(self, text: str) -> None:
        await self.loop.sock_sendto(self.phone, text.encode(), ("127.0.0.1", self.port))

    async def receive(self, first_line: str) -> Message:
        while True:
            data = await asyncio.wait_for(self.loop.sock_recv(self.phone, 65535), timeout=10)
            if data.startswith(first_line.encode()):
                return parse_message(data)

    async def call(self, *headers: str) -> Message:
        """INVITE with `headers`, the 200, our ACK: the answered 200."""
        text = invite(*headers).decode().replace("192.0.2.1", self.here).replace("pbx.example", f"127.0.0.1:{self.port}")
        await self.send(text)
        ok = await self.receive("SIP/2.0 200")
        await self.send(f"ACK sip:callcenter@127.0.0.1:{self.port} SIP/2.0\r\nVia: SIP/2.0/UDP {self.here};branch=z9hG4bK2"
                        f"\r\nFrom: <sip:1001@127.0.0.1>;tag=a\r\nTo: {ok.headers.get('To')}\r\n"
                        f"Call-ID: x@{self.here}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        return ok

    async def answer(self, request: Message, status: str = "200 OK") -> None:
        lines = [f"SIP/2.0 {status}", *(f"{name}: {value}" for name, value in request.headers
                                        if name in ("Via", "From", "To", "Call-ID", "CSeq")), "Content-Length: 0", "", ""]
        await self.send("\r\n".join(lines))


async def test_a_session_the_caller_stops_refreshing_is_ended_with_bye(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE", 3)
    async with Uas() as uas:
        ok = await uas.call("Supported: timer", "Session-Expires: 3;refresher=uac")
        assert ok.headers.get("Session-Expires") == "3;refresher=uac" and ok.headers.get("Require") == "timer"
        bye = await uas.receive("BYE ")   # no refresh came: 2 s later (3 - min(32, 3/3)) the server ends it
        assert bye.call_id == f"x@{uas.here}"
        event = await asyncio.wait_for(uas.ended, timeout=5)
        assert (event.cause, event.reason, event.by_remote) == (
            session.EndCause.FAILED, session.SESSION_EXPIRED, False)


async def test_asked_to_refresh_the_server_sends_update_at_half_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE", 3)
    async with Uas() as uas:
        ok = await uas.call("Supported: timer", "Allow: INVITE, ACK, BYE, UPDATE", "Session-Expires: 4;refresher=uas")
        assert ok.headers.get("Session-Expires") == "4;refresher=uas"
        for _ in range(2):   # every 2 s, as long as the phone answers
            update = await uas.receive("UPDATE ")
            assert update.headers.get("Session-Expires") == "4;refresher=uas" and not update.body
            await uas.answer(update)
        assert not uas.ended.done()
        update = await uas.receive("UPDATE ")
        await uas.answer(update, "481 Call/Transaction Does Not Exist")   # the phone lost the call
        await uas.receive("BYE ")
        event = await asyncio.wait_for(uas.ended, timeout=5)
        assert (event.reason, event.by_remote) == (session.SESSION_EXPIRED, False)
