"""An in-process contact center for property tests: the real call layer (CallManager, QueueRouter,
transfers) on a real media engine, a real SQLite file and real UDP sockets on 127.0.0.1, with
callers and agents as SIP phones built on our own sipstack — fast enough for hundreds of calls.

A `Site` lives for a test module (database, CRM, extensions, media engine); each `Round` is one
hypothesis example: a fresh SIP server, queues and call manager, fresh phones, and timers scaled
down (transactions' T1, ring timeouts, wrap-up, max wait, RTP timeout) so that what a phone that
vanished leaves behind is cleaned up in about a second.

Callers come from a carrier trunk (authenticated by source address and port, as a provider's
SBC is), so their numbers are mobile numbers the CRM may know as VIP members; agents are
extensions 1001-1004 that authenticate their own calls (feature codes, consultation calls)
with digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from acd.calls import CallManager, CallPolicy
from acd.cdr import CdrWriter
from acd.directory import Extension, ExtensionDirectory
from acd.distributor import QueueLogEntry
from acd.events import CallStarted, CdrWritten
from acd.queue_calls import QueueDefinition, QueueRouter
from acd.queue_log import QueueLogWriter
from acd.schema import MIGRATIONS as ACD_MIGRATIONS
from callcenter.bus import EventBus
from callcenter.crm_bridge import CrmBridge
from callcenter.database import apply_all, open_database
from callcenter.ivr_wiring import media_dispatcher
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.schema import MIGRATIONS as CRM_MIGRATIONS
from crm.service import Crm
from mediacore.engine import MediaEngine
from sipstack.addressing import Address, Transport
from sipstack.registrar import Binding, RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.session import (
    Ended,
    InboundLeg,
    Leg,
    LegEvent,
    LegState,
    Offer,
    OutboundLeg,
    SessionLayer,
)
from sipstack.transaction_layer import RequestReceived, TransactionLayer
from sipstack.transport.manager import TransportManager
from sipstack.trunk import SourceMatch, TrunkSettings
from sipstack.trunk_auth import ClientCredentials, DigestClient
from sipstack.trunk_manager import TrunkManager
from sipstack.uri import NameAddr, SipUri, parse_uri

HOST = "127.0.0.1"
AGENTS = ("1001", "1002", "1003", "1004")
#: The carrier's DIDs and the queues they lead to.
DIDS = {"4001": "8001", "4002": "8002"}
QUEUES = ("8001", "8002")
#: Callers' numbers; the CRM knows the first two as VIP members (gold, diamond).
CALLERS = ("13900139001", "13900139002", "13900139003", "13900139004")
VIP_LEVELS = {"13900139001": "gold", "13900139002": "diamond"}

#: RFC 3261 §17.1.1.1's T1 scaled from 500 ms to 20 ms: Timer B/F/H/J (64*T1) become 1.28 s,
#: so an INVITE to a phone that vanished times out, and transactions drain, within an example.
T1 = 0.02
T2 = 0.16
T4 = 0.2
#: The queues' and calls' clocks, scaled the same way (seconds).
WRAPUP = 0.3
QUEUE_RING_TIMEOUT = 0.5
MAX_WAIT = 2.5
CALL_RING_TIMEOUT = 1.0
RTP_TIMEOUT = 0.6
#: Phones send a packet this often while a call is up: the engine's RTP timeout hears them.
RTP_INTERVAL = 0.04


def queue_definitions() -> list[QueueDefinition]:
    """8001 rings all its agents with ringback to the caller; 8002 answers its callers (music
    in band) and rings the longest idle agent, 1002 only when the others cannot."""
    common = {"wrapuptime": WRAPUP, "ring_timeout": QUEUE_RING_TIMEOUT, "max_wait": MAX_WAIT, "max_missed": 2}
    return [
        QueueDefinition.from_table({"number": "8001", "strategy": "ringall", "members": ["1001", "1002", "1003"],
                                    **common}),
        QueueDefinition.from_table({"number": "8002", "strategy": "leastrecent", "answer": True,
                                    "members": ["1002:1", "1003", "1004"], "joinempty": True, **common}),
    ]


def sdp(port: int, session: int) -> bytes:
    return (f"v=0\r\no=- {session} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\n").encode()


def media_address(body: bytes) -> tuple[str, int] | None:
    """Where an SDP asks its RTP to go (c= and m=audio)."""
    text = body.decode("ascii", "replace")
    host, port = re.search(r"^c=IN IP4 (\S+)", text, re.M), re.search(r"^m=audio (\d+)", text, re.M)
    if host is None or port is None or int(port.group(1)) == 0:
        return None
    return host.group(1), int(port.group(1))


class Phone:
    """A SIP phone on our own stack: its own SIP server (timers scaled), UDP socket and session
    layer, and an RTP socket that talks while a call is up. Incoming calls ring until told to
    answer or reject. `lose_network` makes it vanish: nothing in, nothing out, no RTP."""

    def __init__(self, number: str, secret: str | None, counter: list[int]) -> None:
        self.number = number
        self.secret = secret
        self.lost = False
        self.legs: list[Leg] = []
        self.ringing: list[InboundLeg] = []
        self._counter = counter
        self._sessions = random.randrange(1, 2**31)

    async def open(self, pbx_port: int) -> None:
        loop = asyncio.get_running_loop()
        self.pbx = Address(Transport.UDP, HOST, pbx_port)
        self.server = SipServer(ServerSettings(user_agent=f"phone-{self.number}"), SecurityPolicy(allow=[HOST]),
                                RegistrarPolicy(), lambda user: None)
        self.server.transactions = TransactionLayer(t1=T1, t2=T2, t4=T4)
        self.transports = TransportManager(self._receive, self.server.flow_closed)
        self.server.attach(loop, self._send)
        await self.transports.listen(HOST, udp_port=0)
        port = self.transports.port(Transport.UDP)
        assert port is not None
        self.port = port
        self.layer = SessionLayer(self.server, HOST, {"sip_udp": port}, self._on_invite)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((HOST, 0))
        self.rtp.setblocking(False)
        self.rtp_port = self.rtp.getsockname()[1]
        self._seq = 0
        self._ticker = loop.call_later(RTP_INTERVAL, self._talk)

    async def close(self) -> None:
        self._ticker.cancel()
        self.rtp.close()
        await self.transports.close()

    @property
    def contact(self) -> str:
        return f"sip:{self.number}@{HOST}:{self.port}"

    # ------------------------------------------------------------- wire

    def _send(self, data: bytes, destination: Address) -> None:
        if not self.lost and not self._ticker.cancelled():
            self._counter[0] += 1
            self.transports.send(data, destination)

    def _receive(self, data: bytes, source: Address) -> None:
        if not self.lost:
            self._counter[0] += 1
            self.server.on_message(data, source)

    def _talk(self) -> None:
        """20 ms of µ-law silence on every call that is up, to the address its SDP names."""
        self._ticker = asyncio.get_running_loop().call_later(RTP_INTERVAL, self._talk)
        if self.lost:
            return
        for leg in self.legs:
            target = media_address(leg.remote_sdp) if leg.state is LegState.ANSWERED else None
            if target is not None:
                self._seq += 1
                header = struct.pack("!BBHII", 0x80, 0, self._seq & 0xFFFF, (self._seq * 160) & 0xFFFFFFFF,
                                     self.rtp_port)
                with contextlib.suppress(OSError):
                    self.rtp.sendto(header + b"\xff" * 160, target)
        with contextlib.suppress(OSError):   # what the engine sends us: read and dropped
            while True:
                self.rtp.recv(2048)

    def lose_network(self) -> None:
        self.lost = True

    # ------------------------------------------------------------- calls

    def _on_invite(self, event: RequestReceived) -> None:
        leg = InboundLeg(self.layer, event)
        leg.listener = self._on_leg
        self.legs.append(leg)
        self.ringing.append(leg)
        leg.ring()

    def _on_leg(self, leg: Leg, event: LegEvent) -> None:
        if isinstance(event, Offer):
            leg.accept_offer(self._sdp())   # a re-INVITE: the same address again
        elif isinstance(event, Ended) and leg in self.ringing:
            self.ringing.remove(leg)

    def _sdp(self) -> bytes:
        self._sessions += 1
        return sdp(self.rtp_port, self._sessions)

    def dial(self, number: str) -> OutboundLeg:
        auth = DigestClient(ClientCredentials(self.number, self.secret)) if self.secret else None
        me = NameAddr(SipUri("sip", self.number, None, HOST, None), None, {})
        leg = OutboundLeg(self.layer, target=self.pbx, request_uri=parse_uri(f"sip:{number}@{HOST}:{self.pbx.port}"),
                          from_addr=me, to_addr=NameAddr(SipUri("sip", number, None, HOST, None), None, {}),
                          sdp=self._sdp(), auth=auth, session_expires=None)
        leg.listener = self._on_leg
        self.legs.append(leg)
        leg.start()
        return leg

    def answer(self) -> bool:
        """Answer the call that rang first; False if none rings."""
        while self.ringing:
            leg = self.ringing.pop(0)
            if leg.state in (LegState.CALLING, LegState.EARLY):
                leg.answer(self._sdp())
                return True
        return False

    def reject(self, status: int = 486) -> bool:
        while self.ringing:
            leg = self.ringing.pop(0)
            if leg.state in (LegState.CALLING, LegState.EARLY):
                leg.reject(status)
                return True
        return False

    def live(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.state is not LegState.ENDED]

    def answered(self) -> list[Leg]:
        return [leg for leg in self.legs if leg.state is LegState.ANSWERED]

    def hang_up(self) -> bool:
        """Hang up the newest call: BYE when answered; before, CANCEL (ours) or 487 (theirs)."""
        legs = self.live()
        if not legs:
            return False
        legs[-1].hangup()
        return True

    def refer(self, leg: Leg, target: str, replaces: Leg | None = None) -> None:
        """RFC 3515: REFER on `leg` to `target`; with `replaces`, an attended transfer joining
        the party of that other dialog (RFC 3891 §6.1, as this phone sees the dialog)."""
        assert leg.dialog is not None and leg.remote is not None
        uri = f"sip:{target}@{HOST}:{self.pbx.port}"
        if replaces is not None and replaces.dialog is not None:
            d = replaces.dialog.id
            uri += "?Replaces=" + quote(f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}", safe="")
        request = leg.dialog.create_request(
            "REFER", via=self.layer.via(leg.remote), contact=self.layer.contact(leg.remote),
            extra=[("Refer-To", f"<{uri}>"), ("Referred-By", f"<sip:{self.number}@{HOST}>")])
        self.server.send_request(request, leg.remote, on_response=leg.on_response)


@dataclass
class Round:
    """One example's contact center: server, queues, call manager and phones, all fresh."""

    site: Site
    server: SipServer
    transports: TransportManager
    manager: CallManager
    router: QueueRouter
    queue_log: QueueLogWriter
    agents: dict[str, Phone]
    callers: dict[str, Phone]
    #: Every queue log entry, and the agent's state and wrap-up end when it was logged.
    log: list[tuple[QueueLogEntry, str, float]] = field(default_factory=list)
    started: dict[str, CallStarted] = field(default_factory=dict)
    cdrs: list[CdrWritten] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [0])
    #: The engine's endpoints before the round (a leak of an earlier one is not this one's).
    endpoints_before: set[int] = field(default_factory=set)

    @property
    def phones(self) -> list[Phone]:
        return [*self.agents.values(), *self.callers.values()]

    async def settle(self, limit: float = 2.0) -> None:
        """Until no SIP message has moved for a while (every exchange the last step started
        is over), at most `limit` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        quiet = 0
        while loop.time() < end and quiet < 3:
            before = self.counter[0]
            await asyncio.sleep(0.02)
            quiet = quiet + 1 if self.counter[0] == before else 0

    def logged(self, entry: QueueLogEntry) -> None:
        """The queue log hook: keep the entry with the agent's state at that moment (wrap-up is
        checked against it) and write it to the database as the application does."""
        agent = self.router.acd.agents.get(entry.agent_id)
        self.log.append((entry, agent.state.value if agent else "", agent.wrap_up_until if agent else 0.0))
        self.queue_log.append(entry)

    async def until(self, done: Callable[[], bool], limit: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while not done():
            if loop.time() >= end:
                return False
            await asyncio.sleep(0.03)
        return True


class Site:
    """What lives for a test module: the database (ACD and CRM schemas), the CRM with the VIP
    members, the extensions, and the media engine."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "callcenter.db"
        self.db = await open_database(path)
        await apply_all(self.db, {"acd": ACD_MIGRATIONS, "crm": CRM_MIGRATIONS})
        self.crm_db = await open_database(path)
        self.crm = Crm.build(Database(self.crm_db), password_params=ScryptParams(log2_n=4, r=8, p=1))
        for number, level in VIP_LEVELS.items():
            await self.crm.members.create(SYSTEM, f"VIP {number[-4:]}", phones=[number], level=level)
        self.directory = ExtensionDirectory(self.db)
        for number in AGENTS:
            await self.directory.upsert(Extension(number, f"agent {number}", f"secret{number}"))
        base = 20000 + 2 * random.randrange(0, 4000)
        self.engine = MediaEngine(HOST, base, base + 399)
        await self.engine.start(asyncio.get_running_loop())

    async def stop(self) -> None:
        self.engine.close()
        await self.crm_db.close()
        await self.db.close()

    @contextlib.asynccontextmanager
    async def round(self) -> AsyncIterator[Round]:
        server = SipServer(ServerSettings(), SecurityPolicy(allow=[HOST]), RegistrarPolicy(), self.directory.secret)
        server.transactions = TransactionLayer(t1=T1, t2=T2, t4=T4)
        counter = [0]
        transports = TransportManager(server.on_message, server.flow_closed)

        closed: list[bool] = []

        def send(data: bytes, destination: Address) -> None:
            if not closed:   # a retransmission timer of this round firing after it ended
                counter[0] += 1
                transports.send(data, destination)

        server.attach(asyncio.get_running_loop(), send)
        phones: list[Phone] = []
        queue_log = QueueLogWriter(self.db)
        try:
            await transports.listen(HOST, udp_port=0)
            port = transports.port(Transport.UDP)
            assert port is not None
            agents = {n: Phone(n, f"secret{n}", counter) for n in AGENTS}
            callers = {n: Phone(n, None, counter) for n in CALLERS}
            phones = [*agents.values(), *callers.values()]
            for phone in phones:
                await phone.open(port)
            for phone in agents.values():
                server.registrar.load([Binding(phone.number, f"<{phone.contact}>", phone.contact, time.time() + 3600,
                                               f"reg-{phone.number}", 1, Address(Transport.UDP, HOST, phone.port))])
            carrier = TrunkSettings("carrier", HOST, qualify=0, dids=dict(DIDS),
                                    ip_auth=tuple(SourceMatch.parse(f"{HOST}:{p.port}") for p in callers.values()))
            ports = {"sip_udp": port}
            trunks = TrunkManager(server, [carrier], HOST, ports)
            directory = self.directory
            holder: list[Round] = []
            router = QueueRouter(queue_definitions(), lambda ext: ext, on_log=lambda e: holder[0].logged(e),
                                 lookups=CrmBridge(self.crm))
            bus = EventBus()
            manager = CallManager(server, lambda on_invite: SessionLayer(server, HOST, ports, on_invite), self.engine,
                                  directory, CdrWriter(self.db), bus.publish, HOST,
                                  CallPolicy(ring_timeout=CALL_RING_TIMEOUT, rtp_timeout=RTP_TIMEOUT, max_duration=0),
                                  trunks=trunks, queues=router)
            router.attach(manager)
            self.engine.set_event_handler(media_dispatcher(router.on_media_event, manager.on_media_event))
            rnd = Round(self, server, transports, manager, router, queue_log, agents, callers, counter=counter,
                        endpoints_before={e.id for e in self.engine.endpoints})
            holder.append(rnd)
            bus.subscribe(CallStarted, lambda e: rnd.started.__setitem__(e.call_id, e))
            bus.subscribe(CdrWritten, rnd.cdrs.append)
            for agent in AGENTS:
                router.feature(agent, "*61", time.time())
            yield rnd
        finally:
            closed.append(True)
            self.engine.set_event_handler(None)
            for phone in phones:
                await phone.close()
            await transports.close()
            await queue_log.close()

    async def queue_log_rows(self, call_ids: set[str]) -> list[aiosqlite.Row]:
        marks = ",".join("?" * len(call_ids))
        async with self.db.execute(f"SELECT at, call_id, queue, agent, event, data FROM queue_log"
                                   f" WHERE call_id IN ({marks}) ORDER BY id", tuple(call_ids)) as cur:
            return list(await cur.fetchall())

    async def cdr_rows(self, call_ids: set[str]) -> list[aiosqlite.Row]:
        marks = ",".join("?" * len(call_ids))
        async with self.db.execute(f"SELECT * FROM cdr WHERE call_id IN ({marks}) ORDER BY call_id, segment",
                                   tuple(call_ids)) as cur:
            return list(await cur.fetchall())

