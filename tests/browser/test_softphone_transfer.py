"""The softphone's Transfer control in Chromium, against a real server with real SIP phones
(SIPp): a customer calls browser agent 2001, who answers in the page, types a number that does
not exist and presses Transfer (the page says why it failed, the customer is still on the line),
then transfers to desk phone 1003, which answers: the page shows the call ended as transferred.

The server, its seeded agents and the phones are those of tests/webui/test_softphone_transfer."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from bench.sipp import free_port, read_result, sipp_command
from tests.browser.helpers import CHROMIUM, FLAGS
from tests.browser.test_pages import ARTIFACTS
from tests.webui.test_softphone_transfer import CALLER, PASSWORD, TARGET, Site, serve

pytestmark = [pytest.mark.peers, pytest.mark.timeout(90)]

MEDIA_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path) as served:
        yield served


@pytest.fixture
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *MEDIA_FLAGS])
        try:
            yield browser
        finally:
            browser.close()


def test_the_agent_transfers_a_customer_from_the_page_and_is_told_when_it_fails(site: Site, chromium: Browser) -> None:
    customer: subprocess.Popen[bytes] | None = None
    try:
        site.phone(TARGET, "uas_answer.xml", free_port("127.0.0.1"))
        page = chromium.new_page(viewport={"width": 1366, "height": 900})
        base = site.server.http_url
        page.goto(f"{base}/login")
        page.get_by_label("用户名").fill("agent1")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/softphone")
        expect(page.locator("#softphone")).to_have_attribute("data-registered", "true", timeout=10_000)

        workdir = site.tmp / f"page-caller-{time.monotonic_ns()}"
        workdir.mkdir()
        customer = subprocess.Popen(
            sipp_command("uac_call.xml", site.target, service="2001", auth=(CALLER, f"demo{CALLER}"), timeout=60,
                         keys={"caller": CALLER, "rtp_port": str(free_port("127.0.0.1"))}, extra=["-d", "8000"]),
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        expect(page.locator("#sp-incoming")).to_be_visible(timeout=15_000)
        expect(page.locator("#sp-incoming-number")).to_contain_text(CALLER)
        page.locator("#sp-answer").click()
        expect(page.locator("#sp-call-state")).to_have_text("通话中")

        # A number that does not exist: the page says so and the customer stays with the agent.
        page.get_by_label("转接号码").fill("1999")
        page.get_by_role("button", name="直接转接").click()
        expect(page.get_by_role("alert")).to_contain_text("转接到 1999 失败（号码不存在）")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "softphone-transfer.png"))
        expect(page.locator("#sp-call")).to_be_visible()
        expect(page.locator("#sp-call-state")).to_have_text("通话中")

        page.get_by_label("转接号码").fill(TARGET)
        page.get_by_role("button", name="直接转接").click()
        expect(page.locator("#sp-status")).to_contain_text("已转接", timeout=15_000)
        expect(page.locator("#sp-call")).to_be_hidden()

        out, _ = customer.communicate(timeout=30)   # the customer talked to 1003 and hung up
        assert read_result(workdir, customer.returncode, out).successful == 1, out
        assert site.phone_done(TARGET) == 1
    finally:
        if customer is not None and customer.poll() is None:
            customer.kill()
            customer.wait()
        for proc, _ in site.phones.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        site.phones.clear()
