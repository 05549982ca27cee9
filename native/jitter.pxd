# The adaptive jitter buffer of one frame-mode endpoint (implemented in jitter.pyx).
#
# RTP packets are put in as they arrive, in any order; once per 20 ms tick one bus frame is
# pulled out: packets are played in sequence-number order, a missing one is concealed by
# repeating the last frame with a fade, a packet arriving after its turn is dropped and counted.
# The depth the buffer waits for adapts to the jitter it observes. Relayed streams never pass
# through it.

from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uint64_t

from native.bus cimport BUS_FRAME, MAX_FRAME_PAYLOAD, frame_decoder

cdef enum:
    # Ring of packets by sequence number (a power of two): 320 ms of 20 ms packets, twice the
    # deepest target, so a burst after a stall still fits.
    JB_SLOTS = 16
    # Target depth in packets: 1 (20 ms) on a clean LAN up to 8 (160 ms, the ITU-T G.114 budget
    # leaves no room for more on a one-way path of 400 ms).
    JB_MIN_DEPTH = 1
    JB_MAX_DEPTH = 8
    JB_START_DEPTH = 2
    # 10 ticks (200 ms) without any packet: the talkspurt or the stream ended (silence
    # suppression, hold); stop producing frames and prime again on the next packet.
    JB_IDLE_TICKS = 10
    # The target shrinks at most once per window of 250 ticks (5 s) without late packets.
    JB_ADAPT_TICKS = 250
    # Decoded samples waiting to be played: packets of up to 60 ms.
    JB_PCM_FIFO = 640
    # Packet loss concealment: repeat the last frame at -6 dB per repeat, silence after 3.
    PLC_FADE_FRAMES = 3


ctypedef struct JbSlot:
    uint16_t seq
    int used
    Py_ssize_t length
    uint8_t payload[MAX_FRAME_PAYLOAD]


ctypedef struct JitterBuffer:
    JbSlot slots[JB_SLOTS]
    int count                   # packets buffered
    int playing                 # 0 while priming to the target depth
    uint16_t next_seq           # the packet to play next
    int target                  # target depth in packets
    int underrun_ticks          # consecutive ticks with nothing buffered
    int conceal_run             # consecutive concealed frames
    int16_t last[BUS_FRAME]     # the last frame decoded from a real packet
    int16_t fifo[JB_PCM_FIFO]
    Py_ssize_t fifo_len
    int window_ticks            # adaptation window (JB_ADAPT_TICKS)
    int window_min_count
    int window_late
    uint64_t late               # packets that arrived after their turn, dropped
    uint64_t concealed          # frames played by concealment: the packet was lost or late
    uint64_t discarded          # packets thrown away to shrink the delay or on a stream jump
    uint64_t undecodable        # packets the codec refused


cdef void jb_reset(JitterBuffer* jb) noexcept nogil
cdef void jb_put(JitterBuffer* jb, uint16_t seq, const uint8_t* payload, Py_ssize_t n) noexcept nogil
cdef int jb_pull(JitterBuffer* jb, frame_decoder decode, void* state, uint32_t jitter_samples,
                 int16_t* out) noexcept nogil
