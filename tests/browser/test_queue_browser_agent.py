"""A queue served by desk phones and a browser agent, end to end with real peers: a `callcenter
demo` process whose queue (rrmemory) has six members — five desk phones (SIPp uas with
auto-answer, registered, logged in with *61) and agent1 in Chromium, signed in to the softphone
page and answering there each call that rings it. Twelve SIPp callers ring the queue one after
another: the distribution goes round all six in member order, the browser agent's turns ring its
page and it takes them, and the queue log and CDRs say so."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from tests.browser.helpers import CHROMIUM, FLAGS, VIEWPORT

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]

BROWSER_AGENT, DESK_AGENTS = "1001", ["1002", "1003", "1004", "1005", "1006"]
MEMBERS = [BROWSER_AGENT, *DESK_AGENTS]
CALLERS = 2 * len(MEMBERS)
QUEUE = "\n".join(["[[queues]]", 'number = "8100"', 'strategy = "rrmemory"',
                   f"members = {MEMBERS!r}".replace("'", '"'), "wrapuptime = 0", "ring_timeout = 10", ""])
MEDIA_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--autoplay-policy=no-user-gesture-required"]


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    config = tmp_path / "queue.toml"
    config.write_text(QUEUE)
    proc = ServerProcess(tmp_path / "data", extra_args=["--config", str(config)])
    proc.start()
    try:
        # The demo's web users (agent1 = 1001) exist once its organisation is seeded.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not rows(proc.data_dir / "callcenter.db",
                                                       "SELECT 1 FROM users WHERE username = 'agent1'"):
            time.sleep(0.2)
        yield proc
    finally:
        proc.stop()



def test_callers_go_round_five_desk_phones_and_a_browser_agent_who_answers_in_the_page(
        server: ServerProcess, tmp_path: Path, procs: list) -> None:  # type: ignore[type-arg]
    target = f"127.0.0.1:{server.sip_port}"
    for extension in DESK_AGENTS:
        port, workdir = free_port("127.0.0.1"), tmp_path / f"agent{extension}"
        workdir.mkdir()
        procs.append(subprocess.Popen(
            sipp_command("uas_answer.xml", target, local_port=port, calls=CALLERS, timeout=120,
                         keys={"rtp_port": str(free_port("127.0.0.1"))}),
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        reg = run_sipp("register_contact.xml", target, tmp_path / f"reg{extension}", service=extension,
                       auth=(extension, f"demo{extension}"), keys={"contact_port": str(port)}, timeout=20)
        assert reg.successful == 1, reg.output
    for extension in MEMBERS:   # each agent logs in to the queue with *61 (the browser agent too)
        login = run_sipp("uac_feature.xml", target, tmp_path / f"login{extension}", service="*61",
                         auth=(extension, f"demo{extension}"),
                         keys={"caller": extension, "rtp_port": str(free_port("127.0.0.1"))}, timeout=20)
        assert login.successful == 1, login.output

    answered = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *MEDIA_FLAGS])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{server.http_url}/login")
            page.get_by_label("用户名").fill("agent1")
            page.get_by_label("密码").fill("demo1234")
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(f"{server.http_url}/")
            page.goto(f"{server.http_url}/softphone")
            expect(page.locator("#softphone")).to_have_attribute("data-registered", "true", timeout=10_000)

            # The callers, one at a time (-l 1): each talks 1 s and hangs up.
            workdir = tmp_path / "callers"
            workdir.mkdir()
            callers = subprocess.Popen(
                sipp_command("uac_call.xml", target, service="8100", calls=CALLERS, rate=2, timeout=120,
                             auth=("1010", "demo1010"),
                             keys={"caller": "1010", "rtp_port": str(free_port("127.0.0.1"))},
                             extra=["-d", "1000", "-l", "1"]),
                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(callers)
            deadline = time.monotonic() + 120
            while callers.poll() is None and time.monotonic() < deadline:
                # The agent answers whatever rings the page: the caller's number is shown.
                if page.locator("#sp-incoming").is_visible():
                    expect(page.locator("#sp-incoming-number")).to_contain_text("1010")
                    page.locator("#sp-answer").click()
                    answered += 1
                    expect(page.locator("#sp-call-state")).to_have_text("通话中", timeout=10_000)
                page.wait_for_timeout(50)
            out, _ = callers.communicate(timeout=10)
            result = read_result(workdir, callers.returncode, out)
            assert result.successful == CALLERS, result.output + server.log()[-3000:]
        finally:
            browser.close()

    db = server.data_dir / "callcenter.db"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(rows(db, "SELECT 1 FROM cdr WHERE callee = '8100'")) < CALLERS:
        time.sleep(0.1)
    log = rows(db, "SELECT agent, event FROM queue_log WHERE queue = '8100' ORDER BY id")
    order = [r["agent"] for r in log if r["event"] == "CONNECT"]
    assert order == MEMBERS * 2, order   # round all six in member order, twice
    assert not [r for r in log if r["event"] == "RINGNOANSWER"], "every offer was answered"
    cdrs = rows(db, "SELECT answered_by, disposition FROM cdr WHERE callee = '8100'")
    assert Counter(r["answered_by"] for r in cdrs) == Counter(order)
    assert {r["disposition"] for r in cdrs} == {"ANSWERED"}
    assert answered == 2, "the browser agent answered its two turns in the page"
    assert httpx.get(f"{server.http_url}/healthz", timeout=5).status_code == 200
