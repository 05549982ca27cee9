# cython: language_level=3
"""ITU-T G.711 µ-law (PCMU) and A-law (PCMA) for whole buffers, with the GIL released.

16-bit linear PCM comes in as an int16 numpy array or as native-endian bytes (two bytes a
sample, the layout of `audioop` and of WAV data on x86); code words go out as `bytes`, decoded
audio as an int16 numpy array. Each kernel is one table lookup per sample: the encoder tables are
indexed by the 14-bit (µ-law) or 13-bit (A-law) uniform value G.711 actually quantises, so they
stay small enough (16 KiB and 8 KiB) to live in L1/L2 next to the engine's packet buffers.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, uint8_t

import numpy as np

from native.g711 cimport alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear

cdef uint8_t ULAW_ENCODE[16384]   # index: (sample >> 2) + 8192
cdef uint8_t ALAW_ENCODE[8192]    # index: (sample >> 3) + 4096
cdef int16_t ULAW_DECODE[256]
cdef int16_t ALAW_DECODE[256]
cdef uint8_t ULAW_TO_ALAW[256]
cdef uint8_t ALAW_TO_ULAW[256]


cdef void _fill_tables() noexcept nogil:
    cdef int i
    for i in range(16384):
        ULAW_ENCODE[i] = linear_to_ulaw(<int16_t>((i - 8192) << 2))
    for i in range(8192):
        ALAW_ENCODE[i] = linear_to_alaw(<int16_t>((i - 4096) << 3))
    for i in range(256):
        ULAW_DECODE[i] = ulaw_to_linear(<uint8_t>i)
        ALAW_DECODE[i] = alaw_to_linear(<uint8_t>i)
    for i in range(256):
        ULAW_TO_ALAW[i] = linear_to_alaw(ULAW_DECODE[i])
        ALAW_TO_ULAW[i] = linear_to_ulaw(ALAW_DECODE[i])


_fill_tables()


cdef void ulaw_encode_buf(const int16_t* pcm, uint8_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = ULAW_ENCODE[(pcm[i] >> 2) + 8192]


cdef void alaw_encode_buf(const int16_t* pcm, uint8_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = ALAW_ENCODE[(pcm[i] >> 3) + 4096]


cdef void ulaw_decode_buf(const uint8_t* codes, int16_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = ULAW_DECODE[codes[i]]


cdef void alaw_decode_buf(const uint8_t* codes, int16_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = ALAW_DECODE[codes[i]]


cdef void ulaw_to_alaw_buf(const uint8_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ULAW_TO_ALAW[src[i]]


cdef void alaw_to_ulaw_buf(const uint8_t* src, uint8_t* dst, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = ALAW_TO_ULAW[src[i]]


def _as_pcm(object pcm):
    """View `pcm` as contiguous int16 samples without copying when it already is."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise TypeError(f"16-bit PCM must be an int16 array, not {pcm.dtype}")
        if pcm.ndim != 1:
            raise ValueError(f"16-bit PCM must be one-dimensional (mono), got shape {pcm.shape}")
        return np.ascontiguousarray(pcm)
    cdef Py_ssize_t nbytes = len(memoryview(pcm).cast("B"))
    if nbytes % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {nbytes}")
    return np.frombuffer(pcm, dtype=np.int16)


def ulaw_encode(pcm) -> bytes:
    """Encode 16-bit linear PCM (int16 array or native-endian bytes) to µ-law code words."""
    cdef const int16_t[::1] src = _as_pcm(pcm)
    cdef Py_ssize_t n = src.shape[0]
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* dst = <uint8_t*>PyBytes_AS_STRING(out)
    if n:
        with nogil:
            ulaw_encode_buf(&src[0], dst, n)
    return out


def alaw_encode(pcm) -> bytes:
    """Encode 16-bit linear PCM (int16 array or native-endian bytes) to A-law code words."""
    cdef const int16_t[::1] src = _as_pcm(pcm)
    cdef Py_ssize_t n = src.shape[0]
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* dst = <uint8_t*>PyBytes_AS_STRING(out)
    if n:
        with nogil:
            alaw_encode_buf(&src[0], dst, n)
    return out


def ulaw_decode(const uint8_t[::1] codes) -> np.ndarray:
    """Decode µ-law code words (any bytes-like object) to an int16 array."""
    cdef Py_ssize_t n = codes.shape[0]
    out = np.empty(n, dtype=np.int16)
    cdef int16_t[::1] dst = out
    if n:
        with nogil:
            ulaw_decode_buf(&codes[0], &dst[0], n)
    return out


def alaw_decode(const uint8_t[::1] codes) -> np.ndarray:
    """Decode A-law code words (any bytes-like object) to an int16 array."""
    cdef Py_ssize_t n = codes.shape[0]
    out = np.empty(n, dtype=np.int16)
    cdef int16_t[::1] dst = out
    if n:
        with nogil:
            alaw_decode_buf(&codes[0], &dst[0], n)
    return out


def ulaw_to_alaw(const uint8_t[::1] codes) -> bytes:
    """Transcode µ-law code words to A-law through the 16-bit linear value."""
    cdef Py_ssize_t n = codes.shape[0]
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* dst = <uint8_t*>PyBytes_AS_STRING(out)
    if n:
        with nogil:
            ulaw_to_alaw_buf(&codes[0], dst, n)
    return out


def alaw_to_ulaw(const uint8_t[::1] codes) -> bytes:
    """Transcode A-law code words to µ-law through the 16-bit linear value."""
    cdef Py_ssize_t n = codes.shape[0]
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* dst = <uint8_t*>PyBytes_AS_STRING(out)
    if n:
        with nogil:
            alaw_to_ulaw_buf(&codes[0], dst, n)
    return out
