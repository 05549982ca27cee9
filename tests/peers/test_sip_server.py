"""The server process over real sockets, driven by a small scripted client: every transport,
SHA-256 digest, answers to malformed input, OPTIONS, health, and registrations kept across a restart."""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from bench.server import ServerProcess
from sipstack.auth import build_authorization, select_challenge
from sipstack.framing import StreamFramer
from sipstack.message import Response, parse_message

Exchange = Callable[[bytes], Response]


def register_text(user: str, transport: str, local: str, *, cseq: int = 1, call_id: str = "",
                  authorization: str = "", contact_host: str | None = None, expires: int = 300) -> bytes:
    call_id = call_id or uuid.uuid4().hex
    contact_host = contact_host or local
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/{transport} {local};branch=z9hG4bK{uuid.uuid4().hex};rport",
        "Max-Forwards: 70",
        f'From: "坐席 {user}" <sip:{user}@127.0.0.1>;tag=t{cseq}',
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{contact_host};transport={transport.lower()}>",
        f"Expires: {expires}",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def digest_register(exchange: Exchange, user: str, password: str, transport: str, local: str,
                    contact_host: str | None = None) -> Response:
    """REGISTER, answer the 401 with digest credentials, return the final response."""
    call_id = uuid.uuid4().hex
    first = exchange(register_text(user, transport, local, call_id=call_id, contact_host=contact_host))
    assert first.status == 401, first
    challenge = select_challenge(first.headers.get_all("WWW-Authenticate"))
    auth = build_authorization(challenge, username=user, password=password, method="REGISTER",
                               uri="sip:127.0.0.1")
    return exchange(register_text(user, transport, local, cseq=2, call_id=call_id,
                                  authorization=auth, contact_host=contact_host))


def udp_exchange(port: int) -> tuple[Exchange, str, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def exchange(data: bytes) -> Response:
        sock.sendto(data, ("127.0.0.1", port))
        reply = parse_message(sock.recv(65535))
        assert isinstance(reply, Response)
        return reply

    return exchange, f"127.0.0.1:{sock.getsockname()[1]}", sock


def stream_exchange(sock: socket.socket | ssl.SSLSocket) -> Exchange:
    framer = StreamFramer()
    pending: list[bytes] = []

    def exchange(data: bytes) -> Response:
        sock.sendall(data)
        while not pending:
            chunk = sock.recv(65535)
            assert chunk, "server closed the connection"
            pending.extend(f for f in framer.feed(chunk) if isinstance(f, bytes))
        reply = parse_message(pending.pop(0))
        assert isinstance(reply, Response)
        return reply

    return exchange


def test_tls_registration_with_the_self_signed_certificate(demo_server: ServerProcess) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the demo's certificate is self-signed
    raw = socket.create_connection(("127.0.0.1", demo_server.ports["sip_tls"]), timeout=5)
    with ctx.wrap_socket(raw) as tls:
        local = f"127.0.0.1:{tls.getsockname()[1]}"
        reply = digest_register(stream_exchange(tls), "1002", "demo1002", "TLS", local)
        assert reply.status == 200
        assert reply.contacts[0].params["expires"] == "300"


def test_websocket_registration_and_the_flow_ends_with_the_socket(demo_server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{demo_server.ports['http']}/sip"
    with ws_connect(url, subprotocols=["sip"]) as ws:
        assert ws.subprotocol == "sip"

        def exchange(data: bytes) -> Response:
            ws.send(data.decode())
            reply = parse_message(ws.recv(timeout=5).encode())
            assert isinstance(reply, Response)
            return reply

        # RFC 7118 §5: a browser's Contact host is a random `.invalid` name; only the socket reaches it.
        reply = digest_register(exchange, "1003", "demo1003", "WS", "df7jal23ls0d.invalid",
                                contact_host="df7jal23ls0d.invalid")
        assert reply.status == 200
        assert demo_server.metric("callcenter_sip_registrations") == 1
    # With the WebSocket gone nothing can reach that contact: the binding goes too.
    for _ in range(50):
        if demo_server.metric("callcenter_sip_registrations") == 0:
            break
        time.sleep(0.1)
    assert demo_server.metric("callcenter_sip_registrations") == 0


def test_websocket_without_the_sip_subprotocol_is_refused(demo_server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{demo_server.ports['http']}/sip"
    # RFC 7118 §4.1: the handshake is refused (HTTP 403) when "sip" is not offered.
    with pytest.raises(InvalidStatus):
        with ws_connect(url) as ws:
            ws.recv(timeout=5)


def test_sha256_digest_when_configured(tmp_path: Path) -> None:
    config = tmp_path / "sha.toml"
    config.write_text('[sip]\ndigest_algorithms = ["SHA-256", "MD5"]\n')
    server = ServerProcess(tmp_path / "data", extra_args=["--config", str(config)])
    server.start()
    try:
        exchange, local, sock = udp_exchange(server.sip_port)
        with sock:
            first = exchange(register_text("1004", "UDP", local))
            algorithms = [v.split("algorithm=")[1].split(",")[0] for v in first.headers.get_all("WWW-Authenticate")]
            assert algorithms == ["SHA-256", "MD5"]  # RFC 8760 §2.4: preferred first
            reply = digest_register(exchange, "1004", "demo1004", "UDP", local)
            assert reply.status == 200
    finally:
        server.stop()


def test_malformed_requests_get_a_400_that_says_why_and_the_server_carries_on(demo_server: ServerProcess) -> None:
    exchange, local, sock = udp_exchange(demo_server.sip_port)
    with sock:
        bad = register_text("1001", "UDP", local).replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE")
        reply = exchange(bad)
        assert reply.status == 400 and "CSeq" in reply.reason
        version = register_text("1001", "UDP", local).replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
        assert exchange(version).status == 505
        unknown = register_text("1001", "UDP", local).replace(b"Expires: 300", b"Require: teleportation")
        reply = exchange(unknown)
        assert reply.status == 420 and reply.headers.get("Unsupported") == "teleportation"
        # Garbage gets no answer and does not hurt: the next request is served.
        sock.sendto(b"\x00\xffnot sip at all\r\n\r\n", ("127.0.0.1", demo_server.sip_port))
        assert digest_register(exchange, "1001", "demo1001", "UDP", local).status == 200


def test_options_says_what_the_server_can_do(demo_server: ServerProcess) -> None:
    exchange, local, sock = udp_exchange(demo_server.sip_port)
    with sock:
        text = register_text("1001", "UDP", local).replace(b"REGISTER", b"OPTIONS")
        reply = exchange(text)
    assert reply.status == 200
    assert "INVITE" in reply.headers.get("Allow") and "REGISTER" in reply.headers.get("Allow")
    assert reply.headers.get("Accept") == "application/sdp"
    assert "outbound" in reply.headers.get_all("Supported")


def test_health_and_metrics(demo_server: ServerProcess) -> None:
    health = httpx.get(f"{demo_server.http_url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["components"]["sip"] and health.json()["components"]["database"]
    assert "# TYPE callcenter_sip_registrations gauge" in httpx.get(f"{demo_server.http_url}/metrics").text


def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data)
    server.start()
    try:
        exchange, local, sock = udp_exchange(server.sip_port)
        with sock:
            assert digest_register(exchange, "1005", "demo1005", "UDP", local).status == 200
    finally:
        assert server.stop() == 0  # SIGTERM: a clean exit that flushes the bindings
    again = ServerProcess(data)
    again.start()
    try:
        assert again.metric("callcenter_sip_registrations") == 1
    finally:
        again.stop()
