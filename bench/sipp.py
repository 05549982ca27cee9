"""Run SIPp (Debian's sip-tester) as a real peer and read its outcome; used by tests and benches."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on `host`: SIPp puts its own port into Via and Contact,
    and with `-p 0` it would write 5060 there instead of the port it really got."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError("no free port")


def sipp_command(scenario: str, target: str, *, calls: int = 1, rate: float = 10,
             transport: str = "u1", local_ip: str = "127.0.0.1", service: str | None = None,
             auth: tuple[str, str] | None = None, timeout: float = 60,
             keys: dict[str, str] | None = None, local_port: int | None = None,
             extra: list[str] | None = None) -> list[str]:
    """The SIPp command line for one scenario (it stops by itself after `calls` calls).

    `service` fills the scenario's [service] (the extension); `auth` is the digest user and
    password that `[authentication]` answers challenges with; `keys` fill custom [keywords]."""
    cmd = ["sipp", target, "-sf", str(SCENARIOS / scenario), "-m", str(calls), "-r", str(rate),
           "-t", transport, "-i", local_ip, "-p", str(local_port or free_port(local_ip)), "-nostdin",
           "-trace_stat", "-stf", "stat.csv", "-trace_err", "-timeout", f"{int(timeout)}s",
           "-timeout_error", "-max_retrans", "3", "-nd"]
    if service is not None:
        cmd += ["-s", service]
    if auth is not None:
        cmd += ["-au", auth[0], "-ap", auth[1]]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, value]
    cmd += extra or []
    return cmd


def run_sipp(scenario: str, target: str, workdir: Path, *, timeout: float = 60, **options: Any) -> SippResult:
    """Run one SIPp scenario to completion in `workdir`; options as for `sipp_command`."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = sipp_command(scenario, target, timeout=timeout, **options)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout + 30)
    return read_result(workdir, proc.returncode, proc.stdout + proc.stderr)


def read_result(workdir: Path, returncode: int, output: bytes) -> SippResult:
    """What a finished SIPp run in `workdir` achieved, from its -trace_stat CSV and error log."""
    successful = failed = 0
    stat = workdir / "stat.csv"
    if stat.exists():
        rows = list(csv.reader(stat.read_text().splitlines(), delimiter=";"))
        if len(rows) >= 2:
            header, last = rows[0], rows[-1]
            successful = int(last[header.index("SuccessfulCall(C)")])
            failed = int(last[header.index("FailedCall(C)")])
    errors = "".join(p.read_text(errors="replace")[-3000:] for p in workdir.glob("*_errors.log"))
    return SippResult(returncode, successful, failed, output.decode(errors="replace")[-4000:] + errors)
