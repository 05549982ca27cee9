"""短信发送 / 邮件发送: the outbox, bulk sends, scheduled greetings, and delivery with retries.

Nothing is sent inside a service call: sending queues a rendered message in `outbox`, and
`deliver_due` (run every few seconds by the scheduler) hands due messages to the channel's
provider. So a slow SMTP relay never holds a database transaction, a crash never loses a queued
message, and retries follow one rule:

- delivery claims a message by pushing its `next_attempt_at` out by the backoff (60 s, doubling,
  at most an hour) before sending, so a crash mid-send retries it later rather than never;
- success marks it `sent`; a permanent error, or the `MAX_ATTEMPTS`th transient one, `failed`.

Greetings (生日祝福, 节日问候) are queued by `run_due_greetings(today)`, which the scheduler calls
once a day (calling it again the same day queues nothing twice: each greeting carries a key of
member and day). Bulk sends (群发) go to the members of a member-search filter, skipping those on
the blacklist, those who opted out of the channel (退订), and those without a mobile (SMS) or
e-mail address; greetings skip the same members.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from crm import access, audit, common, scopes
from crm.access import Actor
from crm.clock import Clock, from_iso, to_iso
from crm.db import Database, Transaction
from crm.errors import InvalidTransition, NotFound, ValidationError
from crm.phones import PhoneNormaliser
from crm.providers import Channel, DeliveryError, OutgoingMessage, Provider
from crm.providers.local import LocalProvider
from crm.templates import MEMBER_VARIABLES, Template, TemplateService, render, render_template, variables_of

if TYPE_CHECKING:
    from crm.members import MemberQuery, MemberService

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 60
RETRY_MAX_SECONDS = 3600
#: One bulk send is one transaction; larger mailings are split by level, tag or owner.
MAX_BULK_RECIPIENTS = 50_000
#: Greetings go out in transactions of this many members, so a holiday greeting to every member
#: never holds the database for long (and a crash midway resumes: keys skip what is queued).
GREETING_CHUNK = 2000
BIRTHDAY_TEMPLATE_KEY = "greeting.birthday_template"
MAX_VARIABLE_LENGTH = 200


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    channel: Channel
    recipient: str
    member_id: int | None
    template_code: str | None
    batch_id: int | None
    subject: str | None
    body: str
    status: MessageStatus
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    provider: str | None
    provider_ref: str | None
    created_by: int | None
    created_at: str
    sent_at: str | None


@dataclass(frozen=True)
class BulkResult:
    batch_id: int
    queued: int
    #: Blacklisted, without a contact for the channel, or without a value a variable needs.
    skipped: int


@dataclass(frozen=True)
class PreviewMessage:
    member_id: int
    member_name: str
    recipient: str
    subject: str | None
    body: str


@dataclass(frozen=True)
class BulkPreview:
    """What a bulk send would do now, without queuing anything."""

    matched: int
    ready: int
    blacklisted: int
    opted_out: int
    #: Without a mobile / e-mail address, or without a value one of the template's variables needs.
    unreachable: int
    #: The rendered messages of the first recipients.
    samples: list[PreviewMessage]


@dataclass(frozen=True)
class GreetingRun:
    day: str
    birthday: int
    holiday: int


@dataclass(frozen=True)
class DeliveryRun:
    sent: int
    retrying: int
    failed: int


@dataclass(frozen=True)
class GreetingDay:
    id: int
    day: str
    name: str
    template_code: str
    active: bool


def backoff_seconds(attempts: int) -> int:
    """Wait after the `attempts`th try: 60 s, 120 s, 240 s, ... at most an hour."""
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def _message(row: dict[str, Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row["id"], channel=Channel(row["channel"]), recipient=row["recipient"], member_id=row["member_id"],
        template_code=row["template_code"], batch_id=row["batch_id"], subject=row["subject"], body=row["body"],
        status=MessageStatus(row["status"]), attempts=row["attempts"], next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"], provider=row["provider"], provider_ref=row["provider_ref"],
        created_by=row["created_by"], created_at=row["created_at"], sent_at=row["sent_at"],
    )  # fmt: skip


# Its one parameter, first of every query built on it, is "now": {appointment_time} is the next
# booked appointment from then on. The opt-out flags are per channel (退订, crm.opt_outs).
_RECIPIENT_SQL = (
    "SELECT m.id, m.name, m.card_no, m.points_balance, m.birthday, m.email, m.blacklisted, l.name AS level_name,"
    " (SELECT p.e164 FROM member_phones p WHERE p.member_id = m.id AND p.kind = 'mobile'"
    "  ORDER BY p.is_primary DESC, p.e164 LIMIT 1) AS mobile,"
    " (SELECT MIN(a.starts_at) FROM appointments a WHERE a.member_id = m.id AND a.status = 'booked'"
    "  AND a.starts_at >= ?) AS next_appointment,"
    " EXISTS (SELECT 1 FROM message_opt_outs o WHERE o.member_id = m.id AND o.channel = 'sms') AS opted_out_sms,"
    " EXISTS (SELECT 1 FROM message_opt_outs o WHERE o.member_id = m.id AND o.channel = 'email') AS opted_out_email"
    " FROM members m LEFT JOIN member_levels l ON l.code = m.level_code"
)


class MessagingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        members: MemberService,
        templates: TemplateService,
        providers: Mapping[Channel, Provider] | None = None,
        phones: PhoneNormaliser | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.members = members
        self.templates = templates
        local = LocalProvider()
        self.providers: dict[Channel, Provider] = dict(providers) if providers is not None else {c: local for c in Channel}
        self.phones = phones or PhoneNormaliser()

    # -- queuing ------------------------------------------------------------------------------------
    async def send_to_member(
        self, actor: Actor, template_code: str, member_id: int, *, variables: Mapping[str, Any] | None = None
    ) -> OutboxMessage:
        """Queue the template for one member; ValidationError if they lack the contact or a value."""
        actor.require(access.MESSAGE_SEND)
        extra = self._extra(variables)
        async with self.db.transaction() as tx:
            await scopes.require_member(tx, actor, member_id)
            template = await self._active_template(tx, template_code)
            row = await tx.fetch_one(f"{_RECIPIENT_SQL} WHERE m.id = ?", (self._now(), member_id))
            assert row is not None
            recipient = self._contact(template.channel, row)
            if recipient is None:
                what = "mobile number" if template.channel is Channel.SMS else "e-mail address"
                raise ValidationError("member_id", f"member {member_id} has no {what}", code="message.no_contact")
            rendered = render_template(template, {**extra, **self._member_values(row)})
            message = await self._queue(tx, actor, template.channel, recipient, rendered.subject, rendered.body,
                                        member_id=member_id, template_code=template.code)  # fmt: skip
            await audit.record(tx, self.clock, actor, "outbox", message.id, "queue", after=message)
        return message

    async def send_direct(
        self, actor: Actor, channel: Channel | str, recipient: str, body: str, *, subject: str | None = None
    ) -> OutboxMessage:
        """自定义短信/邮件: free text to a number or address."""
        actor.require(access.MESSAGE_SEND)
        kind = common.enum_value("channel", Channel, channel)
        if kind is Channel.SMS:
            address = self.phones.normalise(recipient, field="recipient").e164
            body = common.text("body", body, max_length=490)
            subject = None
        else:
            address = common.email("recipient", recipient)
            if address is None:
                raise ValidationError("recipient", "is required", code="field.required")
            body = common.text("body", body, max_length=100_000)
            subject = common.text("subject", subject, max_length=200)
        async with self.db.transaction() as tx:
            member_id = await tx.fetch_value(
                "SELECT member_id FROM member_phones WHERE e164 = ? ORDER BY member_id LIMIT 1" if kind is Channel.SMS
                else "SELECT id FROM members WHERE email = ? ORDER BY id LIMIT 1", (address,),
            )  # fmt: skip
            message = await self._queue(tx, actor, kind, address, subject, body, member_id=member_id)
            await audit.record(tx, self.clock, actor, "outbox", message.id, "queue", after=message)
        return message

    async def send_bulk(
        self, actor: Actor, template_code: str, query: MemberQuery, *, variables: Mapping[str, Any] | None = None,
        birthday_month: int | None = None,
    ) -> BulkResult:  # fmt: skip
        """群发: the template to every member of the filter (see the module docstring for who is
        skipped); `birthday_month` (1-12) narrows it to members born in that month."""
        actor.require(access.MESSAGE_BULK)
        actor.require(access.MEMBER_READ)
        extra = self._extra(variables)
        condition, params = self._audience(actor, query, birthday_month)
        async with self.db.transaction() as tx:
            template = await self._active_template(tx, template_code)
            unknown = [v for v in template.variables if v not in MEMBER_VARIABLES and v not in extra]
            if unknown:
                raise ValidationError("variables", f"no value for {', '.join(unknown)}", code="template.missing_variable")
            rows = await tx.fetch_all(f"{_RECIPIENT_SQL} WHERE {condition} ORDER BY m.id LIMIT ?",
                                      [self._now(), *params, MAX_BULK_RECIPIENTS + 1])  # fmt: skip
            if len(rows) > MAX_BULK_RECIPIENTS:
                raise ValidationError("query", f"more than {MAX_BULK_RECIPIENTS} members match: narrow the filter",
                                      code="message.too_many")  # fmt: skip
            now = to_iso(self.clock.now())
            batch_id = await tx.insert(
                "INSERT INTO message_batches (template_code, filter_json, queued, skipped, created_by, created_at)"
                " VALUES (?, ?, 0, 0, ?, ?) RETURNING id",
                (template.code, json.dumps({k: v for k, v in {**asdict(query), "birthday_month": birthday_month}.items()
                                            if v is not None}, ensure_ascii=False), actor.user_id, now),
            )  # fmt: skip
            batch = [self._prepare(template, row, extra) for row in rows if not row["blacklisted"]]
            ready = [b for b in batch if b is not None]
            await tx.execute_many(
                "INSERT INTO outbox (channel, recipient, member_id, template_code, batch_id, subject, body, status,"
                " attempts, next_attempt_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
                [(template.channel.value, to, member_id, template.code, batch_id, subject, body, now, actor.user_id, now)
                 for member_id, to, subject, body in ready],
            )  # fmt: skip
            result = BulkResult(batch_id, len(ready), len(rows) - len(ready))
            await tx.execute("UPDATE message_batches SET queued = ?, skipped = ? WHERE id = ?",
                             (result.queued, result.skipped, batch_id))  # fmt: skip
            await audit.record(tx, self.clock, actor, "message_batch", batch_id, "queue", after=result)
        return result

    async def preview_bulk(
        self, actor: Actor, template_code: str, query: MemberQuery, *, variables: Mapping[str, Any] | None = None,
        birthday_month: int | None = None, sample: int = 5,
    ) -> BulkPreview:  # fmt: skip
        """The count and the first `sample` rendered messages a `send_bulk` with these arguments
        would queue, and why the others would be skipped."""
        actor.require(access.MESSAGE_BULK)
        actor.require(access.MEMBER_READ)
        extra = self._extra(variables)
        condition, params = self._audience(actor, query, birthday_month)
        if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= 50:
            raise ValidationError("sample", "must be 0 to 50")
        async with self.db.reading() as r:
            template = await self._active_template(r, template_code)
            unknown = [v for v in template.variables if v not in MEMBER_VARIABLES and v not in extra]
            if unknown:
                raise ValidationError("variables", f"no value for {', '.join(unknown)}", code="template.missing_variable")
            rows = await r.fetch_all(f"{_RECIPIENT_SQL} WHERE {condition} ORDER BY m.id LIMIT ?",
                                     [self._now(), *params, MAX_BULK_RECIPIENTS + 1])  # fmt: skip
        if len(rows) > MAX_BULK_RECIPIENTS:
            raise ValidationError("query", f"more than {MAX_BULK_RECIPIENTS} members match: narrow the filter",
                                  code="message.too_many")  # fmt: skip
        blacklisted = opted_out = unreachable = 0
        ready: list[PreviewMessage] = []
        count = 0
        for row in rows:
            if row["blacklisted"]:
                blacklisted += 1
                continue
            if row[f"opted_out_{template.channel.value}"]:
                opted_out += 1
                continue
            prepared = self._prepare(template, row, extra)
            if prepared is None:
                unreachable += 1
                continue
            count += 1
            if len(ready) < sample:
                member_id, to, subject, body = prepared
                ready.append(PreviewMessage(member_id, row["name"], to, subject, body))
        return BulkPreview(len(rows), count, blacklisted, opted_out, unreachable, ready)

    async def cancel(self, actor: Actor, message_id: int) -> OutboxMessage:
        actor.require(access.MESSAGE_SEND)
        async with self.db.transaction() as tx:
            before = await self._load(tx, message_id)
            if before.status is not MessageStatus.QUEUED:
                raise InvalidTransition(f"message {message_id} is {before.status.value}", code="message.not_queued")
            await tx.execute("UPDATE outbox SET status = 'cancelled' WHERE id = ?", (message_id,))
            after = await self._load(tx, message_id)
            await audit.record(tx, self.clock, actor, "outbox", message_id, "cancel", before=before, after=after)
        return after

    # -- greetings ----------------------------------------------------------------------------------
    async def put_greeting_day(self, actor: Actor, day: str, name: str, template_code: str, *, active: bool = True) -> GreetingDay:
        """A holiday: `day` 'MM-DD' every year, or 'YYYY-MM-DD' once (lunar holidays move)."""
        actor.require(access.TEMPLATE_WRITE)
        day = self._greeting_day(day)
        name = common.text("name", name, max_length=64)
        async with self.db.transaction() as tx:
            await TemplateService.load(tx, template_code)
            existing = await tx.fetch_value("SELECT id FROM greeting_days WHERE day = ? AND template_code = ?",
                                            (day, template_code))  # fmt: skip
            if existing is None:
                existing = await tx.insert(
                    "INSERT INTO greeting_days (day, name, template_code, active) VALUES (?, ?, ?, ?) RETURNING id",
                    (day, name, template_code, int(active)),
                )
            else:
                await tx.execute("UPDATE greeting_days SET name = ?, active = ? WHERE id = ?", (name, int(active), existing))
            greeting = GreetingDay(existing, day, name, template_code, active)
            await audit.record(tx, self.clock, actor, "greeting_day", existing, "update", after=greeting)
        return greeting

    async def greeting_days(self, actor: Actor) -> list[GreetingDay]:
        actor.require(access.MESSAGE_READ)
        rows = await self.db.fetch_all("SELECT * FROM greeting_days ORDER BY day, id")
        return [GreetingDay(r["id"], r["day"], r["name"], r["template_code"], bool(r["active"])) for r in rows]

    async def run_due_greetings(self, today: date) -> GreetingRun:
        """Queue today's birthday greetings (the template named by setting `greeting.birthday_template`)
        and holiday greetings. Members born on 29 February are greeted on the 28th in other years."""
        month_days = [today.strftime("%m-%d")]
        if today.month == 2 and today.day == 28 and not _is_leap(today.year):
            month_days.append("02-29")
        birthday = 0
        code = await self.db.fetch_value("SELECT value FROM settings WHERE key = ?", (BIRTHDAY_TEMPLATE_KEY,))
        if code:
            marks = ", ".join("?" for _ in month_days)
            birthday = await self._greet(code, f"m.birth_md IN ({marks})", month_days, f"birthday:{today.isoformat()}")
        holiday = 0
        days = await self.db.fetch_all("SELECT * FROM greeting_days WHERE active = 1 AND day IN (?, ?) ORDER BY id",
                                       (today.strftime("%m-%d"), today.isoformat()))  # fmt: skip
        for greeting in days:
            holiday += await self._greet(greeting["template_code"], "1 = 1", [],
                                         f"holiday:{today.isoformat()}:{greeting['template_code']}")  # fmt: skip
        log.info("greetings for %s: %d birthday, %d holiday", today, birthday, holiday)
        return GreetingRun(today.isoformat(), birthday, holiday)

    async def _greet(self, template_code: str, condition: str, params: list[Any], key: str) -> int:
        async with self.db.reading() as r:
            try:
                template: Template | None = await TemplateService.load(r, template_code)
            except NotFound:
                template = None
        if template is None or not template.active:
            log.warning("greeting template %r missing or inactive: nothing queued", template_code)
            return 0
        queued, last_id = 0, 0
        while True:
            async with self.db.transaction() as tx:
                rows = await tx.fetch_all(
                    f"{_RECIPIENT_SQL} WHERE {condition} AND m.blacklisted = 0 AND m.id > ? ORDER BY m.id LIMIT ?",
                    [self._now(), *params, last_id, GREETING_CHUNK],
                )
                if not rows:
                    return queued
                last_id = rows[-1]["id"]
                now = to_iso(self.clock.now())
                for prepared in (self._prepare(template, row, {}) for row in rows):
                    if prepared is None:
                        continue
                    member_id, to, subject, body = prepared
                    queued += await tx.execute(
                        "INSERT INTO outbox (channel, recipient, member_id, template_code, subject, body, status, attempts,"
                        " next_attempt_at, dedupe_key, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?,"
                        " NULL, ?) ON CONFLICT (dedupe_key) DO NOTHING",
                        (template.channel.value, to, member_id, template.code, subject, body, now,
                         f"{key}:{member_id}", now),
                    )  # fmt: skip

    # -- delivery -----------------------------------------------------------------------------------
    async def deliver_due(self, limit: int = 100) -> DeliveryRun:
        """Send up to `limit` due messages (the scheduler calls this every few seconds)."""
        if not 1 <= limit <= 1000:
            raise ValidationError("limit", "must be between 1 and 1000")
        now = self.clock.now()
        async with self.db.transaction() as tx:
            rows = await tx.fetch_all(
                "SELECT * FROM outbox WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                (to_iso(now), limit),
            )
            for row in rows:  # the lease: a crash before the result is recorded retries after the backoff
                row["attempts"] += 1
                await tx.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE id = ?",
                                 (row["attempts"], to_iso(now + timedelta(seconds=backoff_seconds(row["attempts"]))),
                                  row["id"]))  # fmt: skip
        sent = retrying = failed = 0
        for row in rows:
            message = _message(row)
            provider = self.providers.get(message.channel)
            try:
                if provider is None:
                    raise DeliveryError(f"no provider configured for {message.channel.value}", permanent=True)
                reference = await provider.send(OutgoingMessage(message.id, message.channel, message.recipient,
                                                                message.subject, message.body))  # fmt: skip
            except DeliveryError as exc:
                final = exc.permanent or message.attempts >= MAX_ATTEMPTS
                await self.db.execute(
                    "UPDATE outbox SET status = ?, last_error = ?, provider = ? WHERE id = ? AND status = 'queued'",
                    ("failed" if final else "queued", str(exc)[:500], provider.name if provider else None, message.id),
                )
                failed += final
                retrying += not final
                log.warning("message %d (%s) not delivered%s: %s", message.id, message.channel.value,
                            "" if final else ", will retry", exc)  # fmt: skip
                continue
            await self.db.execute(
                "UPDATE outbox SET status = 'sent', provider = ?, provider_ref = ?, sent_at = ?, last_error = NULL"
                " WHERE id = ?",
                (provider.name, reference, to_iso(self.clock.now()), message.id),
            )
            sent += 1
        return DeliveryRun(sent, retrying, failed)

    # -- reading ------------------------------------------------------------------------------------
    async def outbox(
        self,
        actor: Actor,
        *,
        status: MessageStatus | str | None = None,
        member_id: int | None = None,
        batch_id: int | None = None,
        offset: int = 0,
        limit: int = common.DEFAULT_PAGE_SIZE,
    ) -> common.Page[OutboxMessage]:
        """Newest first."""
        actor.require(access.MESSAGE_READ)
        offset, limit = common.page_bounds(offset, limit)
        where, params = ["1 = 1"], []
        if status is not None:
            where.append("status = ?")
            params.append(common.enum_value("status", MessageStatus, status).value)
        for column, value in (("member_id", member_id), ("batch_id", batch_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        condition = " AND ".join(where)
        async with self.db.reading() as r:
            total = await r.fetch_value(f"SELECT COUNT(*) FROM outbox WHERE {condition}", params)
            rows = await r.fetch_all(f"SELECT * FROM outbox WHERE {condition} ORDER BY id DESC LIMIT ? OFFSET ?",
                                     [*params, limit, offset])  # fmt: skip
        return common.Page([_message(row) for row in rows], int(total), offset, limit)

    async def get(self, actor: Actor, message_id: int) -> OutboxMessage:
        actor.require(access.MESSAGE_READ)
        async with self.db.reading() as r:
            return await self._load(r, message_id)

    async def preview(self, actor: Actor, template_code: str, member_id: int, *, variables: Mapping[str, Any] | None = None) -> dict[str, str | None]:
        """What the template says to this member, without queuing it."""
        actor.require(access.MESSAGE_READ)
        extra = self._extra(variables)
        async with self.db.reading() as r:
            await scopes.require_member(r, actor, member_id)
            template = await TemplateService.load(r, template_code)
            row = await r.fetch_one(f"{_RECIPIENT_SQL} WHERE m.id = ?", (self._now(), member_id))
        assert row is not None
        rendered = render_template(template, {**extra, **self._member_values(row)})
        return {"recipient": self._contact(template.channel, row), "subject": rendered.subject, "body": rendered.body}

    # -- helpers ------------------------------------------------------------------------------------
    def _member_values(self, row: dict[str, Any]) -> dict[str, Any]:
        upcoming = row["next_appointment"]
        appointment = from_iso(upcoming).astimezone(self.clock.tz).strftime("%Y-%m-%d %H:%M") if upcoming else None
        return {"name": row["name"], "points": row["points_balance"], "level": row["level_name"],
                "card_no": row["card_no"], "birthday": row["birthday"], "appointment_time": appointment,
                "today": self.clock.today().isoformat()}  # fmt: skip

    def _now(self) -> str:
        return to_iso(self.clock.now())

    def _audience(self, actor: Actor, query: MemberQuery, birthday_month: int | None) -> tuple[str, list[Any]]:
        """The member filter's condition, narrowed to a birth month (an index range on birth_md)."""
        condition, params = self.members.filter_condition(actor, query)
        if birthday_month is None:
            return condition, list(params)
        if isinstance(birthday_month, bool) or not isinstance(birthday_month, int) or not 1 <= birthday_month <= 12:
            raise ValidationError("birthday_month", "must be 1 to 12")
        return (f"({condition}) AND m.birth_md BETWEEN ? AND ?",
                [*params, f"{birthday_month:02d}-01", f"{birthday_month:02d}-31"])  # fmt: skip

    @staticmethod
    def _extra(variables: Mapping[str, Any] | None) -> dict[str, str]:
        if variables is None:
            return {}
        if not isinstance(variables, Mapping):
            raise ValidationError("variables", "must be an object of name: value")
        out = {}
        for name, value in variables.items():
            if not isinstance(name, str) or variables_of("{" + name + "}", field="variables") != [name]:
                raise ValidationError("variables", f"{name!r} is not a variable name")
            if name in MEMBER_VARIABLES:
                raise ValidationError("variables", f"{{{name}}} comes from the member record", code="template.reserved_variable")
            out[name] = common.text(f"variables.{name}", value if isinstance(value, str) else str(value),
                                    max_length=MAX_VARIABLE_LENGTH, required=False)  # fmt: skip
        return out

    @staticmethod
    def _contact(channel: Channel, row: dict[str, Any]) -> str | None:
        return row["mobile"] if channel is Channel.SMS else row["email"]

    def _prepare(self, template: Template, row: dict[str, Any], extra: dict[str, str]) -> tuple[int, str, str | None, str] | None:
        """(member, recipient, subject, body), or None when this member cannot get it."""
        recipient = self._contact(template.channel, row)
        if recipient is None or row[f"opted_out_{template.channel.value}"]:
            return None  # no address, or unsubscribed from this channel's mailings (退订)
        values = {**extra, **self._member_values(row)}
        try:
            subject = render(template.subject, values, field="subject") if template.subject else None
            body = render(template.body, values)
        except ValidationError:
            return None  # e.g. {birthday} for a member without one
        return row["id"], recipient, subject, body

    async def _active_template(self, tx: Transaction, code: str) -> Template:
        template = await TemplateService.load(tx, code)
        if not template.active:
            raise ValidationError("template_code", f"template {code!r} is inactive", code="template.inactive")
        return template

    async def _queue(
        self, tx: Transaction, actor: Actor, channel: Channel, recipient: str, subject: str | None, body: str,
        *, member_id: int | None, template_code: str | None = None,
    ) -> OutboxMessage:  # fmt: skip
        now = to_iso(self.clock.now())
        message_id = await tx.insert(
            "INSERT INTO outbox (channel, recipient, member_id, template_code, subject, body, status, attempts,"
            " next_attempt_at, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) RETURNING id",
            (channel.value, recipient, member_id, template_code, subject, body, now, actor.user_id, now),
        )
        return await self._load(tx, message_id)

    @staticmethod
    async def _load(tx: Transaction, message_id: int) -> OutboxMessage:
        row = await tx.fetch_one("SELECT * FROM outbox WHERE id = ?", (message_id,))
        if row is None:
            raise NotFound(f"message {message_id} does not exist", code="message.not_found")
        return _message(row)

    @staticmethod
    def _greeting_day(day: Any) -> str:
        if isinstance(day, str):
            text = day.strip()
            for length in (5, 10):
                if len(text) == length:
                    try:
                        # 2000 is a leap year: '02-29' is a valid every-year day.
                        date.fromisoformat(("2000-" + text) if length == 5 else text)
                        return text
                    except ValueError:
                        break
        raise ValidationError("day", f"{day!r} is neither MM-DD nor YYYY-MM-DD", code="date.invalid")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)

