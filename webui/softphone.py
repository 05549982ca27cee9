"""The agent's softphone: the page, and the one WebSocket (`/ws/agent`) that carries its
signalling — registration, SDP offer/answer, trickle ICE and call control — as versioned JSON
messages (docs/webrtc-signalling.md). Call logic lives in `acd.webrtc_agents`; this module
checks who is asking and what they sent, and translates messages to calls and back.

A queue agent's own state (log in/out, ready, not ready with a reason) rides on the same socket:
`agent_state` messages act through `acd.agent_presence` on the signed-in user's extension only,
are written to the audit log like a supervisor's force actions, and every change of the agent's
state (whoever made it) is pushed back as an `agent_state` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from acd.agent_presence import AGENT_REASONS, AgentPresence, Outcome, PresenceError
from acd.webrtc_agents import AgentCallError, WebRtcAgents
from crm import audit
from crm.access import Actor
from crm.errors import CrmError
from webui.auth import SESSION_COOKIE
from webui.pages import Pages

log = logging.getLogger(__name__)

#: The signalling protocol's version; a browser speaking another one is told and closed.
PROTOCOL_VERSION = 1
#: Largest message accepted: an SDP offer with trickled candidates is a few KB (see MAX_SDP_BYTES).
MAX_MESSAGE_BYTES = 96 * 1024
#: Messages queued to a browser that does not read; beyond this the socket is closed (a stuck
#: tab must not grow the server's memory).
MAX_OUTBOX = 256
#: WebSocket close codes (RFC 6455 §7.4: 4000-4999 are for applications).
CLOSE_POLICY = 1008          # not signed in, foreign origin
CLOSE_TOO_BIG = 1009
CLOSE_VERSION = 4000         # unsupported protocol version
CLOSE_NO_EXTENSION = 4001    # the user has no extension to register
CLOSE_REPLACED = 4002        # another browser registered the same extension
CLOSE_SLOW = 4003            # the browser did not read its messages

#: Client messages that act on one call (they carry "call_id").
_CALL_COMMANDS = {"answer", "reject", "hangup", "hold", "unhold", "mute", "dtmf", "offer", "candidate", "transfer",
                  "conference"}
#: The state bar's words (sp.agent.*): states, reason codes, buttons, refusals.
_AGENT_LABELS = (["title", "login", "logout", "ready", "not_ready", "reason", "queues", "wrap_up_left", "in_state"]
                 + [f"state.{s}" for s in ("logged_out", "ready", "not_ready", "reserved", "on_call", "wrap_up")]
                 + [f"reason.{r}" for r in ("break", "lunch", "training", "meeting", "other", "after_call")]
                 + [f"error.{c}" for c in ("not_an_agent", "logged_out", "on_call", "bad_state", "bad_reason",
                                           "bad_action")])

#: Writes one audit line of an agent's own state change: (actor, action, outcome).
AuditAgent = Callable[[Actor, str, Outcome], Awaitable[None]]


class SoftphonePages:
    def __init__(self, pages: Pages, agents: WebRtcAgents | None, presence: AgentPresence | None = None) -> None:
        self.pages = pages
        self.agents = agents
        self.presence = presence

    def routes(self) -> list[Any]:
        return [Route("/softphone", self.page), WebSocketRoute("/ws/agent", self.socket)]

    async def page(self, request: Request) -> Response:
        viewer = await self.pages.viewer(request)
        if viewer is None:
            return self.pages.to_login(request)
        t = self.pages.translator(request, viewer)
        keys = ["registering", "registered", "offline", "reconnecting", "replaced", "mic_denied", "mic_missing",
                "connection_failed", "incoming", "ringing", "talking", "held", "ended", "dialling", "unsupported",
                "muted", "error", "no_extension", "media_connected", "media_failed", "hold", "unhold", "mute",
                "unmute", "microphone", "speaker", "extension", "in_conference", "consulting", "transfer_trying",
                "transfer_ringing", "transfer_failed", "switch_to", "vip", "blacklisted"]
        labels = {key: t(f"sp.{key}") for key in keys}
        for reason in ("hangup", "rejected", "no_answer", "busy", "unreachable", "agent_gone", "remote_hangup",
                       "remote_rejected", "remote_no_answer", "shutdown", "offline", "bad_number", "media_failed",
                       "transferred", "conference", "conference_ended", "not_supported", "bad_state",
                       "answered_elsewhere", "forbidden", "unavailable"):
            labels[f"reason.{reason}"] = t(f"sp.reason.{reason}")
        for status in ("403", "404", "480", "486", "other"):
            labels[f"transfer_status.{status}"] = t(f"sp.transfer_status.{status}")
        for key in _AGENT_LABELS:
            labels[f"agent.{key}"] = t(f"sp.agent.{key}")
        reasons = [(r.value, t(f"sp.agent.reason.{r.value}")) for r in AGENT_REASONS]
        return self.pages.render(request, viewer, "softphone.html", enabled=self.agents is not None, labels=labels,
                                 agent_reasons=reasons)

    # -- the agent WebSocket -------------------------------------------------------------------

    async def socket(self, websocket: WebSocket) -> None:
        if not _same_origin(websocket):
            # Cookies ride along on cross-site WebSocket handshakes: without this check any page
            # the agent visits could place calls in their name (CSWSH).
            await websocket.close(code=CLOSE_POLICY)
            return
        token = websocket.cookies.get(SESSION_COOKIE, "")
        session = await self.pages.sessions.get(token) if token else None
        user = actor = None
        if session is not None:
            try:
                actor = await self.pages.crm.org.actor_for_user(session.user_id)
                user = await self.pages.crm.org.get_user(actor, session.user_id)
            except CrmError:
                user = None
        if user is None or actor is None or self.agents is None:
            await websocket.close(code=CLOSE_POLICY)
            return
        await websocket.accept()
        connection = AgentConnection(websocket, self.agents, user.extension, user.display_name or user.username,
                                     presence=self.presence, actor=actor, audit_agent=self._audit_agent)
        await connection.run()

    async def _audit_agent(self, actor: Actor, action: str, outcome: Outcome) -> None:
        """The agent's own state change in the audit log, as webui.supervisor_api writes a
        supervisor's (entity "agent", the extension as its id, the state before and after)."""
        agent_id = str(outcome.after["agent"])
        try:
            async with self.pages.crm.db.transaction() as tx:
                await audit.record(tx, self.pages.crm.clock, actor, "agent", int(agent_id) if agent_id.isdigit() else None,
                                   f"agent_{action}", before=outcome.before, after=outcome.after)
        except Exception:
            # The change took effect; losing its audit line must not hide that from the agent.
            log.exception("could not audit %s of agent %s", action, agent_id)


