"""The header multimap and shared value grammar (RFC 3261 §7.3)."""

from __future__ import annotations

import pytest

from sipstack.errors import SipParseError
from sipstack.headers import Headers, canonical_name, has_bad_controls, parse_params, split_list, unquote


class TestCanonicalNames:
    @pytest.mark.parametrize(("given", "canonical"), [
        ("i", "Call-ID"), ("I", "Call-ID"), ("call-id", "Call-ID"), ("CALL-ID", "Call-ID"),
        ("m", "Contact"), ("f", "From"), ("t", "To"), ("v", "Via"), ("l", "Content-Length"),
        ("c", "Content-Type"), ("e", "Content-Encoding"), ("k", "Supported"), ("s", "Subject"),
        ("o", "Event"), ("r", "Refer-To"), ("b", "Referred-By"), ("x", "Session-Expires"),
        ("u", "Allow-Events"), ("a", "Accept-Contact"), ("j", "Reject-Contact"),
        ("d", "Request-Disposition"), ("y", "Identity"), ("n", "Identity-Info"),
        ("cseq", "CSeq"), ("www-authenticate", "WWW-Authenticate"), ("max-forwards", "Max-Forwards"),
        ("content-length", "Content-Length"), ("mime-version", "MIME-Version"),
        ("X-Custom-Thing", "X-Custom-Thing"), ("x-custom-thing", "x-custom-thing"),
    ])
    def test_canonical(self, given: str, canonical: str) -> None:
        assert canonical_name(given) == canonical


