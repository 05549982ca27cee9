# cython: language_level=3
"""In-band DTMF detection: the ITU-T Q.23 tone pairs, accepted by the checks of ITU-T Q.24.

Audio is cut into blocks of 12.75 ms. Each block goes through cheap checks first, then costly ones
only for the few blocks that look like a tone pair:

1. Goertzel energy at the 8 nominal frequencies: the strongest row and the strongest column must
   each stand 6 dB above the other three of their group, and reach the level floor.
2. Frequency: the pair is fitted (least squares, both tones at once, so neither leaks into the
   other's estimate) on each half of the block; the phase turned between the halves gives each
   tone's true frequency. Q.24 wants +-1.5 % accepted and +-3.5 % rejected: the limit is 2.5 %.
3. The pair is fitted again over the whole block at the measured frequencies. What the fit leaves
   (the residual) is everything that is not the two tones: noise, and the other harmonics of a
   voice or an instrument. The tones must dominate it, each must reach the level floor, and the
   twist must be within 8 dB (row louder, the usual effect of line loss) or 4 dB (column louder).
4. Talk-off: voiced speech and music have harmonics, DTMF has none, so the residual at twice each
   tone's frequency must stay well below the tone.

A key press is recognised after two consecutive blocks show the same digit (25.5 ms of clean tone;
a 40 ms tone always covers two whole blocks) and ends after three blocks without it: a 40 ms pause
always spoils three blocks (two whole ones and more than half of a third), while a break of 10 ms
or less, which a receiver must bridge, spoils at most two.
"""

from libc.math cimport M_PI, atan2, cos, pow, remainder, sin, sqrt
from libc.stdint cimport int16_t, int64_t
from libc.string cimport memset

import numpy as np

# Q.23: rows (low group) and columns (high group), Hz.
cdef double[8] FREQUENCIES = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0]
cdef const char* KEYPAD = b"123A456B789C*0#D"

# 0 dBm0 is a sine of peak 22706 on the 16-bit scale (G.711 full scale is +3.17 dBm0).
cdef double DBM0_POWER = 22706.0 * 22706.0 / 2.0
# Each tone must reach -36 dBm0: 6 dB below the -30 dBm0 a trunk may deliver after line loss.
cdef double MIN_TONE_DB = -36.0
# Twist limits as power ratios: 8 dB with the row louder, 4 dB with the column louder.
cdef double NORMAL_TWIST = 6.309573444801933
cdef double REVERSE_TWIST = 2.51188643150958
# The winning row (column) must be 6 dB above every other row (column) bin.
cdef double DOMINANCE = 3.981071705534973
# Q.24: within 1.5 % of nominal must be accepted, beyond 3.5 % rejected; the limit is midway, where
# the frequency estimate's noise (about 2 Hz at 10 dB SNR) cannot push either case across.
cdef double FREQUENCY_TOLERANCE = 0.025
# The two tones together must be 6 dB above everything else in the block.
cdef double TONES_OVER_RESIDUAL = 4.0
# Each tone's second harmonic must be 15 dB below it.
cdef double HARMONIC_LIMIT = 0.031622776601683794

cdef int ONSET_BLOCKS = 2
cdef int RELEASE_BLOCKS = 3


