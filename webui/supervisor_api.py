"""Supervisor force actions over REST: set an agent ready, not ready (with a reason code) or
logged out, and hang up a queue call — what a supervisor does from the wallboard.

    POST /api/supervisor/agents/{agent}/ready
    POST /api/supervisor/agents/{agent}/not-ready   {"reason": "break" | "lunch" | ...}
    POST /api/supervisor/agents/{agent}/logout
    POST /api/supervisor/calls/{call_id}/hangup
    POST /api/supervisor/agents/{agent}/listen | whisper | barge | takeover

The last four put the supervisor on the agent's call (acd.supervision): a browser is no media
leg, so the server rings the supervisor's own extension (from their user record) and acts
when it answers — 202 while it rings; a line of theirs already on the call acts at once (a
take-over keeps it). 409 when the agent is on no call or no phone of theirs is registered,
422 when their user has no extension. The action is audited when it takes effect.

Credentials as for the rest of /api (an API token, or the browser's session cookie with its
X-CSRF-Token). Only supervisors may: the wallboard's viewers (report.read) who also direct
others' work (ticket.assign) — the supervisor and admin roles, not agents or auditors. Every
action that took effect is written to the audit log with the state before and after; the
wallboard reads the ACD live, so its next push (at most a second later) shows it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from acd.agents import AgentState, NotReadyReason
from acd.distributor import AcdError
from acd.queue_calls import NotFound, SupervisorRefused
from acd.supervision import Action, Seat, SupervisionError
from crm import access, audit
from crm.access import SYSTEM, Actor
from crm.errors import CrmError
from crm.service import Crm
from webui.api.http import Authenticator, error, unauthenticated

log = logging.getLogger(__name__)

#: Who counts as a supervisor: both permissions (see the module docstring).
SUPERVISOR_PERMISSIONS = (access.REPORT_READ, access.TICKET_ASSIGN)
#: The largest body a force action needs ({"reason": "training"}); more is refused unread.
MAX_BODY_BYTES = 1024


class SupervisorControl(Protocol):
    """What the ACD offers supervisors (acd.queue_calls.QueueRouter)."""

    def force_ready(self, agent_id: str, now: float) -> AgentState: ...

    def force_not_ready(self, agent_id: str, reason: NotReadyReason, now: float) -> AgentState: ...

    def force_logout(self, agent_id: str, now: float) -> AgentState: ...

    def force_hangup(self, call_id: str) -> None: ...

    def agent_state(self, agent_id: str) -> tuple[AgentState, NotReadyReason | None]: ...


class SupervisorCalls(Protocol):
    """Supervisors on agents' calls (acd.supervision.Supervision)."""

    def request(self, username: str, extension: str, agent: str, action: Action) -> Seat: ...


#: What each refusal of acd.supervision answers over HTTP.
SUPERVISION_STATUS = {"not_on_call": 409, "no_phone": 409, "busy": 409, "media": 503}


