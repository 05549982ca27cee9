# RTP receiver statistics for one synchronisation source, as RFC 3550 Appendix A defines them:
# sequence-number validation and extension (A.1), expected/lost counts (A.3) and the
# interarrival jitter estimator (A.8). Header-only (inline), updated per packet by the engine.

from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t

cdef enum:
    RTP_SEQ_MOD = 65536
    # A.1: a jump of less than MAX_DROPOUT ahead is loss, one of up to MAX_MISORDER behind is
    # reordering; MIN_SEQUENTIAL in-order packets make a new source valid.
    MAX_DROPOUT = 3000
    MAX_MISORDER = 100
    MIN_SEQUENTIAL = 2


ctypedef struct SourceStats:
    uint32_t ssrc
    uint16_t max_seq        # highest sequence number seen
    uint32_t cycles         # count of sequence wraps, times RTP_SEQ_MOD
    uint32_t base_seq       # first sequence number counted
    uint32_t bad_seq        # the sequence number after a suspected restart
    uint32_t probation      # in-order packets still needed before the source is valid
    uint32_t received       # packets counted (valid, not duplicates)
    uint32_t transit        # relative transit time of the previous packet (A.8)
    uint32_t jitter         # interarrival jitter in timestamp units, scaled by 16 (A.8)
    int has_transit


cdef inline void _restart_sequence(SourceStats* s, uint16_t seq) noexcept nogil:
    s.base_seq = seq
    s.max_seq = seq
    s.bad_seq = RTP_SEQ_MOD + 1   # an impossible value: no restart pending
    s.cycles = 0
    s.received = 0


cdef inline void source_start(SourceStats* s, uint32_t ssrc, uint16_t seq) noexcept nogil:
    """A.1: a source heard for the first time is on probation until MIN_SEQUENTIAL in order."""
    _restart_sequence(s, seq)
    s.ssrc = ssrc
    s.max_seq = <uint16_t>(seq - 1)
    s.probation = MIN_SEQUENTIAL
    s.transit = 0
    s.jitter = 0
    s.has_transit = 0


cdef inline int source_update_seq(SourceStats* s, uint16_t seq) noexcept nogil:
    """A.1 update_seq: returns 1 when the packet counts as received, 0 when it does not."""
    cdef uint16_t udelta = <uint16_t>(seq - s.max_seq)
    if s.probation:
        if seq == <uint16_t>(s.max_seq + 1):
            s.probation -= 1
            s.max_seq = seq
            if s.probation == 0:
                _restart_sequence(s, seq)
                s.received += 1
                return 1
        else:
            s.probation = MIN_SEQUENTIAL - 1
            s.max_seq = seq
        return 0
    if udelta < MAX_DROPOUT:
        # In order, possibly with a gap (loss); a smaller number means the 16 bits wrapped.
        if seq < s.max_seq:
            s.cycles += RTP_SEQ_MOD
        s.max_seq = seq
    elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
        # A very large jump: the sender restarted, unless this is a stray packet. Two packets in
        # sequence after the jump confirm a restart.
        if seq == s.bad_seq:
            _restart_sequence(s, seq)
        else:
            s.bad_seq = (seq + 1) & (RTP_SEQ_MOD - 1)
            return 0
    # else: a duplicate or a packet reordered by less than MAX_MISORDER; counted, max unchanged.
    s.received += 1
    return 1


cdef inline int64_t source_expected(const SourceStats* s) noexcept nogil:
    """A.3: packets expected from the extended highest sequence number (0 while on probation)."""
    if s.probation:
        return 0
    return <int64_t>s.cycles + s.max_seq - s.base_seq + 1


cdef inline int64_t source_lost(const SourceStats* s) noexcept nogil:
    """A.3: cumulative loss; negative when duplicates outnumber losses, as the RFC allows."""
    if s.probation:
        return 0
    return source_expected(s) - s.received


cdef inline void source_update_jitter(SourceStats* s, uint32_t arrival, uint32_t rtp_ts) noexcept nogil:
    """A.8: J += (|D| - J) / 16, with arrival time in the stream's timestamp units."""
    cdef uint32_t transit = arrival - rtp_ts
    cdef int32_t d
    if s.has_transit:
        d = <int32_t>(transit - s.transit)
        if d < 0:
            d = -d
        s.jitter += <uint32_t>d - ((s.jitter + 8) >> 4)
    s.transit = transit
    s.has_transit = 1
