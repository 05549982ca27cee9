# cython: language_level=3
"""Conference mixer: N-1 mixing with saturation, mute, deaf and whisper routes (see mixer.pxd), and
`Mixer`, a thin Python wrapper over it for tests and benchmarks with numpy frames.

Cost: one pass adds every openly heard member into an int32 sum, a second pass gives each member
that sum minus its own voice, saturated. That is 2 x N x n additions instead of N x N x n for the
naive per-listener sum; whispers, which are rare, are added only into their target's mix.
"""

from libc.errno cimport EBUSY, EINVAL, ENOENT
from libc.stdint cimport int16_t, int32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

import numpy as np


cdef inline int16_t _sat16(int32_t v) noexcept nogil:
    # Clip, never wrap: a wrapped sum turns a loud moment into full-scale noise of the other sign.
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return <int16_t>v


cdef Conference* mixer_new(int frame_samples) noexcept nogil:
    cdef Conference* conf
    cdef int k
    if frame_samples <= 0 or frame_samples > 48000:
        return NULL
    conf = <Conference*>calloc(1, sizeof(Conference))
    if conf == NULL:
        return NULL
    conf.frame_samples = frame_samples
    conf.total = <int32_t*>calloc(frame_samples, sizeof(int32_t))
    conf.scratch = <int32_t*>calloc(frame_samples, sizeof(int32_t))
    conf.out_block = <int16_t*>calloc(<size_t>frame_samples * MIXER_MAX_MEMBERS, sizeof(int16_t))
    if conf.total == NULL or conf.scratch == NULL or conf.out_block == NULL:
        mixer_free(conf)
        return NULL
    for k in range(MIXER_MAX_MEMBERS):
        conf.members[k].output = conf.out_block + <size_t>k * frame_samples
        conf.members[k].whisper_to = MIXER_NO_WHISPER
    return conf


cdef void mixer_free(Conference* conf) noexcept nogil:
    if conf == NULL:
        return
    free(conf.total)
    free(conf.scratch)
    free(conf.out_block)
    free(conf)


cdef inline MixMember* _member(Conference* conf, int slot) noexcept nogil:
    cdef MixMember* m
    if <unsigned int>slot >= MIXER_MAX_MEMBERS:
        return NULL
    m = conf.members + slot
    return m if m.active else NULL


cdef inline int _missing(int slot) noexcept nogil:
    return -EINVAL if slot < 0 or slot >= MIXER_MAX_MEMBERS else -ENOENT


cdef int mixer_join(Conference* conf, int slot) noexcept nogil:
    cdef MixMember* m
    if slot < 0 or slot >= MIXER_MAX_MEMBERS:
        return -EINVAL
    m = &conf.members[slot]
    if m.active:
        return -EBUSY
    m.active = 1
    m.input = NULL
    m.muted = 0
    m.deaf = 0
    m.whisper_to = MIXER_NO_WHISPER
    memset(m.output, 0, <size_t>conf.frame_samples * sizeof(int16_t))
    return 0


cdef int mixer_leave(Conference* conf, int slot) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    cdef int k
    if m == NULL:
        return _missing(slot)
    m.active = 0
    m.input = NULL
    # A whisper must never reach whoever takes the slot next: its senders fall back to listening
    # (muted) until they are routed again.
    for k in range(MIXER_MAX_MEMBERS):
        if conf.members[k].active and conf.members[k].whisper_to == slot:
            conf.members[k].whisper_to = MIXER_NO_WHISPER
            conf.members[k].muted = 1
    return 0


cdef int mixer_set_input(Conference* conf, int slot, const int16_t* frame) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    if m == NULL:
        return _missing(slot)
    m.input = frame
    return 0


cdef int mixer_set_muted(Conference* conf, int slot, int muted) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    if m == NULL:
        return _missing(slot)
    m.muted = 1 if muted else 0
    return 0


cdef int mixer_set_deaf(Conference* conf, int slot, int deaf) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    if m == NULL:
        return _missing(slot)
    m.deaf = 1 if deaf else 0
    return 0


