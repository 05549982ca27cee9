# cython: language_level=3
"""The frame path: the 20 ms clock's work for endpoints whose audio is handled as PCM.

An endpoint is in RELAY mode (medialoop.pyx rewrites and forwards its packets as they arrive)
unless something needs its audio as frames. Then its received audio goes through the adaptive
jitter buffer (jitter.pyx) and is decoded through the endpoint's codec slot (codecslot.pyx:
G.711, L16, Opus, resampled to the bus rate) into `in_frame`, once per tick; a leg that listens
for in-band DTMF runs its tone detector (dtmfdetect.pyx) on that frame. Each tick has two phases:

1. inputs: every FRAME endpoint's `in_frame` (jitter buffer, or the frames Python wrote to a
   PCM port); then the frame hook (Core.frame_hook) where the conference mixer and the
   recorder see all in_frames and may set an endpoint's `out_frame` (`out_set`). A mixer or
   recorder that needs a leg's audio raises `pcm_users` (FRAME input); a conference that owns
   a leg's output sets `out_hooked` (the relay toward it pauses); both are followed by
   `frame_refresh`, on the engine thread;
2. outputs: an endpoint whose outgoing stream is not a relay takes exactly one source, in this
   order: an RFC 4733 event being sent (audio muted), the player, the frame hook's out_frame,
   echo (its own in_frame), the connected peer's in_frame; the frame is encoded and sent with
   the endpoint's own SSRC and continuous sequence numbers and timestamps (RFC 3550 §5.1), the
   marker bit on the first packet after a gap (RFC 3551 §4.1), or handed to a PCM port.

A player or an event owns an endpoint's outgoing stream while it lasts: packets relayed toward
it are held back (`relay_paused`) and the relay resumes, rebased with a marker bit, after.
"""

from libc.errno cimport ENOMEM
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from native.bus cimport (
    BUS_FRAME,
    BUS_RATE,
    BUS_TICKS_PER_SECOND,
    FAMILY_CODEC,
    FAMILY_G711,
    FAMILY_PCM,
    MAX_FRAME_PAYLOAD,
)
from native.codecslot cimport CodecState, codec_functions, codec_state_free, codec_state_reset
from native.dtmfdetect cimport (
    DtmfDetector,
    dtmf_detector_feed,
    dtmf_detector_held,
    dtmf_detector_init,
)
from native.jitter cimport JitterBuffer, jb_pull, jb_put, jb_reset
from native.medialoop cimport (
    CMD_DTMF,
    CMD_ECHO,
    CMD_INBAND_DTMF,
    CMD_PLAY,
    CMD_SET_CODEC,
    CMD_STOP_PLAY,
    CODEC_BUS,
    CODEC_PCMA,
    CODEC_PCMU,
    EV_DTMF,
    EV_FAILED,
    EV_PROMPT_DONE,
    MAX_DATAGRAM,
    Command,
    Core,
    Endpoint,
    Event,
    push_event,
)
from native.pcmport cimport port_give_output, port_take_input
from native.rtpwire cimport wr16, wr32
from native.sysio cimport monotonic_ns, pthread_mutex_destroy, sockaddr, socklen_t
from native.telephone_event cimport (
    DTX_IDLE,
    DtmfSender,
    dtmf_digit_char,
    dtmf_rx_expire,
    dtmf_rx_packet,
    dtmf_tx_busy,
    dtmf_tx_queue,
    dtmf_tx_tick,
)

cdef extern from "<sys/socket.h>" nogil:
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t len)

cdef extern from "<sys/random.h>" nogil:
    ssize_t getrandom(void* buf, size_t n, unsigned int flags)

cdef enum:
    RTP_HEADER = 12      # RFC 3550 §5.1 fixed header; generated packets carry no CSRC/extension

# In-band detection stays quiet for this long after an RFC 4733 event packet on the same leg: a
# trunk that sends events often leaves the tones in the audio too, and a key press is reported
# once (the event arrives from the tone's start, the in-band report only after its end).
cdef int64_t INBAND_AFTER_EVENT_NS = 1000000000
cdef int16_t SILENCE[BUS_FRAME]


# --- the codec slot (codecslot.pyx) and codec families -------------------------------------------

cdef void frame_setup(Endpoint* ep) noexcept nogil:
    # The state (ep.codec_state) was made with the GIL by native.engine for this codec and rate.
    codec_functions(ep.codec, ep.clock_rate, &ep.decode, &ep.encode)


