"""短信/邮件 in the browser: templates with {placeholders}, bulk sending over a member filter
(level, tag, birthday this month) with a preview of the count and the first rendered messages
before anything is queued, opt-outs (退订), the outbox, and the SMTP relay e-mail goes through.
Permissions are the services': message.read to look, template.write, message.bulk, member.write
(opt-outs) and settings.write (the relay) to change."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from crm import access
from crm.errors import CrmError, Forbidden, ValidationError
from crm.mail_settings import SmtpSecurity
from crm.members import MemberQuery
from crm.providers import Channel
from crm.templates import MEMBER_VARIABLES
from webui.auth import Viewer
from webui.form_values import checked
from webui.pages import Pages

MAX_EXTRA_VARIABLES = 10


def _variables(text: str) -> dict[str, str]:
    """Extra template values typed one per line as `name=value`."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ValidationError("variables", f"{line.strip()[:40]!r}: write name=value", code="template.variable_line")
        out[name.strip()] = value.strip()
    if len(out) > MAX_EXTRA_VARIABLES:
        raise ValidationError("variables", f"at most {MAX_EXTRA_VARIABLES} variables")
    return out


class MessagePages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.crm = pages.crm

    def routes(self) -> list[Any]:
        return [
            Route("/messaging", self.overview, methods=["GET"]),
            Route("/messaging/templates", self.put_template, methods=["POST"]),
            Route("/messaging/bulk", self.bulk_form, methods=["GET"]),
            Route("/messaging/bulk", self.bulk_send, methods=["POST"]),
            Route("/messaging/opt-outs", self.opt_out, methods=["POST"]),
            Route("/messaging/opt-outs/{member_id:int}/{channel}/delete", self.opt_in, methods=["POST"]),
            Route("/messaging/smtp", self.put_smtp, methods=["POST"]),
        ]

    # -- overview: templates, outbox, opt-outs, relay ------------------------------------------------
    async def overview(self, request: Request, error: str = "", status: int = 200) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        actor = viewer.actor
        try:
            templates = await self.crm.templates.list(actor)
            outbox = await self.crm.messaging.outbox(actor, limit=20)
        except Forbidden:
            return self.pages.forbidden(request, viewer)
        editing = next((t for t in templates if t.code == request.query_params.get("t")), None)
        return self.pages.render(
            request, viewer, "messaging.html", status, error=error, templates=templates, outbox=outbox,
            editing=editing, member_variables=sorted(MEMBER_VARIABLES), channels=list(Channel),
            opt_outs=await self.crm.opt_outs.list(actor) if actor.can(access.MEMBER_READ) else [],
            smtp=await self.crm.mail_settings.get() if actor.can(access.SETTINGS_WRITE) else None,
            securities=list(SmtpSecurity), can=actor.can)  # fmt: skip

    async def _refused(self, request: Request, error: str, status: int) -> Response:
        return await self.overview(request, error, status)

    async def put_template(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            channel = str(form.get("channel", ""))
            template = await self.crm.templates.put(
                viewer.actor, str(form.get("code", "")).strip(), channel=channel, name=str(form.get("name", "")),
                body=str(form.get("body", "")).replace("\r\n", "\n"),
                subject=str(form.get("subject", "")) if channel == Channel.EMAIL.value else None,
                active=checked(form, "active"))  # fmt: skip
            return RedirectResponse(f"/messaging?{urlencode({'t': template.code})}#template-form", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def opt_out(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            phone = str(form.get("phone", "")).strip()[:40]
            if not phone:
                raise ValidationError("phone", "is required", code="field.required")
            found = await self.crm.members.search(viewer.actor, MemberQuery(phone=phone), limit=2)
            if len(found.items) != 1:
                raise ValidationError("phone", f"{len(found.items)} members have that number", code="opt_out.no_member")
            await self.crm.opt_outs.opt_out(viewer.actor, found.items[0].id, str(form.get("channel", "")),
                                            str(form.get("reason", "")))  # fmt: skip
            return RedirectResponse("/messaging#opt-outs", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def opt_in(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self.crm.opt_outs.opt_in(viewer.actor, request.path_params["member_id"], request.path_params["channel"])
            return RedirectResponse("/messaging#opt-outs", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    async def put_smtp(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            port = str(form.get("port", "")).strip()
            if not port.isdigit() or len(port) > 5:
                raise ValidationError("port", "must be 1 to 65535", code="smtp.bad_port")
            await self.crm.mail_settings.put(viewer.actor, str(form.get("host", "")).strip(), int(port),
                                             str(form.get("sender", "")), sender_name=str(form.get("sender_name", "")),
                                             security=str(form.get("security", "none")))  # fmt: skip
            return RedirectResponse("/messaging?smtp=1#smtp", status_code=303)

        return await self.pages.post_action(request, run, self._refused)

    # -- bulk sending ----------------------------------------------------------------------------
    def _filter(self, values: ImmutableMultiDict[str, Any] | FormData) -> tuple[MemberQuery, int | None]:
        level = str(values.get("level", "")).strip() or None
        tag = str(values.get("tag", "")).strip()[:32] or None
        month = self.crm.clock.today().month if checked(values, "birthday_month") else None
        return MemberQuery(tag=tag, level=level), month

    async def bulk_form(self, request: Request, error: str = "", status: int = 200, result: Any = None) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.MESSAGE_BULK):
            return self.pages.forbidden(request, viewer)
        params = request.query_params
        templates = await self.crm.templates.list(viewer.actor, active_only=True)
        preview = None
        if params.get("template") and not error and result is None:
            query, month = self._filter(params)
            try:
                preview = await self.crm.messaging.preview_bulk(
                    viewer.actor, str(params["template"]), query, birthday_month=month,
                    variables=_variables(str(params.get("variables", ""))[:2000]))  # fmt: skip
            except Forbidden:
                return self.pages.forbidden(request, viewer)
            except CrmError as exc:
                error, status = self.pages.refusal(request, viewer, exc), exc.status
        return self.pages.render(request, viewer, "bulk_send.html", status, error=error, templates=templates,
                                 levels=await self.crm.dictionaries.levels(), preview=preview, params=params,
                                 result=result, month=self.crm.clock.today().month)  # fmt: skip

    async def bulk_send(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            query, month = self._filter(form)
            result = await self.crm.messaging.send_bulk(
                viewer.actor, str(form.get("template", "")), query, birthday_month=month,
                variables=_variables(str(form.get("variables", ""))[:2000]))  # fmt: skip
            return await self.bulk_form(request, result=result)

        return await self.pages.post_action(request, run, lambda r, e, s: self.bulk_form(r, e, s))
