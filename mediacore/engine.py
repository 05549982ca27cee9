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
    engine.play_file(a, "/prompts/welcome.wav")                # PromptDone when finished
    engine.send_dtmf(b, "123#")                                # RFC 4733 events toward b

A leg stays a packet relay (nothing decoded) unless its audio is needed as PCM: a prompt or tone
playing to it, `echo`, a PCM port (`create_pcm_port`, for the WebRTC bridge), in-band DTMF
detection or a peer of another codec family (G.711 µ-law and A-law relay to each other; L16 and
Opus only to the same codec at the same rate). Then the engine runs it through a jitter buffer
and 20 ms frames at `BUS_RATE`, transcoding through its codec slot (native/framepath.pyx,
native/codecslot.pyx).

Every leg is its own RTP session (RFC 3550 §8.2): it sends RTCP SR/RR reports with the engine's
CNAME every `rtcp_interval` seconds (randomised), a BYE when destroyed, and takes in the far
end's reports; `stats()` shows both sides' view of the stream (loss, jitter, round trip) and an
`RtcpReport` event says when the far end reported (see native/rtcp.pyx, native/rtcpio.pyx).
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from mediacore.codecs import EngineCodec, engine_codec
from mediacore.errors import MediaError
from mediacore.events import (
    DtmfDigit,
    EngineFailure,
    MediaEvent,
    PromptDone,
    RtcpReport,
    RtpTimeout,
    StreamStats,
)
from mediacore.opus_library import load_libopus
from mediacore.prompts import BUS_RATE, PromptCache
from mediacore.recording import RecordingInfo
from mediacore.taps import Taps
from mediacore.tones import render_tone, tone_spec
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

BUS_FRAME: int = _native.BUS_FRAME_SAMPLES
"Samples in one 20 ms frame at BUS_RATE: what PCM ports exchange."

# RFC 4733 §2.3.5: the duration field is 16 bits of timestamp units (8.19 s at 8 kHz); 40 ms is
# the shortest tone ITU-T Q.24 requires receivers to accept.
DTMF_MIN_MS, DTMF_MAX_MS = 40, 8000
# The engine queues at most 64 events per endpoint; a longer string is a caller's mistake.
DTMF_MAX_DIGITS = 32
DTMF_DIGITS = frozenset("0123456789*#ABCD")

# RFC 3550 §6.2: 5 s is the recommended fixed minimum between RTCP reports (for two-party calls
# it is also what the bandwidth rule of §6.3.1 gives); shorter intervals are for tests and for
# profiles that allow them (RFC 4585 §3.4).
RTCP_INTERVAL = 5.0
RTCP_INTERVAL_MIN, RTCP_INTERVAL_MAX = 0.05, 3600.0

# Real-time priority of the engine thread, as media servers run theirs (FreeSWITCH -rp, Asterisk
# -p): low among real-time priorities (1-99), so kernel threads that must preempt it still do.
REALTIME_PRIORITY = 10

KEEP: Literal["keep"] = "keep"
"set_codec(..., telephone_event_pt=KEEP): leave the telephone-event payload type as it is."


@dataclass(frozen=True)
class Endpoint:
    """One RTP/RTCP socket pair of the engine: one leg of a call."""

    id: int
    "Engine-wide unique id (never reused while the engine runs)."
    local_port: int
    "The RTP port (even); RTCP uses local_port + 1 (RFC 3550 §11)."
    codec: str
    "The leg's negotiated codec: PCMU, PCMA, L16 or opus."
    payload_type: int
    "The leg's payload type for that codec (from the SDP answer)."
    telephone_event_pt: int | None = None
    "The leg's RFC 4733 telephone-event payload type, None if not negotiated."
    clock_rate: int = 8000
    "The codec's RTP clock rate (timestamp units per second; Opus: 48000)."

    @property
    def rtcp_port(self) -> int:
        return self.local_port + 1


