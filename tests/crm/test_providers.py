"""Providers against real peers on 127.0.0.1: an aiosmtpd SMTP server and a local HTTP SMS gateway."""

from __future__ import annotations

import email
import email.policy
import socket

import pytest

from crm.providers import Channel, DeliveryError, OutgoingMessage
from crm.providers.http_sms import HttpSmsProvider, sign
from crm.providers.local import LocalProvider
from crm.providers.smtp import SmtpProvider

MAIL = OutgoingMessage(7, Channel.EMAIL, "member@example.com", "生日快乐", "亲爱的杨柳：\n祝您生日快乐！\n")
SMS = OutgoingMessage(8, Channel.SMS, "+8613800138000", None, "【美颜连锁】杨柳您好，您预约的光子嫩肤在明天10:00。")


async def test_smtp_delivers_a_chinese_message(smtp_server) -> None:
    host, port, sink = smtp_server
    provider = SmtpProvider(host, port, "service@example.com", sender_name="美颜连锁客服")
    reference = await provider.send(MAIL)
    assert len(sink.messages) == 1
    envelope = sink.messages[0]
    assert envelope.mail_from == "service@example.com" and envelope.rcpt_tos == ["member@example.com"]
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert parsed["Subject"] == "生日快乐" and parsed["Message-ID"] == reference
    # RFC 5322 §2.3: lines end in CRLF on the wire
    assert parsed.get_content().replace("\r\n", "\n") == MAIL.body and "美颜连锁客服" in parsed["From"]


async def test_smtp_failures_are_classified_by_reply_code(smtp_server) -> None:
    host, port, sink = smtp_server
    provider = SmtpProvider(host, port, "service@example.com")
    sink.replies.append("451 4.3.0 Mailbox busy, try later")
    with pytest.raises(DeliveryError) as transient:
        await provider.send(MAIL)
    assert not transient.value.permanent
    sink.replies.append("550 5.1.1 No such user")
    with pytest.raises(DeliveryError) as permanent:
        await provider.send(MAIL)
    assert permanent.value.permanent
    assert sink.messages == []


async def test_smtp_relay_down_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as down:
        await SmtpProvider("127.0.0.1", port, "service@example.com", timeout=5).send(MAIL)
    assert not down.value.permanent


async def test_http_gateway_gets_a_signed_request(sms_gateway) -> None:
    provider = HttpSmsProvider(sms_gateway.url, "key-1", "gateway-secret", clock=lambda: 1_795_000_000.0)
    reference = await provider.send(SMS)
    assert reference == "gw-1"
    assert sms_gateway.accepted == [{"to": "+8613800138000", "text": SMS.body, "ref": "outbox-8"}]
    body, headers = provider.request_parts(SMS)
    assert headers["X-Timestamp"] == "1795000000" and headers["X-Signature"] == sign(b"gateway-secret", "1795000000", body)


async def test_http_gateway_answers_are_classified(sms_gateway) -> None:
    provider = HttpSmsProvider(sms_gateway.url, "key-1", "gateway-secret")
    for status, permanent in ((503, False), (429, False), (400, True)):
        sms_gateway.statuses.append(status)
        with pytest.raises(DeliveryError) as err:
            await provider.send(SMS)
        assert err.value.permanent is permanent, status
    wrong_key = HttpSmsProvider(sms_gateway.url, "key-1", "not-the-secret")
    with pytest.raises(DeliveryError) as bad_signature:
        await wrong_key.send(SMS)
    assert bad_signature.value.permanent and sms_gateway.rejected_signatures == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as down:
        await HttpSmsProvider(f"http://127.0.0.1:{port}/", "k", "s", timeout=5).send(SMS)
    assert not down.value.permanent
    with pytest.raises(ValueError):
        HttpSmsProvider("ftp://gateway", "k", "s")


async def test_local_provider_keeps_messages_here() -> None:
    local = LocalProvider()
    assert await local.send(SMS) == "local-8"
    assert list(local.delivered) == [SMS]
