"""Conference rooms in the web UI: every configured room with who is in it now (number, name,
when they joined, muted, moderator), and the moderator's powers from the browser — mute,
unmute, kick — for supervisors and administrators.

    GET  /conferences                                          the page (polls the API)
    GET  /api/conferences                                      rooms and members as JSON
    POST /api/conferences/{number}/members/{call_id}/mute      mute a member (audited)
    POST /api/conferences/{number}/members/{call_id}/unmute    unmute (audited)
    POST /api/conferences/{number}/members/{call_id}/kick      hang the member up (audited)

Credentials as for the rest of /api (an API token, or the session cookie with X-CSRF-Token);
who may: the supervisor's rule (webui.supervisor_api.is_supervisor), which admins meet too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from acd.conference_rooms import Member, RoomConfig, Stage
from crm import audit
from crm.access import Actor
from webui.api.http import Authenticator, error, unauthenticated
from webui.pages import Pages
from webui.supervisor_api import is_supervisor

log = logging.getLogger(__name__)

#: How often the page asks for the rooms again (ms): a join or a mute shows within it.
POLL_MS = 2000


class ConferenceControl(Protocol):
    """What the rooms offer the web (acd.conference_rooms.ConferenceRooms)."""

    def rooms(self) -> list[RoomConfig]: ...

    def members(self, number: str) -> list[Member]: ...

    def set_muted(self, number: str, call_id: str, muted: bool) -> None: ...

    def kick(self, number: str, call_id: str) -> None: ...


class ConferencePages:
    def __init__(self, pages: Pages, rooms: ConferenceControl | None, authenticate: Authenticator,
                 names: Callable[[str], str] | None = None) -> None:
        self.pages = pages
        self.rooms = rooms
        self.authenticate = authenticate
        #: A caller's name by number (the extension directory's display names); "" if unknown.
        self.names = names or (lambda number: "")

    def routes(self) -> list[Any]:
        return [
            Route("/conferences", self.page, methods=["GET"]),
            Route("/api/conferences", self.api_list, methods=["GET"]),
            Route("/api/conferences/{number}/members/{call_id}/{action}", self.api_action, methods=["POST"]),
        ]

    # ------------------------------------------------------------- the page

    async def page(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not is_supervisor(viewer.actor):
            return self.pages.forbidden(request, viewer)
        t = self.pages.translator(request, viewer)
        keys = ("conf.empty", "conf.members", "conf.muted", "conf.moderator", "conf.mute", "conf.unmute",
                "conf.kick", "conf.done", "conf.failed")
        return self.pages.render(request, viewer, "conferences.html", rooms=self._listing(),
                                 enabled=self.rooms is not None, labels={k: t(k) for k in keys}, poll_ms=POLL_MS)

    # ------------------------------------------------------------- REST

    async def api_list(self, request: Request) -> Response:
        actor = await self._supervisor(request)
        if isinstance(actor, Response):
            return actor
        return JSONResponse({"rooms": self._listing()})

    async def api_action(self, request: Request) -> Response:
        actor = await self._supervisor(request)
        if isinstance(actor, Response):
            return actor
        if self.rooms is None:
            return error(503, "conference.not_offered", "no conference rooms are wired in")
        number, call_id, action = (request.path_params[k] for k in ("number", "call_id", "action"))
        if action not in ("mute", "unmute", "kick"):
            return error(404, "conference.unknown_action", f"no action {action!r}: mute, unmute or kick")
        if number not in {r.number for r in self.rooms.rooms()}:
            return error(404, "conference.no_room", f"no conference room {number}")
        member = next((m for m in self.rooms.members(number) if m.call_id == call_id), None)
        if member is None:
            return error(404, "conference.no_member", f"no member {call_id} in room {number}")
        before = _member(member, "")
        if action == "kick":
            self.rooms.kick(number, call_id)
        else:
            self.rooms.set_muted(number, call_id, action == "mute")
        log.info("%s: %s %s (%s) in conference %s", actor.username, action, member.caller, call_id, number)
        after = {"room": number, "call_id": call_id, "caller": member.caller, "muted": member.muted,
                 "kicked": action == "kick"}
        await self._audit(actor, f"conference_{action}", before | {"room": number}, after)
        return JSONResponse(after)

    # ------------------------------------------------------------- plumbing

    def _listing(self) -> list[dict[str, Any]]:
        if self.rooms is None:
            return []
        rooms = []
        for config in self.rooms.rooms():
            members = [_member(m, self.names(m.caller)) for m in self.rooms.members(config.number)
                       if m.stage is Stage.IN_ROOM]
            members.sort(key=lambda m: m["joined_at"])
            rooms.append({"number": config.number, "name": config.name, "max_members": config.max_members,
                          "members": members})
        return rooms

    async def _supervisor(self, request: Request) -> Actor | Response:
        presented = "authorization" in request.headers
        actor = await self.authenticate(request)
        if actor is None:
            return unauthenticated(invalid=presented)
        if not is_supervisor(actor):
            return error(403, "auth.permission_denied", f"{actor.username} may not manage conference rooms")
        return actor

    async def _audit(self, actor: Actor, action: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        crm = self.pages.crm
        try:
            async with crm.db.transaction() as tx:
                await audit.record(tx, crm.clock, actor, "conference", None, action, before=before, after=after)
        except Exception:
            # Done already: a lost audit line must not hide that from the caller.
            log.exception("could not audit %s by %s", action, actor.username)


def _member(member: Member, name: str) -> dict[str, Any]:
    joined = datetime.fromtimestamp(member.joined_at, UTC).isoformat() if member.joined_at else None
    return {"call_id": member.call_id, "caller": member.caller, "name": name, "joined_at": joined,
            "muted": member.muted, "moderator": member.moderator}
