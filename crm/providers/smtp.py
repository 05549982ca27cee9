"""E-mail through an SMTP relay (the site's mail server or a mail service), with aiosmtplib.

Failure classes follow the reply codes of RFC 5321 §4.2.1: a 5yz reply is a permanent
negative completion (bad address, refused sender, message rejected) and retrying cannot help;
a 4yz reply is transient (mailbox busy, greylisting), as are timeouts and refused connections.
The Message-ID we generate is the reference kept in the outbox (RFC 5322 §3.6.4).
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage

import aiosmtplib

from crm.providers import DeliveryError, OutgoingMessage

#: Seconds for the whole exchange with the relay; a relay slower than this is treated as down.
DEFAULT_TIMEOUT = 30.0


class SmtpProvider:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        sender_name: str | None = None,
    ) -> None:
        """`use_tls`: implicit TLS (port 465, RFC 8314); `start_tls`: None upgrades when the
        server offers STARTTLS, True requires it, False never tries."""
        if "@" not in sender:
            raise ValueError(f"sender {sender!r} is not an e-mail address")
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_name = sender_name
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout = timeout

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = email.utils.formataddr((self.sender_name, self.sender)) if self.sender_name else self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject or ""
        mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = email.utils.make_msgid(idstring=f"outbox{message.id}", domain=self.sender.split("@", 1)[1])
        mail.set_content(message.body, charset="utf-8")
        return mail

    async def send(self, message: OutgoingMessage) -> str:
        mail = self.build(message)
        try:
            await aiosmtplib.send(
                mail, hostname=self.host, port=self.port, username=self.username, password=self.password,
                use_tls=self.use_tls, start_tls=self.start_tls, timeout=self.timeout,
            )  # fmt: skip
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(f"recipient refused: {exc}", permanent=all(c >= 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"SMTP relay {self.host}:{self.port} unavailable: {exc}", permanent=False) from exc
        return str(mail["Message-ID"])