def _same_origin(websocket: WebSocket) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return False
    host = websocket.headers.get("host", "")
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return origin == f"{scheme}://{host}"


class AgentConnection:
    """One browser's signalling session; implements `acd.webrtc_agents.AgentClient`."""

    def __init__(self, websocket: WebSocket, agents: WebRtcAgents, extension: str | None, name: str, *,
                 presence: AgentPresence | None = None, actor: Actor | None = None,
                 audit_agent: AuditAgent | None = None) -> None:
        self.websocket = websocket
        self.agents = agents
        self.extension = extension
        self.name = name
        self.presence = presence
        self.actor = actor
        self.audit_agent = audit_agent
        self.registered = False
        self.greeted = False
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._close_code: int | None = None

    # AgentClient
    def send(self, message: dict[str, Any]) -> None:
        if self._close_code is not None:
            return
        if self._outbox.qsize() >= MAX_OUTBOX:
            self._close(CLOSE_SLOW)
            return
        if message.get("type") == "replaced":
            self.registered = False
            self._outbox.put_nowait({"v": PROTOCOL_VERSION, **message})
            self._close(CLOSE_REPLACED)
            return
        self._outbox.put_nowait({"v": PROTOCOL_VERSION, **message})

    def _close(self, code: int) -> None:
        self._close_code = code
        self._outbox.put_nowait(None)

    async def run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._write(), name="agent-ws-writer")
        try:
            while self._close_code is None:
                try:
                    text = await self.websocket.receive_text()
                except (WebSocketDisconnect, RuntimeError, KeyError):
                    break  # closed by the browser (KeyError: a binary frame has no "text")
                if len(text) > MAX_MESSAGE_BYTES:
                    self._close(CLOSE_TOO_BIG)
                    break
                await self._handle(text)
        finally:
            if self.registered and self.extension is not None:
                self.agents.unregister(self.extension, self)
            if self.presence is not None and self.extension is not None:
                self.presence.unsubscribe(self.extension, self)
            if self._close_code is None:
                self._close(1000)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, 5.0)

    async def _write(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                break
            try:
                await self.websocket.send_text(json.dumps(message, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
        with contextlib.suppress(Exception):
            await self.websocket.close(code=self._close_code or 1000)

    def _error(self, code: str, message: str, ref: Any = None, call_id: str | None = None) -> None:
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            reply["ref"] = ref
        if call_id is not None:
            reply["call_id"] = call_id
        self.send(reply)

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            self._error("bad_json", "a message is one JSON object")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._error("bad_message", "a message is a JSON object with a string \"type\"")
            return
        kind, ref = message["type"], message.get("ref")
        if not isinstance(ref, (str, int, type(None))):
            ref = None
        if kind == "ping":
            self.send({"type": "pong", "ref": ref})
            return
        if kind == "hello":
            if message.get("v") != PROTOCOL_VERSION:
                self.send({"type": "error", "code": "unsupported_version", "ref": ref,
                           "message": f"this server speaks version {PROTOCOL_VERSION}", "supported": [PROTOCOL_VERSION]})
                self._close(CLOSE_VERSION)
                return
            self.greeted = True
            self.send({"type": "welcome", "ref": ref, "extension": self.extension, "name": self.name,
                       "ice_servers": [s.to_browser() for s in self.agents.settings.ice_servers]})
            return
        if not self.greeted:
            self._error("hello_first", "send hello with the protocol version first", ref)
            return
        if kind == "register":
            if self.extension is None:
                self._error("no_extension", "your user has no extension: ask an administrator", ref)
                self._close(CLOSE_NO_EXTENSION)
                return
            calls = self.agents.register(self.extension, self.name, self)
            self.registered = True
            self.send({"type": "registered", "ref": ref, "extension": self.extension,
                       "calls": [call.summary() for call in calls]})
            if self.presence is not None:
                self.presence.subscribe(self.extension, self)   # a queue agent's state follows at once
            return
        if not self.registered:
            self._error("register_first", "register before placing or taking calls", ref)
            return
        try:
            await self._command(kind, message, ref)
        except AgentCallError as exc:
            self._error(exc.code, str(exc), ref, message.get("call_id") if isinstance(message.get("call_id"), str) else None)
        except PresenceError as exc:
            self._error(exc.code, str(exc), ref)
        except (TypeError, ValueError) as exc:
            self._error("bad_message", str(exc), ref)

    async def _command(self, kind: str, message: dict[str, Any], ref: Any) -> None:
        agents, extension = self.agents, self.extension
        assert extension is not None
        if kind == "dial":
            call = agents.dial(extension, _text(message, "number"))
            self.send({"type": "call", "ref": ref, **call.summary()})
            return
        if kind == "agent_state":
            await self._agent_state(message, ref)
            return
        if kind not in _CALL_COMMANDS:
            self._error("unknown_type", f"unknown message type {kind!r}", ref)
            return
        call_id = _text(message, "call_id")
        if kind == "offer":
            sdp = await agents.offer(extension, call_id, _text(message, "sdp"))
            self.send({"type": "answer", "ref": ref, "call_id": call_id, "sdp": sdp})
            return
        if kind == "candidate":
            candidate = message.get("candidate")
            if candidate is not None and not isinstance(candidate, str):
                raise TypeError("candidate is a string (the candidate attribute) or null at the end")
            mid = message.get("sdpMid")
            index = message.get("sdpMLineIndex")
            if (mid is not None and not isinstance(mid, str)) or (index is not None and type(index) is not int):
                raise TypeError("sdpMid is a string and sdpMLineIndex an integer")
            await agents.candidate(extension, call_id, candidate, mid, index)
            return  # trickled candidates get no reply unless they fail
        if kind == "answer":
            agents.answer(extension, call_id)
        elif kind == "reject":
            agents.reject(extension, call_id)
        elif kind == "hangup":
            agents.hangup(extension, call_id)
        elif kind in ("hold", "unhold"):
            agents.hold(extension, call_id, kind == "hold")
        elif kind == "mute":
            muted = message.get("muted", True)
            if not isinstance(muted, bool):
                raise TypeError("muted is true or false")
            agents.mute(extension, call_id, muted)
        elif kind == "dtmf":
            agents.dtmf(extension, call_id, _text(message, "digits"))
        elif kind == "transfer":
            # Attended with "to_call" (the agent's consultation call), else blind to "target".
            if message.get("to_call") is not None:
                agents.attended_transfer(extension, call_id, _text(message, "to_call"))
            else:
                agents.transfer(extension, call_id, _text(message, "target"))
        elif kind == "conference":
            room = agents.conference(extension, call_id, _text(message, "with_call"))
            self.send({"type": "ok", "ref": ref, "call_id": call_id, "room": room.name})
            return
        self.send({"type": "ok", "ref": ref, "call_id": call_id})

    async def _agent_state(self, message: dict[str, Any], ref: Any) -> None:
        """The agent changes their own queue state; always the signed-in user's own extension
        (a message naming another agent is not even read for one)."""
        action = _text(message, "action")
        reason = message.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise TypeError("reason is a string (a reason code)")
        if self.presence is None:
            raise PresenceError("not_an_agent", "no queue is configured on this server")
        outcome = self.presence.act(self.extension, action, reason)
        # Audited before the reply, as the supervisors' API does: an `ok` means it is on record.
        # (The state push does not wait for it: the ACD has changed already.)
        if self.audit_agent is not None and self.actor is not None:
            await self.audit_agent(self.actor, action, outcome)
        self.send({"type": "ok", "ref": ref, "action": action, "state": outcome.after["state"],
                   "reason": outcome.after["reason"]})


def _text(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} is a non-empty string")
    return value
