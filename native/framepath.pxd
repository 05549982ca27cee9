# The engine's frame path: what runs per 20 ms tick for endpoints whose audio is handled as PCM
# (jitter buffer, players, echo, PCM ports, RFC 4733 send and receive). Implemented in
# framepath.pyx; called by medialoop.pyx (the packet loop) with the state lock held.

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t

from native.medialoop cimport Command, Core, Endpoint

# Set the codec slot for ep.codec (on add and on a codec change).
cdef void frame_setup(Endpoint* ep) noexcept nogil
# A packet accepted on `a` whose payload type is a's telephone-event PT or whose audio `a` needs
# as frames. Returns 1 if the packet was consumed (buffered or recognised as an event).
cdef int frame_on_rtp(Core* c, Endpoint* a, const uint8_t* payload, Py_ssize_t length, int pt,
                      uint16_t seq, uint32_t ts, int64_t now) noexcept nogil
# a's input changed source (new SSRC): restart its jitter buffer.
cdef void frame_new_source(Endpoint* a) noexcept nogil
# The per-tick work: inputs, the frame hook, outputs.
cdef void frame_tick(Core* c, int64_t now) noexcept nogil
# CMD_PLAY, CMD_STOP_PLAY, CMD_ECHO, CMD_DTMF, CMD_SET_CODEC.
cdef void frame_command(Core* c, Command* cmd) noexcept nogil
# Recompute ep's modes (FRAME input, relay paused, output from the peer's frames) after its
# connections, players, echo or codec changed.
cdef void frame_refresh(Core* c, Endpoint* ep) noexcept nogil
# ep is being destroyed: end its prompt (EV_PROMPT_DONE, not completed).
cdef void frame_release(Core* c, Endpoint* ep) noexcept nogil
# Free the memory the frame path attached to ep (jitter buffer, PCM port rings).
cdef void frame_free(Endpoint* ep) noexcept nogil