@dataclass(frozen=True)
class PcmPort:
    """An endpoint without sockets: Python writes the frames it should play into the engine and
    reads the frames the engine produced for it (the WebRTC bridge, where aiortc terminates
    ICE/DTLS/SRTP and Opus). It connects, plays and echoes like an Endpoint."""

    id: int
    "Engine-wide unique id."
    sample_rate: int = BUS_RATE
    "Rate of the frames exchanged (Hz)."
    frame_samples: int = BUS_FRAME
    "Samples per 20 ms frame (16-bit signed, native byte order)."


AnyEndpoint = Endpoint | PcmPort


class MediaEngine:
    """The process's media engine: endpoints on a port range, relayed by a native thread."""

    def __init__(self, bind: str = "127.0.0.1", port_min: int = 10000, port_max: int = 19999, *,
                 rtcp_interval: float = RTCP_INTERVAL, measure_residence: bool = False,
                 realtime_priority: int = REALTIME_PRIORITY) -> None:
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
        self._endpoints: dict[int, AnyEndpoint] = {}
        self.prompts = PromptCache()
        "Prompt files resampled to BUS_RATE, shared by every call (see play_file)."
        self._tones: dict[tuple[str, str], np.ndarray] = {}
        self._ports_in_use: set[int] = set()
        # Ports of destroyed endpoints whose sockets the engine thread has not closed yet (its
        # final StreamStats event says it has); tried last when allocating.
        self._closing: dict[int, int] = {}
        # Ports are handed out round-robin: a port just freed may still receive the previous
        # call's packets for a moment (the far end has not processed the BYE yet).
        self._cursor = 0
        self._closed = False
        self.taps = Taps(self)
        "Recordings and conference rooms (also reachable through the methods below)."
        if not RTCP_INTERVAL_MIN <= rtcp_interval <= RTCP_INTERVAL_MAX:
            raise MediaError(f"rtcp_interval must be {RTCP_INTERVAL_MIN}..{RTCP_INTERVAL_MAX} s, got {rtcp_interval}")
        self.rtcp_interval = rtcp_interval
        "Seconds between a leg's RTCP reports, randomised 0.5-1.5x each time (RFC 3550 §6.3.1)."
        # RFC 7022 §4.2: a short-term CNAME of 96 random bits, one per engine (RFC 3550 §6.5.1:
        # the same for every stream we send), revealing nothing about the host.
        self.cname = secrets.token_hex(12)
        "The RTCP CNAME every endpoint of this engine announces in its SDES (RFC 3550 §6.5.1)."
        self._measure_residence = measure_residence
        if not 0 <= realtime_priority <= 99:
            raise MediaError(f"realtime_priority must be 0 (off) or 1..99, got {realtime_priority}")
        self.realtime_priority = realtime_priority
        "SCHED_FIFO priority asked for the engine thread (0: normal scheduling)."
        self.realtime = False
        "True when the engine thread runs with `realtime_priority` (the system allowed it)."

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
        engine.configure_rtcp(self.rtcp_interval, self.cname.encode())
        if self._measure_residence:
            engine.configure_residence()
        engine.start()
        self._raise_priority(engine.native_thread_id)
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
            self.taps.close()
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
    def endpoints(self) -> list[AnyEndpoint]:
        return list(self._endpoints.values())

    # -- endpoints ------------------------------------------------------------------------------

    def create_endpoint(
        self,
        codec: str = "PCMU",
        payload_type: int = 0,
        *,
        clock_rate: int | None = None,
        rtp_timeout: float | None = None,
        telephone_event_pt: int | None = None,
    ) -> Endpoint:
        """Open an RTP/RTCP socket pair on a free even port of the range. `codec` is PCMU, PCMA,
        L16 (clock_rate 8000, 16000 or 48000: required) or opus (48000); see
        mediacore.codecs.engine_codec. An unknown codec raises UnsupportedCodec (a MediaError
        and a ValueError)."""
        engine = self._running()
        spec = _engine_codec(codec, clock_rate)
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
                spec.codec_id,
                payload_type,
                -1 if telephone_event_pt is None else telephone_event_pt,
                rtp_timeout or 0.0,
                secrets.randbits(32),   # RFC 3550 §8.1: SSRC chosen at random
                secrets.randbits(16),   # §5.1: random initial sequence number and timestamp
                secrets.randbits(32),
                spec.clock_rate,
            )
        except ValueError as exc:       # the codec's state could not be set up (libopus)
            rtp.close()
            rtcp.close()
            raise MediaError(str(exc)) from None
        except BaseException:
            rtp.close()
            rtcp.close()
            raise
        rtp.detach()   # the engine owns the descriptors now and closes them on destroy
        rtcp.detach()
        endpoint = Endpoint(endpoint_id, port, spec.name, payload_type, telephone_event_pt,
                            spec.clock_rate)
        self._endpoints[endpoint_id] = endpoint
        self._ports_in_use.add(port)
        return endpoint

    def set_remote(self, endpoint: Endpoint, host: str, port: int) -> None:
        """Send the leg's RTP to host:port (from SDP) until media arrives from elsewhere."""
        engine = self._running()
        self._rtp(endpoint)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"remote must be an IP address (resolve names first), got {host!r}") from None
        if address.version != self._bind_ip.version:
            raise MediaError(f"remote {host} is IPv{address.version}, the engine binds IPv{self._bind_ip.version}")
        if not 0 < port < 65535:
            raise MediaError(f"remote RTP port must be 1..65534, got {port}")
        engine.set_remote(endpoint.id, address.packed, port)

    def connect(self, a: AnyEndpoint, b: AnyEndpoint, *, both_ways: bool = True) -> None:
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

    def disconnect(self, a: AnyEndpoint) -> None:
        """Stop relaying into and out of `a` (and echoing it); its sockets stay open."""
        self._running().disconnect(self._known(a).id)

    def set_rtp_timeout(self, endpoint: Endpoint, seconds: float | None) -> None:
        """Change the RTP timeout (None: never), e.g. longer while the call is on hold."""
        if seconds is not None and seconds <= 0:
            raise MediaError(f"rtp_timeout must be positive seconds or None, got {seconds}")
        self._running().set_rtp_timeout(self._rtp(endpoint).id, seconds or 0.0)

    def destroy(self, endpoint: AnyEndpoint) -> None:
        """Close the leg's sockets; a PromptDone (if a prompt was playing) and a final
        StreamStats event follow."""
        engine = self._running()
        endpoint = self._known(endpoint)
        engine.destroy(endpoint.id)
        del self._endpoints[endpoint.id]
        if isinstance(endpoint, Endpoint):
            self._ports_in_use.discard(endpoint.local_port)
            self._closing[endpoint.id] = endpoint.local_port

    def set_codec(
        self,
        endpoint: Endpoint,
        codec: str,
        payload_type: int,
        *,
        clock_rate: int | None = None,
        telephone_event_pt: int | None | Literal["keep"] = KEEP,
    ) -> Endpoint:
        """The leg's codec changed (a re-INVITE's answer). Returns the updated Endpoint record
        (the old one still names the same leg). The connection to its peer follows: a relay
        when both legs are G.711 (or the same L16/Opus), decoded frames otherwise. A new clock
        rate also starts a new outgoing stream (new SSRC, RFC 7160 §4.1)."""
        engine = self._running()
        endpoint = self._rtp(endpoint)
        spec = _engine_codec(codec, clock_rate)
        _check_payload_type("payload type", payload_type)
        event_pt = endpoint.telephone_event_pt if telephone_event_pt == KEEP else telephone_event_pt
        if event_pt is not None:
            _check_payload_type("telephone-event payload type", event_pt)
            if event_pt == payload_type:
                raise MediaError("telephone-event and audio need different payload types")
        try:
            engine.set_codec(endpoint.id, spec.codec_id, payload_type, -1 if event_pt is None else event_pt,
                             spec.clock_rate)
        except ValueError as exc:
            raise MediaError(str(exc)) from None
        updated = replace(endpoint, codec=spec.name, payload_type=payload_type, telephone_event_pt=event_pt,
                          clock_rate=spec.clock_rate)
        self._endpoints[endpoint.id] = updated
        return updated

    # -- the frame path: players, echo, DTMF, PCM ports ----------------------------------------

    def play(self, endpoint: AnyEndpoint, pcm: np.ndarray, *, loop: bool = False) -> int:
        """Play int16 mono PCM at BUS_RATE to the leg, replacing whatever it was sending (a
        relay toward it pauses and resumes after). Returns the play id of the PromptDone event
        that follows; the engine reads `pcm` in place until then, so do not modify it."""
        engine = self._running()
        endpoint = self._known(endpoint)
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise MediaError("a prompt is a one-dimensional int16 numpy array at BUS_RATE")
        if pcm.size == 0:
            raise MediaError("nothing to play: the prompt is empty")
        return engine.play(endpoint.id, np.ascontiguousarray(pcm), loop)

    def play_file(self, endpoint: AnyEndpoint, path: str | Path, *, loop: bool = False) -> int:
        """Play an audio file (any rate; resampled once and cached). Music on hold: loop=True."""
        return self.play(endpoint, self.prompts.load(path), loop=loop)

    def play_tone(self, endpoint: AnyEndpoint, name: str, country: str = "CN") -> int:
        """Play a call-progress tone (dial, ringback, busy, congestion) until stopped."""
        key = (name.lower(), country.upper())
        pcm = self._tones.get(key)
        if pcm is None:
            pcm = render_tone(tone_spec(name, country), BUS_RATE)
            pcm.flags.writeable = False
            self._tones[key] = pcm
        return self.play(endpoint, pcm, loop=True)

    def stop_playback(self, endpoint: AnyEndpoint) -> None:
        """Stop the leg's prompt or tone (PromptDone with completed=False), if one plays."""
        self._running().stop_play(self._known(endpoint).id)

    def echo(self, endpoint: AnyEndpoint, on: bool = True) -> None:
        """Send what the leg receives back to it (the echo test); `disconnect` also ends it."""
        self._running().echo(self._known(endpoint).id, on)

    def send_dtmf(self, endpoint: Endpoint, digits: str, duration_ms: int = 100) -> None:
        """Send `digits` as RFC 4733 telephone-events, one after another; the leg's audio is
        muted while each event is sent."""
        engine = self._running()
        endpoint = self._rtp(endpoint)
        if endpoint.telephone_event_pt is None:
            raise MediaError("no telephone-event payload type negotiated on this endpoint (RFC 4733)")
        digits = digits.upper()
        bad = sorted(set(digits) - DTMF_DIGITS)
        if bad or not digits:
            raise MediaError(f"DTMF digits are 0-9 * # A-D, got {digits!r}")
        if len(digits) > DTMF_MAX_DIGITS:
            raise MediaError(f"at most {DTMF_MAX_DIGITS} digits per call, got {len(digits)}")
        # RFC 4733 §2.3.5: the 16-bit duration counts the audio codec's clock (1365 ms at 48 kHz).
        longest = min(DTMF_MAX_MS, 0xFFFF * 1000 // endpoint.clock_rate)
        if not DTMF_MIN_MS <= duration_ms <= longest:
            raise MediaError(f"DTMF duration must be {DTMF_MIN_MS}..{longest} ms, got {duration_ms}")
        engine.send_dtmf(endpoint.id, digits, duration_ms)

    def detect_inband_dtmf(self, endpoint: AnyEndpoint, on: bool = True) -> None:
        """Detect DTMF key presses sent as tones in the leg's received audio (trunks without
        RFC 4733): each press becomes one DtmfDigit(source="inband") when it ends. The leg's
        input is decoded to frames while this is on (its relay to a peer carries on unchanged);
        off again, it goes back to a plain relay if nothing else needs its audio. Presses the
        leg also signals as RFC 4733 events are reported once, from the events."""
        self._running().inband_dtmf(self._known(endpoint).id, on)

    def create_pcm_port(self) -> PcmPort:
        """A socketless endpoint that exchanges 20 ms frames with Python (write_frame/read_frame)."""
        port = PcmPort(self._running().add_port())
        self._endpoints[port.id] = port
        return port

    def write_frame(self, port: PcmPort, pcm: bytes | np.ndarray) -> None:
        """Give the engine the port's next 20 ms of audio (BUS_FRAME int16 samples). Never blocks;
        if Python runs more than 160 ms ahead the oldest frame is dropped (port_overruns)."""
        engine = self._running()
        port = self._port(port)
        if isinstance(pcm, (bytes, bytearray, memoryview)):
            if len(pcm) != 2 * BUS_FRAME:
                raise MediaError(f"a frame is {2 * BUS_FRAME} bytes ({BUS_FRAME} int16 samples), got {len(pcm)}")
            frame = np.frombuffer(pcm, dtype=np.int16)
        elif isinstance(pcm, np.ndarray) and pcm.dtype == np.int16 and pcm.shape == (BUS_FRAME,):
            frame = np.ascontiguousarray(pcm)
        else:
            raise MediaError(f"a frame is {BUS_FRAME} int16 samples (bytes or a numpy array)")
        engine.write_frame(port.id, frame)

    def read_frame(self, port: PcmPort) -> bytes | None:
        """The oldest 20 ms frame the engine produced for the port (int16 bytes), None if none."""
        return self._running().read_frame(self._port(port).id)

    # -- recordings and rooms (mediacore.taps) ---------------------------------------------------

    def start_recording(self, path: str | Path, caller: AnyEndpoint | None,
                        agent: AnyEndpoint | None = None) -> int:
        """Record the legs' received audio to a new stereo WAV (caller left, agent right)."""
        return self.taps.start_recording(path, caller, agent)

    async def stop_recording(self, recording_id: int) -> RecordingInfo:
        """Stop a recording and close its file off the loop: size, SHA-256, duration."""
        return await self.taps.stop_recording(recording_id)

    def create_room(self) -> int:
        """A conference room: each member hears the sum of the others (up to 50 members)."""
        return self.taps.create_room()

    def join_room(self, room_id: int, member: AnyEndpoint, *, muted: bool = False, deaf: bool = False,
                  whisper_to: AnyEndpoint | None = None) -> None:
        """Add a leg to a room, or change its routes (mute, deaf, whisper to one member)."""
        self.taps.join_room(room_id, member, muted=muted, deaf=deaf, whisper_to=whisper_to)

    def leave_room(self, room_id: int, member: AnyEndpoint) -> None:
        self.taps.leave_room(room_id, member)

    def close_room(self, room_id: int) -> None:
        self.taps.close_room(room_id)

    def stats(self, endpoint: AnyEndpoint) -> StreamStats:
        """A consistent snapshot of the leg's counters, its RFC 3550 receiver statistics and what
        the far end last reported about our stream over RTCP (remote_* fields, round_trip_ms)."""
        return self._stats_from(self._running().stats(self._known(endpoint).id))

    def residence_histogram(self, *, reset: bool = False) -> tuple[int, np.ndarray] | None:
        """Bench probe, on with MediaEngine(measure_residence=True): how long received RTP waited
        between its arrival (the kernel's SO_TIMESTAMPNS stamp) and the engine thread reading
        it, as (bin width in ns, counts per bin; the last bin holds every longer wait). This is
        the delay the engine itself adds, whatever the load generator does. None when off."""
        probe = self._running().residence(reset)
        if probe is None:
            return None
        width, counts = probe
        return width, np.frombuffer(counts, dtype=np.uint32)

    # -- internals ------------------------------------------------------------------------------

    def _running(self) -> _native.Engine:
        if self._closed:
            raise MediaError("the media engine is closed")
        if self._native is None:
            raise MediaError("the media engine is not started")
        if not self._native.running:
            raise MediaError("the media engine thread has stopped")
        return self._native

    def _known(self, endpoint: AnyEndpoint) -> AnyEndpoint:
        """The current record of the endpoint (ids are never reused while the engine runs)."""
        current = self._endpoints.get(endpoint.id)
        if current is None or type(current) is not type(endpoint):
            raise MediaError(f"endpoint {endpoint.id} does not exist (destroyed?)")
        return current

    def _rtp(self, endpoint: Endpoint) -> Endpoint:
        current = self._known(endpoint)
        if not isinstance(current, Endpoint):
            raise MediaError(f"endpoint {endpoint.id} is a PCM port, not an RTP endpoint")
        return current

    def _port(self, port: PcmPort) -> PcmPort:
        current = self._known(port)
        if not isinstance(current, PcmPort):
            raise MediaError(f"endpoint {port.id} is not a PCM port")
        return current

    def _raise_priority(self, tid: int | None) -> None:
        # Measured with `python -m bench media --residence`: on a busy machine the engine thread
        # at normal priority waits for a CPU for tens of milliseconds (CFS run-queue latency), and
        # every packet that arrives meanwhile waits with it; as a SCHED_FIFO thread it runs as
        # soon as a packet or its tick wakes it, and the added delay stays under a millisecond.
        # It sleeps in epoll_wait whenever it is idle, and the kernel's RT throttling
        # (sched_rt_runtime_us) leaves the other tasks of its CPU their share even at overload.
        if not self.realtime_priority or tid is None:
            return
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
        except OSError as exc:
            log.info("media engine thread stays at normal priority (SCHED_FIFO %d refused: %s)",
                     self.realtime_priority, exc.strerror)
            return
        self.realtime = True

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
        for kind, endpoint_id, error, details in self._native.drain_events():
            if kind == _native.EVENT_RTP_TIMEOUT:
                event: MediaEvent = RtpTimeout(endpoint_id)
            elif kind == _native.EVENT_DTMF:
                event = DtmfDigit(endpoint_id, details[0], details[1], details[2])
            elif kind == _native.EVENT_PROMPT_DONE:
                event = PromptDone(endpoint_id, details[0], details[1])
            elif kind == _native.EVENT_RECORDING_DONE:
                self.taps.recording_done(endpoint_id, error)     # the id is the recording's
                continue
            elif kind == _native.EVENT_FINAL_STATS:
                self._closing.pop(endpoint_id, None)
                self.taps.forget_endpoint(endpoint_id)
                event = self._stats_from(details, final=True)
            elif kind == _native.EVENT_RTCP_REPORT:
                stats = self._stats_from(details)
                event = RtcpReport(endpoint_id, stats.remote_fraction_lost or 0.0, stats.remote_packets_lost or 0,
                                   stats.remote_jitter_ms or 0.0, stats.round_trip_ms, stats)
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


def _engine_codec(name: str, clock_rate: int | None) -> EngineCodec:
    spec = engine_codec(name, clock_rate)
    if spec.name == "opus":
        load_libopus()   # once per process; MediaError if there is no libopus
    return spec


def _check_payload_type(what: str, value: int) -> None:
    if not 0 <= value <= 127:
        raise MediaError(f"{what} must be 0..127, got {value}")
    if value in _RTCP_CONFLICT_PTS:
        raise MediaError(f"{what} {value} collides with RTCP packet types (RFC 5761 §4)")