cdef inline int family(const Endpoint* ep) noexcept nogil:
    """Endpoints of one family relay packets to each other; others meet through bus frames.
    G.711 µ-law and A-law are one family (the relay converts the law octet by octet); L16 and
    Opus relay only to the same codec at the same clock rate, the payload untouched (Opus <->
    Opus keeps the sender's packets: no second encoding, no added delay)."""
    if ep.codec == CODEC_PCMU or ep.codec == CODEC_PCMA:
        return FAMILY_G711
    if ep.codec == CODEC_BUS:
        return FAMILY_PCM
    return <int>(FAMILY_CODEC * ep.codec + ep.clock_rate)


# --- modes --------------------------------------------------------------------------------------

cdef void frame_refresh(Core* c, Endpoint* ep) noexcept nogil:
    cdef Event e
    cdef int need = (ep.is_port or ep.echo or ep.pcm_users > 0 or ep.inband_dtmf
                     or (ep.route_to != NULL and (ep.route_to.is_port
                                                  or family(ep.route_to) != family(ep))))
    if need and not ep.is_port:
        if ep.jb == NULL:
            ep.jb = <JitterBuffer*>calloc(1, sizeof(JitterBuffer))
            if ep.jb == NULL:
                need = 0
                memset(&e, 0, sizeof(Event))
                e.kind = EV_FAILED
                e.endpoint_id = ep.id
                e.error = ENOMEM
                push_event(c, &e)
        if need and not ep.rx_frames:
            jb_reset(ep.jb)
            codec_state_reset(<CodecState*>ep.codec_state)   # history from before the relay
    ep.rx_frames = need
    if not need:
        ep.in_valid = 0
    # Packets never reach or leave a PCM port, and other families cannot be relayed: frames.
    ep.peer_frames = ep.route_from != NULL and (ep.is_port or ep.route_from.is_port
                                               or family(ep.route_from) != family(ep))
    ep.relay_paused = (ep.is_port or ep.peer_frames or ep.playing or ep.echo or ep.out_hooked
                       or dtmf_tx_busy(&ep.dtmf_tx))


# --- input --------------------------------------------------------------------------------------

