"""SIP/tel URIs, name-addr and Via values (RFC 3261 §19.1, §20.10, §20.42, §25.1)."""

from __future__ import annotations

import dataclasses

import pytest

from sipstack.errors import SipParseError
from sipstack.uri import AbsoluteUri, NameAddr, SipUri, TelUri, Via, parse_uri


class TestSipUri:
    def test_parts_of_a_full_uri(self) -> None:
        uri = SipUri.parse("sip:alice:secret@Atlanta.Example.COM:5070;transport=TCP;lr"
                           "?subject=project%20x&priority=urgent")
        assert uri.scheme == "sip"
        assert uri.user == "alice"
        assert uri.password == "secret"
        assert uri.host == "atlanta.example.com"  # host names compare case-insensitively
        assert uri.port == 5070
        assert uri.params == {"transport": "TCP", "lr": None}
        assert list(uri.params) == ["transport", "lr"]
        assert uri.headers == {"subject": "project x", "priority": "urgent"}
        assert uri.transport == "tcp"

    def test_round_trip_is_canonical(self) -> None:
        text = "sip:alice@atlanta.example.com;transport=tcp;lr?subject=project%20x"
        assert str(SipUri.parse(text)) == text

    def test_scheme_is_case_insensitive(self) -> None:
        assert SipUri.parse("SIPS:bob@biloxi.example.com").scheme == "sips"

    def test_user_is_unescaped_and_reescaped(self) -> None:
        uri = SipUri.parse("sip:%61lice%20smith@example.com")
        assert uri.user == "alice smith"
        assert str(uri) == "sip:alice%20smith@example.com"
        assert SipUri.parse(str(uri)) == uri

    def test_escaped_null_does_not_shorten_the_user(self) -> None:
        # RFC 4475 §3.1.1.4 (escnull)
        uri = SipUri.parse("sip:null-%00-null@example.com")
        assert uri.user == "null-\x00-null"
        assert str(uri) == "sip:null-%00-null@example.com"

    def test_user_may_contain_semicolons(self) -> None:
        # RFC 4475 §3.1.1.9 (semiuri): the ";" before "@" belong to the user part.
        uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
        assert uri.user == "user;par=u@example.net"
        assert uri.host == "example.com"
        assert uri.params == {}

    def test_telephone_subscriber_user_part(self) -> None:
        uri = SipUri.parse("sip:+1-212-555-1212:1234@gateway.com;user=phone")
        assert uri.user == "+1-212-555-1212"
        assert uri.password == "1234"
        assert uri.params["user"] == "phone"

    def test_ipv6_host(self) -> None:
        uri = SipUri.parse("sip:alice@[2001:DB8::10]:5060;maddr=[2001:db8::20]")
        assert uri.host == "2001:db8::10"
        assert uri.port == 5060
        assert uri.host_port == "[2001:db8::10]:5060"
        assert str(uri) == "sip:alice@[2001:db8::10]:5060;maddr=[2001:db8::20]"

    def test_host_port_without_port(self) -> None:
        assert SipUri.parse("sip:[::1]").host_port == "[::1]"
        assert SipUri.parse("sip:example.com").host_port == "example.com"

    def test_default_transport(self) -> None:
        assert SipUri.parse("sip:a@b.example").transport == "udp"
        assert SipUri.parse("sips:a@b.example").transport == "tls"
        assert SipUri.parse("sip:a@b.example;transport=WS").transport == "ws"

    def test_aor_drops_parameters(self) -> None:
        uri = SipUri.parse("sip:Alice@Example.COM:5080;transport=tcp?x=y")
        assert uri.aor == "sip:Alice@example.com:5080"

    @pytest.mark.parametrize("text", [
        "sip:",
        "sip:alice@",
        "sip:alice@exa mple.com",
        "sip:alice@[::1",
        "sip:alice@[zz::1]",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:port",
        "sip:alice@example.com;;lr",
        "sip:alice@example.com;ttl=300",
        "sip:alice@example.com?subject",
        "sip:al<ice@example.com",
        "sip:alice@300.1.1.1",
        "sip:alice@1.2.3.256",
        "sip:alice@example.com;ttl=" + "9" * 5000,
        "sip:alice%2@example.com",
        "http://example.com",
    ])
    def test_malformed(self, text: str) -> None:
        with pytest.raises(SipParseError) as info:
            SipUri.parse(text)
        assert info.value.status == 400

    def test_hashable_and_replaceable(self) -> None:
        a = SipUri.parse("sip:alice@example.com;lr")
        b = SipUri.parse("sip:alice@EXAMPLE.com;lr")
        assert a == b
        assert hash(a) == hash(b)
        assert len({a, b}) == 1
        c = dataclasses.replace(a, port=5062)
        assert str(c) == "sip:alice@example.com:5062;lr"
        assert a.port is None


