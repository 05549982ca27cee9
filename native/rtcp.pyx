# cython: language_level=3
"""RTCP for one endpoint, sans sockets (RFC 3550 §6): the compound reports an endpoint sends and
what it takes from the reports it receives.

Each leg of a call is its own RTP session (§8.2: the engine is a new source toward each peer),
so each endpoint reports only on the one stream it receives and hears reports only about the
one stream it sends. A compound always starts with an SR (if we sent RTP since our last report)
or an RR, carries our CNAME in an SDES (§6.1, §6.5.1) and ends with a BYE when the endpoint is
destroyed (§6.3.7).

Received compounds pass the validity checks of Appendix A.2 as a whole before anything in them
is used: a peer's malformed packet is counted and dropped, never half-applied.

The report interval is the fixed-bandwidth simplification of §6.3.1: with two members and
G.711's 64 kbit/s, 5 % for RTCP and ~100-octet compounds, the computed interval is far below the
5 s minimum of §6.2, so the minimum is the interval; it is randomised over 0.5-1.5 times itself
(halved before our first report) so that reports of many legs do not synchronise. Without timer
reconsideration there is nothing for the e-3/2 factor of §6.3.1 to compensate, so it is not
applied.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from native.rtpstats cimport SourceStats, source_expected
from native.rtpwire cimport rd16, rd32, wr16, wr32

cdef enum:
    # RFC 3550 §4: NTP time counts from 1 January 1900; the Unix epoch is 70 years (17 of them
    # leap years) later.
    NTP_UNIX_OFFSET = 2208988800
    SR_LENGTH = 28              # header + SSRC + sender info (§6.4.1)
    RR_LENGTH = 8               # header + SSRC (§6.4.2)
    BLOCK_LENGTH = 24           # one report block


cdef uint64_t ntp_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ((<uint64_t>(ts.tv_sec + NTP_UNIX_OFFSET)) << 32) | ((<uint64_t>ts.tv_nsec << 32) // 1000000000)


cdef inline uint32_t ntp_middle(uint64_t ntp) noexcept nogil:
    # §6.4.1 LSR: "the middle 32 bits out of 64 in the NTP timestamp".
    return <uint32_t>(ntp >> 16)


cdef inline uint32_t next_random(RtcpState* st) noexcept nogil:
    # xorshift32 (Marsaglia 2003): enough to spread report times, not a secret.
    cdef uint32_t x = st.rng if st.rng else 0x9E3779B9
    x ^= x << 13
    x ^= x >> 17
    x ^= x << 5
    st.rng = x
    return x


cdef inline int64_t randomised(RtcpState* st, int64_t interval_ns) noexcept nogil:
    """§6.3.1: the interval times a uniform random factor in [0.5, 1.5)."""
    cdef uint64_t r = next_random(st) >> 16          # 16 random bits
    return interval_ns // 2 + <int64_t>((<uint64_t>interval_ns * r) >> 16)


cdef void rtcp_arm(RtcpState* st, int64_t now, int64_t interval_ns, uint32_t seed) noexcept nogil:
    if st.next_ns:
        return
    if st.rng == 0:
        st.rng = seed | 1
    # §6.3.1 / §6.2: before the first report the minimum interval is halved ("initial").
    st.next_ns = now + randomised(st, interval_ns // 2)


cdef void rtcp_reschedule(RtcpState* st, int64_t now, int64_t interval_ns) noexcept nogil:
    st.next_ns = now + randomised(st, interval_ns)


cdef inline uint8_t* header(uint8_t* p, int count, int packet_type, Py_ssize_t length) noexcept nogil:
    # §6.4.1: V=2, P=0, a 5-bit count, the type, and the length in 32-bit words minus one.
    p[0] = <uint8_t>(0x80 | count)
    p[1] = <uint8_t>packet_type
    wr16(p + 2, <uint16_t>(length // 4 - 1))
    return p + 4


cdef Py_ssize_t report_block(RtcpState* st, uint8_t* p, const SourceStats* src, int64_t now) noexcept nogil:
    """One §6.4.1 report block about `src`, with the interval counts of Appendix A.3."""
    cdef int64_t expected = source_expected(src)
    cdef int64_t received = src.received
    cdef int64_t lost = expected - received
    cdef int64_t expected_interval, lost_interval
    cdef uint32_t fraction = 0
    cdef uint32_t lsr = 0
    cdef uint32_t dlsr = 0
    # A new source, or the same SSRC restarted its sequence (A.1): its counts start again.
    if src.ssrc != st.prior_ssrc or expected < st.expected_prior or received < st.received_prior:
        st.prior_ssrc = src.ssrc
        st.expected_prior = 0
        st.received_prior = 0
    expected_interval = expected - st.expected_prior
    lost_interval = expected_interval - (received - st.received_prior)
    st.expected_prior = expected
    st.received_prior = received
    # A.3: duplicates can make the interval's loss negative; the fraction is then zero.
    if expected_interval > 0 and lost_interval > 0:
        fraction = <uint32_t>((lost_interval << 8) // expected_interval)
        if fraction > 255:
            fraction = 255
    # §6.4.1: the cumulative number is 24-bit signed; clamp rather than wrap.
    if lost > 0x7FFFFF:
        lost = 0x7FFFFF
    elif lost < -0x800000:
        lost = -0x800000
    if st.has_peer_sr and st.peer_sr_ssrc == src.ssrc:
        lsr = st.peer_sr_ntp
        # DLSR in units of 1/65536 s.
        dlsr = <uint32_t>(((now - st.peer_sr_arrival_ns) << 16) // 1000000000)
    wr32(p, src.ssrc)
    wr32(p + 4, (fraction << 24) | (<uint32_t><int32_t>lost & 0xFFFFFF))
    wr32(p + 8, src.cycles + src.max_seq)      # extended highest sequence number received
    wr32(p + 12, src.jitter >> 4)              # A.8 keeps it scaled by 16
    wr32(p + 16, lsr)
    wr32(p + 20, dlsr)
    return BLOCK_LENGTH


cdef Py_ssize_t rtcp_build(RtcpState* st, uint8_t* out, const RtcpSender* me, const SourceStats* src,
                           int has_source, uint64_t packets_in, int64_t now, uint64_t ntp,
                           const uint8_t* cname, int cname_len, int bye) noexcept nogil:
    cdef uint8_t* p = out
    cdef uint8_t* start
    cdef Py_ssize_t length
    # §6.4: report on the source only if it sent since our last report (and A.1 validated it).
    cdef int block = has_source and src.probation == 0 and packets_in != st.packets_in_at_report
    st.packets_in_at_report = packets_in
    if cname_len > RTCP_CNAME_MAX:
        cname_len = RTCP_CNAME_MAX

    if me.active:
        length = SR_LENGTH + (BLOCK_LENGTH if block else 0)
        p = header(p, 1 if block else 0, RTCP_SR, length)
        wr32(p, me.ssrc)
        wr32(p + 4, <uint32_t>(ntp >> 32))
        wr32(p + 8, <uint32_t>ntp)
        wr32(p + 12, me.rtp_ts)
        wr32(p + 16, me.packet_count)
        wr32(p + 20, me.octet_count)
        p += 24
        st.sr_ntp[st.sr_next] = ntp_middle(ntp)
        st.sr_mono[st.sr_next] = now
        st.sr_next = (st.sr_next + 1) % RTCP_SR_HISTORY
    else:
        length = RR_LENGTH + (BLOCK_LENGTH if block else 0)
        p = header(p, 1 if block else 0, RTCP_RR, length)
        wr32(p, me.ssrc)
        p += 4
    if block:
        p += report_block(st, p, src, now)

    # §6.5: one chunk (our SSRC) with the CNAME item, then END; null octets pad the chunk to a
    # 32-bit boundary and there is at least one.
    length = (4 + 4 + 2 + cname_len + 1 + 3) & ~3
    start = p
    p = header(p, 1, RTCP_SDES, length)
    wr32(p, me.ssrc)
    p[4] = SDES_CNAME
    p[5] = <uint8_t>cname_len
    memcpy(p + 6, cname, cname_len)
    p = start + 4 + 4 + 2 + cname_len
    memset(p, 0, start + length - p)
    p = start + length

    if bye:
        p = header(p, 1, RTCP_BYE, 8)      # §6.6, no reason text
        wr32(p, me.ssrc)
        p += 4
    st.reports_sent += 1
    return p - out


cdef uint32_t rtcp_sender_ssrc(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    return rd32(p + 4) if n >= 8 else 0


cdef int sdes_valid(const uint8_t* p, Py_ssize_t length, int chunks) noexcept nogil:
    """§6.5: `chunks` chunks of an SSRC and items up to an END item, each chunk padded to 32 bits."""
    cdef Py_ssize_t off = 4
    cdef int k
    for k in range(chunks):
        if off + 4 > length:
            return 0
        off += 4
        while True:
            if off >= length:
                return 0
            if p[off] == SDES_END:
                off = (off + 4) & ~3          # the END octet and the null padding after it
                break
            if off + 2 > length or off + 2 + p[off + 1] > length:
                return 0
            off += 2 + p[off + 1]
    return off <= length


cdef int compound_valid(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Appendix A.2 on the whole compound: version 2 throughout, an SR or RR first, padding only
    on the last packet, length fields that add up to the datagram, and each known packet large
    enough for the blocks or chunks its count announces. (RFC 5506 reduced-size RTCP, which may
    start with another type, is not negotiated by us and so not accepted.)"""
    cdef Py_ssize_t off = 0
    cdef Py_ssize_t length, body
    cdef int pt, count
    if n < 8 or (p[1] != RTCP_SR and p[1] != RTCP_RR):
        return 0
    while off < n:
        if n - off < 4 or (p[off] >> 6) != 2:
            return 0
        length = (<Py_ssize_t>rd16(p + off + 2) + 1) * 4
        if off + length > n:
            return 0
        body = length
        if p[off] & 0x20:
            if off + length != n:
                return 0                       # padding only on the last packet
            if p[n - 1] == 0 or p[n - 1] > length - 4:
                return 0
            body = length - p[n - 1]
        pt = p[off + 1]
        count = p[off] & 0x1F
        if pt == RTCP_SR and body < SR_LENGTH + count * BLOCK_LENGTH:
            return 0
        if pt == RTCP_RR and body < RR_LENGTH + count * BLOCK_LENGTH:
            return 0
        if pt == RTCP_BYE and body < 4 + count * 4:
            return 0
        if pt == RTCP_SDES and not sdes_valid(p + off, body, count):
            return 0
        off += length
    return 1


