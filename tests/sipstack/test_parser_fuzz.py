"""Mutated messages never crash the parser or the framer: each either parses
(and then survives a round trip) or raises SipParseError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipstack.errors import SipParseError
from sipstack.framing import KeepAlive, StreamFramer
from sipstack.message import Request, Response, parse_message

DATA = Path(__file__).parent / "rfc4475"

INVITE = (
    b"INVITE sip:bob@biloxi.example.com;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK776asdhds;rport, SIP/2.0/UDP 192.0.2.4\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: \"Bob \\\"B\\\"\" <sip:bob@biloxi.example.com>\r\n"
    b"From: \xe5\xbc\xa0\xe4\xb8\x89 <sip:%61lice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>;expires=60, \"x,y\" <tel:+1-201-555-0123>;q=0.5\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Subject: folded\r\n  over two lines\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n"
)
OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.4\r\n"
    b"t: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"f: <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"i: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:bob@192.0.2.4>\r\n"
    b"l: 0\r\n\r\n"
)
REGISTER = (
    b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: *\r\n"
    b"Expires: 0\r\n"
    b"Authorization: Digest username=\"bob\", realm=\"a, b\", nonce=\"x\"\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _rfc(name: str) -> bytes:
    # Plain messages from the RFC 4475 data (no markup in these files).
    return (DATA / f"{name}.txt").read_text("utf-8").replace("\n", "\r\n").encode("utf-8")


SEEDS = [INVITE, OK_200, REGISTER, _rfc("wsinv"), _rfc("esc01"), _rfc("semiuri"), _rfc("unreason"),
         _rfc("noreason")]


def check_parse(data: bytes) -> None:
    """The property: a clean parse that round-trips, or SipParseError."""
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599
        assert exc.reason.isascii() and "\r" not in exc.reason and "\n" not in exc.reason
        return
    again = parse_message(msg.to_bytes())
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert (again.method, again.uri) == (msg.method, msg.uri)
    else:
        assert isinstance(msg, Response) and isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)
    assert again.call_id == msg.call_id
    assert again.cseq == msg.cseq
    assert again.vias == msg.vias
    assert again.from_addr == msg.from_addr and again.to_addr == msg.to_addr
    assert [h for h in again.headers if h[0] != "Content-Length"] == \
           [h for h in msg.headers if h[0] != "Content-Length"]
    assert again.body == msg.body


def check_framer(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    pieces = []
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    try:
        for piece in pieces:
            for item in framer.feed(piece):
                if isinstance(item, KeepAlive):
                    continue
                check_parse(item)
    except SipParseError as exc:
        assert exc.status in (400, 513)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate", "huge", "special"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "special":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b"\r\n ", b";", b",", b"<", b">", b'"', b"\\",
                                                  b"%", b"%0", b"@", b":", b"[", b"]", b"\x00", b" ",
                                                  b"\r\n\r\n", b"=", b"?", b"\n", b"\r"]))
        else:
            lines = bytes(data).split(b"\r\n")
            if len(lines) < 3:
                continue
            i = draw(st.integers(1, len(lines) - 2))
            if kind == "duplicate":
                lines.insert(i, lines[i])
            else:  # huge: one very long value in an existing header
                lines[i] = lines[i] + b"x" * draw(st.sampled_from([100, 9000, 70000]))
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        parse_message(seed)
        check_parse(seed)


@FUZZ
@given(mutated())
def test_mutated_datagrams(data: bytes) -> None:
    check_parse(data)


@FUZZ
@given(mutated(), st.lists(st.integers(0, 10**6), max_size=6))
def test_mutated_streams(data: bytes, cuts: list[int]) -> None:
    check_framer(data + b"\r\n\r\n" + data, cuts)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_parse(data)
    check_framer(data, [len(data) // 2])


def replace_value(data: bytes, name: bytes, value: str) -> bytes:
    """``data`` with the first ``name`` field's value replaced."""
    lines = data.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower() + b":"):
            lines[i] = name + b": " + value.encode("utf-8", "surrogatepass")
            break
    return b"\r\n".join(lines)


VALUE_FIELDS = [b"From", b"To", b"Contact", b"Via", b"Route", b"Call-ID", b"CSeq", b"Max-Forwards"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VALUE_FIELDS),
       st.text(alphabet=st.sampled_from(list('<>";,:@=?&%[]\\ \tsipSIP/2.0UDPtag1.ex\u00e9\u5f20')), max_size=60))
def test_grammar_characters_in_header_values(name: bytes, value: str) -> None:
    """Values built from the characters the grammars care about."""
    check_parse(replace_value(INVITE, name, value))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(VALUE_FIELDS), st.text(max_size=80))
def test_any_text_in_header_values(name: bytes, value: str) -> None:
    check_parse(replace_value(INVITE, name, value))
