# cython: language_level=3
"""The adaptive jitter buffer: reorder by sequence number, conceal loss, adapt the depth.

Playout is by sequence number, one 20 ms frame per engine tick. The buffer waits until `target`
packets are queued before it starts (priming), then takes the packet whose turn it is; if that
packet is missing it plays a concealment frame (the last real frame, 6 dB quieter per repeat,
silence after PLC_FADE_FRAMES) and moves on, so a packet arriving later is late and dropped.
Late packets raise the target by one packet at once; a window of JB_ADAPT_TICKS without late
packets lowers it toward what the RFC 3550 A.8 jitter estimate asks for, and if the queue never
fell below the target during the window the excess packets are dropped to give the delay back.
Decoded samples pass through a small FIFO so that packets of 10-60 ms feed 20 ms frames;
concealment stands in for one 20 ms packet (the common packetization, RFC 3551 §4.5).
"""

from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memmove, memset

from native.bus cimport BUS_FRAME, MAX_FRAME_PAYLOAD, frame_decoder


cdef void jb_reset(JitterBuffer* jb) noexcept nogil:
    cdef int i
    for i in range(JB_SLOTS):
        jb.slots[i].used = 0
    jb.count = 0
    jb.playing = 0
    jb.underrun_ticks = 0
    jb.conceal_run = 0
    jb.fifo_len = 0
    memset(jb.last, 0, sizeof(jb.last))
    if jb.target < JB_MIN_DEPTH or jb.target > JB_MAX_DEPTH:
        jb.target = JB_START_DEPTH
    jb.window_ticks = 0
    jb.window_min_count = JB_SLOTS
    jb.window_late = 0


cdef inline void _flush(JitterBuffer* jb) noexcept nogil:
    cdef int i
    for i in range(JB_SLOTS):
        if jb.slots[i].used:
            jb.slots[i].used = 0
            jb.discarded += 1
    jb.count = 0