cdef int take_blocks(RtcpState* st, const uint8_t* p, int count, uint32_t sender, uint32_t our_ssrc,
                     int64_t now) noexcept nogil:
    cdef int k, found = 0
    cdef int i
    cdef uint32_t word, lsr, dlsr
    cdef int64_t rtt
    for k in range(count):
        if rd32(p) == our_ssrc:
            found = RTCP_GOT_REPORT
            word = rd32(p + 4)
            st.has_report = 1
            st.reporter_ssrc = sender
            st.fraction_lost = <uint8_t>(word >> 24)
            # 24-bit two's complement to a signed integer.
            st.cumulative_lost = <int32_t>((word & 0xFFFFFF) ^ 0x800000) - 0x800000
            st.ext_max_seq = rd32(p + 8)
            st.jitter = rd32(p + 12)
            lsr = rd32(p + 16)
            dlsr = rd32(p + 20)
            # §6.4.1: RTT = A - LSR - DLSR. A and LSR are both times of our own clock; we take
            # them as the monotonic times we sent that SR and received this block, which gives
            # the same figure without being shifted by steps of the wall clock.
            if lsr != 0:
                for i in range(RTCP_SR_HISTORY):
                    if st.sr_mono[i] != 0 and st.sr_ntp[i] == lsr:
                        rtt = now - st.sr_mono[i] - ((<int64_t>dlsr * 1000000000) >> 16)
                        # DLSR is rounded to 1/65536 s: a loopback RTT can come out a hair below 0.
                        st.rtt_ns = rtt if rtt > 0 else 0
                        st.has_rtt = 1
                        found |= RTCP_GOT_RTT
                        break
        p += BLOCK_LENGTH
    return found


