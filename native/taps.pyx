# cython: language_level=3
"""Recordings and conference rooms on the engine's 20 ms clock (the frame hook), without the GIL.

A recording takes two legs' received audio each tick — the caller's on the left, the agent's
on the right — and hands them to a `Recorder` (recorder.pyx), which writes the WAV file in
chunks and keeps its header valid. A room feeds each member's received frame to a `Conference`
(mixer.pyx) and sends each member its N-1 mix. Legs in use here are held in FRAME input mode
through `pcm_users`; a relay between two recorded legs goes on untouched. A recording can be
retargeted to other legs without a gap (a transfer replaces a party: the file goes on), and a
room recording writes the room's mix (what a listener hears: every member heard by all, no
whisper) to both channels.

Python reaches this through the engine's command ring (CMD_TAP, one sub-operation per command,
applied on the engine thread in order with every other command), so a recording can start in
the same breath as the endpoints it records. When an endpoint is destroyed, `taps_forget`
drops it from every recording and room before its memory goes.
"""

from libc.stdint cimport int16_t, int32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy, memset

from native.bus cimport BUS_FRAME
from native.framepath cimport frame_refresh
from native.medialoop cimport EV_RECORDING_DONE, Command, Core, Endpoint, Event, push_event
from native.mixer cimport (
    MIXER_MAX_MEMBERS,
    MIXER_NO_WHISPER,
    Conference,
    mixer_free,
    mixer_join,
    mixer_leave,
    mixer_mix,
    mixer_new,
    mixer_output,
    mixer_set_deaf,
    mixer_set_input,
    mixer_set_muted,
    mixer_set_whisper,
)
from native.recorder cimport Recorder, recorder_flush, recorder_write

# The sub-operations this module adds after the engine's TAPS table (Python: mediacore.taps).
RECORD_RETARGET = TAP_RECORD_RETARGET
RECORD_ROOM = TAP_RECORD_ROOM


cdef void hold(Core* c, Endpoint* ep) noexcept nogil:
    if ep != NULL:
        ep.pcm_users += 1
        if ep.pcm_users == 1:
            frame_refresh(c, ep)


cdef void release(Core* c, Endpoint* ep) noexcept nogil:
    if ep != NULL and ep.pcm_users > 0:
        ep.pcm_users -= 1
        if ep.pcm_users == 0:
            frame_refresh(c, ep)


cdef int grow(void** items, int* capacity, int count, size_t size) noexcept nogil:
    """Make room for one more pointer; 0 on success."""
    cdef void* bigger
    cdef int wanted
    if count < capacity[0]:
        return 0
    wanted = capacity[0] * 2 if capacity[0] else 16
    bigger = realloc(items[0], wanted * size)
    if bigger == NULL:
        return -1
    items[0] = bigger
    capacity[0] = wanted
    return 0


# --- recordings ---------------------------------------------------------------------------------

cdef void recording_done(Core* c, Taps* t, int index) noexcept nogil:
    """Stop a recording: flush what is buffered (the header follows), give the Recorder back."""
    cdef Recording* r = t.recordings[index]
    cdef Event e
    recorder_flush(r.rec)
    release(c, r.left)
    release(c, r.right)
    memset(&e, 0, sizeof(Event))
    e.kind = EV_RECORDING_DONE
    e.endpoint_id = r.id            # the recording's id, not an endpoint's
    e.error = r.rec.error
    push_event(c, &e)
    t.recording_count -= 1
    t.recordings[index] = t.recordings[t.recording_count]
    free(r)


cdef void start_recording(Core* c, Taps* t, Command* cmd) noexcept nogil:
    cdef Recording* r
    cdef Event e
    if grow(<void**>&t.recordings, &t.recording_capacity, t.recording_count, sizeof(Recording*)) < 0:
        r = NULL
    else:
        r = <Recording*>calloc(1, sizeof(Recording))
    if r == NULL:
        # Give the recorder straight back: Python closes it and reports the failure.
        memset(&e, 0, sizeof(Event))
        e.kind = EV_RECORDING_DONE
        e.endpoint_id = <uint64_t>cmd.value
        e.error = 12                # ENOMEM
        push_event(c, &e)
        return
    r.id = <uint64_t>cmd.value
    r.rec = <Recorder*>cmd.data
    if cmd.arg == TAP_RECORD_ROOM:
        r.room = <uint64_t>cmd.arg2
    else:
        r.left = cmd.ep
        r.right = cmd.other
        hold(c, r.left)
        hold(c, r.right)
    t.recordings[t.recording_count] = r
    t.recording_count += 1


