"""Browser agents talking to SIP callers: `python -m bench webrtc --agents 20 --duration 60 --json OUT`.

Issue #7: "Audio must not stall the event loop: measure loop lag while 20 agents talk."

The bench starts a real server (bench.server) on private ports with N agent users (extensions
2001.., signed in through the login form like the softphone page) and one SIP caller extension.
N browser-style agents (aiortc peers, `bench.webrtc_clients`, spread over a few processes of
the bench) register over /ws/agent; SIPp as the caller dials each agent's extension (PCMU
only, like a G.711 trunk) with the RTP of each call on a socket of the bench itself, which sends
caller i a tone of its own and measures what comes back. Every agent answers, its "microphone"
sending another tone. Once every call is up, for `--duration` seconds:

- agent -> caller: RTP packets at the caller's socket (sequence gaps: loss; RFC 3550 §A.8
  interarrival jitter from the kernel's receive timestamps; the agent's tone must arrive);
- caller -> agent: frames decoded by the agent's browser and its receiver's RTP counters (the
  caller's tone must arrive);
- the server's event loop lag (its /metrics histogram, callcenter.looplag) and the CPU of the
  server process and of its WebRTC worker processes, per agent call (/proc).

`--workers 0` measures the in-process bridge of before (and `--baseline` both, in one run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import cpu_seconds, rss_mb, thread_cpu_seconds, write_result
from bench.crm import percentile
from bench.server import ServerProcess
from bench.sipp import free_port, sipp_command
from callcenter.looplag import LagSnapshot, parse_prometheus
from native import g711

GOAL_LOOP_LAG_P99_MS = 10.0
CALLER = "3001"
CALLER_SECRET = "bench-caller-3001"
AGENT_PASSWORD = "bench-agent-pass-1"
#: Seconds every call gets to ring, be answered and carry audio before measuring starts.
SETUP_TIMEOUT = 60.0
#: Seconds of audio after set-up before the window opens (jitter buffers and clocks settle).
SETTLE = 2.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: A 20 ms frame quieter than this (RMS) is a gap in the tone (the tones are sent at RMS ~5700):
#: audio that never came, whatever filled its place on the wire.
SILENT_RMS = 1000.0
_RTP = struct.Struct("!BBHII")


def caller_hz(index: int) -> float:
    return 300.0 + 20 * (index % 40)     # 300-1080 Hz: what caller i says


def agent_hz(index: int) -> float:
    return 1200.0 + 20 * (index % 40)    # 1200-1980 Hz: what agent i says


def dominant_frequency(pcm: np.ndarray, rate: int) -> float:
    if len(pcm) < 64:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum)) * rate / len(pcm)


# -- set-up ---------------------------------------------------------------------------------


async def seed(db_path: Path, agents: int) -> None:
    """A fresh database with every schema, the agents' extensions and users, and the caller."""
    from acd.directory import Extension, ExtensionDirectory
    from callcenter.app import schemas
    from callcenter.database import apply_all, open_database
    from crm.access import SYSTEM
    from crm.db import Database
    from crm.org import NewUser
    from crm.passwords import ScryptParams
    from crm.service import Crm

    conn = await open_database(db_path)
    try:
        await apply_all(conn, schemas())
        directory = ExtensionDirectory(conn)
        await directory.upsert(Extension(CALLER, "bench caller", CALLER_SECRET))
        for i in range(agents):
            await directory.upsert(Extension(f"{2001 + i}", f"坐席 {i + 1}", f"bench-{2001 + i}"))
        # Cheap password hashes: the bench measures calls, not sign-in.
        crm = Crm.build(Database(conn), password_params=ScryptParams(log2_n=4, r=8, p=1))
        await crm.org.create_users(SYSTEM, [NewUser(f"bench{i + 1}", f"坐席{i + 1}", AGENT_PASSWORD, ("agent",),
                                                    extension=f"{2001 + i}") for i in range(agents)])
    finally:
        await conn.close()


