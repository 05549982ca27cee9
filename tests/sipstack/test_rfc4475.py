"""RFC 4475 torture test messages.

The messages live in rfc4475/<name>.txt as the RFC prints them: one line per
line (the loader writes CRLF), with the RFC's markup (§2.1 <allOneLine>, §2.2
<hex>, §2.3 <repeat count=N>) expanded by the loader. The 13 valid messages
expand to the exact bytes of the RFC's Appendix A archive (SHA-256 checked).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from sipstack.errors import SipParseError
from sipstack.framing import KeepAlive, StreamFramer
from sipstack.message import Request, Response, parse_message, response_for_error
from sipstack.uri import AbsoluteUri, SipUri
from sipstack.validate import check_request

DATA = Path(__file__).parent / "rfc4475"


def load(name: str) -> bytes:
    """One message as bytes on the wire, the RFC 4475 §2 markup expanded."""
    text = (DATA / f"{name}.txt").read_text("utf-8")
    text = re.sub(r"<repeat count=(\d+)>(.*?)</repeat>", lambda m: m.group(2) * int(m.group(1)), text,
                  flags=re.S)
    text = re.sub(r"<allOneLine>\n(.*?)</allOneLine>\n", lambda m: m.group(1).replace("\n", "") + "\n",
                  text, flags=re.S)
    data = text.replace("\n", "\r\n").encode("utf-8")
    return re.sub(rb"<hex>(.*?)</hex>", lambda m: bytes.fromhex(m.group(1).decode("ascii")), data,
                  flags=re.S)


# SHA-256 of the RFC 4475 Appendix A archive members (the reference bytes).
VALID_SHA256 = {
    "wsinv": "d6f6cdee99cd0a1f8e3d9a0fdd67c877700e19ab86d8186dada06f61260e3e61",
    "intmeth": "b957a8292c1c0a9851fe94705b90f94320738f43aacde64998e401f742ef688d",
    "esc01": "be3a316d4ce5f69cad474646191e390dd4b50fc8371e44b5197fe1237781973e",
    "escnull": "263fe2ecd12a5ccbb6c67b3174e9211d11da9b600e7d69666a86d2ee42873e90",
    "esc02": "9a9c59449f00327b02071feafc8e5c2a261c98c818044167894cc17809a12199",
    "lwsdisp": "d1b36b6316c12824f6f04bf6b1fd1f021cade9b74871693b9c3474cd9fa7f4e6",
    "longreq": "185739292bc676760e5b1cca77c87705aa570240171c506ad76f8c35af0ecdaa",
    "dblreq": "a6be48426565c2a705389c4ce2ea17e57b891cb13f80490a2cb9392c797b46ef",
    "semiuri": "87bbaed6b4b354dbd3c5c7a20e66686303c63e43a0aa19b89de1ac75231611a2",
    "transports": "33b4553a3b9418121b099ff07882535151edd6a1e81898c63a916aad2cbf90bc",
    "mpart01": "92147c8e24997bac59629e1b163767697d0d6d499af87f89e325d69968bec3ba",
    "unreason": "4f939d6ebf4817eea70f011d3209e83732872ffc20ffd304b244084dc392f4d7",
    "noreason": "07e11e470a69fffa3674de805e5165d1351a9439a91045ee70c9570ea24ab4fe",
}
VALID = list(VALID_SHA256)


def parse_request(name: str) -> Request:
    msg = parse_message(load(name))
    assert isinstance(msg, Request)
    return msg


def parse_response(name: str) -> Response:
    msg = parse_message(load(name))
    assert isinstance(msg, Response)
    return msg


@pytest.mark.parametrize("name", VALID)
def test_data_file_expands_to_the_rfc_bytes(name: str) -> None:
    assert hashlib.sha256(load(name)).hexdigest() == VALID_SHA256[name]


# --- §3.1.1 Valid messages: every one parses and survives a round trip ---------


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    msg = parse_message(load(name))
    again = parse_message(msg.to_bytes())
    assert type(again) is type(msg)
    assert list(again.headers) == list(msg.headers)
    assert again.body == msg.body
    assert again.call_id == msg.call_id and again.cseq == msg.cseq
    assert again.vias == msg.vias and again.from_addr == msg.from_addr and again.to_addr == msg.to_addr
    if isinstance(msg, Request):
        assert isinstance(again, Request)
        assert (again.method, again.uri) == (msg.method, msg.uri)
    else:
        assert isinstance(again, Response)
        assert (again.status, again.reason) == (msg.status, msg.reason)


def test_wsinv_short_tortuous_invite() -> None:
    """§3.1.1.1: folding, LWS everywhere, compact and long forms, odd case."""
    req = parse_request("wsinv")
    assert req.method == "INVITE"
    assert isinstance(req.uri, SipUri) and req.uri.params == {"unknownparam": None}
    assert req.to_addr.tag == "1918181833n"
    assert req.from_addr.display_name == 'J Rosenberg \\"'
    assert req.from_addr.tag == "98asjd8"
    assert req.max_forwards == 68  # leading zeros
    assert req.cseq.number == 9 and req.cseq.method == "INVITE"
    assert req.headers.get("Subject") == ""
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert [(v.transport, v.host, v.branch) for v in req.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")]
    (contact,) = req.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = req.routes
    assert isinstance(route.uri, SipUri)
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(req.body) == 150


def test_intmeth_wide_range_of_valid_characters() -> None:
    """§3.1.1.2: every token character in the method, quoted-pair controls."""
    req = parse_request("intmeth")
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.cseq.method == req.method
    assert isinstance(req.uri, SipUri)
    assert req.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert req.from_addr.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert req.from_addr.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    # The display name's controls must go back out as quoted-pairs.
    assert parse_message(req.to_bytes()).to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"


def test_esc01_percent_escapes() -> None:
    """§3.1.1.3: escapes are decoded once, where the grammar says "escaped"."""
    req = parse_request("esc01")
    assert isinstance(req.uri, SipUri) and req.uri.user == "sips:user@example.com"
    assert req.uri.host == "example.net"
    to_uri, from_uri = req.to_addr.uri, req.from_addr.uri
    assert isinstance(to_uri, SipUri) and to_uri.user == "user"
    assert isinstance(from_uri, SipUri) and from_uri.user == "I have spaces"
    contact = req.contacts[0].uri
    assert isinstance(contact, SipUri)
    assert contact.user == "caller"
    # "value%41" is not "valueA": unescaping is never recursive (RFC 3986).
    assert contact.params == {"lr": None, "name": "value%41"}
    assert req.content_type == "application/sdp"


def test_escnull_nulls_do_not_shorten_users() -> None:
    """§3.1.1.4: two distinct contacts, AOR with an escaped NUL."""
    req = parse_request("escnull")
    to_uri = req.to_addr.uri
    assert isinstance(to_uri, SipUri) and to_uri.user == "null-\x00-null"
    assert to_uri.aor == "sip:null-%00-null@example.com"
    users = [c.uri.user for c in req.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]


def test_esc02_percent_that_is_not_an_escape() -> None:
    """§3.1.1.5: an unknown method (not REGISTER), two Contacts not three."""
    req = parse_request("esc02")
    assert req.method == "RE%47IST%45R"
    assert req.to_addr.display_name == "%Z%45"
    assert req.top_via.branch == "z9hG4bK209%fzsnel234"
    assert len(req.contacts) == 2
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_no_space_before_angle_bracket() -> None:
    """§3.1.1.6"""
    req = parse_request("lwsdisp")
    assert req.from_addr.display_name == "caller"
    assert req.from_addr.tag == "323"


def test_longreq_long_values() -> None:
    """§3.1.1.7"""
    req = parse_request("longreq")
    assert req.to_addr.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    assert isinstance(req.to_addr.uri, SipUri) and req.to_addr.uri.port == 6000
    assert req.from_addr.tag == "12" + "982" * 50 + "424"
    assert "unknownvaluelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname" \
           "paramnameparamname" in req.from_addr.params
    assert len(req.vias) == 34
    assert req.vias[0].host == "sip33.example.com"
    assert req.vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert req.vias[-1].received == "192.0.2.5"
    assert req.headers.get("Unknown-" + "Long" * 20 + "-Name") is not None


def test_dblreq_extra_octets_after_the_body_are_ignored() -> None:
    """§3.1.1.8: RFC 3261 §18.3, the INVITE-looking tail is noise."""
    req = parse_request("dblreq")
    assert req.method == "REGISTER"
    assert req.body == b""
    assert b"INVITE" not in req.to_bytes()


def test_semiuri_semicolon_in_user_part() -> None:
    """§3.1.1.9"""
    req = parse_request("semiuri")
    assert isinstance(req.uri, SipUri)
    assert req.uri.user == "user;par=u@example.net"
    assert req.uri.params == {}
    assert req.headers.get_all("Accept") == ["application/sdp", "application/pkcs7-mime", "multipart/mixed",
                                             "multipart/signed", "message/sip", "message/sipfrag"]


def test_transports_unknown_transport_tokens() -> None:
    """§3.1.1.10"""
    req = parse_request("transports")
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert req.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_multipart_body() -> None:
    """§3.1.1.11: the body holds NULs and bare LFs; Content-Length frames it."""
    req = parse_request("mpart01")
    assert len(req.body) == 553
    assert b"\x00" in req.body
    assert req.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert req.top_via.port == 5070 and req.top_via.has_rport and req.top_via.rport is None
    assert req.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"


def test_unreason_utf8_reason_phrase() -> None:
    """§3.1.1.12"""
    resp = parse_response("unreason")
    assert resp.status == 200
    assert resp.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(resp.body) == 154


def test_noreason_empty_reason_phrase() -> None:
    """§3.1.1.13"""
    resp = parse_response("noreason")
    assert resp.status == 100
    assert resp.reason == ""


# --- §3.1.2 Invalid messages ---------------------------------------------------

# name -> (status a careful server answers, a word of the reason it gives)
INVALID = {
    "badinv01": (400, "Via"),  # §3.1.2.1 extraneous ;;,;,, in Via, ;;;; in Contact
    "clerr": (400, "Content-Length"),  # §3.1.2.2 Content-Length larger than the datagram
    "ncl": (400, "Content-Length"),  # §3.1.2.3 negative Content-Length
    "scalar02": (400, "CSeq"),  # §3.1.2.4 overlarge scalars; the CSeq one is fatal
    "scalarlg": (400, "CSeq"),  # §3.1.2.5 (a response: dropped)
    "quotbal": (400, "quoted"),  # §3.1.2.6 unterminated quoted display name
    "ltgtruri": (400, "Request-URI"),  # §3.1.2.7 <> around the Request-URI
    "lwsruri": (400, "Request-Line"),  # §3.1.2.8 LWS inside the Request-URI
    "lwsstart": (400, "Request-Line"),  # §3.1.2.9 several SP between elements
    "trws": (400, "Request-Line"),  # §3.1.2.10 SP after SIP-Version
    "escruri": (400, "headers"),  # §3.1.2.11 escaped headers in the Request-URI
    "baddate": (400, "Date"),  # §3.1.2.12 non-GMT Date
    "regbadct": (400, "<>"),  # §3.1.2.13 addr-spec with "?" outside <>
    "badaspec": (400, "URI"),  # §3.1.2.14 spaces inside <>
    "baddn": (400, "display name"),  # §3.1.2.15 unquoted non-token display name
    "badvers": (505, "Version"),  # §3.1.2.16 SIP/7.0
    "mismatch01": (400, "CSeq method"),  # §3.1.2.17 OPTIONS with CSeq INVITE
    # §3.1.2.18: an unknown method with a mismatching CSeq. The RFC prefers 501
    # but allows 400; a parser cannot tell known from unknown methods.
    "mismatch02": (400, "CSeq method"),
    "bigcode": (400, "status code"),  # §3.1.2.19 (a response: dropped)
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_message_is_refused(name: str) -> None:
    status, word = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.status == status
    assert word in info.value.reason
    assert info.value.reason.isascii()


@pytest.mark.parametrize("name", ["clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
                                  "trws", "escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers",
                                  "mismatch01", "mismatch02"])
def test_invalid_requests_are_answered(name: str) -> None:
    """RFC 3261 §8.2.6.2: the refusal copies Via, From, To, Call-ID and CSeq."""
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    resp = response_for_error(info.value, to_tag="x1")
    assert resp is not None
    assert resp.status == info.value.status
    assert resp.reason == info.value.reason
    request_headers = info.value.headers
    assert request_headers is not None
    for field in ("Via", "From", "Call-ID", "CSeq"):
        assert resp.headers.get_fields(field) == request_headers.get_fields(field)
    assert resp.to_bytes().startswith(f"SIP/2.0 {resp.status} ".encode())


def test_badinv01_cannot_be_answered_without_a_via() -> None:
    """§3.1.2.1: the only Via is malformed, so there is nowhere to send a 400."""
    with pytest.raises(SipParseError) as info:
        parse_message(load("badinv01"))
    assert response_for_error(info.value) is None


def test_stream_framing_of_bad_content_length() -> None:
    """§3.1.2.2/3: over a stream, a negative Content-Length is fatal to the
    connection; a too large one just waits for more bytes."""
    with pytest.raises(SipParseError):
        StreamFramer().feed(load("ncl"))
    assert StreamFramer().feed(load("clerr")) == []


# --- §3.2 Transaction layer semantics ------------------------------------------


def test_badbranch_magic_cookie_without_identifier_still_parses() -> None:
    """§3.2.1: the parser must not break; the transaction layer decides."""
    req = parse_request("badbranch")
    assert req.top_via.branch == "z9hG4bK"


# --- §3.3 Application layer semantics -------------------------------------------


def test_insuf_missing_required_headers() -> None:
    """§3.3.1: no To, From, Call-ID: 400, answered with what there is."""
    with pytest.raises(SipParseError) as info:
        parse_message(load("insuf"))
    assert info.value.status == 400
    resp = response_for_error(info.value)
    assert resp is not None and resp.status == 400
    assert resp.headers.get("CSeq") == "193942 INVITE"
    assert resp.headers.get("Via") == "SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf"


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_unknown_request_uri_scheme_is_416(name: str) -> None:
    """§3.3.2, §3.3.3: it parses, and is answered 416 Unsupported URI Scheme."""
    req = parse_request(name)
    assert isinstance(req.uri, AbsoluteUri)
    resp = check_request(req, supported={"100rel"})
    assert resp is not None and resp.status == 416
    assert resp.call_id == req.call_id


def test_unksm2_unknown_schemes_in_header_fields() -> None:
    """§3.3.4: To/From/Contact with unknown schemes parse; the registrar refuses."""
    req = parse_request("unksm2")
    assert isinstance(req.to_addr.uri, AbsoluteUri) and req.to_addr.uri.scheme == "isbn"
    assert isinstance(req.from_addr.uri, AbsoluteUri) and req.from_addr.uri.scheme == "http"
    assert str(req.contacts[0].uri) == "name:John_Smith"
    assert check_request(req, supported=()) is None  # the Request-URI itself is sip:


def test_bext01_unknown_option_tags() -> None:
    """§3.3.5: 420 Bad Extension listing the tags not understood."""
    req = parse_request("bext01")
    resp = check_request(req, supported={"100rel", "timer"})
    assert resp is not None and resp.status == 420
    assert resp.headers.get_all("Unsupported") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    proxied = check_request(req, supported={"100rel"}, must_forward=True)
    assert proxied is not None and proxied.status == 420
    assert "noProxiesSupportThis" in proxied.headers.get_all("Unsupported")


def test_invut_unknown_content_type_parses() -> None:
    """§3.3.6: the parser keeps the body; the UAS answers 415."""
    req = parse_request("invut")
    assert req.content_type == "application/unknownformat"
    assert req.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def test_regaut01_unknown_authorization_scheme_parses() -> None:
    """§3.3.7: the Authorization value is kept whole for the registrar."""
    req = parse_request("regaut01")
    assert req.headers.get_all("Authorization") == ["NoOneKnowsThisScheme opaque-data=here"]


def test_multi01_multiple_single_value_headers() -> None:
    """§3.3.8: two CSeq, Call-ID, To, From, Max-Forwards: 400."""
    with pytest.raises(SipParseError) as info:
        parse_message(load("multi01"))
    assert info.value.status == 400
    assert "more than one" in info.value.reason


def test_mcl01_multiple_content_lengths() -> None:
    """§3.3.9: no way to know the body length: 400, and fatal on a stream."""
    with pytest.raises(SipParseError) as info:
        parse_message(load("mcl01"))
    assert info.value.status == 400
    with pytest.raises(SipParseError):
        StreamFramer().feed(load("mcl01"))


def test_bcast_broadcast_via_parses() -> None:
    """§3.3.10: the response parses; where to send it is the transport's call."""
    resp = parse_response("bcast")
    assert [v.host for v in resp.vias] == ["192.0.2.198", "255.255.255.255"]


