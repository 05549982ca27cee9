# The codec slot's implementations (codecslot.pyx): what a frame-mode endpoint calls through
# Endpoint.decode/encode (bus.pxd) to turn one RTP payload into bus-rate PCM and one bus frame
# into a payload. G.711 needs no state; L16 at another rate than the bus keeps one CodecState per
# endpoint with its resamplers (one per direction), Opus one with its encoder and decoder.

from libc.stdint cimport int16_t

from native.bus cimport frame_decoder, frame_encoder
from native.opus cimport OpusDec, OpusEnc
from native.resample cimport ResampleState

cdef enum:
    # L16 samples one payload holds at most (MAX_FRAME_PAYLOAD: 20 ms at 48 kHz), and the most
    # one bus frame becomes at 48 kHz.
    CODEC_PCM_MAX = 960
    # Opus encoder settings (RFC 7587 §3.1.1: 8-12 kbit/s is enough for narrowband speech; more
    # keeps DTMF tones and music on hold clean). Complexity 5: see native/opus.pyx.
    OPUS_BITRATE = 20000
    OPUS_COMPLEXITY = 5

cdef struct CodecState:
    int codec                   # CODEC_L16 or CODEC_OPUS (medialoop.pxd)
    int rate                    # its RTP clock rate
    ResampleState to_bus        # L16 decoding: rate -> BUS_RATE
    ResampleState from_bus      # L16 encoding: BUS_RATE -> rate
    OpusEnc enc                 # Opus, at BUS_RATE (libopus converts internally)
    OpusDec dec
    int16_t pcm[CODEC_PCM_MAX]  # L16: one payload's audio at `rate`

# Whether codec at clock_rate keeps a CodecState (L16 off the bus rate, Opus).
cdef bint codec_needs_state(int codec, int clock_rate) noexcept nogil
# A new state for codec at clock_rate. Needs the GIL (the resampling filters are designed with
# numpy); raises ValueError for a combination the engine does not support or when libopus is not
# loaded, MemoryError when out of memory.
cdef CodecState* codec_state_new(int codec, int clock_rate) except NULL
# Free a state (NULL is fine); runs on the engine thread.
cdef void codec_state_free(CodecState* st) noexcept nogil
# Forget the received audio's history (the input starts again after a relay); NULL is fine.
cdef void codec_state_reset(CodecState* st) noexcept nogil
# The decoder and encoder for codec at clock_rate, NULL for CODEC_BUS or an unknown codec.
cdef void codec_functions(int codec, int clock_rate, frame_decoder* decode,
                          frame_encoder* encode) noexcept nogil
