# Recordings and conference rooms on the engine's frame hook (taps.pyx). The engine thread owns
# all of it; Python reaches it through CMD_TAP commands (Command.arg is the sub-operation).

from libc.stdint cimport uint64_t

from native.medialoop cimport Command, Core, Endpoint
from native.mixer cimport Conference
from native.recorder cimport Recorder

cdef enum TapOp:
    TAP_RECORD_START = 1    # value: recording id; ep: left (caller), other: right (agent); data: Recorder*
    TAP_RECORD_STOP         # value: recording id -> EV_RECORDING_DONE(endpoint_id=id, error)
    TAP_ROOM_NEW            # value: room id
    TAP_ROOM_FREE           # value: room id
    TAP_ROOM_JOIN           # value: room id; ep: member; arg2: TAP_MUTED|TAP_DEAF; other: whisper target
    TAP_ROOM_SET            # same fields as JOIN, for a member already in the room
    TAP_ROOM_LEAVE          # value: room id; ep: member
    TAP_RECORD_RETARGET     # value: recording id; ep: new left, other: new right (NULL: silence)
    TAP_RECORD_ROOM         # value: recording id; arg2: room id; data: Recorder* (the room's mix)

cdef enum:
    TAP_MUTED = 1           # not heard by the others
    TAP_DEAF = 2            # hears nothing


ctypedef struct Recording:
    uint64_t id
    Endpoint* left
    Endpoint* right
    uint64_t room           # a room recording (TAP_RECORD_ROOM): the room's id; 0 for two legs
    Recorder* rec           # owned by Python (RecordingFile); borrowed until EV_RECORDING_DONE


ctypedef struct Room:
    uint64_t id
    Conference* conf
    Endpoint* members[50]   # MIXER_MAX_MEMBERS, by mixer slot; NULL = free slot
    int whisper_target[50]
    int count


ctypedef struct Taps:
    Recording** recordings
    int recording_count
    int recording_capacity
    Room** rooms
    int room_count
    int room_capacity


cdef Taps* taps_new() noexcept nogil
cdef void taps_command(void* core, Command* cmd, void* arg) noexcept nogil
# The frame hook (Core.frame_hook with arg = the Taps).
cdef void taps_tick(void* core, void* arg) noexcept nogil
cdef void taps_forget(void* core, Endpoint* ep, void* arg) noexcept nogil
cdef void taps_free(Core* c, Taps* t) noexcept nogil
