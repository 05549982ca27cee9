"""Digest authentication: RFC 2617 / RFC 7616 known answers, the server's nonce rules, the client side."""

from __future__ import annotations

import hmac

import pytest

from sipstack import auth
from sipstack.auth import (
    AuthResult,
    DigestAlgorithm,
    DigestAuthenticator,
    DigestChallenge,
    DigestCredentials,
    NonceManager,
    NonceStatus,
    build_authorization,
    compute_ha1,
    digest_response,
    select_challenge,
)
from sipstack.errors import SipParseError

SECRET = b"test secret for nonces"
REALM = "callcenter.example"

# RFC 2617 §3.5.
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 §3.9.1 (password "Circle of Life" with a lower-case o, erratum 4495).
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _server(lifetime: float = 300.0, **kwargs) -> DigestAuthenticator:
    return DigestAuthenticator(REALM, NonceManager(SECRET, lifetime=lifetime), **kwargs)


def _login(server: DigestAuthenticator, now: float, *, password: str = "demo1001", nc: int = 1,
           method: str = "REGISTER", challenges: list[str] | None = None) -> DigestCredentials:
    """What a phone does with a 401: answer the topmost challenge it supports."""
    challenge = select_challenge(challenges or server.challenge_headers(now))
    value = build_authorization(challenge, username="1001", password=password, method=method,
                                uri="sip:callcenter.example", nc=nc)
    return DigestCredentials.parse(value)


# -- known-answer vectors -----------------------------------------------------

def test_rfc2617_section_3_5_example():
    creds = DigestCredentials.parse(RFC2617_AUTHORIZATION)
    assert (creds.username, creds.realm, creds.uri) == ("Mufasa", "testrealm@host.com", "/dir/index.html")
    assert (creds.qop, creds.nc, creds.cnonce) == ("auth", 1, "0a4f113b")
    assert creds.algorithm is DigestAlgorithm.MD5  # absent algorithm means MD5 (RFC 2617 §3.2.2)
    expected = digest_response(
        DigestAlgorithm.MD5, username="Mufasa", realm="testrealm@host.com", password="Circle Of Life",
        method="GET", uri="/dir/index.html", nonce=creds.nonce, nc=1, cnonce="0a4f113b", qop="auth",
    )
    assert expected == "6629fae49393a05397450978507c4ef1" == creds.response


