# The media loop's state and entry points, shared by medialoop.pyx (the engine thread),
# engine.pyx (the Python-facing object), framepath.pyx (players, echo, jitter buffers, PCM ports,
# RFC 4733) and the mixers and recorders that run on its 20 ms clock (Core.frame_hook). Everything here is touched by the engine thread without the GIL.

from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from posix.unistd cimport write

from native.bus cimport BUS_FRAME, frame_decoder, frame_encoder
from native.dtmfdetect cimport DtmfDetector
from native.jitter cimport JitterBuffer
from native.pcmport cimport PcmPort
from native.rtcp cimport RTCP_CNAME_MAX, RtcpState
from native.rtpstats cimport SourceStats
from native.sysio cimport (
    epoll_event,
    iovec,
    mmsghdr,
    pthread_cond_t,
    pthread_mutex_lock,
    pthread_mutex_t,
    pthread_mutex_unlock,
    sockaddr_storage,
    socklen_t,
)
from native.telephone_event cimport DtmfReceiver, DtmfSender

cdef enum:
    # Datagrams read or written per recvmmsg/sendmmsg call. One socket carries one stream
    # (50 packets/s), so a batch larger than this only fills after a long stall.
    BATCH = 32
    # recvmmsg(2) asks a socket for the next datagram of a batch until it finds it empty: a
    # second pass through the socket layer for nothing (~1 % of the engine thread's time at
    # 500-700 relayed calls, perf). A socket read again between
    # RX_REREAD_NS and RX_SINGLE_GAP_NS after a read that found one datagram holds one (a
    # stream's next 20 ms packet, RFC 3551 §4.5 default packetization) and is read with a batch
    # of one. Sooner means epoll reported it again because more were waiting, later means a
    # stall or 30/60 ms packets: those reads, and the read after one that found several, take
    # the full batch.
    RX_REREAD_NS = 5000000
    RX_SINGLE_GAP_NS = 30000000
    # Larger than any Ethernet MTU; a longer datagram is truncated by the kernel and dropped.
    MAX_DATAGRAM = 2048
    MAX_EPOLL_EVENTS = 256
    # Commands waiting for the engine: Python blocks (without the GIL) when the ring is full.
    COMMAND_RING = 4096
    # Events waiting for the asyncio loop; when full, further events are counted and dropped.
    EVENT_RING = 8192
    # The engine clock: one tick per G.711/Opus frame (RFC 3551 §4.5: 20 ms default packetization).
    TICK_NS = 20000000
    # The residence probe: 10 µs bins up to 1 s (the last bin holds everything longer).
    RESIDENCE_BIN_NS = 10000
    RESIDENCE_BINS = 100001
    RX_CTRL = 64                # room for one SCM_TIMESTAMPNS control message

# epoll user data: the two wake-up descriptors use small tags; an endpoint socket uses the
# Endpoint's address (at least 8-byte aligned) with the low bit set for its RTCP socket.
cdef enum:
    TAG_COMMANDS = 1
    TAG_CLOCK = 2

cdef enum Codec:
    CODEC_PCMU = 0   # G.711 µ-law, RFC 3551 static payload type 0
    CODEC_PCMA = 1   # G.711 A-law, RFC 3551 static payload type 8
    CODEC_BUS = 2    # a PCM port: bus frames exchanged with Python, no RTP
    CODEC_L16 = 3    # RFC 3551 §4.5.11: 16-bit big-endian linear PCM (clock 8000/16000/48000)
    CODEC_OPUS = 4   # RFC 7587: Opus, RTP clock 48000 whatever the audio bandwidth

cdef enum CommandOp:
    CMD_ADD = 1
    CMD_DESTROY
    CMD_SET_REMOTE
    CMD_CONNECT
    CMD_DISCONNECT
    CMD_SET_TIMEOUT
    CMD_STOP
    # The frame path (framepath.pyx applies these).
    CMD_PLAY            # data/data_len: int16 bus-rate PCM, value: play id, arg: loop
    CMD_STOP_PLAY
    CMD_ECHO            # arg: on/off
    CMD_DTMF            # arg: RFC 4733 event code, value: duration in timestamp units
    CMD_SET_CODEC       # arg: codec, arg2: payload type, value: telephone-event PT (-1 none),
                        # data: the new codec state (codecslot.pxd, NULL for G.711), data_len: clock rate
    # Recordings and conference rooms (taps.pyx applies these through Core.tap_command).
    CMD_TAP             # arg: the tap operation (taps.pxd TapOp); the other fields per operation
    CMD_INBAND_DTMF     # arg: on/off (framepath.pyx)

cdef enum EventKind:
    EV_RTP_TIMEOUT = 1
    EV_FINAL_STATS
    EV_FAILED
    EV_DTMF             # digit, duration_ms: one RFC 4733 key press received
    EV_PROMPT_DONE      # play_id, completed: a player finished or was interrupted
    EV_RECORDING_DONE   # endpoint_id: the recording's id, error: its first errno (0: none)
    EV_RTCP_REPORT      # stats: the far end reported on our stream (rtcp.pyx; at most 1/s/leg)


