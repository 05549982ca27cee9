"""短信模版 / 邮件模版: message templates with {variables}, and their rendering.

Syntax: `{name}` is replaced by the variable's value; `{{` and `}}` are literal braces. Names
are lower-case identifiers. Nothing else is interpreted (no attribute access, no format specs):
a template is text an operator typed, not code. Saving a template checks its syntax; rendering
refuses a missing variable by name instead of sending "Dear {name}" to a member.

Member variables (filled by `crm.messaging` for each recipient): {name} 姓名, {points} 积分,
{level} 会员级别, {card_no} 卡号, {birthday} 生日, {appointment_time} the member's next booked
appointment (site time, `YYYY-MM-DD HH:MM`), and {today}, the site's date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crm import access, audit, common
from crm.access import Actor
from crm.clock import Clock, to_iso
from crm.db import Database, Transaction
from crm.dictionaries import check_code
from crm.errors import NotFound, ValidationError
from crm.providers import Channel

MEMBER_VARIABLES = frozenset({"name", "points", "level", "card_no", "birthday", "appointment_time", "today"})
#: Longest SMS body: seven concatenated segments of 70 UCS-2 characters (3GPP TS 23.040 allows
#: 255 segments; carriers and budgets do not).
MAX_SMS_CHARS = 490
MAX_EMAIL_CHARS = 100_000
MAX_SUBJECT = 200

_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_][a-z0-9_]{0,31})\}|[{}]")


@dataclass(frozen=True)
class Template:
    id: int
    code: str
    channel: Channel
    name: str
    subject: str | None
    body: str
    active: bool
    variables: tuple[str, ...]
    updated_at: str


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


def variables_of(text: str, *, field: str = "body") -> list[str]:
    """The variable names `text` uses, in order of first use; ValidationError on a stray brace."""
    names: dict[str, None] = {}
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise ValidationError(field, f"stray {token!r} at {match.start()}: write {{{{ or }}}} for a brace, "
                                  "{name} for a variable", code="template.syntax")  # fmt: skip
        names.setdefault(match.group(1), None)
    return list(names)


def render(text: str, values: Mapping[str, Any], *, field: str = "body") -> str:
    """`text` with its variables replaced; ValidationError naming every variable without a value."""
    missing = [name for name in variables_of(text, field=field) if values.get(name) is None]
    if missing:
        raise ValidationError(field, f"no value for {', '.join('{' + m + '}' for m in missing)}",
                              code="template.missing_variable")  # fmt: skip

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return str(values[match.group(1)])

    return _TOKEN.sub(substitute, text)


def render_template(template: Template, values: Mapping[str, Any]) -> Rendered:
    subject = render(template.subject, values, field="subject") if template.subject is not None else None
    body = render(template.body, values)
    limit = MAX_SMS_CHARS if template.channel is Channel.SMS else MAX_EMAIL_CHARS
    if len(body) > limit:
        raise ValidationError("body", f"the rendered {template.channel.value} is longer than {limit} characters",
                              code="template.too_long")  # fmt: skip
    return Rendered(subject, body)


def _template(row: dict[str, Any]) -> Template:
    channel = Channel(row["channel"])
    used = variables_of(row["body"]) + (variables_of(row["subject"], field="subject") if row["subject"] else [])
    return Template(row["id"], row["code"], channel, row["name"], row["subject"], row["body"], bool(row["active"]),
                    tuple(dict.fromkeys(used)), row["updated_at"])  # fmt: skip


class TemplateService:
    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self.db = db
        self.clock = clock or Clock()

    async def put(
        self,
        actor: Actor,
        code: str,
        *,
        channel: Channel | str,
        name: str,
        body: str,
        subject: str | None = None,
        active: bool = True,
    ) -> Template:
        """Create or replace the template `code` (e.g. `birthday`, `new_service`)."""
        actor.require(access.TEMPLATE_WRITE)
        check_code("code", code)
        kind = common.enum_value("channel", Channel, channel)
        name = common.text("name", name, max_length=64)
        body = common.text("body", body, max_length=MAX_SMS_CHARS if kind is Channel.SMS else MAX_EMAIL_CHARS)
        variables_of(body)
        if kind is Channel.EMAIL:
            subject = common.text("subject", subject, max_length=MAX_SUBJECT)
            variables_of(subject, field="subject")
        elif subject is not None and subject != "":
            raise ValidationError("subject", "an SMS has no subject")
        else:
            subject = None
        if not isinstance(active, bool):
            raise ValidationError("active", "must be true or false")
        async with self.db.transaction() as tx:
            before_row = await tx.fetch_one("SELECT * FROM message_templates WHERE code = ?", (code,))
            now = to_iso(self.clock.now())
            if before_row is None:
                await tx.execute(
                    "INSERT INTO message_templates (code, channel, name, subject, body, active, created_by, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (code, kind.value, name, subject, body, int(active), actor.user_id, now, now),
                )
            else:
                await tx.execute(
                    "UPDATE message_templates SET channel = ?, name = ?, subject = ?, body = ?, active = ?, updated_at = ?"
                    " WHERE code = ?",
                    (kind.value, name, subject, body, int(active), now, code),
                )
            after = await self.load(tx, code)
            await audit.record(tx, self.clock, actor, "message_template", after.id, "update" if before_row else "create",
                               before=_template(before_row) if before_row else None, after=after)  # fmt: skip
        return after

    async def get(self, actor: Actor, code: str) -> Template:
        actor.require(access.MESSAGE_READ)
        async with self.db.reading() as r:
            return await self.load(r, code)

    async def list(self, actor: Actor, *, channel: Channel | str | None = None, active_only: bool = False) -> list[Template]:
        actor.require(access.MESSAGE_READ)
        where, params = ["1 = 1"], []
        if channel is not None:
            where.append("channel = ?")
            params.append(common.enum_value("channel", Channel, channel).value)
        if active_only:
            where.append("active = 1")
        rows = await self.db.fetch_all(f"SELECT * FROM message_templates WHERE {' AND '.join(where)} ORDER BY code", params)
        return [_template(r) for r in rows]

    @staticmethod
    async def load(tx: Transaction, code: str) -> Template:
        row = await tx.fetch_one("SELECT * FROM message_templates WHERE code = ?", (code,))
        if row is None:
            raise NotFound(f"template {code!r} does not exist", code="template.not_found")
        return _template(row)