class SupervisorApi:
    def __init__(self, crm: Crm, authenticate: Authenticator, control: SupervisorControl | None,
                 calls: SupervisorCalls | None = None) -> None:
        self.crm = crm
        self.authenticate = authenticate
        self.control = control
        self.calls = calls

    def routes(self) -> list[Route]:
        return [
            Route("/api/supervisor/agents/{agent_id}/ready", self.ready, methods=["POST"]),
            Route("/api/supervisor/agents/{agent_id}/not-ready", self.not_ready, methods=["POST"]),
            Route("/api/supervisor/agents/{agent_id}/logout", self.logout, methods=["POST"]),
            Route("/api/supervisor/calls/{call_id}/hangup", self.hangup, methods=["POST"]),
            *[Route(f"/api/supervisor/agents/{{agent_id}}/{action.value}", self._supervise_route(action),
                    methods=["POST"]) for action in Action],
        ]

    # ------------------------------------------------------------- endpoints

    async def ready(self, request: Request) -> Response:
        return await self._agent_action(request, "force_ready", None)

    async def not_ready(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        raw = body.get("reason", NotReadyReason.OTHER.value)
        try:
            reason = NotReadyReason(raw)
        except ValueError:
            choices = [r.value for r in NotReadyReason if r is not NotReadyReason.AFTER_CALL]
            return error(422, "field.invalid", f"reason must be one of {choices}", field="reason")
        if reason is NotReadyReason.AFTER_CALL:
            return error(422, "field.invalid", "after_call is set by the system only", field="reason")
        return await self._agent_action(request, "force_not_ready", reason)

    async def logout(self, request: Request) -> Response:
        return await self._agent_action(request, "force_logout", None)

    async def hangup(self, request: Request) -> Response:
        actor, control = await self._supervisor(request)
        if isinstance(actor, Response):
            return actor
        assert control is not None
        call_id = request.path_params["call_id"]
        try:
            control.force_hangup(call_id)
        except NotFound as exc:
            return error(404, "acd.not_found", str(exc))
        await self._audit(actor, "call", None, "force_hangup", None, {"call_id": call_id})
        return JSONResponse({"call_id": call_id, "ended": True})

    def _supervise_route(self, action: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.supervise(request, action)

        return endpoint

    async def supervise(self, request: Request, action: Action) -> Response:
        actor = await self._authorised(request)
        if isinstance(actor, Response):
            return actor
        if self.calls is None:
            return error(503, "acd.no_calls", "calls are not wired in: supervision is not offered")
        agent_id = request.path_params["agent_id"]
        extension = await self._extension_of(actor)
        if not extension:
            return error(422, "supervisor.no_extension",
                         f"{actor.username} has no extension in their user record: set one to be rung")
        try:
            seat = self.calls.request(actor.username, extension, agent_id, action)
        except SupervisionError as exc:
            return error(SUPERVISION_STATUS.get(exc.reason, 409), f"supervisor.{exc.reason}", str(exc))
        ringing = seat.line is None
        log.info("%s asks to %s on agent %s from extension %s (%s)", actor.username, action.value, agent_id,
                 extension, "ringing" if ringing else "on the line")
        return JSONResponse({"agent": agent_id, "action": action.value, "seat": seat.id, "extension": extension,
                             "call_id": seat.target_id, "state": "ringing" if ringing else "connected"},
                            status_code=202 if ringing else 200)

    async def _extension_of(self, actor: Actor) -> str | None:
        if actor.user_id is None:
            return None
        try:
            user = await self.crm.org.get_user(SYSTEM, actor.user_id)
        except CrmError:
            return None
        return user.extension

    # ------------------------------------------------------------- plumbing

    async def _agent_action(self, request: Request, action: str, reason: NotReadyReason | None) -> Response:
        actor, control = await self._supervisor(request)
        if isinstance(actor, Response):
            return actor
        assert control is not None
        agent_id = request.path_params["agent_id"]
        now = time.time()
        try:
            before = control.agent_state(agent_id)
            if action == "force_not_ready":
                assert reason is not None
                state = control.force_not_ready(agent_id, reason, now)
            else:
                state = getattr(control, action)(agent_id, now)
        except NotFound as exc:
            return error(404, "acd.not_found", str(exc))
        except SupervisorRefused as exc:
            return error(409, "acd.state_conflict", str(exc))
        except AcdError as exc:
            return error(409, "acd.refused", str(exc))
        after = control.agent_state(agent_id)
        await self._audit(actor, "agent", int(agent_id) if agent_id.isdigit() else None, action,
                          _state(agent_id, *before), _state(agent_id, *after))
        return JSONResponse({"agent": agent_id, "state": state.value,
                             "reason": after[1].value if after[1] is not None else None})

    async def _authorised(self, request: Request) -> Actor | Response:
        presented = "authorization" in request.headers
        actor = await self.authenticate(request)
        if actor is None:
            return unauthenticated(invalid=presented)
        if not is_supervisor(actor):
            return error(403, "auth.permission_denied", f"{actor.username} is no supervisor")
        return actor

    async def _supervisor(self, request: Request) -> tuple[Actor | Response, SupervisorControl | None]:
        actor = await self._authorised(request)
        if isinstance(actor, Response):
            return actor, None
        if self.control is None:
            return error(503, "acd.no_queues", "no queue is configured"), None
        return actor, self.control

    async def _audit(self, actor: Actor, entity: str, entity_id: int | None, action: str,
                     before: dict[str, Any] | None, after: dict[str, Any]) -> None:
        try:
            async with self.crm.db.transaction() as tx:
                await audit.record(tx, self.crm.clock, actor, entity, entity_id, action, before=before, after=after)
        except Exception:
            # The action took effect; losing its audit line must not hide that from the caller.
            log.exception("could not audit %s by %s", action, actor.username)


def is_supervisor(actor: Actor) -> bool:
    """The rule for every supervisor action (and for showing the wallboard's buttons)."""
    return all(actor.can(p) for p in SUPERVISOR_PERMISSIONS)


def _state(agent_id: str, state: AgentState, reason: NotReadyReason | None) -> dict[str, Any]:
    return {"agent": agent_id, "state": state.value, "reason": reason.value if reason is not None else None}


async def _json_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return error(413, "request.too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return error(400, "request.malformed_json", f"the body is not JSON: {exc}")
    if not isinstance(value, dict):
        return error(422, "request.invalid", "the body must be a JSON object")
    return value
