"""Parsing, checking and serialising whole messages; responses; stream framing."""

from __future__ import annotations

import pytest

from sipstack.errors import SipParseError
from sipstack.framing import KeepAlive, StreamFramer, is_keepalive_datagram
from sipstack.headers import Headers
from sipstack.message import (
    MAX_MESSAGE_SIZE,
    MAX_VIA_COUNT,
    CSeq,
    Request,
    Response,
    generate_branch,
    generate_call_id,
    generate_tag,
    make_response,
    parse_message,
    response_for_error,
)
from sipstack.uri import SipUri
from sipstack.validate import check_request


def msg(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


INVITE_LINES = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
)
SDP = "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"


def invite(*extra: str, body: str = SDP, length: int | None = None) -> bytes:
    n = len(body.encode()) if length is None else length
    return msg(*INVITE_LINES, *extra, f"Content-Length: {n}", body=body)


def reply_180() -> bytes:
    return msg(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1",
        "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Content-Length: 0",
    )


class TestParseRequest:
    def test_views(self) -> None:
        req = parse_message(invite())
        assert isinstance(req, Request)
        assert req.method == "INVITE"
        assert req.uri == SipUri.parse("sip:bob@biloxi.example.com")
        assert req.version == "SIP/2.0"
        assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
        assert req.cseq == CSeq(314159, "INVITE")
        assert req.from_addr.display_name == "Alice"
        assert req.from_addr.tag == "1928301774"
        assert req.to_addr.tag is None
        assert req.top_via.branch == "z9hG4bK776asdhds"
        assert req.top_via.has_rport
        assert [str(c.uri) for c in req.contacts] == ["sip:alice@pc33.atlanta.example.com"]
        assert not req.is_wildcard_contact
        assert req.max_forwards == 70
        assert req.expires is None
        assert req.content_type == "application/sdp"
        assert req.body == SDP.encode()

    def test_round_trip(self) -> None:
        data = invite()
        req = parse_message(data)
        assert req.to_bytes() == data
        assert bytes(req) == data

    def test_compact_forms_are_expanded(self) -> None:
        data = msg(
            "OPTIONS sip:carol@chicago.example.com SIP/2.0",
            "v: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877",
            "t: <sip:carol@chicago.example.com>",
            "f: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
            "i: a84b4c76e66710",
            "CSeq: 63104 OPTIONS",
            "m: <sip:alice@pc33.atlanta.example.com>",
            "k: timer, 100rel",
            "l: 0",
        )
        req = parse_message(data)
        assert req.call_id == "a84b4c76e66710"
        assert req.headers.get_all("Supported") == ["timer", "100rel"]
        out = req.to_bytes().decode()
        assert "\r\nVia: SIP/2.0/TCP" in out and "\r\nCall-ID: a84b4c76e66710\r\n" in out
        assert out.endswith("Content-Length: 0\r\n\r\n")

    def test_folded_header_is_unfolded(self) -> None:
        req = parse_message(invite("Subject: I know you're there,", "   pick up the phone", "\tand talk to me!"))
        assert req.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"

    def test_folded_mandatory_header(self) -> None:
        lines = list(INVITE_LINES)
        lines[5] = "Call-ID:"
        lines.insert(6, "   a84b4c76e66710@pc33")
        req = parse_message(msg(*lines, "Content-Length: 0"))
        assert req.call_id == "a84b4c76e66710@pc33"

    def test_multiple_via_fields_and_values(self) -> None:
        req = parse_message(invite("Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bKa, SIP/2.0/UDP p2.example.com"))
        assert [v.host for v in req.vias] == ["pc33.atlanta.example.com", "p1.example.com", "p2.example.com"]

    def test_leading_crlf_is_ignored(self) -> None:
        assert parse_message(b"\r\n\r\n" + invite()).method == "INVITE"

    def test_bare_lf_line_endings_are_accepted(self) -> None:
        data = invite(body="v=0\n").replace(b"\r\n", b"\n")
        req = parse_message(data)
        assert req.body == b"v=0\n"
        assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"

    def test_no_content_length_on_datagram_takes_the_rest(self) -> None:
        req = parse_message(msg(*INVITE_LINES, body="v=0\r\n"))
        assert req.body == b"v=0\r\n"
        assert req.to_bytes().endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")

    def test_datagram_longer_than_content_length_is_truncated(self) -> None:
        # RFC 3261 §18.3: octets beyond Content-Length are discarded.
        req = parse_message(invite(body=SDP + "garbage after the body", length=len(SDP)))
        assert req.body == SDP.encode()

    def test_unknown_headers_and_params_survive(self) -> None:
        req = parse_message(invite("X-Weird-Header: ;;some value, \"with\" <stuff>",
                                   "P-Foo: a;b=c"))
        out = req.to_bytes().decode()
        assert "\r\nX-Weird-Header: ;;some value, \"with\" <stuff>\r\n" in out
        assert "\r\nP-Foo: a;b=c\r\n" in out

    def test_wildcard_contact(self) -> None:
        data = msg("REGISTER sip:example.com SIP/2.0",
                   "Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKr",
                   "To: <sip:u@example.com>", "From: <sip:u@example.com>;tag=1",
                   "Call-ID: r1", "CSeq: 2 REGISTER", "Contact: *", "Expires: 0", "Content-Length: 0")
        req = parse_message(data)
        assert req.is_wildcard_contact
        assert req.contacts == []
        assert req.expires == 0

    def test_utf8_header_values(self) -> None:
        lines = list(INVITE_LINES)
        lines[4] = 'From: "张三" <sip:zhang@example.cn>;tag=1'
        req = parse_message(msg(*lines, "Content-Length: 0"))
        assert req.from_addr.display_name == "张三"
        assert parse_message(req.to_bytes()).from_addr.display_name == "张三"

    def test_views_follow_header_changes(self) -> None:
        req = parse_message(invite())
        assert req.cseq.number == 314159
        req.headers.set("CSeq", "314160 INVITE")
        assert req.cseq.number == 314160
        vias = req.vias
        vias.pop()
        assert len(req.vias) == 1  # the returned list is a copy


