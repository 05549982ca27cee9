"""Wiring: builds every module from the configuration, starts them on the one event loop, and
stops them in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import uvicorn

from acd.agent_presence import AgentPresence
from acd.browser_caller import BrowserDialer
from acd.browser_ringing import SipRinging
from acd.call_recording import CallRecorder
from acd.callbacks import CallbackStore
from acd.caller_info import CallerInfoAnnouncer
from acd.calls import CallManager, CallPolicy
from acd.cdr import CdrWriter
from acd.conference_rooms import ConferenceRooms
from acd.direct_calls import DirectCalls
from acd.directory import Extension, ExtensionDirectory
from acd.events import CallAnswered, CallEnded, CdrWritten
from acd.features import FeatureStore
from acd.ivr_calls import IvrRunner
from acd.prompt_catalogue import SOUNDS
from acd.queue_calls import QueueDefinition, QueueRouter
from acd.queue_log import QueueLogWriter
from acd.recording_index import RecordingIndex
from acd.schema import MIGRATIONS as ACD_MIGRATIONS
from acd.sticky import StickyAgents
from acd.supervision import Supervision
from acd.voicemail import VoicemailStore, repair_messages
from acd.voicemail_calls import VoicemailCalls
from acd.voicemail_mwi import MwiNotifier
from acd.webrtc_agents import WebRtcAgents
from callcenter.bus import EventBus
from callcenter.config import Config, ConfigError
from callcenter.crm_bridge import CrmBridge
from callcenter.database import apply_all, open_database
from callcenter.ivr_wiring import DEMO_ROOMS, media_dispatcher, wire_conferences, wire_ivr, with_demo_numbers
from callcenter.looplag import LoopLagMonitor
from callcenter.tls import ensure_self_signed, server_context
from crm.db import Database
from crm.demo import seed_demo
from crm.restore import apply_pending_restore
from crm.schema import MIGRATIONS as CRM_MIGRATIONS
from crm.service import Crm
from mediacore.engine import MediaEngine
from mediacore.recording import RepairAction, repair_directory
from mediacore.webrtc_workers import WebRtcWorkerPool, default_worker_count
from sipstack.addressing import Transport
from sipstack.auth import DigestAlgorithm
from sipstack.errors import SipParseError
from sipstack.registrar import RegistrarPolicy
from sipstack.registrar_store import MIGRATIONS as SIP_MIGRATIONS
from sipstack.registrar_store import BindingStore
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.session import SessionLayer
from sipstack.transport.manager import TransportManager
from sipstack.trunk import RegistrationState
from sipstack.trunk_manager import TrunkManager
from webui.app import WebServices, create_app
from webui.sessions import MIGRATIONS as WEBUI_MIGRATIONS
from webui.sessions import SessionStore

log = logging.getLogger(__name__)

# How often expired registrations are swept from memory and the database.
EXPIRY_SWEEP_INTERVAL = 15.0
# How often the outbox is looked at for due SMS and e-mail.
MESSAGE_INTERVAL = 5.0
DEMO_EXTENSIONS = range(1001, 1021)
DEMO_MEMBERS = 200
# Demo only: the web users agent1..agent5, supervisor1, tech1..tech3 and auditor1 share it.
DEMO_USER_PASSWORD = "demo1234"


def demo_queues() -> list[QueueDefinition]:
    """The demo's queues: 8001 sales rings all its agents; 8002 service the longest idle, with
    music, the caller's place and a callback key, and the IVR's VIP callers (skill vip) for
    1003 and 1004 first, anyone after 30 s."""
    return [
        QueueDefinition.from_table({"number": "8001", "name": "销售", "strategy": "ringall",
                                    "members": ["1001", "1002", "1003"], "wrapuptime": 5, "max_wait": 120}),
        QueueDefinition.from_table({"number": "8002", "name": "客服", "strategy": "leastrecent",
                                    "members": ["1003", "1004", "1005"], "wrapuptime": 5, "max_wait": 120,
                                    "overflow": "callback", "answer": True, "announce_position": True,
                                    "announce_frequency": 60, "callback_key": "1",
                                    "skills": {"1003": {"vip": 3}, "1004": {"vip": 1}},
                                    "penalty_rules": [{"after": 30, "max_penalty": 0, "relax_skills": 10}]}),
    ]


def schemas() -> dict[str, list[str]]:
    """Every component's migrations, in the order they may depend on each other."""
    return {"sip": SIP_MIGRATIONS, "acd": ACD_MIGRATIONS, "crm": CRM_MIGRATIONS, "webui": WEBUI_MIGRATIONS}