ctypedef struct Counters:
    uint64_t packets_in         # valid RTP packets received (from the latched source)
    uint64_t bytes_in           # their size: RTP header and payload
    uint64_t packets_out        # RTP packets sent
    uint64_t bytes_out
    uint64_t malformed          # datagrams on the RTP port that are not RTP, dropped
    uint64_t dropped            # valid packets not relayed: no route, foreign source, unknown PT
    uint64_t rtcp_packets_in    # RTCP on port+1 or multiplexed on the RTP port (RFC 5761)
    uint64_t send_errors        # packets the kernel refused to send


cdef struct Endpoint:
    uint64_t id
    int rtp_fd
    int rtcp_fd
    int codec
    int payload_type            # this leg's PT for its codec
    int event_pt                # this leg's telephone-event PT (RFC 4733), -1 if none
    uint32_t clock_rate
    int dead                    # destroyed this loop iteration, freed at its end

    # Where this leg's RTP goes: set by signalling, then replaced by the observed source
    # (symmetric RTP, RFC 4961) when packets arrive.
    sockaddr_storage remote
    socklen_t remote_len
    int remote_known
    int latched
    sockaddr_storage rtcp_remote
    socklen_t rtcp_remote_len
    int rtcp_latched

    Endpoint* route_to          # packets arriving here go out of route_to
    Endpoint* route_from        # the endpoint whose packets go out of here

    # The stream this leg sends. RFC 3550 §5.1/§8.2: we are a new source with our own SSRC and
    # one continuous sequence/timestamp space, whatever feeds it.
    uint32_t out_ssrc
    uint16_t first_seq          # random initial values (RFC 3550 §5.1)
    uint32_t first_ts
    int out_started
    int out_bound               # seq_off/ts_off are valid for the current input stream
    uint32_t out_src_ssrc
    uint16_t seq_off
    uint32_t ts_off
    uint16_t last_out_seq
    uint32_t last_out_ts
    uint32_t last_out_samples
    int64_t last_out_ns

    # The stream this leg receives.
    SourceStats source
    int has_source
    int64_t expected_before     # A.3 counts of earlier SSRCs on this leg
    int64_t lost_before
    int64_t last_rx_ns
    int64_t last_read_ns        # when the engine last read the RTP socket (monotonic)
    int last_read_count         # datagrams that read returned
    int64_t rtp_timeout_ns      # 0: no RTP timeout
    int had_media
    int timeout_fired

    Counters counters

    # --- the frame path (framepath.pyx) ---
    int is_port                 # a PCM port: no sockets, `port` holds its rings
    PcmPort* port
    int echo                    # send what this leg receives back to it (the 9196 echo test)
    int pcm_users               # mixers/recorders that need this leg's audio as frames
    int out_hooked              # the frame hook (a conference) owns this leg's outgoing audio
    # Input in FRAME mode: received audio goes through `jb` into `in_frame` once per tick.
    int rx_frames
    JitterBuffer* jb            # allocated the first time the leg enters FRAME mode
    frame_decoder decode        # the codec slot (bus.pxd); state for codecs that keep one
    frame_encoder encode
    void* codec_state
    int16_t in_frame[BUS_FRAME]
    int in_valid                # in_frame holds this tick's audio
    # Output: set by a frame hook (mixer) for this tick, taking precedence over echo/peer.
    int16_t out_frame[BUS_FRAME]
    int out_set
    int peer_frames             # output comes from route_from's in_frame (no packet relay)
    int relay_paused            # packets from route_from are not relayed here (a player, echo,
                                # DTMF or frames own the outgoing stream)
    uint64_t gen_tick           # the tick of the last frame/event packet generated here
    int64_t gen_ns              # ... and its time: equal to last_out_ns if it was the last sent
    int marker_next             # the next generated audio packet starts a talkspurt
    # Player: PCM owned by a Python object the engine keeps alive until EV_PROMPT_DONE.
    const int16_t* play_pcm
    Py_ssize_t play_len
    Py_ssize_t play_pos
    uint64_t play_id
    int play_loop
    int playing
    DtmfReceiver dtmf_rx
    DtmfSender dtmf_tx
    uint64_t dtmf_in            # key presses reported

    Endpoint* next              # the engine's list of live endpoints
    Endpoint* prev
    Endpoint* next_dead

    # --- in-band DTMF (framepath.pyx): tones in the received audio, detected on the bus frames ---
    int inband_dtmf             # detection asked for: the input runs in FRAME mode
    DtmfDetector* inband        # allocated while on

    # --- RTCP (rtcp.pyx; sent on the tick and on destroy, received in medialoop.pyx) ---
    RtcpState rtcp
    int rtcp_remote_known       # rtcp_remote is valid (signalled port + 1, or latched)