cdef int rtcp_receive(RtcpState* st, const uint8_t* p, Py_ssize_t n, uint32_t our_ssrc,
                      int64_t now) noexcept nogil:
    cdef Py_ssize_t off = 0
    cdef Py_ssize_t length
    cdef int pt, count
    cdef int got = 0
    cdef const uint8_t* q
    if not compound_valid(p, n):
        st.malformed += 1
        return RTCP_INVALID
    while off < n:
        q = p + off
        length = (<Py_ssize_t>rd16(q + 2) + 1) * 4
        pt = q[1]
        count = q[0] & 0x1F
        if pt == RTCP_SR:
            st.has_peer_sr = 1
            st.peer_sr_ssrc = rd32(q + 4)
            st.peer_sr_ntp = (rd32(q + 8) << 16) | (rd32(q + 12) >> 16)
            st.peer_sr_arrival_ns = now
            st.peer_packets_sent = rd32(q + 20)
            st.peer_octets_sent = rd32(q + 24)
            got |= RTCP_GOT_SR | take_blocks(st, q + SR_LENGTH, count, rd32(q + 4), our_ssrc, now)
        elif pt == RTCP_RR:
            got |= take_blocks(st, q + RR_LENGTH, count, rd32(q + 4), our_ssrc, now)
        elif pt == RTCP_BYE and count > 0:
            st.peer_bye = 1
            got |= RTCP_GOT_BYE
        # SDES (the peer's CNAME is not needed here), APP and the feedback/XR types (RFC 4585,
        # RFC 3611) are skipped by their length.
        off += length
    return got
