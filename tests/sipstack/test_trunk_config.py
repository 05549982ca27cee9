"""Trunk and outbound-route configuration as an operator writes it (TOML), what it means for
inbound INVITEs (ip_auth, DIDs) and outbound numbers (patterns, rewriting, caller ID)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.routing import CallerId, OutboundRoute, RouteConfigError, select_route
from callcenter.config import ConfigError, load_config
from sipstack.addressing import Address, Transport
from sipstack.auth import DigestChallenge, DigestCredentials, digest_response
from sipstack.message import parse_message
from sipstack.registrar import RegistrarPolicy
from sipstack.security import SecurityPolicy
from sipstack.server import ServerSettings, SipServer
from sipstack.trunk import SourceMatch, TrunkConfigError, TrunkSettings
from sipstack.trunk_auth import ClientCredentials, DigestClient
from sipstack.trunk_manager import TrunkManager

CARRIER_TOML = r'''
[[trunks]]
name = "telecom"
host = "203.0.113.5"
username = "02161234567"
password = "s3cret"
register = true
expires = 300
dids = { "02161234567" = "5000", "02161234568" = "1001" }

[[trunks]]
name = "unicom"
host = "198.51.100.7"
transport = "tcp"
qualify = 0
ip_auth = ["198.51.100.0/28"]

[[outbound_routes]]
name = "long distance"
pattern = '^0\d{10,11}$'
trunks = ["unicom", "telecom"]
caller_id = '"Acme 客服" <02161234567>'

[[outbound_routes]]
name = "local"
pattern = '^9(\d{8})$'
replace = '021\1'
trunks = ["telecom"]
'''


def invite(uri: str, to: str) -> bytes:
    return (f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKx\r\n"
            f"From: <sip:13912345678@203.0.113.5>;tag=a\r\nTo: <{to}>\r\nCall-ID: c1\r\n"
            "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:13912345678@203.0.113.5>\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def test_a_carrier_configuration_loads(tmp_path: Path) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text(CARRIER_TOML, encoding="utf-8")
    config = load_config(path)
    telecom, unicom = config.trunks
    assert (telecom.name, telecom.port, telecom.transport, telecom.expires, telecom.qualify) == (
        "telecom", 5060, Transport.UDP, 300, 30.0)
    assert telecom.credentials == ClientCredentials("02161234567", "s3cret", None)
    assert telecom.dids["02161234568"] == "1001"
    assert (unicom.transport, unicom.port, unicom.qualify, unicom.register) == (Transport.TCP, 5060, 0.0, False)
    long_distance, local = config.outbound_routes
    assert long_distance.trunks == ("unicom", "telecom")
    assert long_distance.caller_id == CallerId("02161234567", "Acme 客服")
    assert select_route(config.outbound_routes, "013912345678") == (long_distance, "013912345678")
    assert select_route(config.outbound_routes, "962345678") == (local, "02162345678")
    assert select_route(config.outbound_routes, "1002") is None


@pytest.mark.parametrize(("table", "message"), [
    ({"host": "x"}, "name is required"),
    ({"name": "a b", "host": "x"}, "use 1-40 letters"),
    ({"name": "t"}, "host is required"),
    ({"name": "t", "host": "x", "transport": "sctp"}, "transport must be udp, tcp or tls"),
    ({"name": "t", "host": "x", "port": 70000}, "port must be 1-65535"),
    ({"name": "t", "host": "x", "register": True}, "needs username and password"),
    ({"name": "t", "host": "x", "expires": 5}, "expires must be"),
    ({"name": "t", "host": "x", "qualify": 0.5}, "at least 1 second"),
    ({"name": "t", "host": "x", "ip_auth": ["not-an-ip"]}, "is not an address"),
    ({"name": "t", "host": "x", "dids": {"abc": "1001"}}, "DID 'abc'"),
    ({"name": "t", "host": "x", "dids": {"02161234567": 1001}}, "must map to an internal number"),
    ({"name": "t", "host": "x", "secret": "s"}, "unknown key 'secret'"),
    ({"name": "t", "host": "x", "username": "a b"}, "user part"),
    ({"name": "t", "host": "x", "auth_username": 'a"b'}, "may not contain quotes"),
])
def test_bad_trunk_settings_say_what_is_wrong(table: dict, message: str) -> None:
    with pytest.raises(TrunkConfigError, match=message):
        TrunkSettings.from_table(table)


@pytest.mark.parametrize(("table", "message"), [
    ({"trunks": ["t"]}, "pattern .* is required"),
    ({"pattern": "^(0", "trunks": ["t"]}, "not a regular expression"),
    ({"pattern": "^0"}, "trunks must list"),
    ({"pattern": "^0", "trunks": ["t"], "replace": r"\2"}, "group '2'"),
    ({"pattern": "^0(1)", "trunks": ["t"], "replace": r"\1", "strip": 1}, "either replace or strip"),
    ({"pattern": "^0", "trunks": ["t"], "prepend": "x"}, "prepend must be digits"),
    ({"pattern": "^0", "trunks": ["t"], "caller_id": "Acme <abc>"}, "caller_id"),
    ({"pattern": "^0", "trunks": ["t"], "dial": "x"}, "unknown key 'dial'"),
])
def test_bad_routes_say_what_is_wrong(table: dict, message: str) -> None:
    with pytest.raises(RouteConfigError, match=message):
        OutboundRoute.from_table(table, 0)


@pytest.mark.parametrize(("toml", "message"), [
    ('[[outbound_routes]]\npattern = "^0"\ntrunks = ["nowhere"]\n', "trunk 'nowhere', which is not defined"),
    ('[[trunks]]\nname = "a"\nhost = "x"\n[[trunks]]\nname = "a"\nhost = "y"\n', "two trunks are named 'a'"),
    ('[[trunks]]\nname = "a"\nhost = "x"\ndids = {"123" = "10"}\n[[trunks]]\nname = "b"\nhost = "y"\n'
     'dids = {"123" = "11"}\n', "DID 123 is mapped by more than one trunk"),
    ('trunks = "a"\n', "arrays of tables"),
    ('[[trunks]]\nname = "a"\n', "host is required"),
])
def test_configuration_errors_name_the_file(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_an_ims_account_authenticates_with_its_private_identity() -> None:
    settings = TrunkSettings.from_table({"name": "telecom", "host": "sh.ctcims.cn", "username": "+862161234567",
                                         "auth_username": "+862161234567@sh.ctcims.cn", "password": "p",
                                         "register": True, "from_domain": "sh.ctcims.cn"})
    assert settings.credentials == ClientCredentials("+862161234567@sh.ctcims.cn", "p", None)


def test_strip_and_prepend() -> None:
    route = OutboundRoute.from_table({"pattern": r"^9\d+$", "strip": 1, "prepend": "0086", "trunks": ["t"]}, 0)
    assert route.rewrite("913912345678") == "008613912345678"
    assert route.rewrite("13912345678") is None  # the whole number must match


def test_caller_id_forms() -> None:
    assert CallerId.parse("02161234567") == CallerId("02161234567")
    assert CallerId.parse("Acme <+862161234567>") == CallerId("+862161234567", "Acme")
    assert CallerId.parse('"" <02161234567>') == CallerId("02161234567")


def test_ip_auth_entries() -> None:
    assert SourceMatch.parse("198.51.100.0/28").matches("198.51.100.9", 5060)
    assert not SourceMatch.parse("198.51.100.0/28").matches("198.51.100.17", 5060)
    exact = SourceMatch.parse("127.0.0.1:5070")
    assert exact.matches("127.0.0.1", 5070) and not exact.matches("127.0.0.1", 5071)
    assert SourceMatch.parse("[2001:db8::1]:5060").matches("2001:db8::1", 5060)
    assert not SourceMatch.parse("2001:db8::/32").matches("hostname", 5060)


async def test_inbound_invites_are_matched_to_trunks_and_their_dids(tmp_path: Path) -> None:
    path = tmp_path / "callcenter.toml"
    path.write_text(CARRIER_TOML, encoding="utf-8")
    config = load_config(path)
    server = SipServer(ServerSettings(), SecurityPolicy(), RegistrarPolicy(), lambda user: None)
    manager = TrunkManager(server, config.trunks, "192.0.2.10", {"sip_udp": 5060, "sip_tcp": 5060})
    for trunk in manager.trunks.values():
        assert await manager._resolve(trunk)
    telecom, unicom = manager.get("telecom"), manager.get("unicom")

    # From the telecom host, DID in the Request-URI.
    request = parse_message(invite("sip:02161234568@192.0.2.10", "sip:02161234568@192.0.2.10"))
    assert manager.inbound(request, Address(Transport.UDP, "203.0.113.5", 5060)) is telecom
    assert telecom.did_of(request) == ("02161234568", "1001")
    # To the registered Contact from anywhere, DID in To.
    request = parse_message(invite("sip:02161234567@192.0.2.10:5060", "sip:02161234567@carrier"))
    assert manager.inbound(request, Address(Transport.UDP, "192.0.2.99", 5060)) is telecom
    assert telecom.did_of(request) == ("02161234567", "5000")
    # From the unicom network: a DID nobody mapped.
    request = parse_message(invite("sip:02187654321@192.0.2.10", "sip:02187654321@192.0.2.10"))
    assert manager.inbound(request, Address(Transport.TCP, "198.51.100.3", 40000)) is unicom
    assert unicom.did_of(request) == ("02187654321", None)
    # Anyone else is no trunk: such INVITEs must authenticate as extensions.
    assert manager.inbound(request, Address(Transport.UDP, "192.0.2.99", 5060)) is None
    assert str(telecom.request_uri("013912345678")) == "sip:013912345678@203.0.113.5:5060"
    assert str(unicom.request_uri("013912345678")) == "sip:013912345678@198.51.100.7:5060;transport=tcp"


def test_a_trunk_on_a_transport_we_do_not_listen_on_is_refused() -> None:
    server = SipServer(ServerSettings(), SecurityPolicy(), RegistrarPolicy(), lambda user: None)
    settings = TrunkSettings.from_table({"name": "t", "host": "192.0.2.1", "transport": "tls"})
    with pytest.raises(ValueError, match="uses tls, which the server does not listen on"):
        TrunkManager(server, [settings], "192.0.2.10", {"sip_udp": 5060})


# ---------------------------------------------------------------- the digest client


def challenge_response(status: int, challenge: DigestChallenge):
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return parse_message((f"SIP/2.0 {status} Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\n"
                          f"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
                          f"{name}: {challenge.to_header()}\r\nContent-Length: 0\r\n\r\n").encode())


def test_digest_client_answers_a_407_with_proxy_authorization_once_per_challenge() -> None:
    from sipstack.auth import DigestAlgorithm

    client = DigestClient(ClientCredentials("02161234567", "s3cret"))
    challenge = DigestChallenge("carrier", "n1", DigestAlgorithm.MD5, qop="auth")
    [(name, value)] = client.answer(challenge_response(407, challenge), "INVITE", "sip:1@h") or []
    assert name == "Proxy-Authorization"
    creds = DigestCredentials.parse(value)
    assert creds.response == digest_response(DigestAlgorithm.MD5, username="02161234567", realm="carrier",
                                             password="s3cret", method="INVITE", uri="sip:1@h", nonce="n1",
                                             nc=1, cnonce=creds.cnonce, qop="auth")
    # Our answer drew another fresh challenge: the password is wrong; do not loop.
    assert client.answer(challenge_response(407, DigestChallenge("carrier", "n2", DigestAlgorithm.MD5)),
                         "INVITE", "sip:1@h") is None
    # ...but a stale one is only an old nonce: answer it.
    stale = DigestChallenge("carrier", "n3", DigestAlgorithm.MD5, stale=True)
    assert client.answer(challenge_response(407, stale), "INVITE", "sip:1@h") is not None


def test_digest_client_keeps_to_its_realm() -> None:
    from sipstack.auth import DigestAlgorithm

    client = DigestClient(ClientCredentials("u", "p", realm="carrier"))
    other = DigestChallenge("elsewhere", "n1", DigestAlgorithm.MD5)
    assert client.answer(challenge_response(401, other), "REGISTER", "sip:h") is None
