"""Start and stop a real `callcenter` process on free ports: for end-to-end tests and benches."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

# A cold start (first migration, TLS key generation) takes well under this on the CI machine.
START_TIMEOUT = 60.0


class ServerProcess:
    def __init__(self, data_dir: Path, *, demo: bool = True, extra_args: list[str] | None = None,
                 bind: str = "127.0.0.1", env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.demo = demo
        self.bind = bind
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log_path = data_dir.parent / f"server-{os.getpid()}-{id(self)}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "callcenter", "demo" if self.demo else "serve",
               "--data", str(self.data_dir), "--bind", self.bind,
               "--sip-port", "0", "--sip-tls-port", "0", "--http-port", "0", *self.extra_args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     env={**os.environ, **self.env}, cwd=Path(__file__).parents[1])
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        buf = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if sel.select(timeout=0.2):
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                buf += chunk
                for line in buf.splitlines():
                    if line.startswith(b"READY "):
                        self.ports = json.loads(line[6:])
                        return
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log()}")

    @property
    def sip_port(self) -> int:
        return self.ports["sip_udp"]

    @property
    def http_url(self) -> str:
        return f"http://{self.bind}:{self.ports['http']}"

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the server's Prometheus /metrics (0 when absent)."""
        import httpx

        text = httpx.get(f"{self.http_url}/metrics", timeout=5).text
        match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code
