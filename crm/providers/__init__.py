"""Delivery of SMS and e-mail, behind one small interface.

`crm.messaging` keeps the outbox (what to send, to whom, how often it was tried); a provider
only hands one rendered message to the outside world and says how that went:

- it returns the provider's reference for the message (a gateway message id, an SMTP queue id);
- it raises `DeliveryError(permanent=True)` when retrying cannot help (a refused recipient, a
  rejected signature, a 4xx from a gateway) and `DeliveryError(permanent=False)` when it can (a
  timeout, a connection refused, an SMTP 4xx, an HTTP 5xx).

Implementations: `smtp.SmtpProvider` (aiosmtplib), `http_sms.HttpSmsProvider` (an HTTP gateway
with HMAC-SHA256 signed requests), `local.LocalProvider` (keeps messages on this machine; the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


@dataclass(frozen=True)
class OutgoingMessage:
    #: The outbox row's id: providers pass it on as the client reference, so a retried message can
    #: be recognised by a gateway that deduplicates.
    id: int
    channel: Channel
    #: E.164 for SMS, an address for e-mail.
    recipient: str
    subject: str | None
    body: str


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Provider(Protocol):
    #: Recorded on each outbox row it delivered.
    name: str

    async def send(self, message: OutgoingMessage) -> str:
        """Deliver one message; return the provider's reference or raise DeliveryError."""
        ...
