"""Flood and scanner defence: rate bans, auth-failure bans, allow-list, bounded memory."""

from __future__ import annotations

import pytest

from sipstack.security import FloodGuard, SecurityEvent, SecurityEventKind, SecurityPolicy

SCANNER = "203.0.113.7"
PHONE = "198.51.100.20"


class Recorder:
    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    def __call__(self, event: SecurityEvent) -> None:
        self.events.append(event)

    def kinds(self) -> list[SecurityEventKind]:
        return [e.kind for e in self.events]


def _guard(**policy) -> tuple[FloodGuard, Recorder]:
    recorder = Recorder()
    return FloodGuard(SecurityPolicy(**policy), on_event=recorder), recorder


# -- authentication failures (fail2ban) ---------------------------------------

def test_eleventh_failure_within_a_minute_bans():
    guard, log = _guard()
    for i in range(10):
        assert guard.auth_failed(SCANNER, 100.0 + i * 5, detail=f"10{i:02d}") is False
    assert guard.admit(SCANNER, 149.0) is True
    assert guard.auth_failed(SCANNER, 150.0, detail="admin") is True
    assert guard.is_banned(SCANNER, 150.0)
    assert guard.admit(SCANNER, 151.0) is False
    failures = [e for e in log.events if e.kind is SecurityEventKind.AUTH_FAILURE]
    assert [e.count for e in failures] == list(range(1, 12))
    assert failures[0].detail == "1000" and failures[0].until is None and failures[0].source == SCANNER
    ban = log.events[-1]
    assert ban == SecurityEvent(SecurityEventKind.AUTH_FAILURE_BAN, SCANNER, 11, 150.0, 750.0, "admin")
    assert guard.banned(200.0) == [(SCANNER, 750.0)]


def test_failures_spread_over_more_than_the_window_do_not_ban():
    guard, log = _guard()
    for i in range(30):
        # One failure every 6 s: at most 10 within any 60 s.
        assert guard.auth_failed(PHONE, i * 6.0, detail="1001") is False
    assert not guard.is_banned(PHONE, 200.0)
    assert max(e.count for e in log.events) == 10
    assert SecurityEventKind.AUTH_FAILURE_BAN not in log.kinds()


def test_success_forgives_only_the_same_users_failures():
    guard, _ = _guard()
    for i in range(10):
        guard.auth_failed(PHONE, float(i), detail="1001")
    # The phone was fixed: its user authenticates, its mistakes are forgiven.
    guard.auth_succeeded(PHONE, 10.0, detail="1001")
    assert guard.auth_failed(PHONE, 11.0, detail="1001") is False
    # A scanner holding one valid account cannot launder guesses at others.
    for i in range(9):
        guard.auth_failed(SCANNER, float(i), detail=f"guess{i}")
    guard.auth_succeeded(SCANNER, 9.5, detail="1005")
    assert guard.auth_failed(SCANNER, 10.0, detail="guess9") is False
    assert guard.auth_failed(SCANNER, 11.0, detail="guess10") is True


def test_ban_expires_and_says_so():
    guard, log = _guard(auth_fail_limit=2, auth_fail_ban=600.0)
    for t in (0.0, 1.0, 2.0):
        guard.auth_failed(SCANNER, t)
    assert guard.admit(SCANNER, 601.9) is False
    assert guard.admit(SCANNER, 602.0) is True
    assert log.events[-1].kind is SecurityEventKind.BAN_EXPIRED
    assert log.events[-1].source == SCANNER
    assert guard.banned(603.0) == []
    # The failures that led to the ban were forgotten with it.
    assert guard.auth_failed(SCANNER, 603.0) is False


def test_banned_source_failures_are_not_counted_again():
    guard, log = _guard(auth_fail_limit=1)
    guard.auth_failed(SCANNER, 0.0)
    assert guard.auth_failed(SCANNER, 0.5) is True
    events = len(log.events)
    assert guard.auth_failed(SCANNER, 1.0) is True
    assert len(log.events) == events


def test_operator_unban():
    guard, _ = _guard(auth_fail_limit=1)
    guard.auth_failed(SCANNER, 0.0)
    guard.auth_failed(SCANNER, 0.1)
    assert guard.unban(SCANNER) is True
    assert guard.unban(SCANNER) is False
    assert guard.admit(SCANNER, 1.0) is True
    assert guard.auth_failed(SCANNER, 1.0) is False  # counts start afresh


# -- rate limit (pike) ----------------------------------------------------------

