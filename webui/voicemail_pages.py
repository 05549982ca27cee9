"""Voicemail in the browser and over REST: the messages of a mailbox with caller, time and
length, played in the page from an authenticated download, marked heard, deleted (soft,
audited); administrators also set a mailbox's PIN and whether unanswered calls fall back to it.

    GET    /voicemail[?mailbox=1001]         the page
    POST   /voicemail/{id}/heard             mark heard (form, CSRF)
    POST   /voicemail/{id}/delete            delete (form, CSRF; audited)
    POST   /voicemail/settings               a mailbox's PIN and fallback (administrators; audited)
    POST   /voicemail/greeting               upload or remove a mailbox's own greeting (audited)
    GET    /api/voicemail?mailbox=1001       the messages as JSON, newest first
    GET    /api/voicemail/{id}/audio         the WAV (audio/wav; Range requests served)
    DELETE /api/voicemail/{id}               delete (audited)

Who sees what: a user sees the mailbox of their own extension (the user's `extension`);
administrators (settings.write) see every mailbox. Anything else is 403, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from acd.voicemail import (
    MAX_GREETING_BYTES,
    MailboxSettings,
    Message,
    VoicemailError,
    VoicemailStore,
    check_mailbox,
)
from crm import access, audit
from crm.access import Actor
from crm.errors import CrmError
from webui.api.http import Authenticator, error, unauthenticated
from webui.auth import Viewer
from webui.pages import Pages

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request this user may not make, or that names nothing usable: status and reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class VoicemailPages:
    def __init__(self, pages: Pages, store: VoicemailStore | None, authenticate: Authenticator) -> None:
        self.pages = pages
        self.store = store
        self.authenticate = authenticate

    def routes(self) -> list[Any]:
        if self.store is None:
            return []
        return [
            Route("/voicemail", self.page, methods=["GET"]),
            Route("/voicemail/settings", self.settings, methods=["POST"]),
            Route("/voicemail/greeting", self.greeting, methods=["POST"]),
            Route("/voicemail/{message_id:int}/heard", self.heard, methods=["POST"]),
            Route("/voicemail/{message_id:int}/delete", self.delete_form, methods=["POST"]),
            # Before the /api mount, like the supervisor API.
            Route("/api/voicemail", self.api_list, methods=["GET"]),
            Route("/api/voicemail/{message_id:int}/audio", self.api_audio, methods=["GET"]),
            Route("/api/voicemail/{message_id:int}", self.api_delete, methods=["DELETE"]),
        ]

    # ------------------------------------------------------------- rules

    async def _own_mailbox(self, actor: Actor) -> str | None:
        if actor.user_id is None:
            return None
        try:
            user = await self.pages.crm.org.get_user(actor, actor.user_id)
        except CrmError:
            return None
        return user.extension or None

    async def _mailbox_for(self, actor: Actor, asked: str | None) -> str | None:
        """The mailbox `actor` lists: the one asked for, if allowed; None = every mailbox
        (administrators only)."""
        admin = actor.can(access.SETTINGS_WRITE)
        if asked:
            try:
                check_mailbox(asked)
            except VoicemailError as exc:
                raise Refused(422, "field.invalid", str(exc)) from None
            if not admin and asked != await self._own_mailbox(actor):
                raise Refused(403, "auth.permission_denied", f"{actor.username} may read only their own mailbox")
            return asked
        if admin:
            return None
        own = await self._own_mailbox(actor)
        if own is None:
            raise Refused(403, "voicemail.no_extension", f"{actor.username} has no extension, so no mailbox")
        return own

    async def _message(self, actor: Actor, message_id: int) -> Message:
        assert self.store is not None
        message = await self.store.get(message_id)
        if message is None or message.deleted:
            raise Refused(404, "voicemail.not_found", f"no voicemail {message_id}")
        if not actor.can(access.SETTINGS_WRITE) and message.mailbox != await self._own_mailbox(actor):
            raise Refused(403, "auth.permission_denied", f"voicemail {message_id} is in someone else's mailbox")
        return message

    async def _delete(self, actor: Actor, message: Message) -> None:
        assert self.store is not None
        if await self.store.delete(message.id, by=actor.username):
            await self._audit(actor, message.id, "delete", {"mailbox": message.mailbox, "caller": message.caller,
                                                            "received_at": message.received_at})

    async def _audit(self, actor: Actor, entity_id: int | None, action: str, after: dict[str, Any]) -> None:
        crm = self.pages.crm
        try:
            async with crm.db.transaction() as tx:
                await audit.record(tx, crm.clock, actor, "voicemail", entity_id, action, after=after)
        except Exception:
            # The change took effect; losing its audit line must not hide that from the user.
            log.exception("could not audit voicemail %s by %s", action, actor.username)

    # ------------------------------------------------------------- the page

    async def page(self, request: Request, status: int = 200, problem: str = "") -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        assert self.store is not None
        asked = request.query_params.get("mailbox", "").strip()
        try:
            mailbox = await self._mailbox_for(viewer.actor, asked or None)
        except Refused as exc:
            if exc.status == 403:
                return self.pages.forbidden(request, viewer)
            mailbox, problem, status = "", str(exc), exc.status
        messages = await self.store.messages(mailbox) if mailbox != "" else []
        admin = viewer.actor.can(access.SETTINGS_WRITE)
        settings = self.store.settings(mailbox) if mailbox else None
        own_greeting = self.store.greeting(mailbox) is not None if mailbox else False
        received = {m.id: datetime.fromtimestamp(m.received_at, UTC) for m in messages}
        return self.pages.render(request, viewer, "voicemail.html", status, messages=messages, mailbox=mailbox or "",
                                 received=received,
                                 admin=admin, settings=settings, problem=problem,
                                 fallback_default=self.store.config.fallback, own_greeting=own_greeting)

    async def heard(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert self.store is not None
            message = await self._message(viewer.actor, request.path_params["message_id"])
            await self.store.mark_heard(message.id, heard=form.get("heard", "1") == "1")
            return self._back(form)

        return await self._form(request, run)

    async def delete_form(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            await self._delete(viewer.actor, await self._message(viewer.actor, request.path_params["message_id"]))
            return self._back(form)

        return await self._form(request, run)

    async def settings(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert self.store is not None
            if not viewer.actor.can(access.SETTINGS_WRITE):
                raise Refused(403, "auth.permission_denied", "only administrators set mailboxes")
            fallback = {"on": True, "off": False}.get(str(form.get("fallback", "")))
            pin = str(form.get("pin", "")).strip()
            try:
                mailbox = check_mailbox(str(form.get("mailbox", "")))
                current = self.store.settings(mailbox)
                settings = MailboxSettings(mailbox, current.pin if pin == "" and not form.get("clear_pin") else pin,
                                           fallback)
                await self.store.save_settings(settings)
            except VoicemailError as exc:
                raise Refused(422, "field.invalid", str(exc)) from None
            # The PIN itself stays out of the audit log.
            await self._audit(viewer.actor, None, "settings", {"mailbox": mailbox, "fallback": fallback,
                                                               "pin_set": bool(settings.pin)})
            return RedirectResponse(f"/voicemail?mailbox={mailbox}", status_code=303)

        return await self._form(request, run)

    async def greeting(self, request: Request) -> Response:
        async def run(viewer: Viewer, form: FormData) -> Response:
            assert self.store is not None
            mailbox = await self._mailbox_for(viewer.actor, str(form.get("mailbox", "")) or None)
            if mailbox is None:
                raise Refused(422, "field.invalid", "choose the mailbox whose greeting this is")
            if form.get("remove"):
                removed = self.store.remove_greeting(mailbox)
                after: dict[str, Any] = {"mailbox": mailbox, "greeting": "standard", "removed": removed}
            else:
                upload = form.get("file")
                if isinstance(upload, str) or upload is None:
                    raise Refused(422, "field.invalid", "attach an audio file")
                if (upload.size or 0) > MAX_GREETING_BYTES:
                    raise Refused(413, "request.too_large", "a greeting file is at most 10 MB")
                data = await upload.read(MAX_GREETING_BYTES + 1)
                try:
                    seconds = await asyncio.to_thread(self.store.save_greeting, mailbox, data)
                except VoicemailError as exc:
                    raise Refused(422, "field.invalid", str(exc)) from None
                after = {"mailbox": mailbox, "greeting": "own", "seconds": seconds}
            await self._audit(viewer.actor, None, "greeting", after)
            return RedirectResponse(f"/voicemail?mailbox={mailbox}", status_code=303)

        return await self._form(request, run)

    async def _form(self, request: Request, run: Any) -> Response:
        async def guarded(viewer: Viewer, form: FormData) -> Response:
            try:
                return await run(viewer, form)
            except Refused as exc:
                if exc.status == 403:
                    return self.pages.forbidden(request, viewer)
                if exc.status == 404:
                    return self.pages.not_found(request, viewer)
                return await self.page(request, exc.status, str(exc))

        async def refused(request: Request, reason: str, status: int) -> Response:
            return await self.page(request, status, reason)

        return await self.pages.post_action(request, guarded, refused)

    @staticmethod
    def _back(form: FormData) -> Response:
        mailbox = str(form.get("mailbox", ""))
        query = f"?mailbox={mailbox}" if mailbox.isdigit() else ""
        return RedirectResponse(f"/voicemail{query}", status_code=303)

    # ------------------------------------------------------------- REST

    async def _api_actor(self, request: Request) -> Actor | Response:
        presented = "authorization" in request.headers
        actor = await self.authenticate(request)
        return actor if actor is not None else unauthenticated(invalid=presented)

    async def api_list(self, request: Request) -> Response:
        actor = await self._api_actor(request)
        if isinstance(actor, Response):
            return actor
        assert self.store is not None
        try:
            mailbox = await self._mailbox_for(actor, request.query_params.get("mailbox", "").strip() or None)
        except Refused as exc:
            return error(exc.status, exc.code, str(exc), field="mailbox" if exc.status == 422 else None)
        messages = await self.store.messages(mailbox)
        return JSONResponse({"mailbox": mailbox, "items": [_json(m) for m in messages]})

    async def api_audio(self, request: Request) -> Response:
        actor = await self._api_actor(request)
        if isinstance(actor, Response):
            return actor
        assert self.store is not None
        try:
            message = await self._message(actor, request.path_params["message_id"])
            path = self.store.audio_path(message)
        except Refused as exc:
            return error(exc.status, exc.code, str(exc))
        except VoicemailError as exc:
            log.error("voicemail %d: %s", request.path_params["message_id"], exc)
            return error(404, "voicemail.no_file", str(exc))
        if not path.is_file():
            return error(404, "voicemail.no_file", f"the file of voicemail {message.id} is missing")
        return FileResponse(path, media_type="audio/wav", filename=f"voicemail-{message.mailbox}-{message.id}.wav",
                            content_disposition_type="inline", headers={"Cache-Control": "private, no-store"})

    async def api_delete(self, request: Request) -> Response:
        actor = await self._api_actor(request)
        if isinstance(actor, Response):
            return actor
        try:
            message = await self._message(actor, request.path_params["message_id"])
        except Refused as exc:
            return error(exc.status, exc.code, str(exc))
        await self._delete(actor, message)
        return JSONResponse({"id": message.id, "deleted": True})


def _json(message: Message) -> dict[str, Any]:
    return {"id": message.id, "mailbox": message.mailbox, "caller": message.caller,
            "caller_name": message.caller_name, "received_at": message.received_at,
            "duration": message.duration, "size_bytes": message.size_bytes, "sha256": message.sha256,
            "heard": message.heard, "audio": f"/api/voicemail/{message.id}/audio"}
