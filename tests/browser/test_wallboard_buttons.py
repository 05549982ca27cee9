"""The supervisor's buttons on the wallboard in Chromium: a supervisor sees them on each agent's
row and a click takes effect (the status line says so, the row follows); an auditor, who may
read the wallboard but directs nobody, sees no buttons.

The web app runs in this process (its own thread and event loop) with a real ACD router, the
conference rooms as configured and the CRM on a real SQLite file, on a free port of 127.0.0.1:
no demo data to wait for. Calls behind the buttons: tests/peers/test_supervisor_actions.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from acd.conference_rooms import ConferenceRooms, RoomConfig
from acd.queue_calls import QueueDefinition, QueueRouter
from callcenter.database import apply_migrations, open_database
from crm import schema
from crm.access import SYSTEM
from crm.db import Database
from crm.passwords import ScryptParams
from crm.service import Crm
from mediacore.engine import MediaEngine
from tests.browser import helpers
from tests.browser.test_pages import ARTIFACTS
from tests.browser.threaded_site import ThreadedSite
from webui.app import WebServices, create_app
from webui.sessions import MIGRATIONS as SESSION_MIGRATIONS
from webui.sessions import SessionStore

pytestmark = pytest.mark.timeout(120)

PASSWORD = "board-pass-1"


class Site(ThreadedSite):
    """The web app with a queue router and rooms, served from a thread of its own."""

    async def _serve(self) -> None:
        conn = await open_database(self.data / "callcenter.db")
        try:
            await apply_migrations(conn, "crm", schema.MIGRATIONS)
            await apply_migrations(conn, "webui", SESSION_MIGRATIONS)
            crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
            await crm.org.create_user(SYSTEM, "supervisor1", "周主管", PASSWORD, roles=["supervisor"], extension="1010")
            await crm.org.create_user(SYSTEM, "auditor1", "吴审核", PASSWORD, roles=["auditor"])
            queue = QueueDefinition.from_table({"number": "8100", "name": "售后热线", "strategy": "ringall",
                                                "members": ["1001", "1002"]})
            router = QueueRouter([queue], lambda ext: f"分机 {ext}")
            rooms = ConferenceRooms(MediaEngine(), [RoomConfig("7000", "会议室")], hangup=lambda call, cause: None)

            async def health() -> dict[str, bool]:
                return {"database": True}

            await self.serve_app(create_app(WebServices(
                health=health, metrics=lambda: "", crm=crm, sessions=SessionStore(conn),
                wallboard=router.wallboard.snapshot, supervisor=router, conferences=rooms)))
        finally:
            await conn.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    served = Site(tmp_path / "data")
    served.start()
    try:
        yield served
    finally:
        served.stop()



def sign_in(browser: Browser, site: Site, user: str):  # type: ignore[no-untyped-def]
    page = helpers.sign_in(browser, site.http_url, user, PASSWORD)
    page.goto(f"{site.http_url}/wallboard")
    return page


def test_supervisors_get_the_buttons_and_auditors_do_not(site: Site, browser: Browser) -> None:
    page = sign_in(browser, site, "supervisor1")
    agent = page.locator("tr.agent-1001")
    expect(agent).to_contain_text("未登录")
    # Not on a call: the call buttons are there but disabled; ready is not.
    expect(agent.get_by_role("button", name="抢接")).to_be_disabled()
    expect(agent.get_by_role("button", name="监听")).to_be_disabled()
    agent.get_by_role("button", name="置闲").click()
    expect(page.locator("#wb-feedback")).to_contain_text("置闲：坐席 1001 已完成")
    expect(agent).to_contain_text("空闲", timeout=3000)
    agent.get_by_label("置忙").select_option("lunch")
    agent.get_by_role("button", name="置忙").click()
    expect(agent).to_contain_text("示忙 · 午餐", timeout=3000)
    # Refused: the status line gives the server's reason.
    page.locator("tr.agent-1002").get_by_role("button", name="置忙").click()
    expect(page.locator("#wb-feedback")).to_contain_text("置忙失败：agent 1002 is logged_out")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wallboard-supervisor.png"))
    page.get_by_role("link", name="会议室").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("7000 · 会议室")

    viewer = sign_in(browser, site, "auditor1")
    expect(viewer.locator("tr.agent-1001")).to_contain_text("示忙")
    expect(viewer.locator("tr.agent-1001 button")).to_have_count(0)
    expect(viewer.locator("#wb-feedback")).to_have_count(0)