class TestUriComparison:
    """RFC 3261 §19.1.4, including its examples."""

    @pytest.mark.parametrize(("a", "b"), [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
        ("sip:alice@[2001:db8::1]", "sip:alice@[2001:DB8:0::1]"),
    ])
    def test_equivalent(self, a: str, b: str) -> None:
        assert SipUri.parse(a).equivalent(SipUri.parse(b))
        assert SipUri.parse(b).equivalent(SipUri.parse(a))

    @pytest.mark.parametrize(("a", "b"), [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ])
    def test_not_equivalent(self, a: str, b: str) -> None:
        assert not SipUri.parse(a).equivalent(SipUri.parse(b))
        assert not SipUri.parse(b).equivalent(SipUri.parse(a))


class TestTelAndOtherSchemes:
    def test_global_number(self) -> None:
        uri = TelUri.parse("tel:+1-201-555-0123;ext=1234")
        assert uri.number == "+1-201-555-0123"
        assert uri.params == {"ext": "1234"}
        assert uri.digits == "+12015550123"
        assert str(uri) == "tel:+1-201-555-0123;ext=1234"

    def test_local_number_with_context(self) -> None:
        uri = TelUri.parse("tel:7042;phone-context=example.com")
        assert uri.number == "7042"
        assert uri.params["phone-context"] == "example.com"

    def test_tel_comparison_ignores_visual_separators(self) -> None:
        assert TelUri.parse("tel:+1-201-555-0123").equivalent(TelUri.parse("tel:+1(201)5550123"))
        assert not TelUri.parse("tel:+12015550123").equivalent(TelUri.parse("tel:+12015550124"))

    @pytest.mark.parametrize("text", ["tel:", "tel:+", "tel:+1 201", "tel:abc-xyz"])
    def test_malformed_tel(self, text: str) -> None:
        with pytest.raises(SipParseError):
            TelUri.parse(text)

    def test_parse_uri_dispatches_on_scheme(self) -> None:
        assert isinstance(parse_uri("sip:a@b.example"), SipUri)
        assert isinstance(parse_uri("SIPS:a@b.example"), SipUri)
        assert isinstance(parse_uri("tel:+15551234"), TelUri)
        other = parse_uri("soap.beep://192.0.2.103:3002")
        assert other == AbsoluteUri("soap.beep", "soap.beep://192.0.2.103:3002")
        assert str(other) == "soap.beep://192.0.2.103:3002"
        assert isinstance(parse_uri("urn:service:sos"), AbsoluteUri)

    @pytest.mark.parametrize("text", ["", "nocolon", "1abc:foo", "http:", "http://a b", "x:<y>"])
    def test_parse_uri_rejects_garbage(self, text: str) -> None:
        with pytest.raises(SipParseError):
            parse_uri(text)


