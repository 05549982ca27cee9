"""SIP trunks to a provider: their settings, outbound registration, and qualify, sans-IO.

`Registration` keeps one account registered with the provider (RFC 3261 §10.2): it builds the
REGISTERs, answers digest challenges through a `DigestClient`, refreshes before the granted
expiry runs out, backs off after failures, and ends with `Expires: 0`. `Qualify` probes the
provider with OPTIONS (RFC 3261 §11) so outbound routes can skip a trunk that stopped
answering. Both are fed responses and the time and return requests to send; the asyncio glue
is `sipstack.trunk_manager`.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from sipstack.addressing import Transport
from sipstack.errors import SipParseError
from sipstack.headers import Headers
from sipstack.message import Request, Response, generate_branch, generate_call_id, generate_tag
from sipstack.transaction import T1
from sipstack.trunk_auth import ClientCredentials, DigestClient
from sipstack.uri import SipUri, format_host

log = logging.getLogger(__name__)

#: Refresh a registration when this share of the granted time has passed: early enough that a
#: refresh lost once and retransmitted (Timer F, 32 s) still lands before expiry.
REFRESH_AT = 0.85
#: First retry after a failed registration, doubled per failure up to the cap: FreeSWITCH's
#: gateway `retry-seconds` default is 30 s; five minutes keeps a dead provider from being
#: hammered while a recovered one is found again soon.
RETRY_FIRST = 30.0
RETRY_MAX = 300.0
#: RFC 3261 §17.1.2.2 Timer F: a non-INVITE request unanswered this long has failed.
TIMER_F = 64 * T1
#: Expires accepted in settings: RFC 3261 §10.2.1.1 suggests 3600 s; providers range 60-3600.
MIN_EXPIRES, MAX_EXPIRES = 60, 86400

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
# A DID as providers send it: digits, optionally in E.164 with "+".
_DID_RE = re.compile(r"^\+?[0-9]{3,20}$")
# The extension (or any internal number: queue, IVR) a DID leads to.
_EXTENSION_RE = re.compile(r"^[0-9]{2,10}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}$")
_AUTH_USER_RE = re.compile(r'^[^"\\\x00-\x1f\x7f]{1,128}$')


class TrunkConfigError(ValueError):
    """A trunk's settings that cannot be used, with the reason."""


