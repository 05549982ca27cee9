# cython: language_level=3
"""The codec slot: one RTP payload to bus-rate PCM and back, for every codec the engine speaks.

- G.711 µ-law and A-law (RFC 3551 §4.5.14): one octet per 8 kHz sample, table-driven kernels
  (native.g711), no state.
- L16 (RFC 3551 §4.5.11): 16-bit signed samples in network (big-endian) order, mono, at an RTP
  clock of 8000, 16000 or 48000 Hz. At the bus rate it is a byte swap; otherwise the audio is
  resampled to and from the bus with native.resample, one filter state per direction.
- Opus (RFC 7587): the RTP clock is always 48000 (§4.1) whatever the audio's sampling rate,
  one Opus packet per RTP payload. libopus (native.opus) encodes from and decodes to the bus rate
  itself: RFC 6716 §2 lets a decoder output any of 8-48 kHz whatever bandwidth was coded, and it
  then synthesises nothing above the output's Nyquist frequency (no aliasing, no resampler).
  Measured here per 20 ms frame: encoding at 8 kHz about 70 µs, decoding about 10 µs, where
  resampling 8 <-> 48 kHz with native.resample would add about 75 µs in each direction. The encoder
  is VoIP, VBR around OPUS_BITRATE, in-band FEC and DTX off (the RFC 7587 §6.1 defaults when
  the SDP says nothing), with its bandwidth capped to what the bus carries (narrowband at 8 kHz).

The L16 48/16 kHz <-> 8 kHz filters are at least 70 dB down from 4 kHz on (native/resample.pyx),
so a tone above the bus's Nyquist frequency is removed, not folded into the speech band.
"""

from libc.stdint cimport int16_t, uint8_t
from libc.stdlib cimport calloc, free

from native.bus cimport BUS_RATE, frame_decoder, frame_encoder
from native.g711 cimport alaw_decode_buf, alaw_encode_buf, ulaw_decode_buf, ulaw_encode_buf
from native.medialoop cimport CODEC_L16, CODEC_OPUS, CODEC_PCMA, CODEC_PCMU
from native.opus cimport (
    OPUS_APPLICATION_VOIP,
    OPUS_SET_COMPLEXITY_REQUEST,
    OPUS_SET_DTX_REQUEST,
    OPUS_SET_INBAND_FEC_REQUEST,
    opus_dec_frame,
    opus_dec_free,
    opus_dec_init,
    opus_enc_free,
    opus_enc_frame,
    opus_enc_init,
    opus_enc_set,
)
from native.resample cimport resample_init, resample_process, resample_reset

from native import opus as _opus

cdef extern from *:
    int atomic_add_int "__atomic_add_fetch"(int* ptr, int value, int memorder) nogil
    int atomic_load_int "__atomic_load_n"(int* ptr, int memorder) nogil
    int __ATOMIC_SEQ_CST

cdef enum:
    OPUS_RATE = 48000
    # opus_defines.h requests and values the encoder setup uses beyond native/opus.pxd's.
    OPUS_SET_MAX_BANDWIDTH_REQUEST = 4004
    OPUS_SET_SIGNAL_REQUEST = 4024
    OPUS_SIGNAL_VOICE = 3001
    OPUS_BANDWIDTH_NARROWBAND = 1101       # 4 kHz audio bandwidth
    OPUS_BANDWIDTH_WIDEBAND = 1103         # 8 kHz
    OPUS_BANDWIDTH_FULLBAND = 1105

L16_RATES = (8000, 16000, 48000)

# States alive (allocated and not yet freed), for leak checks.
cdef int _live = 0


def live_states() -> int:
    """How many codec states exist now (each Opus or resampled-L16 endpoint holds one)."""
    return atomic_load_int(&_live, __ATOMIC_SEQ_CST)


# --- G.711 ---------------------------------------------------------------------------------------

