"""Per-role IP allow-lists (seed 000: 远程访问针对IP的授权或限制): a role restricted to a network
is refused elsewhere at sign-in and on every request of a session it already has; the client
address is the socket peer unless a trusted proxy names it; an administrator cannot save a list
that locks themselves out; networks are CIDR, IPv4 and IPv6, and a bad one is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm import audit
from crm.access import SYSTEM
from crm.errors import ValidationError
from crm.networks import parse_address, parse_networks, role_allows, user_allows
from tests.webui.page_harness import csrf_of, make_site, page_csrf, running, sign_in
from webui.ip_allow import ClientAddress


def restrict(admin, role: str, networks: str) -> None:
    response = admin.post(f"/admin/roles/{role}/networks", data={"csrf": page_csrf(admin, "/admin/roles"),
                                                                 "networks": networks})  # fmt: skip
    assert response.status_code == 303, response.text[:500]


def refusals(site, username: str) -> list[audit.AuditEntry]:
    entries = site.run(audit.list_entries(site.crm.db, SYSTEM, entity="user", entity_id=site.ids[username]))
    return [e for e in entries if e.action == "address_refused"]


def test_a_role_limited_to_10_8_is_refused_from_loopback_at_sign_in_and_on_its_open_session(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        assert sign_in(admin, "admin").status_code == 303
        agent = site.client("127.0.0.1")
        assert sign_in(agent, "agent1").status_code == 303
        assert agent.get("/").status_code == 200
        token = site.run(site.crm.tokens.create(SYSTEM, name="script", user_id=site.ids["agent1"])).secret

        restrict(admin, "agent", "10.0.0.0/8")

        page = agent.get("/")                                        # the session it already had
        assert page.status_code == 403
        assert "127.0.0.1" in page.text and "访问地址受限" in page.text
        api = agent.get("/api/members")
        assert api.status_code == 403 and api.json()["error"]["code"] == "auth.address_not_allowed"
        bearer = site.client("127.0.0.1").get("/api/members", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 403
        assert agent.get("/login").status_code == 200                 # a way out stays open
        issued = site.client("127.0.0.1").post("/api/auth/token", json={"username": "agent1", "password": "secret-pass"})
        assert issued.status_code == 403 and issued.json()["error"]["code"] == "auth.address_not_allowed"

        again = sign_in(site.client("127.0.0.1"), "agent1")
        assert again.status_code == 403 and "cc_session" not in again.headers.get("set-cookie", "")
        assert "127.0.0.1" in again.text
        wrong = sign_in(site.client("127.0.0.1"), "agent1", "not-the-password")
        assert wrong.status_code == 401                               # the address is told only after the password

        office = site.client("10.20.30.40")
        assert sign_in(office, "agent1").status_code == 303
        assert office.get("/").status_code == 200
        assert admin.get("/").status_code == 200                      # other roles are not affected

        where = {e.after["where"] for e in refusals(site, "agent1")}
        assert {"sign-in", "/"} <= where
        role = site.run(site.crm.org.get_role(SYSTEM, "agent"))
        assert role.networks == ("10.0.0.0/8",)
        changes = site.run(audit.list_entries(site.crm.db, SYSTEM, entity="role", entity_id=role.id))
        assert changes[0].action == "set_networks" and changes[0].after == {"networks": ["10.0.0.0/8"]}

        restrict(admin, "agent", "")                                  # empty: anywhere again
        assert agent.get("/").status_code == 200


def test_a_user_with_several_roles_is_allowed_when_any_role_allows(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        site.run(site.crm.org.update_user(SYSTEM, site.ids["tech"], roles=["technician", "agent"]))
        restrict(admin, "agent", "10.0.0.0/8")
        restrict(admin, "technician", "192.168.0.0/16")
        assert sign_in(site.client("192.168.1.9"), "tech").status_code == 303
        assert sign_in(site.client("10.1.1.1"), "tech").status_code == 303
        assert sign_in(site.client("172.16.0.1"), "tech").status_code == 403


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    claims = {"X-Forwarded-For": "10.1.2.3"}
    untrusting = make_site(tmp_path / "a.db")
    with running(untrusting) as admin:
        sign_in(admin, "admin")
        restrict(admin, "agent", "10.0.0.0/8")
        assert sign_in(untrusting.client("127.0.0.1"), "agent1", headers=claims).status_code == 403

    behind_proxy = make_site(tmp_path / "b.db", trusted_proxies=["127.0.0.1"])
    with running(behind_proxy) as admin:
        sign_in(admin, "admin", headers={"X-Forwarded-For": "192.168.5.5"})
        restrict(admin, "agent", "10.0.0.0/8")
        assert sign_in(behind_proxy.client("127.0.0.1"), "agent1", headers=claims).status_code == 303
        # The proxy appends the address it saw: the rightmost untrusted hop is the client,
        # whatever the client wrote on the left.
        spoofed = {"X-Forwarded-For": "10.1.2.3, 203.0.113.9"}
        assert sign_in(behind_proxy.client("127.0.0.1"), "agent1", headers=spoofed).status_code == 403
        # A peer that is not the trusted proxy is believed about nothing.
        assert sign_in(behind_proxy.client("198.51.100.7"), "agent1", headers=claims).status_code == 403


def test_the_client_address_rules() -> None:
    def scope(peer: str, xff: str | None = None) -> dict:
        headers = [(b"x-forwarded-for", xff.encode())] if xff is not None else []
        return {"type": "http", "client": (peer, 1234), "headers": headers}

    none = ClientAddress()
    assert none.of(scope("127.0.0.1", "10.0.0.1")) == "127.0.0.1"
    assert none.of(scope("::ffff:192.0.2.1")) == "192.0.2.1"        # dual-stack socket, IPv4 peer
    proxies = ClientAddress(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.of(scope("127.0.0.1", "203.0.113.5, 10.0.0.2")) == "203.0.113.5"
    assert proxies.of(scope("127.0.0.1", "10.0.0.3")) == "10.0.0.3"   # all trusted: the first
    assert proxies.of(scope("127.0.0.1")) == "127.0.0.1"
    assert proxies.of(scope("127.0.0.1", "garbage")) == "garbage"      # matches no allow-list
    with pytest.raises(ValueError, match="300.0.0.0/8"):
        ClientAddress(["300.0.0.0/8"])


def test_an_administrator_cannot_lock_themselves_out(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        page = admin.get("/admin/roles")
        assert '<code class="my-address">127.0.0.1</code>' in page.text
        refused = admin.post("/admin/roles/admin/networks", data={"csrf": csrf_of(page.text), "networks": "10.0.0.0/8"})
        assert refused.status_code == 422
        assert "您自己当前的地址将不再被允许" in refused.text
        assert site.run(site.crm.org.get_role(SYSTEM, "admin")).networks == ()
        assert admin.get("/").status_code == 200

        restrict(admin, "admin", "10.0.0.0/8\n127.0.0.0/8")           # including where one is: fine
        assert site.run(site.crm.org.get_role(SYSTEM, "admin")).networks == ("10.0.0.0/8", "127.0.0.0/8")
        assert sign_in(site.client("172.16.3.3"), "admin2").status_code == 403
        restrict(admin, "agent", "10.0.0.0/8")                         # a role one does not hold: no lock-out


def test_ipv6_networks_are_parsed_and_matched() -> None:
    nets = parse_networks("fd00::/8\n2001:db8::17/64, ::1 ::ffff:10.0.0.0/104 192.168.1.7/24 fd00::/8")
    assert [str(n) for n in nets] == ["fd00::/8", "2001:db8::/64", "::1/128", "10.0.0.0/8", "192.168.1.0/24"]
    assert role_allows(nets, parse_address("fd12:3456::1"))
    assert role_allows(nets, parse_address("2001:db8::abcd"))
    assert not role_allows(nets, parse_address("2001:db9::1"))
    assert role_allows(nets, parse_address("::ffff:10.9.9.9"))        # IPv4-mapped peer
    assert role_allows(nets, parse_address("fe80::1%eth0")) is False
    assert role_allows(nets, parse_address("::1"))
    assert not role_allows(nets, parse_address("testclient"))           # not an IP: never in a list
    assert role_allows((), parse_address("testclient"))                 # empty list: anywhere
    assert user_allows([(), nets], "203.0.113.1")                        # any role allowing is enough
    assert not user_allows([nets, parse_networks(["10.0.0.0/8"])], "203.0.113.1")


def test_ipv6_clients_through_the_web(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        restrict(admin, "agent", "fd00::/8")
        assert sign_in(site.client("fd12::5"), "agent1").status_code == 303
        assert sign_in(site.client("2001:db8::5"), "agent1").status_code == 403


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not-a-network", "300.1.1.1", "fd00::/129", "10.0.0.0/8/8"])
def test_a_bad_network_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_networks(["10.0.0.0/8", entry])
    assert caught.value.code == "network.invalid" and entry in caught.value.message


def test_a_bad_network_in_the_form_is_a_400_naming_it(tmp_path: Path) -> None:
    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        page = admin.get("/admin/roles")
        bad = admin.post("/admin/roles/agent/networks", data={"csrf": csrf_of(page.text),
                                                              "networks": "10.0.0.0/8\n10.0.0.0/33"})  # fmt: skip
        assert bad.status_code == 400
        assert "“10.0.0.0/33”不是有效的 IP 地址或网段" in bad.text
        assert site.run(site.crm.org.get_role(SYSTEM, "agent")).networks == ()
        too_many = "\n".join(f"10.{i}.0.0/16" for i in range(65))
        assert admin.post("/admin/roles/agent/networks", data={"csrf": csrf_of(page.text),
                                                               "networks": too_many}).status_code == 422  # fmt: skip
        assert admin.post("/admin/roles/agent/networks", data={"networks": "10.0.0.0/8"}).status_code == 403  # CSRF
        assert admin.post("/admin/roles/nosuch/networks", data={"csrf": csrf_of(page.text),
                                                                "networks": ""}).status_code == 404  # fmt: skip
        sup = site.client()
        sign_in(sup, "sup")                                             # org.read, not org.write
        readonly = sup.get("/admin/roles")
        assert readonly.status_code == 200 and "networks-agent" not in readonly.text and "不限地址" in readonly.text
        agent = site.client()
        sign_in(agent, "agent1")
        assert agent.get("/admin/roles").status_code == 403
        assert sup.post("/admin/roles/agent/networks", data={"csrf": page_csrf(sup, "/admin/roles"),
                                                             "networks": "10.0.0.0/8"}).status_code == 403  # fmt: skip


def test_a_refused_address_cannot_open_a_websocket(tmp_path: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    site = make_site(tmp_path / "cc.db")
    with running(site) as admin:
        sign_in(admin, "admin")
        agent = site.client("127.0.0.1")
        sign_in(agent, "agent1")
        # This site has no SIP-over-WebSocket service: the route itself closes with 1011 ...
        with pytest.raises(WebSocketDisconnect) as closed:
            with agent.websocket_connect("/sip"):
                pass
        assert closed.value.code == 1011
        restrict(admin, "agent", "10.0.0.0/8")
        for path in ("/sip", "/ws/agent"):                              # ... the guard refuses before it
            with pytest.raises(WebSocketDisconnect) as closed:
                with agent.websocket_connect(path):
                    pass
            assert closed.value.code == 1008 and closed.value.reason == "address not allowed"


def test_trusted_proxies_come_from_the_configuration(tmp_path: Path) -> None:
    from callcenter.config import ConfigError, load_config

    assert load_config(None).security.trusted_proxies == []           # default: nobody's header counts
    good = tmp_path / "good.toml"
    good.write_text('[security]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]\n', encoding="utf-8")
    assert load_config(good).security.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[security]\ntrusted_proxies = ["10.0.0.0/40"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="10.0.0.0/40"):
        load_config(bad)
