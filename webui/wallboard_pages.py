"""The supervisors' live wallboard: a page that a WebSocket keeps current, one snapshot a
second (the issue's bound: every change shows within a second). For supervisors each agent's
row carries the supervisor's buttons (listen, whisper, barge, take over, ready, not ready,
log out, hang up), which post to webui.supervisor_api; others see the figures only."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from acd.agents import AgentState, NotReadyReason
from crm import access
from webui.auth import SESSION_COOKIE
from webui.pages import Pages
from webui.supervisor_api import is_supervisor

PUSH_INTERVAL = 1.0

Snapshot = Callable[[float], dict[str, Any]]


class WallboardPages:
    def __init__(self, pages: Pages, snapshot: Snapshot | None) -> None:
        self.pages = pages
        self.snapshot = snapshot

    def routes(self) -> list[Any]:
        return [Route("/wallboard", self.page), WebSocketRoute("/ws/wallboard", self.feed)]

    async def page(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        if not viewer.actor.can(access.REPORT_READ):
            return self.pages.forbidden(request, viewer)
        t = self.pages.translator(request, viewer)
        keys = [f"state.{s.value}" for s in AgentState] + [f"reason.{r.value}" for r in NotReadyReason]
        labels = {key: t(key) for key in keys} | {"live": t("wb.live"), "reconnecting": t("wb.reconnecting"),
                                                   "wb.direct_call": t("wb.direct_call")}
        supervise = is_supervisor(viewer.actor)
        if supervise:
            # Messages keep their {extension}, {action}, {agent}, {message}: the script fills them.
            labels |= {key: t(key) for key in (
                "wb.listen", "wb.whisper", "wb.barge", "wb.takeover", "wb.force_ready", "wb.force_not_ready",
                "wb.force_logout", "wb.force_hangup", "wb.ringing_you", "wb.done", "wb.failed")}
        reasons = [r.value for r in NotReadyReason if r is not NotReadyReason.AFTER_CALL]
        return self.pages.render(request, viewer, "wallboard.html", enabled=self.snapshot is not None, labels=labels,
                                 supervise=supervise, reasons=reasons)

    async def feed(self, websocket: WebSocket) -> None:
        token = websocket.cookies.get(SESSION_COOKIE, "")
        session = await self.pages.sessions.get(token) if token else None
        actor = await self.pages.crm.org.actor_for_user(session.user_id) if session else None
        if actor is None or not actor.can(access.REPORT_READ) or self.snapshot is None:
            await websocket.close(code=1008)  # policy violation: not signed in or not allowed
            return
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(json.dumps(self.snapshot(time.time()), ensure_ascii=False))
                await asyncio.sleep(PUSH_INTERVAL)
        except (WebSocketDisconnect, RuntimeError):
            return

