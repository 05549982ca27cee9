"""`python -m bench media`: N bidirectional G.711 calls relayed by the media engine.

The engine runs in this process (an engine-only bench drives mediacore directly); the load comes
from `bench/rtpload/rtpload.c`, a native generator in its own process that sends 2N streams of
50 packets/s with 160-byte payloads, receives the relayed packets and measures loss and the delay
variation the relay adds. With `--baseline` the same load also goes through
`bench/rtpload/barerelay.c`, a bare recvmmsg/sendmmsg relay that does no RTP work at all: the
physical limit of this machine, against which the engine's CPU per packet is compared.

    python -m bench media --calls 1000 --duration 20 --baseline --json OUT.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CLOCK_TICKS, cpu_seconds, machine_info, rss_mb, thread_cpu_seconds, write_result
from bench.rtpengine import RtpEngine
from mediacore import MediaEngine

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "bench" / "rtpload"
BUILD = ROOT / "build" / "rtpload"      # build/ is git-ignored
# Goal of the issue on the 2-core reference machine.
GOAL_CALLS, GOAL_LOSS_PCT, GOAL_JITTER_P99_MS = 1000, 0.1, 2.0
# The generator sends each packet within this of its schedule, or the run is not a valid one.
GENERATOR_LAG_LIMIT_MS = 5.0
# Generous: the protocol lines hold one port number per stream.
PIPE_LIMIT = 1 << 22


def build_tool(name: str) -> Path:
    """Compile bench/rtpload/NAME.c with `cc -O2` once per source version."""
    source = SOURCES / f"{name}.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = BUILD / f"{name}-{digest}"
    if not binary.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".tmp")
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(partial), str(source)], check=True)
        partial.rename(binary)
    return binary


async def _start(binary: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(binary), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=PIPE_LIMIT
    )


async def _send_line(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write((line + "\n").encode())
    await proc.stdin.drain()


async def _read_ports(proc: asyncio.subprocess.Process, count: int, timeout: float = 60.0) -> list[int]:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().split()
    if not line or line[0] != "PORTS" or len(line) != count + 1:
        raise RuntimeError(f"load tool did not report {count} ports: {' '.join(line[:5])}...")
    return [int(p) for p in line[1:]]


async def _read_json(proc: asyncio.subprocess.Process, timeout: float) -> dict:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"load tool exited with status {await proc.wait()} before reporting")
    return json.loads(line)


def udp_socket_drops(ports: set[int]) -> int:
    """Datagrams the kernel dropped on full receive buffers of the IPv4 UDP sockets bound to
    `ports` (the `drops` column of /proc/net/udp): tells loss at the relay from loss at the
    generator."""
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                total += int(fields[-1])
    return total


def system_cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds of the whole machine since boot from /proc/stat (proc(5)): time in tasks,
    time in interrupts (where the kernel delivers loopback datagrams; listed apart here, though
    a task's own utime+stime includes the interrupts that ran during it), and time stolen by
    the hypervisor."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system) / CLOCK_TICKS, (irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


async def _measure(
    args: argparse.Namespace, targets: list[int], configure, cpu_probe, relay_pid: int | None = None
) -> tuple[dict, float, float]:
    """Run the generator against `targets`; `configure(generator_ports)` points the relay back.
    Returns the generator's results (with the machine's load in the window added), the relay's
    CPU seconds and the wall time of the window."""
    generator = await _start(
        build_tool("rtpload"),
        *("--calls", str(args.calls), "--duration", str(args.duration)),
        *("--host", args.bind, "--sockets", str(args.generator_sockets)),
        *("--pt-b", "8" if args.transcode else "0"),
    )
    try:
        await _send_line(generator, "TARGETS " + " ".join(map(str, targets)))
        ports = await _read_ports(generator, 2 * args.calls)
        await configure(ports)
        await _send_line(generator, "GO")
        # Ours: this process (engine or idle harness), the generator, and a separate relay.
        ours = [os.getpid(), generator.pid] + ([relay_pid] if relay_pid else [])

        def probe() -> tuple[float, float, float, tuple[float, float, float], float]:
            return (cpu_probe(), cpu_seconds(generator.pid), sum(map(cpu_seconds, ours)), system_cpu_seconds(),
                    time.monotonic())

        cpu0, gen0, ours0, sys0, wall0 = probe()
        await asyncio.sleep(args.duration)
        cpu1, gen1, ours1, sys1, wall1 = probe()
        result = await _read_json(generator, timeout=args.duration + 60)
        result["relay_socket_drops"] = udp_socket_drops(set(targets))
        result["generator_socket_drops"] = udp_socket_drops(set(ports))
        await generator.wait()
    finally:
        if generator.returncode is None:
            generator.kill()
            await generator.wait()
    wall = wall1 - wall0
    for key in ("calls", "streams", "duration_s", "generator_sockets"):   # already in params
        result.pop(key, None)
    # The machine is shared: CPU that neither the relay nor the generator used is other load,
    # and a generator that fell behind its schedule makes the run's figures meaningless.
    result["generator_cpu_pct"] = round(100 * (gen1 - gen0) / wall, 1)
    # Per-task times include the interrupt time spent during the task's system calls (here:
    # delivering loopback datagrams), which /proc/stat reports apart from task time.
    busy = (sys1[0] - sys0[0]) + (sys1[1] - sys0[1])
    result["other_load_cpu_pct"] = round(100 * max(0.0, busy - (ours1 - ours0)) / wall, 1)
    result["interrupt_cpu_pct"] = round(100 * (sys1[1] - sys0[1]) / wall, 1)
    result["steal_cpu_pct"] = round(100 * (sys1[2] - sys0[2]) / wall, 1)
    result["generator_overloaded"] = result["send_lag_p99_ms"] > GENERATOR_LAG_LIMIT_MS
    return result, cpu1 - cpu0, wall


async def _run_engine(args: argparse.Namespace) -> dict:
    engine = MediaEngine(args.bind, args.port_min, args.port_max)
    await engine.start()
    try:
        legs = []
        for _ in range(args.calls):
            legs.append(engine.create_endpoint("PCMU", 0))
            legs.append(engine.create_endpoint(*(("PCMA", 8) if args.transcode else ("PCMU", 0))))

        async def configure(ports: list[int]) -> None:
            for leg, port in zip(legs, ports, strict=True):
                engine.set_remote(leg, args.bind, port)
            for i in range(0, len(legs), 2):
                engine.connect(legs[i], legs[i + 1])

        tid = engine.engine_thread_id
        process_cpu = [0.0]

        def engine_cpu() -> float:
            process_cpu[0] = cpu_seconds(os.getpid())
            return thread_cpu_seconds(os.getpid(), tid)

        engine_cpu()
        process0 = process_cpu[0]
        result, cpu, wall = await _measure(args, [leg.local_port for leg in legs], configure, engine_cpu)
        process = process_cpu[0] - process0
        totals = [engine.stats(leg) for leg in legs]
        relayed = sum(s.packets_out for s in totals)
        result.update(
            packets_relayed=relayed,
            engine_malformed=sum(s.malformed for s in totals),
            engine_dropped=sum(s.dropped for s in totals),
            engine_send_errors=sum(s.send_errors for s in totals),
            cpu_pct=round(100 * process / wall, 1),
            engine_cpu_pct=round(100 * cpu / wall, 1),
            cpu_us_per_packet=round(1e6 * cpu / relayed, 3) if relayed else None,
            rss_peak_mb=round(rss_mb(os.getpid()), 1),
        )
        return result
    finally:
        engine.close()


async def _run_baseline(args: argparse.Namespace) -> dict:
    relay = await _start(build_tool("barerelay"), "--pairs", str(args.calls), "--host", args.bind)
    try:
        relay_ports = await _read_ports(relay, 2 * args.calls)

        async def configure(ports: list[int]) -> None:
            await _send_line(relay, "DEST " + " ".join(map(str, ports)))

        result, cpu, wall = await _measure(
            args, relay_ports, configure, lambda: cpu_seconds(relay.pid), relay.pid
        )
        peak = rss_mb(relay.pid)
        await _send_line(relay, "STOP")
        relayed = (await _read_json(relay, timeout=30))["packets_relayed"]
        result.update(
            packets_relayed=relayed,
            cpu_pct=round(100 * cpu / wall, 1),
            cpu_us_per_packet=round(1e6 * cpu / relayed, 3) if relayed else None,
            rss_peak_mb=round(peak, 1),
        )
        return result
    finally:
        if relay.returncode is None:
            relay.kill()
            await relay.wait()


async def _run_rtpengine(args: argparse.Namespace) -> dict:
    rtpengine = RtpEngine(args.bind, args.port_min, args.port_max)
    await rtpengine.start()
    try:
        assert rtpengine.proc is not None
        # Placeholder far ends (the discard port): the generator needs rtpengine's ports before
        # it tells us its own, and rtpengine (immediate endpoint learning) then sends each
        # stream back to where its packets come from, as it does for phones behind NAT.
        relay_ports: list[int] = []
        for i in range(args.calls):
            relay_ports += await rtpengine.call(f"bench-{i}", 9, 9)

        async def configure(ports: list[int]) -> None:
            pass

        pid = rtpengine.proc.pid
        result, cpu, wall = await _measure(args, relay_ports, configure, lambda: cpu_seconds(pid), pid)
        relayed = result["packets_received"]    # rtpengine keeps no per-run count; what arrived
        result.update(
            packets_relayed=relayed,
            cpu_pct=round(100 * cpu / wall, 1),
            cpu_us_per_packet=round(1e6 * cpu / relayed, 3) if relayed else None,
            rss_peak_mb=round(rss_mb(pid), 1),
            forwarding="userspace (--table=-1)",
        )
        return result
    finally:
        await rtpengine.stop()


async def _run(args: argparse.Namespace) -> dict:
    engine = await _run_engine(args)
    results = {
        "calls_attempted": args.calls,
        **{k: engine.pop(k) for k in ("calls_ok", "rtp_loss_pct", "jitter_p50_ms", "jitter_p99_ms")},
        **engine,
    }
    if args.baseline:
        baseline = await _run_baseline(args)
        results["baseline"] = baseline
        if baseline["cpu_us_per_packet"] and results["cpu_us_per_packet"]:
            results["ratio_to_baseline"] = round(results["cpu_us_per_packet"] / baseline["cpu_us_per_packet"], 2)
    if args.rtpengine:
        reference = await _run_rtpengine(args)
        results["rtpengine"] = reference
        if reference["cpu_us_per_packet"] and results["cpu_us_per_packet"]:
            results["ratio_to_rtpengine"] = round(results["cpu_us_per_packet"] / reference["cpu_us_per_packet"], 2)
    results["goal_met"] = (
        args.calls >= GOAL_CALLS
        and results["rtp_loss_pct"] < GOAL_LOSS_PCT
        and results["jitter_p99_ms"] < GOAL_JITTER_P99_MS
        and not results["generator_overloaded"]
    )
    return {
        "scenario": "media",
        "params": {
            "calls": args.calls,
            "streams": 2 * args.calls,
            "duration_s": args.duration,
            "packets_per_s_per_stream": 50,
            "payload_bytes": 160,
            "codecs": "PCMU/PCMA (transcoding)" if args.transcode else "PCMU/PCMU",
            "generator_sockets": args.generator_sockets,
            "bind": args.bind,
            "rtp_ports": f"{args.port_min}-{args.port_max}",
            "baseline": args.baseline,
            "rtpengine": args.rtpengine,
        },
        "results": results,
        "machine": machine_info(),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench media", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200, help="bidirectional calls (2 streams each)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--baseline", action="store_true", help="also measure the bare C relay")
    p.add_argument("--rtpengine", action="store_true",
                   help="also relay the same load through rtpengine (Debian rtpengine-daemon), userspace")
    p.add_argument("--transcode", action="store_true", help="µ-law on one leg, A-law on the other")
    # Two sockets (all A legs' far ends on one, all B legs' on the other, like two media
    # gateways) cost the generator, and the relay's wake-ups of it, least: on 2 cores the
    # generator competes with the engine for CPU. 2*calls gives one socket per stream.
    p.add_argument(
        "--generator-sockets",
        type=int,
        default=2,
        help="sockets the generator's streams share (2*calls: one per stream, like real phones)",
    )
    p.add_argument("--bind", default="127.0.0.1")
    # Below the ephemeral ports (32768-60999) the generator's sockets use, and apart from the
    # server's default 10000-19999 so a running dev server does not interfere.
    p.add_argument("--port-min", type=int, default=20000)
    p.add_argument("--port-max", type=int, default=29999)
    p.add_argument("--json", metavar="OUT", help="write the result object to this file")
    return p


def run(args: argparse.Namespace) -> dict:
    """Run the scenario and return the result object (ARCHITECTURE.md, "Bench")."""
    if args.calls < 1 or args.duration <= 0:
        raise SystemExit("--calls must be >= 1 and --duration > 0")
    if 4 * args.calls > args.port_max - args.port_min + 1:
        raise SystemExit(f"{args.calls} calls need {4 * args.calls} RTP ports; widen --port-min/--port-max")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(args))
    return uvloop.run(_run(args))


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    result = run(args)
    write_result(Path(args.json) if args.json else None, result["scenario"], result["params"], result["results"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
