# RTCP for the media loop's endpoints: sockets, schedule and events around the sans-IO rtcp.pyx.
# Implemented in rtcpio.pyx; called by medialoop.pyx (the engine thread) with the state lock held,
# except on_rtcp_readable, which takes it itself.

from libc.stdint cimport int64_t, uint8_t

from native.medialoop cimport Core, Endpoint
from native.sysio cimport sockaddr_storage

# Send ep's compound report now (with a BYE after it if `bye`); nothing if no RTCP remote is known.
cdef void send_rtcp(Core* c, Endpoint* ep, int64_t now, int bye) noexcept nogil
# A datagram on a's RTP port that is RTCP (RFC 5761 §4), from `src`.
cdef void on_muxed_rtcp(Core* c, Endpoint* a, const uint8_t* p, Py_ssize_t n,
                        const sockaddr_storage* src, int64_t now) noexcept nogil
# a's RTCP socket is readable: read a batch and take each compound in.
cdef void on_rtcp_readable(Core* c, Endpoint* a) noexcept nogil
