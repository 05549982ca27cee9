"""The HTTP application. Routes stay thin: what they show comes from the services handed in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from acd.agent_presence import AgentPresence
from acd.ivr_store import FlowStore
from acd.recording_index import RecordingIndex
from acd.voicemail import VoicemailStore
from acd.webrtc_agents import WebRtcAgents
from crm.service import Crm
from webui.admin_pages import AdminPages
from webui.api import api_routes
from webui.api.http import bearer_authenticator
from webui.appointment_pages import AppointmentPages
from webui.backup_pages import BackupPages
from webui.catalogue_pages import CataloguePages
from webui.conference_pages import ConferenceControl, ConferencePages
from webui.dictionary_pages import DictionaryPages
from webui.ip_allow import AddressGuard, guard_options
from webui.ivr_pages import IvrPages
from webui.knowledge_pages import KnowledgePages
from webui.message_pages import MessagePages
from webui.notice_pages import NoticePages
from webui.pages import Pages
from webui.profile_pages import ProfilePages
from webui.recording_pages import RecordingPages
from webui.report_pages import ReportPages
from webui.sessions import SessionStore
from webui.softphone import SoftphonePages
from webui.supervisor_api import SupervisorApi, SupervisorCalls, SupervisorControl
from webui.survey_pages import SurveyPages
from webui.ticket_pages import TicketPages
from webui.voicemail_pages import VoicemailPages
from webui.wallboard_pages import WallboardPages
from webui.workorder_pages import WorkOrderPages
from webui.workspace_pages import WorkspacePages


@dataclass
class WebServices:
    #: Component name -> is it up (SIP transports, media engine, database).
    health: Callable[[], Awaitable[dict[str, bool]]]
    #: Prometheus text exposition of the process's counters and gauges.
    metrics: Callable[[], str]
    #: Runs one SIP-over-WebSocket connection (RFC 7118) until it closes.
    sip_websocket: Callable[[Any, tuple[str, int], bool, list[str]], Awaitable[None]] | None = None
    #: The business services and the signed-in sessions, for the pages.
    crm: Crm | None = None
    sessions: SessionStore | None = None
    #: The live queue and agent figures (None when no queue is configured).
    wallboard: Callable[[float], dict[str, Any]] | None = None
    #: Supervisors' force actions on agents and queue calls (None when no queue is configured).
    supervisor: SupervisorControl | None = None
    #: Supervisors onto agents' calls from the wallboard (listen ... take over); None: not offered.
    supervision: SupervisorCalls | None = None
    #: The conference rooms and their members (the /conferences page); None without rooms.
    conferences: ConferenceControl | None = None
    #: A caller's display name by number (the extension directory), for the rooms' members.
    caller_names: Callable[[str], str] | None = None
    #: Browser agents on WebRTC (the softphone's /ws/agent); None when not wired in.
    browser_agents: WebRtcAgents | None = None
    #: Agents' own state (ready, not ready...) on the softphone, and its push; None without queues.
    agent_presence: AgentPresence | None = None
    #: The IVR flows calls run (the admin's flow editor); None when the IVR is not wired in.
    ivr_flows: FlowStore | None = None
    #: The call and room recordings (list, play, download); None when calls are not wired in.
    recordings: RecordingIndex | None = None
    #: The mailboxes and their messages (the voicemail page and API); None without voicemail.
    voicemail: VoicemailStore | None = None
    #: Reverse proxies whose X-Forwarded-For names the client (webui.ip_allow); default none.
    trusted_proxies: Sequence[str] = ()


def create_app(services: WebServices) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        status = await services.health()
        ok = all(status.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "components": status},
                            status_code=200 if ok else 503)

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(services.metrics(), media_type="text/plain; version=0.0.4")

    async def sip_ws(websocket: WebSocket) -> None:
        if services.sip_websocket is None:
            await websocket.close(code=1011)
            return
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        client = websocket.client or ("0.0.0.0", 0)
        await services.sip_websocket(websocket, (client[0], client[1]), websocket.url.scheme == "wss", offered)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        WebSocketRoute("/sip", sip_ws),
    ]
    if services.crm is not None and services.sessions is not None:
        pages = Pages(services.crm, services.sessions)
        routes += (pages.routes() + TicketPages(pages).routes() + WorkOrderPages(pages).routes()
                   + AdminPages(pages).routes() + WallboardPages(pages, services.wallboard).routes()
                   + AppointmentPages(pages).routes() + ReportPages(pages).routes()
                   + KnowledgePages(pages).routes() + WorkspacePages(pages).routes() + NoticePages(pages).routes()
                   + DictionaryPages(pages).routes() + MessagePages(pages).routes()
                   + SurveyPages(pages).routes() + BackupPages(pages).routes())
        routes += SoftphonePages(pages, services.browser_agents, services.agent_presence).routes()
        routes += IvrPages(pages, services.ivr_flows).routes()
        routes += CataloguePages(pages).routes() + ProfilePages(pages).routes()
        # REST API and its OpenAPI document (/api/openapi.json): API tokens or the browser's session.
        authenticate = pages.api_authenticator(bearer_authenticator(services.crm))
        routes += SupervisorApi(services.crm, authenticate, services.supervisor,
                                services.supervision).routes()                          # before the /api mount
        routes += ConferencePages(pages, services.conferences, authenticate, services.caller_names).routes()
        routes += RecordingPages(pages, services.recordings, authenticate).routes()       # so is /api/recordings
        routes += VoicemailPages(pages, services.voicemail, authenticate).routes()        # and /api/voicemail
        routes.append(Mount("/api", routes=api_routes(services.crm, authenticate=authenticate)))
    middleware = []
    if services.crm is not None and services.sessions is not None:
        # Per-role IP allow-lists on every signed-in request (sign-in itself: crm.org.authenticate).
        middleware.append(Middleware(AddressGuard, **guard_options(services.crm, services.sessions,
                                                                   services.trusted_proxies)))
    return Starlette(routes=routes, middleware=middleware)
