# Opus (RFC 6716) through libopus, loaded at run time with dlopen(3): PyAV's wheel carries a
# libopus, so nothing has to be installed, and nothing links against it at build time.
# mediacore.opus_library finds the file and calls native.opus.load_library(path) once; until
# then every init function below returns OPUS_NOT_LOADED.
#
# Encoder and decoder states belong to one stream each; init/free may run without the GIL (they
# call malloc/free inside libopus), the per-frame calls always do.

from libc.stdint cimport int16_t, uint8_t

cdef enum:
    # libopus error codes (opus_defines.h), and ours for "load_library was not called".
    OPUS_OK = 0
    OPUS_BAD_ARG = -1
    OPUS_BUFFER_TOO_SMALL = -2
    OPUS_INTERNAL_ERROR = -3
    OPUS_INVALID_PACKET = -4
    OPUS_UNIMPLEMENTED = -5
    OPUS_INVALID_STATE = -6
    OPUS_ALLOC_FAIL = -7
    OPUS_NOT_LOADED = -100
    # opus_encoder_create applications.
    OPUS_APPLICATION_VOIP = 2048
    OPUS_APPLICATION_AUDIO = 2049
    # opus_encoder_ctl requests that take one opus_int32 argument.
    OPUS_SET_BITRATE_REQUEST = 4002
    OPUS_SET_COMPLEXITY_REQUEST = 4010
    OPUS_SET_INBAND_FEC_REQUEST = 4012
    OPUS_SET_PACKET_LOSS_PERC_REQUEST = 4014
    OPUS_SET_DTX_REQUEST = 4016
    # ...and one that takes an opus_int32 pointer.
    OPUS_GET_LOOKAHEAD_REQUEST = 4027
    # A packet is at most 1275 bytes a frame; 4000 is libopus's own advice for a buffer.
    OPUS_MAX_PACKET = 4000

cdef struct OpusEnc:
    void* st                # OpusEncoder* inside libopus
    int rate                # 8000, 12000, 16000, 24000 or 48000
    int channels            # 1 or 2

cdef struct OpusDec:
    void* st                # OpusDecoder* inside libopus
    int rate
    int channels
    int last_frame          # samples per channel of the last packet: the length of a concealed frame

# 0, or a negative error (bad rate/channels/bitrate, OPUS_NOT_LOADED). application is
# OPUS_APPLICATION_VOIP or OPUS_APPLICATION_AUDIO.
cdef int opus_enc_init(OpusEnc* enc, int rate, int channels, int bitrate, int application) noexcept nogil
# Set one integer encoder parameter (the OPUS_SET_*_REQUEST above); 0 or a negative error.
cdef int opus_enc_set(OpusEnc* enc, int request, int value) noexcept nogil
# Samples per channel the encoder looks ahead (its algorithmic delay), or a negative error.
cdef int opus_enc_lookahead(OpusEnc* enc) noexcept nogil
cdef void opus_enc_free(OpusEnc* enc) noexcept nogil
# Encode one frame of n samples per channel (interleaved; n = 2.5, 5, 10, 20, 40 or 60 ms) into
# out[0:cap]; returns the packet length or a negative error. With DTX on, a packet of 2 bytes or
# less means "silence, send nothing".
cdef int opus_enc_frame(OpusEnc* enc, const int16_t* pcm, int n, uint8_t* out, int cap) noexcept nogil

cdef int opus_dec_init(OpusDec* dec, int rate, int channels) noexcept nogil
cdef void opus_dec_free(OpusDec* dec) noexcept nogil
# Decode one packet into out (room for cap int16 values, interleaved); returns samples per channel
# or a negative error (OPUS_INVALID_PACKET for a corrupted one). len 0 conceals one lost packet
# (as long as the last one received).
cdef int opus_dec_frame(OpusDec* dec, const uint8_t* data, int len, int16_t* out, int cap) noexcept nogil
# Recover the lost packet before this one from this one's in-band FEC (LBRR) data, or conceal it
# when the packet carries none; returns samples per channel or a negative error.
cdef int opus_dec_fec(OpusDec* dec, const uint8_t* data, int len, int16_t* out, int cap) noexcept nogil
