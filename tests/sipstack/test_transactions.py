"""RFC 3261 §17 transactions driven by a fake clock: retransmission schedules and timeouts
follow the RFC's timer table (T1 = 500 ms, T2 = 4 s, T4 = 5 s)."""

from __future__ import annotations

import pytest

from sipstack.addressing import Address, Transport
from sipstack.message import Request, make_response, parse_message
from sipstack.transaction import TxState
from sipstack.transaction_layer import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionLayer,
    TransactionTimeout,
)

UDP_PEER = Address(Transport.UDP, "192.0.2.10", 5060)
TCP_PEER = Address(Transport.TCP, "192.0.2.10", 40000, flow=7)


def request(method: str, branch: str = "z9hG4bK-test-1", transport: str = "UDP", cseq: int = 1) -> Request:
    text = (
        f"{method} sip:1002@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.10:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@192.0.2.1>;tag=from1\r\n"
        "To: <sip:1002@192.0.2.1>\r\n"
        "Call-ID: call-1@192.0.2.10\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def run_clock(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Advance a fake clock from deadline to deadline, as the server's timer does;
    collect (time, send-or-event) pairs."""
    seen: list[tuple[float, object]] = []
    while (at := layer.next_deadline) is not None and at <= until:
        out = layer.on_timer(at)
        seen += [(round(at, 2), s) for s in out.sends]
        seen += [(round(at, 2), e) for e in out.events]
    return seen


def send_times(seen: list[tuple[float, object]]) -> list[float]:
    from sipstack.transaction import Send

    return [t for t, item in seen if isinstance(item, Send)]


class TestClientNonInvite:
    def test_timer_e_doubles_to_t2_and_timer_f_times_out_after_64_t1(self) -> None:
        layer = TransactionLayer()
        tx, out = layer.send_request(request("OPTIONS"), UDP_PEER, now=0.0)
        assert len(out.sends) == 1
        seen = run_clock(layer, 40.0)
        # §17.1.2.2: E fires at T1, then doubles up to T2 (4 s) and stays there.
        assert send_times(seen) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        timeouts = [t for t, e in seen if isinstance(e, TransactionTimeout)]
        assert timeouts == [32.0]  # Timer F = 64*T1
        assert tx.state is TxState.TERMINATED and len(layer) == 0

    def test_provisional_moves_to_proceeding_and_final_to_completed_then_timer_k(self) -> None:
        layer = TransactionLayer()
        req = request("REGISTER")
        tx, _ = layer.send_request(req, UDP_PEER, now=0.0)
        out = layer.receive(make_response(req, 100), UDP_PEER, now=0.1)
        assert isinstance(out.events[0], ResponseReceived) and tx.state is TxState.PROCEEDING
        out = layer.receive(make_response(req, 200), UDP_PEER, now=0.2)
        assert [e.response.status for e in out.events] == [200]  # type: ignore[union-attr]
        assert tx.state is TxState.COMPLETED
        # A retransmitted final is absorbed in Completed.
        assert layer.receive(make_response(req, 200), UDP_PEER, now=0.3).events == []
        layer.on_timer(0.2 + 5.0)  # Timer K = T4
        assert tx.state is TxState.TERMINATED

    def test_reliable_transport_neither_retransmits_nor_lingers(self) -> None:
        layer = TransactionLayer()
        req = request("OPTIONS", transport="TCP")
        tx, _ = layer.send_request(req, TCP_PEER, now=0.0)
        assert send_times(run_clock(layer, 10.0)) == []
        layer.receive(make_response(req, 200), TCP_PEER, now=10.0)
        assert tx.state is TxState.TERMINATED


class TestClientInvite:
    def test_timer_a_doubles_without_cap_until_timer_b(self) -> None:
        layer = TransactionLayer()
        layer.send_request(request("INVITE"), UDP_PEER, now=0.0)
        seen = run_clock(layer, 33.0)
        assert send_times(seen) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        assert [t for t, e in seen if isinstance(e, TransactionTimeout)] == [32.0]

    def test_non_2xx_final_is_acked_by_the_transaction_and_retransmissions_re_acked(self) -> None:
        layer = TransactionLayer()
        req = request("INVITE")
        tx, _ = layer.send_request(req, UDP_PEER, now=0.0)
        busy = make_response(req, 486, to_tag="callee")
        out = layer.receive(busy, UDP_PEER, now=0.2)
        ack = parse_message(out.sends[0].data)
        assert isinstance(ack, Request) and ack.method == "ACK"
        assert ack.cseq.number == 1 and ack.to_addr.tag == "callee"  # §17.1.1.3
        assert ack.top_via.branch == req.top_via.branch
        assert [e.response.status for e in out.events] == [486]  # type: ignore[union-attr]
        again = layer.receive(busy, UDP_PEER, now=0.9)
        assert len(again.sends) == 1 and again.events == []  # ACK repeated, TU not told twice
        layer.on_timer(0.2 + 32.0)  # Timer D
        assert tx.state is TxState.TERMINATED

    def test_2xx_goes_to_accepted_and_passes_retransmitted_2xx_up(self) -> None:
        layer = TransactionLayer()
        req = request("INVITE")
        tx, _ = layer.send_request(req, UDP_PEER, now=0.0)
        ok = make_response(req, 200, to_tag="callee")
        layer.receive(ok, UDP_PEER, now=1.0)
        assert tx.state is TxState.ACCEPTED  # RFC 6026
        out = layer.receive(ok, UDP_PEER, now=1.5)
        assert len(out.events) == 1 and out.sends == []  # the TU (dialog) re-ACKs 2xx itself
        layer.on_timer(1.0 + 32.0)  # Timer M
        assert tx.state is TxState.TERMINATED
        assert isinstance(layer.receive(ok, UDP_PEER, now=40.0).events[0], StrayResponse)


class TestServerInvite:
    def test_trying_sent_once_the_tu_has_seen_the_invite_and_repeated_for_retransmissions(self) -> None:
        layer = TransactionLayer()
        out = layer.receive(request("INVITE"), UDP_PEER, now=0.0)
        event = out.events[0]
        assert isinstance(event, RequestReceived)
        assert out.sends == [] and out.trying == [event.transaction]
        trying = layer.send_trying(event.transaction, now=0.0)  # type: ignore[arg-type]
        assert parse_message(trying.sends[0].data).status == 100  # type: ignore[union-attr]
        again = layer.receive(request("INVITE"), UDP_PEER, now=0.5)
        assert again.events == [] and parse_message(again.sends[0].data).status == 100  # type: ignore[union-attr]

    def test_no_trying_when_the_tu_answered_at_once(self) -> None:
        # §17.2.1: the 100 only stops retransmissions; a final response sent at once does that.
        layer = TransactionLayer()
        event = layer.receive(request("INVITE"), UDP_PEER, now=0.0).events[0]
        assert isinstance(event, RequestReceived)
        layer.respond(event.transaction, make_response(event.request, 407, to_tag="me"), now=0.0)
        assert layer.send_trying(event.transaction, now=0.0).sends == []  # type: ignore[arg-type]
        again = layer.receive(request("INVITE"), UDP_PEER, now=0.5)
        assert parse_message(again.sends[0].data).status == 407  # type: ignore[union-attr]

    def test_timer_g_retransmits_final_until_ack_then_timer_i(self) -> None:
        layer = TransactionLayer()
        event = layer.receive(request("INVITE"), UDP_PEER, now=0.0).events[0]
        assert isinstance(event, RequestReceived)
        layer.respond(event.transaction, make_response(event.request, 486, to_tag="me"), now=0.0)
        seen = run_clock(layer, 12.0)
        # §17.2.1: G starts at T1 and doubles up to T2.
        assert send_times(seen) == [0.5, 1.5, 3.5, 7.5, 11.5]
        ack = request("ACK")
        out = layer.receive(ack, UDP_PEER, now=12.0)
        assert out.events == [] and event.transaction.state is TxState.CONFIRMED
        assert layer.on_timer(16.9).sends == []
        layer.on_timer(17.0)  # Timer I = T4
        assert event.transaction.state is TxState.TERMINATED

    def test_timer_h_reports_a_missing_ack(self) -> None:
        layer = TransactionLayer()
        event = layer.receive(request("INVITE"), UDP_PEER, now=0.0).events[0]
        layer.respond(event.transaction, make_response(event.request, 404, to_tag="me"), now=0.0)  # type: ignore[union-attr]
        seen = run_clock(layer, 33.0)
        assert [t for t, e in seen if isinstance(e, TransactionTimeout)] == [32.0]

    def test_2xx_accepted_absorbs_invite_retransmissions_and_ack_goes_to_the_tu(self) -> None:
        layer = TransactionLayer()
        event = layer.receive(request("INVITE"), UDP_PEER, now=0.0).events[0]
        layer.respond(event.transaction, make_response(event.request, 200, to_tag="me"), now=0.1)  # type: ignore[union-attr]
        assert event.transaction.state is TxState.ACCEPTED  # type: ignore[union-attr]
        assert layer.receive(request("INVITE"), UDP_PEER, now=0.6).sends == []
        # The ACK of a 2xx has a new branch (§17.1.1.3): it is the dialog's, not the transaction's.
        out = layer.receive(request("ACK", branch="z9hG4bK-ack-2"), UDP_PEER, now=0.7)
        assert isinstance(out.events[0], AckReceived)


class TestServerNonInvite:
    def test_retransmission_absorbed_in_trying_and_answered_in_completed(self) -> None:
        layer = TransactionLayer()
        event = layer.receive(request("REGISTER"), UDP_PEER, now=0.0).events[0]
        assert layer.receive(request("REGISTER"), UDP_PEER, now=0.5).sends == []
        layer.respond(event.transaction, make_response(event.request, 200, to_tag="me"), now=1.0)  # type: ignore[union-attr]
        resent = layer.receive(request("REGISTER"), UDP_PEER, now=1.5)
        assert parse_message(resent.sends[0].data).status == 200  # type: ignore[union-attr]
        layer.on_timer(1.0 + 31.9)
        assert len(layer) == 1
        layer.on_timer(1.0 + 32.0)  # Timer J = 64*T1
        assert len(layer) == 0

    def test_distinct_branches_are_distinct_transactions(self) -> None:
        layer = TransactionLayer()
        layer.receive(request("REGISTER", branch="z9hG4bK-a"), UDP_PEER, now=0.0)
        layer.receive(request("REGISTER", branch="z9hG4bK-b", cseq=2), UDP_PEER, now=0.0)
        assert len(layer) == 2

    def test_cancel_finds_its_invite(self) -> None:
        layer = TransactionLayer()
        invite = layer.receive(request("INVITE"), UDP_PEER, now=0.0).events[0]
        cancel = request("CANCEL")
        assert isinstance(layer.receive(cancel, UDP_PEER, now=0.1).events[0], RequestReceived)
        assert layer.find_invite_for_cancel(cancel) is invite.transaction  # type: ignore[union-attr]


@pytest.mark.parametrize("rport, expected_port", [(True, 40123), (False, 5060)])
def test_responses_follow_rport_or_via_port(rport: bool, expected_port: int) -> None:
    """RFC 3581 §4: with rport the response goes to the packet's source port."""
    text = (
        "OPTIONS sip:192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-nat{';rport' if rport else ''}\r\n"
        "From: <sip:1001@192.0.2.1>;tag=a\r\nTo: <sip:192.0.2.1>\r\nCall-ID: nat@x\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    source = Address(Transport.UDP, "203.0.113.7", 40123)
    layer = TransactionLayer()
    event = layer.receive(parse_message(text.encode()), source, now=0.0).events[0]
    out = layer.respond(event.transaction, make_response(event.request, 200), now=0.0)  # type: ignore[union-attr]
    assert out.sends[0].destination.port == expected_port
    assert out.sends[0].destination.host == "203.0.113.7"
    via = parse_message(out.sends[0].data).top_via
    assert via.received == "203.0.113.7"
    assert via.rport == (40123 if rport else None)
