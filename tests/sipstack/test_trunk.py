"""Trunk registration and qualify as state machines (RFC 3261 §10.2, §11, §22), driven with a
fake clock against a provider whose registrar is our own digest server code."""

from __future__ import annotations

import pytest

from sipstack.addressing import Transport
from sipstack.auth import AuthResult, DigestAlgorithm, DigestAuthenticator, DigestCredentials, NonceManager
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.trunk import (
    RETRY_FIRST,
    RETRY_MAX,
    TIMER_F,
    LocalContact,
    Qualify,
    Registration,
    RegistrationState,
    TrunkSettings,
)

LOCAL = LocalContact("192.0.2.10", 5060, Transport.UDP)


def trunk(**changes: object) -> TrunkSettings:
    base: dict[str, object] = dict(name="telecom", host="203.0.113.5", username="02161234567",
                                   password="s3cret", register=True, expires=600)
    base.update(changes)
    return TrunkSettings.from_table(base)


class Provider:
    """The provider's registrar: challenges with real nonces and checks the answers."""

    def __init__(self, password: str = "s3cret", lifetime: float = 3600.0) -> None:
        self.password = password
        self.auth = DigestAuthenticator("carrier.example.cn", NonceManager(b"k" * 32, lifetime),
                                        (DigestAlgorithm.MD5,))
        self.seen: list[Request] = []

    def handle(self, request: Request, now: float, *, grant: int | None = None) -> Response:
        # Over the wire and back, so what we check is what a provider would parse.
        request = parse_message(request.to_bytes())  # type: ignore[assignment]
        self.seen.append(request)
        value = request.headers.get("Authorization")
        if value is None:
            return self._challenge(request, now, stale=False)
        credentials = DigestCredentials.parse(value)
        result = self.auth.verify(credentials, method="REGISTER", password=self.password, now=now)
        if result is AuthResult.STALE:
            return self._challenge(request, now, stale=True)
        if result is not AuthResult.OK:
            return self._challenge(request, now, stale=False)
        contact = request.headers.get("Contact") or ""
        expires = request.expires if grant is None else grant
        return make_response(request, 200, to_tag="prov", headers=[("Contact", f"{contact};expires={expires}")])

    def _challenge(self, request: Request, now: float, *, stale: bool) -> Response:
        [value] = self.auth.challenge_headers(now, stale=stale)
        return make_response(request, 401, to_tag="prov", headers=[("WWW-Authenticate", value)])


def register_fully(reg: Registration, provider: Provider, now: float, request: Request | None = None,
                   **kw: object) -> list[Request]:
    """Run one REGISTER exchange (with its digest round) to the end; the requests sent."""
    sent = []
    while request is not None:
        sent.append(request)
        request = reg.on_response(provider.handle(request, now, **kw), now)  # type: ignore[arg-type]
    return sent


def test_first_register_is_challenged_answered_and_refreshed_at_85_percent() -> None:
    reg, provider = Registration(trunk(), LOCAL), Provider()
    first = reg.start(1000.0)
    assert str(first.uri) == "sip:203.0.113.5"
    assert first.headers.get("To") == "<sip:02161234567@203.0.113.5>"
    assert first.headers.get("Contact") == "<sip:02161234567@192.0.2.10:5060>"
    assert first.expires == 600 and "Authorization" not in first.headers
    sent = register_fully(reg, provider, 1000.0, first, grant=120)
    assert len(sent) == 2
    assert sent[1].call_id == first.call_id and sent[1].cseq.number == first.cseq.number + 1
    assert reg.state is RegistrationState.REGISTERED and reg.granted == 120
    # §10.2.4 with our margin: the refresh is due at 85 % of what was granted, not of what we asked.
    assert reg.deadline == pytest.approx(1000.0 + 0.85 * 120)
    assert reg.on_timer(1100.0) is None


def test_refresh_reuses_the_nonce_with_a_rising_nonce_count() -> None:
    reg, provider = Registration(trunk(), LOCAL), Provider()
    register_fully(reg, provider, 0.0, reg.start(0.0))
    refresh = reg.on_timer(reg.deadline)  # type: ignore[arg-type]
    assert refresh is not None and refresh.call_id == provider.seen[0].call_id
    credentials = DigestCredentials.parse(refresh.headers.get("Authorization") or "")
    assert credentials.nc == 2  # RFC 2617 §3.2.2: same nonce, next count
    sent = register_fully(reg, provider, reg.deadline or 510.0, refresh)
    assert len(sent) == 1  # accepted without a new challenge
    assert reg.state is RegistrationState.REGISTERED


def test_stale_nonce_is_answered_again_without_counting_as_a_failure() -> None:
    reg, provider = Registration(trunk(), LOCAL), Provider(lifetime=100.0)
    register_fully(reg, provider, 0.0, reg.start(0.0))
    due = reg.deadline
    assert due is not None and due > 100.0  # the nonce is past its lifetime at refresh time
    refresh = reg.on_timer(due)
    assert refresh is not None
    reply = provider.handle(refresh, due)
    assert reply.status == 401 and "stale=true" in (reply.headers.get("WWW-Authenticate") or "")
    again = reg.on_response(reply, due)
    assert again is not None
    assert reg.on_response(provider.handle(again, due), due) is None
    assert reg.state is RegistrationState.REGISTERED