cdef int mixer_set_whisper(Conference* conf, int slot, int target) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    if m == NULL:
        return _missing(slot)
    if target == slot or target < MIXER_NO_WHISPER or target >= MIXER_MAX_MEMBERS:
        return -EINVAL
    if target != MIXER_NO_WHISPER and not conf.members[target].active:
        return -ENOENT
    m.whisper_to = target
    return 0


cdef const int16_t* mixer_output(Conference* conf, int slot) noexcept nogil:
    cdef MixMember* m = _member(conf, slot)
    if m == NULL:
        return NULL
    return m.output


cdef inline bint _whispers_to(Conference* conf, MixMember* w, int target) noexcept nogil:
    return w.active and not w.muted and w.input != NULL and w.whisper_to == target


cdef int mixer_mix(Conference* conf, int n) noexcept nogil:
    cdef int k, w, i
    cdef int t
    cdef MixMember* m
    cdef const int16_t* src
    cdef int16_t* out
    cdef int32_t* total = conf.total
    cdef int32_t* acc = conf.scratch
    cdef bint contributes[MIXER_MAX_MEMBERS]
    cdef int whispered[MIXER_MAX_MEMBERS]
    if n <= 0 or n > conf.frame_samples:
        for k in range(MIXER_MAX_MEMBERS):
            conf.members[k].input = NULL
        return -EINVAL

    # Pass 1: the sum of every member heard by all, and who has whispers waiting.
    memset(total, 0, <size_t>n * sizeof(int32_t))
    memset(whispered, 0, sizeof(whispered))
    for k in range(MIXER_MAX_MEMBERS):
        m = &conf.members[k]
        contributes[k] = False
        if not m.active or m.muted or m.input == NULL:
            continue
        if m.whisper_to != MIXER_NO_WHISPER:
            t = m.whisper_to
            whispered[t] += 1
            continue
        contributes[k] = True
        src = m.input
        for i in range(n):
            total[i] += src[i]

    # Pass 2: each member hears the sum less its own voice (N-1), plus whispers meant for it.
    for k in range(MIXER_MAX_MEMBERS):
        m = &conf.members[k]
        if not m.active:
            continue
        out = m.output
        if m.deaf:
            memset(out, 0, <size_t>n * sizeof(int16_t))
            continue
        if whispered[k] == 0:
            if contributes[k]:
                src = m.input
                for i in range(n):
                    out[i] = _sat16(total[i] - src[i])
            else:
                for i in range(n):
                    out[i] = _sat16(total[i])
            continue
        if contributes[k]:
            src = m.input
            for i in range(n):
                acc[i] = total[i] - src[i]
        else:
            for i in range(n):
                acc[i] = total[i]
        for w in range(MIXER_MAX_MEMBERS):
            if w != k and _whispers_to(conf, &conf.members[w], k):
                src = conf.members[w].input
                for i in range(n):
                    acc[i] += src[i]
        for i in range(n):
            out[i] = _sat16(acc[i])

    # The frames were borrowed for this tick only.
    for k in range(MIXER_MAX_MEMBERS):
        conf.members[k].input = NULL
    return 0


cdef int _check(int rc, int slot) except -1:
    if rc == -EINVAL:
        raise ValueError(f"slot {slot}: out of range 0..{MIXER_MAX_MEMBERS - 1} or a bad route")
    if rc == -ENOENT:
        raise ValueError(f"slot {slot} (or its whisper target) is not a member")
    if rc == -EBUSY:
        raise ValueError(f"slot {slot} is already taken")
    return rc


cdef int _load(Mixer self, object frames, int n) except -1:
    cdef const int16_t[::1] view
    cdef int slot
    self._inputs.clear()
    for key, frame in frames.items():
        slot = key
        if frame is None:
            _check(mixer_set_input(self.conf, slot, NULL), slot)
            continue
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise TypeError(f"slot {slot}: a frame is a one-dimensional int16 numpy array")
        if frame.shape[0] != n:
            raise ValueError(f"slot {slot}: frame of {frame.shape[0]} samples, the tick is {n}")
        frame = np.ascontiguousarray(frame)
        view = frame
        _check(mixer_set_input(self.conf, slot, &view[0]), slot)
        self._inputs[slot] = frame
    return 0


