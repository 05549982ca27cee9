"""The typed Python API over the native media engine (`native.engine`).

One `MediaEngine` per process owns the RTP port range. Python decides what to connect to what;
the native thread moves the packets. Calls here only queue commands (and, for `create_endpoint`,
bind two sockets), so none of them blocks the asyncio loop; events come back on the loop through
an eventfd watched with `loop.add_reader`.

    engine = MediaEngine("127.0.0.1", 10000, 19999)
    await engine.start()
    a = engine.create_endpoint("PCMU", 0, rtp_timeout=30.0)    # trunk leg
    b = engine.create_endpoint("PCMA", 8)                      # agent leg
    engine.set_remote(a, "192.0.2.10", 40000)                  # from the SDP c=/m= lines
    engine.set_remote(b, "192.0.2.20", 50000)
    engine.connect(a, b)                                       # both directions, transcoding
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mediacore.errors import MediaError
from mediacore.events import EngineFailure, MediaEvent, RtpTimeout, StreamStats
from native import engine as _native

log = logging.getLogger(__name__)

# Per-socket kernel buffers. One socket carries one 50 packet/s stream, but the kernel charges
# each small datagram ~1 KB of buffer (skb overhead), so the 212 KB Linux default holds only a
# few seconds of one stream; 1 MiB rides out any stall of the engine thread without loss.
# (Capped by net.core.rmem_max / wmem_max.)
SOCKET_BUFFER_BYTES = 1 << 20

# DiffServ EF (DSCP 46) for interactive voice: RFC 4594 §4.5 "Telephony" service class.
DSCP_EF_TOS = 46 << 2

# RFC 5761 §4: payload types 64-95 collide with RTCP packet types when RTP and RTCP share a port.
_RTCP_CONFLICT_PTS = range(64, 96)

_HandlerT = Callable[[MediaEvent], None]


@dataclass(frozen=True)
class Endpoint:
    """One RTP/RTCP socket pair of the engine: one leg of a call."""

    id: int
    "Engine-wide unique id (never reused while the engine runs)."
    local_port: int
    "The RTP port (even); RTCP uses local_port + 1 (RFC 3550 §11)."
    codec: str
    "The leg's negotiated codec: PCMU or PCMA."
    payload_type: int
    "The leg's payload type for that codec (from the SDP answer)."
    telephone_event_pt: int | None = None
    "The leg's RFC 4733 telephone-event payload type, None if not negotiated."

    @property
    def rtcp_port(self) -> int:
        return self.local_port + 1


class MediaEngine:
    """The process's media engine: endpoints on a port range, relayed by a native thread."""

    def __init__(self, bind: str = "127.0.0.1", port_min: int = 10000, port_max: int = 19999) -> None:
        try:
            self._bind_ip = ipaddress.ip_address(bind)
        except ValueError:
            raise MediaError(f"bind address must be an IP address, got {bind!r}") from None
        if not 1 <= port_min <= port_max <= 65535:
            raise MediaError(f"invalid RTP port range {port_min}-{port_max}")
        first = port_min + (port_min % 2)                 # RTP on an even port (RFC 3550 §11)
        self._ports = list(range(first, port_max, 2))     # port + 1 must fit in the range too
        if not self._ports:
            raise MediaError(f"RTP port range {port_min}-{port_max} holds no even/odd port pair")
        self.bind = str(self._bind_ip)
        self.port_min = port_min
        self.port_max = port_max
        self._family = socket.AF_INET if self._bind_ip.version == 4 else socket.AF_INET6
        self._native: _native.Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: _HandlerT | None = None
        self._endpoints: dict[int, Endpoint] = {}
        self._ports_in_use: set[int] = set()
        # Ports of destroyed endpoints whose sockets the engine thread has not closed yet (its
        # final StreamStats event says it has); tried last when allocating.
        self._closing: dict[int, int] = {}
        # Ports are handed out round-robin: a port just freed may still receive the previous
        # call's packets for a moment (the far end has not processed the BYE yet).
        self._cursor = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the engine thread and have `loop` (default: the running loop) deliver events."""
        if self._closed:
            raise MediaError("the media engine is closed")
        if self._native is not None:
            raise MediaError("the media engine is already started")
        self._check_bind_address()
        loop = loop or asyncio.get_running_loop()
        engine = _native.Engine(len(self._ports))
        engine.start()
        self._native = engine
        self._loop = loop
        loop.add_reader(engine.event_fd, self._deliver_events)

    def close(self) -> None:
        """Stop the engine thread and close every endpoint's sockets. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._native is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._native.event_fd)
            self._native.close()
        self._endpoints.clear()
        self._ports_in_use.clear()
        self._closing.clear()

    def set_event_handler(self, handler: _HandlerT | None) -> None:
        """Call `handler(event)` on the event loop for each RtpTimeout, final StreamStats, ..."""
        self._handler = handler

    @property
    def engine_thread_id(self) -> int | None:
        """Kernel TID of the native thread (for /proc/self/task/TID/stat), None if not started."""
        return None if self._native is None else self._native.native_thread_id

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    # -- endpoints ------------------------------------------------------------------------------

    def create_endpoint(
        self,
        codec: str = "PCMU",
        payload_type: int = 0,
        *,
        rtp_timeout: float | None = None,
        telephone_event_pt: int | None = None,
    ) -> Endpoint:
        """Open an RTP/RTCP socket pair on a free even port of the range."""
        engine = self._running()
        codec = codec.upper()   # RFC 4566 §6: encoding names are case-insensitive
        if codec not in _native.CODEC_IDS:
            raise MediaError(f"codec {codec!r} is not supported by the engine yet (PCMU, PCMA)")
        _check_payload_type("payload type", payload_type)
        if telephone_event_pt is not None:
            _check_payload_type("telephone-event payload type", telephone_event_pt)
            if telephone_event_pt == payload_type:
                raise MediaError("telephone-event and audio need different payload types")
        if rtp_timeout is not None and rtp_timeout <= 0:
            raise MediaError(f"rtp_timeout must be positive seconds or None, got {rtp_timeout}")
        port, rtp, rtcp = self._open_socket_pair()
        try:
            endpoint_id = engine.add_endpoint(
                rtp.fileno(),
                rtcp.fileno(),
                _native.CODEC_IDS[codec],
                payload_type,
                -1 if telephone_event_pt is None else telephone_event_pt,
                rtp_timeout or 0.0,
                secrets.randbits(32),   # RFC 3550 §8.1: SSRC chosen at random
                secrets.randbits(16),   # §5.1: random initial sequence number and timestamp
                secrets.randbits(32),
            )
        except BaseException:
            rtp.close()
            rtcp.close()
            raise
        rtp.detach()   # the engine owns the descriptors now and closes them on destroy
        rtcp.detach()
        endpoint = Endpoint(endpoint_id, port, codec, payload_type, telephone_event_pt)
        self._endpoints[endpoint_id] = endpoint
        self._ports_in_use.add(port)
        return endpoint

    def set_remote(self, endpoint: Endpoint, host: str, port: int) -> None:
        """Send the leg's RTP to host:port (from SDP) until media arrives from elsewhere."""
        engine = self._running()
        self._known(endpoint)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"remote must be an IP address (resolve names first), got {host!r}") from None
        if address.version != self._bind_ip.version:
            raise MediaError(f"remote {host} is IPv{address.version}, the engine binds IPv{self._bind_ip.version}")
        if not 0 < port < 65535:
            raise MediaError(f"remote RTP port must be 1..65534, got {port}")
        engine.set_remote(endpoint.id, address.packed, port)

    def connect(self, a: Endpoint, b: Endpoint, *, both_ways: bool = True) -> None:
        """Bridge two legs: RTP arriving at `a` leaves from `b` to b's remote and, with
        `both_ways`, the reverse. An endpoint has one source at a time: connecting replaces
        whatever fed `b` (and `a`) before."""
        engine = self._running()
        self._known(a)
        self._known(b)
        if a.id == b.id:
            raise MediaError("an endpoint cannot be connected to itself")
        engine.connect(a.id, b.id)
        if both_ways:
            engine.connect(b.id, a.id)

    def disconnect(self, a: Endpoint) -> None:
        """Stop relaying into and out of `a`; its sockets stay open."""
        self._running().disconnect(self._known(a).id)

    def set_rtp_timeout(self, endpoint: Endpoint, seconds: float | None) -> None:
        """Change the RTP timeout (None: never), e.g. longer while the call is on hold."""
        if seconds is not None and seconds <= 0:
            raise MediaError(f"rtp_timeout must be positive seconds or None, got {seconds}")
        self._running().set_rtp_timeout(self._known(endpoint).id, seconds or 0.0)

    def destroy(self, endpoint: Endpoint) -> None:
        """Close the leg's sockets; a final StreamStats event follows."""
        engine = self._running()
        self._known(endpoint)
        engine.destroy(endpoint.id)
        del self._endpoints[endpoint.id]
        self._ports_in_use.discard(endpoint.local_port)
        self._closing[endpoint.id] = endpoint.local_port

    def stats(self, endpoint: Endpoint) -> StreamStats:
        """A consistent snapshot of the leg's counters and RFC 3550 receiver statistics."""
        return self._stats_from(self._running().stats(self._known(endpoint).id))

    # -- internals ------------------------------------------------------------------------------

    def _running(self) -> _native.Engine:
        if self._closed:
            raise MediaError("the media engine is closed")
        if self._native is None:
            raise MediaError("the media engine is not started")
        if not self._native.running:
            raise MediaError("the media engine thread has stopped")
        return self._native

    def _known(self, endpoint: Endpoint) -> Endpoint:
        if self._endpoints.get(endpoint.id) != endpoint:
            raise MediaError(f"endpoint {endpoint.id} does not exist (destroyed?)")
        return endpoint

    def _check_bind_address(self) -> None:
        probe = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            probe.bind((self.bind, 0))
        except OSError as exc:
            raise MediaError(f"cannot bind RTP sockets to {self.bind}: {exc.strerror}") from None
        finally:
            probe.close()

    def _udp_socket(self) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        if self._family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DSCP_EF_TOS)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, DSCP_EF_TOS)
        return sock

    def _open_socket_pair(self) -> tuple[int, socket.socket, socket.socket]:
        count = len(self._ports)
        closing = set(self._closing.values())

        def order() -> Iterator[tuple[int, int]]:
            # From the cursor on, lazily (a call set-up usually takes the first port it looks
            # at): first ports neither in use nor awaiting their final stats, then, as a last
            # resort, those still closing.
            for last_resort in (False, True):
                for step in range(count):
                    index = (self._cursor + step) % count
                    if (self._ports[index] in closing) == last_resort:
                        yield index, self._ports[index]

        for index, port in order():
            if port in self._ports_in_use:
                continue
            rtp = self._udp_socket()
            rtcp = self._udp_socket()
            try:
                rtp.bind((self.bind, port))
                rtcp.bind((self.bind, port + 1))
            except OSError as exc:
                rtp.close()
                rtcp.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue   # taken by another program: try the next pair
                raise MediaError(f"cannot bind RTP port {port} on {self.bind}: {exc.strerror}") from None
            self._cursor = (index + 1) % count
            return port, rtp, rtcp
        raise MediaError(
            f"no free RTP port pair in {self.port_min}-{self.port_max} "
            f"({len(self._ports_in_use)} in use, {len(closing)} closing)"
        )

    def _stats_from(self, raw: dict, *, final: bool = False) -> StreamStats:
        remote = raw.pop("remote")
        if remote is not None:
            remote = (str(ipaddress.ip_address(remote[0])), remote[1])
        return StreamStats(remote=remote, final=final, **raw)

    def _deliver_events(self) -> None:
        if self._native is None or self._closed:
            return
        for kind, endpoint_id, error, raw in self._native.drain_events():
            if kind == _native.EVENT_RTP_TIMEOUT:
                event: MediaEvent = RtpTimeout(endpoint_id)
            elif kind == _native.EVENT_FINAL_STATS:
                self._closing.pop(endpoint_id, None)
                event = self._stats_from(raw, final=True)
            elif kind == _native.EVENT_FAILED:
                event = EngineFailure(endpoint_id or None, error, os.strerror(error))
                log.error("media engine: %s (endpoint %s)", event.message, event.endpoint_id)
            else:
                log.error("media engine: unknown event kind %d", kind)
                continue
            if self._handler is None:
                continue
            try:
                self._handler(event)
            except Exception:
                # A faulty handler must not stop event delivery for every other call.
                log.exception("media event handler failed on %r", event)


def _check_payload_type(what: str, value: int) -> None:
    if not 0 <= value <= 127:
        raise MediaError(f"{what} must be 0..127, got {value}")
    if value in _RTCP_CONFLICT_PTS:
        raise MediaError(f"{what} {value} collides with RTCP packet types (RFC 5761 §4)")