def test_rate_limit_bans_the_flooder_but_not_its_neighbour():
    guard, log = _guard(rate_limit=100, rate_window=2.0, rate_ban=300.0)
    for i in range(100):
        assert guard.admit(SCANNER, 10.0 + i * 0.001) is True
    assert guard.admit(SCANNER, 10.2) is False
    assert guard.admit(PHONE, 10.2) is True
    assert guard.admit(SCANNER, 11.0) is False  # banned sources get nothing, silently
    ban = [e for e in log.events if e.kind is SecurityEventKind.RATE_LIMIT_BAN]
    assert len(ban) == 1
    assert (ban[0].source, ban[0].count, ban[0].at, ban[0].until) == (SCANNER, 101, 10.2, 310.2)
    assert guard.banned(11.0) == [(SCANNER, 310.2)]
    assert guard.admit(SCANNER, 310.2) is True  # the ban ran out


def test_steady_traffic_under_the_rate_is_never_banned():
    guard, _ = _guard(rate_limit=100, rate_window=2.0)
    # 40 messages/s = 80 per 2 s window, across many window boundaries.
    assert all(guard.admit(PHONE, i * 0.025) for i in range(2000))


def test_sliding_window_catches_a_burst_straddling_a_boundary():
    guard, _ = _guard(rate_limit=100, rate_window=2.0)
    # The source's first message opens a window at t=0; then 90 at the end of
    # that window and 90 at the start of the next: 180 within 0.2 s, which a
    # plain fixed-window counter (at most 91 per window here) would let through.
    assert guard.admit(SCANNER, 0.0)
    results = [guard.admit(SCANNER, 1.9 + i * 0.001) for i in range(90)]
    results += [guard.admit(SCANNER, 2.0 + i * 0.001) for i in range(90)]
    assert all(results[:99]) and not all(results)


def test_sustained_traffic_over_the_rate_is_banned():
    guard, _ = _guard(rate_limit=100, rate_window=2.0)
    results = [guard.admit(SCANNER, i / 60.0) for i in range(600)]  # 60/s = 120 per window
    assert False in results


# -- allow-list -------------------------------------------------------------------

def test_allow_list_is_exempt_from_everything():
    guard, log = _guard(rate_limit=10, auth_fail_limit=1, allow=["10.0.0.0/8", "2001:db8::/32", " 192.0.2.1 "])
    for source in ("10.1.2.3", "2001:db8::5", "192.0.2.1", "::ffff:10.9.9.9"):
        assert all(guard.admit(source, 1.0) for _ in range(1000))
        for _ in range(5):
            assert guard.auth_failed(source, 1.0, detail="trunk") is False
        assert not guard.is_banned(source, 1.0)
    # Failures from trusted peers are still logged, but with no count.
    assert {e.kind for e in log.events} == {SecurityEventKind.AUTH_FAILURE}
    assert {e.count for e in log.events} == {0}
    assert guard.admit("192.0.2.2", 1.0) is True  # not in the list: counted normally


def test_bad_configuration_and_addresses_are_refused():
    with pytest.raises(ValueError, match="not an IP address or network"):
        FloodGuard(SecurityPolicy(allow=["trunk.example.com"]))
    with pytest.raises(ValueError):
        SecurityPolicy(allow="10.0.0.1")
    with pytest.raises(ValueError):
        SecurityPolicy(rate_limit=0)
    guard = FloodGuard(SecurityPolicy())
    with pytest.raises(ValueError, match="not an IP address"):
        guard.admit("From: <sip:evil@example.com>", 0.0)


# -- memory -----------------------------------------------------------------------

def test_memory_stays_bounded_under_a_scan_from_200k_addresses():
    guard, _ = _guard(max_sources=20_000)
    now = 0.0
    for i in range(200_000):
        now += 0.00001  # all within one rate window: nothing is idle yet
        guard.admit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now)
        assert guard.tracked <= 20_000
    # A flooder seen before the scan is kept in preference to one-packet sources.
    guard2, _ = _guard(max_sources=1_000, rate_limit=100)
    for _ in range(80):
        guard2.admit(SCANNER, 0.0)
    for i in range(5_000):
        guard2.admit(f"10.0.{i >> 8 & 255}.{i & 255}", 0.0)
    assert [guard2.admit(SCANNER, 0.0) for _ in range(21)][-1] is False


def test_idle_sources_are_pruned_with_time():
    guard, _ = _guard(rate_window=2.0, auth_fail_window=60.0)
    for i in range(5_000):
        guard.admit(f"10.0.{i >> 8 & 255}.{i & 255}", 0.0)
        guard.auth_failed(f"10.0.{i >> 8 & 255}.{i & 255}", 0.0)
    assert guard.tracked == 10_000
    guard.admit(PHONE, 61.0)
    assert guard.tracked == 1
