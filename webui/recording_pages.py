"""Call recordings in the web UI: the list with each call's parties (its CDR segments), played in
the page or downloaded, and the same list as JSON for the REST API.

Who hears what: supervisors and administrators (report.read and ticket.assign, as for the
supervisor API) every recording; anyone else only the calls of their own extension (the user's
`extension`: they called, were called or answered). A recording is named by its reference, which
the index turns into a file inside the recordings directory and nothing else: a reference that
tries to leave it is a 404, like one that names no recording. Each play or download that starts
at the beginning of the file is written to the audit log (seeking in the player asks for byte
ranges further on, which are not audited again).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from acd.recording_index import MAX_PAGE, BadRef, RecordingEntry, RecordingIndex
from crm import access, audit
from crm.access import Actor
from crm.errors import CrmError
from webui.api.http import Authenticator, error, unauthenticated
from webui.pages import PAGE_SIZE, Pages

log = logging.getLogger(__name__)

#: Whoever holds both sees every recording (supervisors, administrators).
SUPERVISOR_PERMISSIONS = (access.REPORT_READ, access.TICKET_ASSIGN)
#: The site's days (the reports' zone) for the page's date filter.
SITE_ZONE = ZoneInfo("Asia/Shanghai")
#: Everything else sees nothing (a user without an extension has no calls of their own).
NOBODY = object()


class RecordingPages:
    def __init__(self, pages: Pages, index: RecordingIndex | None, authenticate: Authenticator) -> None:
        self.pages = pages
        self.crm = pages.crm
        self.index = index
        self.authenticate = authenticate

    def routes(self) -> list[Any]:
        return [
            Route("/recordings", self.page),
            Route("/recordings/audio/{ref:path}", self.audio, methods=["GET", "HEAD"]),
            Route("/api/recordings", self.api_list),
        ]

    # ------------------------------------------------------------- pages

    async def page(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        params = request.query_params
        today = self.crm.clock.today()
        first = _date(params.get("from"), today - timedelta(days=6))
        last = _date(params.get("to"), today)
        if last < first or (last - first).days > 366:
            first, last = last - timedelta(days=6), last
        party = params.get("party", "").strip()[:32]
        page = max(1, min(_int(params.get("page"), 1), 1000))
        entries: list[RecordingEntry] = []
        if self.index is not None:
            entries = await self._visible(viewer.actor, _start(first), _start(last + timedelta(days=1)),
                                          party or None, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
        return self.pages.render(request, viewer, "recordings.html", enabled=self.index is not None,
                                 entries=entries[:PAGE_SIZE], more=len(entries) > PAGE_SIZE, page=page,
                                 first=first, last=last, party=party)

    async def api_list(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return unauthenticated(invalid="authorization" in request.headers)
        if self.index is None:
            return error(503, "recording.disabled", "recordings are not available on this server")
        params = request.query_params
        bounds: dict[str, float | None] = {}
        for name in ("from", "to"):
            try:
                bounds[name] = _timestamp(params.get(name))
            except ValueError as exc:
                return error(422, "field.invalid", f"{name}: {exc}", field=name)
        limit, offset = _int(params.get("limit"), 50), _int(params.get("offset"), 0)
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            return error(422, "field.invalid", f"limit is 1..{MAX_PAGE}, offset >= 0", field="limit")
        entries = await self._visible(actor, bounds["from"], bounds["to"], params.get("party") or None, limit, offset)
        return JSONResponse({"recordings": [e.as_json() for e in entries]})

    async def audio(self, request: Request) -> Response:
        actor = await self.authenticate(request)
        if actor is None:
            return unauthenticated(invalid="authorization" in request.headers)
        if self.index is None:
            return error(503, "recording.disabled", "recordings are not available on this server")
        ref = request.path_params["ref"]
        try:
            entry = await self.index.get(ref)
            path = self.index.path_of(ref)
        except BadRef:
            entry = None
        # Someone else's recording and no recording at all look the same: 404.
        if entry is None or not await self._may_hear(actor, entry) or not path.is_file():
            return error(404, "recording.not_found", "no such recording")
        if request.method == "GET" and _from_the_start(request.headers.get("range")):
            await self._audit(actor, entry, "download" if request.query_params.get("download") else "play")
        disposition = "attachment" if request.query_params.get("download") else "inline"
        return FileResponse(path, media_type="audio/wav", filename=path.name, content_disposition_type=disposition,
                            headers={"Cache-Control": "private, no-store"})

    # ------------------------------------------------------------- rules

    async def _scope(self, actor: Actor) -> str | None | object:
        """None: every recording; an extension: the calls of that extension; NOBODY: none."""
        if all(actor.can(p) for p in SUPERVISOR_PERMISSIONS):
            return None
        if actor.user_id is None:
            return NOBODY
        try:
            user = await self.crm.org.get_user(actor, actor.user_id)
        except CrmError:
            return NOBODY
        return user.extension or NOBODY

    async def _visible(self, actor: Actor, since: float | None, until: float | None, party: str | None,
                       limit: int, offset: int) -> list[RecordingEntry]:
        assert self.index is not None
        scope = await self._scope(actor)
        if scope is NOBODY or (isinstance(scope, str) and party not in (None, scope)):
            return []
        return await self.index.listing(since=since, until=until, party=scope if isinstance(scope, str) else party,
                                        limit=limit, offset=offset)

    async def _may_hear(self, actor: Actor, entry: RecordingEntry) -> bool:
        scope = await self._scope(actor)
        return scope is None or (isinstance(scope, str) and scope in entry.parties)

    async def _audit(self, actor: Actor, entry: RecordingEntry, action: str) -> None:
        try:
            async with self.crm.db.transaction() as tx:
                await audit.record(tx, self.crm.clock, actor, "call", None, f"recording_{action}",
                                   after={"ref": entry.ref, "call_id": entry.call_id, "sha256": entry.sha256})
        except Exception:
            log.exception("could not audit the %s of recording %s by %s", action, entry.ref, actor.username)


def _from_the_start(header: str | None) -> bool:
    """A request for the file from its first byte (no Range, or one starting at 0)."""
    if not header:
        return True
    unit, _, ranges = header.partition("=")
    first = ranges.split(",")[0].strip()
    return unit.strip().lower() != "bytes" or first.startswith("0-") or first == "0"


def _date(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        return default


def _start(day: date) -> float:
    return datetime.combine(day, time(0), SITE_ZONE).timestamp()


def _timestamp(text: str | None) -> float | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as a POSIX time."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is no ISO 8601 date or time") from None
    return (value if value.tzinfo else value.replace(tzinfo=ZoneInfo("UTC"))).timestamp()


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default