# ------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SourceMatch:
    """One `ip_auth` entry: an address or network, and optionally the one port it sends from."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SourceMatch:
        """"203.0.113.5", "203.0.113.0/24", "203.0.113.5:5060", "2001:db8::/32", "[2001:db8::1]:5060"."""
        value, port = text.strip(), None
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", value)
        if match:
            value = match.group(1) or match.group(3)
            port = int(match.group(2) or match.group(4))
            if not 0 < port < 65536:
                raise TrunkConfigError(f"ip_auth {text!r}: port out of range")
        try:
            network = ipaddress.ip_network(value.strip("[]"), strict=False)
        except ValueError:
            raise TrunkConfigError(f"ip_auth {text!r} is not an address, network or address:port") from None
        return cls(network, port)

    def matches(self, host: str, port: int) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address in self.network and (self.port is None or self.port == port)


@dataclass(frozen=True)
class TrunkSettings:
    """One trunk as configured (`[[trunks]]` in the TOML file); keys follow Asterisk's PJSIP
    and FreeSWITCH's gateway settings where they exist."""

    name: str
    #: The provider's proxy/registrar: a host name or address.
    host: str
    port: int = 5060
    transport: Transport = Transport.UDP
    #: The account: From/To user of REGISTER, and of our Contact (providers send calls to it).
    username: str = ""
    password: str = ""
    #: The digest user name when it differs from `username`; `username` otherwise.
    auth_username: str = ""
    #: Answer only digest challenges of this realm; any realm when empty.
    realm: str = ""
    register: bool = False
    #: Registration lifetime asked for, in seconds; the provider may grant less.
    expires: int = 600
    #: Domain of From/To and of the REGISTER Request-URI; `host` when empty.
    from_domain: str = ""
    #: Seconds between OPTIONS probes; 0 turns qualify off (the trunk is then always up).
    qualify: float = 30.0
    #: Seconds without any answer to a probe before the trunk counts as down; 0 waits for the
    #: transaction's own timeout (Timer F, 32 s). Asterisk's `qualify_timeout`.
    qualify_timeout: float = 0.0
    #: Sources whose INVITEs are taken as this trunk's calls without digest; the host's
    #: address when empty.
    ip_auth: tuple[SourceMatch, ...] = ()
    #: DID (the number the customer dialled) → internal number it rings.
    dids: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.from_domain or self.host

    @property
    def credentials(self) -> ClientCredentials | None:
        if not self.password:
            return None
        return ClientCredentials(self.auth_username or self.username, self.password, self.realm or None)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> TrunkSettings:
        """Validate one `[[trunks]]` table; TrunkConfigError says what is wrong."""
        if not isinstance(table, dict):
            raise TrunkConfigError("each [[trunks]] entry must be a table")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(table) - known)
        if unknown:
            raise TrunkConfigError(f"unknown key {unknown[0]!r}")
        name = _string(table, "name", required=True)
        if not _NAME_RE.match(name):
            raise TrunkConfigError(f"name {name!r}: use 1-40 letters, digits, '_', '.' or '-'")
        where = f"trunk {name!r}"
        host = _string(table, "host", required=True, where=where)
        if not _HOST_RE.match(host):
            raise TrunkConfigError(f"{where}: host {host!r} is not a host name or address")
        try:
            transport = Transport(_string(table, "transport", where=where, default="udp").lower())
        except ValueError:
            raise TrunkConfigError(f"{where}: transport must be udp, tcp or tls") from None
        if transport not in (Transport.UDP, Transport.TCP, Transport.TLS):
            raise TrunkConfigError(f"{where}: transport must be udp, tcp or tls")
        port = _number(table, "port", where, int, default=5061 if transport is Transport.TLS else 5060)
        if not 0 < port < 65536:
            raise TrunkConfigError(f"{where}: port must be 1-65535")
        username = _string(table, "username", where=where)
        auth_username = _string(table, "auth_username", where=where)
        if username and not _USER_RE.match(username):
            raise TrunkConfigError(f"{where}: username {username!r} has characters a SIP user part cannot carry")
        if auth_username and not _AUTH_USER_RE.match(auth_username):
            # A digest username is a quoted-string (RFC 3261 §25.1): IMS trunks use
            # "+862161234567@domain"; only quotes, backslashes and controls cannot be carried.
            raise TrunkConfigError(f"{where}: auth_username {auth_username!r} may not contain quotes, "
                                   "backslashes or control characters")
        password = _string(table, "password", where=where)
        register = table.get("register", False)
        if not isinstance(register, bool):
            raise TrunkConfigError(f"{where}: register must be true or false")
        if register and not (username and password):
            raise TrunkConfigError(f"{where}: register = true needs username and password")
        expires = _number(table, "expires", where, int, default=600)
        if not MIN_EXPIRES <= expires <= MAX_EXPIRES:
            raise TrunkConfigError(f"{where}: expires must be {MIN_EXPIRES}-{MAX_EXPIRES} seconds")
        qualify = _number(table, "qualify", where, float, default=30.0)
        qualify_timeout = _number(table, "qualify_timeout", where, float, default=0.0)
        if qualify < 0 or qualify_timeout < 0:
            raise TrunkConfigError(f"{where}: qualify and qualify_timeout must not be negative")
        if qualify and qualify < 1:
            raise TrunkConfigError(f"{where}: qualify must be 0 (off) or at least 1 second")
        from_domain = _string(table, "from_domain", where=where)
        if from_domain and not _HOST_RE.match(from_domain):
            raise TrunkConfigError(f"{where}: from_domain {from_domain!r} is not a domain")
        raw_ip = table.get("ip_auth", [])
        if isinstance(raw_ip, str):
            raw_ip = [raw_ip]
        if not isinstance(raw_ip, list) or not all(isinstance(x, str) for x in raw_ip):
            raise TrunkConfigError(f"{where}: ip_auth must be a list of addresses or networks")
        try:
            ip_auth = tuple(SourceMatch.parse(x) for x in raw_ip)
        except TrunkConfigError as exc:
            raise TrunkConfigError(f"{where}: {exc}") from None
        dids = table.get("dids", {})
        if not isinstance(dids, dict):
            raise TrunkConfigError(f"{where}: dids must be a table of DID = \"extension\"")
        for did, extension in dids.items():
            if not _DID_RE.match(did):
                raise TrunkConfigError(f"{where}: DID {did!r} must be 3-20 digits, optionally after '+'")
            if not isinstance(extension, str) or not _EXTENSION_RE.match(extension):
                raise TrunkConfigError(f"{where}: DID {did} must map to an internal number "
                                       f"(2-10 digits, as a string), not {extension!r}")
        return cls(name=name, host=host.strip("[]"), port=port, transport=transport, username=username,
                   password=password, auth_username=auth_username, realm=_string(table, "realm", where=where),
                   register=register, expires=expires, from_domain=from_domain, qualify=qualify,
                   qualify_timeout=qualify_timeout, ip_auth=ip_auth, dids=dict(dids))


