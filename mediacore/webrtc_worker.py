"""A WebRTC worker process: runs browser agents' `WebRtcBridge`s away from the server's loop.

aiortc does ICE, DTLS, SRTP, Opus and resampling in Python, about a tenth of a core per call;
in the server's own event loop that stalls SIP and HTTP for tens of milliseconds at ten calls.
The server (`mediacore.webrtc_workers.WebRtcWorkerPool`) starts a few of these processes as its
children; each runs its own uvloop with aiortc and, per call, a `WebRtcBridge` whose engine side
is an `RtpFrameLink`: plain RTP on the host to an ordinary engine endpoint of the server, which
then bridges the call natively like any SIP leg.

    python -m mediacore.webrtc_worker --channel FD

The channel is one end of an AF_UNIX SOCK_SEQPACKET pair inherited from the server: one JSON
object per datagram (the socket keeps message boundaries, so no length prefix is needed), the
call's UDP socket riding along with `open` as SCM_RIGHTS ancillary data (the server binds it,
so it knows the port at once and its engine endpoint can send there before this process has
even started). Requests carry `req`; the worker answers each with one `reply`:

    server -> worker                                        worker -> server
    {"op": "open", "call": C, "codec": "L16", "pt": 96,     (no reply; the call exists)
     "remote": [host, port]}  + the UDP socket
    {"op": "offer", "req": N, "call": C, "sdp": ...}        {"op": "reply", "req": N, "sdp": ...}
    {"op": "candidate", "req": N, "call": C, "candidate",   {"op": "reply", "req": N}
     "sdp_mid", "sdp_mline_index"}
    {"op": "set", "call": C, "muted": bool | "held": bool}  (no reply)
    {"op": "close", "req": N, "call": C}                    {"op": "reply", "req": N, "stats": {...}}
    {"op": "ping", "req": N}                                {"op": "reply", "req": N, "calls": n}
                                                            {"op": "state", "call": C, "state": S}
                                                            {"op": "ready", "pid": P} (once)

A failed request is answered `{"op": "reply", "req": N, "error": "why"}`. End of file on the
channel means the server is gone (it exited, crashed or was killed): the worker closes its
calls and exits, so no orphan keeps media sockets open.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Largest message on the channel: an SDP offer is at most MAX_SDP_BYTES (64 KiB) and JSON
#: escaping can double it; anything larger is a bug, not a browser.
MAX_MESSAGE_BYTES = 256 * 1024
#: Kernel buffer of each end of the channel: requests queue here while a worker starts up
#: (importing aiortc takes about a second), a few KB per call.
CHANNEL_BUFFER_BYTES = 1 << 20
#: Seconds the worker gives its calls to close when the server is gone.
CLOSE_TIMEOUT = 2.0
#: Workers run this much "nicer" than the server by default (nice(2) increment; `[webrtc]
#: worker_nice`, passed as --nice). When the machine has no
#: CPU to spare, the kernel then gives the server's event loop (SIP timers, call control, every
#: agent's signalling) about three times a worker's share, instead of an equal one: overload
#: costs browser audio first, never the whole server's responsiveness. With CPU to spare it
#: changes nothing. (The media engine's thread runs SCHED_FIFO and is ahead of both.)
WORKER_NICE = 5

_FD_SIZE = array.array("i").itemsize


class ChannelError(Exception):
    """A message on the worker channel that cannot be used."""


class Channel:
    """One end of the worker channel: JSON messages, at most one file descriptor each.

    Sending never blocks: when the socket buffer is full the message waits in a queue written
    out as the socket drains. `on_message(message, fd)` gets each message (the fd, if any, is
    the receiver's to close); `on_eof()` runs once when the other end is closed."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[dict[str, Any], int | None], None], on_eof: Callable[[], None]) -> None:
        self.sock = sock
        self.loop = loop
        self._on_message = on_message
        self._on_eof = on_eof
        self._queue: list[tuple[bytes, int | None]] = []
        self._closed = False
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, CHANNEL_BUFFER_BYTES)
        loop.add_reader(sock.fileno(), self._readable)

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, message: dict[str, Any], fd: int | None = None) -> None:
        """Queue one message (with `fd` duplicated into the receiver). Raises ChannelError when
        the channel is closed or the message too large."""
        if self._closed:
            raise ChannelError("the worker channel is closed")
        data = json.dumps(message, separators=(",", ":")).encode()
        if len(data) > MAX_MESSAGE_BYTES:
            raise ChannelError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        if fd is not None:
            fd = os.dup(fd)   # ours until sent: the caller may close its copy at once
        self._queue.append((data, fd))
        if len(self._queue) == 1:
            self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
        for _, fd in self._queue:
            if fd is not None:
                os.close(fd)
        self._queue.clear()
        self.sock.close()

    def _flush(self) -> None:
        while self._queue and not self._closed:
            data, fd = self._queue[0]
            try:
                if fd is None:
                    self.sock.send(data)
                else:
                    self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                log.info("worker channel: send failed (%s)", exc)
                self._lost()
                return
            self._queue.pop(0)
            if fd is not None:
                os.close(fd)

    def _writable(self) -> None:
        self.loop.remove_writer(self.sock.fileno())
        self._flush()

    def _readable(self) -> None:
        for _ in range(64):   # bounded: let other callbacks run between bursts
            if self._closed:
                return
            try:
                data, ancdata, flags, _ = self.sock.recvmsg(MAX_MESSAGE_BYTES + 1, socket.CMSG_SPACE(_FD_SIZE))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.info("worker channel: receive failed (%s)", exc)
                self._lost()
                return
            fds = _fds_of(ancdata)
            if not data and not fds:
                self._lost()
                return
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) > 1:
                log.error("worker channel: a truncated message or extra descriptors; dropped")
                for fd in fds:
                    os.close(fd)
                continue
            try:
                message = json.loads(data)
                if not isinstance(message, dict) or not isinstance(message.get("op"), str):
                    raise ValueError("not an object with an op")
            except ValueError as exc:
                log.error("worker channel: unreadable message (%s); dropped", exc)
                for fd in fds:
                    os.close(fd)
                continue
            try:
                self._on_message(message, fds[0] if fds else None)
            except Exception:
                log.exception("worker channel: handling %r failed", message.get("op"))

    def _lost(self) -> None:
        if self._closed:
            return
        self.close()
        self._on_eof()


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            fds.extend(received)
    return fds