cdef void report_dtmf(Core* c, Endpoint* a, int event, uint32_t duration) noexcept nogil:
    cdef Event e
    memset(&e, 0, sizeof(Event))
    e.kind = EV_DTMF
    e.endpoint_id = a.id
    e.digit = dtmf_digit_char(event)
    # RFC 4733 §2.3.5: the duration is in units of the audio codec's RTP clock.
    e.duration_ms = <int>(<uint64_t>duration * 1000 // a.clock_rate)
    a.dtmf_in += 1
    push_event(c, &e)
    # A peer fed with frames (another codec family) gets no relayed packets, events included:
    # the key press is sent to it anew, in its own clock, now that its length is known.
    cdef Endpoint* b = a.route_to
    cdef uint64_t scaled
    if b != NULL and b.peer_frames and b.route_from == a and b.event_pt >= 0:
        scaled = <uint64_t>duration * b.clock_rate // a.clock_rate
        dtmf_tx_queue(&b.dtmf_tx, event, <uint32_t>(scaled if scaled < 0xFFFF else 0xFFFF))


cdef void inband_tick(Core* c, Endpoint* ep, int64_t now) noexcept nogil:
    """Feed this tick's received frame to the leg's tone detector; a key press is reported once,
    when it ends (like an RFC 4733 event), with how long the tone lasted."""
    cdef DtmfDetector* d = ep.inband
    cdef int held = dtmf_detector_held(d)
    cdef Event e
    if ep.in_valid:
        dtmf_detector_feed(d, ep.in_frame, BUS_FRAME)
    elif held:
        dtmf_detector_feed(d, SILENCE, BUS_FRAME)   # the stream stopped during a press: end it
    else:
        return
    # Presses are taken from the held digit below; the detector's queue of starts is not needed.
    d.queue_len = 0
    if not held or dtmf_detector_held(d) == held:
        return
    if ep.dtmf_rx.active and now - ep.dtmf_rx.last_ns < INBAND_AFTER_EVENT_NS:
        return                                      # already reported from its RFC 4733 events
    memset(&e, 0, sizeof(Event))
    e.kind = EV_DTMF
    e.endpoint_id = ep.id
    e.digit = held
    e.duration_ms = <int>(d.last_duration * 1000 // d.rate)
    e.inband = 1
    push_event(c, &e)


cdef void inband_switch(Core* c, Endpoint* ep, int on) noexcept nogil:
    cdef Event e
    if on and ep.inband == NULL:
        ep.inband = <DtmfDetector*>calloc(1, sizeof(DtmfDetector))
        if ep.inband == NULL:
            memset(&e, 0, sizeof(Event))
            e.kind = EV_FAILED
            e.endpoint_id = ep.id
            e.error = ENOMEM
            push_event(c, &e)
            on = 0
        else:
            dtmf_detector_init(ep.inband, BUS_RATE)
    elif not on and ep.inband != NULL:
        free(ep.inband)
        ep.inband = NULL
    ep.inband_dtmf = on
    frame_refresh(c, ep)


cdef void restart_stream(Endpoint* ep, uint32_t old_rate) noexcept nogil:
    """The clock rate of what ep sends changed: RFC 7160 §4.1 wants a new SSRC for it, so the
    stream starts over (RFC 3550 §8.2: a new source). Queued RFC 4733 durations were counted in
    the old clock (§2.3.5) and are converted; an event half sent is dropped with the old stream."""
    cdef uint32_t ssrc = 0
    cdef int i
    cdef DtmfSender* tx = &ep.dtmf_tx
    if getrandom(&ssrc, sizeof(ssrc), 0) != sizeof(ssrc) or ssrc == ep.out_ssrc:
        ssrc = ep.out_ssrc ^ <uint32_t>(<uint64_t>monotonic_ns() * <uint64_t>2654435761)
    ep.out_ssrc = ssrc
    ep.out_started = 0
    ep.out_bound = 0
    cdef int slots = sizeof(tx.queue_duration) // sizeof(uint32_t)
    for i in range(tx.count):
        tx.queue_duration[(tx.head + i) % slots] = <uint32_t>(
            <uint64_t>tx.queue_duration[(tx.head + i) % slots] * ep.clock_rate // old_rate)
    if tx.state != DTX_IDLE:
        tx.state = DTX_IDLE


cdef int frame_on_rtp(Core* c, Endpoint* a, const uint8_t* payload, Py_ssize_t length, int pt,
                      uint16_t seq, uint32_t ts, int64_t now) noexcept nogil:
    cdef int event
    cdef uint32_t duration
    if pt == a.event_pt:
        if dtmf_rx_packet(&a.dtmf_rx, payload, length, ts, now, &event, &duration):
            report_dtmf(c, a, event, duration)
        return 0           # still relayed (RELAY mode) to a peer that negotiated events
    if a.rx_frames and pt == a.payload_type and a.jb != NULL:
        jb_put(a.jb, seq, payload, length)
        return 1
    return 0


cdef void frame_new_source(Endpoint* a) noexcept nogil:
    if a.jb != NULL:
        jb_reset(a.jb)


# --- output -------------------------------------------------------------------------------------

cdef inline uint32_t tick_samples(const Endpoint* ep) noexcept nogil:
    return ep.clock_rate // BUS_TICKS_PER_SECOND


cdef void next_stamp(Core* c, Endpoint* ep, int64_t now, uint16_t* seq, uint32_t* ts,
                     int* marker) noexcept nogil:
    """Sequence number and timestamp of a packet generated this tick. Continuous (+1, +20 ms)
    after a packet generated on the previous tick; otherwise the stream continues from where it
    was (relayed or generated), advanced by the wall-clock time since, with the marker bit
    (RFC 3550 §5.1: one sequence/timestamp space per SSRC; RFC 3551 §4.1: marker after a gap)."""
    cdef uint32_t elapsed
    if not ep.out_started:
        seq[0] = ep.first_seq
        ts[0] = ep.first_ts
        marker[0] = 1
        return
    seq[0] = <uint16_t>(ep.last_out_seq + 1)
    if ep.last_out_ns == ep.gen_ns and ep.gen_tick + 1 == c.ticks:
        ts[0] = ep.last_out_ts + tick_samples(ep)
        marker[0] = ep.marker_next
        return
    elapsed = <uint32_t>(((now - ep.last_out_ns) // 1000) * ep.clock_rate // 1000000)
    if elapsed < ep.last_out_samples:
        elapsed = ep.last_out_samples
    if ep.last_out_ns == ep.gen_ns and elapsed < (c.ticks - ep.gen_tick) * tick_samples(ep):
        # Generated before, then silent: the ticks since are the media time that passed (the
        # wall clock runs short when the thread caught up on ticks after a stall).
        elapsed = <uint32_t>((c.ticks - ep.gen_tick) * tick_samples(ep))
    ts[0] = ep.last_out_ts + elapsed
    marker[0] = 1


cdef void commit_stamp(Core* c, Endpoint* ep, int64_t now, uint16_t seq, uint32_t ts) noexcept nogil:
    ep.last_out_seq = seq
    ep.last_out_ts = ts          # the stream's media position (for events: where audio resumes)
    ep.last_out_samples = tick_samples(ep)
    ep.last_out_ns = now
    ep.out_started = 1
    ep.out_bound = 0             # a relay toward ep must rebase its offsets on this stream
    ep.gen_tick = c.ticks
    ep.gen_ns = now
    ep.marker_next = 0


cdef void send_packet(Core* c, Endpoint* ep, Py_ssize_t n) noexcept nogil:
    if sendto(ep.rtp_fd, c.frame_tx, n, 0, <const sockaddr*>&ep.remote, ep.remote_len) == n:
        ep.counters.packets_out += 1
        ep.counters.bytes_out += n
    else:
        ep.counters.send_errors += 1


cdef inline void write_header(Core* c, Endpoint* ep, int marker, int pt, uint16_t seq,
                              uint32_t ts) noexcept nogil:
    cdef uint8_t* p = c.frame_tx
    p[0] = 0x80                  # version 2, no padding, no extension, no CSRC
    p[1] = <uint8_t>((0x80 if marker else 0) | pt)
    wr16(p + 2, seq)
    wr32(p + 4, ts)
    wr32(p + 8, ep.out_ssrc)


cdef void deliver(Core* c, Endpoint* ep, const int16_t* frame, int64_t now) noexcept nogil:
    cdef uint16_t seq
    cdef uint32_t ts
    cdef int marker
    cdef Py_ssize_t n
    if ep.is_port:
        port_give_output(ep.port, frame)
        return
    if not ep.remote_known or ep.encode == NULL:
        return
    next_stamp(c, ep, now, &seq, &ts, &marker)
    n = ep.encode(ep.codec_state, frame, BUS_FRAME, c.frame_tx + RTP_HEADER, MAX_FRAME_PAYLOAD)
    if n < 0:
        return
    commit_stamp(c, ep, now, seq, ts)
    write_header(c, ep, marker, ep.payload_type, seq, ts)
    send_packet(c, ep, RTP_HEADER + n)


cdef int event_tick(Core* c, Endpoint* ep, int64_t now) noexcept nogil:
    """RFC 4733 sending, one step per tick; 1 if an event packet took this tick's slot."""
    cdef uint16_t seq
    cdef uint32_t pos, ts
    cdef int marker, event_marker
    next_stamp(c, ep, now, &seq, &pos, &marker)
    if not dtmf_tx_tick(&ep.dtmf_tx, pos, tick_samples(ep), c.frame_tx + RTP_HEADER, &ts,
                        &event_marker):
        return 0
    commit_stamp(c, ep, now, seq, pos)
    if not dtmf_tx_busy(&ep.dtmf_tx):
        ep.marker_next = 1       # the event is over: audio starts a new talkspurt
    if ep.remote_known and ep.event_pt >= 0:
        write_header(c, ep, event_marker, ep.event_pt, seq, ts)
        send_packet(c, ep, RTP_HEADER + 4)
    return 1


cdef void finish_play(Core* c, Endpoint* ep, int completed) noexcept nogil:
    cdef Event e
    memset(&e, 0, sizeof(Event))
    e.kind = EV_PROMPT_DONE
    e.endpoint_id = ep.id
    e.play_id = ep.play_id
    e.completed = completed
    ep.playing = 0
    ep.play_pcm = NULL     # from now on Python may release the buffer
    push_event(c, &e)


cdef const int16_t* player_frame(Core* c, Endpoint* ep) noexcept nogil:
    cdef int16_t* out = ep.out_frame
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t k
    while n < BUS_FRAME:
        k = ep.play_len - ep.play_pos
        if k > BUS_FRAME - n:
            k = BUS_FRAME - n
        memcpy(out + n, ep.play_pcm + ep.play_pos, k * sizeof(int16_t))
        n += k
        ep.play_pos += k
        if ep.play_pos >= ep.play_len:
            if not ep.play_loop:
                break
            ep.play_pos = 0          # music on hold: seamlessly from the start again
    if n < BUS_FRAME:
        memset(out + n, 0, (BUS_FRAME - n) * sizeof(int16_t))
    if not ep.play_loop and ep.play_pos >= ep.play_len:
        finish_play(c, ep, 1)
    return out


cdef void produce_output(Core* c, Endpoint* ep, int64_t now) noexcept nogil:
    cdef const int16_t* src = NULL
    cdef int muted = 0
    cdef int was_busy = dtmf_tx_busy(&ep.dtmf_tx)
    cdef int was_playing = ep.playing
    if ep.dtmf_tx.state != DTX_IDLE or ep.dtmf_tx.count:
        muted = event_tick(c, ep, now)
    if ep.playing:
        src = player_frame(c, ep)    # a prompt keeps its pace while an event mutes it
    elif ep.out_set:
        src = ep.out_frame
    elif ep.echo:
        if ep.in_valid:
            src = ep.in_frame
    elif ep.peer_frames and ep.route_from.in_valid:
        src = ep.route_from.in_frame
    if src != NULL and not muted:
        deliver(c, ep, src, now)
    if was_busy != dtmf_tx_busy(&ep.dtmf_tx) or was_playing != ep.playing:
        frame_refresh(c, ep)


cdef void frame_tick(Core* c, int64_t now) noexcept nogil:
    cdef Endpoint* ep = c.live
    cdef int event
    cdef uint32_t duration, jitter
    while ep != NULL:
        if ep.dtmf_rx.active and not ep.dtmf_rx.reported:
            if dtmf_rx_expire(&ep.dtmf_rx, now, &event, &duration):
                report_dtmf(c, ep, event, duration)
        ep.out_set = 0
        if ep.is_port:
            ep.in_valid = port_take_input(ep.port, ep.in_frame)
        elif ep.rx_frames:
            # RFC 3550 A.8 jitter (scaled by 16) in bus samples: what the buffer adapts to.
            jitter = <uint32_t>((<uint64_t>(ep.source.jitter >> 4)) * BUS_RATE // ep.clock_rate)
            ep.in_valid = jb_pull(ep.jb, ep.decode, ep.codec_state, jitter, ep.in_frame)
        if ep.inband != NULL:
            inband_tick(c, ep, now)
        ep = ep.next
    if c.frame_hook != NULL:
        c.frame_hook(c, c.frame_hook_arg)
    ep = c.live
    while ep != NULL:
        if ep.relay_paused or ep.out_set or ep.dtmf_tx.count or ep.dtmf_tx.state != DTX_IDLE:
            produce_output(c, ep, now)
        ep = ep.next


# --- commands -----------------------------------------------------------------------------------

cdef void frame_command(Core* c, Command* cmd) noexcept nogil:
    cdef Endpoint* ep = cmd.ep
    cdef uint32_t old_rate
    if cmd.op == CMD_PLAY:
        if ep.playing:
            finish_play(c, ep, 0)    # replaced by the new prompt
        ep.play_pcm = <const int16_t*>cmd.data
        ep.play_len = cmd.data_len
        ep.play_pos = 0
        ep.play_id = <uint64_t>cmd.value
        ep.play_loop = cmd.arg
        ep.playing = 1
        frame_refresh(c, ep)
    elif cmd.op == CMD_STOP_PLAY:
        if ep.playing:
            finish_play(c, ep, 0)
            frame_refresh(c, ep)
    elif cmd.op == CMD_ECHO:
        ep.echo = cmd.arg
        frame_refresh(c, ep)
    elif cmd.op == CMD_DTMF:
        dtmf_tx_queue(&ep.dtmf_tx, cmd.arg, <uint32_t>cmd.value)
    elif cmd.op == CMD_SET_CODEC:
        ep.codec = cmd.arg
        ep.payload_type = cmd.arg2
        ep.event_pt = <int>cmd.value
        if <uint32_t>cmd.data_len != ep.clock_rate:
            old_rate = ep.clock_rate
            ep.clock_rate = <uint32_t>cmd.data_len
            restart_stream(ep, old_rate)
        if ep.event_pt < 0:
            ep.dtmf_tx.count = 0     # nothing negotiated to send queued digits with
        # The old codec's state goes (made by native.engine, owned by ep from here on).
        codec_state_free(<CodecState*>ep.codec_state)
        ep.codec_state = <void*>cmd.data
        frame_setup(ep)
        if ep.jb != NULL:
            jb_reset(ep.jb)          # buffered packets are in the old codec
        frame_refresh(c, ep)
        if ep.route_to != NULL:
            frame_refresh(c, ep.route_to)
        if ep.route_from != NULL:
            frame_refresh(c, ep.route_from)
    elif cmd.op == CMD_INBAND_DTMF:
        inband_switch(c, ep, cmd.arg)


cdef void frame_release(Core* c, Endpoint* ep) noexcept nogil:
    if ep.playing:
        finish_play(c, ep, 0)


cdef void frame_free(Endpoint* ep) noexcept nogil:
    free(ep.jb)
    ep.jb = NULL
    codec_state_free(<CodecState*>ep.codec_state)
    ep.codec_state = NULL
    free(ep.inband)
    ep.inband = NULL
    if ep.port != NULL:
        pthread_mutex_destroy(&ep.port.lock)
        free(ep.port)
        ep.port = NULL