ctypedef struct Snapshot:
    uint64_t id
    Counters counters
    int64_t packets_expected
    int64_t packets_lost
    double jitter_ms
    uint32_t ssrc_in
    int has_ssrc_in
    uint32_t ssrc_out
    sockaddr_storage remote
    int remote_known
    int latched
    int frame_mode              # input decoded to frames (jitter buffer in use)
    int jitter_depth            # the jitter buffer's current target, packets
    uint64_t late               # jitter buffer: packets too late to play
    uint64_t concealed          # jitter buffer: frames concealed (loss or lateness)
    uint64_t discarded          # jitter buffer: packets dropped to shrink delay / on jumps
    uint64_t dtmf_in
    uint64_t port_overruns      # PCM port: frames dropped because a ring was full
    RtcpState rtcp              # what RTCP sent and heard (rtcp.pxd)
    double remote_jitter_ms     # rtcp.jitter in milliseconds of our stream's clock


ctypedef struct Command:
    int op
    Endpoint* ep
    Endpoint* other
    sockaddr_storage addr
    socklen_t addr_len
    int64_t value
    const void* data
    Py_ssize_t data_len
    int arg
    int arg2


ctypedef struct Event:
    int kind
    uint64_t endpoint_id
    int error                   # errno for EV_FAILED
    Snapshot stats              # EV_FINAL_STATS
    int digit                   # EV_DTMF: '0'-'9', '*', '#', 'A'-'D'
    int duration_ms             # EV_DTMF
    uint64_t play_id            # EV_PROMPT_DONE
    int completed               # EV_PROMPT_DONE: played to the end (0: stopped/replaced)
    int inband                  # EV_DTMF: detected as tones in the audio (0: RFC 4733 events)


# Called once per tick after every endpoint's in_frame is ready and before any out_frame is
# encoded: where the conference mixer and the recorder plug in (Core.frame_hook).
ctypedef void (*frame_hook_fn)(void* core, void* arg) noexcept nogil
# CMD_TAP, applied on the engine thread in order with every other command.
ctypedef void (*tap_command_fn)(void* core, Command* cmd, void* arg) noexcept nogil
# An endpoint with pcm_users is about to be destroyed: whatever holds it must let go.
ctypedef void (*endpoint_gone_fn)(void* core, Endpoint* ep, void* arg) noexcept nogil


ctypedef struct Core:
    int epoll_fd
    int command_fd              # eventfd: Python -> engine "commands waiting"
    int event_fd                # eventfd: engine -> asyncio "events waiting"
    int clock_fd                # timerfd: the 20 ms clock
    long thread_id
    int running                 # the engine thread is inside its loop
    int stopping

    # Guards endpoint fields Python reads (counters, stats, remote). Only the engine writes them.
    pthread_mutex_t state_lock

    pthread_mutex_t command_lock
    pthread_cond_t command_space
    Command* commands
    int command_head
    int command_count

    pthread_mutex_t event_lock
    Event* events
    int event_head
    int event_count
    uint64_t events_dropped

    Endpoint* live
    Endpoint* graveyard
    uint64_t ticks
    frame_hook_fn frame_hook
    void* frame_hook_arg        # also the argument of tap_command and endpoint_gone
    tap_command_fn tap_command
    endpoint_gone_fn endpoint_gone
    uint8_t frame_tx[MAX_DATAGRAM]      # packets generated on the tick are built here

    uint8_t* rx_data
    mmsghdr rx_msgs[BATCH]
    iovec rx_iov[BATCH]
    sockaddr_storage rx_addr[BATCH]
    mmsghdr tx_msgs[BATCH]
    iovec tx_iov[BATCH]
    epoll_event ready[MAX_EPOLL_EVENTS]

    # RTCP (rtcp.pyx): set before the thread starts.
    int64_t rtcp_interval_ns    # RFC 3550 §6.2 report interval (randomised per report)
    uint8_t rtcp_cname[RTCP_CNAME_MAX]  # one CNAME for every endpoint of the engine (§6.5.1)
    int rtcp_cname_len

    # Bench probe (engine.pyx configure_residence): how long relayed RTP waited between the
    # kernel's arrival stamp (SO_TIMESTAMPNS) and the engine reading it, in RESIDENCE_BIN_NS
    # bins; NULL when off (then nothing here costs anything).
    uint32_t* residence
    uint8_t* rx_ctrl            # BATCH control buffers of RX_CTRL octets for the stamps


cdef inline void push_event(Core* c, Event* e) noexcept nogil:
    cdef uint64_t one = 1
    cdef int wake = 0
    pthread_mutex_lock(&c.event_lock)
    if c.event_count == EVENT_RING:
        c.events_dropped += 1
    else:
        memcpy(&c.events[(c.event_head + c.event_count) % EVENT_RING], e, sizeof(Event))
        c.event_count += 1
        wake = c.event_count == 1
    pthread_mutex_unlock(&c.event_lock)
    # One write per empty->non-empty transition: the reader empties the ring after reading the fd.
    if wake:
        write(c.event_fd, &one, 8)


# Implemented in medialoop.pyx.
cdef void take_snapshot(Endpoint* ep, Snapshot* s) noexcept nogil
cdef int push_command(Core* c, Command* cmd) noexcept nogil
cdef void apply_command(Core* c, Command* cmd) noexcept nogil
cdef void close_endpoint(Endpoint* ep) noexcept nogil
cdef void free_graveyard(Core* c) noexcept nogil
cdef void run_loop(Core* c) noexcept nogil
