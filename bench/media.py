"""`python -m bench media`: N bidirectional G.711 calls relayed by the media engine.

The engine runs in this process (an engine-only bench drives mediacore directly); the load comes
from `bench/rtpload/rtpload.c`, a native generator in its own process that sends 2N streams of
50 packets/s with 160-byte payloads, receives the relayed packets and measures loss and the delay
variation the relay adds. With `--baseline` the same load also goes through
`bench/rtpload/barerelay.c`, a bare recvmmsg/sendmmsg relay that does no RTP work at all: the
physical limit of this machine, against which the engine's CPU per packet is compared.

    python -m bench media --calls 1000 --duration 20 --baseline --json OUT.json

Two more modes load the engine's frame path:

- `--record N` records N of the calls while relaying them (stereo WAV files through the engine's
  recordings, in a temporary directory deleted afterwards): each recorded leg's audio goes
  through its jitter buffer and decoder every 20 ms tick, and the files are written from the
  engine thread. The results say how many recordings came out whole.
- `--conferences R --members M` puts R*M generator streams into R rooms of M members: each
  member hears the others' mix, which the engine generates on its clock. The generator (in its
  `--mix` mode) counts loss from those streams' sequence numbers and their delay variation
  against their RTP timestamps; the engine's CPU is reported per member and tick.

    python -m bench media --calls 300 --duration 20 --record 300 --json OUT.json
    python -m bench media --conferences 50 --members 10 --duration 20 --json OUT.json

How delay and delay variation are measured (the same for the engine, the bare relay and
rtpengine): each packet's one-way delay runs from the kernel's software TX stamp of the
generator's datagram (SO_TIMESTAMPING with OPT_ID, read from the socket's error queue: when the
loopback device took it) to the kernel's RX stamp of the relayed datagram at the generator
(SO_TIMESTAMPNS, which on loopback is taken when the relay's datagram enters the device, i.e.
when the relay sent it). `jitter_p50_ms`/`jitter_p99_ms` are quantiles over all packets of that
delay minus the minimum delay of the packet's direction (RFC 5481 §4.2 PDV); `latency_*` are the
delays themselves; `rfc3550_jitter_mean_ms`/`_max_ms` is the RFC 3550 A.8 estimator over the same
transit times. Neither the generator's scheduling nor the wait of a datagram behind the others of
the generator's sendmmsg batch counts. The figures of the older method, from a user-space send
stamp taken just before the batch's sendmmsg, are kept as `jitter_userstamp_*` and
`latency_userstamp_*` (the `jitter_*` figures of result files written before this change).

Why a relay falls behind shows in `runqueue_wait_pct`: the share of the window the relay's
thread(s) were runnable but not running (schedstat, proc(5); it includes the microseconds of
every wake-up). A SCHED_FIFO thread that needs more than the kernel's real-time budget
(kernel.sched_rt_runtime_us per sched_rt_period_us, 95 % of each CPU by default, `rt_budget_us`
in params) is throttled for the rest of each period: about 50 ms once a second, which is what
the p99 of tens of ms at 1,000 calls was (sampling the engine thread's schedstat every 2 ms
showed 25-52 ms run-queue waits at each second's end, with the thread at ~95 % of a CPU by its
own CPU clock; /proc's tick-sampled `engine_cpu_pct` reads lower). The thread is then simply
saturated: pacing it under the budget only trades the once-a-second stall for a standing
backlog, and a second CPU is not free on this 2-core machine (the generator uses it). Profiled
with perf at 700-1,000 calls,
~90 % of the engine thread's time is in the kernel: sendmmsg ~60 % (of which ~17 % is the
loopback delivery into the generator's socket, which a NIC would not charge to the sender),
recvmmsg ~17 %, epoll ~9 %; the engine's own code ~6 %. So the engine costs about what the
bare relay does, and both need most of a CPU at 1,000 calls on this machine.

Where the delay variation comes from: `--residence` has the engine histogram, for every packet,
the time between its arrival (the kernel's SO_TIMESTAMPNS stamp on the engine's socket) and the
engine thread reading it, i.e. the delay the engine adds, apart from the generator's own
scheduling. Runs with it show the generator's PDV and the engine's residence agree: the delay is
spent waiting for the engine thread. At normal priority the thread waits for a CPU (run-queue
latency of a busy machine: tens of ms); the engine therefore runs as a SCHED_FIFO thread
(`--engine-priority`, 0 for normal scheduling, to compare). What remains at high load is
queueing behind bursts the generator sends after it fell behind its schedule (then
`generator_overloaded` is true and the run does not count).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import cpu_seconds, machine_info, rss_mb, thread_cpu_seconds, write_result
from bench.media_probes import (
    build_tool,
    make_realtime,
    read_json,
    read_ports,
    rt_budget,
    runqueue_wait_seconds,
    send_line,
    start_tool,
    system_cpu_seconds,
    udp_socket_drops,
)
from bench.rtpengine import RtpEngine
from mediacore import MediaEngine
from mediacore.engine import REALTIME_PRIORITY
from mediacore.taps import ROOM_CAPACITY

# Goal of the issue on the 2-core reference machine.
GOAL_CALLS, GOAL_LOSS_PCT, GOAL_JITTER_P99_MS = 1000, 0.1, 2.0
GOAL_RECORDINGS, GOAL_ROOMS, GOAL_MEMBERS = 300, 50, 10
# The engine's clock: one mixed frame per member every 20 ms.
TICK_S = 0.02
# A recording is whole when it holds at least this share of the measured window.
RECORDING_MIN_SHARE = 0.95
# The generator sends each packet within this of its schedule, or the run is not a valid one.
GENERATOR_LAG_LIMIT_MS = 5.0
# What `jitter_p50_ms`/`jitter_p99_ms` mean (module docstring); written into params.
JITTER_METHOD = ("RFC 5481 §4.2 PDV: per packet, (kernel RX stamp at the generator - kernel software TX stamp "
                 "of the generator's datagram) minus that direction's minimum; p50/p99 over all packets")
JITTER_METHOD_USERSTAMP = ("RFC 5481 §4.2 PDV from a user-space send stamp taken before each sendmmsg batch "
                           "(--tx-stamps off)")
async def _measure(
    args: argparse.Namespace, targets: list[int], configure, cpu_probe, relay_pid: int | None = None,
    *, mix: bool = False, wait_probe=None,
) -> tuple[dict, float, float]:
    """Run the generator against `targets`; `configure(generator_ports)` points the relay back.
    Returns the generator's results (with the machine's load in the window added), the relay's
    CPU seconds and the wall time of the window. With `mix` every target is a conference member
    that answers with its own mix (rtpload --mix). `wait_probe()` gives the relay's run-queue
    wait in seconds."""
    load = ("--mix", "--streams", str(len(targets))) if mix else ("--calls", str(args.calls))
    generator = await start_tool(
        build_tool("rtpload"),
        *load, "--duration", str(args.duration),
        *("--host", args.bind, "--sockets", str(args.generator_sockets)),
        *("--pt-b", "8" if args.transcode else "0"),
        *("--tx-stamps", "1" if args.tx_stamps else "0"),
    )
    try:
        realtime_generator = make_realtime(generator.pid, args.generator_priority)
        await send_line(generator, "TARGETS " + " ".join(map(str, targets)))
        ports = await read_ports(generator, len(targets))
        await configure(ports)
        await send_line(generator, "GO")
        # Ours: this process (engine or idle harness), the generator, and a separate relay.
        ours = [os.getpid(), generator.pid] + ([relay_pid] if relay_pid else [])

        def probe() -> tuple[float, float, float, tuple[float, float, float], float, float, float]:
            return (cpu_probe(), cpu_seconds(generator.pid), sum(map(cpu_seconds, ours)), system_cpu_seconds(),
                    time.monotonic(), wait_probe() if wait_probe else 0.0, runqueue_wait_seconds(generator.pid))

        cpu0, gen0, ours0, sys0, wall0, wait0, gwait0 = probe()
        await asyncio.sleep(args.duration)
        cpu1, gen1, ours1, sys1, wall1, wait1, gwait1 = probe()
        result = await read_json(generator, timeout=args.duration + 60)
        result["relay_socket_drops"] = udp_socket_drops(set(targets))
        # Counted by the generator itself while its sockets were open (they close as it exits).
        result["generator_socket_drops"] = result.pop("own_socket_drops")
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
    if wait_probe:
        result["runqueue_wait_pct"] = round(100 * (wait1 - wait0) / wall, 2)
    result["generator_runqueue_wait_pct"] = round(100 * (gwait1 - gwait0) / wall, 2)
    # Per-task times include the interrupt time spent during the task's system calls (here:
    # delivering loopback datagrams), which /proc/stat reports apart from task time.
    busy = (sys1[0] - sys0[0]) + (sys1[1] - sys0[1])
    result["other_load_cpu_pct"] = round(100 * max(0.0, busy - (ours1 - ours0)) / wall, 1)
    result["interrupt_cpu_pct"] = round(100 * (sys1[1] - sys0[1]) / wall, 1)
    result["steal_cpu_pct"] = round(100 * (sys1[2] - sys0[2]) / wall, 1)
    result["generator_overloaded"] = result["send_lag_p99_ms"] > GENERATOR_LAG_LIMIT_MS
    result["generator_realtime"] = realtime_generator
    return result, cpu1 - cpu0, wall


def residence_quantiles(probe: tuple[int, np.ndarray] | None) -> dict:
    """p50/p99/max (ms) of the engine's residence probe: the delay the engine itself adds."""
    if probe is None:
        return {}
    width, counts = probe
    total = int(counts.sum())
    if total == 0:
        return {"engine_residence_packets": 0}
    cumulative = np.cumsum(counts, dtype=np.int64)

    def quantile(q: float) -> float:
        return round(int(np.searchsorted(cumulative, max(1, int(q * total)))) * width / 1e6, 3)

    return {
        "engine_residence_packets": total,
        "engine_residence_p50_ms": quantile(0.50),
        "engine_residence_p99_ms": quantile(0.99),
        "engine_residence_max_ms": round(int(np.flatnonzero(counts)[-1]) * width / 1e6, 3),
    }