def _string(table: dict[str, Any], key: str, *, required: bool = False, where: str = "trunk",
            default: str = "") -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise TrunkConfigError(f"{where}: {key} is required")
        return default
    if not isinstance(value, str):
        raise TrunkConfigError(f"{where}: {key} must be a string")
    if required and not value:
        raise TrunkConfigError(f"{where}: {key} must not be empty")
    return value


def _number(table: dict[str, Any], key: str, where: str, kind: type, *, default: float) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise TrunkConfigError(f"{where}: {key} must be {'an integer' if kind is int else 'a number'}")
    return kind(value)


# ------------------------------------------------------------------ registration


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"  # not yet registered, or ended with Expires: 0
    REGISTERED = "registered"      # the provider granted a binding that has not run out
    FAILED = "failed"              # the last attempt failed; a retry is scheduled


@dataclass(frozen=True)
class LocalContact:
    """Where the provider reaches us: the address and port of our listener on the trunk's transport."""

    host: str
    port: int
    transport: Transport


class Registration:
    """RFC 3261 §10.2 client registration of one trunk account, fed responses and time.

    Every method that may produce a REGISTER returns it (or None); the owner sends it in a new
    client transaction and passes that transaction's final response to `on_response` or its
    timeout to `on_timeout`. `deadline` is when `on_timer` wants to run next."""

    def __init__(self, trunk: TrunkSettings, local: LocalContact, *, user_agent: str = "callcenter") -> None:
        assert trunk.username, "a registering trunk has a username"
        self.trunk = trunk
        self.local = local
        self.user_agent = user_agent
        self.state = RegistrationState.UNREGISTERED
        self.auth = DigestClient(trunk.credentials or ClientCredentials(trunk.username, ""))
        #: §10.2.4: refreshes reuse the Call-ID, with CSeq rising by one per REGISTER.
        self.call_id = generate_call_id(local.host)
        self.from_tag = generate_tag()
        self.cseq = 0
        self.requested = trunk.expires
        #: Seconds the provider granted in its last 200, and when that binding runs out.
        self.granted: int | None = None
        self.expires_at: float | None = None
        self.retry_delay = RETRY_FIRST
        self.last_status = 0
        self.last_reason = ""
        self._due: float | None = None      # next refresh or retry
        self._pending: int | None = None    # CSeq of the REGISTER in flight
        self._pending_expires = 0
        self._interval_retried = False
        self._stopped = False

    # ------------------------------------------------------------- addressing

    @property
    def request_uri(self) -> SipUri:
        """§10.2: the Request-URI names the registrar's domain (no user part)."""
        trunk = self.trunk
        port = None if trunk.from_domain or trunk.port in (5060, 5061) else trunk.port
        return SipUri("sip", None, None, trunk.domain, port, {})

    @property
    def aor(self) -> str:
        return f"sip:{self.trunk.username}@{format_host(self.trunk.domain)}"

    @property
    def contact_uri(self) -> SipUri:
        params: dict[str, str | None] = {}
        if self.local.transport is not Transport.UDP:
            params["transport"] = self.local.transport.value
        return SipUri("sip", self.trunk.username, None, self.local.host, self.local.port, params)

    # ------------------------------------------------------------- queries

    @property
    def deadline(self) -> float | None:
        return None if self._stopped or self._pending is not None else self._due

    @property
    def registered(self) -> bool:
        return self.state is RegistrationState.REGISTERED

    @property
    def pending(self) -> bool:
        """A REGISTER is in flight."""
        return self._pending is not None

    # ------------------------------------------------------------- inputs

    def start(self, now: float) -> Request:
        self._stopped = False
        return self._register(self.requested, now, fresh=True)

    def on_timer(self, now: float) -> Request | None:
        if self._stopped or self._pending is not None or self._due is None or now < self._due:
            return None
        if self.state is RegistrationState.REGISTERED and self.expires_at is not None and now >= self.expires_at:
            # The refresh never happened in time (the process stalled): the binding is gone.
            self.state = RegistrationState.FAILED
        return self._register(self.requested, now, fresh=True)

    def on_response(self, response: Response, now: float) -> Request | None:
        """The final response to the REGISTER with CSeq `response.cseq.number`."""
        if response.cseq.method != "REGISTER" or response.cseq.number != self._pending or response.status < 200:
            return None  # a late answer to a REGISTER we gave up on, or a provisional
        expires = self._pending_expires
        self._pending = None
        self.last_status, self.last_reason = response.status, response.reason
        status = response.status
        if status in (401, 407):
            answer = self.auth.answer(response, "REGISTER", str(self.request_uri))
            if answer is not None:
                return self._register(expires, now, fresh=False, auth=answer)
            self.auth.forget()
            return self._failed(now, f"{status} {response.reason}: credentials refused")
        if status == 423 and expires and not self._interval_retried:
            # RFC 3261 §10.2.8: retry at once with at least the registrar's Min-Expires.
            minimum = _int_header(response, "Min-Expires")
            if minimum is not None and expires < minimum <= MAX_EXPIRES:
                self._interval_retried = True
                self.requested = minimum
                return self._register(minimum, now, fresh=False)
        if 200 <= status < 300:
            if expires == 0:
                self.state = RegistrationState.UNREGISTERED
                self.granted = self.expires_at = self._due = None
                return None
            granted = self._granted(response, expires)
            if granted <= 0:
                return self._failed(now, "200 OK without our binding")
            self.state = RegistrationState.REGISTERED
            self.granted = granted
            self.expires_at = now + granted
            self._due = now + granted * REFRESH_AT
            self.retry_delay = RETRY_FIRST
            return None
        if expires == 0:
            self.state = RegistrationState.UNREGISTERED
            return None
        return self._failed(now, f"{status} {response.reason}")

    def on_timeout(self, cseq: int, now: float) -> None:
        """The REGISTER with CSeq `cseq` got no answer (Timer F) or could not be sent."""
        if self._pending is None or cseq != self._pending:
            return
        expires, self._pending = self._pending_expires, None
        self.last_status, self.last_reason = 408, "Request Timeout"
        if expires == 0:
            self.state = RegistrationState.UNREGISTERED
            return
        self._failed(now, "no answer")

    def stop(self, now: float) -> Request | None:
        """End the registration (RFC 3261 §10.2.2: Expires: 0 removes our binding). Returns
        the un-REGISTER when there may be a binding to remove, None otherwise."""
        was = self.state
        self._stopped = True
        self._due = None
        if was is RegistrationState.REGISTERED or self._pending is not None:
            return self._register(0, now, fresh=True)
        self.state = RegistrationState.UNREGISTERED
        return None

    # ------------------------------------------------------------- internals

    def _register(self, expires: int, now: float, *, fresh: bool,
                  auth: list[tuple[str, str]] | None = None) -> Request:
        if fresh:
            self.auth.begin()
            self._interval_retried = False
        self.cseq += 1
        self._pending = self.cseq
        self._pending_expires = expires
        transport = self.local.transport
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{transport.via_name} {format_host(self.local.host)}:{self.local.port}"
                           f";branch={generate_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self.from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"<{self.contact_uri}>")
        headers.add("Expires", str(expires))
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY")
        headers.add("User-Agent", self.user_agent)
        uri = self.request_uri
        for name, value in auth if auth is not None else self.auth.preemptive("REGISTER", str(uri)):
            headers.add(name, value)
        return Request("REGISTER", uri, headers)

    def _granted(self, response: Response, requested: int) -> int:
        """RFC 3261 §10.2.4: the expiry the registrar granted, from our Contact's `expires`
        parameter in the 200, else its Expires header, else what we asked for."""
        ours = self.contact_uri
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        for contact in contacts:
            uri = contact.uri
            if (isinstance(uri, SipUri) and uri.user == ours.user and uri.port == ours.port
                    and uri.host.strip("[]").lower() == ours.host.strip("[]").lower()):
                value = contact.params.get("expires")
                if value is not None and value.isdigit():
                    return int(value)
        header = _int_header(response, "Expires")
        return header if header is not None else requested

    def _failed(self, now: float, why: str) -> None:
        log.warning("trunk %s: registration failed (%s); retrying in %.0f s", self.trunk.name, why, self.retry_delay)
        self.state = RegistrationState.FAILED
        self.granted = self.expires_at = None
        self._due = now + self.retry_delay
        self.retry_delay = min(self.retry_delay * 2, RETRY_MAX)
        return None


