"""The trunks at run time: asyncio glue that sends what `Registration` and `Qualify` ask for
through the SIP server, arms their timers, and answers the questions calls ask of trunks —
is this INVITE a trunk's, where does a call to this trunk go, is the trunk up."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass

from sipstack.addressing import Address, Transport
from sipstack.message import Request
from sipstack.server import SipServer
from sipstack.transaction_layer import ResponseReceived, TransactionTimeout
from sipstack.trunk import (
    RETRY_FIRST,
    LocalContact,
    Qualify,
    Registration,
    RegistrationState,
    SourceMatch,
    TrunkSettings,
)
from sipstack.trunk_auth import DigestClient
from sipstack.uri import SipUri

log = logging.getLogger(__name__)

#: How long shutdown waits for the provider to confirm our `Expires: 0`.
UNREGISTER_WAIT = 2.0


@dataclass(frozen=True)
class TrunkStatus:
    """One trunk's state for /metrics and the web UI."""

    name: str
    registers: bool
    registration: RegistrationState | None
    up: bool


class Trunk:
    """One configured trunk while the process runs."""

    def __init__(self, settings: TrunkSettings, local: LocalContact, user_agent: str) -> None:
        self.settings = settings
        self.name = settings.name
        self.local = local
        #: The provider's address once its host name is resolved; calls cannot use it before.
        self.address: Address | None = None
        self.sources: tuple[SourceMatch, ...] = settings.ip_auth
        self.registration = Registration(settings, local, user_agent=user_agent) if settings.register else None
        self.qualify = Qualify(settings, local, user_agent=user_agent) if settings.qualify else None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def up(self) -> bool:
        return self.address is not None and (self.qualify is None or self.qualify.up)

    @property
    def deadline(self) -> float | None:
        times = [t for t in (self.registration and self.registration.deadline,
                             self.qualify and self.qualify.deadline) if t is not None]
        return min(times) if times else None

    def status(self) -> TrunkStatus:
        return TrunkStatus(self.name, self.registration is not None,
                           self.registration.state if self.registration else None, self.up)

    def matches_source(self, source: Address) -> bool:
        return any(m.matches(source.host, source.port) for m in self.sources)

    def did_of(self, request: Request) -> tuple[str, str | None]:
        """The DID an inbound INVITE dialled and the internal number it leads to (None when the
        DID is not ours). Providers put the DID in the Request-URI, or — when they send to the
        registered Contact, whose user is our account — in To."""
        dids = self.settings.dids
        ruri_user = request.uri.user if isinstance(request.uri, SipUri) else None
        to_uri = request.to_addr.uri
        to_user = to_uri.user if isinstance(to_uri, SipUri) else None
        for candidate in (ruri_user, to_user):
            if candidate and candidate in dids:
                return candidate, dids[candidate]
        if ruri_user and ruri_user != self.settings.username:
            return ruri_user, None
        return to_user or ruri_user or "", None

    def request_uri(self, number: str) -> SipUri:
        """`sip:<number>@host:port` for an outbound call through this trunk."""
        s = self.settings
        params: dict[str, str | None] = {} if s.transport is Transport.UDP else {"transport": s.transport.value}
        return SipUri("sip", number, None, s.host, s.port, params)

    def digest(self) -> DigestClient | None:
        credentials = self.settings.credentials
        return DigestClient(credentials) if credentials is not None else None


