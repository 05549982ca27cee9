"""邮件服务器设置: the SMTP relay e-mail goes out through, kept in the site settings so an
administrator sets it on the web page, and the e-mail provider that reads it.

`ConfiguredSmtpProvider` looks the relay up for every message, so a change applies to the next
delivery without a restart; with no relay configured e-mail stays in the outbox as in the demo
(`LocalProvider`). Relay authentication is not kept here (a password in the settings table
would travel in every backup): sites whose relay needs a login configure `SmtpProvider` at the
composition root instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock
from crm.db import Database
from crm.errors import ValidationError
from crm.providers import OutgoingMessage
from crm.providers.local import LocalProvider
from crm.providers.smtp import SmtpProvider

_KEYS = ("smtp.host", "smtp.port", "smtp.sender", "smtp.sender_name", "smtp.security")


class SmtpSecurity(StrEnum):
    NONE = "none"  # plain SMTP on a trusted network (the site's own relay, a test server)
    STARTTLS = "starttls"  # RFC 3207 upgrade, required (port 587)
    TLS = "tls"  # implicit TLS (port 465, RFC 8314)


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    sender: str
    sender_name: str | None
    security: SmtpSecurity


class MailSettingsService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def get(self) -> MailSettings | None:
        rows = await self.db.fetch_all(
            f"SELECT key, value FROM settings WHERE key IN ({', '.join('?' for _ in _KEYS)})", _KEYS)
        values = {r["key"]: r["value"] for r in rows}
        if not values.get("smtp.host") or not values.get("smtp.sender"):
            return None
        return MailSettings(values["smtp.host"], int(values.get("smtp.port") or 25), values["smtp.sender"],
                            values.get("smtp.sender_name") or None,
                            SmtpSecurity(values.get("smtp.security") or "none"))  # fmt: skip

    async def put(
        self, actor: Actor, host: str, port: int, sender: str, *, sender_name: str | None = None,
        security: SmtpSecurity | str = SmtpSecurity.NONE,
    ) -> MailSettings | None:  # fmt: skip
        """Set the relay; an empty host removes it (e-mail then stays in the outbox)."""
        actor.require(access.SETTINGS_WRITE)
        host = common.text("host", host, max_length=253, required=False)
        if host and (any(c.isspace() for c in host) or "/" in host):
            raise ValidationError("host", f"{host!r} is not a host name or address", code="smtp.bad_host")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationError("port", "must be 1 to 65535", code="smtp.bad_port")
        checked_sender = common.email("sender", sender) if host else None
        if host and checked_sender is None:
            raise ValidationError("sender", "is required", code="field.required")
        name = common.optional_text("sender_name", sender_name, max_length=64)
        mode = common.enum_value("security", SmtpSecurity, security)
        values = {"smtp.host": host, "smtp.port": str(port), "smtp.sender": checked_sender or "",
                  "smtp.sender_name": name or "", "smtp.security": mode.value}  # fmt: skip
        async with self.db.transaction() as tx:
            before = {r["key"]: r["value"] for r in await tx.fetch_all(
                f"SELECT key, value FROM settings WHERE key IN ({', '.join('?' for _ in _KEYS)})", _KEYS)}
            for key, value in values.items():
                await tx.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))  # fmt: skip
            await audit.record(tx, self.clock, actor, "setting", None, "update", before=before, after=values)
        return await self.get()


class ConfiguredSmtpProvider:
    """E-mail through the relay of the site settings, else kept locally (see the module docstring)."""

    def __init__(self, settings: MailSettingsService) -> None:
        self.settings = settings
        self.local = LocalProvider()
        self.name = "local"

    async def send(self, message: OutgoingMessage) -> str:
        config = await self.settings.get()
        if config is None:
            self.name = "local"
            return await self.local.send(message)
        self.name = "smtp"
        relay = SmtpProvider(config.host, config.port, config.sender, sender_name=config.sender_name,
                             use_tls=config.security is SmtpSecurity.TLS,
                             start_tls=True if config.security is SmtpSecurity.STARTTLS else False)  # fmt: skip
        return await relay.send(message)
