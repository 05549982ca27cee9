"""The softphone's state bar in Chromium: a queue agent sees 已签出 (logged out) with only 签入
enabled, logs in (空闲, ready), goes on lunch with the reason chosen (示忙 · 午餐) and sees a
supervisor's change of their state arrive by itself. The ACD (QueueRouter) and the web app run in
this process, in a thread of their own, over a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from acd.agent_presence import AgentPresence
from acd.agents import AgentState
from acd.queue_calls import QueueDefinition, QueueRouter
from acd.webrtc_agents import WebRtcAgents
from callcenter.database import open_database
from mediacore.engine import MediaEngine
from tests.browser.helpers import sign_in
from tests.browser.threaded_site import ThreadedSite, media_healthy, softphone_crm
from webui.app import WebServices, create_app
from webui.sessions import SessionStore

pytestmark = pytest.mark.timeout(90)

PASSWORD = "agent-pass-1"


class Site(ThreadedSite):
    """The web app with a queue (8001: agent1 at 2001, penalty 1) and its agents' presence."""

    router: QueueRouter

    async def _serve(self) -> None:
        conn = await open_database(self.data / "callcenter.db")
        engine = MediaEngine("127.0.0.1", 39300, 39399)  # PCM ports only: no RTP socket opened
        try:
            crm = await softphone_crm(conn, PASSWORD)
            await engine.start()
            agents = WebRtcAgents(engine)
            self.router = QueueRouter([QueueDefinition.from_table(
                {"number": "8001", "name": "销售", "members": ["2001:1"], "wrapuptime": 5})], lambda ext: ext)
            presence = AgentPresence(self.router)
            self.router.on_agent = presence.changed

            app = create_app(WebServices(health=media_healthy, metrics=lambda: "", crm=crm, sessions=SessionStore(conn),
                                         browser_agents=agents, supervisor=self.router, agent_presence=presence))
            await self.serve_app(app, before_exit=agents.close)
        finally:
            engine.close()
            await conn.close()

    def on_loop(self, action: object) -> None:
        """Run `action()` on the server's loop (where the ACD lives), as its REST API would."""
        self.loop.call_soon_threadsafe(action)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    served = Site(tmp_path / "data")
    served.start()
    try:
        yield served
    finally:
        served.stop()


def buttons_enabled(page: Page) -> dict[str, bool]:
    return {name: page.locator(f"#sp-agent-{name}").is_enabled() for name in ("login", "ready", "not-ready", "logout")}


def test_the_state_bar_logs_in_pauses_with_a_reason_and_follows_a_supervisors_change(
        browser: Browser, site: Site) -> None:
    page = sign_in(browser, site.http_url, "agent1", PASSWORD)
    try:
        page.wait_for_url(f"{site.http_url}/")
        page.goto(f"{site.http_url}/softphone")
        bar = page.locator("#sp-agent")
        expect(bar).to_be_visible(timeout=10_000)
        expect(page.locator("#sp-agent-state")).to_have_text("已签出")
        expect(page.locator("#sp-agent-queues")).to_have_text("所在队列：销售 (1)")
        assert buttons_enabled(page) == {"login": True, "ready": False, "not-ready": False, "logout": False}

        page.get_by_role("button", name="签入").click()
        expect(page.locator("#sp-agent-state")).to_have_text("空闲")
        assert buttons_enabled(page) == {"login": False, "ready": False, "not-ready": True, "logout": True}
        assert site.router.acd.agents["2001"].state is AgentState.READY

        page.locator("#sp-agent-reason").select_option("lunch")
        page.get_by_role("button", name="示忙").click()
        expect(page.locator("#sp-agent-state")).to_have_text("示忙")
        expect(page.locator("#sp-agent-reason-shown")).to_have_text("· 午餐")
        expect(page.locator("#sp-agent-clock")).to_contain_text("已持续")
        assert buttons_enabled(page) == {"login": False, "ready": True, "not-ready": True, "logout": True}

        # The supervisor makes the agent ready (the wallboard's 置闲): the bar follows unasked.
        site.on_loop(lambda: site.router.force_ready("2001", time.time()))
        expect(page.locator("#sp-agent-state")).to_have_text("空闲")
        expect(page.locator("#sp-agent-reason-shown")).to_have_text("")

        page.get_by_role("button", name="签出").click()
        expect(page.locator("#sp-agent-state")).to_have_text("已签出")
        expect(page.locator("#sp-alert")).to_be_hidden()
    finally:
        page.context.close()