@pytest.mark.parametrize(
    ("alg", "response"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_example(alg, response):
    challenge = DigestChallenge.parse(RFC7616_CHALLENGE.format(alg=alg))
    assert challenge.qop == "auth"  # chosen among "auth, auth-int"
    value = build_authorization(challenge, username="Mufasa", password="Circle of Life", method="GET",
                                uri="/dir/index.html", nc=1, cnonce=RFC7616_CNONCE)
    creds = DigestCredentials.parse(value)
    assert creds.response == response
    assert creds.algorithm.value == alg
    assert creds.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"  # echoed, RFC 2617 §3.2.2
    assert "nc=00000001" in value and "qop=auth" in value


def test_stored_ha1_gives_the_same_response_as_the_password():
    ha1 = compute_ha1(DigestAlgorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    got = digest_response(DigestAlgorithm.MD5, username="Mufasa", realm="testrealm@host.com", ha1=ha1,
                          method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                          nc=1, cnonce="0a4f113b", qop="auth")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_digest_without_qop_is_the_rfc2069_form():
    ha1 = compute_ha1(DigestAlgorithm.MD5, "Mufasa", "r", "pw")
    ha2 = DigestAlgorithm.MD5.hash_hex("INVITE:sip:bob@b.example")
    assert digest_response(DigestAlgorithm.MD5, username="Mufasa", realm="r", password="pw",
                           method="INVITE", uri="sip:bob@b.example", nonce="n") == \
        DigestAlgorithm.MD5.hash_hex(f"{ha1}:n:{ha2}")


# -- header values --------------------------------------------------------------

def test_credentials_parse_is_tolerant_of_real_world_spelling():
    value = ('digest   USERNAME="1001",realm=callcenter.example ,nonce="abc" , uri=sip:callcenter.example,'
             'response="0123abcd", algorithm=sha-256, cnonce=xyz, qop="auth", nc="0000000A", '
             'x-vendor="ignored, really"')
    creds = DigestCredentials.parse(value)
    assert creds.username == "1001" and creds.realm == "callcenter.example"
    assert creds.uri == "sip:callcenter.example"
    assert creds.algorithm is DigestAlgorithm.SHA256
    assert creds.nc == 10 and creds.cnonce == "xyz" and creds.qop == "auth"


def test_credentials_quoted_string_escapes():
    creds = DigestCredentials.parse(
        r'Digest username="a\"b\\c", realm="r", nonce="n", uri="sip:x", response="00"'
    )
    assert creds.username == 'a"b\\c'
    again = DigestCredentials.parse(creds.to_header())
    assert again == creds


@pytest.mark.parametrize(
    "value",
    [
        "",
        'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==',
        'Digest realm="r", nonce="n", uri="sip:x", response="00"',  # no username
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", username="v"',
        'Digest username="u, realm="r", nonce="n", uri="sip:x", response="00"',  # unterminated
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", algorithm=SHA-1024',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", qop=auth, nc=00000001',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", qop=auth, cnonce="c", nc=1',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", qop=auth-int, cnonce="c", nc=00000001',
        'Digest username="u", realm="r", nonce="n", uri="sip:x", response="00", qop=auth, cnonce="c", nc=00000000',
        'Digest username="u" realm="r"',
        "Digest " + "a=b, " * 3000,
    ],
)
def test_unusable_authorization_is_a_400(value):
    with pytest.raises(SipParseError) as info:
        DigestCredentials.parse(value)
    assert info.value.status == 400
    assert info.value.reason.startswith("Bad Request:")


def test_challenge_round_trip_and_stale_flag():
    challenge = DigestChallenge(REALM, "abc", DigestAlgorithm.SHA256, opaque="op", stale=True)
    header = challenge.to_header()
    assert header.startswith('Digest realm="callcenter.example", nonce="abc", algorithm=SHA-256, qop="auth"')
    assert "stale=true" in header
    assert DigestChallenge.parse(header) == challenge


def test_client_picks_the_topmost_challenge_it_supports():
    # RFC 8760 §2.3: skip algorithms we do not know, answer the first we do.
    values = ['Digest realm="r", nonce="n1", algorithm=SHA-512-256, qop="auth"',
              'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
              'Digest realm="r", nonce="n3", algorithm=MD5, qop="auth"']
    chosen = select_challenge(values)
    assert (chosen.nonce, chosen.algorithm) == ("n2", DigestAlgorithm.SHA256)
    with pytest.raises(SipParseError):
        select_challenge(['Digest realm="r", nonce="n", qop="auth-int"'])


def test_challenge_without_qop_gets_an_rfc2069_answer():
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n"')
    assert challenge.qop is None and challenge.algorithm is DigestAlgorithm.MD5
    creds = DigestCredentials.parse(build_authorization(challenge, username="u", password="p",
                                                        method="REGISTER", uri="sip:r"))
    assert creds.qop is None and creds.nc is None and creds.cnonce is None


# -- the server -------------------------------------------------------------------

def test_server_lists_sha256_first_with_one_nonce():
    headers = _server().challenge_headers(now=10.0)
    assert [DigestChallenge.parse(h).algorithm for h in headers] == [DigestAlgorithm.SHA256, DigestAlgorithm.MD5]
    assert len({DigestChallenge.parse(h).nonce for h in headers}) == 1
    assert all('qop="auth"' in h and "stale" not in h for h in headers)
    assert all("stale=true" in h for h in _server().challenge_headers(10.0, stale=True))


@pytest.mark.parametrize("alg", [DigestAlgorithm.SHA256, DigestAlgorithm.MD5])
def test_round_trip_client_to_server(alg):
    server = _server()
    challenges = [h for h in server.challenge_headers(100.0) if DigestChallenge.parse(h).algorithm is alg]
    creds = _login(server, 100.0, challenges=challenges)
    assert creds.algorithm is alg
    assert server.verify(creds, method="REGISTER", password="demo1001", now=101.0) is AuthResult.OK


def test_verify_with_stored_ha1():
    server = _server()
    creds = _login(server, 0.0)
    ha1 = compute_ha1(creds.algorithm, "1001", REALM, "demo1001")
    assert server.verify(creds, method="REGISTER", password=None, ha1=ha1, now=1.0) is AuthResult.OK


def test_wrong_password_unknown_user_wrong_method_and_realm_fail():
    server = _server()
    creds = _login(server, 0.0, password="wrong")
    assert server.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED
    creds = _login(server, 0.0)
    assert server.verify(creds, method="REGISTER", password=None, now=1.0) is AuthResult.FAILED
    assert server.verify(creds, method="INVITE", password="demo1001", now=1.0) is AuthResult.FAILED
    other = DigestAuthenticator("elsewhere", server.nonces)
    assert other.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED
    # None of these consumed the nonce-count: the genuine request still passes.
    assert server.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.OK


def test_algorithm_not_offered_fails():
    server = _server(algorithms=(DigestAlgorithm.SHA256,))
    challenge = DigestChallenge(REALM, server.nonces.issue(0.0), DigestAlgorithm.MD5)
    creds = DigestCredentials.parse(build_authorization(challenge, username="1001", password="demo1001",
                                                        method="REGISTER", uri="sip:x"))
    assert server.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED


def test_expired_nonce_is_stale_only_with_the_right_password():
    server = _server(lifetime=300.0)
    creds = _login(server, 0.0)
    assert server.verify(creds, method="REGISTER", password="demo1001", now=301.0) is AuthResult.STALE
    wrong = _login(server, 0.0, password="guess")
    assert server.verify(wrong, method="REGISTER", password="demo1001", now=301.0) is AuthResult.FAILED


def test_tampered_or_foreign_nonce_fails():
    server = _server()
    creds = _login(server, 0.0)
    flipped = creds.nonce[:-1] + ("0" if creds.nonce[-1] != "0" else "1")
    # Re-sign with the right password so only the nonce's own integrity is at stake.
    forged = DigestCredentials.parse(build_authorization(
        DigestChallenge(REALM, flipped, creds.algorithm), username="1001", password="demo1001",
        method="REGISTER", uri="sip:callcenter.example"))
    assert server.verify(forged, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED
    stranger = DigestAuthenticator(REALM, NonceManager(b"another secret"))
    assert stranger.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED


def test_replayed_request_fails_and_counts_must_increase():
    server = _server()
    challenge = select_challenge(server.challenge_headers(0.0))

    def answer(nc: int) -> DigestCredentials:
        return DigestCredentials.parse(build_authorization(
            challenge, username="1001", password="demo1001", method="REGISTER", uri="sip:x", nc=nc))

    first = answer(1)
    assert server.verify(first, method="REGISTER", password="demo1001", now=1.0) is AuthResult.OK
    assert server.verify(first, method="REGISTER", password="demo1001", now=2.0) is AuthResult.FAILED
    assert server.verify(answer(3), method="REGISTER", password="demo1001", now=3.0) is AuthResult.OK
    assert server.verify(answer(2), method="REGISTER", password="demo1001", now=4.0) is AuthResult.FAILED
    assert server.verify(answer(4), method="REGISTER", password="demo1001", now=5.0) is AuthResult.OK


def test_forged_high_count_does_not_lock_out_the_real_client():
    server = _server()
    challenge = select_challenge(server.challenge_headers(0.0))
    bogus = DigestCredentials.parse(
        f'Digest username="1001", realm="{REALM}", nonce="{challenge.nonce}", uri="sip:x", '
        f'response="{"0" * 64}", algorithm=SHA-256, qop=auth, nc=ffffffff, cnonce="c"')
    assert server.verify(bogus, method="REGISTER", password="demo1001", now=1.0) is AuthResult.FAILED
    real = DigestCredentials.parse(build_authorization(challenge, username="1001", password="demo1001",
                                                       method="REGISTER", uri="sip:x", nc=1))
    assert server.verify(real, method="REGISTER", password="demo1001", now=2.0) is AuthResult.OK


def test_upper_case_nonce_count_and_response_still_verify():
    server = _server()
    challenge = select_challenge(server.challenge_headers(0.0))
    response = digest_response(challenge.algorithm, username="1001", realm=REALM, password="demo1001",
                               method="REGISTER", uri="sip:x", nonce=challenge.nonce, nc="0000000A",
                               cnonce="c", qop="auth")
    creds = DigestCredentials.parse(
        f'Digest username="1001", realm="{REALM}", nonce="{challenge.nonce}", uri="sip:x", '
        f'response="{response.upper()}", algorithm=SHA-256, qop=auth, nc=0000000A, cnonce="c"')
    assert creds.nc == 10
    assert server.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.OK


def test_digests_are_compared_in_constant_time(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    server = _server()
    creds = _login(server, 0.0)
    assert server.verify(creds, method="REGISTER", password="demo1001", now=1.0) is AuthResult.OK
    assert (creds.response.encode(), creds.response.encode()) in calls


# -- nonces -----------------------------------------------------------------------

def test_nonce_statuses():
    nonces = NonceManager(SECRET, lifetime=60.0)
    nonce = nonces.issue(1000.0)
    assert nonces.check(nonce, 1, 1000.0) is NonceStatus.VALID
    assert nonces.check(nonce, 1, 1001.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 2, 1060.0) is NonceStatus.VALID
    assert nonces.check(nonce, 3, 1060.5) is NonceStatus.STALE
    assert nonces.check("zz" * 32, 1, 1000.0) is NonceStatus.INVALID
    assert nonces.check("", None, 1000.0) is NonceStatus.INVALID
    assert nonces.check(nonce.upper()[:-2], 1, 1000.0) is NonceStatus.INVALID
    # A restart with the same secret still recognises its nonces.
    assert NonceManager(SECRET, lifetime=60.0).check(nonce, 5, 1010.0) is NonceStatus.VALID
    # Issued "in the future": the monotonic clock restarted with a reboot.
    assert NonceManager(SECRET).check(nonce, 1, 5.0) is NonceStatus.STALE


def test_nonce_without_qop_is_single_use():
    nonces = NonceManager(SECRET)
    nonce = nonces.issue(0.0)
    assert nonces.check(nonce, None, 1.0) is NonceStatus.VALID
    assert nonces.check(nonce, None, 2.0) is NonceStatus.REPLAY
    assert nonces.check(nonce, 7, 3.0) is NonceStatus.REPLAY


def test_nonce_tracking_is_bounded_and_never_reopens_a_replay():
    nonces = NonceManager(SECRET, lifetime=300.0, max_tracked=100)
    used = []
    for i in range(1000):
        nonce = nonces.issue(float(i) / 10)
        assert nonces.check(nonce, 1, float(i) / 10) is NonceStatus.VALID
        used.append(nonce)
    assert nonces.tracked <= 100
    # Forgotten nonces are answered STALE (re-challenge), not VALID (replay).
    assert nonces.check(used[0], 1, 100.0) is NonceStatus.STALE
    assert nonces.check(used[-1], 1, 100.0) is NonceStatus.REPLAY
    # Expired nonces are swept out once their lifetime has passed.
    nonces.check(nonces.issue(1000.0), 1, 1000.0)
    assert nonces.tracked == 1


def test_bad_nonce_manager_configuration_is_refused():
    with pytest.raises(ValueError):
        NonceManager(b"")
    with pytest.raises(ValueError):
        NonceManager(SECRET, lifetime=0)
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, NonceManager(SECRET), algorithms=())