def _int_header(message: Response, name: str) -> int | None:
    value = (message.headers.get(name) or "").strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


# ------------------------------------------------------------------ qualify


class Qualify:
    """OPTIONS keep-alive of one trunk (Asterisk's `qualify_frequency`, FreeSWITCH's `ping`).

    The trunk is up while the provider answers — any response, even 404 or 407, proves it
    alive — and down once a probe goes unanswered for `qualify_timeout` (or Timer F)."""

    def __init__(self, trunk: TrunkSettings, local: LocalContact, *, user_agent: str = "callcenter") -> None:
        self.trunk = trunk
        self.local = local
        self.user_agent = user_agent
        self.interval = trunk.qualify
        self.timeout = trunk.qualify_timeout or TIMER_F
        #: Until the first probe is answered or times out the trunk counts as up: a call at
        #: start-up is tried rather than refused.
        self.up = True
        self.answered = 0
        self.lost = 0
        #: Round-trip time of the last answered probe, seconds.
        self.rtt: float | None = None
        self._from_tag = generate_tag()
        self._cseq = 0
        self._sent_at: float | None = None
        self._probe: int | None = None      # CSeq of the probe in flight
        self._next = 0.0

    @property
    def deadline(self) -> float | None:
        if not self.interval:
            return None
        if self._probe is not None:
            assert self._sent_at is not None
            return self._sent_at + self.timeout
        return self._next

    def on_timer(self, now: float) -> Request | None:
        if not self.interval:
            return None
        if self._probe is not None:
            assert self._sent_at is not None
            if now >= self._sent_at + self.timeout:
                self._lost(now)
            return None
        if now < self._next:
            return None
        return self._options(now)

    def on_response(self, response: Response, now: float) -> None:
        if response.cseq.method != "OPTIONS" or response.cseq.number != self._probe:
            return  # an answer to a probe we already counted as lost: the next probe decides
        sent = self._sent_at if self._sent_at is not None else now
        self.rtt = now - sent
        self._probe = None
        self.answered += 1
        if not self.up:
            log.info("trunk %s is up again (%d %s)", self.trunk.name, response.status, response.reason)
        self.up = True
        self._next = sent + self.interval

    def on_timeout(self, cseq: int, now: float) -> None:
        if cseq == self._probe:
            self._lost(now)

    def _lost(self, now: float) -> None:
        self._probe = None
        self.lost += 1
        if self.up:
            log.warning("trunk %s is down: no answer to OPTIONS within %.0f s", self.trunk.name, self.timeout)
        self.up = False
        sent = self._sent_at if self._sent_at is not None else now
        self._next = max(now, sent + self.interval)

    def _options(self, now: float) -> Request:
        self._cseq += 1
        self._probe = self._cseq
        self._sent_at = now
        trunk = self.trunk
        transport = self.local.transport
        uri = SipUri("sip", None, None, trunk.host, trunk.port, {} if transport is Transport.UDP
                     else {"transport": transport.value})
        local_user = trunk.username or "callcenter"
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{transport.via_name} {format_host(self.local.host)}:{self.local.port}"
                           f";branch={generate_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{local_user}@{format_host(trunk.domain)}>;tag={self._from_tag}")
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", generate_call_id(self.local.host))
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        headers.add("Accept", "application/sdp")
        headers.add("User-Agent", self.user_agent)
        return Request("OPTIONS", uri, headers)
