"""The supervisor's wallboard in Chromium follows agents who log in and take a break from their
desk phones (SIPp dialling feature codes) within a second or two."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, expect

from bench.server import ServerProcess
from bench.sipp import free_port, run_sipp
from tests.browser.test_pages import ARTIFACTS, sign_in

QUEUE = """
[[queues]]
number = "8100"
name = "售后热线"
strategy = "ringall"
members = ["1001", "1002"]
"""



def dial(server: ServerProcess, workdir: Path, extension: str, code: str) -> None:
    result = run_sipp("uac_feature.xml", f"127.0.0.1:{server.sip_port}", workdir, service=code,
                      auth=(extension, f"demo{extension}"),
                      keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=20)
    assert result.successful == 1, result.output


def test_wallboard_shows_agents_logging_in_and_taking_a_break(tmp_path: Path, browser: Browser) -> None:
    config = tmp_path / "queues.toml"
    config.write_text(QUEUE)
    server = ServerProcess(tmp_path / "data", extra_args=["--config", str(config)],
                           env={"CALLCENTER_ADMIN_PASSWORD": "s3cret-admin-pw"})
    server.start()
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        for _ in range(100):  # the supervisor's account comes with the demo data
            if "demo data seeded" in server.log():
                break
            page.wait_for_timeout(100)
        sign_in(page, server, user="supervisor1", password="demo1234")
        page.get_by_role("link", name="实时监控").click()
        queue_row = page.locator("#wb-queues tr").first
        expect(queue_row).to_contain_text("售后热线 (8100)")
        agent = page.locator("tr.agent-1001")
        expect(agent).to_contain_text("未登录")
        dial(server, tmp_path / "login", "1001", "*61")
        expect(agent).to_contain_text("空闲", timeout=3000)
        expect(queue_row.locator("td").last).to_have_text("1")  # one agent ready
        dial(server, tmp_path / "break", "1001", "*63")
        expect(agent).to_contain_text(re.compile("示忙 · 休息"), timeout=3000)
        page.screenshot(path=str(ARTIFACTS / "wallboard.png"))
    finally:
        server.stop()
