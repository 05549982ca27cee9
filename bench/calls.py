"""Calls through the B2BUA with media: `python -m bench cps` and `python -m bench concurrent`.

SIPp as extension 1001 calls extension 1002 (a SIPp uas registered on its behalf, echoing
RTP) through a server this bench starts. Every call: INVITE → 407 → INVITE with credentials →
180 → 200 → ACK, RTP from a looped G.711 tone for the call's duration, BYE. The CDR table of
the server afterwards gives each call's disposition and RTP loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.common import cpu_seconds, rss_mb, thread_cpu_seconds, write_result
from bench.server import ServerProcess
from bench.sipp import free_port, read_result, run_sipp, sipp_command
from callcenter.database import open_database

# SIPp's RTP echo socket drops packets at a few hundred concurrent calls with the default
# ~200 KB receive buffer (shared/ENVIRONMENT.md); raised for the run when we may.
RMEM_FOR_LOAD = 4 * 1024 * 1024


def write_tone(path: Path, seconds: float = 2.0) -> None:
    import audioop  # deprecated, but present in 3.11: only used to make the tone

    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (6000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()
    path.write_bytes(audioop.lin2ulaw(pcm, 2))


@contextlib.contextmanager
def receive_buffers(size: int) -> Iterator[None]:
    sysctl = Path("/proc/sys/net/core/rmem_default")
    try:
        before = sysctl.read_text().strip()
        sysctl.write_text(str(size))
    except OSError:
        yield  # not root: run with what we have (the result says so)
        return
    try:
        yield
    finally:
        sysctl.write_text(before)


async def _cdr_summary(db: Path) -> dict[str, float]:
    conn = await open_database(db)
    try:
        async with conn.execute(
            "SELECT COUNT(*), SUM(disposition = 'ANSWERED'), AVG(rtp_loss_pct), MAX(rtp_loss_pct) FROM cdr"
        ) as cur:
            count, answered, loss_avg, loss_max = await cur.fetchone()
    finally:
        await conn.close()
    return {"cdr_count": count or 0, "cdr_answered": answered or 0,
            "rtp_loss_pct": round(loss_avg or 0.0, 4), "rtp_loss_max_pct": round(loss_max or 0.0, 4)}


def run(rate: float, calls: int, duration_ms: int, limit: int, scenario: str, profile: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{scenario}-") as tmp, receive_buffers(RMEM_FOR_LOAD):
        work = Path(tmp)
        config = work / "bench.toml"
        config.write_text(f"demo_crm = false\n[security]\nrate_limit = {int(max(rate, 10) * 1000)}\nrate_window = 1.0\n")
        extra = ["--config", str(config), "--log-level", "WARNING"]
        if profile is not None:
            extra += ["--profile", str(profile.resolve())]
        server = ServerProcess(work / "data", extra_args=extra)
        server.start()
        target = f"127.0.0.1:{server.sip_port}"
        uas_dir, uac_dir = work / "uas", work / "uac"
        uas_dir.mkdir()
        uac_dir.mkdir()
        write_tone(uac_dir / "tone.ulaw")
        uas_port, echo_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        wall = duration_ms / 1000 + calls / rate + 60
        uas = subprocess.Popen(
            sipp_command("uas_answer.xml", target, local_port=uas_port, calls=calls, timeout=wall,
                         keys={"rtp_port": str(echo_port)},
                         extra=["-mp", str(echo_port), "-mi", "127.0.0.1", "-rtp_echo"]),
            cwd=uas_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            reg = run_sipp("register_contact.xml", target, work / "reg", service="1002",
                           auth=("1002", "demo1002"), keys={"contact_port": str(uas_port)}, timeout=20)
            if reg.successful != 1:
                raise RuntimeError(f"the callee did not register:\n{reg.output}")
            pid = server.proc.pid  # type: ignore[union-attr]
            cpu0, loop0, t0 = cpu_seconds(pid), thread_cpu_seconds(pid, pid), time.monotonic()
            uac = run_sipp("uac_load.xml", target, uac_dir, calls=calls, rate=rate, service="1002",
                           auth=("1001", "demo1001"), keys={"caller": "1001"}, timeout=wall,
                           extra=["-d", str(duration_ms), "-l", str(limit), "-mp", str(free_port("127.0.0.1")),
                                  "-mi", "127.0.0.1"])
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            loop_cpu = thread_cpu_seconds(pid, pid) - loop0
            rss = rss_mb(pid)
            uas.wait(timeout=60)
        finally:
            if uas.poll() is None:
                uas.kill()
            uas_out = uas.communicate()[0] if uas.stdout else b""
            server.stop()
        uas_result = read_result(uas_dir, uas.returncode or 0, uas_out)
        cdr = asyncio.run(_cdr_summary(work / "data" / "callcenter.db"))
    return {
        "calls_attempted": calls,
        "calls_ok": uac.successful,
        "calls_failed": uac.failed,
        "callee_calls_ok": uas_result.successful,
        "cps": round(uac.successful / max(elapsed - duration_ms / 1000, 0.001), 1),
        "concurrent_peak": min(limit, int(rate * duration_ms / 1000) + 1),
        "cpu_pct": round(100 * cpu / elapsed, 1),
        "cpu_ms_per_call": round(1000 * cpu / max(1, uac.successful), 3),
        # The event loop (SIP, call control) apart from the media engine and database threads.
        "loop_cpu_pct": round(100 * loop_cpu / elapsed, 1),
        "loop_cpu_ms_per_call": round(1000 * loop_cpu / max(1, uac.successful), 3),
        "rss_peak_mb": round(rss, 1),
        "elapsed_s": round(elapsed, 2),
        **cdr,
    }


def main_for(scenario: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench {scenario}")
    if scenario == "cps":
        parser.add_argument("--rate", type=float, default=100, help="new calls per second")
        parser.add_argument("--duration", type=float, default=10, help="seconds of offered load")
        parser.add_argument("--hold", type=float, default=2, help="seconds each call lasts")
    else:
        parser.add_argument("--calls", type=int, default=200, help="calls up at the same time")
        parser.add_argument("--hold", type=float, default=60, help="seconds each call lasts")
        parser.add_argument("--rate", type=float, default=50, help="calls per second while ramping up")
    parser.add_argument("--json", type=Path, help="result file")
    parser.add_argument("--profile", type=Path, help="also write the server's cProfile statistics here")
    args = parser.parse_args(argv)
    if scenario == "cps":
        calls, limit = int(args.rate * args.duration), int(args.rate * (args.hold + 5)) + 10
        params = {"rate": args.rate, "duration": args.duration, "hold": args.hold}
    else:
        calls, limit = args.calls, args.calls
        params = {"calls": args.calls, "hold": args.hold, "rate": args.rate}
    results = run(args.rate, calls, int(args.hold * 1000), limit, scenario, args.profile)
    write_result(args.json, scenario, params, results)
    return 0 if results["calls_failed"] == 0 else 1


def main_cps(argv: list[str]) -> int:
    return main_for("cps", argv)


def main_concurrent(argv: list[str]) -> int:
    return main_for("concurrent", argv)
