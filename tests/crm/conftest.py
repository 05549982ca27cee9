"""Fixtures of the CRM tests: a real SQLite file per test, a fixed clock, and a small organisation.

The suite runs with --import-mode=importlib, so test modules cannot import from here: everything
they share is a fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM, Actor
from crm.clock import FixedClock
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm

#: Cheap scrypt for the many users tests create; the default parameters have their own test.
FAST_HASH = ScryptParams(log2_n=4, r=8, p=1)
#: 2026-11-23 10:00 in Shanghai.
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path):
    conn = await open_database(tmp_path / "callcenter.db")
    try:
        await apply_migrations(conn, "crm", schema.MIGRATIONS)
        yield Database(conn)
    finally:
        await conn.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def fast_hash() -> ScryptParams:
    return FAST_HASH


@pytest.fixture
def crm(db: Database, clock: FixedClock) -> Crm:
    return Crm.build(db, clock=clock, password_params=FAST_HASH)


@dataclass
class Org:
    """总部 > 客服中心 (agents, supervisor) and 总部 > 售后服务部 (technicians), plus an auditor."""

    hq: int
    service_center: int
    after_sales: int
    admin: Actor
    supervisor: Actor
    agent1: Actor
    agent2: Actor
    tech_pudong: Actor
    tech_xuhui: Actor
    auditor: Actor


async def _make_user(
    crm: Crm, username: str, roles: list[str], *, department_id: int | None = None, region: str | None = None
) -> Actor:
    user = await crm.org.create_user(
        SYSTEM, username, f"用户{username}", "secret-pass", roles=roles, department_id=department_id, region=region
    )
    return await crm.org.actor_for_user(user.id)


@pytest.fixture
def make_user():
    """`await make_user(crm, username, roles, department_id=..., region=...)` -> the user's Actor."""
    return _make_user


@pytest.fixture
async def org(crm: Crm) -> Org:
    hq = await crm.org.create_department(SYSTEM, "总部")
    service = await crm.org.create_department(SYSTEM, "客服中心", parent_id=hq.id)
    after_sales = await crm.org.create_department(SYSTEM, "售后服务部", parent_id=hq.id)
    return Org(
        hq=hq.id,
        service_center=service.id,
        after_sales=after_sales.id,
        admin=await _make_user(crm, "admin", ["admin"], department_id=hq.id),
        supervisor=await _make_user(crm, "sup1", ["supervisor"], department_id=service.id),
        agent1=await _make_user(crm, "agent1", ["agent"], department_id=service.id),
        agent2=await _make_user(crm, "agent2", ["agent"], department_id=service.id),
        tech_pudong=await _make_user(crm, "tech1", ["technician"], department_id=after_sales.id, region="浦东新区"),
        tech_xuhui=await _make_user(crm, "tech2", ["technician"], department_id=after_sales.id, region="徐汇区"),
        auditor=await _make_user(crm, "audit1", ["auditor"], department_id=hq.id),
    )


# -- real delivery peers on 127.0.0.1 (free ports, closed after each test) ------------------------


class SmtpSink:
    """An aiosmtpd handler that stores what it receives. `replies` (consumed in order, one per
    message) makes the server answer RCPT with an SMTP error instead, e.g. "451 4.3.0 try later"."""

    def __init__(self) -> None:
        self.messages: list = []
        self.replies: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's hook name)
        if self.replies:
            return self.replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope)
        return "250 OK queued"


@pytest.fixture
async def smtp_server():
    """(host, port, sink): a real SMTP server (aiosmtpd) in the test's event loop."""
    import asyncio

    from aiosmtpd.smtp import SMTP as SmtpProtocol

    sink = SmtpSink()
    server = await asyncio.get_running_loop().create_server(
        lambda: SmtpProtocol(sink, hostname="mail.example.com"), "127.0.0.1", 0
    )
    try:
        yield "127.0.0.1", server.sockets[0].getsockname()[1], sink
    finally:
        server.close()
        await server.wait_closed()


class SmsGateway:
    """A small HTTP/1.1 SMS gateway: checks the HMAC-SHA256 signature, answers from `statuses`
    (consumed in order, then 200), and keeps every request it accepted."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.statuses: list[int] = []
        self.accepted: list[dict] = []
        self.rejected_signatures = 0
        self.url = ""

    async def handle(self, reader, writer) -> None:
        import hashlib
        import hmac
        import json

        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            expected = hmac.new(self.secret, headers.get("x-timestamp", "").encode() + b"\n" + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, headers.get("x-signature", "")):
                self.rejected_signatures += 1
                status, reply = 401, {"error": "bad signature"}
            elif self.statuses:
                status = self.statuses.pop(0)
                reply = {"error": "scripted"} if status >= 300 else {"id": f"gw-{len(self.accepted) + 1}"}
                if status < 300:
                    self.accepted.append(json.loads(body))
            else:
                status = 200
                self.accepted.append(json.loads(body))
                reply = {"id": f"gw-{len(self.accepted)}"}
            payload = json.dumps(reply).encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + payload)  # fmt: skip
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def sms_gateway():
    import asyncio

    gateway = SmsGateway(b"gateway-secret")
    server = await asyncio.start_server(gateway.handle, "127.0.0.1", 0)
    gateway.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/sms/send"
    try:
        yield gateway
    finally:
        server.close()
        await server.wait_closed()