class Application:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.bus = EventBus()
        self.db: aiosqlite.Connection | None = None
        self._sip_db: aiosqlite.Connection | None = None
        self._crm_db: aiosqlite.Connection | None = None
        self.crm: Crm | None = None
        self.engine: MediaEngine | None = None
        self.calls: CallManager | None = None
        self.caller_info: CallerInfoAnnouncer | None = None
        self.browser_agents: WebRtcAgents | None = None
        self.agent_presence: AgentPresence | None = None
        self.webrtc_workers: WebRtcWorkerPool | None = None
        self.loop_lag = LoopLagMonitor()
        "How late the event loop runs what is due (/metrics: callcenter_event_loop_lag_seconds)."
        self.ivr: IvrRunner | None = None
        self.conferences: ConferenceRooms | None = None
        self.recordings: RecordingIndex | None = None
        self.voicemail: VoicemailCalls | None = None
        self.queue_log: QueueLogWriter | None = None
        self.trunks: TrunkManager | None = None
        self.directory: ExtensionDirectory | None = None
        self.sip: SipServer | None = None
        self.transports: TransportManager | None = None
        self.store: BindingStore | None = None
        self._http: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ports: dict[str, int] = {}
        self.started = asyncio.Event()

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        cfg = self.config
        self.loop_lag.start()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        db_path = cfg.data_dir / "callcenter.db"
        # A backup staged for restore in the web UI replaces the database now, before anything
        # reads it; the previous one is kept beside it.
        kept = await asyncio.to_thread(apply_pending_restore, db_path)
        if kept is not None:
            log.warning("restored the staged backup; the previous database is kept as %s", kept)
        self.db = await open_database(db_path)
        await apply_all(self.db, schemas())
        # The registrar's write-behind flusher gets a connection of its own, so its batches never
        # interleave with the business transactions on the main one (WAL lets both proceed).
        self._sip_db = await open_database(db_path)
        # The CRM serialises its transactions on a connection of its own for the same reason.
        self._crm_db = await open_database(db_path)
        self.crm = Crm.build(Database(self._crm_db))

        self.directory = ExtensionDirectory(self.db)
        if cfg.demo:
            await self._seed_demo()
        await self.directory.load()

        self.store = BindingStore(self._sip_db)
        try:
            algorithms = tuple(DigestAlgorithm.from_token(a) for a in cfg.sip.digest_algorithms)
        except SipParseError as exc:
            raise ConfigError(f"[sip] digest_algorithms: {exc.reason}") from None
        settings = ServerSettings(realm=cfg.sip.realm, user_agent=cfg.sip.user_agent,
                                  nonce_lifetime=float(cfg.sip.nonce_lifetime),
                                  nonce_secret=self._secret("nonce.key"),
                                  digest_algorithms=algorithms)
        security = SecurityPolicy(**{k: getattr(cfg.security, k) for k in (
            "rate_limit", "rate_window", "rate_ban", "auth_fail_limit", "auth_fail_window", "auth_fail_ban", "allow")})
        policy = RegistrarPolicy(cfg.sip.min_expires, cfg.sip.max_expires, cfg.sip.default_expires)
        self.sip = SipServer(settings, security, policy, self.directory.secret, self.store)
        self.sip.registrar.load(await self.store.load(time.time()))
        self.store.start()

        self.transports = TransportManager(self.sip.on_message, self.sip.flow_closed)
        self.sip.attach(asyncio.get_running_loop(), self.transports.send)
        await self._listen_sip()
        await self._start_calls()
        await self._start_http()
        self._tasks.append(asyncio.get_running_loop().create_task(self._sweep_expired(), name="expiry"))
        self._tasks.append(asyncio.get_running_loop().create_task(self._deliver_messages(), name="messages"))
        if cfg.demo and cfg.demo_crm:
            # Seeding the CRM's demo data takes seconds (hundreds of audited writes); the server
            # serves calls meanwhile and the data appears when it is done.
            self._tasks.append(asyncio.get_running_loop().create_task(self._seed_crm_demo(), name="demo-seed"))
        self.started.set()
        log.info("callcenter ready: %s", json.dumps(self.ports))

    async def stop(self) -> None:
        """Stop in reverse order. Every step runs even if one before it failed: a connection
        left open keeps its (non-daemon) thread and the process alive."""

        async def step(name: str, action: Callable[[], Awaitable[object] | object]) -> None:
            try:
                result = action()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("shutdown: %s failed", name)

        if self.caller_info is not None:
            await step("caller look-ups", self.caller_info.close)
        if self.browser_agents is not None:
            await step("browser agents", self.browser_agents.close)
        if self.webrtc_workers is not None:
            await step("webrtc workers", self.webrtc_workers.close)
        if self.calls is not None and self.calls.queues is not None:
            await step("queued callbacks", self.calls.queues.close)   # callbacks under way end; storage written
        if self.calls is not None:
            await step("calls", self.calls.drain)
            if self.calls.recording is not None:
                await step("recordings", self.calls.recording.drain)   # files closed and indexed
        if self.voicemail is not None:
            await step("voicemail", self.voicemail.drain)   # messages still being saved
        if self.trunks is not None:
            await step("trunks", self.trunks.stop)  # Expires: 0 to the providers while the transports still run
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.transports is not None:
            await step("transports", self.transports.close)
        # The CRM's connection goes first: closing it drops any transaction a cancelled task
        # (the demo seeding) left open, so the registrar's last flush is not locked out.
        if self._crm_db is not None:
            await step("crm database", self._crm_db.close)
        if self.store is not None:
            await step("registrations", self.store.close)
        if self.queue_log is not None:
            await step("queue log", self.queue_log.close)
        if self.engine is not None:
            await step("media engine", self.engine.close)
        for conn in (self._sip_db, self.db):
            if conn is not None:
                await step("database", conn.close)
        self.loop_lag.stop()   # logs the run's lag summary

    # ------------------------------------------------------------- parts

    async def _listen_sip(self) -> None:
        cfg, net = self.config, self.config.network
        assert self.transports is not None
        wanted = set(net.transports)
        tls_ctx = None
        if "tls" in wanted:
            cert, key = ensure_self_signed(cfg.data_dir / "tls", cfg.advertised_address)
            tls_ctx = server_context(cert, key)
        sip_port = net.sip_port or _free_port_pair(net.bind)
        await self.transports.listen(
            net.bind,
            udp_port=sip_port if "udp" in wanted else None,
            tcp_port=sip_port if "tcp" in wanted else None,
            tls_port=(net.sip_tls_port or 0) if "tls" in wanted else None,
            tls=tls_ctx,
        )
        for transport in (Transport.UDP, Transport.TCP, Transport.TLS):
            port = self.transports.port(transport)
            if port is not None:
                self.ports[f"sip_{transport.value}"] = port

    async def _start_calls(self) -> None:
        cfg, net = self.config, self.config.network
        assert self.sip is not None and self.directory is not None and self.db is not None
        # A crash may have left a recording's header behind its audio: fix before anything records.
        recordings_dir = cfg.data_dir / cfg.recording.directory   # an absolute directory stays as is
        for report in [*await asyncio.to_thread(repair_directory, cfg.data_dir / "recordings"),
                       *(await asyncio.to_thread(repair_directory, recordings_dir)
                         if recordings_dir != cfg.data_dir / "recordings" else []),
                       *await asyncio.to_thread(repair_messages, cfg.data_dir / "voicemail")]:
            if report.action is not RepairAction.INTACT:
                log.warning("recording %s: %s (%s)", report.path, report.action.value, report.reason)
        self.engine = MediaEngine(net.bind, net.rtp_port_min, net.rtp_port_max)
        await self.engine.start(asyncio.get_running_loop())
        local = cfg.advertised_address
        sip = self.sip
        try:
            self.trunks = TrunkManager(sip, cfg.trunks, local, self.ports, user_agent=cfg.sip.user_agent)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        queues = cfg.queues or (demo_queues() if cfg.demo else [])
        directory = self.directory
        self.queue_log = QueueLogWriter(self.db)
        features = FeatureStore(self.db)
        await features.load()
        router = QueueRouter(queues, lambda ext: (e.display_name if (e := directory.get(ext)) else ext),
                             on_log=self.queue_log.append, sticky=StickyAgents(self.db),
                             lookups=CrmBridge(self.crm) if self.crm is not None else None) if queues else None
        self.calls = CallManager(
            sip, lambda on_invite: SessionLayer(sip, local, self.ports, on_invite), self.engine,
            self.directory, CdrWriter(self.db), self.bus.publish, local,
            CallPolicy(cfg.calls.ring_timeout, cfg.calls.rtp_timeout, cfg.calls.max_duration),
            trunks=self.trunks, routes=cfg.outbound_routes, queues=router,
            dialplan=with_demo_numbers(cfg.dialplan) if cfg.demo else cfg.dialplan,
            features=features)
        self.calls.codecs = cfg.media.sdp_codecs()
        if router is not None:
            # Issue #8: waiting callers' music and announcements; queued callbacks kept in the database.
            router.attach(self.calls, store=CallbackStore(self.db), sound_dirs=(cfg.data_dir / "sounds", SOUNDS))
            await router.restore()
            # Issue #8: an agent on a direct call (desk phone or softphone) is offered no queue call until it ends.
            direct = DirectCalls(self.calls, router)
            for kind in (CallAnswered, CdrWritten, CallEnded):
                self.bus.subscribe(kind, direct.on_event)
            # Issue #8: agents set their own state from the softphone, which shows every change of it.
            self.agent_presence = AgentPresence(router)
            router.on_agent = self.agent_presence.changed
        self.ivr = await wire_ivr(db=self.db, engine=self.engine, calls=self.calls, bus=self.bus,
                                  lookups=CrmBridge(self.crm) if self.crm is not None else None,
                                  data_dir=cfg.data_dir, demo=cfg.demo)
        self.conferences = wire_conferences(engine=self.engine, calls=self.calls, bus=self.bus,
                                            rooms=cfg.conferences or (DEMO_ROOMS if cfg.demo else []),
                                            data_dir=cfg.data_dir)
        # Issue #8: calls recorded by the rules (each queue's own first), rooms with record = true.
        self.recordings = RecordingIndex(self.db, recordings_dir)
        self.calls.recording = self.conferences.recording = CallRecorder(
            self.engine, cfg.recording.with_queues({q.number: q.recording for q in queues if q.recording is not None}),
            recordings_dir, self.recordings, self.bus.publish)
        mailboxes = VoicemailStore(self.db, cfg.data_dir / "voicemail",
                                   cfg.voicemail)
        await mailboxes.load()
        mailboxes.on_change = MwiNotifier(self.calls.sessions, sip.registrar, mailboxes.counts).changed
        self.voicemail = self.calls.voicemail = VoicemailCalls(
            self.engine, mailboxes, self.directory, sound_dirs=(cfg.data_dir / "sounds", SOUNDS))
        self.bus.subscribe(CallEnded, lambda event: self.voicemail.ended(event.call_id))
        self.calls.supervision = supervision = Supervision(self.engine, self.calls,
                                                           CrmBridge(self.crm) if self.crm is not None else None)
        media_events = media_dispatcher(self.ivr.on_media_event, self.conferences.on_media_event,
                                         self.voicemail.on_media_event,
                                         router.on_media_event if router is not None else _none,
                                         supervision.on_media_event,   # keys 5-8 on the line
                                         self.calls.on_media_event)
        self.engine.set_event_handler(media_events)
        self.bus.subscribe(CallEnded, lambda event: self.calls.supervision.ended(event.call_id))
        if self.crm is not None:
            # Trunk calls onto the members' interaction timeline: what agents see on the card.
            timeline = CrmBridge(self.crm)
            calls = self.calls
            self.bus.subscribe(CdrWritten, lambda event: calls.spawn(
                timeline.call_finished(event.record), f"the CRM timeline entry of call {event.record.call_id}"))
        # Issue #7: browser agents' aiortc work in worker processes, off this loop.
        workers = cfg.webrtc.workers if cfg.webrtc.workers is not None else default_worker_count()
        self.webrtc_workers = WebRtcWorkerPool(workers, nice=cfg.webrtc.worker_nice) if workers else None
        self.browser_agents = WebRtcAgents(self.engine, cfg.webrtc.settings(), dialplan=self.calls.dialplan,
                                           workers=self.webrtc_workers)
        # The member's name beside the caller's number while the browser rings (issue #7).
        self.caller_info = CallerInfoAnnouncer(CrmBridge(self.crm)) if self.crm is not None else None
        self.calls.browser_agents = SipRinging(self.browser_agents, caller_info=self.caller_info)
        # A browser agent's calls beyond the echo test and other browsers: B2BUA calls, routed as
        # a desk phone's (the page's keys reach an IVR as the engine's digit events would).
        self.browser_agents.dial_sip = BrowserDialer(self.calls, self.browser_agents, deliver=media_events,
                                                     agent_name=self._caller_name)
        self.bus.subscribe(CallEnded, self.calls.browser_agents.on_event)
        await self.trunks.start()

    async def _start_http(self) -> None:
        net = self.config.network
        assert self.db is not None
        services = WebServices(health=self.health, metrics=self.metrics,
                               sip_websocket=self.transports.serve_websocket if self.transports else None,
                               crm=self.crm, sessions=SessionStore(self.db), browser_agents=self.browser_agents,
                               agent_presence=self.agent_presence,
                               ivr_flows=self.ivr.flows if self.ivr is not None else None,
                               voicemail=self.voicemail.store if self.voicemail is not None else None,
                               wallboard=(self.calls.queues.wallboard.snapshot
                                          if self.calls is not None and self.calls.queues is not None else None),
                               supervisor=self.calls.queues if self.calls is not None else None,
                               supervision=self.calls.supervision if self.calls is not None else None,
                               conferences=self.conferences,
                               caller_names=self._caller_name,
                               recordings=self.recordings,
                               trusted_proxies=self.config.security.trusted_proxies)
        sock = socket.socket(socket.AF_INET6 if ":" in net.bind else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((net.bind, net.http_port))
        self.ports["http"] = sock.getsockname()[1]
        # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from 127.0.0.1 as the
        # client; webui.ip_allow honours it from [security] trusted_proxies only.
        config = uvicorn.Config(create_app(services), loop="none", lifespan="off", log_level="warning",
                                ws="websockets-sansio", access_log=False, proxy_headers=False)
        self._http = uvicorn.Server(config)
        self._http.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours rule
        task = asyncio.get_running_loop().create_task(self._http.serve(sockets=[sock]), name="http")
        self._tasks.append(task)
        # READY must mean ready: wait until uvicorn listens (or failed trying).
        while not self._http.started:
            if task.done():
                task.result()
                raise OSError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    def _caller_name(self, number: str) -> str:
        """An extension's display name (the rooms' member lists), else ""."""
        extension = self.directory.get(number) if self.directory is not None else None
        return extension.display_name if extension is not None else ""

    async def _seed_demo(self) -> None:
        assert self.directory is not None
        await self.directory.load()
        for number in DEMO_EXTENSIONS:
            if self.directory.get(str(number)) is None:
                # Demo only: the password of extension N is "demoN" (ARCHITECTURE.md).
                await self.directory.upsert(Extension(str(number), f"分机 {number}", f"demo{number}"))

    async def _seed_crm_demo(self) -> None:
        assert self.crm is not None
        db = self.crm.db
        if await db.fetch_value("SELECT COUNT(*) FROM users WHERE username = 'admin'"):
            return
        admin_password = os.environ.get("CALLCENTER_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        try:
            await seed_demo(db, members=DEMO_MEMBERS, password=DEMO_USER_PASSWORD, admin_password=admin_password)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("seeding the demo data failed")
            return
        if "CALLCENTER_ADMIN_PASSWORD" not in os.environ:
            # Shown once: only its hash is stored.
            print(f"demo admin password (user 'admin'): {admin_password}", flush=True)
        log.info("demo data seeded: %d members; users agent1..agent5 etc. with password %r",
                 DEMO_MEMBERS, DEMO_USER_PASSWORD)

    async def _deliver_messages(self) -> None:
        """The outbox's clock: due SMS/e-mails every few seconds, greetings once a day."""
        assert self.crm is not None
        greeted: object = None
        while True:
            await asyncio.sleep(MESSAGE_INTERVAL)
            try:
                await self.crm.messaging.deliver_due()
                today = self.crm.clock.today()
                if today != greeted:
                    await self.crm.messaging.run_due_greetings(today)
                    greeted = today
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("message delivery failed; will retry")

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_SWEEP_INTERVAL)
            if self.sip is not None and self.store is not None:
                gone = self.sip.registrar.expire(time.time())
                if gone:
                    self.store.save([], gone)

    def _secret(self, name: str) -> bytes:
        """A random secret kept in the data dir, so nonces stay valid across a restart."""
        path: Path = self.config.data_dir / name
        if not path.exists():
            path.write_bytes(secrets.token_bytes(32))
            path.chmod(0o600)
        return path.read_bytes()

    # ------------------------------------------------------------- health and metrics

    async def health(self) -> dict[str, bool]:
        db_ok = False
        if self.db is not None:
            try:
                async with self.db.execute("SELECT 1") as cur:
                    db_ok = (await cur.fetchone()) is not None
            except Exception:
                db_ok = False
        sip_ok = self.transports is not None and bool(self.ports.get("sip_udp") or self.ports.get("sip_tcp"))
        media_ok = self.engine is not None and self.engine.engine_thread_id is not None
        return {"sip": sip_ok, "media": media_ok, "database": db_ok}

    def metrics(self) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value}" for labels, value in samples)

        if self.sip is not None:
            counters = sorted(self.sip.counters.items())
            metric("callcenter_sip_events_total", "counter", "SIP messages and outcomes by kind",
                   [(f'{{kind="{k}"}}', v) for k, v in counters])
            metric("callcenter_sip_registrations", "gauge", "Live registrar bindings",
                   [("", self.sip.registrar.binding_count)])
            metric("callcenter_sip_transactions", "gauge", "Live SIP transactions",
                   [("", len(self.sip.transactions))])
            metric("callcenter_sip_banned_sources", "gauge", "Source addresses banned now",
                   [("", len(self.sip.guard.banned(self.sip.now())))])
        if self.trunks is not None and self.trunks.trunks:
            statuses = self.trunks.statuses()
            metric("callcenter_trunk_registered", "gauge", "1 while the trunk's registration with its provider stands",
                   [(f'{{trunk="{t.name}"}}', int(t.registration is RegistrationState.REGISTERED))
                    for t in statuses if t.registers])
            metric("callcenter_trunk_registration_state", "gauge", "The trunk's registration state (1 on the current one)",
                   [(f'{{trunk="{t.name}",state="{state.value}"}}', int(t.registration is state))
                    for t in statuses if t.registers for state in RegistrationState])
            metric("callcenter_trunk_up", "gauge", "1 while the trunk answers OPTIONS (qualify)",
                   [(f'{{trunk="{t.name}"}}', int(t.up)) for t in statuses])
        if self.transports is not None:
            metric("callcenter_sip_connections", "gauge", "Open TCP/TLS/WebSocket SIP connections",
                   [("", len(self.transports.flows))])
        lines.extend(self.loop_lag.prometheus())
        if self.webrtc_workers is not None and self.webrtc_workers.started:
            workers = self.webrtc_workers.workers
            metric("callcenter_webrtc_worker_calls", "gauge", "Browser calls whose media runs in the worker",
                   [(f'{{worker="{w.index}"}}', w.calls) for w in workers])
            metric("callcenter_webrtc_worker_restarts_total", "counter", "Times the worker died and was restarted",
                   [(f'{{worker="{w.index}"}}', w.restarts) for w in workers])
        return "\n".join(lines) + "\n"


def _none(event: object) -> bool:
    """A media consumer that takes nothing (no queues configured)."""
    return False


def _free_port_pair(host: str) -> int:
    """A port free for both UDP and TCP (SIP listens on the same number on both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError("no port free for both UDP and TCP")
