"""Flood and scanner defence: a per-source rate limit and an auth-failure ban, in-process.

The two jobs Kamailio's pike module and fail2ban do for a SIP server, sans-IO:
the transport calls ``FloodGuard.admit`` for every datagram or message with the
packet's *source address* and drops the packet silently when it returns False
(a banned scanner gets no answer, not even a 403, so it learns nothing); the
authenticator's caller reports ``auth_failed`` when digest verification fails.

Only the network source address is ever used. Anything inside the message
(From, Contact, Via) is attacker-controlled: keying bans on it would let a
forged message make the server ban itself or its trunks. UDP source addresses
can be spoofed too, which is why trunk providers and load balancers belong in
``SecurityPolicy.allow``.

Time comes in as ``now`` (seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

__all__ = ["FloodGuard", "SecurityEvent", "SecurityEventKind", "SecurityPolicy"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class SecurityPolicy:
    """Limits of the flood guard. The defaults suit a site of a few hundred phones."""

    rate_limit: int = 2000
    """Messages one source may send per ``rate_window`` before it is banned.

    A phone sends a handful per call; 2000 per 2 s only trips on floods and on
    scanners (sipvicious and friends send thousands per second). A proxy or
    SBC in front of us concentrates many users on one address: allow-list it.
    """
    rate_window: float = 2.0
    """Seconds over which ``rate_limit`` is measured (a sliding window)."""
    rate_ban: float = 300.0
    """Seconds a source that exceeded the rate stays banned."""
    auth_fail_limit: int = 10
    """Failed authentications tolerated per ``auth_fail_window``; one more bans."""
    auth_fail_window: float = 60.0
    """Seconds over which authentication failures are counted (sliding)."""
    auth_fail_ban: float = 600.0
    """Seconds a source that failed authentication too often stays banned."""
    allow: Sequence[str] = ()
    """IP addresses or CIDR networks (IPv4, IPv6) exempt from counting and bans."""
    max_sources: int = 100_000
    """Most sources tracked per table, so a scan from many addresses cannot
    exhaust memory (about 200 bytes per source: 20 MB at the default)."""

    def __post_init__(self) -> None:
        if self.rate_limit < 1 or self.auth_fail_limit < 1:
            raise ValueError("rate_limit and auth_fail_limit must be at least 1")
        if min(self.rate_window, self.rate_ban, self.auth_fail_window, self.auth_fail_ban) <= 0:
            raise ValueError("security windows and ban durations must be positive")
        if self.max_sources < 16:
            raise ValueError("max_sources must be at least 16")
        if isinstance(self.allow, str):
            # A bare string would be iterated character by character.
            raise ValueError("SecurityPolicy.allow is a sequence of addresses, not one string")


class SecurityEventKind(enum.Enum):
    RATE_LIMIT_BAN = "rate_limit_ban"
    AUTH_FAILURE_BAN = "auth_failure_ban"
    AUTH_FAILURE = "auth_failure"
    BAN_EXPIRED = "ban_expired"


@dataclass
class SecurityEvent:
    """One structured security event, for the log and the admin UI."""

    kind: SecurityEventKind
    """What happened."""
    source: str
    """The packet source IP address concerned."""
    count: int
    """Messages in the window (rate ban) or failures in the window (auth events);
    0 for an allow-listed source, whose failures are logged but not counted."""
    at: float
    """When it happened (the caller's monotonic clock)."""
    until: float | None
    """When the ban ends, for the two ban kinds; None otherwise."""
    detail: str = ""
    """Free text, e.g. the username tried."""


class _Rate:
    """Sliding-window message counter of one source: two fixed windows, interpolated."""

    __slots__ = ("start", "current", "previous", "exempt")

    def __init__(self, start: float, exempt: bool) -> None:
        self.start = start
        self.current = 0
        self.previous = 0
        self.exempt = exempt


class FloodGuard:
    """Per-source rate limiting and authentication-failure bans.

    The rate is estimated pike-style with two counters per source: the count of
    the current fixed window plus the previous window's count weighted by how
    much of it still overlaps the sliding window. That is one dict lookup and a
    few float operations per packet, with no allocation for a known source.

    A ban is not extended by packets arriving while it lasts (they are not even
    counted); a source still flooding when it ends is banned again after
    ``rate_limit`` more messages.

    ``auth_succeeded`` forgives only the failures recorded for the same
    ``detail`` (the username): a phone that mistyped its password and was then
    fixed starts clean, but a scanner holding one valid account cannot use it to
    wipe its failed guesses at other accounts from the same address.
    Otherwise failures simply age out of the sliding window (fail2ban style).
    """

    def __init__(
        self,
        policy: SecurityPolicy,
        on_event: Callable[[SecurityEvent], None] | None = None,
    ) -> None:
        self.policy = policy
        self._on_event = on_event
        self._allow: list[_Network] = []
        for entry in policy.allow:
            try:
                self._allow.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"SecurityPolicy.allow: {entry!r} is not an IP address or network") from exc
        self._limit = policy.rate_limit
        self._window = float(policy.rate_window)
        self._max = policy.max_sources
        self._rates: dict[str, _Rate] = {}
        self._failures: dict[str, deque[tuple[float, str]]] = {}
        self._bans: dict[str, float] = {}
        self._ban_kinds: dict[str, SecurityEventKind] = {}
        self._next_prune = float("-inf")
        # Idle entries are dropped every two rate windows: after that long a
        # source's counters carry no weight in the estimate any more.
        self._prune_interval = 2.0 * self._window

    # -- allow-list ---------------------------------------------------------

    def _in_allow_list(self, source_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError as exc:
            raise ValueError(f"FloodGuard: {source_ip!r} is not an IP address") from exc
        if address.version == 6 and address.ipv4_mapped is not None:
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)

    def _exempt(self, source_ip: str) -> bool:
        state = self._rates.get(source_ip)
        if state is not None:
            return state.exempt
        return self._in_allow_list(source_ip)

    # -- per packet ---------------------------------------------------------

    def admit(self, source_ip: str, now: float) -> bool:
        """Count one message from ``source_ip``; False means drop it silently."""
        if now >= self._next_prune:
            self.prune(now)
        until = self._bans.get(source_ip)
        if until is not None:
            if now < until:
                return False
            self._expire(source_ip, now)
        state = self._rates.get(source_ip)
        if state is None:
            if len(self._rates) >= self._max:
                self._make_room(self._rates, now)
            state = _Rate(now, self._in_allow_list(source_ip))
            state.current = 1
            self._rates[source_ip] = state
            return True
        if state.exempt:
            return True
        window = self._window
        elapsed = now - state.start
        if elapsed >= window:
            if elapsed >= 2.0 * window:
                state.previous = 0
                state.start = now
                elapsed = 0.0
            else:
                state.previous = state.current
                state.start += window
                elapsed -= window
            state.current = 0
        state.current += 1
        estimate = state.current + state.previous * (window - elapsed) / window
        if estimate <= self._limit:
            return True
        self._ban(source_ip, now, now + self.policy.rate_ban, SecurityEventKind.RATE_LIMIT_BAN,
                  int(estimate), f"more than {self._limit} messages in {window:g} s")
        return False

    # -- authentication -----------------------------------------------------

    def auth_failed(self, source_ip: str, now: float, detail: str = "") -> bool:
        """Record a failed authentication; True if the source is (now) banned."""
        if self._exempt(source_ip):
            self._emit(SecurityEventKind.AUTH_FAILURE, source_ip, 0, now, None, detail)
            return False
        if self.is_banned(source_ip, now):
            return True
        failures = self._failures.get(source_ip)
        if failures is None:
            if len(self._failures) >= self._max:
                self._make_room(self._failures, now)
            # One more than the limit is all that is ever needed: that one bans.
            failures = deque(maxlen=self.policy.auth_fail_limit + 1)
            self._failures[source_ip] = failures
        horizon = now - self.policy.auth_fail_window
        while failures and failures[0][0] <= horizon:
            failures.popleft()
        failures.append((now, detail))
        count = len(failures)
        self._emit(SecurityEventKind.AUTH_FAILURE, source_ip, count, now, None, detail)
        if count > self.policy.auth_fail_limit:
            del self._failures[source_ip]
            self._ban(source_ip, now, now + self.policy.auth_fail_ban,
                      SecurityEventKind.AUTH_FAILURE_BAN, count, detail)
            return True
        return False

    def auth_succeeded(self, source_ip: str, now: float, detail: str = "") -> None:
        """Forgive this source's failures recorded with the same ``detail`` (username)."""
        failures = self._failures.get(source_ip)
        if failures is None:
            return
        horizon = now - self.policy.auth_fail_window
        kept = [(at, tried) for at, tried in failures if tried != detail and at > horizon]
        if kept:
            failures.clear()
            failures.extend(kept)
        else:
            del self._failures[source_ip]

    # -- bans ---------------------------------------------------------------

    def is_banned(self, source_ip: str, now: float) -> bool:
        until = self._bans.get(source_ip)
        if until is None:
            return False
        if now < until:
            return True
        self._expire(source_ip, now)
        return False

    def unban(self, source_ip: str) -> bool:
        """Lift a ban and forget the source's counts (operator action); True if it was banned.

        No event is emitted: the operator's action is audited where it is taken.
        """
        self._rates.pop(source_ip, None)
        self._failures.pop(source_ip, None)
        self._ban_kinds.pop(source_ip, None)
        return self._bans.pop(source_ip, None) is not None

    def banned(self, now: float) -> list[tuple[str, float]]:
        """Current bans as (source, until), soonest to end first (for the admin UI)."""
        self._expire_bans(now)
        return sorted(self._bans.items(), key=lambda item: (item[1], item[0]))

    def _ban(self, source_ip: str, now: float, until: float, kind: SecurityEventKind, count: int,
             detail: str) -> None:
        if source_ip not in self._bans and len(self._bans) >= self._max:
            self._expire_bans(now)
            if len(self._bans) >= self._max:
                # Every ban has the same length per kind, so the oldest inserted
                # is (nearly) the one closest to its end.
                oldest = next(iter(self._bans))
                del self._bans[oldest]
                self._ban_kinds.pop(oldest, None)
        self._bans[source_ip] = until
        self._ban_kinds[source_ip] = kind
        # The ban itself now keeps the source out: its counters start afresh after it.
        self._rates.pop(source_ip, None)
        self._emit(kind, source_ip, count, now, until, detail)

    def _expire(self, source_ip: str, now: float) -> None:
        self._bans.pop(source_ip, None)
        kind = self._ban_kinds.pop(source_ip, None)
        self._emit(SecurityEventKind.BAN_EXPIRED, source_ip, 0, now, None, kind.value if kind else "")

    def _expire_bans(self, now: float) -> None:
        ended = [source for source, until in self._bans.items() if until <= now]
        for source in ended:
            self._expire(source, now)

    # -- memory -------------------------------------------------------------

    def prune(self, now: float) -> None:
        """Drop idle entries and expired bans; ``admit`` calls it every two rate windows."""
        stale_before = now - 2.0 * self._window
        idle = [source for source, state in self._rates.items() if state.start <= stale_before]
        for source in idle:
            del self._rates[source]
        horizon = now - self.policy.auth_fail_window
        old = [source for source, failures in self._failures.items() if failures[-1][0] <= horizon]
        for source in old:
            del self._failures[source]
        self._expire_bans(now)
        self._next_prune = now + self._prune_interval

    def _make_room(self, table: dict, now: float) -> None:
        """Bring a full table down to three quarters of ``max_sources``.

        Idle entries go first (prune), then the oldest entries. For the rate
        table that only happens under a flood from more distinct addresses than
        ``max_sources`` within two windows, when per-source counting cannot be
        exact anyway; sources already near the limit are kept in preference.
        """
        self.prune(now)
        target = self._max * 3 // 4
        excess = len(table) - target
        if excess <= 0:
            return
        if table is self._rates:
            quiet = self._limit // 4
            victims = [s for s, st in self._rates.items() if st.current + st.previous <= quiet]
            for source in victims[:excess]:
                del self._rates[source]
            excess = len(table) - target
            if excess <= 0:
                return
        survivors = dict(islice(table.items(), excess, None))
        table.clear()
        table.update(survivors)

    @property
    def tracked(self) -> int:
        """Entries held in memory across all tables (for tests and /metrics)."""
        return len(self._rates) + len(self._failures) + len(self._bans)

    def _emit(self, kind: SecurityEventKind, source: str, count: int, at: float, until: float | None,
              detail: str) -> None:
        if self._on_event is not None:
            self._on_event(SecurityEvent(kind, source, count, at, until, detail))
