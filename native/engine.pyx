# cython: language_level=3
"""The media engine as a Python object: endpoint slots, the command and event rings, the thread.

`Engine.start()` runs `native.medialoop.run_loop` in a thread that never takes the GIL. Methods
here only validate, queue a command for that thread and return; `stats()` copies counters under
the loop's state lock and `drain_events()` empties the event ring. `mediacore.engine` is the
typed API the rest of the project uses over this module.

A prompt's PCM is not copied: the engine plays from the caller's buffer, which this object keeps
referenced until the engine reports EV_PROMPT_DONE for it (or the engine is closed).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_MONOTONIC
from posix.unistd cimport close, read

from native.bus cimport BUS_FRAME, BUS_RATE
from native.codecslot cimport CodecState, codec_needs_state, codec_state_free, codec_state_new
from native.framepath cimport frame_free
from native.recorder cimport WavRecorder
from native.taps cimport (
    TAP_DEAF,
    TAP_MUTED,
    TAP_RECORD_START,
    TAP_RECORD_STOP,
    TAP_ROOM_FREE,
    TAP_ROOM_JOIN,
    TAP_ROOM_LEAVE,
    TAP_ROOM_NEW,
    TAP_ROOM_SET,
    Taps,
    taps_command,
    taps_forget,
    taps_free,
    taps_new,
    taps_tick,
)
from native.medialoop cimport (
    BATCH,
    CMD_ADD,
    CMD_CONNECT,
    CMD_DESTROY,
    CMD_DISCONNECT,
    CMD_DTMF,
    CMD_ECHO,
    CMD_INBAND_DTMF,
    CMD_PLAY,
    CMD_SET_CODEC,
    CMD_SET_REMOTE,
    CMD_SET_TIMEOUT,
    CMD_STOP,
    CMD_TAP,
    CMD_STOP_PLAY,
    CODEC_BUS,
    CODEC_L16,
    CODEC_OPUS,
    CODEC_PCMA,
    CODEC_PCMU,
    COMMAND_RING,
    EV_DTMF,
    EV_FAILED,
    EV_FINAL_STATS,
    EV_PROMPT_DONE,
    EV_RECORDING_DONE,
    EV_RTCP_REPORT,
    EV_RTP_TIMEOUT,
    EVENT_RING,
    MAX_DATAGRAM,
    RESIDENCE_BIN_NS,
    RESIDENCE_BINS,
    RX_CTRL,
    TAG_CLOCK,
    TAG_COMMANDS,
    TICK_NS,
    Command,
    Core,
    Endpoint,
    Event,
    Snapshot,
    apply_command,
    close_endpoint,
    free_graveyard,
    push_command,
    run_loop,
    take_snapshot,
)
from native.pcmport cimport PcmPort, port_read, port_write
from native.rtcp cimport RTCP_CNAME_MAX
from native.rtpwire cimport get_port
from native.telephone_event cimport dtmf_event_code
from native.sysio cimport (
    AF_INET,
    AF_INET6,
    EFD_CLOEXEC,
    EFD_NONBLOCK,
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLLIN,
    TFD_CLOEXEC,
    TFD_NONBLOCK,
    epoll_create1,
    epoll_ctl,
    epoll_event,
    eventfd,
    htons,
    itimerspec,
    pthread_cond_destroy,
    pthread_cond_init,
    pthread_mutex_destroy,
    pthread_mutex_init,
    pthread_mutex_lock,
    pthread_mutex_unlock,
    sockaddr_in,
    sockaddr_in6,
    sockaddr_storage,
    timerfd_create,
    timerfd_settime,
)

import os
import threading

CODEC_IDS = {"PCMU": CODEC_PCMU, "PCMA": CODEC_PCMA, "L16": CODEC_L16, "OPUS": CODEC_OPUS}
# RTP clock rates each codec runs at here (RFC 3551 §4.5.14 G.711, §4.5.11 L16; RFC 7587 §4.1).
CODEC_CLOCK_RATES = {CODEC_PCMU: (8000,), CODEC_PCMA: (8000,), CODEC_L16: (8000, 16000, 48000),
                     CODEC_OPUS: (48000,)}
EVENT_RTP_TIMEOUT = EV_RTP_TIMEOUT
EVENT_FINAL_STATS = EV_FINAL_STATS
EVENT_FAILED = EV_FAILED
EVENT_DTMF = EV_DTMF
EVENT_PROMPT_DONE = EV_PROMPT_DONE
EVENT_RECORDING_DONE = EV_RECORDING_DONE
EVENT_RTCP_REPORT = EV_RTCP_REPORT
# RFC 3550 §6.2: the recommended fixed minimum interval between RTCP reports.
RTCP_INTERVAL_DEFAULT = 5.0
TAPS = {"record_start": TAP_RECORD_START, "record_stop": TAP_RECORD_STOP, "room_new": TAP_ROOM_NEW,
        "room_free": TAP_ROOM_FREE, "room_join": TAP_ROOM_JOIN, "room_set": TAP_ROOM_SET,
        "room_leave": TAP_ROOM_LEAVE}
TAP_FLAG_MUTED = TAP_MUTED
TAP_FLAG_DEAF = TAP_DEAF
BUS_SAMPLE_RATE = BUS_RATE
BUS_FRAME_SAMPLES = BUS_FRAME


cdef object address_tuple(const sockaddr_storage* addr):
    """(packed IP address bytes, port) of an IPv4 or IPv6 socket address."""
    if addr.ss_family == AF_INET:
        return (PyBytes_FromStringAndSize(<const char*>&(<const sockaddr_in*>addr).sin_addr, 4),
                get_port(addr))
    return (PyBytes_FromStringAndSize(<const char*>&(<const sockaddr_in6*>addr).sin6_addr, 16),
            get_port(addr))


cdef dict snapshot_dict(const Snapshot* s):
    return {
        "endpoint_id": s.id,
        "packets_in": s.counters.packets_in,
        "bytes_in": s.counters.bytes_in,
        "packets_out": s.counters.packets_out,
        "bytes_out": s.counters.bytes_out,
        "packets_expected": s.packets_expected,
        "packets_lost": s.packets_lost,
        "jitter_ms": s.jitter_ms,
        "malformed": s.counters.malformed,
        "dropped": s.counters.dropped,
        "rtcp_packets_in": s.counters.rtcp_packets_in,
        "send_errors": s.counters.send_errors,
        "ssrc_in": s.ssrc_in if s.has_ssrc_in else None,
        "ssrc_out": s.ssrc_out,
        "remote": address_tuple(&s.remote) if s.remote_known else None,
        "latched": bool(s.latched),
        "frame_mode": bool(s.frame_mode),
        "jitter_depth": s.jitter_depth,
        "late": s.late,
        "concealed": s.concealed,
        "discarded": s.discarded,
        "dtmf_in": s.dtmf_in,
        "port_overruns": s.port_overruns,
        # RTCP (RFC 3550 §6.4.1): what the far end last reported about our stream.
        "rtcp_reports_out": s.rtcp.reports_out,
        "rtcp_malformed": s.rtcp.malformed,
        "remote_fraction_lost": s.rtcp.fraction_lost / 256.0 if s.rtcp.has_report else None,
        "remote_packets_lost": s.rtcp.cumulative_lost if s.rtcp.has_report else None,
        "remote_jitter_ms": s.remote_jitter_ms if s.rtcp.has_report else None,
        "round_trip_ms": s.rtcp.rtt_ns / 1e6 if s.rtcp.has_rtt else None,
        "remote_bye": bool(s.rtcp.peer_bye),
    }


cdef class Engine:
    """The native engine: endpoint slots, the rings, the thread. Not thread-safe on the Python
    side (call it from one thread, the asyncio loop's); `mediacore.engine.MediaEngine` wraps it."""

    cdef Core* core
    cdef Endpoint** table
    cdef int capacity
    cdef int* free_slots
    cdef int free_count
    cdef uint64_t serial
    cdef Event* drained
    cdef object thread
    cdef bint closed
    cdef dict prompts          # play id -> the buffer the engine plays from, until PROMPT_DONE
    cdef uint64_t play_serial
    cdef Taps* taps            # recordings and rooms on the frame hook (taps.pyx)
    cdef dict recorders        # recording id -> its WavRecorder, until RECORDING_DONE

    def __cinit__(self, int capacity):
        cdef itimerspec tick
        cdef epoll_event ev
        cdef int i
        cdef Core* c
        if capacity < 1 or capacity > 32768:
            raise ValueError(f"endpoint capacity must be 1..32768, got {capacity}")
        self.capacity = capacity
        self.prompts = {}
        self.recorders = {}
        self.core = <Core*>calloc(1, sizeof(Core))
        self.table = <Endpoint**>calloc(capacity, sizeof(Endpoint*))
        self.free_slots = <int*>calloc(capacity, sizeof(int))
        self.drained = <Event*>calloc(EVENT_RING, sizeof(Event))
        if self.core == NULL or self.table == NULL or self.free_slots == NULL or self.drained == NULL:
            raise MemoryError()
        c = self.core
        c.epoll_fd = c.command_fd = c.event_fd = c.clock_fd = -1
        c.commands = <Command*>calloc(COMMAND_RING, sizeof(Command))
        c.events = <Event*>calloc(EVENT_RING, sizeof(Event))
        c.rx_data = <uint8_t*>calloc(BATCH, MAX_DATAGRAM)
        if c.commands == NULL or c.events == NULL or c.rx_data == NULL:
            raise MemoryError()
        self.taps = taps_new()
        if self.taps == NULL:
            raise MemoryError()
        c.frame_hook = taps_tick
        c.frame_hook_arg = self.taps
        c.tap_command = taps_command
        c.endpoint_gone = taps_forget
        c.rtcp_interval_ns = <int64_t>(RTCP_INTERVAL_DEFAULT * 1e9)
        # RFC 7022 §4.2: a random CNAME until configure_rtcp() names the engine's own.
        cname = os.urandom(12).hex().encode()
        memcpy(c.rtcp_cname, <const char*>cname, len(cname))
        c.rtcp_cname_len = len(cname)
        pthread_mutex_init(&c.state_lock, NULL)
        pthread_mutex_init(&c.command_lock, NULL)
        pthread_cond_init(&c.command_space, NULL)
        pthread_mutex_init(&c.event_lock, NULL)
        for i in range(capacity):
            self.free_slots[i] = capacity - 1 - i
        self.free_count = capacity
        for i in range(BATCH):
            c.rx_iov[i].iov_base = c.rx_data + i * MAX_DATAGRAM
            c.rx_iov[i].iov_len = MAX_DATAGRAM
            c.rx_msgs[i].msg_hdr.msg_iov = &c.rx_iov[i]
            c.rx_msgs[i].msg_hdr.msg_iovlen = 1
            c.rx_msgs[i].msg_hdr.msg_name = &c.rx_addr[i]
            c.tx_msgs[i].msg_hdr.msg_iov = &c.tx_iov[i]
            c.tx_msgs[i].msg_hdr.msg_iovlen = 1

        c.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
        c.command_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        c.event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        c.clock_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if c.epoll_fd < 0 or c.command_fd < 0 or c.event_fd < 0 or c.clock_fd < 0:
            raise OSError(errno, os.strerror(errno))
        memset(&tick, 0, sizeof(itimerspec))
        tick.it_interval.tv_nsec = TICK_NS
        tick.it_value.tv_nsec = TICK_NS
        if timerfd_settime(c.clock_fd, 0, &tick, NULL) != 0:
            raise OSError(errno, os.strerror(errno))
        ev.events = EPOLLIN
        ev.data.u64 = TAG_COMMANDS
        if epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, c.command_fd, &ev) != 0:
            raise OSError(errno, os.strerror(errno))
        ev.data.u64 = TAG_CLOCK
        if epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, c.clock_fd, &ev) != 0:
            raise OSError(errno, os.strerror(errno))

    def __dealloc__(self):
        self._release()

    # -- lifecycle --

    def start(self) -> None:
        """Start the engine thread; it runs without the GIL until `close()`."""
        if self.closed:
            raise RuntimeError("the media engine is closed")
        if self.thread is not None:
            raise RuntimeError("the media engine is already started")
        self.core.running = 1
        self.thread = threading.Thread(target=self._run, name="media-engine", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with nogil:
            run_loop(self.core)

    def close(self) -> None:
        """Stop the thread, close every endpoint's sockets and free the engine. Idempotent."""
        cdef Command cmd
        if self.closed:
            return
        if self.thread is not None:
            memset(&cmd, 0, sizeof(Command))
            cmd.op = CMD_STOP
            with nogil:
                push_command(self.core, &cmd)
            self.thread.join()
        self._release()

    cdef void _release(self) noexcept:
        cdef Core* c = self.core
        cdef Endpoint* ep
        cdef Endpoint* nxt
        if c == NULL:
            return
        self.closed = True
        # No engine thread any more: finish the queued commands here so that every endpoint is
        # either on the live list or in the graveyard, then free them all.
        while c.command_count:
            apply_command(c, &c.commands[c.command_head])
            c.command_head = (c.command_head + 1) % COMMAND_RING
            c.command_count -= 1
        if self.taps != NULL:
            # Recordings are flushed (their files stay valid; Python closes them) and rooms let
            # go of their legs while the legs still exist.
            taps_free(c, self.taps)
            self.taps = NULL
        ep = c.live
        while ep != NULL:
            nxt = ep.next
            close_endpoint(ep)
            frame_free(ep)
            free(ep)
            ep = nxt
        c.live = NULL
        free_graveyard(c)
        if c.epoll_fd >= 0:
            close(c.epoll_fd)
        if c.command_fd >= 0:
            close(c.command_fd)
        if c.event_fd >= 0:
            close(c.event_fd)
        if c.clock_fd >= 0:
            close(c.clock_fd)
        pthread_mutex_destroy(&c.state_lock)
        pthread_mutex_destroy(&c.command_lock)
        pthread_cond_destroy(&c.command_space)
        pthread_mutex_destroy(&c.event_lock)
        free(c.commands)
        free(c.events)
        free(c.rx_data)
        free(c.residence)
        free(c.rx_ctrl)
        free(c)
        self.core = NULL
        free(self.table)
        self.table = NULL
        free(self.free_slots)
        self.free_slots = NULL
        free(self.drained)
        self.drained = NULL
        self.prompts.clear()      # nothing plays from them any more
        self.recorders.clear()

    def configure_rtcp(self, double interval, bytes cname) -> None:
        """Before `start()`: the RTCP report interval in seconds (RFC 3550 §6.2, randomised
        0.5-1.5x per report) and the CNAME every endpoint announces (§6.5.1, up to 64 octets)."""
        self._check_open()
        if self.thread is not None:
            raise RuntimeError("configure RTCP before starting the engine")
        if not 0.05 <= interval <= 3600.0:
            raise ValueError(f"RTCP interval must be 0.05..3600 s, got {interval}")
        if not 0 < len(cname) <= RTCP_CNAME_MAX:
            raise ValueError(f"a CNAME is 1..{RTCP_CNAME_MAX} octets, got {len(cname)}")
        self.core.rtcp_interval_ns = <int64_t>(interval * 1e9)
        memcpy(self.core.rtcp_cname, <const char*>cname, len(cname))
        self.core.rtcp_cname_len = len(cname)

    def configure_residence(self) -> None:
        """Before `start()`: switch on the bench probe that histograms how long relayed RTP
        waits between its arrival (the kernel's stamp) and the engine reading it."""
        self._check_open()
        if self.thread is not None:
            raise RuntimeError("configure the residence probe before starting the engine")
        if self.core.residence != NULL:
            return
        self.core.residence = <uint32_t*>calloc(RESIDENCE_BINS, sizeof(uint32_t))
        self.core.rx_ctrl = <uint8_t*>calloc(BATCH, RX_CTRL)
        if self.core.residence == NULL or self.core.rx_ctrl == NULL:
            raise MemoryError()

    def residence(self, bint reset=False) -> tuple:
        """(bin width in ns, counts per bin as bytes of uint32) of the residence probe, or None if
        it is off; with `reset` the bins start again from zero (an approximate cut: the engine
        thread keeps counting meanwhile)."""
        self._check_open()
        if self.core.residence == NULL:
            return None
        data = PyBytes_FromStringAndSize(<const char*>self.core.residence, RESIDENCE_BINS * sizeof(uint32_t))
        if reset:
            memset(self.core.residence, 0, RESIDENCE_BINS * sizeof(uint32_t))
        return RESIDENCE_BIN_NS, data

    @property
    def event_fd(self) -> int:
        """The eventfd that becomes readable when events wait in the ring (for loop.add_reader)."""
        self._check_open()
        return self.core.event_fd

    @property
    def native_thread_id(self) -> int | None:
        """The engine thread's kernel TID (for /proc/self/task/TID/stat), None before start."""
        return None if self.thread is None else self.thread.native_id

    @property
    def ticks(self) -> int:
        """How many 20 ms clock ticks the engine has run."""
        return 0 if self.core == NULL else self.core.ticks

    @property
    def events_dropped(self) -> int:
        """Events lost because the asyncio side did not drain the ring in time."""
        return 0 if self.core == NULL else self.core.events_dropped

    @property
    def running(self) -> bool:
        return self.core != NULL and self.core.running == 1

    cdef int _check_open(self) except -1:
        if self.closed:
            raise RuntimeError("the media engine is closed")
        return 0

    cdef int _push(self, Command* cmd) except -1:
        cdef int rc
        self._check_open()
        if self.thread is None:
            raise RuntimeError("the media engine is not started")
        with nogil:
            rc = push_command(self.core, cmd)
        if rc != 0:
            raise RuntimeError("the media engine thread has stopped")
        return 0

    cdef Endpoint* _lookup(self, uint64_t endpoint_id) except NULL:
        self._check_open()
        cdef uint64_t slot = endpoint_id & 0xFFFF
        if slot < <uint64_t>self.capacity and self.table[slot] != NULL and self.table[slot].id == endpoint_id:
            return self.table[slot]
        raise KeyError(f"unknown media endpoint {endpoint_id}")

    # -- endpoints --

    def add_endpoint(self, int rtp_fd, int rtcp_fd, int codec, int payload_type, int event_pt,
                     double rtp_timeout, uint32_t ssrc, uint16_t first_seq, uint32_t first_ts,
                     uint32_t clock_rate=8000) -> int:
        """Hand two bound non-blocking UDP sockets to the engine (it closes them on destroy).
        Returns the endpoint id. Opus needs libopus loaded (mediacore.opus_library)."""
        cdef Endpoint* ep
        cdef CodecState* state
        _check_codec(codec, clock_rate, payload_type, event_pt)
        if rtp_fd < 0 or rtcp_fd < 0:
            raise ValueError("invalid socket descriptor")
        state = _new_codec_state(codec, clock_rate)
        try:
            ep = self._new_endpoint()
        except BaseException:
            codec_state_free(state)
            raise
        ep.codec_state = state   # the endpoint owns it from here (frame_free)
        ep.rtp_fd = rtp_fd
        ep.rtcp_fd = rtcp_fd
        ep.codec = codec
        ep.payload_type = payload_type
        ep.event_pt = event_pt
        ep.clock_rate = clock_rate
        ep.out_ssrc = ssrc
        ep.first_seq = first_seq
        ep.first_ts = first_ts
        ep.rtp_timeout_ns = <int64_t>(rtp_timeout * 1e9) if rtp_timeout > 0 else 0
        return self._add(ep)

    def add_port(self) -> int:
        """A PCM port: an endpoint without sockets that exchanges 20 ms bus frames with Python
        (`write_frame`/`read_frame`). Returns the endpoint id."""
        cdef Endpoint* ep = self._new_endpoint()
        ep.port = <PcmPort*>calloc(1, sizeof(PcmPort))
        if ep.port == NULL:
            free(ep)
            raise MemoryError()
        pthread_mutex_init(&ep.port.lock, NULL)
        ep.is_port = 1
        ep.rtp_fd = ep.rtcp_fd = -1
        ep.codec = CODEC_BUS
        ep.event_pt = -1
        ep.clock_rate = BUS_RATE
        return self._add(ep)

    cdef Endpoint* _new_endpoint(self) except NULL:
        cdef Endpoint* ep
        self._check_open()
        if self.thread is None:
            raise RuntimeError("the media engine is not started")
        if self.free_count == 0:
            raise RuntimeError("no free endpoint slot")
        ep = <Endpoint*>calloc(1, sizeof(Endpoint))
        if ep == NULL:
            raise MemoryError()
        return ep

    cdef uint64_t _add(self, Endpoint* ep) except? 0:
        cdef Command cmd
        cdef int slot = self.free_slots[self.free_count - 1]
        self.serial += 1
        ep.id = (self.serial << 16) | <uint64_t>slot
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_ADD
        cmd.ep = ep
        try:
            self._push(&cmd)
        except BaseException:
            frame_free(ep)
            free(ep)
            raise
        self.free_count -= 1
        self.table[slot] = ep
        return ep.id

    def destroy(self, uint64_t endpoint_id) -> None:
        """Close the endpoint's sockets; its final stats arrive as an event."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Command cmd
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_DESTROY
        cmd.ep = ep
        self._push(&cmd)
        # The engine frees it after this command; from now on Python never touches it.
        self.table[endpoint_id & 0xFFFF] = NULL
        self.free_slots[self.free_count] = endpoint_id & 0xFFFF
        self.free_count += 1

    def set_remote(self, uint64_t endpoint_id, bytes packed_ip, int port) -> None:
        """Send this leg's RTP to packed_ip (4 or 16 bytes):port until packets arrive from
        elsewhere (symmetric RTP); RTCP to port + 1."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Command cmd
        cdef sockaddr_in* a4
        cdef sockaddr_in6* a6
        if not 0 < port < 65535:
            raise ValueError(f"RTP port must be 1..65534, got {port}")
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_SET_REMOTE
        cmd.ep = ep
        if len(packed_ip) == 4:
            a4 = <sockaddr_in*>&cmd.addr
            a4.sin_family = AF_INET
            a4.sin_port = htons(<uint16_t>port)
            memcpy(&a4.sin_addr, <const char*>packed_ip, 4)
            cmd.addr_len = sizeof(sockaddr_in)
        elif len(packed_ip) == 16:
            a6 = <sockaddr_in6*>&cmd.addr
            a6.sin6_family = AF_INET6
            a6.sin6_port = htons(<uint16_t>port)
            memcpy(&a6.sin6_addr, <const char*>packed_ip, 16)
            cmd.addr_len = sizeof(sockaddr_in6)
        else:
            raise ValueError("a packed IP address is 4 or 16 bytes")
        self._push(&cmd)

    def connect(self, uint64_t source_id, uint64_t sink_id) -> None:
        """Relay packets arriving at `source` out of `sink` (one direction)."""
        cdef Endpoint* source = self._lookup(source_id)
        cdef Endpoint* sink = self._lookup(sink_id)
        cdef Command cmd
        if source == sink:
            raise ValueError("an endpoint cannot be relayed to itself")
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_CONNECT
        cmd.ep = source
        cmd.other = sink
        self._push(&cmd)

    def disconnect(self, uint64_t endpoint_id) -> None:
        """Stop relaying into and out of this endpoint."""
        cdef Command cmd
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_DISCONNECT
        cmd.ep = self._lookup(endpoint_id)
        self._push(&cmd)

    def set_rtp_timeout(self, uint64_t endpoint_id, double seconds) -> None:
        """Report an RTP timeout after `seconds` without media (0: never)."""
        cdef Command cmd
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_SET_TIMEOUT
        cmd.ep = self._lookup(endpoint_id)
        cmd.value = <int64_t>(seconds * 1e9) if seconds > 0 else 0
        self._push(&cmd)

    # -- the frame path --

    def play(self, uint64_t endpoint_id, const int16_t[::1] pcm, bint loop) -> int:
        """Play `pcm` (int16 at the bus rate) as this endpoint's outgoing audio, replacing any
        prompt playing; the buffer stays referenced until its PROMPT_DONE event. Returns the
        play id that event carries."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Command cmd
        if pcm.shape[0] == 0:
            raise ValueError("nothing to play: the PCM buffer is empty")
        self.play_serial += 1
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_PLAY
        cmd.ep = ep
        cmd.data = &pcm[0]
        cmd.data_len = pcm.shape[0]
        cmd.value = <int64_t>self.play_serial
        cmd.arg = loop
        self.prompts[self.play_serial] = pcm     # the memoryview holds the exporter alive
        try:
            self._push(&cmd)
        except BaseException:
            del self.prompts[self.play_serial]
            raise
        return self.play_serial

    def stop_play(self, uint64_t endpoint_id) -> None:
        """Interrupt the endpoint's prompt (PROMPT_DONE with completed false), if any."""
        self._simple(CMD_STOP_PLAY, endpoint_id, 0)

    def echo(self, uint64_t endpoint_id, bint on) -> None:
        """Send what the endpoint receives back to it (or stop doing so)."""
        self._simple(CMD_ECHO, endpoint_id, on)

    def send_dtmf(self, uint64_t endpoint_id, str digits, int duration_ms) -> None:
        """Queue RFC 4733 events for `digits` (0-9 * # A-D), each `duration_ms` long."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Command cmd
        cdef int code
        if ep.event_pt < 0:
            raise ValueError("no telephone-event payload type negotiated on this endpoint")
        codes = []
        for ch in digits:
            code = dtmf_event_code(ord(ch))
            if code < 0:
                raise ValueError(f"not a DTMF digit: {ch!r}")
            codes.append(code)
        for code in codes:
            memset(&cmd, 0, sizeof(Command))
            cmd.op = CMD_DTMF
            cmd.ep = ep
            cmd.arg = code
            cmd.value = <int64_t>duration_ms * ep.clock_rate // 1000
            self._push(&cmd)

    def set_codec(self, uint64_t endpoint_id, int codec, int payload_type, int event_pt,
                  uint32_t clock_rate=8000) -> None:
        """The endpoint's codec changed (re-INVITE). A new clock rate starts a new outgoing
        stream (new SSRC, RFC 7160 §4.1)."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Command cmd
        cdef CodecState* state
        if ep.is_port:
            raise ValueError("a PCM port has no codec")
        _check_codec(codec, clock_rate, payload_type, event_pt)
        state = _new_codec_state(codec, clock_rate)
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_SET_CODEC
        cmd.ep = ep
        cmd.arg = codec
        cmd.arg2 = payload_type
        cmd.value = event_pt
        cmd.data = state         # the engine thread installs it and frees the old one
        cmd.data_len = clock_rate
        try:
            self._push(&cmd)
        except BaseException:
            codec_state_free(state)
            raise

    def inband_dtmf(self, uint64_t endpoint_id, bint on) -> None:
        """Detect DTMF tones in the endpoint's received audio (EV_DTMF with `inband` set), or
        stop doing so."""
        self._simple(CMD_INBAND_DTMF, endpoint_id, on)

    # -- recordings and rooms (taps.pyx) --

    def tap(self, int op, uint64_t value, uint64_t endpoint_id=0, uint64_t other_id=0, int flags=0,
            WavRecorder recorder=None) -> None:
        """One tap operation (taps.pxd TapOp): `value` is the recording or room id; endpoints
        by id (0: none); a recording's WavRecorder is written by the engine thread and kept
        referenced here until its RECORDING_DONE event."""
        cdef Command cmd
        memset(&cmd, 0, sizeof(Command))
        cmd.op = CMD_TAP
        cmd.arg = op
        cmd.arg2 = flags
        cmd.value = <int64_t>value
        cmd.ep = self._lookup(endpoint_id) if endpoint_id else NULL
        cmd.other = self._lookup(other_id) if other_id else NULL
        if recorder is not None:
            if recorder.rec == NULL:
                raise ValueError("the recorder is closed")
            cmd.data = recorder.rec
            self.recorders[value] = recorder
        try:
            self._push(&cmd)
        except BaseException:
            self.recorders.pop(value, None)
            raise

    def write_frame(self, uint64_t port_id, const int16_t[::1] pcm) -> None:
        """Hand one bus frame to a PCM port (never blocks; the oldest waiting frame is dropped
        when Python is more than the port's ring ahead)."""
        cdef Endpoint* ep = self._port(port_id)
        if pcm.shape[0] != BUS_FRAME:
            raise ValueError(f"a frame is {BUS_FRAME} samples, got {pcm.shape[0]}")
        with nogil:
            port_write(ep.port, &pcm[0])

    def read_frame(self, uint64_t port_id):
        """The oldest frame the engine produced for a PCM port (bytes of int16), or None."""
        cdef Endpoint* ep = self._port(port_id)
        cdef int16_t frame[BUS_FRAME]
        cdef int got
        with nogil:
            got = port_read(ep.port, frame)
        if not got:
            return None
        return PyBytes_FromStringAndSize(<const char*>frame, BUS_FRAME * sizeof(int16_t))

    cdef Endpoint* _port(self, uint64_t port_id) except NULL:
        cdef Endpoint* ep = self._lookup(port_id)
        if not ep.is_port:
            raise ValueError(f"media endpoint {port_id} is not a PCM port")
        return ep

    cdef int _simple(self, int op, uint64_t endpoint_id, int arg) except -1:
        cdef Command cmd
        memset(&cmd, 0, sizeof(Command))
        cmd.op = op
        cmd.ep = self._lookup(endpoint_id)
        cmd.arg = arg
        return self._push(&cmd)

    def stats(self, uint64_t endpoint_id) -> dict:
        """A consistent snapshot of the endpoint's counters and receiver statistics."""
        cdef Endpoint* ep = self._lookup(endpoint_id)
        cdef Snapshot s
        with nogil:
            pthread_mutex_lock(&self.core.state_lock)
            take_snapshot(ep, &s)
            pthread_mutex_unlock(&self.core.state_lock)
        return snapshot_dict(&s)

    def drain_events(self) -> list:
        """Take every waiting event: a list of (kind, endpoint_id, error, details) where details
        is the stats dict (FINAL_STATS), (digit, duration_ms, source) (DTMF), (play_id, completed)
        (PROMPT_DONE) or None."""
        cdef uint64_t value
        cdef int k, i
        cdef Core* c
        cdef Event* e
        self._check_open()
        c = self.core
        read(c.event_fd, &value, 8)   # reset before emptying the ring (see push_event)
        with nogil:
            pthread_mutex_lock(&c.event_lock)
            k = c.event_count
            for i in range(k):
                memcpy(&self.drained[i], &c.events[(c.event_head + i) % EVENT_RING], sizeof(Event))
            c.event_head = (c.event_head + k) % EVENT_RING
            c.event_count = 0
            pthread_mutex_unlock(&c.event_lock)
        out = []
        for i in range(k):
            e = &self.drained[i]
            if e.kind == EV_FINAL_STATS or e.kind == EV_RTCP_REPORT:
                details = snapshot_dict(&e.stats)
            elif e.kind == EV_DTMF:
                details = (chr(e.digit), e.duration_ms, "inband" if e.inband else "rfc4733")
            elif e.kind == EV_RECORDING_DONE:
                # The engine no longer writes through this recorder: Python may close it.
                self.recorders.pop(e.endpoint_id, None)
                details = None
            elif e.kind == EV_PROMPT_DONE:
                # The engine no longer reads this buffer: let it go.
                self.prompts.pop(e.play_id, None)
                details = (e.play_id, bool(e.completed))
            else:
                details = None
            out.append((e.kind, e.endpoint_id, e.error, details))
        return out


def _check_codec(int codec, uint32_t clock_rate, int payload_type, int event_pt):
    rates = CODEC_CLOCK_RATES.get(codec)
    if rates is None:
        raise ValueError(f"unsupported codec id {codec}")
    if clock_rate not in rates:
        raise ValueError(f"codec id {codec} runs at {' or '.join(map(str, rates))} Hz, not {clock_rate}")
    if not 0 <= payload_type <= 127 or not -1 <= event_pt <= 127:
        raise ValueError("payload types are 0..127")


cdef CodecState* _new_codec_state(int codec, uint32_t clock_rate) except? NULL:
    """The codec's state (resamplers, Opus encoder and decoder), NULL for codecs without."""
    if not codec_needs_state(codec, clock_rate):
        return NULL
    return codec_state_new(codec, clock_rate)
