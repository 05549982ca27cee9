"""A `callcenter demo` server process with the test's own configuration, ready once its web users
exist (the demo's organisation is seeded first, its members later), for the tests that sign
agents in over the web and read what the server wrote. Imported by the tests (no test_ prefix)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.server import ServerProcess

#: The last demo user seeded: once it exists, every agent can sign in.
LAST_DEMO_USER = "agent5"


def rows(db: Path, sql: str) -> list[dict[str, Any]]:
    """Rows the server wrote, read without an event loop (the tests' loop runs the browsers)."""
    conn = sqlite3.connect(db, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@contextmanager
def seeded_server(root: Path, config_text: str, *, timeout: float = 60.0) -> Iterator[ServerProcess]:
    """Start the server on free ports with `config_text` as its TOML; stopped even on failure."""
    config = root / "server.toml"
    config.write_text(config_text)
    server = ServerProcess(root / "data", extra_args=["--config", str(config)])
    server.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and httpx.get(f"{server.http_url}/login", timeout=5).status_code != 200:
            time.sleep(0.1)
        while time.monotonic() < deadline and not rows(
                server.data_dir / "callcenter.db", f"SELECT 1 FROM users WHERE username = '{LAST_DEMO_USER}'"):
            time.sleep(0.2)
        yield server
    finally:
        server.stop()