class TestParseResponse:
    def test_views(self) -> None:
        resp = parse_message(reply_180())
        assert isinstance(resp, Response)
        assert resp.status == 180
        assert resp.reason == "Ringing"
        assert resp.to_addr.tag == "a6c85cf"
        assert [v.branch for v in resp.vias] == ["z9hG4bK4b43c2ff8.1", "z9hG4bK776asdhds"]
        assert resp.vias[1].received == "192.0.2.1"
        assert resp.to_bytes() == reply_180()

    def test_reason_with_spaces_and_utf8(self) -> None:
        data = reply_180().replace(b"180 Ringing", "180 Ça sonne, décrochez".encode())
        assert parse_message(data).reason == "Ça sonne, décrochez"


def _status_of(data: bytes) -> int:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    reason = info.value.reason
    assert reason.isascii() and "\r" not in reason and "\n" not in reason
    return info.value.status


class TestMalformed:
    def test_empty(self) -> None:
        assert _status_of(b"") == 400
        assert _status_of(b"\r\n\r\n") == 400

    def test_no_blank_line(self) -> None:
        assert _status_of(invite().replace(b"\r\n\r\n", b"\r\n")) == 400

    def test_bad_version_is_505(self) -> None:
        assert _status_of(invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)) == 505

    def test_too_large_is_513(self) -> None:
        big = invite(body="x" * MAX_MESSAGE_SIZE)
        assert _status_of(big) == 513

    def test_too_many_vias_is_483(self) -> None:
        vias = [f"Via: SIP/2.0/UDP p{i}.example.com;branch=z9hG4bK{i}" for i in range(MAX_VIA_COUNT + 1)]
        assert _status_of(invite(*vias)) == 483

    @pytest.mark.parametrize("missing", ["Via", "To", "From", "Call-ID", "CSeq"])
    def test_missing_mandatory_header(self, missing: str) -> None:
        lines = [line for line in INVITE_LINES if not line.startswith(missing + ":")]
        assert _status_of(msg(*lines, "Content-Length: 0")) == 400

    def test_max_forwards_may_be_absent(self) -> None:
        lines = [line for line in INVITE_LINES if not line.startswith("Max-Forwards")]
        assert parse_message(msg(*lines, "Content-Length: 0")).max_forwards is None

    @pytest.mark.parametrize("duplicate", ["To: <sip:x@y.example>", "From: <sip:x@y.example>;tag=2",
                                           "Call-ID: other", "CSeq: 1 INVITE", "Max-Forwards: 69"])
    def test_duplicated_single_header(self, duplicate: str) -> None:
        assert _status_of(invite(duplicate)) == 400

    def test_cseq_method_mismatch(self) -> None:
        with pytest.raises(SipParseError) as info:
            parse_message(invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 ACK"))
        assert info.value.status == 400
        assert info.value.reason == "Bad Request: CSeq method does not match request method"
        assert info.value.headers is not None and info.value.headers.get("Call-ID")

    @pytest.mark.parametrize("cseq", ["2147483648 INVITE", "-1 INVITE", "1", "INVITE 1", "1 INV ITE"])
    def test_bad_cseq(self, cseq: str) -> None:
        assert _status_of(invite().replace(b"314159 INVITE", cseq.encode())) == 400

    def test_cseq_limit_is_inclusive(self) -> None:
        assert parse_message(invite().replace(b"314159", b"2147483647")).cseq.number == 2**31 - 1

    def test_content_length_longer_than_body(self) -> None:
        assert _status_of(invite(length=len(SDP) + 1)) == 400

    @pytest.mark.parametrize("value", ["-1", "abc", "1 2", "99999999999"])
    def test_bad_content_length(self, value: str) -> None:
        assert _status_of(msg(*INVITE_LINES, f"Content-Length: {value}", body="x")) == 400

    def test_invalid_utf8(self) -> None:
        assert _status_of(invite().replace(b"Alice <", b"Al\xffice <")) == 400

    @pytest.mark.parametrize("start", [
        "INVITE  sip:bob@biloxi.example.com SIP/2.0",
        "INVITE sip:bob@biloxi.example.com SIP/2.0 ",
        "INVITE <sip:bob@biloxi.example.com> SIP/2.0",
        "INVITE sip:bob@biloxi.example.com",
        "INV@ITE sip:bob@biloxi.example.com SIP/2.0",
        "INVITE sip:bob@biloxi.example.com?Route=%3Csip:x%3E SIP/2.0",
        "INVITE sip:bob@biloxi.example.com HTTP/1.1",
    ])
    def test_bad_request_line(self, start: str) -> None:
        assert _status_of(invite().replace(INVITE_LINES[0].encode(), start.encode())) == 400

    @pytest.mark.parametrize("start", ["SIP/2.0 1800 Ringing", "SIP/2.0 099 X", "SIP/2.0 abc OK", "SIP/2.0"])
    def test_bad_status_line(self, start: str) -> None:
        assert _status_of(reply_180().replace(b"SIP/2.0 180 Ringing", start.encode())) == 400

    def test_huge_version_number(self) -> None:
        assert _status_of(invite().replace(b"SIP/2.0\r\nVia", b"SIP/" + b"9" * 5000 + b".0\r\nVia", 1)) == 400

    def test_folded_value_longer_than_a_line(self) -> None:
        fold = "Subject: " + "a" * 5000 + "\r\n " + "b" * 5000
        assert _status_of(invite(fold)) == 400

    def test_bare_cr_inside_a_line(self) -> None:
        assert _status_of(invite("Subject: a\rb")) == 400

    def test_header_without_colon(self) -> None:
        assert _status_of(invite("This is not a header")) == 400

    def test_control_character(self) -> None:
        assert _status_of(invite("Subject: a\x01b")) == 400

    def test_continuation_first(self) -> None:
        data = invite().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia", 1)
        assert _status_of(data) == 400

    def test_error_carries_the_parsed_headers(self) -> None:
        data = invite().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        resp = response_for_error(info.value, to_tag="t1")
        assert resp is not None
        assert resp.status == 505
        assert resp.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
        assert resp.to_addr.tag == "t1"
        assert resp.top_via.branch == "z9hG4bK776asdhds"

    def test_no_response_without_usable_headers(self) -> None:
        with pytest.raises(SipParseError) as info:
            parse_message(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n")
        assert response_for_error(info.value) is None


class TestMakeResponse:
    def test_copies_rfc3261_headers(self) -> None:
        req = parse_message(invite("Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1", "Timestamp: 54"))
        resp = make_response(req, 200, to_tag="314159x", headers=[("Contact", "<sip:bob@192.0.2.4>")],
                             body=b"v=0\r\n")
        assert resp.status == 200 and resp.reason == "OK"
        assert resp.headers.get_all("Via") == req.headers.get_all("Via")
        assert resp.from_addr == req.from_addr
        assert resp.to_addr.tag == "314159x"
        assert resp.call_id == req.call_id
        assert resp.cseq == req.cseq
        assert resp.headers.get("Contact") == "<sip:bob@192.0.2.4>"
        assert "Timestamp" not in resp.headers
        assert "Max-Forwards" not in resp.headers
        again = parse_message(resp.to_bytes())
        assert isinstance(again, Response)
        assert again.body == b"v=0\r\n"

    def test_100_trying_gets_no_tag_but_timestamp(self) -> None:
        req = parse_message(invite("Timestamp: 54"))
        resp = make_response(req, 100, to_tag="abc")
        assert resp.reason == "Trying"
        assert resp.to_addr.tag is None
        assert resp.headers.get("Timestamp") == "54"

    def test_existing_to_tag_is_kept(self) -> None:
        req = parse_message(invite().replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                             b"To: Bob <sip:bob@biloxi.example.com>;tag=old"))
        assert make_response(req, 486, to_tag="new").to_addr.tag == "old"

    def test_reason_phrases(self) -> None:
        req = parse_message(invite())
        assert make_response(req, 486).reason == "Busy Here"
        assert make_response(req, 416).reason == "Unsupported URI Scheme"
        assert make_response(req, 499).reason == "Client Error"
        assert make_response(req, 404, "Nobody Here").reason == "Nobody Here"
        with pytest.raises(ValueError):
            make_response(req, 700)

    def test_built_request_serialises(self) -> None:
        h = Headers([("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={generate_branch()}"),
                     ("From", f"<sip:a@127.0.0.1>;tag={generate_tag()}"), ("To", "<sip:b@127.0.0.1>"),
                     ("Call-ID", generate_call_id("127.0.0.1")), ("CSeq", "1 OPTIONS"),
                     ("Max-Forwards", "70")])
        req = Request("OPTIONS", SipUri.parse("sip:b@127.0.0.1"), h)
        again = parse_message(req.to_bytes())
        assert again.headers.get("Content-Length") == "0"
        again.headers.remove("Content-Length")
        assert again == req


def test_generators() -> None:
    assert generate_branch().startswith("z9hG4bK")
    assert generate_branch() != generate_branch()
    assert len(generate_tag()) >= 8 and generate_tag() != generate_tag()
    assert generate_call_id("pc33.example.com").endswith("@pc33.example.com")
    assert generate_call_id("::1").endswith("@[::1]")
    assert "@" not in generate_call_id("")


class TestCheckRequest:
    def _req(self, *extra: str, uri: str = "sip:bob@biloxi.example.com", mf: int = 70) -> Request:
        lines = [line.replace("sip:bob@biloxi.example.com SIP", f"{uri} SIP") for line in INVITE_LINES]
        lines = [f"Max-Forwards: {mf}" if line.startswith("Max-Forwards") else line for line in lines]
        req = parse_message(msg(*lines, *extra, "Content-Length: 0"))
        assert isinstance(req, Request)
        return req

    def test_ok(self) -> None:
        assert check_request(self._req("Require: 100rel"), supported={"100rel", "timer"}) is None

    def test_unsupported_scheme(self) -> None:
        resp = check_request(self._req(uri="http://example.com/x"), supported=())
        assert resp is not None and resp.status == 416
        assert check_request(self._req(uri="tel:+15551234"), supported=()) is None

    def test_too_many_hops(self) -> None:
        req = self._req(mf=0)
        assert check_request(req, supported=()) is None
        resp = check_request(req, supported=(), must_forward=True)
        assert resp is not None and resp.status == 483

    def test_bad_extension(self) -> None:
        resp = check_request(self._req("Require: 100rel, nonsense", "Require: foo"), supported={"100rel"})
        assert resp is not None and resp.status == 420
        assert resp.headers.get("Unsupported") == "nonsense, foo"
        assert resp.call_id == "a84b4c76e66710@pc33.atlanta.example.com"

    def test_proxy_require_only_when_forwarding(self) -> None:
        req = self._req("Proxy-Require: foo")
        assert check_request(req, supported=()) is None
        resp = check_request(req, supported=(), must_forward=True)
        assert resp is not None and resp.status == 420


class TestStreamFramer:
    def test_split_reads_and_keepalives(self) -> None:
        one, two = invite(), reply_180()
        stream = b"\r\n\r\n" + one + b"\r\n" + two + b"\r\n\r\n" + one
        framer = StreamFramer()
        out: list[bytes | KeepAlive] = []
        for i in range(0, len(stream), 7):
            out.extend(framer.feed(stream[i:i + 7]))
        assert out == [KeepAlive(), one, two, KeepAlive(), one]
        assert framer.buffered == 0
        assert parse_message(out[1]).method == "INVITE"  # type: ignore[arg-type, union-attr]

    def test_one_read_many_messages(self) -> None:
        framer = StreamFramer()
        assert framer.feed(invite() * 3) == [invite()] * 3

    def test_waits_for_the_body(self) -> None:
        data = invite()
        framer = StreamFramer()
        assert framer.feed(data[:-5]) == []
        assert framer.feed(data[-5:]) == [data]

    def test_compact_and_folded_content_length(self) -> None:
        data = msg(*INVITE_LINES, "l:", "  3", body="abc")
        assert StreamFramer().feed(data + b"rest") == [data]

    def test_missing_content_length_is_400_and_sticky(self) -> None:
        framer = StreamFramer()
        with pytest.raises(SipParseError) as info:
            framer.feed(msg(*INVITE_LINES, body=""))
        assert info.value.status == 400
        with pytest.raises(SipParseError):
            framer.feed(invite())

    def test_oversized_declared_body_is_513(self) -> None:
        with pytest.raises(SipParseError) as info:
            StreamFramer().feed(invite(length=MAX_MESSAGE_SIZE))
        assert info.value.status == 513

    def test_endless_headers_are_513(self) -> None:
        framer = StreamFramer()
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
        with pytest.raises(SipParseError) as info:
            for _ in range(MAX_MESSAGE_SIZE // 1000 + 2):
                framer.feed(b"X-Junk: " + b"a" * 990 + b"\r\n")
        assert info.value.status == 513

    def test_keepalive_datagram(self) -> None:
        assert is_keepalive_datagram(b"\r\n\r\n")
        assert is_keepalive_datagram(b"\r\n")
        assert not is_keepalive_datagram(b"")
        assert not is_keepalive_datagram(invite())


def test_refusals_carry_a_to_tag() -> None:
    """RFC 3261 §8.2.6.2: a UAS adds a To tag to every response but 100."""
    req = parse_message(invite("Require: nonsense"))
    assert isinstance(req, Request)
    resp = check_request(req, supported=())
    assert resp is not None and resp.to_addr.tag
    assert check_request(req, supported=(), to_tag="fixed").to_addr.tag == "fixed"  # type: ignore[union-attr]
    with pytest.raises(SipParseError) as info:
        parse_message(invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"))
    resp = response_for_error(info.value)
    assert resp is not None and resp.to_addr.tag