def test_zeromf_max_forwards_zero() -> None:
    """§3.3.11: a proxy answers 483; the UAS may handle the OPTIONS itself."""
    req = parse_request("zeromf")
    assert req.max_forwards == 0
    assert check_request(req, supported=()) is None
    resp = check_request(req, supported=(), must_forward=True)
    assert resp is not None and resp.status == 483


def test_cparam01_parameter_of_an_unbracketed_contact_belongs_to_the_header() -> None:
    """§3.3.12"""
    (contact,) = parse_request("cparam01").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == {}
    assert contact.params == {"unknownparam": None}


def test_cparam02_parameter_inside_brackets_belongs_to_the_uri() -> None:
    """§3.3.13"""
    (contact,) = parse_request("cparam02").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == {"unknownparam": None}
    assert contact.params == {}


def test_regescrt_escaped_route_in_contact_uri() -> None:
    """§3.3.14: legal inside <>; the registrar must not apply it."""
    (contact,) = parse_request("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}


def test_sdp01_unacceptable_accept_still_parses() -> None:
    """§3.3.15: the UAS answers 406; parsing is unaffected."""
    req = parse_request("sdp01")
    assert req.headers.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert len(req.body) == 150


# --- §3.4 Backward compatibility --------------------------------------------------


def test_inv2543_rfc2543_style_invite() -> None:
    """§3.4.1: no branch, no From tag, no Max-Forwards, no Content-Length."""
    req = parse_request("inv2543")
    assert req.top_via.branch is None
    assert req.from_addr.tag is None
    assert req.max_forwards is None
    assert req.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert check_request(req, supported=()) is None


# --- all valid messages through the stream framer ---------------------------------


def test_valid_messages_through_the_stream_framer_in_small_pieces() -> None:
    # dblreq is left out: it is a datagram whose trailing octets (RFC 4475
    # §3.1.1.8) would be the start of a broken message on a stream.
    names = [n for n in VALID if n != "dblreq"]
    stream = b"\r\n\r\n".join(load(n) for n in names)
    framer = StreamFramer()
    items: list[bytes | KeepAlive] = []
    for i in range(0, len(stream), 97):
        items.extend(framer.feed(stream[i:i + 97]))
    messages = [item for item in items if isinstance(item, bytes)]
    assert [parse_message(m).call_id for m in messages] == [parse_message(load(n)).call_id for n in names]
    assert messages == [load(n) for n in names]
    # Each join is an RFC 5626 keep-alive ping.
    assert sum(isinstance(item, KeepAlive) for item in items) == len(names) - 1
    assert framer.buffered == 0
