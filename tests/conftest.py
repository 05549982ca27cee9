"""Fixtures shared by the whole suite: a real server process on free ports in a temp data dir."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.server import ServerProcess  # noqa: E402


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """`callcenter demo` in its own process, data in a temp dir, killed at the end even on failure."""
    server = ServerProcess(tmp_path / "data", demo=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Peer processes (SIPp, baresip) a test starts: killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