class TestNameAddr:
    def test_quoted_display_name_with_escapes(self) -> None:
        addr = NameAddr.parse(r'"Alice \"Al\" Smith" <sip:alice@atlanta.example.com>;tag=1928301774')
        assert addr.display_name == 'Alice "Al" Smith'
        assert addr.tag == "1928301774"
        assert str(addr) == r'"Alice \"Al\" Smith" <sip:alice@atlanta.example.com>;tag=1928301774'

    def test_token_display_name(self) -> None:
        addr = NameAddr.parse("Bob  Smith<sip:bob@biloxi.example.com>")
        assert addr.display_name == "Bob Smith"
        assert str(addr) == "Bob Smith <sip:bob@biloxi.example.com>"

    def test_utf8_display_name_round_trips(self) -> None:
        addr = NameAddr.parse('"张三" <sip:zhang@example.cn>;tag=9')
        assert addr.display_name == "张三"
        again = NameAddr.parse(str(addr))
        assert again.display_name == "张三"
        assert again == addr
        # Sent unquoted by some user agents: accepted, written back quoted.
        assert NameAddr.parse("张三 <sip:zhang@example.cn>").display_name == "张三"

    def test_empty_quoted_display_name(self) -> None:
        addr = NameAddr.parse('"" <sip:anonymous@anonymous.invalid>')
        assert addr.display_name == ""
        assert str(addr) == '"" <sip:anonymous@anonymous.invalid>'

    def test_addr_spec_params_belong_to_the_header(self) -> None:
        # RFC 3261 §20.10: without <>, parameters after the URI are header parameters.
        addr = NameAddr.parse("sip:alice@atlanta.example.com;tag=88sja8x")
        assert addr.tag == "88sja8x"
        assert isinstance(addr.uri, SipUri)
        assert addr.uri.params == {}
        assert str(addr) == "<sip:alice@atlanta.example.com>;tag=88sja8x"

    def test_uri_params_stay_inside_brackets(self) -> None:
        addr = NameAddr.parse("<sip:alice@pc33.example.com;transport=tcp>;expires=3600;q=0.7")
        assert isinstance(addr.uri, SipUri)
        assert addr.uri.params == {"transport": "tcp"}
        assert addr.params == {"expires": "3600", "q": "0.7"}

    def test_quoted_param_value_is_kept_verbatim(self) -> None:
        text = '<sip:a@b.example>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1'
        addr = NameAddr.parse(text)
        assert addr.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
        assert str(addr) == text

    def test_addr_spec_with_quoted_angle_brackets_in_a_parameter(self) -> None:
        addr = NameAddr.parse('sip:a@b.example;+sip.instance="<urn:uuid:1>";expires=60')
        assert str(addr.uri) == "sip:a@b.example"
        assert addr.params == {"+sip.instance": '"<urn:uuid:1>"', "expires": "60"}

    def test_control_characters_in_display_name_round_trip(self) -> None:
        addr = NameAddr(SipUri(host="example.com"), "BEL:\x07 NUL:\x00 \"q\" \\")
        text = str(addr)
        assert text == '"BEL:\\\x07 NUL:\\\x00 \\"q\\" \\\\" <sip:example.com>'
        assert NameAddr.parse(text).display_name == addr.display_name
        # CR and LF cannot be quoted-pairs: they are written as spaces.
        assert str(NameAddr(SipUri(host="x.example"), "a\r\nb")) == '"a  b" <sip:x.example>'

    def test_tel_and_other_schemes(self) -> None:
        assert isinstance(NameAddr.parse("<tel:+15551234>").uri, TelUri)
        assert isinstance(NameAddr.parse("<urn:uuid:1234>").uri, AbsoluteUri)

    def test_parse_list_respects_quotes_and_brackets(self) -> None:
        value = ('"Doe, John" <sip:john@a.example;transport=tcp>;q=0.5, '
                 '<sip:x,y@b.example?h=a%2Cb>, sip:c@c.example;expires=60')
        addrs = NameAddr.parse_list(value)
        assert [a.display_name for a in addrs] == ["Doe, John", None, None]
        assert isinstance(addrs[1].uri, SipUri)
        assert addrs[1].uri.user == "x,y"
        assert addrs[1].uri.headers == {"h": "a,b"}
        assert addrs[2].params == {"expires": "60"}

    def test_each_parse_is_an_independent_copy(self) -> None:
        # Parses are cached by text (a phone repeats its From, To and Contact): changing one
        # result must not change what the next parse of the same text returns.
        text = "A <sip:a@b.example;transport=tcp>;tag=1"
        first = NameAddr.parse(text)
        assert isinstance(first.uri, SipUri)
        first.params["tag"] = "changed"
        first.uri.params["lr"] = None
        first.display_name = "B"
        again = NameAddr.parse(text)
        assert str(again) == text and again is not first
        assert NameAddr.parse_shared(text) == again
        assert NameAddr.parse_shared(text) is NameAddr.parse_shared(text)

    @pytest.mark.parametrize("text", [
        "",
        '"unterminated <sip:a@b.example>',
        "<sip:a@b.example",
        "Bell, Alexander <sip:a.g.bell@bell-tel.com>",
        "<sip:a@b.example>;;;",
        "<sip:a@b.example>;tag",  # fine: a flag parameter
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "<sip:user@example.com >",
        '"x" sip:a@b.example',
    ])
    def test_malformed(self, text: str) -> None:
        if text == "<sip:a@b.example>;tag":
            assert NameAddr.parse(text).params == {"tag": None}
            return
        with pytest.raises(SipParseError) as info:
            NameAddr.parse(text)
        assert info.value.status == 400


