# cython: language_level=3
"""RTCP on the engine thread: the socket side of native/rtcp.pyx for the endpoints of the media
loop (medialoop.pyx calls in here with the state lock held).

Reports leave on the 20 ms tick when an endpoint's randomised interval has run out, and once
more with a BYE when an endpoint that sent RTP is destroyed (RFC 3550 §6.3.7). They go from the
RTCP socket to the RTCP remote (the signalled RTP port + 1, §11, or where the peer's RTCP comes
from), or from the RTP socket to the RTP remote once the peer multiplexes RTCP there (RFC 5761).
Received compounds are taken in by rtcp.pyx; a report about our stream becomes an
EV_RTCP_REPORT event, at most one a second per endpoint whatever a peer sends.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcpy, memset

from native.medialoop cimport (
    BATCH,
    EV_RTCP_REPORT,
    MAX_DATAGRAM,
    Core,
    Endpoint,
    Event,
    push_event,
    take_snapshot,
)
from native.rtcp cimport (
    RTCP_COMPOUND_MAX,
    RTCP_GOT_REPORT,
    RTCP_INVALID,
    RtcpSender,
    ntp_now,
    rtcp_arm,
    rtcp_build,
    rtcp_receive,
    rtcp_sender_ssrc,
)
from native.rtpwire cimport same_address
from native.sysio cimport (
    MSG_DONTWAIT,
    MSG_TRUNC,
    monotonic_ns,
    pthread_mutex_lock,
    pthread_mutex_unlock,
    recvmmsg,
    sockaddr,
    sockaddr_storage,
    socklen_t,
)

cdef extern from "<sys/socket.h>" nogil:
    ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr, socklen_t len)

cdef enum:
    # RFC 3550 §5.1: the fixed RTP header; the rest of a relayed packet's header is not payload.
    RTP_FIXED_HEADER = 12

# EV_RTCP_REPORT at most once a second per endpoint.
cdef int64_t RTCP_EVENT_MIN_NS = 1000000000


cdef void send_rtcp(Core* c, Endpoint* ep, int64_t now, int bye) noexcept nogil:
    """Send ep's compound report (and a BYE): to the RTP remote if the peer multiplexes RTCP on
    the RTP port (RFC 5761 §4), else from the RTCP socket to the RTCP remote."""
    cdef uint8_t buf[RTCP_COMPOUND_MAX]
    cdef RtcpSender me
    cdef Py_ssize_t n
    cdef int64_t octets
    cdef int fd
    cdef const sockaddr_storage* to
    cdef socklen_t to_len
    if ep.is_port:
        return
    if ep.rtcp.mux and ep.remote_known:
        fd = ep.rtp_fd
        to = &ep.remote
        to_len = ep.remote_len
    elif ep.rtcp_remote_known:
        fd = ep.rtcp_fd
        to = &ep.rtcp_remote
        to_len = ep.rtcp_remote_len
    else:
        return
    me.ssrc = ep.out_ssrc
    me.active = ep.counters.packets_out != ep.rtcp.packets_out_at_report
    ep.rtcp.packets_out_at_report = ep.counters.packets_out
    me.packet_count = <uint32_t>ep.counters.packets_out      # §6.4.1: wraps modulo 2^32
    octets = <int64_t>(ep.counters.bytes_out - RTP_FIXED_HEADER * ep.counters.packets_out
                       - ep.rtcp.header_extra_out)
    me.octet_count = <uint32_t>(octets if octets > 0 else 0)
    # §6.4.1: the RTP timestamp of this same instant on our stream's clock, extrapolated from
    # the last packet sent (as a receiver would see it continue).
    me.rtp_ts = ep.last_out_ts
    if ep.out_started and now > ep.last_out_ns:
        me.rtp_ts += <uint32_t>(((now - ep.last_out_ns) // 1000) * ep.clock_rate // 1000000)
    n = rtcp_build(&ep.rtcp, buf, &me, &ep.source, ep.has_source, ep.counters.packets_in, now,
                   ntp_now(), c.rtcp_cname, c.rtcp_cname_len, bye)
    if sendto(fd, buf, n, 0, <const sockaddr*>to, to_len) == n:
        ep.rtcp.reports_out += 1
    else:
        ep.counters.send_errors += 1


cdef void rtcp_taken(Core* c, Endpoint* a, int got, int64_t now) noexcept nogil:
    """A valid compound was taken in: report it to Python (rate-limited) if it was about us."""
    cdef Event e
    if not got & RTCP_GOT_REPORT:
        return
    if a.rtcp.report_event_ns and now - a.rtcp.report_event_ns < RTCP_EVENT_MIN_NS:
        return
    a.rtcp.report_event_ns = now
    memset(&e, 0, sizeof(Event))
    e.kind = EV_RTCP_REPORT
    e.endpoint_id = a.id
    take_snapshot(a, &e.stats)
    push_event(c, &e)


cdef void on_muxed_rtcp(Core* c, Endpoint* a, const uint8_t* p, Py_ssize_t n,
                        const sockaddr_storage* src, int64_t now) noexcept nogil:
    """RTCP on the RTP port (RFC 5761): accepted from the RTP source only (a NAT rebinding is
    followed by RTP, not by RTCP); a valid compound makes us answer on this port too."""
    cdef int got
    if a.latched and not same_address(src, &a.remote):
        a.counters.dropped += 1
        return
    got = rtcp_receive(&a.rtcp, p, n, a.out_ssrc, now)
    if got == RTCP_INVALID:
        return
    a.rtcp.mux = 1
    if a.remote_known:
        rtcp_arm(&a.rtcp, now, c.rtcp_interval_ns, a.out_ssrc ^ <uint32_t>a.id)
    rtcp_taken(c, a, got, now)


cdef void on_rtcp_readable(Core* c, Endpoint* a) noexcept nogil:
    # RTCP is terminated here, not relayed (each leg is its own RTP session, RFC 3550 §8.2).
    # Like RTP (RFC 4961), the first valid compound latches where our reports go; after that
    # another address is followed only if it speaks for the source we receive (NAT rebinding).
    cdef int i, n, got
    cdef Py_ssize_t size
    cdef const uint8_t* p
    cdef const sockaddr_storage* src
    cdef int64_t now
    for i in range(BATCH):
        c.rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
        c.rx_msgs[i].msg_hdr.msg_flags = 0
    n = recvmmsg(a.rtcp_fd, c.rx_msgs, BATCH, MSG_DONTWAIT, NULL)
    if n <= 0:
        return
    now = monotonic_ns()
    pthread_mutex_lock(&c.state_lock)
    for i in range(n):
        p = c.rx_data + i * MAX_DATAGRAM
        size = c.rx_msgs[i].msg_len
        src = &c.rx_addr[i]
        if size < 8 or (p[0] >> 6) != 2 or c.rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
            a.counters.malformed += 1
            continue
        a.counters.rtcp_packets_in += 1
        if (a.rtcp_latched and not same_address(src, &a.rtcp_remote)
                and not (a.has_source and rtcp_sender_ssrc(p, size) == a.source.ssrc)):
            a.counters.dropped += 1
            continue
        got = rtcp_receive(&a.rtcp, p, size, a.out_ssrc, now)
        if got == RTCP_INVALID:
            continue
        if not a.rtcp_latched or not same_address(src, &a.rtcp_remote):
            memcpy(&a.rtcp_remote, src, sizeof(sockaddr_storage))
            a.rtcp_remote_len = c.rx_msgs[i].msg_hdr.msg_namelen
            a.rtcp_latched = 1
            a.rtcp_remote_known = 1
            rtcp_arm(&a.rtcp, now, c.rtcp_interval_ns, a.out_ssrc ^ <uint32_t>a.id)
        rtcp_taken(c, a, got, now)
    pthread_mutex_unlock(&c.state_lock)
