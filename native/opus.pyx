# cython: language_level=3
"""Opus encoding and decoding on libopus, called straight from C without the GIL.

libopus is opened with dlopen(3) and its few entry points are looked up with dlsym(3) into the
function pointers below; their prototypes are the stable libopus 1.x API (opus.h). When the file
is PyAV's copy, PyAV's libavcodec has usually mapped it already and dlopen only takes another
reference; RTLD_LOCAL keeps its symbols out of the process's global namespace either way.

Encoder defaults (OpusEncoder): the VoIP application, 32 kbit/s VBR, complexity 5 (about 2/3 of
the CPU of libopus's default 10, for a difference speech on a phone call does not show), in-band
FEC and DTX off unless asked for (RFC 7587 §6.1 leaves both to the SDP: useinbandfec, usedtx).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int32_t, uint8_t
from posix.dlfcn cimport RTLD_LOCAL, RTLD_NOW, dlclose, dlerror, dlopen, dlsym

import numpy as np

ctypedef void* (*encoder_create_t)(int32_t fs, int channels, int application, int* error) noexcept nogil
ctypedef int32_t (*encode_t)(void* st, const int16_t* pcm, int frame_size, uint8_t* data,
                             int32_t max_data_bytes) noexcept nogil
ctypedef int (*encoder_ctl_t)(void* st, int request, ...) noexcept nogil
ctypedef void (*destroy_t)(void* st) noexcept nogil
ctypedef void* (*decoder_create_t)(int32_t fs, int channels, int* error) noexcept nogil
ctypedef int (*decode_t)(void* st, const uint8_t* data, int32_t len, int16_t* pcm, int frame_size,
                         int decode_fec) noexcept nogil
ctypedef const char* (*strerror_t)(int error) noexcept nogil
ctypedef const char* (*version_t)() noexcept nogil

cdef void* _library = NULL
cdef encoder_create_t _encoder_create = NULL
cdef encode_t _encode = NULL
cdef encoder_ctl_t _encoder_ctl = NULL
cdef destroy_t _encoder_destroy = NULL
cdef decoder_create_t _decoder_create = NULL
cdef decode_t _decode = NULL
cdef destroy_t _decoder_destroy = NULL
cdef strerror_t _strerror = NULL
cdef version_t _version = NULL

_loaded_from = None


class OpusError(ValueError):
    """libopus refused a request or a packet; `code` is its (negative) error code."""

    def __init__(self, str message, int code):
        super().__init__(message)
        self.code = code


cdef void* _symbol(void* library, bytes name) except NULL:
    cdef void* address = dlsym(library, name)
    if address == NULL:
        raise OSError(f"libopus has no {name.decode()}")
    return address


def load_library(str path) -> str:
    """Open libopus at `path` (a file path or a soname) and return its version string.

    The first successful load stays for the life of the process; later calls return its version.
    """
    global _library, _loaded_from
    global _encoder_create, _encode, _encoder_ctl, _encoder_destroy
    global _decoder_create, _decode, _decoder_destroy, _strerror, _version
    if _library != NULL:
        return version()
    cdef void* library = dlopen(path.encode(), RTLD_NOW | RTLD_LOCAL)
    cdef const char* message
    if library == NULL:
        message = dlerror()
        reason = (<bytes>message).decode(errors="replace") if message != NULL else "unknown error"
        raise OSError(f"cannot open libopus at {path}: {reason}")
    # All or nothing: a library missing one symbol is not libopus 1.x.
    try:
        _encoder_create = <encoder_create_t>_symbol(library, b"opus_encoder_create")
        _encode = <encode_t>_symbol(library, b"opus_encode")
        _encoder_ctl = <encoder_ctl_t>_symbol(library, b"opus_encoder_ctl")
        _encoder_destroy = <destroy_t>_symbol(library, b"opus_encoder_destroy")
        _decoder_create = <decoder_create_t>_symbol(library, b"opus_decoder_create")
        _decode = <decode_t>_symbol(library, b"opus_decode")
        _decoder_destroy = <destroy_t>_symbol(library, b"opus_decoder_destroy")
        _strerror = <strerror_t>_symbol(library, b"opus_strerror")
        _version = <version_t>_symbol(library, b"opus_get_version_string")
    except OSError:
        dlclose(library)
        raise
    _library = library
    _loaded_from = path
    return version()


def is_loaded() -> bool:
    return _library != NULL


def loaded_from():
    """The path load_library opened, or None."""
    return _loaded_from


def version() -> str:
    if _library == NULL:
        raise OpusError("libopus is not loaded (mediacore.opus_library.load_libopus loads it)", OPUS_NOT_LOADED)
    return (<bytes>_version()).decode()


def error_text(int code) -> str:
    if code == OPUS_NOT_LOADED:
        return "libopus is not loaded (mediacore.opus_library.load_libopus loads it)"
    if _library == NULL:
        return f"libopus error {code}"
    return (<bytes>_strerror(code)).decode()


cdef int opus_enc_init(OpusEnc* enc, int rate, int channels, int bitrate, int application) noexcept nogil:
    enc.st = NULL
    if _library == NULL:
        return OPUS_NOT_LOADED
    cdef int error = OPUS_OK
    cdef void* st = _encoder_create(rate, channels, application, &error)
    if st == NULL:
        return error if error < 0 else OPUS_ALLOC_FAIL
    enc.st = st
    enc.rate = rate
    enc.channels = channels
    error = _encoder_ctl(st, OPUS_SET_BITRATE_REQUEST, <int32_t>bitrate)
    if error < 0:
        opus_enc_free(enc)
    return error


cdef int opus_enc_set(OpusEnc* enc, int request, int value) noexcept nogil:
    if enc.st == NULL:
        return OPUS_INVALID_STATE
    # opus_encoder_ctl is variadic; the SET requests read exactly one opus_int32.
    return _encoder_ctl(enc.st, request, <int32_t>value)


cdef int opus_enc_lookahead(OpusEnc* enc) noexcept nogil:
    if enc.st == NULL:
        return OPUS_INVALID_STATE
    cdef int32_t value = 0
    cdef int error = _encoder_ctl(enc.st, OPUS_GET_LOOKAHEAD_REQUEST, &value)
    return error if error < 0 else value


cdef void opus_enc_free(OpusEnc* enc) noexcept nogil:
    if enc.st != NULL:
        _encoder_destroy(enc.st)
        enc.st = NULL


cdef int opus_enc_frame(OpusEnc* enc, const int16_t* pcm, int n, uint8_t* out, int cap) noexcept nogil:
    if enc.st == NULL:
        return OPUS_INVALID_STATE
    return _encode(enc.st, pcm, n, out, cap)


cdef int opus_dec_init(OpusDec* dec, int rate, int channels) noexcept nogil:
    dec.st = NULL
    if _library == NULL:
        return OPUS_NOT_LOADED
    cdef int error = OPUS_OK
    cdef void* st = _decoder_create(rate, channels, &error)
    if st == NULL:
        return error if error < 0 else OPUS_ALLOC_FAIL
    dec.st = st
    dec.rate = rate
    dec.channels = channels
    dec.last_frame = rate // 50    # until a packet says otherwise, conceal 20 ms (the usual ptime)
    return OPUS_OK


cdef void opus_dec_free(OpusDec* dec) noexcept nogil:
    if dec.st != NULL:
        _decoder_destroy(dec.st)
        dec.st = NULL


cdef int opus_dec_frame(OpusDec* dec, const uint8_t* data, int len, int16_t* out, int cap) noexcept nogil:
    if dec.st == NULL:
        return OPUS_INVALID_STATE
    if len < 0:
        return OPUS_BAD_ARG
    cdef int room = cap // dec.channels
    if len == 0:
        # Packet loss concealment: opus_decode with no data extrapolates frame_size samples,
        # which must be a multiple of 2.5 ms; the last packet's duration is.
        if room < dec.last_frame:
            return OPUS_BUFFER_TOO_SMALL
        return _decode(dec.st, NULL, 0, out, dec.last_frame, 0)
    cdef int samples = _decode(dec.st, data, len, out, room, 0)
    if samples > 0:
        dec.last_frame = samples
    return samples


cdef int opus_dec_fec(OpusDec* dec, const uint8_t* data, int len, int16_t* out, int cap) noexcept nogil:
    if dec.st == NULL:
        return OPUS_INVALID_STATE
    if len <= 0:
        return OPUS_BAD_ARG
    if cap // dec.channels < dec.last_frame:
        return OPUS_BUFFER_TOO_SMALL
    # With decode_fec set, frame_size is the length of the lost packet being recovered.
    return _decode(dec.st, data, len, out, dec.last_frame, 1)


cdef _check(int result):
    if result < 0:
        raise OpusError(f"opus: {error_text(result)}", result)
    return result


def _pcm(object pcm, int channels):
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise TypeError("Opus takes a one-dimensional int16 numpy array (interleaved when stereo)")
    if pcm.shape[0] % channels:
        raise ValueError(f"{pcm.shape[0]} samples do not split into {channels} channels")
    return np.ascontiguousarray(pcm)


cdef class OpusEncoder:
    """One stream's Opus encoder: `encode` takes one frame (2.5 to 60 ms) of int16 PCM and returns
    one packet (an RTP payload, RFC 7587)."""

    cdef OpusEnc enc

    def __init__(self, int rate=48000, int channels=1, int bitrate=32000, int complexity=5,
                 bint fec=False, int packet_loss_pct=0, bint dtx=False, str application="voip"):
        if application not in ("voip", "audio"):
            raise ValueError(f"application is 'voip' or 'audio', not {application!r}")
        opus_enc_free(&self.enc)
        _check(opus_enc_init(&self.enc, rate, channels, bitrate,
                             OPUS_APPLICATION_VOIP if application == "voip" else OPUS_APPLICATION_AUDIO))
        _check(opus_enc_set(&self.enc, OPUS_SET_COMPLEXITY_REQUEST, complexity))
        _check(opus_enc_set(&self.enc, OPUS_SET_INBAND_FEC_REQUEST, 1 if fec else 0))
        _check(opus_enc_set(&self.enc, OPUS_SET_PACKET_LOSS_PERC_REQUEST, packet_loss_pct))
        _check(opus_enc_set(&self.enc, OPUS_SET_DTX_REQUEST, 1 if dtx else 0))

    def __dealloc__(self):
        opus_enc_free(&self.enc)

    @property
    def rate(self) -> int:
        return self.enc.rate

    @property
    def channels(self) -> int:
        return self.enc.channels

    @property
    def lookahead(self) -> int:
        """Samples per channel the encoder delays the signal by."""
        return _check(opus_enc_lookahead(&self.enc))

    def set_bitrate(self, int bitrate) -> None:
        _check(opus_enc_set(&self.enc, OPUS_SET_BITRATE_REQUEST, bitrate))

    def encode(self, pcm) -> bytes:
        cdef const int16_t[::1] src = _pcm(pcm, self.enc.channels)
        if src.shape[0] == 0:
            raise ValueError("an Opus frame needs samples")
        cdef int n = <int>(src.shape[0] // self.enc.channels)
        cdef uint8_t buffer[OPUS_MAX_PACKET]
        cdef int size
        with nogil:
            size = opus_enc_frame(&self.enc, &src[0], n, buffer, OPUS_MAX_PACKET)
        _check(size)
        return PyBytes_FromStringAndSize(<char*>buffer, size)


cdef class OpusDecoder:
    """One stream's Opus decoder: `decode(packet)` returns the int16 samples it carries;
    `decode(None)` (or b"") conceals a lost packet, `decode_fec(next_packet)` recovers it."""

    cdef OpusDec dec

    def __init__(self, int rate=48000, int channels=1):
        opus_dec_free(&self.dec)
        _check(opus_dec_init(&self.dec, rate, channels))

    def __dealloc__(self):
        opus_dec_free(&self.dec)

    @property
    def rate(self) -> int:
        return self.dec.rate

    @property
    def channels(self) -> int:
        return self.dec.channels

    def decode(self, packet=None) -> np.ndarray:
        return self._run(packet, False)

    def decode_fec(self, packet) -> np.ndarray:
        return self._run(packet, True)

    def _run(self, packet, bint fec):
        cdef const uint8_t[::1] data
        cdef const uint8_t* ptr = NULL
        cdef int length = 0
        if packet is not None:
            data = packet
            if data.shape[0] > OPUS_MAX_PACKET:
                raise OpusError(f"an Opus packet is at most {OPUS_MAX_PACKET} bytes", OPUS_INVALID_PACKET)
            length = <int>data.shape[0]
            if length:
                ptr = &data[0]
        # 120 ms, the longest a packet can carry (RFC 6716 §3.2.5).
        cdef int cap = self.dec.rate * 120 // 1000 * self.dec.channels
        out = np.empty(cap, dtype=np.int16)
        cdef int16_t[::1] dst = out
        cdef int samples
        with nogil:
            if fec:
                samples = opus_dec_fec(&self.dec, ptr, length, &dst[0], cap)
            else:
                samples = opus_dec_frame(&self.dec, ptr, length, &dst[0], cap)
        _check(samples)
        return out[: samples * self.dec.channels].copy()