cdef int dtmf_detector_init(DtmfDetector* d, int rate) noexcept nogil:
    if rate != 8000 and rate != 16000:
        return -1
    memset(d, 0, sizeof(DtmfDetector))
    d.rate = rate
    d.block = 102 * (rate // 8000)
    cdef int k
    for k in range(8):
        d.omega[k] = 2.0 * M_PI * FREQUENCIES[k] / rate
        d.coef[k] = 2.0 * cos(d.omega[k])
    d.min_power = DBM0_POWER * pow(10.0, MIN_TONE_DB / 10.0)
    return 0


cdef void dtmf_detector_reset(DtmfDetector* d) noexcept nogil:
    dtmf_detector_init(d, d.rate)


cdef int dtmf_detector_held(const DtmfDetector* d) noexcept nogil:
    return d.held


cdef int64_t dtmf_detector_duration(const DtmfDetector* d) noexcept nogil:
    return d.duration if d.held else d.last_duration


cdef int _solve4(double* g, double* h, double* theta) noexcept nogil:
    """Solve the 4x4 normal equations G theta = h (G symmetric positive definite, row-major) by
    Cholesky; returns -1 when G is singular (too few samples to tell the tones apart)."""
    cdef double l[16]
    cdef double y[4]
    cdef double acc
    cdef int i, j, k
    memset(l, 0, sizeof(l))
    for i in range(4):
        for j in range(i + 1):
            acc = g[i * 4 + j]
            for k in range(j):
                acc -= l[i * 4 + k] * l[j * 4 + k]
            if i == j:
                if acc <= 1e-9 * (g[i * 4 + i] + 1.0):
                    return -1
                l[i * 4 + i] = sqrt(acc)
            else:
                l[i * 4 + j] = acc / l[j * 4 + j]
    for i in range(4):
        acc = h[i]
        for k in range(i):
            acc -= l[i * 4 + k] * y[k]
        y[i] = acc / l[i * 4 + i]
    for i in range(3, -1, -1):
        acc = y[i]
        for k in range(i + 1, 4):
            acc -= l[k * 4 + i] * theta[k]
        theta[i] = acc / l[i * 4 + i]
    return 0


cdef double _fit_pair(const double* x, int n, double w1, double w2, double* theta) noexcept nogil:
    """Least-squares fit of x[i] ~ theta0 cos(w1 i) + theta1 sin(w1 i) + theta2 cos(w2 i)
    + theta3 sin(w2 i); returns the residual energy, or -1 when the fit is not determined."""
    cdef double rc1 = cos(w1), rs1 = sin(w1), rc2 = cos(w2), rs2 = sin(w2)
    cdef double c1 = 1.0, s1 = 0.0, c2 = 1.0, s2 = 0.0, t, v
    # The 10 distinct entries of the Gram matrix, the 4 projections, and the energy.
    cdef double g00 = 0.0, g01 = 0.0, g02 = 0.0, g03 = 0.0, g11 = 0.0
    cdef double g12 = 0.0, g13 = 0.0, g22 = 0.0, g23 = 0.0, g33 = 0.0
    cdef double h0 = 0.0, h1 = 0.0, h2 = 0.0, h3 = 0.0, xx = 0.0
    cdef int i
    for i in range(n):
        v = x[i]
        g00 += c1 * c1
        g01 += c1 * s1
        g02 += c1 * c2
        g03 += c1 * s2
        g11 += s1 * s1
        g12 += s1 * c2
        g13 += s1 * s2
        g22 += c2 * c2
        g23 += c2 * s2
        g33 += s2 * s2
        h0 += c1 * v
        h1 += s1 * v
        h2 += c2 * v
        h3 += s2 * v
        xx += v * v
        # The basis comes from rotating a unit phasor: two multiplies per step instead of sin/cos,
        # and over 204 steps the rounding drift stays far below the 16-bit noise floor.
        t = c1 * rc1 - s1 * rs1
        s1 = c1 * rs1 + s1 * rc1
        c1 = t
        t = c2 * rc2 - s2 * rs2
        s2 = c2 * rs2 + s2 * rc2
        c2 = t
    cdef double g[16]
    g[0], g[1], g[2], g[3] = g00, g01, g02, g03
    g[4], g[5], g[6], g[7] = g01, g11, g12, g13
    g[8], g[9], g[10], g[11] = g02, g12, g22, g23
    g[12], g[13], g[14], g[15] = g03, g13, g23, g33
    cdef double h[4]
    h[0], h[1], h[2], h[3] = h0, h1, h2, h3
    if _solve4(g, h, theta) < 0:
        return -1.0
    cdef double resid = xx - (theta[0] * h0 + theta[1] * h1 + theta[2] * h2 + theta[3] * h3)
    return resid if resid > 0.0 else 0.0


cdef void _residual_harmonics(const double* x, int n, double w1, double w2, const double* theta,
                              double* p1, double* p2) noexcept nogil:
    """Mean-square power at 2*w1 and 2*w2 of what the fit leaves (Goertzel on the residual)."""
    cdef double rc1 = cos(w1), rs1 = sin(w1), rc2 = cos(w2), rs2 = sin(w2)
    cdef double k1 = 2.0 * cos(2.0 * w1), k2 = 2.0 * cos(2.0 * w2)
    cdef double c1 = 1.0, s1 = 0.0, c2 = 1.0, s2 = 0.0, t, r
    cdef double a1 = 0.0, a2 = 0.0, b1 = 0.0, b2 = 0.0
    cdef int i
    for i in range(n):
        r = x[i] - (theta[0] * c1 + theta[1] * s1 + theta[2] * c2 + theta[3] * s2)
        t = r + k1 * a1 - a2
        a2 = a1
        a1 = t
        t = r + k2 * b1 - b2
        b2 = b1
        b1 = t
        t = c1 * rc1 - s1 * rs1
        s1 = c1 * rs1 + s1 * rc1
        c1 = t
        t = c2 * rc2 - s2 * rs2
        s2 = c2 * rs2 + s2 * rc2
        c2 = t
    cdef double scale = 2.0 / (<double>n * n)
    p1[0] = (a1 * a1 + a2 * a2 - k1 * a1 * a2) * scale
    p2[0] = (b1 * b1 + b2 * b2 - k2 * b1 * b2) * scale


cdef double _offset(const double* first, const double* second, double w0, int m) noexcept nogil:
    """Frequency offset (radians per sample) of a tone fitted at w0 on two consecutive halves of m
    samples each: the complex amplitude (cos - j sin coefficient) turns by (w0 + offset) * m."""
    cdef double re = second[0] * first[0] + second[1] * first[1]
    cdef double im = second[0] * first[1] - second[1] * first[0]
    return remainder(atan2(im, re) - w0 * m, 2.0 * M_PI) / m


cdef int _analyse(DtmfDetector* d) noexcept nogil:
    """The digit this block holds, or 0 (see the module docstring for the checks)."""
    cdef const double* x = d.buf
    cdef int n = d.block
    cdef double s1[8]
    cdef double s2[8]
    cdef double power[8]
    cdef double t
    cdef int i, k
    memset(s1, 0, sizeof(s1))
    memset(s2, 0, sizeof(s2))
    for i in range(n):
        for k in range(8):
            t = x[i] + d.coef[k] * s1[k] - s2[k]
            s2[k] = s1[k]
            s1[k] = t
    cdef double scale = 2.0 / (<double>n * n)
    for k in range(8):
        power[k] = (s1[k] * s1[k] + s2[k] * s2[k] - d.coef[k] * s1[k] * s2[k]) * scale

    # 1. One row and one column, each clearly the strongest of its group and not too weak (a tone
    #    1.5 % off frequency loses up to 1.5 dB in its bin, hence half the floor here).
    cdef int row = 0, col = 4
    for k in range(1, 4):
        if power[k] > power[row]:
            row = k
        if power[k + 4] > power[col]:
            col = k + 4
    if power[row] < 0.5 * d.min_power or power[col] < 0.5 * d.min_power:
        return 0
    for k in range(4):
        if k != row and power[k] * DOMINANCE > power[row]:
            return 0
        if k + 4 != col and power[k + 4] * DOMINANCE > power[col]:
            return 0

    # 2. True frequencies from the phase turned between the two halves of the block.
    cdef double first[4]
    cdef double second[4]
    cdef int m = n // 2
    cdef double wr = d.omega[row], wc = d.omega[col]
    if _fit_pair(x, m, wr, wc, first) < 0.0 or _fit_pair(x + m, m, wr, wc, second) < 0.0:
        return 0
    cdef double dr = _offset(first, second, wr, m)
    cdef double dc = _offset(first + 2, second + 2, wc, m)
    if abs(dr) > FREQUENCY_TOLERANCE * wr or abs(dc) > FREQUENCY_TOLERANCE * wc:
        return 0
    wr += dr
    wc += dc

    # 3. Level, twist and purity of the pair at the measured frequencies.
    cdef double theta[4]
    cdef double resid = _fit_pair(x, n, wr, wc, theta)
    if resid < 0.0:
        return 0
    cdef double prow = 0.5 * (theta[0] * theta[0] + theta[1] * theta[1])
    cdef double pcol = 0.5 * (theta[2] * theta[2] + theta[3] * theta[3])
    if prow < d.min_power or pcol < d.min_power:
        return 0
    if prow > pcol * NORMAL_TWIST or pcol > prow * REVERSE_TWIST:
        return 0
    if prow + pcol < TONES_OVER_RESIDUAL * resid / n:
        return 0

    # 4. Talk-off: no second harmonics.
    cdef double hrow, hcol
    _residual_harmonics(x, n, wr, wc, theta, &hrow, &hcol)
    if hrow > HARMONIC_LIMIT * prow or hcol > HARMONIC_LIMIT * pcol:
        return 0
    return KEYPAD[row * 4 + (col - 4)]


cdef void _push(DtmfDetector* d, int digit) noexcept nogil:
    if d.queue_len == DTMF_QUEUE:
        # Nobody drained the queue for eight presses: keep the newest.
        d.queue_head = (d.queue_head + 1) % DTMF_QUEUE
        d.queue_len -= 1
    d.queue[(d.queue_head + d.queue_len) % DTMF_QUEUE] = <char>digit
    d.queue_len += 1


cdef void _decide(DtmfDetector* d, int hit) noexcept nogil:
    """Q.24 timing: a press starts after ONSET_BLOCKS equal blocks and ends after RELEASE_BLOCKS
    blocks without its digit; its duration runs from its first to its last block."""
    if hit == d.last_hit:
        d.run += 1
    else:
        d.last_hit = hit
        d.run = 1
    if d.held:
        if hit == d.held:
            d.duration += (d.misses + 1) * d.block
            d.misses = 0
        else:
            d.misses += 1
            if d.misses >= RELEASE_BLOCKS:
                d.last_duration = d.duration
                d.held = 0
                d.misses = 0
    if not d.held and hit and d.run >= ONSET_BLOCKS:
        d.held = hit
        d.misses = 0
        d.duration = <int64_t>d.run * d.block
        _push(d, hit)


cdef int dtmf_detector_feed(DtmfDetector* d, const int16_t* pcm, int n) noexcept nogil:
    cdef int i = 0, take, j
    while i < n:
        take = d.block - d.fill
        if take > n - i:
            take = n - i
        for j in range(take):
            d.buf[d.fill + j] = pcm[i + j]
        d.fill += take
        i += take
        if d.fill == d.block:
            d.fill = 0
            _decide(d, _analyse(d))
    if d.queue_len == 0:
        return 0
    cdef int digit = d.queue[d.queue_head]
    d.queue_head = (d.queue_head + 1) % DTMF_QUEUE
    d.queue_len -= 1
    return digit


cdef class InbandDtmfDetector:
    """Python face of the detector, for tests and for audio that does not pass through the engine.

    `feed` takes 16-bit mono PCM at the detector's rate in pieces of any length and returns the
    digits whose key press was recognised in it, each press once.
    """

    cdef DtmfDetector det

    def __init__(self, int rate=8000):
        if dtmf_detector_init(&self.det, rate) != 0:
            raise ValueError(f"in-band DTMF detection runs at 8000 or 16000 Hz, not {rate}")

    @property
    def rate(self) -> int:
        return self.det.rate

    @property
    def held(self):
        """The digit held now (str), or None."""
        return chr(self.det.held) if self.det.held else None

    @property
    def duration_ms(self) -> float:
        """How long the press in progress has lasted, or the last press lasted when none is held."""
        return dtmf_detector_duration(&self.det) * 1000.0 / self.det.rate

    def reset(self) -> None:
        dtmf_detector_reset(&self.det)

    def feed(self, pcm) -> list:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("feed takes a one-dimensional int16 numpy array")
        cdef const int16_t[::1] src = np.ascontiguousarray(pcm)
        cdef Py_ssize_t total = src.shape[0], done = 0
        cdef int step, digit
        digits = []
        # One block at a time: at most one press can start per block, so none waits in the queue.
        while done < total:
            step = <int>min(total - done, <Py_ssize_t>self.det.block)
            with nogil:
                digit = dtmf_detector_feed(&self.det, &src[done], step)
            if digit:
                digits.append(chr(digit))
            done += step
        digit = dtmf_detector_feed(&self.det, NULL, 0)
        while digit:
            digits.append(chr(digit))
            digit = dtmf_detector_feed(&self.det, NULL, 0)
        return digits