async def _run_engine(args: argparse.Namespace) -> dict:
    engine = MediaEngine(args.bind, args.port_min, args.port_max, measure_residence=args.residence,
                         realtime_priority=args.engine_priority)
    await engine.start()
    recordings_dir = Path(tempfile.mkdtemp(prefix="bench-media-")) if args.record else None
    recordings: list[int] = []
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
            if recordings_dir is not None:
                # The first N calls, caller (A leg) left and agent (B leg) right.
                for i in range(args.record):
                    recordings.append(engine.start_recording(recordings_dir / f"call-{i}.wav", legs[2 * i],
                                                             legs[2 * i + 1]))

        tid = engine.engine_thread_id
        process_cpu = [0.0]
        # Frames the recorded legs' jitter buffers concealed, at the window's start and end.
        concealed: list[int] = []

        residence: list[tuple[int, np.ndarray] | None] = []

        def engine_cpu() -> float:
            process_cpu[0] = cpu_seconds(os.getpid())
            if recordings:
                concealed.append(sum(engine.stats(leg).concealed for leg in legs[:2 * args.record]))
            # The probe counts from the window's start (reset) to its end.
            residence.append(engine.residence_histogram(reset=not residence))
            return thread_cpu_seconds(os.getpid(), tid)

        engine_cpu()
        process0 = process_cpu[0]
        concealed.clear()
        residence.clear()
        result, cpu, wall = await _measure(args, [leg.local_port for leg in legs], configure, engine_cpu,
                                           wait_probe=lambda: runqueue_wait_seconds(os.getpid(), tid))
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
            **residence_quantiles(residence[-1]),
            engine_realtime=engine.realtime,
        )
        if recordings:
            window_frames = 2 * args.record * wall / TICK_S
            result["recordings"] = await _stop_recordings(engine, recordings, args)
            result["recordings"].update(
                concealed_frames=concealed[-1] - concealed[0],
                concealed_pct=round(100 * (concealed[-1] - concealed[0]) / window_frames, 4),
                late_packets=sum(s.late for s in totals[:2 * args.record]),
            )
        return result
    finally:
        engine.close()
        if recordings_dir is not None:
            shutil.rmtree(recordings_dir, ignore_errors=True)


