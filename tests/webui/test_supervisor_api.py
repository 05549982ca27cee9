"""Supervisor force actions over REST, against the real web app, a real ACD router and the CRM on a
real SQLite file: force ready / not ready / log out and hang up, each audited and shown by the
wallboard's next push."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from acd.queue_calls import QueueDefinition, QueueRouter
from crm import audit
from crm.access import SYSTEM
from crm.service import Crm
from tests.webui.page_harness import staff_app
from webui.auth import SESSION_COOKIE

USERS = {"sup": "supervisor", "boss": "admin", "agent1": "agent", "auditor": "auditor"}


class QueueCall:
    """A caller waiting in the queue, as the router sees the call-control side of it."""

    def __init__(self, router: QueueRouter, call_id: str, caller: str) -> None:
        self.router = router
        self.id = call_id
        self.caller = caller
        self.hung_up: list[str] = []

    def ring_agent(self, agent: str) -> bool:
        return True

    def stop_ringing(self, agent: str) -> None:
        pass

    def overflow(self, destination: str, reason: str) -> None:
        pass

    def hangup(self, reason: str, *, side: str) -> None:
        self.hung_up.append(reason)
        self.router.ended(self, side, time.time())  # type: ignore[arg-type]


@dataclass
class Site:
    client: TestClient
    state: dict[str, Any]

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run `fn` (sync or async) on the app's event loop, where the router and database live."""
        async def call():  # type: ignore[no-untyped-def]
            result = fn(*args)
            return await result if hasattr(result, "__await__") else result
        assert self.client.portal is not None
        return self.client.portal.call(call)

    def post(self, path: str, who: str | None = "sup", *, csrf: bool = True, bearer: bool = False,
             **kw: Any):  # type: ignore[no-untyped-def]
        headers = kw.pop("headers", {})
        self.client.cookies.clear()
        if who is not None and bearer:
            headers["Authorization"] = f"Bearer {self.state['tokens'][who]}"
        elif who is not None:
            token, csrf_token = self.state["sessions"][who]
            self.client.cookies.set(SESSION_COOKIE, token)
            if csrf:
                headers["X-CSRF-Token"] = csrf_token
        return self.client.post(f"/api/supervisor{path}", headers=headers, **kw)

    def audit(self) -> list[audit.AuditEntry]:
        return self.run(audit.list_entries, self.state["crm"].db, SYSTEM)


def make_app(path: Path) -> tuple[Starlette, dict[str, Any]]:
    async def setup(conn, crm: Crm, state: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        queue = QueueDefinition.from_table({"number": "8100", "name": "客服", "strategy": "linear",
                                            "members": ["1001", "1002"], "wrapuptime": 0, "joinempty": True})
        router = QueueRouter([queue], lambda ext: f"坐席 {ext}")
        state["router"] = router
        return {"wallboard": router.wallboard.snapshot, "supervisor": router}

    return staff_app(path, {name: (role, None) for name, role in USERS.items()}, setup)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    app, state = make_app(tmp_path / "callcenter.db")
    with TestClient(app) as client:
        yield Site(client, state)


def agent_on_board(board: dict, agent: str) -> dict:
    return next(a for a in board["agents"] if a["id"] == agent)


def test_a_supervisor_forces_ready_not_ready_and_logout_audited_and_on_the_wallboard(site: Site) -> None:
    token, _ = site.state["sessions"]["sup"]
    site.client.cookies.set(SESSION_COOKIE, token)
    with site.client.websocket_connect("/ws/wallboard") as board:
        assert agent_on_board(board.receive_json(), "1001")["state"] == "logged_out"

        ready = site.post("/agents/1001/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"agent": "1001", "state": "ready", "reason": None}
        # The wallboard's next push (one a second) shows it.
        assert agent_on_board(board.receive_json(), "1001")["state"] == "ready"

        paused = site.post("/agents/1001/not-ready", json={"reason": "lunch"})
        assert paused.json() == {"agent": "1001", "state": "not_ready", "reason": "lunch"}
        shown = agent_on_board(board.receive_json(), "1001")
        assert (shown["state"], shown["reason"]) == ("not_ready", "lunch")

        out = site.post("/agents/1001/logout", who="boss", bearer=True)  # an admin with an API token
        assert out.json()["state"] == "logged_out"
        assert agent_on_board(board.receive_json(), "1001")["state"] == "logged_out"

    entries = [e for e in site.audit() if e.entity == "agent"]
    assert [(e.username, e.action, e.entity_id) for e in reversed(entries)] == [
        ("sup", "force_ready", 1001), ("sup", "force_not_ready", 1001), ("boss", "force_logout", 1001)]
    lunch = next(e for e in entries if e.action == "force_not_ready")
    assert lunch.before == {"agent": "1001", "state": "ready", "reason": None}
    assert lunch.after == {"agent": "1001", "state": "not_ready", "reason": "lunch"}


def test_only_supervisors_with_a_valid_session_and_csrf_token_may(site: Site) -> None:
    for who in ("agent1", "auditor"):
        refused = site.post("/agents/1001/ready", who=who)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.permission_denied"
    assert site.post("/agents/1001/ready", who=None).status_code == 401
    # A session cookie alone never authorises a change (cross-site request forgery).
    assert site.post("/agents/1001/ready", csrf=False).status_code == 401
    assert site.post("/agents/1001/ready", headers={"X-CSRF-Token": "forged"}, csrf=False).status_code == 401
    assert site.state["router"].acd.agents["1001"].state.value == "logged_out"
    assert [e for e in site.audit() if e.entity == "agent"] == []


def test_refusals_are_clear_errors_and_leave_no_audit_entry(site: Site) -> None:
    missing = site.post("/agents/4242/ready")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "acd.not_found"
    assert site.post("/agents/1001/not-ready", json={"reason": "nap"}).status_code == 422
    assert site.post("/agents/1001/not-ready", json={"reason": "after_call"}).status_code == 422
    assert site.post("/agents/1001/not-ready", content=b"{not json").status_code == 400
    assert site.post("/agents/1001/not-ready", json=["break"]).status_code == 422
    assert site.post("/agents/1001/not-ready", content=b"x" * 5000).status_code == 413
    # Logged out: nobody can be put on a break.
    conflict = site.post("/agents/1001/not-ready", json={"reason": "break"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "acd.state_conflict"
    assert site.post("/calls/nope/hangup").status_code == 404
    assert all(e.entity not in ("agent", "call") for e in site.audit())


def test_a_supervisor_hangs_up_a_waiting_call(site: Site) -> None:
    router: QueueRouter = site.state["router"]
    call = QueueCall(router, "c1", "13912345678")
    site.run(router.enqueue, call, "8100", time.time())
    assert "c1" in router.acd.waiting
    token, _ = site.state["sessions"]["sup"]
    site.client.cookies.set(SESSION_COOKIE, token)
    with site.client.websocket_connect("/ws/wallboard") as board:
        assert board.receive_json()["queues"][0]["waiting"] == 1
        ended = site.post("/calls/c1/hangup")
        assert ended.status_code == 200 and ended.json() == {"call_id": "c1", "ended": True}
        assert board.receive_json()["queues"][0]["waiting"] == 0
    assert call.hung_up == ["supervisor"] and "c1" not in router.acd.waiting
    [entry] = [e for e in site.audit() if e.entity == "call"]
    assert (entry.username, entry.action, entry.after) == ("sup", "force_hangup", {"call_id": "c1"})
    assert site.post("/calls/c1/hangup").status_code == 404  # gone