class TestVia:
    def test_parts(self) -> None:
        via = Via.parse("SIP/2.0/UDP pc33.atlanta.example.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1")
        assert via.protocol == "SIP/2.0"
        assert via.transport == "UDP"
        assert via.host == "pc33.atlanta.example.com"
        assert via.port == 5066
        assert via.branch == "z9hG4bK776asdhds"
        assert via.received == "192.0.2.1"
        assert via.rport is None and not via.has_rport

    def test_rport(self) -> None:
        assert Via.parse("SIP/2.0/UDP h.example;rport;branch=z9hG4bK1").has_rport
        via = Via.parse("SIP/2.0/UDP h.example;rport=5070;branch=z9hG4bK1")
        assert via.rport == 5070 and via.has_rport

    def test_lws_around_slashes_and_lowercase_transport(self) -> None:
        via = Via.parse("SIP / 2.0 / tcp [2001:db8::9]:5061 ; branch=z9hG4bKa")
        assert via.transport == "TCP"
        assert via.host == "2001:db8::9"
        assert via.port == 5061
        assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKa"

    @pytest.mark.parametrize(("spaced", "plain"), [
        ("SIP / 2.0 / udp h.example : 5060 ; branch = z9hG4bK1 ; rport",
         "SIP/2.0/UDP h.example:5060;branch=z9hG4bK1;rport"),
        ("SIP/2.0/UDP\th.example ;Branch=z9hG4bK1;BRANCH=x", "SIP/2.0/UDP h.example;branch=z9hG4bK1"),
        ("  SIP/2.0/TLS [::1]:5061;maddr=[::2];ttl=1  ", "SIP/2.0/TLS [::1]:5061;maddr=[::2];ttl=1"),
    ])
    def test_every_spelling_parses_to_the_same_via(self, spaced: str, plain: str) -> None:
        # The plain spelling takes a one-match path, the others the general one (§25.1 LWS).
        assert Via.parse(spaced) == Via.parse(plain)

    def test_round_trip_with_unknown_params(self) -> None:
        text = "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf;alias;x-foo=\"a b\""
        via = Via.parse(text)
        assert via.transport == "WSS"
        assert str(via) == text

    @pytest.mark.parametrize("text", [
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host;;,",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP [::1;branch=x",
        "SIP/2.0/UDP host;rport=" + "9" * 5000,
        "SIP/2.0/UDP host;rport=0",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP/x host",
        "SIP/2.0/UDP 01.2.3.4",
        "SIP/2.0/UDP a/b;branch=x",
    ])
    def test_malformed(self, text: str) -> None:
        with pytest.raises(SipParseError):
            Via.parse(text)
