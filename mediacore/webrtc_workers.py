"""Browser agents' WebRTC media in worker processes, so it never stalls the server's event loop.

aiortc terminates ICE, DTLS-SRTP and Opus in Python (ARCHITECTURE.md's one exception to "no
per-packet Python"); measured in the server's own loop, its lag p99 grew from 2.7 ms with one
browser call to 38 ms with ten. `WebRtcWorkerPool` runs that work in a few child processes
(`mediacore.webrtc_worker`), each with its own loop, and gives the signalling code a
`RemoteBridge` per call with the interface of `mediacore.webrtc.WebRtcBridge`. The call's audio
reaches the server as plain RTP from the worker to an ordinary engine endpoint (L16 or G.711
µ-law at 8 kHz on the host), so the engine bridges it to the SIP leg natively, with no Python
per packet here.

    pool = WebRtcWorkerPool(2)
    endpoint = engine.create_endpoint("L16", 96, clock_rate=8000)
    bridge = pool.bridge(engine, endpoint, on_state=..., on_failure=...)   # never blocks
    answer = await bridge.accept_offer(offer_sdp)
    ...
    await bridge.close(); engine.destroy(endpoint)
    await pool.close()

Workers start with the first call or registration (`start`), a call goes to the worker with
the fewest calls, and a worker that dies is started again: its calls end (`on_failure` with
`WORKER_FAILED`), new calls go to the new process. Workers end when the pool closes, and on
their own when the server dies (end of file on their channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.rtp_frame_link import RtpLinkStats
from mediacore.webrtc import MAX_SDP_BYTES, BridgeState, BridgeStats
from mediacore.webrtc_worker import WORKER_NICE, Channel, ChannelError

log = logging.getLogger(__name__)

#: The reason a call ends with when its worker process died under it.
WORKER_FAILED = "media_failed"
#: Seconds an offer may take in the worker: gathering host candidates binds one socket per
#: local address, well under a second; a worker that takes this long is stuck or starved.
OFFER_TIMEOUT = 20.0
#: Seconds for the other requests (a candidate, closing a call).
REQUEST_TIMEOUT = 10.0
#: Seconds a worker gets to exit after its channel is closed before it is killed.
EXIT_TIMEOUT = 5.0
#: A worker that dies sooner than this after starting is restarted after a back-off (doubling
#: up to RESTART_BACKOFF_MAX), so a worker that cannot start does not spin a core.
STABLE_AFTER = 10.0
RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX = 0.5, 30.0
#: Seconds between the pool's pings of each worker, and how long a worker may take to answer
#: before it counts as hung (a deadlock, a stopped process) and is killed and replaced: its
#: calls are silent by then anyway. Generous, so a worker that is merely overloaded is kept.
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TIMEOUT = 30.0
#: Seconds a new worker may take to say it is ready (importing aiortc and PyAV: about a second,
#: several on a loaded machine) before it counts as hung; pings start after that.
START_TIMEOUT = 60.0
#: Upper bound on `[webrtc] workers`: each worker holds aiortc and PyAV in memory (~70 MB).
MAX_WORKERS = 64

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def default_worker_count() -> int:
    """One worker per CPU this process may run on: aiortc's work is CPU-bound Python, so more
    workers than cores only adds memory, fewer leaves cores idle while the loop they would
    have relieved waits."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def loopback_for(bind: str) -> str:
    """The address a worker's RTP socket uses to reach an engine bound to `bind`."""
    if bind == "0.0.0.0":
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as operators see it (metrics, logs)."""

    index: int
    pid: int | None
    "None while it starts."
    calls: int
    restarts: int
    "Times this slot's process died and was started again."


class _Worker:
    """One slot of the pool: the current process, its channel and its calls."""

    def __init__(self, pool: WebRtcWorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.restarts = 0
        self.backoff = RESTART_BACKOFF_MIN
        self.calls: dict[str, RemoteBridge] = {}
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.pid: int | None = None
        self.channel: Channel | None = None
        self.ready = asyncio.Event()
        "Set when the current process said it is ready (its imports are done)."
        self.task: asyncio.Task[None] | None = None
        self.started_at = 0.0
        self.generation = 0
        "Counts launches: a dying process's late news must not fail its successor."
        self._failed = False

    def launch(self, delay: float = 0.0) -> None:
        """A new channel at once (requests queue in it) and the process in the background."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.generation += 1
        generation = self.generation
        self._failed = False
        # End of file: the process died (its end closed); _run reaps it.
        self.channel = Channel(ours, loop, self._on_message, lambda: self._fail(generation))
        self.process = None
        self.pid = None
        self.ready = asyncio.Event()
        self.started_at = time.monotonic()
        self.task = loop.create_task(self._run(theirs, delay, generation), name=f"webrtc-worker-{self.index}")

    async def _run(self, theirs: socket.socket, delay: float, generation: int) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH")) if p)
            self.process = await asyncio.create_subprocess_exec(
                self.pool.python, "-m", "mediacore.webrtc_worker", "--channel", str(theirs.fileno()),
                "--log-level", self.pool.log_level, "--nice", str(self.pool.nice), pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, env=env)
            theirs.close()   # the child holds it now: its exit is our end of file
            self.pid = self.process.pid
            code = await self._watch(self.process)
        except asyncio.CancelledError:
            theirs.close()
            raise
        except OSError as exc:
            theirs.close()
            log.error("WebRTC worker %d could not be started: %s", self.index, exc)
            code = None
        if not self.pool.closing:
            log.error("WebRTC worker %d (pid %s) exited with %s", self.index, self.pid, code)
        self._fail(generation)

    async def _watch(self, process: asyncio.subprocess.Process) -> int:
        """Wait for the process to exit, killing it if it stops answering pings."""
        exited = asyncio.ensure_future(process.wait())
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            done, _ = await asyncio.wait({exited, ready}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                log.error("WebRTC worker %d (pid %s) did not start within %g s: killed", self.index, process.pid,
                          START_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            while True:
                done, _ = await asyncio.wait({exited}, timeout=HEARTBEAT_INTERVAL)
                if done:
                    return exited.result()
                try:
                    await self.request({"op": "ping"}, HEARTBEAT_TIMEOUT)
                except MediaError as exc:
                    if process.returncode is None and not self._failed:
                        log.error("WebRTC worker %d (pid %s) is hung (%s): killed", self.index, process.pid, exc)
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
        finally:
            for future in (exited, ready):
                if not future.done():
                    future.cancel()

    def _fail(self, generation: int) -> None:
        if self._failed or generation != self.generation:
            return
        self._failed = True
        if self.channel is not None:
            self.channel.close()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()   # a worker that closed its channel but lives on is broken
        error = MediaError("the WebRTC worker process stopped")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        calls, self.calls = self.calls, {}
        for bridge in calls.values():
            bridge._worker_failed()
        if self.pool.closing:
            return
        self.restarts += 1
        stable = time.monotonic() - self.started_at >= STABLE_AFTER
        self.backoff = RESTART_BACKOFF_MIN if stable else min(self.backoff * 2, RESTART_BACKOFF_MAX)
        self.launch(0.0 if stable else self.backoff)

    def _on_message(self, message: dict[str, Any], fd: int | None) -> None:
        if fd is not None:
            os.close(fd)   # workers send none
        op = message["op"]
        if op == "reply":
            future = self.pending.pop(message.get("req", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif op == "state":
            bridge = self.calls.get(str(message.get("call")))
            if bridge is not None and isinstance(message.get("state"), str):
                bridge._remote_state(message["state"])
        elif op == "ready":
            self.ready.set()
            log.info("WebRTC worker %d ready (pid %s)", self.index, message.get("pid"))

    def send(self, message: dict[str, Any], fd: int | None = None) -> None:
        if self.channel is None or self.channel.closed:
            raise MediaError("the WebRTC worker process stopped")
        try:
            self.channel.send(message, fd)
        except ChannelError as exc:
            raise MediaError(str(exc)) from None

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        req = next(self.pool.requests)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[req] = future
        try:
            self.send({**message, "req": req})
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise MediaError(f"the WebRTC worker did not answer {message['op']} within {timeout:g} s") from None
        finally:
            self.pending.pop(req, None)
        if "error" in reply:
            raise MediaError(str(reply["error"]))
        return reply

    async def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()   # end of file: the worker closes its calls and exits
        process, task = self.process, self.task
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                log.warning("WebRTC worker %d (pid %s) did not exit; killed", self.index, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class WebRtcWorkerPool:
    """`size` worker processes running the WebRTC side of browser calls (see the module doc)."""

    def __init__(self, size: int, *, nice: int = WORKER_NICE, log_level: str | None = None,
                 python: str = sys.executable) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_WORKERS:
            raise MediaError(f"a WebRTC worker pool has 1..{MAX_WORKERS} workers, got {size!r}")
        if not isinstance(nice, int) or isinstance(nice, bool) or not 0 <= nice <= 19:
            raise MediaError(f"worker niceness must be 0..19, got {nice!r}")
        self.nice = nice
        "Added to the workers' niceness: under CPU overload the server's loop goes first."
        self.size = size
        self.python = python
        self.log_level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.closing = False
        self.requests = itertools.count(1)
        self._workers: list[_Worker] = []
        self._call_ids = itertools.count(1)

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def start(self) -> None:
        """Start the workers (idempotent; needs the running loop). Called with the first agent
        registration or call, so a server without browser agents runs no worker."""
        if self.closing:
            raise MediaError("the WebRTC worker pool is closed")
        if self._workers:
            return
        self._workers = [_Worker(self, index) for index in range(self.size)]
        for worker in self._workers:
            worker.launch()

    @property
    def workers(self) -> list[WorkerInfo]:
        return [WorkerInfo(w.index, w.pid, len(w.calls), w.restarts) for w in self._workers]

    def bridge(self, engine: MediaEngine, endpoint: Endpoint, *, on_state: Callable[[str], None] | None = None,
               on_failure: Callable[[str], None] | None = None) -> RemoteBridge:
        """A browser call's bridge on the least busy worker, its audio exchanged with `endpoint`
        (an RTP endpoint of `engine`, PCMU or L16 at 8 kHz, whose remote this sets)."""
        if endpoint.codec not in ("PCMU", "L16") or endpoint.clock_rate != 8000:
            raise MediaError(f"a worker's RTP link speaks PCMU or L16 at 8 kHz, not {endpoint.codec}/"
                             f"{endpoint.clock_rate}")
        self.start()
        worker = min(self._workers, key=lambda w: (w.channel is None or w.channel.closed, len(w.calls)))
        host = loopback_for(engine.bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, 0))
            engine.set_remote(endpoint, host, sock.getsockname()[1])
            call_id = f"{os.getpid()}-{next(self._call_ids)}"
            worker.send({"op": "open", "call": call_id, "codec": endpoint.codec, "pt": endpoint.payload_type,
                         "remote": [host, endpoint.local_port]}, fd=sock.fileno())
        except OSError as exc:
            raise MediaError(f"cannot open the worker's RTP socket: {exc.strerror}") from None
        finally:
            sock.close()   # the channel sent (or queued) a duplicate
        bridge = RemoteBridge(worker, call_id, on_state=on_state, on_failure=on_failure)
        worker.calls[call_id] = bridge
        return bridge

    async def ping(self) -> list[int]:
        """Calls per worker, as each worker counts them (a health check that they answer)."""
        self.start()
        replies = await asyncio.gather(*(w.request({"op": "ping"}, REQUEST_TIMEOUT) for w in self._workers))
        return [int(reply["calls"]) for reply in replies]

    async def close(self) -> None:
        """End every worker (their calls end with them). Idempotent."""
        if self.closing:
            return
        self.closing = True
        await asyncio.gather(*(worker.stop() for worker in self._workers), return_exceptions=True)


class RemoteBridge:
    """A browser call's bridge running in a worker: `WebRtcBridge`'s interface over the channel."""

    def __init__(self, worker: _Worker, call_id: str, *, on_state: Callable[[str], None] | None = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.call_id = call_id
        self.state = BridgeState()
        self.stats = BridgeStats()
        "Filled in when the call closes (the worker counts)."
        self.link_stats = RtpLinkStats()
        self._worker = worker
        self._on_state = on_state
        self._on_failure = on_failure
        self._closed = False

    @property
    def connection_state(self) -> str:
        return self.state.connection

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid

    async def accept_offer(self, sdp: str) -> str:
        """Answer the browser's SDP offer (in the worker); returns the answer SDP."""
        self._check_open()
        if not isinstance(sdp, str) or not sdp.strip():
            raise MediaError("the offer is empty")
        if len(sdp) > MAX_SDP_BYTES:
            raise MediaError(f"the offer is larger than {MAX_SDP_BYTES} bytes")
        reply = await self._worker.request({"op": "offer", "call": self.call_id, "sdp": sdp}, OFFER_TIMEOUT)
        answer = reply.get("sdp")
        if not isinstance(answer, str):
            raise MediaError("the WebRTC worker sent no answer")
        self.state.remote_candidates = 0
        return answer

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None = None,
                            sdp_mline_index: int | None = None) -> None:
        """A trickled remote candidate, None at end of candidates (checked in the worker)."""
        self._check_open()
        if candidate is not None and (not isinstance(candidate, str) or len(candidate) > 1024):
            raise MediaError("malformed ICE candidate")
        await self._worker.request({"op": "candidate", "call": self.call_id, "candidate": candidate,
                                    "sdp_mid": sdp_mid, "sdp_mline_index": sdp_mline_index}, REQUEST_TIMEOUT)
        if candidate:
            self.state.remote_candidates += 1

    def set_muted(self, muted: bool) -> None:
        self.state.muted = muted
        self._tell({"op": "set", "call": self.call_id, "muted": muted})

    def set_held(self, held: bool) -> None:
        self.state.held = held
        self._tell({"op": "set", "call": self.call_id, "held": held})

    async def close(self) -> None:
        """Hang up the browser side in the worker; the engine endpoint is the caller's."""
        if self._closed:
            return
        self._closed = True
        if self._worker.calls.get(self.call_id) is self:
            try:
                reply = await self._worker.request({"op": "close", "call": self.call_id}, REQUEST_TIMEOUT)
                self._take_stats(reply.get("stats") or {})
            except MediaError as exc:
                log.info("WebRTC call %s: closing in the worker failed (%s)", self.call_id, exc)
            finally:
                if self._worker.calls.get(self.call_id) is self:
                    del self._worker.calls[self.call_id]
        self.state.connection = "closed"

    # -- from the worker ---------------------------------------------------------------------

    def _remote_state(self, state: str) -> None:
        if self._closed:
            return
        self.state.connection = state
        self.state.history.append(state)
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("WebRTC state handler failed")

    def _worker_failed(self) -> None:
        if self._closed:
            return
        self._remote_state("failed")
        self._closed = True
        if self._on_failure is not None:
            try:
                self._on_failure(WORKER_FAILED)
            except Exception:
                log.exception("WebRTC failure handler failed")

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("the WebRTC bridge is closed")

    def _tell(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        with contextlib.suppress(MediaError):   # a dead worker ends the call through _worker_failed
            self._worker.send(message)

    def _take_stats(self, stats: dict[str, Any]) -> None:
        for record in (self.stats, self.link_stats):
            for name in vars(record):
                value = stats.get(name)
                if isinstance(value, int):
                    setattr(record, name, value)