class TrunkManager:
    def __init__(self, server: SipServer, trunks: list[TrunkSettings], local_host: str, ports: dict[str, int],
                 *, user_agent: str = "callcenter") -> None:
        self.server = server
        self.trunks: dict[str, Trunk] = {}
        for settings in trunks:
            transport = settings.transport.value
            port = ports.get(f"sip_{transport}")
            if port is None:
                raise ValueError(f"trunk {settings.name!r} uses {transport}, which the server does not listen on")
            self.trunks[settings.name] = Trunk(settings, LocalContact(local_host, port, settings.transport),
                                               user_agent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._unregistered = asyncio.Event()
        self._stopping = False

    # ------------------------------------------------------------- queries for calls

    def get(self, name: str) -> Trunk | None:
        return self.trunks.get(name)

    def inbound(self, request: Request, source: Address) -> Trunk | None:
        """The trunk an INVITE comes from: addressed to a registering trunk's account (the
        provider sends to the Contact we registered), or sent from an `ip_auth` source."""
        user = request.uri.user if isinstance(request.uri, SipUri) else None
        if user:
            for trunk in self.trunks.values():
                if trunk.registration is not None and user == trunk.settings.username:
                    return trunk
        for trunk in self.trunks.values():
            if trunk.matches_source(source):
                return trunk
        return None

    def statuses(self) -> list[TrunkStatus]:
        return [trunk.status() for trunk in self.trunks.values()]

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        for trunk in self.trunks.values():
            if not await self._resolve(trunk):
                self._spawn(self._resolve_until_found(trunk), f"resolve-{trunk.name}")
                continue
            self._begin(trunk)

    async def stop(self, wait: float = UNREGISTER_WAIT) -> None:
        """Cancel timers and end every registration with `Expires: 0`, waiting up to `wait`
        seconds for the providers to confirm."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        now = self.server.now()
        for trunk in self.trunks.values():
            if trunk.timer is not None:
                trunk.timer.cancel()
                trunk.timer = None
            if trunk.registration is not None and trunk.address is not None:
                request = trunk.registration.stop(now)
                if request is not None:
                    self._send_register(trunk, request)
        if any(t.registration is not None and t.registration.pending for t in self.trunks.values()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._unregistered.wait(), wait)

    # ------------------------------------------------------------- internals

    def _spawn(self, coro: object, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, trunk: Trunk) -> bool:
        s = trunk.settings
        try:
            address = ipaddress.ip_address(s.host)
            host = str(address)
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    s.host, s.port, type=socket.SOCK_STREAM if s.transport.reliable else socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                log.warning("trunk %s: cannot resolve %s: %s", trunk.name, s.host, exc)
                return False
            host = str(infos[0][4][0])
        trunk.address = Address(s.transport, host, s.port)
        if not s.ip_auth:
            # The default: calls from the provider's own address are its calls.
            trunk.sources = (SourceMatch(ipaddress.ip_network(host)),)
        log.info("trunk %s: provider at %s", trunk.name, trunk.address)
        return True

    async def _resolve_until_found(self, trunk: Trunk) -> None:
        delay = RETRY_FIRST
        while not await self._resolve(trunk):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300.0)
        self._begin(trunk)

    def _begin(self, trunk: Trunk) -> None:
        now = self.server.now()
        if trunk.registration is not None:
            self._send_register(trunk, trunk.registration.start(now))
        if trunk.qualify is not None:
            self._tick(trunk, now)
        self._schedule(trunk)

    def _send_register(self, trunk: Trunk, request: Request) -> None:
        assert trunk.registration is not None and trunk.address is not None
        cseq = request.cseq.number
        registration = trunk.registration

        def on_response(event: ResponseReceived | TransactionTimeout) -> None:
            now = self.server.now()
            if isinstance(event, TransactionTimeout):
                registration.on_timeout(cseq, now)
            elif event.response.status >= 200:
                follow_up = registration.on_response(event.response, now)
                if follow_up is not None:
                    self._send_register(trunk, follow_up)
            if self._stopping:
                if not any(t.registration is not None and t.registration.pending for t in self.trunks.values()):
                    self._unregistered.set()
            else:
                self._schedule(trunk)

        self.server.send_request(request, trunk.address, on_response=on_response)

    def _send_options(self, trunk: Trunk, request: Request) -> None:
        assert trunk.qualify is not None and trunk.address is not None
        cseq = request.cseq.number
        qualify = trunk.qualify

        def on_response(event: ResponseReceived | TransactionTimeout) -> None:
            now = self.server.now()
            if isinstance(event, TransactionTimeout):
                qualify.on_timeout(cseq, now)
            else:
                qualify.on_response(event.response, now)
            if not self._stopping:
                self._schedule(trunk)

        self.server.send_request(request, trunk.address, on_response=on_response)

    def _tick(self, trunk: Trunk, due: float) -> None:
        """Whatever is due now: a refresh or retry REGISTER, an OPTIONS probe, a lost probe."""
        trunk.timer = None
        if self._stopping:
            return
        # The loop may run a timer a hair before its time (its clock resolution): it is due.
        now = max(self.server.now(), due)
        if trunk.registration is not None:
            request = trunk.registration.on_timer(now)
            if request is not None:
                self._send_register(trunk, request)
        if trunk.qualify is not None:
            probe = trunk.qualify.on_timer(now)
            if probe is not None:
                self._send_options(trunk, probe)
        self._schedule(trunk)

    def _schedule(self, trunk: Trunk) -> None:
        deadline = trunk.deadline
        if trunk.timer is not None:
            if deadline is not None and trunk.timer.when() == deadline:
                return
            trunk.timer.cancel()
            trunk.timer = None
        if deadline is not None:
            trunk.timer = asyncio.get_running_loop().call_at(deadline, self._tick, trunk, deadline)
