"""RFC 3261 §10.3 registrar behaviour, sans-IO, and its SQLite persistence."""

from __future__ import annotations

from pathlib import Path

from callcenter.database import apply_migrations, open_database
from sipstack.addressing import Address, Transport
from sipstack.message import Request, parse_message
from sipstack.registrar import MAX_CONTACTS_PER_AOR, Registrar, RegistrarPolicy
from sipstack.registrar_store import MIGRATIONS, BindingStore

PHONE = Address(Transport.UDP, "192.0.2.20", 5062)
NOW = 1_800_000_000.0


def register(contacts: list[str], *, expires: int | None = 300, call_id: str = "reg-1", cseq: int = 1) -> Request:
    lines = [
        "REGISTER sip:192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK-r",
        "From: <sip:1001@192.0.2.1>;tag=x",
        "To: <sip:1001@192.0.2.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *[f"Contact: {c}" for c in contacts],
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    msg = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def registrar() -> Registrar:
    return Registrar(RegistrarPolicy(min_expires=60, max_expires=3600, default_expires=3600))


def test_a_binding_is_created_and_listed_with_its_remaining_time() -> None:
    r = registrar()
    d = r.process(register(["<sip:1001@192.0.2.20:5062>"]), "1001", PHONE, NOW, "t")
    assert d.response.status == 200
    assert d.response.to_addr.tag == "t"
    [contact] = d.response.contacts
    assert contact.params["expires"] == "300"
    [b] = r.lookup("1001", NOW)
    assert b.source == PHONE and b.contact_uri == "sip:1001@192.0.2.20:5062"


def test_several_contacts_per_aor_and_removal_with_expires_zero() -> None:
    r = registrar()
    r.process(register(["<sip:1001@192.0.2.20:5062>"]), "1001", PHONE, NOW, "t")
    r.process(register(["<sip:1001@192.0.2.30:5060>"], call_id="other"), "1001", PHONE, NOW, "t")
    assert len(r.lookup("1001", NOW)) == 2
    d = r.process(register(["<sip:1001@192.0.2.20:5062>"], expires=0, cseq=2), "1001", PHONE, NOW, "t")
    assert d.response.status == 200 and len(d.removed) == 1
    assert [b.contact_uri for b in r.lookup("1001", NOW)] == ["sip:1001@192.0.2.30:5060"]


def test_contact_expires_param_wins_over_header_and_max_caps_it() -> None:
    r = registrar()
    d = r.process(register(["<sip:1001@192.0.2.20>;expires=120"], expires=600), "1001", PHONE, NOW, "t")
    assert d.response.contacts[0].params["expires"] == "120"
    d = r.process(register(["<sip:1001@192.0.2.21>"], expires=86400, call_id="b"), "1001", PHONE, NOW, "t")
    assert {c.params["expires"] for c in d.response.contacts} == {"120", "3600"}


def test_too_brief_expiry_gets_423_with_min_expires() -> None:
    d = registrar().process(register(["<sip:1001@192.0.2.20>"], expires=10), "1001", PHONE, NOW, "t")
    assert d.response.status == 423
    assert d.response.headers.get("Min-Expires") == "60"


def test_wildcard_removes_everything_but_only_with_expires_zero() -> None:
    r = registrar()
    r.process(register(["<sip:1001@192.0.2.20>"]), "1001", PHONE, NOW, "t")
    bad = r.process(register(["*"], expires=300, cseq=2), "1001", PHONE, NOW, "t")
    assert bad.response.status == 400
    ok = r.process(register(["*"], expires=0, cseq=3), "1001", PHONE, NOW, "t")
    assert ok.response.status == 200 and r.lookup("1001", NOW) == []


def test_out_of_order_cseq_on_the_same_call_id_is_refused() -> None:
    r = registrar()
    r.process(register(["<sip:1001@192.0.2.20>"], cseq=5), "1001", PHONE, NOW, "t")
    d = r.process(register(["<sip:1001@192.0.2.20>"], cseq=4), "1001", PHONE, NOW, "t")
    assert d.response.status == 500


def test_query_without_contact_lists_bindings_and_changes_nothing() -> None:
    r = registrar()
    r.process(register(["<sip:1001@192.0.2.20>"]), "1001", PHONE, NOW, "t")
    d = r.process(register([], cseq=2), "1001", PHONE, NOW + 100, "t")
    assert d.response.status == 200 and d.upserted == [] and d.removed == []
    assert d.response.contacts[0].params["expires"] == "200"


def test_bindings_expire() -> None:
    r = registrar()
    r.process(register(["<sip:1001@192.0.2.20>"], expires=60), "1001", PHONE, NOW, "t")
    assert r.expire(NOW + 59) == []
    assert len(r.expire(NOW + 61)) == 1 and r.lookup("1001", NOW + 61) == []


def test_contact_flood_is_capped() -> None:
    contacts = [f"<sip:1001@192.0.2.{i}>" for i in range(MAX_CONTACTS_PER_AOR + 1)]
    assert registrar().process(register(contacts), "1001", PHONE, NOW, "t").response.status == 403


def test_a_closed_websocket_takes_its_bindings_along_but_a_tcp_phone_stays() -> None:
    r = registrar()
    ws = Address(Transport.WS, "127.0.0.1", 50000, flow=9)
    tcp = Address(Transport.TCP, "192.0.2.20", 40000, flow=10)
    r.process(register(["<sip:abc@df7jal23ls0d.invalid;transport=ws>"]), "1001", ws, NOW, "t")
    r.process(register(["<sip:1002@192.0.2.20;transport=tcp>"], call_id="c2"), "1002", tcp, NOW, "t")
    assert len(r.drop_flow(9)) == 1 and r.lookup("1001", NOW) == []
    assert r.drop_flow(10) == []
    [phone] = r.lookup("1002", NOW)
    assert phone.source.flow is None  # reached again by connecting to its Contact


async def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cc.db"
    conn = await open_database(path)
    await apply_migrations(conn, "sip", MIGRATIONS)
    store = BindingStore(conn)
    r = registrar()
    d = r.process(register(["<sip:1001@192.0.2.20:5062>;+sip.instance=\"<urn:uuid:1>\""]), "1001", PHONE, NOW, "t")
    store.save(d.upserted, d.removed)
    await store.flush()
    await conn.close()

    conn = await open_database(path)
    loaded = await BindingStore(conn).load(NOW + 1)
    await conn.close()
    assert len(loaded) == 1
    b = loaded[0]
    assert (b.aor, b.contact_uri, b.source.host, b.source.port) == ("1001", "sip:1001@192.0.2.20:5062", "192.0.2.20", 5062)
    assert b.instance == '"<urn:uuid:1>"'
    restored = registrar()
    restored.load(loaded)
    assert restored.lookup("1001", NOW + 1)[0].expires_in(NOW + 1) == 299


def test_requests_go_behind_nat_to_the_source_but_otherwise_to_the_contact() -> None:
    r = registrar()
    # The phone says it is 192.0.2.20:5062 (Via and Contact agree) but its packets come from
    # 203.0.113.9:40000: a NAT rewrote them, so requests must go to the packets' source.
    natted = Address(Transport.UDP, "203.0.113.9", 40000)
    r.process(register(["<sip:1001@192.0.2.20:5062>"]), "1001", natted, NOW, "t")
    assert r.lookup("1001", NOW)[0].target() == natted
    # Contact differs from the Via: registered on someone else's behalf; the Contact is the target.
    r.process(register(["<sip:1002@192.0.2.30:5070;transport=tcp>"], call_id="third"), "1002", PHONE, NOW, "t")
    assert r.lookup("1002", NOW)[0].target() == Address(Transport.TCP, "192.0.2.30", 5070)
    # No NAT: the phone is where it says, so Contact and source are the same place.
    r.process(register(["<sip:1003@192.0.2.20:5062>"], call_id="plain"), "1003", PHONE, NOW, "t")
    assert r.lookup("1003", NOW)[0].target() == PHONE
