# cython: language_level=3
"""The media loop: what the engine thread runs, from epoll_wait to sendmmsg, without the GIL.

The thread waits in epoll(7) on three kinds of descriptor: the endpoints' UDP sockets, an eventfd
that says "commands waiting" and a timerfd that ticks every 20 ms. A readable RTP socket is read
with one recvmmsg(2); every datagram is checked, counted (RFC 3550 A.1/A.3/A.8), rewritten in
place for the leg it is relayed to (SSRC, sequence number, timestamp, payload type, G.711 law)
and the batch leaves with one sendmmsg(2). No packet ever becomes a Python object.

Python talks to the thread through two rings guarded by mutexes: commands in (woken by the
command eventfd) and events out (woken by an eventfd the asyncio loop watches with add_reader).
Python also reads counters directly under `state_lock`, which the thread holds only while it
handles one socket's batch. `native.engine` is the Python-facing object over this loop.

Endpoints whose audio is needed as PCM (players, echo, PCM ports, RFC 4733 sending, codecs of
another family) are handled on the 20 ms tick by `native.framepath`; the relay below only hands
it their packets and holds back packets toward an endpoint whose outgoing stream it owns.
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec
from posix.unistd cimport close, read, write

from native.framepath cimport (
    frame_command,
    frame_free,
    frame_new_source,
    frame_on_rtp,
    frame_refresh,
    frame_release,
    frame_setup,
    frame_tick,
)
from native.g711 cimport alaw_to_ulaw_buf, ulaw_to_alaw_buf
from native.rtcp cimport rtcp_arm, rtcp_reschedule
from native.rtcpio cimport on_muxed_rtcp, on_rtcp_readable, send_rtcp
from native.rtpstats cimport (
    source_expected,
    source_lost,
    source_start,
    source_update_jitter,
    source_update_seq,
)
from native.rtpwire cimport (
    get_port,
    is_multiplexed_rtcp,
    media_clock,
    rd16,
    rd32,
    rtp_payload,
    same_address,
    set_port,
    wr16,
    wr32,
)
from native.sysio cimport (
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLLIN,
    MSG_DONTWAIT,
    MSG_TRUNC,
    SCM_TIMESTAMPNS,
    SO_TIMESTAMPNS,
    SOL_SOCKET,
    CMSG_DATA,
    CMSG_FIRSTHDR,
    CMSG_NXTHDR,
    cmsghdr,
    setsockopt,
    __ATOMIC_ACQUIRE,
    atomic_load_int,
    epoll_ctl,
    epoll_event,
    epoll_wait,
    gettid,
    monotonic_ns,
    pthread_cond_broadcast,
    pthread_cond_wait,
    pthread_mutex_lock,
    pthread_mutex_unlock,
    recvmmsg,
    sendmmsg,
    sockaddr_storage,
    socklen_t,
)

# RFC 3389 comfort noise has a static payload type, the same on every leg.
cdef enum:
    PT_COMFORT_NOISE = 13
    # Ticks run back to back after a stall of the engine thread: 5 (100 ms) at most.
    MAX_CATCH_UP = 5
    # RFC 3550 §5.1: the fixed RTP header; the rest of a relayed packet's header is not payload.
    RTP_FIXED_HEADER = 12


# --- events out (push_event is inline in medialoop.pxd) ----------------------------------------

cdef void take_snapshot(Endpoint* ep, Snapshot* s) noexcept nogil:
    memset(s, 0, sizeof(Snapshot))
    s.id = ep.id
    s.counters = ep.counters
    s.packets_expected = ep.expected_before
    s.packets_lost = ep.lost_before
    if ep.has_source:
        s.packets_expected += source_expected(&ep.source)
        s.packets_lost += source_lost(&ep.source)
        s.jitter_ms = (ep.source.jitter >> 4) * 1000.0 / ep.clock_rate
        s.ssrc_in = ep.source.ssrc
        s.has_ssrc_in = 1
    s.ssrc_out = ep.out_ssrc
    s.remote_known = ep.remote_known
    s.latched = ep.latched
    if ep.remote_known:
        memcpy(&s.remote, &ep.remote, sizeof(sockaddr_storage))
    s.frame_mode = ep.rx_frames
    s.dtmf_in = ep.dtmf_in
    if ep.jb != NULL:
        s.jitter_depth = ep.jb.target
        s.late = ep.jb.late
        s.concealed = ep.jb.concealed
        s.discarded = ep.jb.discarded
    if ep.port != NULL:
        s.port_overruns = ep.port.in_overruns + ep.port.out_overruns
    s.rtcp = ep.rtcp
    if ep.clock_rate:
        s.remote_jitter_ms = ep.rtcp.jitter * 1000.0 / ep.clock_rate


cdef void report_failure(Core* c, uint64_t endpoint_id, int error) noexcept nogil:
    cdef Event e
    memset(&e, 0, sizeof(Event))
    e.kind = EV_FAILED
    e.endpoint_id = endpoint_id
    e.error = error
    push_event(c, &e)


# --- commands in ------------------------------------------------------------------------------

cdef int push_command(Core* c, Command* cmd) noexcept nogil:
    """Queue a command for the engine thread; -1 if the engine is not running."""
    cdef uint64_t one = 1
    cdef int wake
    pthread_mutex_lock(&c.command_lock)
    while c.command_count == COMMAND_RING and c.running:
        pthread_cond_wait(&c.command_space, &c.command_lock)
    if not c.running:
        pthread_mutex_unlock(&c.command_lock)
        return -1
    memcpy(&c.commands[(c.command_head + c.command_count) % COMMAND_RING], cmd, sizeof(Command))
    c.command_count += 1
    wake = c.command_count == 1
    pthread_mutex_unlock(&c.command_lock)
    if wake:
        write(c.command_fd, &one, 8)
    return 0


cdef void unlink_routes(Core* c, Endpoint* ep) noexcept nogil:
    cdef Endpoint* to = ep.route_to
    cdef Endpoint* src = ep.route_from
    if to != NULL:
        to.route_from = NULL
        ep.route_to = NULL
        frame_refresh(c, to)
    if src != NULL:
        src.route_to = NULL
        ep.route_from = NULL
        frame_refresh(c, src)
    ep.echo = 0
    frame_refresh(c, ep)


cdef void close_endpoint(Endpoint* ep) noexcept nogil:
    if ep.rtp_fd >= 0:
        close(ep.rtp_fd)
        ep.rtp_fd = -1
    if ep.rtcp_fd >= 0:
        close(ep.rtcp_fd)
        ep.rtcp_fd = -1


cdef void apply_command(Core* c, Command* cmd) noexcept nogil:
    """Run one command in the engine thread, with state_lock held."""
    cdef Endpoint* ep = cmd.ep
    cdef Endpoint* other = cmd.other
    cdef Endpoint* old
    cdef epoll_event ev
    cdef Event e
    cdef int one
    if cmd.op == CMD_ADD and ep.is_port:
        frame_setup(ep)
        frame_refresh(c, ep)
        ep.prev = NULL
        ep.next = c.live
        if c.live != NULL:
            c.live.prev = ep
        c.live = ep
    elif cmd.op == CMD_ADD:
        frame_setup(ep)
        if c.residence != NULL:
            one = 1
            setsockopt(ep.rtp_fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(int))
        ev.events = EPOLLIN
        ev.data.u64 = <uint64_t><size_t>ep
        if epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, ep.rtp_fd, &ev) != 0:
            report_failure(c, ep.id, errno)
        ev.data.u64 = (<uint64_t><size_t>ep) | 1
        if epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, ep.rtcp_fd, &ev) != 0:
            report_failure(c, ep.id, errno)
        ep.prev = NULL
        ep.next = c.live
        if c.live != NULL:
            c.live.prev = ep
        c.live = ep
    elif cmd.op == CMD_DESTROY:
        if ep.pcm_users and c.endpoint_gone != NULL:
            c.endpoint_gone(c, ep, c.frame_hook_arg)
        unlink_routes(c, ep)
        frame_release(c, ep)
        # RFC 3550 §6.3.7: a source that sent RTP says BYE, after an SR/RR in the same compound.
        if ep.out_started:
            send_rtcp(c, ep, monotonic_ns(), 1)
        if not ep.is_port:
            epoll_ctl(c.epoll_fd, EPOLL_CTL_DEL, ep.rtp_fd, NULL)
            epoll_ctl(c.epoll_fd, EPOLL_CTL_DEL, ep.rtcp_fd, NULL)
        close_endpoint(ep)
        memset(&e, 0, sizeof(Event))
        e.kind = EV_FINAL_STATS
        e.endpoint_id = ep.id
        take_snapshot(ep, &e.stats)
        push_event(c, &e)
        if ep.prev != NULL:
            ep.prev.next = ep.next
        else:
            c.live = ep.next
        if ep.next != NULL:
            ep.next.prev = ep.prev
        # Events already fetched by epoll_wait this iteration may still point here.
        ep.dead = 1
        ep.next_dead = c.graveyard
        c.graveyard = ep
    elif cmd.op == CMD_SET_REMOTE:
        memcpy(&ep.remote, &cmd.addr, sizeof(sockaddr_storage))
        ep.remote_len = cmd.addr_len
        ep.remote_known = 1
        # New signalled address: learn the source again (RFC 4961 symmetric RTP).
        ep.latched = 0
        # RFC 3550 §11: RTCP goes to the next higher port unless signalled otherwise.
        memcpy(&ep.rtcp_remote, &cmd.addr, sizeof(sockaddr_storage))
        ep.rtcp_remote_len = cmd.addr_len
        set_port(&ep.rtcp_remote, <uint16_t>(get_port(&cmd.addr) + 1))
        ep.rtcp_latched = 0
        ep.rtcp_remote_known = 1
        rtcp_arm(&ep.rtcp, monotonic_ns(), c.rtcp_interval_ns, ep.out_ssrc ^ <uint32_t>ep.id)
    elif cmd.op == CMD_CONNECT:
        if ep.route_to != NULL and ep.route_to != other:
            old = ep.route_to
            old.route_from = NULL
            frame_refresh(c, old)
        if other.route_from != NULL and other.route_from != ep:
            old = other.route_from
            old.route_to = NULL
            frame_refresh(c, old)
        ep.route_to = other
        other.route_from = ep
        # The outgoing stream of `other` continues from where it was (new offsets, marker bit).
        other.out_bound = 0
        frame_refresh(c, ep)
        frame_refresh(c, other)
    elif cmd.op == CMD_DISCONNECT:
        unlink_routes(c, ep)
    elif cmd.op == CMD_SET_TIMEOUT:
        ep.rtp_timeout_ns = cmd.value
        ep.timeout_fired = 0
    elif cmd.op == CMD_STOP:
        c.stopping = 1
    elif cmd.op == CMD_TAP:
        if c.tap_command != NULL:
            c.tap_command(c, cmd, c.frame_hook_arg)
    else:
        frame_command(c, cmd)


cdef void drain_commands(Core* c) noexcept nogil:
    cdef uint64_t value
    cdef Command batch[64]
    cdef int k, i
    read(c.command_fd, &value, 8)   # reset the eventfd before emptying the ring
    while True:
        pthread_mutex_lock(&c.command_lock)
        k = c.command_count if c.command_count < 64 else 64
        for i in range(k):
            memcpy(&batch[i], &c.commands[(c.command_head + i) % COMMAND_RING], sizeof(Command))
        if k == c.command_count or c.command_count == COMMAND_RING:
            pthread_cond_broadcast(&c.command_space)
        c.command_head = (c.command_head + k) % COMMAND_RING
        c.command_count -= k
        pthread_mutex_unlock(&c.command_lock)
        if k == 0:
            return
        pthread_mutex_lock(&c.state_lock)
        for i in range(k):
            apply_command(c, &batch[i])
        pthread_mutex_unlock(&c.state_lock)


# --- the relay --------------------------------------------------------------------------------

cdef inline void latch(Endpoint* a, const sockaddr_storage* src, socklen_t src_len) noexcept nogil:
    memcpy(&a.remote, src, sizeof(sockaddr_storage))
    a.remote_len = src_len
    a.remote_known = 1
    a.latched = 1


cdef int accept_rtp(Core* c, Endpoint* a, Endpoint* b, int i, int64_t now) noexcept nogil:
    """Account for datagram i of the batch read from a; rewrite it for b and return 1 to relay."""
    cdef uint8_t* p = <uint8_t*>c.rx_iov[i].iov_base
    cdef Py_ssize_t n = c.rx_msgs[i].msg_len
    cdef const sockaddr_storage* src = &c.rx_addr[i]
    cdef Py_ssize_t offset, length
    cdef uint32_t ssrc, ts, elapsed
    cdef uint16_t seq, out_seq
    cdef int pt, out_pt, marker
    cdef int consumed = 0
    if c.rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
        a.counters.malformed += 1
        return 0
    if is_multiplexed_rtcp(p, n):
        a.counters.rtcp_packets_in += 1
        on_muxed_rtcp(c, a, p, n, src, now)
        return 0
    if not rtp_payload(p, n, &offset, &length):
        a.counters.malformed += 1
        return 0
    ssrc = rd32(p + 8)
    seq = rd16(p + 2)
    ts = rd32(p + 4)
    pt = p[1] & 0x7F
    marker = p[1] & 0x80

    # Symmetric RTP (RFC 4961): answer where the media comes from, which is what gets through a
    # NAT. Once latched, another source is accepted only with the same SSRC (a NAT rebinding);
    # anything else is a stray or injected stream and is dropped.
    if not a.latched:
        latch(a, src, c.rx_msgs[i].msg_hdr.msg_namelen)
    elif not same_address(src, &a.remote):
        if a.has_source and ssrc == a.source.ssrc:
            latch(a, src, c.rx_msgs[i].msg_hdr.msg_namelen)
        else:
            a.counters.dropped += 1
            return 0

    a.counters.packets_in += 1
    a.counters.bytes_in += n
    a.last_rx_ns = now
    a.had_media = 1
    a.timeout_fired = 0
    if not a.has_source or ssrc != a.source.ssrc:
        if a.has_source:
            a.expected_before += source_expected(&a.source)
            a.lost_before += source_lost(&a.source)
        source_start(&a.source, ssrc, seq)
        a.has_source = 1
        frame_new_source(a)
    # RFC 4733 §2.1: events share the audio stream's SSRC and sequence space, not its timing.
    source_update_seq(&a.source, seq)
    if pt == a.payload_type:
        source_update_jitter(&a.source, media_clock(now, a.clock_rate), ts)

    # RFC 4733 events are recognised on every leg that negotiated them; audio goes to the
    # jitter buffer of a leg in FRAME mode. Relay-only legs pay two comparisons here.
    if pt == a.event_pt or a.rx_frames:
        consumed = frame_on_rtp(c, a, p + offset, length, pt, seq, ts, now)
    if b != NULL and b.relay_paused:
        return 0               # b's outgoing stream belongs to a player, echo, event or frames
    if b == NULL or not b.remote_known:
        if not consumed:
            a.counters.dropped += 1
        return 0
    if pt == a.payload_type:
        out_pt = b.payload_type
    elif pt == a.event_pt and b.event_pt >= 0:
        out_pt = b.event_pt
    elif pt == PT_COMFORT_NOISE:
        out_pt = PT_COMFORT_NOISE
    else:
        a.counters.dropped += 1
        return 0

    # RFC 3550 §5.1/§8.2: b's stream keeps one SSRC and continuous numbering across changes of
    # what feeds it. Offsets map the input's numbers; they are rebased when the input changes
    # (a new connection or a new input SSRC), the timestamp advancing by the wall-clock time
    # since b last sent (at least the last packet's duration) and the marker bit telling the
    # receiver to resynchronise its playout (RFC 3551 §4.1).
    if not b.out_bound or ssrc != b.out_src_ssrc:
        if b.out_started:
            elapsed = <uint32_t>(((now - b.last_out_ns) // 1000) * b.clock_rate // 1000000)
            if elapsed < b.last_out_samples:
                elapsed = b.last_out_samples
            b.seq_off = <uint16_t>(b.last_out_seq + 1 - seq)
            b.ts_off = b.last_out_ts + elapsed - ts
        else:
            b.seq_off = <uint16_t>(b.first_seq - seq)
            b.ts_off = b.first_ts - ts
        b.out_bound = 1
        b.out_src_ssrc = ssrc
        marker = 0x80
    out_seq = <uint16_t>(seq + b.seq_off)
    ts = ts + b.ts_off
    p[1] = <uint8_t>(marker | out_pt)
    wr16(p + 2, out_seq)
    wr32(p + 4, ts)
    wr32(p + 8, b.out_ssrc)
    if pt == a.payload_type and a.codec != b.codec:
        if a.codec == CODEC_PCMU:
            ulaw_to_alaw_buf(p + offset, p + offset, length)
        else:
            alaw_to_ulaw_buf(p + offset, p + offset, length)
    if not b.out_started or <int16_t>(out_seq - b.last_out_seq) > 0:
        b.last_out_seq = out_seq
    if not b.out_started or <int32_t>(ts - b.last_out_ts) > 0:
        b.last_out_ts = ts
        if pt == a.payload_type:
            if a.codec <= CODEC_PCMA:
                b.last_out_samples = <uint32_t>length   # G.711: one octet per sample
            elif a.codec == CODEC_L16:
                b.last_out_samples = <uint32_t>(length >> 1)
            else:
                b.last_out_samples = a.clock_rate // 50  # Opus: 20 ms packets (RFC 7587 §4.2)
    b.last_out_ns = now
    b.out_started = 1
    b.rtcp.header_extra_out += n - length - RTP_FIXED_HEADER   # for the SR octet count
    return 1


cdef void send_batch(Core* c, Endpoint* b, int k) noexcept nogil:
    cdef int sent = 0
    cdef int failed = 0
    cdef int j, r
    cdef uint64_t nbytes = 0
    for j in range(k):
        c.tx_msgs[j].msg_hdr.msg_name = &b.remote
        c.tx_msgs[j].msg_hdr.msg_namelen = b.remote_len
    while sent < k:
        r = sendmmsg(b.rtp_fd, &c.tx_msgs[sent], k - sent, 0)
        if r < 0:
            if errno == EINTR:
                continue
            failed += 1      # skip the datagram the kernel refused; send the rest
            sent += 1
            continue
        for j in range(sent, sent + r):
            nbytes += c.tx_iov[j].iov_len
        sent += r
    pthread_mutex_lock(&c.state_lock)
    b.counters.packets_out += k - failed
    b.counters.bytes_out += nbytes
    b.counters.send_errors += failed
    pthread_mutex_unlock(&c.state_lock)


cdef void count_residence(Core* c, int n) noexcept nogil:
    """The bench probe: how long each datagram of the batch waited for the engine (from the
    kernel's arrival stamp to now, both CLOCK_REALTIME as SO_TIMESTAMPNS stamps)."""
    cdef timespec ts, now
    cdef cmsghdr* cm
    cdef int64_t waited
    cdef int i
    clock_gettime(CLOCK_REALTIME, &now)
    for i in range(n):
        cm = CMSG_FIRSTHDR(&c.rx_msgs[i].msg_hdr)
        while cm != NULL:
            if cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SCM_TIMESTAMPNS:
                memcpy(&ts, CMSG_DATA(cm), sizeof(timespec))
                waited = (<int64_t>(now.tv_sec - ts.tv_sec) * 1000000000 + (now.tv_nsec - ts.tv_nsec))
                waited = waited // RESIDENCE_BIN_NS
                if waited < 0:
                    waited = 0
                elif waited >= RESIDENCE_BINS:
                    waited = RESIDENCE_BINS - 1
                c.residence[waited] += 1
                break
            cm = CMSG_NXTHDR(&c.rx_msgs[i].msg_hdr, cm)


cdef void on_rtp_readable(Core* c, Endpoint* a) noexcept nogil:
    cdef int i, n
    cdef int k = 0
    cdef int want = BATCH
    cdef Endpoint* b
    cdef int64_t now = monotonic_ns()
    # One datagram per read while the socket is read about once a packet (RX_SINGLE_GAP_NS); if
    # more were waiting, level-triggered epoll reports the socket again on its next wait, and
    # that quick re-read takes the full batch.
    if a.last_read_count == 1 and RX_REREAD_NS <= now - a.last_read_ns < RX_SINGLE_GAP_NS:
        want = 1
    for i in range(want):
        c.rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        c.rx_msgs[i].msg_hdr.msg_flags = 0
    if c.residence != NULL:
        for i in range(want):
            c.rx_msgs[i].msg_hdr.msg_control = c.rx_ctrl + i * RX_CTRL
            c.rx_msgs[i].msg_hdr.msg_controllen = RX_CTRL
    n = recvmmsg(a.rtp_fd, c.rx_msgs, want, MSG_DONTWAIT, NULL)
    a.last_read_count = n
    a.last_read_ns = now
    if n <= 0:
        return
    if c.residence != NULL:
        count_residence(c, n)
    # Causal order: a command queued before a packet was sent is applied before that packet is
    # handled (set_remote/connect, then "200 OK", then media). Checked after the read, so any
    # command pushed before these datagrams left their sender is visible here.
    if atomic_load_int(&c.command_count, __ATOMIC_ACQUIRE):
        drain_commands(c)
        if a.dead:
            return
    b = a.route_to
    pthread_mutex_lock(&c.state_lock)
    for i in range(n):
        if accept_rtp(c, a, b, i, now):
            c.tx_iov[k].iov_base = c.rx_iov[i].iov_base
            c.tx_iov[k].iov_len = c.rx_msgs[i].msg_len
            k += 1
    pthread_mutex_unlock(&c.state_lock)
    if k:
        send_batch(c, b, k)


cdef void on_tick(Core* c, int64_t now) noexcept nogil:
    """The 20 ms clock: RTP timeouts and RTCP reports that are due (RFC 3550 §6.2 intervals),
    then the frame path (jitter-buffer playout, players, echo, PCM ports, RFC 4733 sending, the
    frame hook for mixers and recorders)."""
    cdef Endpoint* ep
    cdef Event e
    c.ticks += 1
    pthread_mutex_lock(&c.state_lock)
    ep = c.live
    while ep != NULL:
        if (ep.rtp_timeout_ns > 0 and ep.had_media and not ep.timeout_fired
                and now - ep.last_rx_ns >= ep.rtp_timeout_ns):
            ep.timeout_fired = 1
            memset(&e, 0, sizeof(Event))
            e.kind = EV_RTP_TIMEOUT
            e.endpoint_id = ep.id
            push_event(c, &e)
        # RFC 3550 §6.2: each leg reports on its own schedule (armed once its RTCP peer is known).
        if ep.rtcp.next_ns and now >= ep.rtcp.next_ns:
            send_rtcp(c, ep, now, 0)
            rtcp_reschedule(&ep.rtcp, now, c.rtcp_interval_ns)
        ep = ep.next
    frame_tick(c, now)
    pthread_mutex_unlock(&c.state_lock)


cdef void free_graveyard(Core* c) noexcept nogil:
    cdef Endpoint* ep = c.graveyard
    cdef Endpoint* nxt
    while ep != NULL:
        nxt = ep.next_dead
        frame_free(ep)
        free(ep)
        ep = nxt
    c.graveyard = NULL


cdef void run_loop(Core* c) noexcept nogil:
    cdef int n, i
    cdef uint64_t tag, expirations
    cdef Endpoint* ep
    c.thread_id = gettid()
    while not c.stopping:
        n = epoll_wait(c.epoll_fd, c.ready, MAX_EPOLL_EVENTS, -1)
        if n < 0:
            if errno == EINTR:
                continue
            report_failure(c, 0, errno)
            break
        for i in range(n):
            tag = c.ready[i].data.u64
            if tag == TAG_COMMANDS:
                drain_commands(c)
            elif tag == TAG_CLOCK:
                expirations = 0
                read(c.clock_fd, &expirations, 8)
                # A stalled thread catches up on missed ticks (up to MAX_CATCH_UP), so players
                # and jitter buffers keep real time; a longer stall is lost time.
                if expirations > MAX_CATCH_UP:
                    expirations = MAX_CATCH_UP
                while expirations > 0:
                    on_tick(c, monotonic_ns())
                    expirations -= 1
            else:
                ep = <Endpoint*><size_t>(tag & ~(<uint64_t>1))
                if ep.dead:
                    continue
                if tag & 1:
                    on_rtcp_readable(c, ep)
                else:
                    on_rtp_readable(c, ep)
        free_graveyard(c)
    pthread_mutex_lock(&c.command_lock)
    c.running = 0
    pthread_cond_broadcast(&c.command_space)
    pthread_mutex_unlock(&c.command_lock)