cdef void retarget_recording(Core* c, Taps* t, Command* cmd) noexcept nogil:
    """Record other legs from the next tick on, into the same file. The new legs are held before
    the old ones are released, so a leg recorded before and after never leaves FRAME mode."""
    cdef int i
    cdef Recording* r
    for i in range(t.recording_count):
        r = t.recordings[i]
        if r.id == <uint64_t>cmd.value and r.room == 0:
            hold(c, cmd.ep)
            hold(c, cmd.other)
            release(c, r.left)
            release(c, r.right)
            r.left = cmd.ep
            r.right = cmd.other
            return


cdef void write_recordings(Taps* t) noexcept nogil:
    cdef int i
    cdef Recording* r
    cdef const int16_t* left
    cdef const int16_t* right
    for i in range(t.recording_count):
        r = t.recordings[i]
        if r.room:
            continue                # written after the rooms are mixed
        left = r.left.in_frame if r.left != NULL and r.left.in_valid else NULL
        right = r.right.in_frame if r.right != NULL and r.right.in_valid else NULL
        recorder_write(r.rec, left, right, BUS_FRAME)


# --- rooms ----------------------------------------------------------------------------------------

cdef Room* find_room(Taps* t, uint64_t room_id) noexcept nogil:
    cdef int i
    for i in range(t.room_count):
        if t.rooms[i].id == room_id:
            return t.rooms[i]
    return NULL


cdef int slot_of(Room* room, Endpoint* ep) noexcept nogil:
    cdef int i
    for i in range(MIXER_MAX_MEMBERS):
        if room.members[i] == ep:
            return i
    return -1


cdef void leave_room(Core* c, Room* room, int slot) noexcept nogil:
    cdef int i
    mixer_leave(room.conf, slot)
    room.members[slot].out_hooked = 0
    frame_refresh(c, room.members[slot])
    release(c, room.members[slot])
    room.members[slot] = NULL
    room.count -= 1
    # A whisper aimed at the member who left would reach whoever takes the slot next: the
    # mixer mutes such whisperers; forget the target here too.
    for i in range(MIXER_MAX_MEMBERS):
        if room.whisper_target[i] == slot:
            room.whisper_target[i] = MIXER_NO_WHISPER


cdef void free_room(Core* c, Taps* t, int index) noexcept nogil:
    cdef Room* room = t.rooms[index]
    cdef int i
    for i in range(MIXER_MAX_MEMBERS):
        if room.members[i] != NULL:
            leave_room(c, room, i)
    mixer_free(room.conf)
    t.room_count -= 1
    t.rooms[index] = t.rooms[t.room_count]
    free(room)


cdef void room_command(Core* c, Taps* t, Command* cmd) noexcept nogil:
    cdef Room* room
    cdef int slot, target, i
    if cmd.arg == TAP_ROOM_NEW:
        if grow(<void**>&t.rooms, &t.room_capacity, t.room_count, sizeof(Room*)) < 0:
            return
        room = <Room*>calloc(1, sizeof(Room))
        if room == NULL:
            return
        room.conf = mixer_new(BUS_FRAME)
        if room.conf == NULL:
            free(room)
            return
        room.id = <uint64_t>cmd.value
        for i in range(MIXER_MAX_MEMBERS):
            room.whisper_target[i] = MIXER_NO_WHISPER
        t.rooms[t.room_count] = room
        t.room_count += 1
        return
    room = find_room(t, <uint64_t>cmd.value)
    if room == NULL:
        return
    if cmd.arg == TAP_ROOM_FREE:
        for i in range(t.room_count):
            if t.rooms[i] == room:
                free_room(c, t, i)
                return
        return
    slot = slot_of(room, cmd.ep)
    if cmd.arg == TAP_ROOM_JOIN:
        if slot >= 0:
            return
        slot = slot_of(room, NULL)
        if slot < 0 or mixer_join(room.conf, slot) < 0:
            return
        room.members[slot] = cmd.ep
        room.count += 1
        cmd.ep.out_hooked = 1       # the room owns what this leg hears
        hold(c, cmd.ep)
        frame_refresh(c, cmd.ep)
    elif slot < 0:
        return
    if cmd.arg == TAP_ROOM_LEAVE:
        leave_room(c, room, slot)
        return
    # TAP_ROOM_JOIN and TAP_ROOM_SET carry the member's routes: arg2 bits, whisper target.
    mixer_set_muted(room.conf, slot, 1 if cmd.arg2 & TAP_MUTED else 0)
    mixer_set_deaf(room.conf, slot, 1 if cmd.arg2 & TAP_DEAF else 0)
    target = slot_of(room, cmd.other) if cmd.other != NULL else MIXER_NO_WHISPER
    mixer_set_whisper(room.conf, slot, target if target >= 0 else MIXER_NO_WHISPER)
    room.whisper_target[slot] = target if target >= 0 else MIXER_NO_WHISPER


