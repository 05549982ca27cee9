"""The bench's helpers for `bench media`: the native load tools (built from bench/rtpload/*.c and
driven over a line protocol on stdin/stdout) and the /proc probes that tell the relay's share of
a run from the machine's (drops, run-queue waits, real-time budget, interrupt time)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path

from bench.common import CLOCK_TICKS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "bench" / "rtpload"
BUILD = ROOT / "build" / "rtpload"      # build/ is git-ignored

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


async def start_tool(binary: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(binary), *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=PIPE_LIMIT
    )


async def send_line(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write((line + "\n").encode())
    await proc.stdin.drain()


async def read_ports(proc: asyncio.subprocess.Process, count: int, timeout: float = 60.0) -> list[int]:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().split()
    if not line or line[0] != "PORTS" or len(line) != count + 1:
        raise RuntimeError(f"load tool did not report {count} ports: {' '.join(line[:5])}...")
    return [int(p) for p in line[1:]]


async def read_json(proc: asyncio.subprocess.Process, timeout: float) -> dict:
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


def make_realtime(pid: int, priority: int) -> bool:
    """Run the generator as a SCHED_FIFO process if asked and allowed. On a machine shared with
    other work, a generator at normal priority falls behind its schedule, then sends what is
    due in one burst, and the relay's queueing of that burst shows up as relay jitter; at real-
    time priority it keeps its 1 ms clock and the figures measure the relay."""
    if priority <= 0:
        return False
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        return False
    return True


def runqueue_wait_seconds(pid: int, tid: int | None = None) -> float:
    """Time the task waited on a run queue, runnable but not running (field 2 of schedstat,
    proc(5)): one thread, or every thread of the process."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue    # a thread that ended, or a kernel without schedstat
    return total / 1e9


def rt_budget() -> str:
    """The kernel's real-time throttling budget (sched-rt-group(7)): runtime/period in µs."""
    try:
        runtime = Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip()
        period = Path("/proc/sys/kernel/sched_rt_period_us").read_text().strip()
    except OSError:
        return "unknown"
    return f"{runtime}/{period}"


def system_cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds of the whole machine since boot from /proc/stat (proc(5)): time in tasks,
    time in interrupts (where the kernel delivers loopback datagrams; listed apart here, though
    a task's own utime+stime includes the interrupts that ran during it), and time stolen by
    the hypervisor."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system) / CLOCK_TICKS, (irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS
