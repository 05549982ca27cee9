"""Authenticated REGISTER transactions per second: SIPp against a server this bench starts.

Each SIPp "call" is one full digest registration: REGISTER → 401 challenge → REGISTER with
credentials → 200. So calls per second = authenticated REGISTER/s, and every call costs the
server two transactions, a nonce, a digest verification and a registrar update.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, rss_mb, write_result
from bench.server import ServerProcess
from bench.sipp import run_sipp


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench register")
    parser.add_argument("--rate", type=float, default=2000, help="registrations per second offered")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load")
    # SIPp 3.6.1 takes digest credentials only from -au/-ap, so one extension re-registers under a
    # new Call-ID each time: the same parse, challenge, digest and registrar work per call.
    parser.add_argument("--user", default="1001", help="demo extension that registers")
    parser.add_argument("--transport", default="u1", help="SIPp transport: u1 (UDP) or t1 (TCP)")
    parser.add_argument("--json", type=Path, help="result file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        work = Path(tmp)
        config = work / "bench.toml"
        # Every REGISTER comes from one SIPp address: lift the per-source flood limit far above
        # the offered load so the guard's code runs but never bans the load generator.
        config.write_text(f"demo_crm = false\n[security]\nrate_limit = {int(args.rate * 100)}\nrate_window = 1.0\n")
        server = ServerProcess(work / "data", demo=True, extra_args=["--config", str(config), "--log-level", "WARNING"])
        server.start()
        try:
            calls = int(args.rate * args.duration)
            pid = server.proc.pid  # type: ignore[union-attr]
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            result = run_sipp("register_auth.xml", f"127.0.0.1:{server.sip_port}", work / "sipp",
                              calls=calls, rate=args.rate, transport=args.transport,
                              service=args.user, auth=(args.user, f"demo{args.user}"),
                              timeout=args.duration * 3 + 30,
                              extra=["-l", str(int(args.rate * 2))])
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            rss = rss_mb(pid)
        finally:
            server.stop()

    results = {
        "calls_attempted": calls,
        "calls_ok": result.successful,
        "calls_failed": result.failed,
        "ops_per_s": round(result.successful / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "cpu_pct": round(100 * cpu / elapsed, 1),
        "cpu_ms_per_registration": round(1000 * cpu / max(1, result.successful), 3),
        "rss_peak_mb": round(rss, 1),
    }
    params = {"rate": args.rate, "duration": args.duration, "user": args.user, "transport": args.transport}
    write_result(args.json, "register", params, results)
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
