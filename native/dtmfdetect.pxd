# In-band DTMF receiver (ITU-T Q.23 frequencies, Q.24 acceptance checks) for trunks that send
# key presses as tones in the audio instead of RFC 4733 events.
#
# The engine keeps one DtmfDetector per stream, calls dtmf_detector_init once, then feeds every
# decoded 20 ms frame to dtmf_detector_feed without the GIL. Nothing here allocates.

from libc.stdint cimport int16_t, int64_t

cdef enum:
    # 12.75 ms of audio (102 samples at 8 kHz, 204 at 16 kHz): long enough to tell neighbouring
    # DTMF frequencies apart (their spacing is at least 73 Hz), short enough that a 40 ms tone
    # always covers two whole blocks.
    DTMF_MAX_BLOCK = 204
    # Digits recognised but not yet returned (more than one can start inside one long buffer).
    DTMF_QUEUE = 8

cdef struct DtmfDetector:
    int rate                       # 8000 or 16000
    int block                      # samples per analysis block
    double omega[8]                # the 8 nominal frequencies in radians per sample (rows, then columns)
    double coef[8]                 # Goertzel coefficients 2 cos(omega)
    double min_power               # mean-square floor for each of the two tones
    double buf[DTMF_MAX_BLOCK]     # the block being filled
    int fill
    int last_hit                   # what the previous block showed (digit character or 0)
    int run                        # consecutive blocks that showed last_hit
    int held                       # digit of the press in progress, 0 when none
    int misses                     # consecutive blocks without the held digit
    int64_t duration               # samples the press in progress has lasted
    int64_t last_duration          # samples the last finished press lasted
    char queue[DTMF_QUEUE]
    int queue_head
    int queue_len

# 0 on success, -1 for a rate other than 8000 or 16000 Hz.
cdef int dtmf_detector_init(DtmfDetector* d, int rate) noexcept nogil
# Forget any press in progress and partial block (same rate).
cdef void dtmf_detector_reset(DtmfDetector* d) noexcept nogil
# Feed `n` samples; returns a digit character ('0'-'9', '*', '#', 'A'-'D') once per key press, when
# the press is recognised, else 0. Presses recognised but not yet returned come out of later
# calls first (call with n = 0 to drain them).
cdef int dtmf_detector_feed(DtmfDetector* d, const int16_t* pcm, int n) noexcept nogil
# The digit being held now, or 0.
cdef int dtmf_detector_held(const DtmfDetector* d) noexcept nogil
# Samples the press in progress has lasted so far, or (when none is held) the last press lasted.
cdef int64_t dtmf_detector_duration(const DtmfDetector* d) noexcept nogil