# -- the worker --------------------------------------------------------------------------------


class _Call:
    def __init__(self, link: Any, bridge: Any) -> None:
        self.link = link
        self.bridge = bridge
        self.lock = asyncio.Lock()   # requests of one call run in the order they were sent


class WorkerService:
    """The worker's side of the channel: its calls and their bridges."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop = loop
        self.calls: dict[str, _Call] = {}
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel = Channel(sock, loop, self._on_message, self.done.set)

    def _on_message(self, message: dict[str, Any], fd: int | None) -> None:
        op = message["op"]
        if op == "open":
            self._open(message, fd)
            return
        if fd is not None:
            os.close(fd)
        if op == "set":
            call = self.calls.get(str(message.get("call")))
            if call is not None:
                if isinstance(message.get("muted"), bool):
                    call.bridge.set_muted(message["muted"])
                if isinstance(message.get("held"), bool):
                    call.bridge.set_held(message["held"])
        elif op in ("offer", "candidate", "close", "ping"):
            task = self.loop.create_task(self._request(op, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._reply(message, {"error": f"unknown op {op!r}"})

    def _open(self, message: dict[str, Any], fd: int | None) -> None:
        from mediacore.rtp_frame_link import RtpFrameLink
        from mediacore.webrtc import WebRtcBridge

        call_id = message.get("call")
        remote = message.get("remote")
        if fd is None or not isinstance(call_id, str) or call_id in self.calls \
                or not (isinstance(remote, list) and len(remote) == 2):
            log.error("open without a socket, call id or remote address: %r", message)
            if fd is not None:
                os.close(fd)
            return
        sock = socket.socket(fileno=fd)
        try:
            link = RtpFrameLink(sock, (str(remote[0]), int(remote[1])), codec=str(message.get("codec", "PCMU")),
                                payload_type=int(message.get("pt", 0)))
        except Exception as exc:
            sock.close()
            log.error("call %s: cannot open its RTP link: %s", call_id, exc)
            self._send({"op": "state", "call": call_id, "state": "failed"})
            return
        bridge = WebRtcBridge(link, on_state=lambda state: self._send({"op": "state", "call": call_id,
                                                                          "state": state}))
        self.calls[call_id] = _Call(link, bridge)

    async def _request(self, op: str, message: dict[str, Any]) -> None:
        from mediacore.errors import MediaError

        if op == "ping":
            self._reply(message, {"calls": len(self.calls)})
            return
        call = self.calls.get(str(message.get("call")))
        if call is None:
            self._reply(message, {"error": "no such call"})
            return
        async with call.lock:
            try:
                if op == "offer":
                    self._reply(message, {"sdp": await call.bridge.accept_offer(message.get("sdp"))})
                elif op == "candidate":
                    index = message.get("sdp_mline_index")
                    await call.bridge.add_candidate(message.get("candidate"), message.get("sdp_mid"),
                                                    index if isinstance(index, int) else None)
                    self._reply(message, {})
                else:
                    self._reply(message, {"stats": await self._close(str(message["call"]))})
            except MediaError as exc:
                self._reply(message, {"error": str(exc)})
            except Exception as exc:   # a bug must cost one request, not the worker's other calls
                log.exception("call %s: %s failed", message.get("call"), op)
                self._reply(message, {"error": f"{op} failed: {exc}"})

    async def _close(self, call_id: str) -> dict[str, Any]:
        call = self.calls.pop(call_id, None)
        if call is None:
            return {}
        try:
            await call.bridge.close()
        finally:
            call.link.close()
        return {**dataclasses.asdict(call.bridge.stats), **dataclasses.asdict(call.link.stats)}

    def _reply(self, request: dict[str, Any], fields: dict[str, Any]) -> None:
        if "req" in request:
            self._send({"op": "reply", "req": request["req"], **fields})

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ChannelError):   # the server is gone: done is set already
            self.channel.send(message)

    async def run(self) -> None:
        self._send({"op": "ready", "pid": os.getpid()})
        await self.done.wait()
        log.info("the server closed the channel: closing %d call(s) and exiting", len(self.calls))
        for task in list(self._tasks):
            task.cancel()
        closing = [self._close(call_id) for call_id in list(self.calls)]
        if closing:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), CLOSE_TIMEOUT)
        self.channel.close()


async def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        raise SystemExit(f"--channel {fd} is not an AF_UNIX SOCK_SEQPACKET socket")
    await WorkerService(asyncio.get_running_loop(), sock).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediacore.webrtc_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--channel", type=int, required=True, help="inherited SOCK_SEQPACKET descriptor")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--nice", type=int, default=WORKER_NICE, help="niceness added to the worker's (0-19)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s webrtc-worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    # Ctrl-C in the server's terminal reaches the whole process group: the server decides when
    # its workers end (it closes the channel), so an interrupt must not kill calls under way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.nice > 0:
        with contextlib.suppress(OSError):
            os.nice(min(args.nice, 19))
    import uvloop

    uvloop.run(serve(args.channel))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
