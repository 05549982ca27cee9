"""The supervisor's buttons on the wallboard and the conference rooms page, against the real web
app, a real ACD router, real conference rooms and the CRM on a real SQLite file: supervisors
see the buttons and the rooms, agents neither (and the endpoints answer 403); refusals are
clear errors. Calls themselves are in tests/peers/test_supervisor_actions.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from acd.conference_rooms import ConferenceRooms, RoomConfig
from acd.queue_calls import QueueDefinition, QueueRouter
from crm.service import Crm
from mediacore.engine import MediaEngine
from tests.webui.page_harness import staff_app
from webui.auth import SESSION_COOKIE

USERS = {"sup": ("supervisor", "1010"), "boss": ("admin", None), "agent1": ("agent", "1001"),
         "auditor": ("auditor", None)}


def make_app(path: Path) -> tuple[Starlette, dict[str, Any]]:
    async def setup(conn, crm: Crm, state: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        queue = QueueDefinition.from_table({"number": "8100", "name": "客服", "strategy": "linear",
                                            "members": ["1001", "1002"]})
        router = QueueRouter([queue], lambda ext: f"坐席 {ext}")
        # The rooms as configured; nobody is in them (the engine is never started here).
        rooms = ConferenceRooms(MediaEngine(), [RoomConfig("7000", "大会议室", pin="1234"), RoomConfig("7001")],
                                hangup=lambda call_id, cause: None)
        return {"wallboard": router.wallboard.snapshot, "supervisor": router, "conferences": rooms}

    return staff_app(path, USERS, setup)


class Site:
    def __init__(self, client: TestClient, state: dict[str, Any]) -> None:
        self.client = client
        self.state = state

    def as_user(self, who: str | None) -> dict[str, str]:
        """Sign the client in as `who` (None: signed out); the headers a page's script sends."""
        self.client.cookies.clear()
        if who is None:
            return {}
        token, csrf = self.state["sessions"][who]
        self.client.cookies.set(SESSION_COOKIE, token)
        return {"X-CSRF-Token": csrf}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    app, state = make_app(tmp_path / "callcenter.db")
    with TestClient(app) as client:
        yield Site(client, state)


def test_supervisors_see_the_wallboard_buttons_and_agents_do_not(site: Site) -> None:
    site.as_user("sup")
    page = site.client.get("/wallboard")
    assert page.status_code == 200
    assert 'data-supervise="1"' in page.text and "wb-feedback" in page.text
    labels = json.loads(re.search(r"data-labels='([^']*)'", page.text).group(1))  # type: ignore[union-attr]
    assert (labels["wb.takeover"], labels["wb.listen"], labels["wb.force_hangup"]) == ("抢接", "监听", "强拆")
    assert "{extension}" in labels["wb.ringing_you"]       # filled in by the page's script
    assert 'href="/conferences"' in page.text
    # An auditor reads the wallboard (report.read) but directs nobody: the figures, no buttons.
    site.as_user("auditor")
    page = site.client.get("/wallboard")
    assert page.status_code == 200 and 'data-supervise="0"' in page.text and 'data-csrf=""' in page.text
    labels = json.loads(re.search(r"data-labels='([^']*)'", page.text).group(1))  # type: ignore[union-attr]
    assert "wb.takeover" not in labels and 'href="/conferences"' not in page.text
    site.as_user("agent1")
    assert site.client.get("/wallboard").status_code == 403

def test_the_supervision_buttons_refuse_agents_and_say_when_calls_are_not_wired(site: Site) -> None:
    for who in ("agent1", "auditor"):
        headers = site.as_user(who)
        for action in ("listen", "whisper", "barge", "takeover"):
            refused = site.client.post(f"/api/supervisor/agents/1002/{action}", headers=headers)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.permission_denied"
    site.as_user(None)
    assert site.client.post("/api/supervisor/agents/1002/listen").status_code == 401
    headers = site.as_user("sup")
    assert site.client.post("/api/supervisor/agents/1002/listen").status_code == 401   # no CSRF token
    unwired = site.client.post("/api/supervisor/agents/1002/listen", headers=headers)
    assert unwired.status_code == 503 and unwired.json()["error"]["code"] == "acd.no_calls"


def test_the_conference_page_lists_the_rooms_for_supervisors_only(site: Site) -> None:
    site.as_user("sup")
    page = site.client.get("/conferences")
    assert page.status_code == 200
    assert "7000 · 大会议室" in page.text and "当前无人" in page.text and 'data-room="7001"' in page.text
    listing = site.client.get("/api/conferences").json()["rooms"]
    assert [(r["number"], r["name"], r["members"]) for r in listing] == [("7000", "大会议室", []), ("7001", "", [])]
    site.as_user("boss")
    assert site.client.get("/conferences").status_code == 200        # administrators too
    site.as_user("agent1")
    assert site.client.get("/conferences").status_code == 403
    assert site.client.get("/api/conferences").status_code == 403
    site.as_user(None)
    assert site.client.get("/conferences", follow_redirects=False).headers["location"] == "/login"
    assert site.client.get("/api/conferences").status_code == 401


def test_conference_actions_name_what_is_missing(site: Site) -> None:
    headers = site.as_user("agent1")
    assert site.client.post("/api/conferences/7000/members/abc/mute", headers=headers).status_code == 403
    headers = site.as_user("sup")
    cases = {"/api/conferences/7000/members/abc/mute": "conference.no_member",
             "/api/conferences/7999/members/abc/kick": "conference.no_room",
             "/api/conferences/7000/members/abc/explode": "conference.unknown_action"}
    for path, code in cases.items():
        refused = site.client.post(path, headers=headers)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == code
    assert site.client.post("/api/conferences/7000/members/abc/mute").status_code == 401   # no CSRF token
