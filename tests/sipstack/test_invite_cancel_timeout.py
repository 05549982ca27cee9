"""RFC 3261 §9.1 on the client side, with a fake clock: "If there is no final response for the
original request in 64*T1 seconds ..., the client SHOULD then consider the original transaction
cancelled and SHOULD destroy the client transaction handling the original request."

An INVITE in Proceeding has no timer of its own (§17.1.1.2), so without this rule a callee
that rang and then vanished would keep its INVITE transaction alive for ever."""

from __future__ import annotations

from sipstack.addressing import Address, Transport
from sipstack.message import Request, make_response, parse_message
from sipstack.transaction import ClientInviteTransaction, TxState
from sipstack.transaction_layer import ResponseReceived, TransactionLayer, TransactionTimeout

PHONE = Address(Transport.UDP, "192.0.2.20", 5060)
BRANCH = "z9hG4bK-ringing-1"


def request(method: str, branch: str = BRANCH) -> Request:
    text = (
        f"{method} sip:1002@192.0.2.20 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:8001@192.0.2.1>;tag=b2bua1\r\n"
        "To: <sip:1002@192.0.2.20>\r\n"
        "Call-ID: ringing-1@192.0.2.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def ringing(layer: TransactionLayer) -> tuple[Request, ClientInviteTransaction]:
    """An INVITE the phone answered with 180 Ringing at t = 0.1."""
    invite = request("INVITE")
    tx, _ = layer.send_request(invite, PHONE, now=0.0)
    assert isinstance(tx, ClientInviteTransaction)
    ring = make_response(invite, 180, to_tag="phone1")
    layer.receive(ring, PHONE, now=0.1)
    assert tx.state is TxState.PROCEEDING
    return invite, tx


def run_clock(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    seen: list[tuple[float, object]] = []
    while (at := layer.next_deadline) is not None and at <= until:
        out = layer.on_timer(at)
        seen += [(round(at, 2), event) for event in out.events]
    return seen


def test_a_ringing_invite_without_cancel_keeps_ringing() -> None:
    # §17.1.1.2: once a provisional came, Timer B no longer applies: the TU decides how long
    # a phone may ring.
    layer = TransactionLayer()
    _, tx = ringing(layer)
    assert tx.deadline is None
    assert run_clock(layer, 1000.0) == []
    assert tx.state is TxState.PROCEEDING


def test_an_unanswered_cancel_gives_up_the_invite_64_t1_after_it_was_sent() -> None:
    layer = TransactionLayer()
    _, tx = ringing(layer)
    cancel_tx, out = layer.send_request(request("CANCEL"), PHONE, now=10.0)
    assert len(out.sends) == 1 and tx.state is TxState.PROCEEDING
    seen = run_clock(layer, 100.0)
    timeouts = [(at, event.transaction) for at, event in seen if isinstance(event, TransactionTimeout)]
    # The INVITE is destroyed at 10 + 64*T1 = 42 s; the CANCEL ends by its own Timer F then too.
    assert (42.0, tx) in timeouts and (42.0, cancel_tx) in timeouts and len(timeouts) == 2
    assert tx.state is TxState.TERMINATED and cancel_tx.state is TxState.TERMINATED
    assert len(layer) == 0 and layer.next_deadline is None


def test_the_487_after_the_cancel_ends_the_invite_as_usual() -> None:
    layer = TransactionLayer()
    invite, tx = ringing(layer)
    cancel = request("CANCEL")
    layer.send_request(cancel, PHONE, now=10.0)
    layer.receive(make_response(cancel, 200, to_tag="phone1"), PHONE, now=10.1)
    out = layer.receive(make_response(invite, 487, to_tag="phone1"), PHONE, now=10.2)
    assert [e.response.status for e in out.events if isinstance(e, ResponseReceived)] == [487]
    assert len(out.sends) == 1 and out.sends[0].data.startswith(b"ACK ")   # §17.1.1.3
    assert tx.state is TxState.COMPLETED
    # No cancellation timeout after a final response: only Timer D (32 s) ends it, quietly.
    seen = run_clock(layer, 100.0)
    assert not [e for _, e in seen if isinstance(e, TransactionTimeout)]
    assert tx.state is TxState.TERMINATED and len(layer) == 0


def test_a_second_cancel_does_not_push_the_deadline_back() -> None:
    layer = TransactionLayer()
    _, tx = ringing(layer)
    layer.send_request(request("CANCEL"), PHONE, now=10.0)
    assert tx.deadline == 42.0
    tx.cancel_sent(20.0)
    assert tx.deadline == 42.0


def test_a_cancel_for_a_different_branch_leaves_the_invite_alone() -> None:
    layer = TransactionLayer()
    _, tx = ringing(layer)
    layer.send_request(request("CANCEL", branch="z9hG4bK-other"), PHONE, now=10.0)
    run_clock(layer, 100.0)
    assert tx.state is TxState.PROCEEDING and tx.deadline is None