class TestHeaders:
    def test_case_insensitive_and_compact_lookup(self) -> None:
        h = Headers([("v", "SIP/2.0/UDP a.example;branch=z9hG4bK1"), ("i", "abc@host"), ("x-Foo", "1")])
        assert h.get("Call-ID") == "abc@host"
        assert h.get("call-id") == "abc@host"
        assert h.get("I") == "abc@host"
        assert "VIA" in h and "v" in h and "Route" not in h
        assert h.get("X-FOO") == "1"
        assert list(h) == [("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1"), ("Call-ID", "abc@host"),
                           ("x-Foo", "1")]
        assert len(h) == 3

    def test_get_missing(self) -> None:
        h = Headers()
        assert h.get("To") is None
        assert h.get_all("Via") == []

    def test_get_all_splits_list_headers(self) -> None:
        h = Headers([
            ("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example;branch=z9hG4bK2"),
            ("Via", "SIP/2.0/UDP c.example;branch=z9hG4bK3"),
            ("Contact", '"Doe, John" <sip:j@a.example>, <sip:x,y@b.example>'),
            ("Allow", "INVITE, ACK,CANCEL ,BYE"),
            ("Supported", ""),
        ])
        assert h.get_all("via") == ["SIP/2.0/UDP a.example;branch=z9hG4bK1",
                                    "SIP/2.0/TCP b.example;branch=z9hG4bK2",
                                    "SIP/2.0/UDP c.example;branch=z9hG4bK3"]
        assert h.get_all("m") == ['"Doe, John" <sip:j@a.example>', "<sip:x,y@b.example>"]
        assert h.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE"]
        assert h.get_all("Supported") == []

    @pytest.mark.parametrize("name", ["Authorization", "WWW-Authenticate", "Proxy-Authenticate",
                                      "Proxy-Authorization", "Date", "Subject", "X-Unknown"])
    def test_get_all_never_splits_other_headers(self, name: str) -> None:
        value = 'Digest realm="a, b", nonce="x", algorithm=MD5'
        h = Headers([(name, value)])
        assert h.get_all(name) == [value]

    def test_set_keeps_position_of_first(self) -> None:
        h = Headers([("To", "<sip:a@x>"), ("Route", "<sip:p1>"), ("From", "<sip:b@x>"), ("Route", "<sip:p2>")])
        h.set("route", "<sip:p3;lr>")
        assert list(h) == [("To", "<sip:a@x>"), ("Route", "<sip:p3;lr>"), ("From", "<sip:b@x>")]
        h.set("Max-Forwards", "70")
        assert list(h)[-1] == ("Max-Forwards", "70")

    def test_remove_and_prepend(self) -> None:
        h = Headers([("Call-ID", "1"), ("Via", "SIP/2.0/UDP b.example"), ("Route", "<sip:r>")])
        h.prepend("Via", "SIP/2.0/UDP a.example")
        assert h.get_all("Via") == ["SIP/2.0/UDP a.example", "SIP/2.0/UDP b.example"]
        assert list(h)[1] == ("Via", "SIP/2.0/UDP a.example")
        h.remove("ROUTE")
        h.remove("Record-Route")  # absent: no error
        assert "Route" not in h
        assert len(h) == 3

    def test_copy_is_independent(self) -> None:
        h = Headers([("To", "<sip:a@x>")])
        c = h.copy()
        c.add("From", "<sip:b@x>")
        assert "From" not in h
        assert c == Headers([("t", "<sip:a@x>"), ("From", "<sip:b@x>")])

    @pytest.mark.parametrize(("name", "value"), [
        ("Subject", "evil\r\nVia: injected"), ("Subject", "bad\nline"), ("Bad Name", "x"), ("", "x"),
        ("Subject", "nul\x00"),
    ])
    def test_rejects_injection(self, name: str, value: str) -> None:
        with pytest.raises(ValueError):
            Headers().add(name, value)

    def test_lookups_follow_changes(self) -> None:
        h = Headers([("Via", "SIP/2.0/UDP a.example"), ("To", "<sip:a@x>")])
        assert h.get("to") == "<sip:a@x>"
        h.set("To", "<sip:b@x>")
        assert h.get("t") == "<sip:b@x>"
        h.add("Route", "<sip:r1>, <sip:r2>")
        assert h.count("Route") == 1 and h.get_all("route") == ["<sip:r1>", "<sip:r2>"]
        h.remove("Via")
        assert "Via" not in h and h.get_fields("Via") == []
        values = h.get_fields("To")
        values.append("mutating the returned list changes nothing")
        assert h.get_fields("To") == ["<sip:b@x>"]

    def test_controls_only_as_quoted_pairs(self) -> None:
        assert not has_bad_controls('"a\\\x07b" <sip:x>')
        assert has_bad_controls("a\x07b")
        assert has_bad_controls('"a\x07b"')  # a bare control even inside quotes
        assert has_bad_controls('"a\\\r\nb"')
        Headers().add("To", '"BEL:\\\x07" <sip:x@y>')
        with pytest.raises(ValueError):
            Headers().add("To", "BEL:\x07 <sip:x@y>")

    def test_tab_is_allowed_in_values(self) -> None:
        h = Headers()
        h.add("Subject", "a\tb")
        assert h.get("subject") == "a\tb"


class TestValueGrammar:
    def test_split_list(self) -> None:
        assert split_list('a, "b,c" , <d,e>;x="f,g", ,h') == ["a", '"b,c"', '<d,e>;x="f,g"', "h"]
        assert split_list(r'"q\",x", y') == [r'"q\",x"', "y"]
        assert split_list("") == []

    def test_unquote(self) -> None:
        assert unquote(r'"a \"b\" \\ c"') == 'a "b" \\ c'
        for bad in ['"abc', 'abc"', '"a"b"', '"a\\"']:
            with pytest.raises(SipParseError):
                unquote(bad)

    def test_parse_params(self) -> None:
        assert parse_params(' ; Tag=AbC ;lr; q = 0.5;x="a;b"') == {
            "tag": "AbC", "lr": None, "q": "0.5", "x": '"a;b"'}
        assert parse_params("") == {}
        for bad in [";;", "; =x", ";a=", ';a="x', "junk;a=b", ";a=b c"]:
            with pytest.raises(SipParseError):
                parse_params(bad)
