"""/api/messages: SMS and e-mail templates, sending (one, direct, bulk), the outbox, greeting days."""

from __future__ import annotations

from dataclasses import dataclass

from crm.common import Page
from crm.messaging import BulkResult, GreetingDay, MessageStatus, OutboxMessage
from crm.providers import Channel
from crm.templates import Template
from webui.api.params import MEMBER_FILTER, PAGING, member_query, paging
from webui.api.registry import Call, Section, q
from webui.api.schema import boolean, enum_of, identifier, obj, string

api = Section("messaging", "短信发送 / 邮件发送: templates, sending, outbox, greetings")

CODE = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,47}$", "maxLength": 48}
VARIABLES = {"type": "object", "maxProperties": 20, "additionalProperties": string(200),
             "description": "values for template variables other than the member's own"}  # fmt: skip


@dataclass(frozen=True)
class Preview:
    recipient: str | None
    subject: str | None
    body: str


@api.get("/messages/templates", list[Template], summary="Templates", query=[q("channel", enum_of(Channel))])
async def list_templates(call: Call) -> list[Template]:
    return await call.crm.templates.list(call.me, channel=call.query.get("channel"))


@api.get("/messages/templates/{code}", Template, summary="One template", path_params={"code": CODE})
async def get_template(call: Call) -> Template:
    return await call.crm.templates.get(call.me, call.path["code"])


@api.put("/messages/templates/{code}", Template, summary="Create or replace a template ({name}, {points}, ...)",
         path_params={"code": CODE}, body=obj({"channel": enum_of(Channel), "name": string(64, min_length=1),
                                              "body": string(100_000, min_length=1), "subject": string(200, nullable=True),
                                              "active": boolean()}, "channel", "name", "body"))  # fmt: skip
async def put_template(call: Call) -> Template:
    return await call.crm.templates.put(call.me, call.path["code"], **call.body)


@api.post("/messages/preview", Preview, summary="What a template says to a member (nothing is sent)",
          body=obj({"template_code": CODE, "member_id": identifier(), "variables": VARIABLES}, "template_code", "member_id"))  # fmt: skip
async def preview(call: Call) -> Preview:
    b = call.body
    shown = await call.crm.messaging.preview(call.me, b["template_code"], b["member_id"], variables=b.get("variables"))
    return Preview(shown["recipient"], shown["subject"], shown["body"] or "")


@api.post("/messages/member", OutboxMessage, status=201, summary="Queue a template for one member",
          body=obj({"template_code": CODE, "member_id": identifier(), "variables": VARIABLES}, "template_code", "member_id"))  # fmt: skip
async def send_to_member(call: Call) -> OutboxMessage:
    b = call.body
    return await call.crm.messaging.send_to_member(call.me, b["template_code"], b["member_id"], variables=b.get("variables"))


@api.post("/messages/direct", OutboxMessage, status=201, summary="Queue free text to a number or address",
          body=obj({"channel": enum_of(Channel), "recipient": string(254, min_length=1), "body": string(100_000, min_length=1),
                    "subject": string(200, nullable=True)}, "channel", "recipient", "body"))  # fmt: skip
async def send_direct(call: Call) -> OutboxMessage:
    b = call.body
    return await call.crm.messaging.send_direct(call.me, b["channel"], b["recipient"], b["body"], subject=b.get("subject"))


@api.post("/messages/bulk", BulkResult, status=201, summary="群发: a template to every member of a filter",
          body=obj({"template_code": CODE, "filter": MEMBER_FILTER, "variables": VARIABLES}, "template_code", "filter"))  # fmt: skip
async def send_bulk(call: Call) -> BulkResult:
    b = call.body
    return await call.crm.messaging.send_bulk(call.me, b["template_code"], member_query(b["filter"]),
                                              variables=b.get("variables"))  # fmt: skip


@api.get("/messages", Page[OutboxMessage], summary="The outbox, newest first", query=[
    q("status", enum_of(MessageStatus)), q("member_id", identifier()), q("batch_id", identifier()), *PAGING])  # fmt: skip
async def outbox(call: Call) -> Page[OutboxMessage]:
    f = call.query
    return await call.crm.messaging.outbox(call.me, status=f.get("status"), member_id=f.get("member_id"),
                                           batch_id=f.get("batch_id"), **paging(call))  # fmt: skip


@api.get("/messages/{message_id}", OutboxMessage, summary="One outbox message")
async def get_message(call: Call) -> OutboxMessage:
    return await call.crm.messaging.get(call.me, call.path["message_id"])


@api.post("/messages/{message_id}/cancel", OutboxMessage, summary="Cancel a queued message", body=obj({}))
async def cancel_message(call: Call) -> OutboxMessage:
    return await call.crm.messaging.cancel(call.me, call.path["message_id"])


@api.get("/messages/greeting-days", list[GreetingDay], summary="Holidays with greetings")
async def greeting_days(call: Call) -> list[GreetingDay]:
    return await call.crm.messaging.greeting_days(call.me)


@api.put("/messages/greeting-days", GreetingDay, summary="Add or change a holiday greeting ('MM-DD' or 'YYYY-MM-DD')",
         body=obj({"day": string(10, min_length=5), "name": string(64, min_length=1), "template_code": CODE,
                   "active": boolean()}, "day", "name", "template_code"))  # fmt: skip
async def put_greeting_day(call: Call) -> GreetingDay:
    b = call.body
    return await call.crm.messaging.put_greeting_day(call.me, b["day"], b["name"], b["template_code"],
                                                     active=b.get("active", True))  # fmt: skip
