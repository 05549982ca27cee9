"""RFC 3261 §12 dialogs: state from the creating transaction, in-dialog requests, CSeq rules."""

from __future__ import annotations

import pytest

from sipstack.dialog import Dialog, DialogError, DialogState
from sipstack.message import Request, Response, make_response, parse_message

INVITE = (
    "INVITE sip:1002@192.0.2.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p1\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-c1\r\n"
    "Record-Route: <sip:proxy2.example.com;lr>\r\n"
    "Record-Route: <sip:proxy1.example.com;lr>\r\n"
    "Max-Forwards: 69\r\n"
    'From: "张三" <sip:1001@192.0.2.1>;tag=caller\r\n'
    "To: <sip:1002@192.0.2.1>\r\n"
    "Call-ID: dlg-1@192.0.2.10\r\n"
    "CSeq: 314 INVITE\r\n"
    "Contact: <sip:1001@192.0.2.10:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def invite() -> Request:
    msg = parse_message(INVITE.encode())
    assert isinstance(msg, Request)
    return msg


def answer(request: Request, status: int = 200) -> Response:
    response = make_response(request, status, to_tag="callee")
    for rr in request.headers.get_all("Record-Route"):
        response.headers.add("Record-Route", rr)
    response.headers.add("Contact", "<sip:1002@192.0.2.20:5062>")
    return parse_message(response.to_bytes())  # type: ignore[return-value]


def test_uas_dialog_takes_its_state_from_the_request() -> None:
    req = invite()
    d = Dialog.as_uas(req, answer(req))
    assert (d.id.call_id, d.id.local_tag, d.id.remote_tag) == ("dlg-1@192.0.2.10", "callee", "caller")
    assert str(d.remote_target) == "sip:1001@192.0.2.10:5060"
    assert [str(r.uri) for r in d.route_set] == ["sip:proxy2.example.com;lr", "sip:proxy1.example.com;lr"]
    assert d.remote_seq == 314 and d.state is DialogState.CONFIRMED
    assert d.remote_uri.display_name == "张三"


def test_uac_dialog_reverses_the_record_route() -> None:
    req = invite()
    d = Dialog.as_uac(req, answer(req, 180))
    assert d.state is DialogState.EARLY
    assert [str(r.uri) for r in d.route_set] == ["sip:proxy1.example.com;lr", "sip:proxy2.example.com;lr"]
    assert str(d.remote_target) == "sip:1002@192.0.2.20:5062"
    d.receive_response(answer(req, 200))
    assert d.state is DialogState.CONFIRMED


def test_in_dialog_request_uses_loose_routing_and_the_next_cseq() -> None:
    req = invite()
    d = Dialog.as_uac(req, answer(req))
    bye = d.create_request("BYE", via="SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-bye")
    bye = parse_message(bye.to_bytes())
    assert isinstance(bye, Request)
    assert str(bye.uri) == "sip:1002@192.0.2.20:5062"
    assert [str(r.uri) for r in bye.routes] == ["sip:proxy1.example.com;lr", "sip:proxy2.example.com;lr"]
    assert bye.cseq.number == 315 and bye.cseq.method == "BYE"
    assert (bye.from_addr.tag, bye.to_addr.tag) == ("caller", "callee")
    assert d.state is DialogState.TERMINATED


def test_ack_reuses_the_invite_cseq() -> None:
    req = invite()
    d = Dialog.as_uac(req, answer(req))
    ack = d.create_request("ACK", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-ack")
    assert ack.cseq.number == 314 and ack.cseq.method == "ACK"
    reinvite = d.create_request("INVITE", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-re",
                                contact="<sip:1001@192.0.2.10:5060>")
    assert reinvite.cseq.number == 315 and reinvite.headers.get("Contact") == "<sip:1001@192.0.2.10:5060>"
    assert d.create_request("ACK", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-ack2").cseq.number == 315


def test_strict_route_puts_the_first_route_in_the_request_uri() -> None:
    req = invite()
    response = make_response(req, 200, to_tag="callee")
    response.headers.add("Record-Route", "<sip:strict.example.com>")
    response.headers.add("Contact", "<sip:1002@192.0.2.20>")
    d = Dialog.as_uac(req, parse_message(response.to_bytes()))  # type: ignore[arg-type]
    bye = d.create_request("BYE", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK-s")
    assert str(bye.uri) == "sip:strict.example.com"
    assert [str(r.uri) for r in bye.routes] == ["sip:1002@192.0.2.20"]


def test_out_of_order_remote_cseq_is_refused_with_500() -> None:
    req = invite()
    d = Dialog.as_uas(req, answer(req))
    late = parse_message(INVITE.replace("CSeq: 314 INVITE", "CSeq: 313 INFO")
                         .replace("INVITE sip:", "INFO sip:", 1).encode())
    with pytest.raises(DialogError) as err:
        d.receive_request(late)  # type: ignore[arg-type]
    assert err.value.status == 500


def test_reinvite_refreshes_the_remote_target() -> None:
    req = invite()
    d = Dialog.as_uas(req, answer(req))
    reinvite = parse_message(INVITE.replace("CSeq: 314", "CSeq: 315")
                             .replace("Contact: <sip:1001@192.0.2.10:5060>", "Contact: <sip:1001@198.51.100.9:5070>")
                             .encode())
    d.receive_request(reinvite)  # type: ignore[arg-type]
    assert str(d.remote_target) == "sip:1001@198.51.100.9:5070" and d.invite_seq == 315


def test_messages_match_their_dialog_by_call_id_and_tags() -> None:
    req = invite()
    d = Dialog.as_uas(req, answer(req))
    inbound_bye = parse_message(INVITE.replace("INVITE sip:", "BYE sip:", 1).replace("CSeq: 314 INVITE", "CSeq: 315 BYE")
                                .replace("To: <sip:1002@192.0.2.1>", "To: <sip:1002@192.0.2.1>;tag=callee").encode())
    assert d.matches(inbound_bye)  # type: ignore[arg-type]
    assert not d.matches(req)  # no To tag yet: not in this dialog