cdef class Mixer:
    """A conference of up to 50 member slots mixing int16 numpy frames (tests, benches, Python legs).

    `mix({slot: frame_or_None})` runs one tick and returns each member's output frame (a copy).
    """

    def __cinit__(self, int frame_samples=160):
        self.conf = mixer_new(frame_samples)
        self._inputs = {}
        if self.conf == NULL:
            if frame_samples <= 0 or frame_samples > 48000:
                raise ValueError(f"frame length must be 1..48000 samples, got {frame_samples}")
            raise MemoryError("no memory for the conference")

    def __dealloc__(self):
        mixer_free(self.conf)
        self.conf = NULL

    @property
    def frame_samples(self) -> int:
        return self.conf.frame_samples

    @property
    def members(self) -> list:
        """The slots in use, ascending."""
        return [k for k in range(MIXER_MAX_MEMBERS) if self.conf.members[k].active]

    def join(self, int slot) -> None:
        _check(mixer_join(self.conf, slot), slot)

    def leave(self, int slot) -> None:
        _check(mixer_leave(self.conf, slot), slot)

    def set_muted(self, int slot, bint muted=True) -> None:
        _check(mixer_set_muted(self.conf, slot, muted), slot)

    def set_deaf(self, int slot, bint deaf=True) -> None:
        _check(mixer_set_deaf(self.conf, slot, deaf), slot)

    def set_whisper(self, int slot, target) -> None:
        """Route `slot`'s voice to `target` only; `None` makes it heard by all again."""
        _check(mixer_set_whisper(self.conf, slot, MIXER_NO_WHISPER if target is None else int(target)), slot)

    def route(self, int slot) -> tuple:
        """(muted, deaf, whisper target or None) of a member."""
        cdef MixMember* m = _member(self.conf, slot)
        if m == NULL:
            _check(_missing(slot), slot)
        return (bool(m.muted), bool(m.deaf), None if m.whisper_to == MIXER_NO_WHISPER else m.whisper_to)

    def mix(self, frames, n=None) -> dict:
        """One tick: `frames` maps slots to int16 frames of `n` samples (default frame_samples) or
        None; members not listed send nothing. Returns {slot: output frame} for every member."""
        cdef int count = self.conf.frame_samples if n is None else n
        cdef int rc, i
        cdef int16_t[::1] dst
        cdef const int16_t* src
        if count <= 0 or count > self.conf.frame_samples:
            raise ValueError(f"n must be 1..{self.conf.frame_samples}, got {count}")
        try:
            _load(self, frames, count)
        except BaseException:
            for k in range(MIXER_MAX_MEMBERS):
                self.conf.members[k].input = NULL
            raise
        with nogil:
            rc = mixer_mix(self.conf, count)
        self._inputs.clear()
        _check(rc, -1)
        out = {}
        for slot in self.members:
            arr = np.empty(count, dtype=np.int16)
            dst = arr
            src = mixer_output(self.conf, slot)
            for i in range(count):
                dst[i] = src[i]
            out[slot] = arr
        return out

    def run(self, frames, int ticks) -> None:
        """`ticks` ticks on the same input frames with the GIL released (for timing the kernel)."""
        cdef int count = self.conf.frame_samples
        cdef const int16_t* ptrs[MIXER_MAX_MEMBERS]
        cdef int t, k
        cdef const int16_t[::1] view
        for k in range(MIXER_MAX_MEMBERS):
            ptrs[k] = NULL
        kept = []
        for key, frame in frames.items():
            k = key
            if not 0 <= k < MIXER_MAX_MEMBERS or not self.conf.members[k].active:
                _check(_missing(k), k)
            if frame is None:
                continue
            if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.shape != (count,):
                raise ValueError(f"slot {k}: a frame is {count} int16 samples")
            frame = np.ascontiguousarray(frame)
            kept.append(frame)
            view = frame
            ptrs[k] = &view[0]
        with nogil:
            for t in range(ticks):
                for k in range(MIXER_MAX_MEMBERS):
                    if ptrs[k] != NULL:
                        mixer_set_input(self.conf, k, ptrs[k])
                mixer_mix(self.conf, count)
