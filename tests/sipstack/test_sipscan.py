"""The native scanners behind the parser (native/sipscan.pyx).

split_header_block takes only plain header blocks and must then agree exactly with the
full Python parser (sipstack.message._split_header_block, the reference); everything else
it hands back (None). parse_auth_params implements the whole auth-param grammar of
RFC 3261 §25.1 / RFC 7235 §2.1 and reports errors as codes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native.sipscan import (
    AUTH_NO_SPACE,
    AUTH_NO_VALUE,
    AUTH_NOT_DIGEST,
    AUTH_TWICE,
    AUTH_UNEXPECTED,
    AUTH_UNTERMINATED,
    NameTable,
    has_controls,
    parse_auth_params,
    parse_plain_params,
    serialize_message,
    split_header_block,
)

from sipstack.errors import SipParseError
from sipstack.headers import WIRE_NAME_TABLE, _parse_params_general
from sipstack.message import MAX_HEADER_FIELDS, MAX_LINE_LENGTH, _split_header_block


def split(head: str):
    return split_header_block(head, WIRE_NAME_TABLE, MAX_HEADER_FIELDS, MAX_LINE_LENGTH)


REGISTER_HEAD = "\r\n".join([
    "REGISTER sip:127.0.0.1:5060 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1;rport",
    "f: <sip:1001@127.0.0.1>;tag=t1",
    "TO:\t<sip:1001@127.0.0.1>  ",
    "i: c1",
    "cseq: 1 REGISTER",
    "X-Vendor-Thing :  a, b ",
    "Contact: <sip:1001@127.0.0.1:5099>",
    "Contact:",
    "Content-Length: 0",
])


class TestSplitHeaderBlock:
    def test_plain_block_is_split_with_canonical_names_and_an_index(self) -> None:
        start, fields, index = split(REGISTER_HEAD)
        assert start == "REGISTER sip:127.0.0.1:5060 SIP/2.0"
        assert fields == [
            ("via", "Via", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1;rport"),
            ("from", "From", "<sip:1001@127.0.0.1>;tag=t1"),  # RFC 3261 §7.3.3 compact form
            ("to", "To", "<sip:1001@127.0.0.1>"),
            ("call-id", "Call-ID", "c1"),
            ("cseq", "CSeq", "1 REGISTER"),
            ("x-vendor-thing", "X-Vendor-Thing", "a, b"),  # unknown: as written
            ("contact", "Contact", "<sip:1001@127.0.0.1:5099>"),
            ("contact", "Contact", ""),
            ("content-length", "Content-Length", "0"),
        ]
        assert index["contact"] == ["<sip:1001@127.0.0.1:5099>", ""]
        assert index["call-id"] == ["c1"] and "i" not in index

    def test_agrees_with_the_full_parser(self) -> None:
        start, fields, _ = split(REGISTER_HEAD)
        ref_start, ref_headers = _split_header_block(REGISTER_HEAD)
        assert (start, fields) == (ref_start, ref_headers._fields)

    def test_start_line_alone(self) -> None:
        assert split("OPTIONS sip:a@b SIP/2.0") == ("OPTIONS sip:a@b SIP/2.0", [], {})

    def test_utf8_values_are_kept(self) -> None:
        _, fields, _ = split("INVITE sip:a@b SIP/2.0\r\nFrom: 张三 <sip:a@b>;tag=1\r\nSubject: Grüße")
        assert fields[0][2] == "张三 <sip:a@b>;tag=1" and fields[1][2] == "Grüße"

    @pytest.mark.parametrize("head", [
        "INVITE sip:a@b SIP/2.0\r\nSubject: folded\r\n  over two lines",  # §7.3.1 folding
        "INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h",  # bare LF line ends
        "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\nTo: <sip:a@b>",  # mixed line ends
        "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\rTo: <sip:a@b>",  # bare CR
        "INVITE sip:a@b SIP/2.0\r",  # CR at the very end
        "INVITE sip:a@b SIP/2.0\r\nSubject: a\x00b",  # control character in a value
        "INVITE sip:a@b SIP/2.0\x7f\r\nTo: <sip:a@b>",  # DEL in the start line
        "INVITE sip:a@b SIP/2.0\r\nSubject: " + "x" * MAX_LINE_LENGTH,  # line too long
        "INVITE sip:a@b SIP/2.0" + "\r\nX: y" * (MAX_HEADER_FIELDS + 1),  # too many fields
        "INVITE sip:a@b SIP/2.0\r\n: no name",
        "INVITE sip:a@b SIP/2.0\r\nno colon at all",
        "INVITE sip:a@b SIP/2.0\r\nBad Name: x",  # whitespace inside the name
        "INVITE sip:a@b SIP/2.0\r\nBad/Name: x",  # not a token
        "INVITE sip:a@b SIP/2.0\r\n\u212a: timer",  # KELVIN SIGN lower-cases to "k"
    ])
    def test_anything_not_plain_is_left_to_the_full_parser(self, head: str) -> None:
        assert split(head) is None

    def test_limits_are_the_ones_passed(self) -> None:
        head = "OPTIONS sip:a@b SIP/2.0\r\nX: 1\r\nY: 2"
        assert split_header_block(head, WIRE_NAME_TABLE, 1, MAX_LINE_LENGTH) is None
        assert split_header_block(head, WIRE_NAME_TABLE, 2, MAX_LINE_LENGTH) is not None
        assert split_header_block(head, WIRE_NAME_TABLE, 2, len("OPTIONS sip:a@b SIP/2.0") - 1) is None


# Header lines mostly plain, now and then with what the block grammar cares about.
_PLAIN_VALUE = st.text(alphabet=st.sampled_from(list("sip:a@b;tag=1 ,<>\"\\\té张")), max_size=14)
_ODD_LINE = st.text(alphabet=st.sampled_from(list("Via:To :\t ,;=x-\"\\\x00\x7f\r\né\u212a")), max_size=14)
_GOOD_NAME = st.sampled_from(["Via", "v", "CALL-ID", "x-Foo", "To", "max-forwards", "Kontakt", "i", "CSeq"])
_BAD_NAME = st.sampled_from(["a b", "", "é", "\u212a", "a/b"])


@st.composite
def header_blocks(draw: st.DrawFn) -> str:
    lines = ["INVITE sip:a@b SIP/2.0"]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 9)) < 8:
            separator = draw(st.sampled_from([": ", ":", " :", ":\t", ": "]))
            name = draw(_BAD_NAME) if draw(st.integers(0, 19)) == 0 else draw(_GOOD_NAME)
            lines.append(f"{name}{separator}{draw(_PLAIN_VALUE)}")
        else:
            lines.append(draw(_ODD_LINE))
    return draw(st.sampled_from(["\r\n", "\r\n", "\r\n", "\n"])).join(lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header_blocks())
def test_native_split_equals_the_reference_whenever_it_answers(head: str) -> None:
    scanned = split(head)
    try:
        ref_start, ref_headers = _split_header_block(head)
    except SipParseError:
        # What the full parser refuses, the scanner must not accept.
        assert scanned is None
        return
    if scanned is not None:
        start, fields, index = scanned
        assert (start, fields) == (ref_start, ref_headers._fields)
        assert index == ref_headers._lookup()


class TestNameTable:
    def test_names_are_found_in_any_letter_case_and_give_their_very_value(self) -> None:
        value = ("via", "Via")
        table = NameTable({"via": value, "call-id": ("call-id", "Call-ID"), "i": ("call-id", "Call-ID")})
        assert table.get("VIA") is value and table.get("vIa") is value
        assert table.get("Call-ID") == ("call-id", "Call-ID") and table.get("I") == ("call-id", "Call-ID")
        assert table.get("vias") is None and table.get("") is None and table.get("ví") is None

    @pytest.mark.parametrize("name", ["Via", "", "é", 3])
    def test_names_must_be_lower_case_ascii(self, name: object) -> None:
        with pytest.raises(ValueError):
            NameTable({name: 1})


AUTH_NAMES = NameTable({"realm": "realm", "nonce": "nonce"})


def auth_params(value: str) -> dict[str, str] | tuple[int, str]:
    return parse_auth_params(value, AUTH_NAMES)


class TestParseAuthParams:
    def test_digest_response(self) -> None:
        value = ('Digest username="1001", realm="callcenter", nonce="abc", uri="sip:127.0.0.1", '
                 'response="0a1b", algorithm=MD5, cnonce="x", qop=auth, nc=00000001')
        assert auth_params(value) == {
            "username": "1001", "realm": "callcenter", "nonce": "abc", "uri": "sip:127.0.0.1",
            "response": "0a1b", "algorithm": "MD5", "cnonce": "x", "qop": "auth", "nc": "00000001"}

    def test_spacing_case_and_empty_list_elements_are_tolerated(self) -> None:
        value = 'dIgEsT\tREALM = "r" ,,\r\n nonce=  bare value  ,qop="auth,auth-int",'
        assert auth_params(value) == {"realm": "r", "nonce": "bare value", "qop": "auth,auth-int"}

    def test_quoted_pairs_are_resolved(self) -> None:
        assert auth_params(r'Digest username="a\"b\\c\d", realm=""') == {
            "username": 'a"b\\cd', "realm": ""}

    def test_non_ascii_values(self) -> None:
        assert auth_params('Digest username="张三", realm=Grüße') == {
            "username": "张三", "realm": "Grüße"}

    def test_unquoted_values_lose_unicode_whitespace_like_str_strip(self) -> None:
        assert auth_params("Digest nonce=\u00a0abc\u2003, realm=r") == {"nonce": "abc", "realm": "r"}

    def test_bare_scheme(self) -> None:
        assert auth_params("Digest") == {}

    @pytest.mark.parametrize(("value", "error"), [
        ("", (AUTH_NOT_DIGEST, "")),
        ("Basic QWxhZGRpbg==", (AUTH_NOT_DIGEST, "")),
        ("Digestive x=y", (AUTH_NOT_DIGEST, "")),
        ("Digest,realm=r", (AUTH_NO_SPACE, "")),
        ("Digest realm=r, =x", (AUTH_UNEXPECTED, "=")),
        ('Digest realm=r, "x"', (AUTH_UNEXPECTED, '"')),
        ("Digest realm", (AUTH_NO_VALUE, "realm")),
        ("Digest Realm x", (AUTH_NO_VALUE, "realm")),
        ('Digest realm="r', (AUTH_UNTERMINATED, "realm")),
        ('Digest realm="r\\"', (AUTH_UNTERMINATED, "realm")),
        ('Digest realm="r\\', (AUTH_UNTERMINATED, "realm")),
        ('Digest realm="a", REALM="b"', (AUTH_TWICE, "realm")),
        ('Digest realm="a, nonce="b', (AUTH_NO_VALUE, "b")),  # the quote ends at nonce="
    ])
    def test_errors(self, value: str, error: tuple[int, str]) -> None:
        assert auth_params(value) == error

    def test_the_first_error_wins(self) -> None:
        # The value is read before the duplicate is noticed.
        assert auth_params('Digest realm="a", realm="b') == (AUTH_UNTERMINATED, "realm")


class TestParsePlainParams:
    def test_plain_parameters(self) -> None:
        assert parse_plain_params(";branch=z9hG4bK-1;rport;Received=[2001:db8::1];BRANCH=x") == {
            "branch": "z9hG4bK-1", "rport": None, "received": "[2001:db8::1]"}

    @pytest.mark.parametrize("text", [
        "", ";", ";;a", "a=b", " ;a", ";a ", ";a =b", ";a= b", ";a=", ';a="b"', ";a=b=c", ";a=é", ";é",
        ";a;", ";a=b,c",
    ])
    def test_anything_else_is_left_to_the_general_parser(self, text: str) -> None:
        assert parse_plain_params(text) is None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(";=aB1-.[]:\" \t,é")), max_size=20))
def test_plain_params_equal_the_general_parser_whenever_they_answer(text: str) -> None:
    plain = parse_plain_params(text)
    if plain is not None:
        assert plain == _parse_params_general(text, "header")


class TestSerializeMessage:
    def test_fields_and_a_computed_content_length(self) -> None:
        fields = [("via", "Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("content-length", "Content-Length", "99"),
                  ("x-a", "X-A", ""), ("content-length", "l", "7")]
        assert serialize_message("SIP/2.0 200 OK", fields, b"body") == (
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 4\r\nX-A: \r\n\r\nbody")

    def test_content_length_is_added_when_missing(self) -> None:
        assert serialize_message("OPTIONS sip:a@b SIP/2.0", [], b"") == (
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")

    @pytest.mark.parametrize(("start", "fields"), [
        ("SIP/2.0 200 Très bien", []),
        ("SIP/2.0 200 OK", [("from", "From", "张三 <sip:a@b>")]),
    ])
    def test_non_ascii_text_is_left_to_the_caller(self, start: str, fields: list) -> None:
        assert serialize_message(start, fields, b"") is None


_FIELD = st.tuples(st.sampled_from(["via", "content-length", "x-a"]), st.sampled_from(["Via", "l", "X-A"]),
                   st.text(alphabet=st.sampled_from(list("ab ;:=\té")), max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.lists(_FIELD, max_size=6), st.binary(max_size=20))
def test_serialize_message_is_the_text_encoded(fields: list[tuple[str, str, str]], body: bytes) -> None:
    lines = ["INVITE sip:a@b SIP/2.0"]
    length_written = False
    for key, name, value in fields:
        if key == "content-length":
            if not length_written:
                lines.append(f"Content-Length: {len(body)}")
                length_written = True
        else:
            lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    wire = serialize_message("INVITE sip:a@b SIP/2.0", fields, body)
    if text.isascii():
        assert wire == text.encode("ascii") + body
    else:
        assert wire is None


@pytest.mark.parametrize(("text", "found"), [
    ("", False), ("plain\ttext", False), ("张三", False), ("a\x00", True), ("\r", True), ("\n", True),
    ("x\x7f", True), ("张\x1f", True), ("\U0001f600\x08", True),
])
def test_has_controls(text: str, found: bool) -> None:
    assert has_controls(text) is found
