# ITU-T G.711 (11/1988) companding, shared with the media engine.
#
# The per-sample functions are `inline` so the engine's relay loop compiles them in place; the
# whole-buffer kernels are table driven (tables filled once when native.g711 is imported) and are
# reached from other extension modules through Cython's exported C-function table.

from libc.stdint cimport int16_t, uint8_t

cdef extern from *:
    int __builtin_clz(unsigned int x) nogil


# µ-law works on a 14-bit uniform code (G.711 §3, Table 2a): the biased magnitude's position of the
# highest set bit is the segment (exponent), the next four bits the step (mantissa); the whole
# 8-bit code word is transmitted inverted so that an idle channel is not all zeros.
cdef inline uint8_t linear_to_ulaw(int16_t sample) noexcept nogil:
    cdef int x14 = sample >> 2
    cdef int sign = 0x80
    cdef int mag = x14
    if x14 < 0:
        sign = 0
        mag = -x14
    # 33 is the µ-law bias on the 14-bit scale (0x84 on the 16-bit scale); the biased magnitude
    # saturates at the top of segment 7.
    mag += 33
    if mag > 8191:
        mag = 8191
    cdef int exponent = (31 - __builtin_clz(<unsigned int>mag)) - 5
    cdef int mantissa = (mag >> (exponent + 1)) & 0x0F
    return <uint8_t>((sign | (exponent << 4) | mantissa) ^ 0x7F)


cdef inline int16_t ulaw_to_linear(uint8_t code) noexcept nogil:
    cdef int c = (~code) & 0xFF
    cdef int exponent = (c >> 4) & 0x07
    cdef int magnitude = (((c & 0x0F) << 3) + 0x84) << exponent
    if c & 0x80:
        return <int16_t>(0x84 - magnitude)
    return <int16_t>(magnitude - 0x84)


# A-law works on a 13-bit uniform code (G.711 §3, Table 1a); segment 0 and 1 share one step size,
# negative values use the one's complement magnitude, and the even bits are inverted (XOR 0x55)
# on the line.
cdef inline uint8_t linear_to_alaw(int16_t sample) noexcept nogil:
    cdef int x13 = sample >> 3
    cdef int sign = 0x80
    cdef int mag = x13
    if x13 < 0:
        sign = 0
        mag = ~x13
    cdef int exponent
    cdef int mantissa
    if mag > 0x0FFF:
        exponent = 7
        mantissa = 0x0F
    elif mag < 32:
        exponent = 0
        mantissa = (mag >> 1) & 0x0F
    else:
        exponent = (31 - __builtin_clz(<unsigned int>mag)) - 4
        mantissa = (mag >> exponent) & 0x0F
    return <uint8_t>((sign | (exponent << 4) | mantissa) ^ 0x55)


cdef inline int16_t alaw_to_linear(uint8_t code) noexcept nogil:
    cdef int c = code ^ 0x55
    cdef int exponent = (c >> 4) & 0x07
    cdef int magnitude = ((c & 0x0F) << 4) + 8
    if exponent >= 1:
        magnitude = (magnitude + 0x100) << (exponent - 1)
    if c & 0x80:
        return <int16_t>magnitude
    return <int16_t>(-magnitude)


# Table-driven whole-buffer kernels (defined in g711.pyx).
cdef void ulaw_encode_buf(const int16_t* pcm, uint8_t* out, Py_ssize_t n) noexcept nogil
cdef void alaw_encode_buf(const int16_t* pcm, uint8_t* out, Py_ssize_t n) noexcept nogil
cdef void ulaw_decode_buf(const uint8_t* codes, int16_t* out, Py_ssize_t n) noexcept nogil
cdef void alaw_decode_buf(const uint8_t* codes, int16_t* out, Py_ssize_t n) noexcept nogil
# µ-law <-> A-law by way of the 16-bit linear value; `src` and `dst` may be the same buffer.
cdef void ulaw_to_alaw_buf(const uint8_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
cdef void alaw_to_ulaw_buf(const uint8_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil
