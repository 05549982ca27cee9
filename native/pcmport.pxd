# A PCM port: an endpoint without sockets whose audio Python exchanges as bus frames (the WebRTC
# bridge: aiortc terminates ICE/DTLS/SRTP and Opus in Python). Two small rings guarded by one
# mutex: frames Python writes (played into the engine) and frames the engine produced for the
# port (read by Python). Header-only: both the engine thread and the Python side use it.

from libc.stdint cimport int16_t, uint64_t
from libc.string cimport memcpy

from native.bus cimport BUS_FRAME
from native.sysio cimport pthread_mutex_lock, pthread_mutex_t, pthread_mutex_unlock

cdef enum:
    # 8 frames (160 ms) each way: more than the asyncio loop's scheduling jitter; beyond that
    # the oldest frame is dropped (counted) rather than letting the delay grow.
    PORT_RING = 8
    # Frames written are played once 2 are queued, so a frame written a little late by the
    # asyncio side does not leave a hole each time.
    PORT_PRIME = 2


ctypedef struct PcmPort:
    pthread_mutex_t lock
    int16_t in_ring[PORT_RING][BUS_FRAME]     # Python -> engine
    int in_head
    int in_count
    int in_primed
    int16_t out_ring[PORT_RING][BUS_FRAME]    # engine -> Python
    int out_head
    int out_count
    uint64_t in_overruns                      # frames Python wrote that were dropped
    uint64_t out_overruns                     # frames Python did not read in time, dropped


cdef inline void _ring_push(int16_t (*ring)[BUS_FRAME], int* head, int* count, const int16_t* frame,
                            uint64_t* overruns) noexcept nogil:
    if count[0] == PORT_RING:
        head[0] = (head[0] + 1) % PORT_RING
        count[0] -= 1
        overruns[0] += 1
    memcpy(ring[(head[0] + count[0]) % PORT_RING], frame, BUS_FRAME * sizeof(int16_t))
    count[0] += 1


cdef inline void port_write(PcmPort* p, const int16_t* frame) noexcept nogil:
    pthread_mutex_lock(&p.lock)
    _ring_push(p.in_ring, &p.in_head, &p.in_count, frame, &p.in_overruns)
    pthread_mutex_unlock(&p.lock)


cdef inline int port_take_input(PcmPort* p, int16_t* frame) noexcept nogil:
    """Engine side: this tick's frame from Python; 0 if none (or still priming)."""
    cdef int got = 0
    pthread_mutex_lock(&p.lock)
    if not p.in_primed and p.in_count >= PORT_PRIME:
        p.in_primed = 1
    if p.in_primed:
        if p.in_count:
            memcpy(frame, p.in_ring[p.in_head], BUS_FRAME * sizeof(int16_t))
            p.in_head = (p.in_head + 1) % PORT_RING
            p.in_count -= 1
            got = 1
        else:
            p.in_primed = 0
    pthread_mutex_unlock(&p.lock)
    return got


cdef inline void port_give_output(PcmPort* p, const int16_t* frame) noexcept nogil:
    pthread_mutex_lock(&p.lock)
    _ring_push(p.out_ring, &p.out_head, &p.out_count, frame, &p.out_overruns)
    pthread_mutex_unlock(&p.lock)


cdef inline int port_read(PcmPort* p, int16_t* frame) noexcept nogil:
    """Python side: the oldest frame the engine produced for the port; 0 if none."""
    cdef int got = 0
    pthread_mutex_lock(&p.lock)
    if p.out_count:
        memcpy(frame, p.out_ring[p.out_head], BUS_FRAME * sizeof(int16_t))
        p.out_head = (p.out_head + 1) % PORT_RING
        p.out_count -= 1
        got = 1
    pthread_mutex_unlock(&p.lock)
    return got
