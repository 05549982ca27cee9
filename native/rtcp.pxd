# RTCP (RFC 3550 §6) for one endpoint of the media engine, without sockets: the state an endpoint
# keeps (`RtcpState`, a field of medialoop.pxd's Endpoint), building its compound reports
# (SR or RR, SDES CNAME, BYE) and taking in what the far end reports. Implemented in rtcp.pyx;
# medialoop.pyx owns the sockets, the 20 ms tick that asks for reports and the state lock.
# Nothing here depends on the Endpoint struct, so medialoop.pxd can embed RtcpState.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from native.rtpstats cimport SourceStats

cdef enum:
    # RFC 3550 §12.1 packet types; RFC 5761 §4 tells them apart from RTP on a shared port.
    RTCP_SR = 200
    RTCP_RR = 201
    RTCP_SDES = 202
    RTCP_BYE = 203
    RTCP_APP = 204
    SDES_END = 0
    SDES_CNAME = 1
    # Sender reports we remember to match the LSR a peer echoes back (RFC 3550 §6.4.1): the one
    # it answers is normally the last, or the one before if the last crossed its report.
    RTCP_SR_HISTORY = 4
    # RFC 7022 §4.2: a short-term CNAME of at least 96 random bits (we use 24 hex digits);
    # longer ones are cut here (an SDES item holds 255 octets, RFC 3550 §6.5).
    RTCP_CNAME_MAX = 64
    # A compound we build: SR (28) + one report block (24) + SDES with CNAME (<= 80) + BYE (8).
    RTCP_COMPOUND_MAX = 160

# rtcp_receive's result: bits for what the compound held, or RTCP_INVALID.
cdef enum:
    RTCP_INVALID = -1
    RTCP_GOT_SR = 1             # a sender report (its NTP time is kept for our LSR/DLSR)
    RTCP_GOT_REPORT = 2         # a report block about our stream (fraction/cumulative lost, jitter)
    RTCP_GOT_RTT = 4            # ... whose LSR/DLSR gave a round-trip time
    RTCP_GOT_BYE = 8


ctypedef struct RtcpState:
    # Scheduling (RFC 3550 §6.3.1; 0: no report scheduled, no RTCP remote known yet).
    int64_t next_ns             # monotonic time of the next report
    uint32_t rng                # xorshift32 state for the 0.5-1.5 randomisation
    int mux                     # the peer sends RTCP on our RTP port (RFC 5761): answer there
    int reports_sent            # compounds sent so far (the first interval is halved)

    # What we sent in reports: RFC 3550 §6.4.1 SR sender info and A.3 interval counts.
    uint64_t packets_out_at_report  # our RTP packets sent when the last report left
    uint64_t packets_in_at_report   # RTP packets received when the last report left
    uint32_t prior_ssrc         # the source the A.3 priors below belong to
    int64_t expected_prior
    int64_t received_prior
    uint64_t header_extra_out   # octets of relayed packets beyond the 12-octet fixed header
                                # (CSRCs, extensions, padding): not payload (§6.4.1 octet count)
    uint32_t sr_ntp[RTCP_SR_HISTORY]    # middle 32 bits of the NTP time of our recent SRs ...
    int64_t sr_mono[RTCP_SR_HISTORY]    # ... and the monotonic time they left
    int sr_next

    # The far end's last sender report (what our report blocks' LSR/DLSR answer).
    int has_peer_sr
    uint32_t peer_sr_ssrc
    uint32_t peer_sr_ntp        # middle 32 bits of its NTP timestamp (§6.4.1 LSR)
    int64_t peer_sr_arrival_ns  # monotonic, for DLSR
    uint32_t peer_packets_sent  # its sender's packet and octet counts
    uint32_t peer_octets_sent

    # The far end's last report block about our stream (§6.4.1).
    int has_report
    uint32_t reporter_ssrc
    uint8_t fraction_lost       # fixed point, /256, over its last interval
    int32_t cumulative_lost     # 24-bit signed on the wire
    uint32_t ext_max_seq
    uint32_t jitter             # in our stream's timestamp units
    int has_rtt
    int64_t rtt_ns
    int64_t report_event_ns     # when an EV_RTCP_REPORT was last queued (rate limit)

    int peer_bye                # the far end said BYE (§6.6)
    uint64_t reports_out        # compounds sent
    uint64_t malformed          # compounds dropped by the A.2 validity checks


# What a report says about our own outgoing stream (RFC 3550 §6.4.1 sender info).
ctypedef struct RtcpSender:
    uint32_t ssrc
    int active                  # we sent RTP since the last report: SR, else RR
    uint32_t packet_count
    uint32_t octet_count
    uint32_t rtp_ts             # our stream's RTP timestamp for the same instant as the NTP time


# Wall clock as a 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900, 32.32 fixed point).
cdef uint64_t ntp_now() noexcept nogil

# Arm the report timer once an RTCP destination is known (no-op if already armed). `seed`
# starts the randomisation; `interval_ns` is the engine's report interval.
cdef void rtcp_arm(RtcpState* st, int64_t now, int64_t interval_ns, uint32_t seed) noexcept nogil
# After a report left: the time of the next one.
cdef void rtcp_reschedule(RtcpState* st, int64_t now, int64_t interval_ns) noexcept nogil

# Build a compound report into `out` (at least RTCP_COMPOUND_MAX octets): SR or RR, a report
# block about `src` if RTP arrived since the last report, SDES CNAME and, with `bye`, a BYE.
# Updates the interval counts. Returns its length.
cdef Py_ssize_t rtcp_build(RtcpState* st, uint8_t* out, const RtcpSender* me, const SourceStats* src,
                           int has_source, uint64_t packets_in, int64_t now, uint64_t ntp,
                           const uint8_t* cname, int cname_len, int bye) noexcept nogil

# Take in a received compound: RTCP_INVALID (nothing used, `malformed` counted) or RTCP_GOT_*
# bits. `our_ssrc` selects the report block about our stream.
cdef int rtcp_receive(RtcpState* st, const uint8_t* p, Py_ssize_t n, uint32_t our_ssrc,
                      int64_t now) noexcept nogil
# The SSRC of the compound's first packet (SR/RR sender), for a NAT rebinding check; 0 if short.
cdef uint32_t rtcp_sender_ssrc(const uint8_t* p, Py_ssize_t n) noexcept nogil