def test_wrong_password_fails_and_retries_with_doubling_backoff_up_to_five_minutes() -> None:
    reg, provider = Registration(trunk(password="wrong"), LOCAL), Provider()
    now = 0.0
    delays = []
    request = reg.start(now)
    for _ in range(6):
        sent = register_fully(reg, provider, now, request)
        assert len(sent) == 2  # one answer per fresh challenge, never a loop
        assert reg.state is RegistrationState.FAILED
        due = reg.deadline
        assert due is not None
        delays.append(due - now)
        now = due
        request = reg.on_timer(now)
    assert delays == [RETRY_FIRST, 60, 120, 240, RETRY_MAX, RETRY_MAX]


def test_backoff_resets_after_success() -> None:
    reg = Registration(trunk(), LOCAL)
    first = reg.start(0.0)
    reg.on_timeout(first.cseq.number, TIMER_F)
    assert reg.state is RegistrationState.FAILED and reg.deadline == TIMER_F + RETRY_FIRST
    register_fully(reg, Provider(), reg.deadline, reg.on_timer(reg.deadline))  # type: ignore[arg-type]
    assert reg.state is RegistrationState.REGISTERED and reg.retry_delay == RETRY_FIRST


def test_expiry_from_the_expires_header_when_the_contact_carries_none() -> None:
    reg = Registration(trunk(), LOCAL)
    request = reg.start(0.0)
    ok = make_response(request, 200, to_tag="x", headers=[("Expires", "300")])
    assert reg.on_response(ok, 0.0) is None
    assert reg.granted == 300 and reg.deadline == pytest.approx(255.0)


def test_interval_too_brief_retries_at_once_with_min_expires() -> None:
    reg = Registration(trunk(expires=60), LOCAL)
    request = reg.start(0.0)
    retry = reg.on_response(make_response(request, 423, to_tag="x", headers=[("Min-Expires", "900")]), 0.0)
    assert retry is not None and retry.expires == 900  # RFC 3261 §10.2.8


def test_late_response_to_an_abandoned_register_is_ignored() -> None:
    reg = Registration(trunk(), LOCAL)
    first = reg.start(0.0)
    reg.on_timeout(first.cseq.number, TIMER_F)
    second = reg.on_timer(reg.deadline)  # type: ignore[arg-type]
    assert second is not None
    assert reg.on_response(make_response(first, 200, to_tag="x"), 70.0) is None
    assert reg.state is RegistrationState.FAILED and reg.pending


def test_stop_sends_expires_zero_and_ends_unregistered() -> None:
    reg, provider = Registration(trunk(), LOCAL), Provider()
    register_fully(reg, provider, 0.0, reg.start(0.0))
    bye = reg.stop(10.0)
    assert bye is not None and bye.expires == 0 and "Authorization" in bye.headers
    assert reg.deadline is None
    register_fully(reg, provider, 10.0, bye)
    assert reg.state is RegistrationState.UNREGISTERED and not reg.pending
    assert Registration(trunk(), LOCAL).stop(0.0) is None  # never registered: nothing to remove


def test_tcp_trunk_contact_names_its_transport_and_from_domain_names_the_registrar() -> None:
    reg = Registration(trunk(transport="tcp", from_domain="carrier.example.cn"),
                       LocalContact("192.0.2.10", 5080, Transport.TCP))
    request = reg.start(0.0)
    assert str(request.uri) == "sip:carrier.example.cn"
    assert request.headers.get("Contact") == "<sip:02161234567@192.0.2.10:5080;transport=tcp>"
    assert request.top_via.transport == "TCP"


# ---------------------------------------------------------------- qualify


def test_qualify_probes_at_its_interval_and_any_answer_keeps_the_trunk_up() -> None:
    q = Qualify(trunk(qualify=30), LOCAL)
    probe = q.on_timer(0.0)
    assert probe is not None and probe.method == "OPTIONS" and str(probe.uri) == "sip:203.0.113.5:5060"
    assert q.on_timer(1.0) is None  # one probe at a time
    q.on_response(make_response(probe, 404, to_tag="x"), 0.2)  # even a refusal proves it alive
    assert q.up and q.rtt == pytest.approx(0.2) and q.deadline == 30.0
    assert q.on_timer(30.0) is not None


def test_qualify_marks_the_trunk_down_after_timer_f_and_up_again_on_an_answer() -> None:
    q = Qualify(trunk(qualify=10), LOCAL)
    probe = q.on_timer(0.0)
    assert probe is not None
    q.on_timeout(probe.cseq.number, TIMER_F)
    assert not q.up and q.lost == 1
    again = q.on_timer(q.deadline)  # type: ignore[arg-type]
    assert again is not None
    q.on_response(make_response(probe, 200, to_tag="x"), TIMER_F + 1)  # the old probe: not counted
    assert not q.up
    q.on_response(make_response(again, 200, to_tag="x"), TIMER_F + 1)
    assert q.up


def test_qualify_timeout_shorter_than_timer_f() -> None:
    q = Qualify(trunk(qualify=5, qualify_timeout=2), LOCAL)
    assert q.on_timer(0.0) is not None
    assert q.deadline == 2.0
    assert q.on_timer(2.0) is None
    assert not q.up and q.deadline == 5.0


def test_qualify_off() -> None:
    q = Qualify(trunk(qualify=0), LOCAL)
    assert q.deadline is None and q.on_timer(100.0) is None and q.up