async def _stop_recordings(engine: MediaEngine, recordings: list[int], args: argparse.Namespace) -> dict:
    """Stop every recording and check the files: whole (no write error, at least the measured
    window of audio) or not. (The caller adds how much of the recorded legs' audio the jitter
    buffers concealed in the window: each concealed frame is a gap in a recording.)"""
    infos = [await engine.stop_recording(r) for r in recordings]
    whole = [i for i in infos if i.error is None and i.dropped_frames == 0
             and i.duration_s >= RECORDING_MIN_SHARE * args.duration]
    return {
        "recordings": len(infos),
        "recordings_ok": len(whole),
        "errors": sorted({i.error for i in infos if i.error}),
        "recorded_s": round(sum(i.duration_s for i in infos), 1),
        "duration_min_s": round(min(i.duration_s for i in infos), 2),
        "bytes": sum(i.size_bytes for i in infos),
    }


async def _run_conferences(args: argparse.Namespace) -> dict:
    """R rooms of M members, each member a generator stream; loss and timing of the mixes."""
    engine = MediaEngine(args.bind, args.port_min, args.port_max, realtime_priority=args.engine_priority)
    await engine.start()
    try:
        count = args.conferences * args.members
        members = [engine.create_endpoint("PCMU", 0) for _ in range(count)]

        async def configure(ports: list[int]) -> None:
            for leg, port in zip(members, ports, strict=True):
                engine.set_remote(leg, args.bind, port)
            for r in range(args.conferences):
                room = engine.create_room()
                for leg in members[r * args.members:(r + 1) * args.members]:
                    engine.join_room(room, leg)

        tid = engine.engine_thread_id
        process_cpu = [0.0]
        concealed: list[int] = []    # by the members' jitter buffers, at the window's start and end

        def engine_cpu() -> float:
            process_cpu[0] = cpu_seconds(os.getpid())
            concealed.append(sum(engine.stats(leg).concealed for leg in members))
            return thread_cpu_seconds(os.getpid(), tid)

        engine_cpu()
        process0 = process_cpu[0]
        concealed.clear()
        result, cpu, wall = await _measure(args, [leg.local_port for leg in members], configure, engine_cpu, mix=True)
        process = process_cpu[0] - process0
        totals = [engine.stats(leg) for leg in members]
        heard = sum(s.packets_in for s in totals)
        sent = result["packets_sent"]
        result["members_ok"] = result.pop("calls_ok")
        result.pop("packets_received", None)
        result.update(
            # What reached the engine of what the members said (loss on the way in).
            member_packets_in=heard,
            input_loss_pct=round(100 * max(0, sent - heard) / sent, 4) if sent else None,
            mix_packets_out=sum(s.packets_out for s in totals),
            engine_send_errors=sum(s.send_errors for s in totals),
            concealed_frames=concealed[-1] - concealed[0],
            concealed_pct=round(100 * (concealed[-1] - concealed[0]) / (count * wall / TICK_S), 4),
            late_packets=sum(s.late for s in totals),
            cpu_pct=round(100 * process / wall, 1),
            engine_cpu_pct=round(100 * cpu / wall, 1),
            # Each tick the engine decodes every member's frame, mixes the room (N-1 for each
            # member) and encodes and sends every member's mix.
            cpu_us_per_member_tick=round(1e6 * cpu / (count * wall / TICK_S), 3),
            rss_peak_mb=round(rss_mb(os.getpid()), 1),
            engine_realtime=engine.realtime,
        )
        return result
    finally:
        engine.close()


