# Streaming sample-rate conversion between the rates the media engine meets: 8 kHz (G.711),
# 16 kHz (G.722, L16 wideband), 24 kHz and 48 kHz (Opus, WebRTC).
#
# One ResampleState per stream and direction. resample_init designs the filter (with the GIL,
# numpy, once per stream); resample_process then runs without the GIL on every 20 ms frame,
# keeping the tail of the input between calls so frame boundaries are seamless.

from libc.stdint cimport int16_t

cdef enum:
    # Taps over all branches, each padded to a multiple of 8 (576 for 8 -> 48 kHz, the longest).
    RESAMPLE_MAX_TAPS = 576
    # Input samples converted per inner pass; longer inputs are taken in passes.
    RESAMPLE_CHUNK = 480

cdef struct ResampleState:
    int in_rate
    int out_rate
    int up                  # L: the conversion is in_rate * L / M
    int down                # M
    int phase_taps          # taps per polyphase branch (P)
    int delay               # group delay in output samples (the filter is linear phase)
    int t_next              # next output's time on the L * in_rate grid, from the next input sample
    # Branch p holds taps p, p + L, p + 2L, ... of the prototype, time-reversed and scaled by L,
    # at [p * P, p * P + P).
    float taps[RESAMPLE_MAX_TAPS]
    # The last P - 1 input samples, then the pass being converted.
    float work[RESAMPLE_MAX_TAPS + RESAMPLE_CHUNK]

# Design the filter for in_rate -> out_rate (each 8000, 16000, 24000 or 48000) and clear the
# history. Needs the GIL; raises ValueError for other rates.
cdef int resample_init(ResampleState* st, int in_rate, int out_rate) except -1
# Clear the history (a new talk spurt, a new call); the filter is kept.
cdef void resample_reset(ResampleState* st) noexcept nogil
# How many samples resample_process will write for the next `n` input samples.
cdef int resample_output_count(const ResampleState* st, int n) noexcept nogil
# Convert `n` input samples; writes resample_output_count(st, n) samples to `out` and returns that
# count, or returns -1 (and changes nothing) when `cap` is smaller.
cdef int resample_process(ResampleState* st, const int16_t* pcm, int n, int16_t* out, int cap) noexcept nogil
