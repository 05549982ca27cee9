# RTP on the wire: header fields in network byte order (RFC 3550 §5.1), locating the payload
# past CSRCs, header extension and padding, telling RTCP apart on a shared port (RFC 5761), and
# socket-address helpers. Header-only (inline) so the relay loop compiles them in place.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcmp

from native.sysio cimport AF_INET, htons, ntohs, sockaddr_in, sockaddr_in6, sockaddr_storage


cdef inline uint16_t rd16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((p[0] << 8) | p[1])


cdef inline uint32_t rd32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void wr16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void wr32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline int rtp_payload(const uint8_t* p, Py_ssize_t n, Py_ssize_t* offset, Py_ssize_t* length) noexcept nogil:
    """Locate the payload of an RTP packet; 0 if the datagram is not a well-formed RTP packet."""
    cdef Py_ssize_t off
    cdef Py_ssize_t end = n
    cdef int pad
    if n < 12 or (p[0] >> 6) != 2:           # §5.1: fixed header, version 2
        return 0
    off = 12 + 4 * (p[0] & 0x0F)              # CSRC list
    if off > n:
        return 0
    if p[0] & 0x10:                           # §5.3.1: header extension, length in 32-bit words
        if off + 4 > n:
            return 0
        off += 4 + 4 * rd16(p + off + 2)
        if off > n:
            return 0
    if p[0] & 0x20:                           # §5.1: the last octet counts the padding octets
        pad = p[n - 1]
        if pad == 0 or off + pad > n:
            return 0
        end = n - pad
    offset[0] = off
    length[0] = end - off
    return 1


cdef inline int is_multiplexed_rtcp(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    # RFC 5761 §4: RTCP packet types 192-223 occupy the RTP payload types 64-95 (with marker).
    return n >= 8 and (p[0] >> 6) == 2 and 192 <= p[1] <= 223


cdef inline int same_address(const sockaddr_storage* x, const sockaddr_storage* y) noexcept nogil:
    cdef const sockaddr_in* a4
    cdef const sockaddr_in* b4
    cdef const sockaddr_in6* a6
    cdef const sockaddr_in6* b6
    if x.ss_family != y.ss_family:
        return 0
    if x.ss_family == AF_INET:
        a4 = <const sockaddr_in*>x
        b4 = <const sockaddr_in*>y
        return a4.sin_port == b4.sin_port and a4.sin_addr.s_addr == b4.sin_addr.s_addr
    a6 = <const sockaddr_in6*>x
    b6 = <const sockaddr_in6*>y
    return a6.sin6_port == b6.sin6_port and memcmp(&a6.sin6_addr, &b6.sin6_addr, 16) == 0


cdef inline void set_port(sockaddr_storage* addr, uint16_t port) noexcept nogil:
    if addr.ss_family == AF_INET:
        (<sockaddr_in*>addr).sin_port = htons(port)
    else:
        (<sockaddr_in6*>addr).sin6_port = htons(port)


cdef inline uint16_t get_port(const sockaddr_storage* addr) noexcept nogil:
    if addr.ss_family == AF_INET:
        return ntohs((<const sockaddr_in*>addr).sin_port)
    return ntohs((<const sockaddr_in6*>addr).sin6_port)


cdef inline uint32_t media_clock(int64_t now_ns, uint32_t clock_rate) noexcept nogil:
    # Arrival time in timestamp units for RFC 3550 A.8 (microseconds first: no 64-bit overflow).
    return <uint32_t>((now_ns // 1000) * clock_rate // 1000000)
