r"""Configuration: one dataclass tree, read from a TOML file, overridden by the command line.

Section and key names in the TOML file are the field names below, e.g.

    [network]
    bind = "0.0.0.0"
    sip_port = 5060

    [security]
    allow = ["192.0.2.0/24"]     # trunks and the office: never rate-limited or banned

    [[trunks]]                   # SIP trunks (sipstack.trunk.TrunkSettings), any number
    name = "telecom"
    host = "sip.example.cn"

    [[outbound_routes]]          # tried in order (acd.routing.OutboundRoute)
    pattern = '^0\d{10,11}$'
    trunks = ["telecom"]

    [dialplan]                   # acd.dialplan: rules, then ring groups, time conditions, holidays
    timezone = "Asia/Shanghai"
    [[dialplan.rules]]
    match = "_9X."
    destination = "outbound:${EXTEN:1}"
    [[ring_groups]]
    number = "600"
    members = ["1001", "1002"]
    [[time_conditions]]
    name = "office"
    hours = ["mon-fri 09:00-18:00"]
    open = "600"
    closed = "hangup:480"
    [[holidays]]
    date = 2026-10-01
    until = 2026-10-07

    [recording]                  # acd.recording_rules; a queue's `recording` key overrides it
    default = "never"            # "always", "window:mon-fri 09:00-18:00", "sample:20"
    directory = "recordings"     # under the data dir: <yyyy>/<mm>/<dd>/<call id>.wav

    [[queues]]                   # acd.queue_calls.QueueDefinition.from_table
    number = "8001"
    members = ["1001", "1002:2"] # extension[:penalty]
    answer = true                # music on hold and announcements (else the caller hears ringback)
    announce_position = true     # "callers ahead of you", the estimated wait
    announce_frequency = 60
    callback_key = "1"           # press 1 to hang up and be called back, keeping one's place
    skills = { "1001" = { vip = 5, en = 3 } }

    [media]                      # codecs SIP call legs offer and accept, preferred first (acd.leg_codecs)
    codecs = ["PCMU", "PCMA", "opus", "L16"]

    [webrtc]                     # browser agents' media (mediacore.webrtc_workers)
    workers = 2                  # processes running aiortc (default: one per CPU); 0: in the server's loop
    worker_nice = 5              # their niceness: under CPU overload the server's loop goes first
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acd.conference_rooms import RoomConfig, RoomConfigError
from acd.dialplan import DEFAULT_TIMEZONE, Dialplan, DialplanError
from acd.leg_codecs import DEFAULT_CODECS, CodecConfigError, sdp_codecs
from acd.queue_calls import QueueConfigError, QueueDefinition
from acd.recording_rules import RecordingPolicy, RecordingRuleError
from acd.routing import OutboundRoute, RouteConfigError
from acd.voicemail import VoicemailConfig, VoicemailError
from mediacore.errors import MediaError
from mediacore.webrtc import IceServer, WebRtcSettings
from sipstack.offer_answer import Codec
from sipstack.trunk import TrunkConfigError, TrunkSettings


class ConfigError(ValueError):
    """A configuration file or option that cannot be used, with a message saying why."""


@dataclass
class NetworkConfig:
    bind: str = "127.0.0.1"
    #: Address put in Via/Contact/SDP when `bind` is a wildcard; defaults to `bind`.
    advertise: str | None = None
    sip_port: int = 5060
    sip_tls_port: int = 5061
    http_port: int = 8000
    rtp_port_min: int = 10000
    rtp_port_max: int = 19999
    #: Transports to listen on; "ws" is served on the HTTP port under /sip.
    transports: list[str] = field(default_factory=lambda: ["udp", "tcp", "tls", "ws"])


@dataclass
class SipConfig:
    #: Realm of digest challenges and the domain extensions register under.
    realm: str = "callcenter"
    user_agent: str = "callcenter/0.1"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    #: Seconds a digest nonce stays valid before `stale=true` makes the client retry.
    nonce_lifetime: int = 300
    #: Digest algorithms challenged with, most preferred first (RFC 8760 §2.4: one challenge
    #: each; both MD5 and SHA-256 are implemented). The default is MD5 alone because clients
    #: in the field break on a second challenge: SIPp 3.6.1 reads only the first and knows only
    #: MD5; baresip 1.0.0 (libre) refuses the whole 401 if any challenge is not MD5; older desk
    #: phones behave alike. Where every client speaks SHA-256, use ["SHA-256", "MD5"] or
    #: ["SHA-256"].
    digest_algorithms: list[str] = field(default_factory=lambda: ["MD5"])


@dataclass
class SecurityConfig:
    #: Per-source flood limit (like Kamailio's pike): more than `rate_limit` requests within
    #: `rate_window` seconds from one address bans it for `rate_ban` seconds.
    rate_limit: int = 2000
    rate_window: float = 2.0
    rate_ban: float = 300.0
    #: Authentication failures from one address within `auth_fail_window` seconds before a ban.
    auth_fail_limit: int = 10
    auth_fail_window: float = 60.0
    auth_fail_ban: float = 600.0
    #: Addresses or networks (CIDR) never limited or banned: trunks, the office.
    allow: list[str] = field(default_factory=list)
    #: Reverse proxies (addresses or CIDR) whose X-Forwarded-For the web UI believes when it
    #: decides a client's address (per-role IP allow-lists, sign-in throttling). Default none:
    #: the socket peer is the client, and anyone's X-Forwarded-For is ignored.
    trusted_proxies: list[str] = field(default_factory=list)


@dataclass
class CallsConfig:
    #: Seconds the callee may ring before the caller gets 480 (Asterisk's Dial timeout).
    ring_timeout: float = 60.0
    #: Seconds without RTP from either side after which a call is torn down (dead far end).
    rtp_timeout: float = 30.0
    #: Longest call in seconds (0: no limit).
    max_duration: float = 4 * 3600.0


@dataclass
class MediaConfig:
    #: Codecs of SIP call legs, most preferred first: "PCMU", "PCMA", "opus", "L16" (at 16, 8
    #: and 48 kHz) or one L16 rate ("L16/8000", "L16/16000", "L16/48000"). A caller is answered
    #: in the first codec of its offer found here (488 if none is); a callee is offered the
    #: caller's codec first, then these, and the engine transcodes if it answers another.
    codecs: list[str] = field(default_factory=lambda: list(DEFAULT_CODECS))

    def sdp_codecs(self) -> tuple[Codec, ...]:
        """The SDP codecs named; ConfigError for an unknown name or an empty list."""
        try:
            return sdp_codecs(self.codecs)
        except CodecConfigError as exc:
            raise ConfigError(f"[media] {exc}") from None


@dataclass
class WebRtcConfig:
    #: Worker processes that run browser agents' WebRTC media (aiortc's ICE, DTLS-SRTP and
    #: Opus, about a tenth of a core of Python per call), started with the first agent. None
    #: (the default): one per CPU, so that work spreads over every core and never stalls the
    #: server's event loop. 0: run it in the server's loop (one process; fine for a handful
    #: of agents, the loop's lag grows with each call).
    workers: int | None = None
    #: Niceness added to the workers (0-19). 5: when the machine runs out of CPU, the server's
    #: event loop (SIP, call control, every agent's signalling) keeps about three times a
    #: worker's share, so overload costs browser audio before it costs the whole server. 0:
    #: the workers compete on equal terms.
    worker_nice: int = 5
    #: `[[webrtc.ice_servers]]`: STUN/TURN servers handed to agents' browsers behind NAT, each
    #: `urls = ["stun:stun.example.cn:3478"]` or `["turn:turn.example.cn:3478?transport=udp"]`
    #: with `username` and `credential` for TURN. The server itself offers host candidates only
    #: and never waits on these (trickle ICE).
    ice_servers: list[Any] = field(default_factory=list)

    def settings(self) -> WebRtcSettings:
        """The browser-side settings; raises ConfigError for an unusable server entry."""
        servers = []
        for n, entry in enumerate(self.ice_servers, 1):
            if not isinstance(entry, dict) or set(entry) - {"urls", "username", "credential"}:
                raise ConfigError(f"[[webrtc.ice_servers]] #{n}: a table of urls, username, credential")
            urls = entry.get("urls")
            urls = [urls] if isinstance(urls, str) else urls
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise ConfigError(f"[[webrtc.ice_servers]] #{n}: urls must be a string or a list of strings")
            try:
                servers.append(IceServer(tuple(urls), entry.get("username"), entry.get("credential")))
            except MediaError as exc:
                raise ConfigError(f"[[webrtc.ice_servers]] #{n}: {exc}") from None
        return WebRtcSettings(ice_servers=tuple(servers))


@dataclass
class Config:
    data_dir: Path = Path("data")
    network: NetworkConfig = field(default_factory=NetworkConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    #: Seed demo data (extensions 1001-1020, queues, IVR, agents) into an empty database.
    demo: bool = False
    #: With `demo`, also seed the CRM's demo business data (benches turn this off).
    demo_crm: bool = True
    #: SIP trunks to providers (`[[trunks]]`) and the routes extensions call out by.
    trunks: list[TrunkSettings] = field(default_factory=list)
    outbound_routes: list[OutboundRoute] = field(default_factory=list)
    #: ACD queues (`[[queues]]`): number, name, strategy, members, wrapuptime, ...
    queues: list[QueueDefinition] = field(default_factory=list)
    #: Conference rooms (`[[conferences]]`): number, name, pin, moderator_pin, max_members.
    conferences: list[RoomConfig] = field(default_factory=list)
    #: `[dialplan]` with `[[dialplan.rules]]`, `[[ring_groups]]`, `[[time_conditions]]`, `[[holidays]]`.
    dialplan: Dialplan = field(default_factory=Dialplan)
    #: `[recording]`: default ("never" | "always" | "window:..." | "sample:N"), directory, and
    #: `[recording.extensions]` / `[recording.trunks]` overrides (acd.recording_rules); a
    #: queue's own rule is its `recording` key.
    recording: RecordingPolicy = field(default_factory=RecordingPolicy)
    #: `[voicemail]`: fallback (busy/unanswered calls to the mailbox), max_seconds, language.
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig)
    #: `[webrtc]`: where browser agents' media runs (workers).
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    #: `[media]`: the codecs SIP call legs offer and accept.
    media: MediaConfig = field(default_factory=MediaConfig)

    @property
    def advertised_address(self) -> str:
        if self.network.advertise:
            return self.network.advertise
        if self.network.bind in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return self.network.bind


def load_config(path: Path | None) -> Config:
    config = Config()
    if path is None:
        return config
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    trunks, routes = raw.pop("trunks", []), raw.pop("outbound_routes", [])
    queues = raw.pop("queues", [])
    conferences = raw.pop("conferences", [])
    recording = raw.pop("recording", {})
    plan = (raw.pop("dialplan", {}), raw.pop("ring_groups", []), raw.pop("time_conditions", []),
            raw.pop("holidays", []))
    _merge(config, raw, where=str(path))
    workers = config.webrtc.workers
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= 64):
        raise ConfigError(f"{path}: [webrtc] workers must be 0..64 (0: in the server process), got {workers!r}")
    if isinstance(config.webrtc.worker_nice, bool) or not 0 <= config.webrtc.worker_nice <= 19:
        raise ConfigError(f"{path}: [webrtc] worker_nice must be 0..19, got {config.webrtc.worker_nice}")
    try:
        config.webrtc.settings()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config.media.sdp_codecs()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config.voicemail.check()
    except VoicemailError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for entry in config.security.trusted_proxies:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{path}: [security] trusted_proxies: {entry!r} is not an IP address or network") from None
    try:
        config.dialplan = Dialplan.from_config(*plan)
    except DialplanError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config.trunks, config.outbound_routes = parse_trunks(trunks, routes, where=str(path))
    config.queues = parse_queues(queues, where=str(path))
    config.conferences = parse_conferences(conferences, where=str(path))
    timezone = plan[0].get("timezone", DEFAULT_TIMEZONE) if isinstance(plan[0], dict) else DEFAULT_TIMEZONE
    try:
        config.recording = RecordingPolicy.from_config(recording, timezone=timezone)
    except RecordingRuleError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def parse_conferences(rooms: Any, where: str = "configuration") -> list[RoomConfig]:
    if not isinstance(rooms, list):
        raise ConfigError(f"{where}: conferences must be an array of tables ([[conferences]])")
    try:
        parsed = [RoomConfig.from_table(r) for r in rooms]
    except (RoomConfigError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if len({r.number for r in parsed}) != len(parsed):
        raise ConfigError(f"{where}: two conference rooms share a number")
    return parsed


def parse_queues(queues: Any, where: str = "configuration") -> list[QueueDefinition]:
    if not isinstance(queues, list):
        raise ConfigError(f"{where}: queues must be an array of tables ([[queues]])")
    try:
        parsed = [QueueDefinition.from_table(q) for q in queues]
    except (QueueConfigError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    numbers = [q.number for q in parsed]
    if len(set(numbers)) != len(numbers):
        raise ConfigError(f"{where}: two queues share a number")
    # An agent's skill level is the agent's, whichever queue's table names it: they must agree.
    levels: dict[tuple[str, str], tuple[int, str]] = {}
    for queue in parsed:
        for extension, skills in queue.skills.items():
            for skill, level in skills.items():
                seen = levels.setdefault((extension, skill), (level, queue.number))
                if seen[0] != level:
                    raise ConfigError(f"{where}: skill {skill!r} of {extension} is {seen[0]} in queue {seen[1]} "
                                      f"but {level} in queue {queue.number}")
    return parsed


def parse_trunks(trunks: Any, routes: Any, where: str = "configuration") -> tuple[list[TrunkSettings],
                                                                                   list[OutboundRoute]]:
    """Validate `[[trunks]]` and `[[outbound_routes]]`: each on its own, then together (names
    unique, every route's trunks defined)."""
    if not isinstance(trunks, list) or not isinstance(routes, list):
        raise ConfigError(f"{where}: trunks and outbound_routes must be arrays of tables ([[trunks]])")
    try:
        parsed = [TrunkSettings.from_table(t) for t in trunks]
        parsed_routes = [OutboundRoute.from_table(r, i) for i, r in enumerate(routes)]
    except (TrunkConfigError, RouteConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    names = [t.name for t in parsed]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}: two trunks are named {name!r}")
    dids = [did for t in parsed for did in t.dids]
    for did in dids:
        if dids.count(did) > 1:
            raise ConfigError(f"{where}: DID {did} is mapped by more than one trunk")
    for route in parsed_routes:
        for name in route.trunks:
            if name not in names:
                raise ConfigError(f"{where}: outbound route {route.name!r} uses trunk {name!r}, which is not defined")
    return parsed, parsed_routes


def _merge(target: Any, raw: dict[str, Any], where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            _merge(current, value, f"{where} [{key}]")
        elif isinstance(current, Path):
            setattr(target, key, Path(value))
        else:
            expected = type(current)
            if expected is float and isinstance(value, int):
                value = float(value)
            if current is not None and not isinstance(value, expected):
                raise ConfigError(f"{where}: {key} must be {expected.__name__}, not {type(value).__name__}")
            setattr(target, key, value)