cdef void mix_rooms(Taps* t) noexcept nogil:
    cdef int i, slot
    cdef Room* room
    cdef Endpoint* ep
    cdef const int16_t* mix
    for i in range(t.room_count):
        room = t.rooms[i]
        for slot in range(MIXER_MAX_MEMBERS):
            ep = room.members[slot]
            if ep != NULL:
                mixer_set_input(room.conf, slot, ep.in_frame if ep.in_valid else NULL)
        mixer_mix(room.conf, BUS_FRAME)
        for slot in range(MIXER_MAX_MEMBERS):
            ep = room.members[slot]
            if ep != NULL and not room.conf.members[slot].deaf:
                mix = mixer_output(room.conf, slot)
                if mix != NULL:
                    memcpy(ep.out_frame, mix, BUS_FRAME * sizeof(int16_t))
                    ep.out_set = 1


cdef void write_room_recordings(Taps* t) noexcept nogil:
    """Each room recording gets its room's mix of this tick on both channels; a room that is gone
    (closed before the recording was stopped) records silence."""
    cdef int i, k
    cdef int32_t v
    cdef Recording* r
    cdef Room* room
    cdef int16_t mix[BUS_FRAME]
    for i in range(t.recording_count):
        r = t.recordings[i]
        if not r.room:
            continue
        room = find_room(t, r.room)
        if room == NULL or room.count == 0:
            recorder_write(r.rec, NULL, NULL, BUS_FRAME)
            continue
        # conf.total: the sum of every member heard by all (muted listeners and whisperers are
        # not in it), left by mixer_mix for this tick.
        for k in range(BUS_FRAME):
            v = room.conf.total[k]
            mix[k] = 32767 if v > 32767 else (-32768 if v < -32768 else <int16_t>v)
        recorder_write(r.rec, mix, mix, BUS_FRAME)


# --- what the engine calls ------------------------------------------------------------------------

cdef Taps* taps_new() noexcept nogil:
    return <Taps*>calloc(1, sizeof(Taps))


cdef void taps_command(void* core, Command* cmd, void* arg) noexcept nogil:
    cdef Core* c = <Core*>core
    cdef Taps* t = <Taps*>arg
    cdef int i
    if cmd.arg == TAP_RECORD_START or cmd.arg == TAP_RECORD_ROOM:
        start_recording(c, t, cmd)
    elif cmd.arg == TAP_RECORD_RETARGET:
        retarget_recording(c, t, cmd)
    elif cmd.arg == TAP_RECORD_STOP:
        for i in range(t.recording_count):
            if t.recordings[i].id == <uint64_t>cmd.value:
                recording_done(c, t, i)
                return
    else:
        room_command(c, t, cmd)


cdef void taps_tick(void* core, void* arg) noexcept nogil:
    cdef Taps* t = <Taps*>arg
    if t.recording_count:
        write_recordings(t)
    if t.room_count:
        mix_rooms(t)
    if t.recording_count:
        write_room_recordings(t)


cdef void taps_forget(void* core, Endpoint* ep, void* arg) noexcept nogil:
    """`ep` is being destroyed: no recording or room may keep its pointer."""
    cdef Core* c = <Core*>core
    cdef Taps* t = <Taps*>arg
    cdef int i, slot
    cdef Recording* r
    if ep.pcm_users == 0:
        return                      # in nothing here
    for i in range(t.recording_count):
        r = t.recordings[i]
        if r.left == ep:
            release(c, ep)
            r.left = NULL           # the rest of the recording: silence on that side
        if r.right == ep:
            release(c, ep)
            r.right = NULL
    for i in range(t.room_count):
        slot = slot_of(t.rooms[i], ep)
        if slot >= 0:
            leave_room(c, t.rooms[i], slot)


cdef void taps_free(Core* c, Taps* t) noexcept nogil:
    """At engine shutdown: recordings are flushed (their files stay valid); Python closes them."""
    while t.recording_count:
        recording_done(c, t, t.recording_count - 1)
    while t.room_count:
        free_room(c, t, t.room_count - 1)
    free(t.recordings)
    free(t.rooms)
    free(t)
