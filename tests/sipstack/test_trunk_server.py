"""`SipServer.send_request(..., on_response=...)`: the responses of a client transaction go to
whoever sent its request (how trunk registration, qualify and call legs hear back)."""

from __future__ import annotations

import asyncio

from sipstack.addressing import Address, Transport
from sipstack.message import make_response
from sipstack.registrar import RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.transaction_layer import ResponseReceived
from sipstack.trunk import LocalContact, Qualify, TrunkSettings

PROVIDER = Address(Transport.UDP, "192.0.2.1", 5060)


def server_on_this_loop() -> tuple[SipServer, list[bytes], list[object]]:
    server = SipServer(ServerSettings(), SecurityPolicy(), RegistrarPolicy(), lambda user: None)
    wire: list[bytes] = []
    server.attach(asyncio.get_running_loop(), lambda data, destination: wire.append(data))
    others: list[object] = []
    server.response_handler = others.append
    return server, wire, others


async def test_provisional_and_final_responses_go_to_the_senders_callback_only() -> None:
    server, wire, others = server_on_this_loop()
    trunk = TrunkSettings.from_table({"name": "t", "host": "192.0.2.1"})
    probe = Qualify(trunk, LocalContact("192.0.2.10", 5060, Transport.UDP)).on_timer(0.0)
    assert probe is not None
    heard: list[object] = []
    server.send_request(probe, PROVIDER, on_response=heard.append)
    assert wire and wire[0].startswith(b"OPTIONS sip:192.0.2.1:5060 SIP/2.0")
    for status in (100, 200):
        server.on_message(make_response(probe, status, to_tag="p").to_bytes(), PROVIDER)
    assert [e.response.status for e in heard if isinstance(e, ResponseReceived)] == [100, 200]
    # RFC 3261 §17.1.2.2: a retransmitted final is absorbed by the transaction; nobody hears it.
    server.on_message(make_response(probe, 200, to_tag="p").to_bytes(), PROVIDER)
    assert len(heard) == 2 and others == []


async def test_without_a_callback_responses_still_reach_the_response_handler() -> None:
    server, _, others = server_on_this_loop()
    trunk = TrunkSettings.from_table({"name": "t", "host": "192.0.2.1"})
    probe = Qualify(trunk, LocalContact("192.0.2.10", 5060, Transport.UDP)).on_timer(0.0)
    assert probe is not None
    server.send_request(probe, PROVIDER)
    server.on_message(make_response(probe, 404, to_tag="p").to_bytes(), PROVIDER)
    assert [e.response.status for e in others if isinstance(e, ResponseReceived)] == [404]