def worker_pids(pid: int) -> list[int]:
    """The server's child processes (its WebRTC workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
    return sorted(children)


# -- the callers' audio ---------------------------------------------------------------------


class CallerMedia:
    """One SIP caller's RTP: a socket of the bench named in SIPp's SDP. It learns the server's
    port from the first packet the server sends (symmetric RTP), then sends a PCMU tone every
    20 ms and records what arrives, stamped by the kernel on arrival."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.remote: tuple[str, int] | None = None
        self.seq, self.ts, self.sent = 0, 0, 0
        self.measuring = False
        self.arrivals: list[tuple[int, int, float]] = []   # (seq, rtp timestamp, arrival s) in the window
        self.recent: list[bytes] = []
        self.total_received = 0
        self.silent = 0

    def send(self) -> None:
        if self.remote is None:
            return
        t = (np.arange(self.ts, self.ts + 160)) / 8000
        pcm = np.round(8000 * np.sin(2 * np.pi * caller_hz(self.index) * t)).astype(np.int16)
        packet = _RTP.pack(0x80, 0, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF, 0xBE000000 + self.index) \
            + g711.ulaw_encode(pcm)
        with contextlib.suppress(OSError):
            self.sock.sendto(packet, self.remote)
            self.sent += 1
        self.seq += 1
        self.ts += 160

    def readable(self) -> None:
        while True:
            try:
                data, ancdata, _, source = self.sock.recvmsg(2048, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != 0:
                continue   # RTCP, telephone-events: not the audio
            if self.remote is None:
                self.remote = source
            self.total_received += 1
            arrival = time.time()
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    seconds, nanos = struct.unpack("qq", payload[:16])
                    arrival = seconds + nanos / 1e9
            _, _, seq, ts, _ = _RTP.unpack_from(data)
            self.recent.append(data[12:])
            del self.recent[:-50]
            if self.measuring:
                self.arrivals.append((seq, ts, arrival))
                pcm = g711.ulaw_decode(data[12:]).astype(np.float64)
                if len(pcm) == 0 or np.sqrt(np.mean(pcm * pcm)) < SILENT_RMS:
                    self.silent += 1

    def results(self, window: float) -> dict[str, Any]:
        """Loss from sequence numbers, RFC 3550 §A.8 jitter, and the tone heard (last second)."""
        if not self.arrivals:
            return {"received": 0, "expected": 0, "lost": 0, "per_s": 0.0, "jitter_ms": math.nan, "deltas_ms": [],
                    "heard_hz": 0.0, "silent": 0, "packets": 0}
        extended, cycles, last = [], 0, None
        for seq, _, _ in self.arrivals:
            if last is not None and seq < last and last - seq > 0x8000:
                cycles += 0x10000
            extended.append(seq + cycles)
            last = seq
        expected = max(extended) - min(extended) + 1
        unique = len(set(extended))
        jitter, deltas, previous = 0.0, [], None
        for _, ts, arrival in self.arrivals:
            transit = arrival * 8000 - ts
            if previous is not None:
                d = abs(transit - previous)
                if d < 8000 * 5:   # a timestamp jump (new stream) is not jitter
                    jitter += (d - jitter) / 16
                    deltas.append(d / 8)   # ms
            previous = transit
        heard = np.concatenate([g711.ulaw_decode(p) for p in self.recent])
        return {"received": unique, "expected": expected, "lost": max(0, expected - unique),
                "per_s": round(len(self.arrivals) / window, 2), "jitter_ms": round(jitter / 8, 3),
                "deltas_ms": deltas, "heard_hz": round(dominant_frequency(heard, 8000), 1), "silent": self.silent,
                "packets": len(self.arrivals)}

    def close(self) -> None:
        self.sock.close()


async def pace(callers: list[CallerMedia], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    start, tick = loop.time(), 0
    while not stop.is_set():
        for caller in callers:
            caller.send()
        tick += 1
        delay = start + tick * 0.020 - loop.time()
        if delay < -0.2:
            start, tick = loop.time(), 0   # the bench stalled: restart the clock, no burst
        await asyncio.sleep(max(0.0, delay))


# -- one run --------------------------------------------------------------------------------


class Clients:
    """The browser-style agents, in `procs` processes."""

    def __init__(self, http_url: str, agents: int, procs: int) -> None:
        context = multiprocessing.get_context("spawn")
        from bench.webrtc_clients import run_group

        specs = [{"username": f"bench{i + 1}", "password": AGENT_PASSWORD, "extension": f"{2001 + i}",
                  "tone_hz": agent_hz(i), "expect_hz": caller_hz(i)} for i in range(agents)]
        self.groups = []
        for g in range(procs):
            ours, theirs = context.Pipe()
            proc = context.Process(target=run_group, args=(theirs, http_url, specs[g::procs]), daemon=True)
            proc.start()
            theirs.close()
            self.groups.append((proc, ours))

    async def ask(self, command: str, expect: str, timeout: float = 60.0) -> list[Any]:
        replies = []
        for _, conn in self.groups:
            if command:
                conn.send((command, None))
        for _, conn in self.groups:
            deadline = time.monotonic() + timeout
            while not conn.poll():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"a bench client did not answer {command or expect!r}")
                await asyncio.sleep(0.05)
            kind, value = conn.recv()
            if kind != expect:
                raise RuntimeError(f"bench client: {kind} {value}")
            replies.append(value)
        return replies

    def cpu(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc, _ in self.groups if proc.pid and proc.is_alive())

    def close(self) -> None:
        for proc, conn in self.groups:
            conn.close()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def server_sample(server: ServerProcess) -> dict[str, Any]:
    pid = server.proc.pid  # type: ignore[union-attr]
    workers = worker_pids(pid)
    return {"t": time.monotonic(), "server": cpu_seconds(pid), "loop": thread_cpu_seconds(pid, pid),
            "workers": {w: cpu_seconds(w) for w in workers},
            "lag": parse_prometheus(httpx.get(f"{server.http_url}/metrics", timeout=10).text)}


async def run(agents: int, duration: float, workers: int | None, procs: int, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        await seed(work / "data" / "callcenter.db", agents)
        config = work / "bench.toml"
        config.write_text("[security]\nrate_limit = 100000\n"
                          + ("" if workers is None else f"[webrtc]\nworkers = {workers}\n"))
        server = ServerProcess(work / "data", demo=False, extra_args=["--config", str(config), "--log-level", "WARNING"])
        server.start()
        callers = [CallerMedia(i) for i in range(agents)]
        clients: Clients | None = None
        sipp: asyncio.subprocess.Process | None = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            clients = Clients(server.http_url, agents, procs)
            await clients.ask("", "ready", timeout=120)
            for caller in callers:
                loop.add_reader(caller.sock.fileno(), caller.readable)
            pacer = loop.create_task(pace(callers, stop))
            uac = work / "uac"
            uac.mkdir()
            (uac / "calls.csv").write_text("SEQUENTIAL\n" + "".join(f"{2001 + i};{c.port};\n"
                                                                       for i, c in enumerate(callers)))
            hold_ms = int(1000 * (SETUP_TIMEOUT + agents / rate + SETTLE + duration + 10))
            cmd = sipp_command("webrtc_caller.xml", f"127.0.0.1:{server.sip_port}", calls=agents, rate=rate,
                               auth=(CALLER, CALLER_SECRET), keys={"caller": CALLER}, timeout=hold_ms / 1000 + 60,
                               extra=["-d", str(hold_ms), "-l", str(agents), "-inf", "calls.csv",
                                      "-mp", str(free_port("127.0.0.1")), "-mi", "127.0.0.1"])
            sipp = await asyncio.create_subprocess_exec(*cmd, cwd=uac, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL)
            setup_started = time.monotonic()
            deadline = setup_started + SETUP_TIMEOUT + agents / rate
            while time.monotonic() < deadline:
                status = [a for group in await clients.ask("status", "status") for a in group]
                if all(a["answered"] and a["frames"] > 50 for a in status) and all(c.total_received > 50 for c in callers):
                    break
                await asyncio.sleep(0.5)
            setup_s = time.monotonic() - setup_started
            await asyncio.sleep(SETTLE)

            await clients.ask("mark", "marked")
            for caller in callers:
                caller.measuring = True
            before, bench0 = await asyncio.to_thread(server_sample, server), clients.cpu()
            await asyncio.sleep(duration)
            after, bench1 = await asyncio.to_thread(server_sample, server), clients.cpu()
            for caller in callers:
                caller.measuring = False
            window = after["t"] - before["t"]
            agent_results = [a for group in await clients.ask("stop", "results") for a in group]
            caller_results = [c.results(window) for c in callers]
            pid = server.proc.pid  # type: ignore[union-attr]
            rss = rss_mb(pid) + sum(rss_mb(w) for w in after["workers"])
            stop.set()
            await pacer
        finally:
            stop.set()
            for caller in callers:
                with contextlib.suppress(Exception):
                    loop.remove_reader(caller.sock.fileno())
                caller.close()
            if clients is not None:
                clients.close()
            if sipp is not None and sipp.returncode is None:
                sipp.kill()   # the window is over: the calls end with the server
                await sipp.wait()
            server.stop()
    return summarise(agents, window, setup_s, before, after, bench1 - bench0, rss, agent_results, caller_results)


def summarise(agents: int, window: float, setup_s: float, before: dict, after: dict, bench_cpu: float, rss: float,
              agent_results: list[dict], caller_results: list[dict]) -> dict[str, Any]:
    lag: LagSnapshot = after["lag"] - before["lag"]
    server_cpu = after["server"] - before["server"]
    worker_cpu = {pid: after["workers"][pid] - before["workers"].get(pid, 0.0) for pid in after["workers"]}
    total_cpu = server_cpu + sum(worker_cpu.values())
    up = [c for c in caller_results if c["received"]]
    expected = sum(c["expected"] for c in caller_results)
    lost = sum(c["lost"] for c in caller_results)
    deltas = [d for c in caller_results for d in c["deltas_ms"]]
    to_agent_received = sum(a["packets_received"] for a in agent_results)
    to_agent_lost = sum(max(0, a["packets_lost"]) for a in agent_results)
    agent_tone_ok = sum(abs(c["heard_hz"] - agent_hz(i)) < 15 for i, c in enumerate(caller_results))
    caller_tone_ok = sum(abs(a["heard_hz"] - a["expect_hz"]) < 15 for a in agent_results)
    both = expected + to_agent_received + to_agent_lost
    results = {
        "calls_attempted": agents,
        "calls_ok": min(len(up), sum(a["frames"] > 0 for a in agent_results)),
        "concurrent_peak": len(up),
        "setup_s": round(setup_s, 1),
        "window_s": round(window, 1),
        "rtp_loss_pct": round(100 * (lost + to_agent_lost) / both, 3) if both else None,
        "jitter_p50_ms": round(percentile(deltas, 50), 3) if deltas else None,
        "jitter_p99_ms": round(percentile(deltas, 99), 3) if deltas else None,
        "loop_lag_p50_ms": round(lag.quantile_ms(0.50), 2),
        "loop_lag_p99_ms": round(lag.quantile_ms(0.99), 2),
        "loop_lag_max_ms_whole_run": round(lag.max_ms, 1),
        "loop_lag_ticks": lag.count,
        "cpu_pct": round(100 * total_cpu / window, 1),
        "cpu_pct_per_agent_call": round(100 * total_cpu / window / max(1, len(up)), 2),
        "server_process_cpu_pct": round(100 * server_cpu / window, 1),
        "loop_thread_cpu_pct": round(100 * (after["loop"] - before["loop"]) / window, 1),
        "worker_cpu_pct": [round(100 * c / window, 1) for c in worker_cpu.values()],
        "bench_clients_cpu_pct": round(100 * bench_cpu / window, 1),
        "rss_peak_mb": round(rss, 1),
        "agent_to_caller": {
            "rtp_loss_pct": round(100 * lost / expected, 3) if expected else None,
            "packets_per_s_per_call": round(sum(c["per_s"] for c in up) / max(1, len(up)), 2),
            # Frames the worker never sent (the browser's audio arrived too late or in a burst
            # it had to cut) leave no sequence gap: count them against the 50 a second due.
            "frames_missing_pct": round(max(0.0, 100 * (1 - sum(c["per_s"] for c in up) / max(1, len(up)) / 50)), 2),
            # Frames that came but carried no tone: gaps the engine filled (its jitter buffer
            # plays silence for audio the worker did not deliver in time).
            "silent_frames_pct": round(100 * sum(c["silent"] for c in up) / max(1, sum(c["packets"] for c in up)), 2),
            "rfc3550_jitter_ms_max": max((c["jitter_ms"] for c in up), default=None),
            "tone_ok": agent_tone_ok,
        },
        "caller_to_agent": {
            "rtp_loss_pct": round(100 * to_agent_lost / (to_agent_received + to_agent_lost), 3)
            if to_agent_received + to_agent_lost else None,
            "frames_per_s_per_call": round(sum(a["frames"] for a in agent_results) / window / max(1, len(agent_results)), 2),
            "frames_missing_pct": round(max(0.0, 100 * (1 - sum(a["frames"] for a in agent_results) / window
                                                       / max(1, len(agent_results)) / 50)), 2),
            "silent_frames_pct": round(100 * sum(a["silent"] for a in agent_results)
                                       / max(1, sum(a["frames"] for a in agent_results)), 2),
            "tone_ok": caller_tone_ok,
        },
        "agents_ended_early": [a["extension"] for a in agent_results if a["ended"]],
        "agent_errors": [e for a in agent_results for e in a["errors"]][:10],
    }
    results["goal_met"] = bool(results["loop_lag_p99_ms"] < GOAL_LOOP_LAG_P99_MS and agent_tone_ok == agents
                               and caller_tone_ok == agents and (results["rtp_loss_pct"] or 0.0) < 1.0
                               and all(results[way][key] < 1.0 for way in ("agent_to_caller", "caller_to_agent")
                                       for key in ("frames_missing_pct", "silent_frames_pct")))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench webrtc", description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20, help="browser agents, each talking to one SIP caller")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured once every call is up")
    parser.add_argument("--workers", type=int, help="the server's [webrtc] workers (default: its own, one per CPU)")
    parser.add_argument("--baseline", action="store_true", help="also run with workers = 0 (in the server's loop)")
    parser.add_argument("--client-procs", type=int, default=0, help="bench processes for the agents (default: "
                        "one per 10 agents, at most the CPUs)")
    parser.add_argument("--rate", type=float, default=5.0, help="calls placed per second")
    parser.add_argument("--json", type=Path, help="result file")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 500 or args.duration <= 0:
        parser.error("--agents must be 1..500 and --duration positive")
    procs = args.client_procs or max(1, min(os.cpu_count() or 1, math.ceil(args.agents / 10)))
    load = os.getloadavg()[0]
    results = asyncio.run(run(args.agents, args.duration, args.workers, procs, args.rate))
    # The machine may be shared: what else ran matters for every figure above.
    results["load_average_1min_before"] = round(load, 2)
    results["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    params = {"agents": args.agents, "duration": args.duration, "workers": args.workers, "client_procs": procs,
              "rate": args.rate, "codec_to_caller": "PCMU", "goal": {"loop_lag_p99_ms": GOAL_LOOP_LAG_P99_MS}}
    if args.baseline:
        baseline = asyncio.run(run(args.agents, args.duration, 0, procs, args.rate))
        results["baseline"] = baseline
        if baseline["loop_lag_p99_ms"]:
            results["ratio_to_baseline"] = round(results["loop_lag_p99_ms"] / baseline["loop_lag_p99_ms"], 3)
    write_result(args.json, "webrtc", params, results)
    return 0 if results["goal_met"] else 1
