# Conference mixer for the media engine's 20 ms tick (issue #3): up to 50 members, each hearing the
# sum of the others (N-1), saturated to 16 bits, with per-member mute, deaf and whisper routes.
#
# Routes (the primitive behind a supervisor's listen / whisper / barge, see mediacore.conference):
#   - a normal member is heard by every other member;
#   - muted: heard by nobody (a "listen" member is simply muted: it hears all, is heard by none);
#   - whisper_to = T: heard by member T only (a supervisor coaching an agent, unheard by the caller);
#   - deaf: hears nothing (its output frame is silence).
# Mute wins over whisper. A whisper goes to a current member only; when that member leaves, the
# whisperer is muted (it becomes a listener), so the whisper never reaches the slot's next occupant.
#
# Per tick the engine sets each member's input (a borrowed pointer to this tick's frame, or NULL for
# a leg without audio), calls mixer_mix(), then reads each member's output. mixer_mix() consumes the
# inputs (resets them to NULL), so a leg that sends nothing next tick is silent, never a stale frame.
# Threading: no GIL anywhere; one Conference is used by one thread at a time.

from libc.stdint cimport int16_t, int32_t

cdef enum:
    # Issue #3: conferences of up to 50 members. 50 x 32767 fits easily in the int32 sum.
    MIXER_MAX_MEMBERS = 50
    MIXER_NO_WHISPER = -1


ctypedef struct MixMember:
    const int16_t* input    # this tick's frame (borrowed), NULL = no audio
    int16_t* output         # this member's mix, frame_samples samples, owned by the Conference
    int active
    int muted
    int deaf
    int whisper_to          # target slot, or MIXER_NO_WHISPER


ctypedef struct Conference:
    MixMember members[50]   # MIXER_MAX_MEMBERS, indexed by slot
    int frame_samples       # capacity of every frame (160 at 8 kHz, 320 at 16 kHz for 20 ms)
    int32_t* total          # scratch: the sum of everything heard by all
    int32_t* scratch        # scratch: a whisper target's own mix
    int16_t* out_block      # MIXER_MAX_MEMBERS output frames in one allocation


# NULL when frame_samples is out of range (1..48000) or memory is short.
cdef Conference* mixer_new(int frame_samples) noexcept nogil
cdef void mixer_free(Conference* conf) noexcept nogil
# The setters return 0, -EINVAL (slot out of range, or a member whispering to itself) or -ENOENT
# (slot, or whisper target, not joined); join of a taken slot gives -EBUSY.
cdef int mixer_join(Conference* conf, int slot) noexcept nogil
cdef int mixer_leave(Conference* conf, int slot) noexcept nogil
cdef int mixer_set_input(Conference* conf, int slot, const int16_t* frame) noexcept nogil
cdef int mixer_set_muted(Conference* conf, int slot, int muted) noexcept nogil
cdef int mixer_set_deaf(Conference* conf, int slot, int deaf) noexcept nogil
cdef int mixer_set_whisper(Conference* conf, int slot, int target) noexcept nogil
# The member's output frame (valid after mixer_mix until the next one), NULL for an empty slot.
cdef const int16_t* mixer_output(Conference* conf, int slot) noexcept nogil
# Mixes `n` samples (1..frame_samples) for every member; returns 0 or -EINVAL.
cdef int mixer_mix(Conference* conf, int n) noexcept nogil


cdef class Mixer:
    cdef Conference* conf
    cdef dict _inputs       # slot -> numpy array kept alive while its pointer is set