cdef Py_ssize_t _ulaw_decode(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    if n > max_out:
        return -1
    ulaw_decode_buf(payload, out, n)       # G.711: one octet per sample
    return n


cdef Py_ssize_t _alaw_decode(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    if n > max_out:
        return -1
    alaw_decode_buf(payload, out, n)
    return n


cdef Py_ssize_t _ulaw_encode(void* state, const int16_t* pcm, Py_ssize_t n, uint8_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    if n > max_out:
        return -1
    ulaw_encode_buf(pcm, out, n)
    return n


cdef Py_ssize_t _alaw_encode(void* state, const int16_t* pcm, Py_ssize_t n, uint8_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    if n > max_out:
        return -1
    alaw_encode_buf(pcm, out, n)
    return n


# --- L16 -----------------------------------------------------------------------------------------

cdef inline void _from_network(const uint8_t* payload, int16_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        out[i] = <int16_t>((<int>payload[2 * i] << 8) | payload[2 * i + 1])


cdef inline void _to_network(const int16_t* pcm, uint8_t* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int v
    for i in range(n):
        v = pcm[i]
        out[2 * i] = <uint8_t>((v >> 8) & 0xFF)
        out[2 * i + 1] = <uint8_t>(v & 0xFF)


cdef inline Py_ssize_t _cap(Py_ssize_t max_out) noexcept nogil:
    """Samples an encoder may write to st.pcm for a payload of at most max_out samples."""
    return max_out if max_out < CODEC_PCM_MAX else CODEC_PCM_MAX


cdef Py_ssize_t _l16_decode_bus(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                                Py_ssize_t max_out) noexcept nogil:
    if n & 1 or n // 2 > max_out:
        return -1
    _from_network(payload, out, n // 2)
    return n // 2


cdef Py_ssize_t _l16_encode_bus(void* state, const int16_t* pcm, Py_ssize_t n, uint8_t* out,
                                Py_ssize_t max_out) noexcept nogil:
    if 2 * n > max_out:
        return -1
    _to_network(pcm, out, n)
    return 2 * n


cdef Py_ssize_t _l16_decode(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                            Py_ssize_t max_out) noexcept nogil:
    cdef CodecState* st = <CodecState*>state
    if n & 1 or n // 2 > CODEC_PCM_MAX:
        return -1
    _from_network(payload, st.pcm, n // 2)
    return resample_process(&st.to_bus, st.pcm, <int>(n // 2), out, <int>max_out)


cdef Py_ssize_t _l16_encode(void* state, const int16_t* pcm, Py_ssize_t n, uint8_t* out,
                            Py_ssize_t max_out) noexcept nogil:
    cdef CodecState* st = <CodecState*>state
    cdef int k = resample_process(&st.from_bus, pcm, <int>n, st.pcm, <int>_cap(max_out // 2))
    if k < 0:
        return -1
    _to_network(st.pcm, out, k)
    return 2 * k


# --- Opus ----------------------------------------------------------------------------------------

cdef Py_ssize_t _opus_decode(void* state, const uint8_t* payload, Py_ssize_t n, int16_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    cdef CodecState* st = <CodecState*>state
    if n <= 0:
        return -1                          # an empty payload is not an Opus packet (RFC 7587 §4.2)
    # Straight to the bus rate; a packet longer than the room left (over 60 ms) fails like a
    # corrupted one, and the jitter buffer conceals it.
    cdef int k = opus_dec_frame(&st.dec, payload, <int>n, out, <int>max_out)
    return k if k >= 0 else -1


cdef Py_ssize_t _opus_encode(void* state, const int16_t* pcm, Py_ssize_t n, uint8_t* out,
                             Py_ssize_t max_out) noexcept nogil:
    cdef CodecState* st = <CodecState*>state
    cdef int k = opus_enc_frame(&st.enc, pcm, <int>n, out, <int>max_out)
    return k if k >= 0 else -1


# --- the slot ------------------------------------------------------------------------------------

cdef bint codec_needs_state(int codec, int clock_rate) noexcept nogil:
    return codec == CODEC_OPUS or (codec == CODEC_L16 and clock_rate != BUS_RATE)


cdef void codec_functions(int codec, int clock_rate, frame_decoder* decode,
                          frame_encoder* encode) noexcept nogil:
    if codec == CODEC_PCMU:
        decode[0] = _ulaw_decode
        encode[0] = _ulaw_encode
    elif codec == CODEC_PCMA:
        decode[0] = _alaw_decode
        encode[0] = _alaw_encode
    elif codec == CODEC_L16 and clock_rate == BUS_RATE:
        decode[0] = _l16_decode_bus
        encode[0] = _l16_encode_bus
    elif codec == CODEC_L16:
        decode[0] = _l16_decode
        encode[0] = _l16_encode
    elif codec == CODEC_OPUS:
        decode[0] = _opus_decode
        encode[0] = _opus_encode
    else:
        decode[0] = NULL
        encode[0] = NULL


cdef int _opus_setup(CodecState* st) except -1:
    cdef int error = opus_enc_init(&st.enc, BUS_RATE, 1, OPUS_BITRATE, OPUS_APPLICATION_VOIP)
    cdef int bandwidth = (OPUS_BANDWIDTH_NARROWBAND if BUS_RATE <= 8000 else
                          OPUS_BANDWIDTH_WIDEBAND if BUS_RATE <= 16000 else OPUS_BANDWIDTH_FULLBAND)
    if error >= 0:
        error = opus_enc_set(&st.enc, OPUS_SET_COMPLEXITY_REQUEST, OPUS_COMPLEXITY)
    if error >= 0:
        error = opus_enc_set(&st.enc, OPUS_SET_INBAND_FEC_REQUEST, 0)
    if error >= 0:
        error = opus_enc_set(&st.enc, OPUS_SET_DTX_REQUEST, 0)
    if error >= 0:
        error = opus_enc_set(&st.enc, OPUS_SET_MAX_BANDWIDTH_REQUEST, bandwidth)
    if error >= 0:
        error = opus_enc_set(&st.enc, OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE)
    if error >= 0:
        error = opus_dec_init(&st.dec, BUS_RATE, 1)
    if error < 0:
        raise ValueError(f"cannot set up Opus: {_opus.error_text(error)}")
    return 0


cdef CodecState* codec_state_new(int codec, int clock_rate) except NULL:
    if codec == CODEC_OPUS and clock_rate != OPUS_RATE:
        raise ValueError(f"Opus has an RTP clock of 48000 Hz (RFC 7587 §4.1), not {clock_rate}")
    if codec == CODEC_L16 and clock_rate not in L16_RATES:
        raise ValueError(f"L16 runs at {', '.join(map(str, L16_RATES))} Hz, not {clock_rate}")
    if not codec_needs_state(codec, clock_rate):
        raise ValueError(f"codec {codec} at {clock_rate} Hz keeps no state")
    cdef CodecState* st = <CodecState*>calloc(1, sizeof(CodecState))
    if st == NULL:
        raise MemoryError()
    st.codec = codec
    st.rate = clock_rate
    try:
        if codec == CODEC_OPUS:
            _opus_setup(st)
        else:
            resample_init(&st.to_bus, clock_rate, BUS_RATE)
            resample_init(&st.from_bus, BUS_RATE, clock_rate)
    except BaseException:
        opus_enc_free(&st.enc)
        opus_dec_free(&st.dec)
        free(st)
        raise
    atomic_add_int(&_live, 1, __ATOMIC_SEQ_CST)
    return st


cdef void codec_state_free(CodecState* st) noexcept nogil:
    if st == NULL:
        return
    opus_enc_free(&st.enc)                 # no-ops for L16 (the states are NULL)
    opus_dec_free(&st.dec)
    free(st)
    atomic_add_int(&_live, -1, __ATOMIC_SEQ_CST)


cdef void codec_state_reset(CodecState* st) noexcept nogil:
    # Only the receiving side: the sending side may be in the middle of a stream.
    if st != NULL and st.codec == CODEC_L16:
        resample_reset(&st.to_bus)
