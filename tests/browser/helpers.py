"""What the browser tests share: Debian's Chromium, the demo server waited on until its data is
seeded, and signing in through the login form. Not a test module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page

from bench.server import ServerProcess

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: The size the product is checked at (a common office laptop).
VIEWPORT = {"width": 1366, "height": 768}


@contextmanager
def demo_server(data: Path, admin_password: str, seed_timeout: float = 60.0) -> Iterator[ServerProcess]:
    """`callcenter demo` on free ports in `data`, once its demo data is seeded (or the timeout
    passed: the tests then fail on what is missing, with the server's log)."""
    proc = ServerProcess(data, env={"CALLCENTER_ADMIN_PASSWORD": admin_password})
    proc.start()
    try:
        deadline = time.monotonic() + seed_timeout
        while "demo data seeded" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield proc
    finally:
        proc.stop()


def sign_in(browser: Browser, base_url: str, user: str, password: str, **context: object) -> Page:
    """A new browser context signed in as `user` through the login form."""
    page = browser.new_context(viewport=VIEWPORT, **context).new_page()  # type: ignore[arg-type]
    page.goto(f"{base_url}/login")
    page.get_by_label("用户名").fill(user)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    return page