async def _run_baseline(args: argparse.Namespace) -> dict:
    relay = await start_tool(build_tool("barerelay"), "--pairs", str(args.calls), "--host", args.bind)
    try:
        realtime = make_realtime(relay.pid, args.engine_priority)    # scheduled as the engine is
        relay_ports = await read_ports(relay, 2 * args.calls)

        async def configure(ports: list[int]) -> None:
            await send_line(relay, "DEST " + " ".join(map(str, ports)))

        result, cpu, wall = await _measure(
            args, relay_ports, configure, lambda: cpu_seconds(relay.pid), relay.pid,
            wait_probe=lambda: runqueue_wait_seconds(relay.pid),
        )
        peak = rss_mb(relay.pid)
        await send_line(relay, "STOP")
        relayed = (await read_json(relay, timeout=30))["packets_relayed"]
        result.update(
            packets_relayed=relayed,
            cpu_pct=round(100 * cpu / wall, 1),
            cpu_us_per_packet=round(1e6 * cpu / relayed, 3) if relayed else None,
            rss_peak_mb=round(peak, 1),
            relay_realtime=realtime,
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
        result, cpu, wall = await _measure(args, relay_ports, configure, lambda: cpu_seconds(pid), pid,
                                           wait_probe=lambda: runqueue_wait_seconds(pid))
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


async def _run_conference_scenario(args: argparse.Namespace) -> dict:
    members = await _run_conferences(args)
    results = {
        "members_attempted": args.conferences * args.members,
        **{k: members.pop(k) for k in ("members_ok", "rtp_loss_pct", "jitter_p50_ms", "jitter_p99_ms")},
        **members,
    }
    results["goal_met"] = (
        args.conferences >= GOAL_ROOMS and args.members >= GOAL_MEMBERS
        and results["rtp_loss_pct"] < GOAL_LOSS_PCT
        and results["input_loss_pct"] is not None and results["input_loss_pct"] < GOAL_LOSS_PCT
        and not results["generator_overloaded"]
    )
    return {
        "scenario": "media",
        "params": {
            "mode": "conferences",
            "conferences": args.conferences,
            "members": args.members,
            "streams": args.conferences * args.members,
            "duration_s": args.duration,
            "packets_per_s_per_stream": 50,
            "payload_bytes": 160,
            "codecs": "PCMU",
            "engine_priority": args.engine_priority,
            "generator_priority": args.generator_priority,
            "generator_sockets": args.generator_sockets,
            "bind": args.bind,
            "rtp_ports": f"{args.port_min}-{args.port_max}",
        },
        "results": results,
        "machine": machine_info(),
    }


async def _run(args: argparse.Namespace) -> dict:
    if args.conferences:
        return await _run_conference_scenario(args)
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
    if args.record:
        recorded = results["recordings"]
        results["goal_met"] = (
            args.record >= GOAL_RECORDINGS
            and recorded["recordings_ok"] == args.record
            and results["rtp_loss_pct"] < GOAL_LOSS_PCT
            and not results["generator_overloaded"]
        )
    else:
        results["goal_met"] = (
            args.calls >= GOAL_CALLS
            and results["rtp_loss_pct"] < GOAL_LOSS_PCT
            and results["jitter_p99_ms"] < GOAL_JITTER_P99_MS
            and not results["generator_overloaded"]
        )
    return {
        "scenario": "media",
        "params": {
            "mode": "record" if args.record else "relay",
            "calls": args.calls,
            "record": args.record,
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
            "engine_priority": args.engine_priority,
            "generator_priority": args.generator_priority,
            "jitter_method": JITTER_METHOD if args.tx_stamps else JITTER_METHOD_USERSTAMP,
            "rt_budget_us": rt_budget(),
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
    p.add_argument("--record", type=int, default=0, metavar="N",
                   help="also record N of the calls at once (stereo WAV in a temporary directory)")
    p.add_argument("--conferences", type=int, default=0, metavar="R",
                   help="instead of calls: R conference rooms fed by the generator")
    p.add_argument("--members", type=int, default=10, metavar="M", help="members per conference room")
    # Two sockets (all A legs' far ends on one, all B legs' on the other, like two media
    # gateways) cost the generator, and the relay's wake-ups of it, least: on 2 cores the
    # generator competes with the engine for CPU. 2*calls gives one socket per stream.
    p.add_argument(
        "--generator-sockets",
        type=int,
        default=2,
        help="sockets the generator's streams share (2*calls: one per stream, like real phones)",
    )
    p.add_argument("--tx-stamps", type=int, choices=(0, 1), default=1,
                   help="measure delay from the kernel's TX stamp of each generator datagram (1, default) "
                        "or from a user-space stamp before each send batch (0: the older method)")
    p.add_argument("--residence", action="store_true",
                   help="also histogram, in the engine, how long each packet waited between its arrival "
                        "(kernel timestamp) and the engine reading it: the delay the engine adds, apart "
                        "from the generator's own scheduling")
    p.add_argument("--engine-priority", type=int, default=REALTIME_PRIORITY, metavar="P",
                   help="SCHED_FIFO priority of the engine thread, as the server runs it (0: normal "
                        "scheduling, to see what a busy machine's run-queue delays do to jitter)")
    p.add_argument("--generator-priority", type=int, default=REALTIME_PRIORITY, metavar="P",
                   help="SCHED_FIFO priority of the load generator (0: normal scheduling)")
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
    if args.conferences:
        if args.conferences < 0 or not 2 <= args.members <= ROOM_CAPACITY:
            raise SystemExit(f"--conferences must be >= 1 and --members 2..{ROOM_CAPACITY}")
        if args.record or args.baseline or args.rtpengine or args.transcode:
            raise SystemExit("--conferences runs alone (no --record, --baseline, --rtpengine, --transcode)")
        needed = 2 * args.conferences * args.members
        if needed > args.port_max - args.port_min + 1:
            raise SystemExit(f"{args.conferences}x{args.members} members need {needed} RTP ports; "
                             "widen --port-min/--port-max")
        return _run_with_loop(args)
    if not 0 <= args.record <= args.calls:
        raise SystemExit("--record must be 0..--calls")
    if 4 * args.calls > args.port_max - args.port_min + 1:
        raise SystemExit(f"{args.calls} calls need {4 * args.calls} RTP ports; widen --port-min/--port-max")
    return _run_with_loop(args)


def _run_with_loop(args: argparse.Namespace) -> dict:
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