cdef void jb_put(JitterBuffer* jb, uint16_t seq, const uint8_t* payload, Py_ssize_t n) noexcept nogil:
    cdef int16_t d
    cdef JbSlot* slot
    if n <= 0 or n > MAX_FRAME_PAYLOAD:
        jb.undecodable += 1
        return
    if not jb.playing and jb.count == 0:
        jb.next_seq = seq               # first packet of a stream or talkspurt
    d = <int16_t>(seq - jb.next_seq)
    if d < 0:
        if jb.playing:
            # Its turn has passed (it was concealed): too late to play. A deeper buffer would
            # have caught it, so deepen at once.
            jb.late += 1
            jb.window_late += 1
            if jb.target < JB_MAX_DEPTH:
                jb.target += 1
            return
        if d > -(JB_SLOTS // 2) and <int>(jb.count - d) <= JB_SLOTS:
            jb.next_seq = seq           # priming: an earlier packet overtaken by a later one
        else:
            _flush(jb)
            jb.next_seq = seq
    elif d >= JB_SLOTS:
        # Far ahead of the playout point: the sender restarted its numbering or a long outage
        # ended. What is queued belongs to the past; start over from this packet.
        _flush(jb)
        jb.playing = 0
        jb.fifo_len = 0
        jb.next_seq = seq
    slot = &jb.slots[seq & (JB_SLOTS - 1)]
    if slot.used:
        if slot.seq == seq:
            return                      # duplicate (RFC 3550 §8.2 allows the network to copy)
        jb.discarded += 1               # a stale packet left over in this slot
        jb.count -= 1
    slot.seq = seq
    slot.used = 1
    slot.length = n
    memcpy(slot.payload, payload, n)
    jb.count += 1


cdef inline void _conceal(JitterBuffer* jb) noexcept nogil:
    """Append one concealment frame to the FIFO: the last real frame, 6 dB down per repeat."""
    cdef int i
    cdef int shift
    cdef int16_t* dst = &jb.fifo[jb.fifo_len]
    jb.conceal_run += 1
    jb.concealed += 1
    if jb.conceal_run > PLC_FADE_FRAMES:
        memset(dst, 0, BUS_FRAME * sizeof(int16_t))
    else:
        shift = jb.conceal_run
        for i in range(BUS_FRAME):
            dst[i] = <int16_t>(jb.last[i] >> shift)
    jb.fifo_len += BUS_FRAME


cdef inline void _adapt(JitterBuffer* jb, uint32_t jitter_samples) noexcept nogil:
    cdef int desired, excess
    cdef JbSlot* slot
    if jb.count < jb.window_min_count:
        jb.window_min_count = jb.count
    jb.window_ticks += 1
    if jb.window_ticks < JB_ADAPT_TICKS:
        return
    # Twice the A.8 mean deviation covers most arrivals; one packet more for the tick phase.
    desired = 1 + <int>((2 * jitter_samples + BUS_FRAME - 1) // BUS_FRAME)
    if desired > JB_MAX_DEPTH:
        desired = JB_MAX_DEPTH
    if jb.window_late == 0 and jb.target > desired and jb.target > JB_MIN_DEPTH:
        jb.target -= 1
    excess = jb.window_min_count - jb.target
    while jb.window_late == 0 and excess > 0:
        # More queued than needed for a whole window (a burst after a stall left a backlog):
        # drop the oldest packets to give the delay back.
        slot = &jb.slots[jb.next_seq & (JB_SLOTS - 1)]
        if not (slot.used and slot.seq == jb.next_seq):
            break
        slot.used = 0
        jb.count -= 1
        jb.discarded += 1
        jb.next_seq += 1
        excess -= 1
    jb.window_ticks = 0
    jb.window_min_count = JB_SLOTS
    jb.window_late = 0


cdef int jb_pull(JitterBuffer* jb, frame_decoder decode, void* state, uint32_t jitter_samples,
                 int16_t* out) noexcept nogil:
    """Produce this tick's frame into `out`: 1 if a frame (real or concealed) was produced, 0
    while priming or idle (no audio to play)."""
    cdef JbSlot* slot
    cdef Py_ssize_t n
    cdef int real = 0
    if not jb.playing:
        if jb.count == 0 or jb.count < jb.target:
            return 0
        jb.playing = 1
        jb.underrun_ticks = 0
        jb.conceal_run = 0
    if jb.count == 0 and jb.fifo_len < BUS_FRAME:
        jb.underrun_ticks += 1
        if jb.underrun_ticks > JB_IDLE_TICKS:
            jb.playing = 0
            jb.fifo_len = 0
            jb.conceal_run = 0
            return 0
    else:
        jb.underrun_ticks = 0
    while jb.fifo_len < BUS_FRAME:
        slot = &jb.slots[jb.next_seq & (JB_SLOTS - 1)]
        if slot.used and slot.seq == jb.next_seq:
            slot.used = 0
            jb.count -= 1
            jb.next_seq += 1
            n = decode(state, slot.payload, slot.length, &jb.fifo[jb.fifo_len],
                       JB_PCM_FIFO - jb.fifo_len)
            if n < 0:
                jb.undecodable += 1
                _conceal(jb)
            else:
                jb.fifo_len += n
                jb.conceal_run = 0
                real = 1
        else:
            # Lost (later packets are here) or not arrived yet: conceal and move on; if it
            # arrives after all it is counted late.
            jb.next_seq += 1
            _conceal(jb)
    memcpy(out, jb.fifo, BUS_FRAME * sizeof(int16_t))
    jb.fifo_len -= BUS_FRAME
    if jb.fifo_len:
        memmove(jb.fifo, &jb.fifo[BUS_FRAME], jb.fifo_len * sizeof(int16_t))
    if real and jb.conceal_run == 0:
        memcpy(jb.last, out, BUS_FRAME * sizeof(int16_t))
    _adapt(jb, jitter_samples)
    return 1


# --- a Python handle for tests and tools: the same buffer, fed and pulled by hand -------------

cdef Py_ssize_t _pcm16_decode(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                              Py_ssize_t max_out) noexcept nogil:
    """Payloads holding native int16 samples (what the probe is fed)."""
    if n % 2 or n // 2 > max_out:
        return -1
    memcpy(out, payload, n)
    return n // 2


cdef class JitterProbe:
    """One jitter buffer driven from Python, without sockets or clock: `put` is a packet
    arriving, `pull` is one 20 ms tick. Payloads are int16 samples in native byte order."""

    cdef JitterBuffer* jb

    def __cinit__(self):
        self.jb = <JitterBuffer*>calloc(1, sizeof(JitterBuffer))
        if self.jb == NULL:
            raise MemoryError()
        jb_reset(self.jb)

    def __dealloc__(self):
        free(self.jb)

    def put(self, int seq, bytes payload) -> None:
        jb_put(self.jb, <uint16_t>seq, <const uint8_t*>payload, len(payload))

    def pull(self, uint32_t jitter_samples=0):
        """This tick's frame as bytes (BUS_FRAME int16 samples), or None while priming/idle."""
        cdef int16_t out[BUS_FRAME]
        if not jb_pull(self.jb, _pcm16_decode, NULL, jitter_samples, out):
            return None
        return (<char*>out)[:BUS_FRAME * sizeof(int16_t)]

    @property
    def target(self) -> int:
        return self.jb.target

    @property
    def queued(self) -> int:
        return self.jb.count

    @property
    def late(self) -> int:
        return self.jb.late

    @property
    def concealed(self) -> int:
        return self.jb.concealed

    @property
    def discarded(self) -> int:
        return self.jb.discarded

    @property
    def undecodable(self) -> int:
        return self.jb.undecodable
