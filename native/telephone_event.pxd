# RFC 4733 telephone-events (DTMF) in RTP: the receiver that turns event packets into one
# report per key press, and the sender that turns queued digits into event packets on the 20 ms
# clock (implemented in telephone_event.pyx).

from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef enum:
    # RFC 4733 §2.3: the payload is 4 octets (event, E|R|volume, duration).
    EVENT_PAYLOAD = 4
    # RFC 4733 §3.2: events 0-9, * (10), # (11), A-D (12-15) are the DTMF digits.
    DTMF_EVENTS = 16
    # §2.5.1.4: the final packet of an event is sent three times.
    DTMF_END_RETRANSMITS = 3
    # Pause between queued digits: 5 ticks (100 ms), above the 40 ms minimum inter-digit pause of
    # ITU-T Q.24 and the usual 100 ms on / 100 ms off of auto-dialling.
    DTMF_GAP_TICKS = 5
    DTMF_QUEUE = 64
    # §2.3.4: volume is the power in -dBm0; 10 (-10 dBm0) is a typical DTMF level.
    DTMF_VOLUME = 10
    # An event whose end packets were all lost is reported once nothing has been heard of it for
    # this long (§2.5.2.2 lets the receiver end it "after a suitable timeout").
    DTMF_RX_END_TIMEOUT_NS = 500000000

cdef enum DtmfTxState:
    DTX_IDLE = 0
    DTX_SENDING             # first packet and updates, growing duration
    DTX_ENDING              # the end packet and its retransmits
    DTX_GAP                 # the pause before the next queued digit


ctypedef struct DtmfReceiver:
    int active              # an event has been heard (ts/event valid)
    int reported            # ... and reported
    uint32_t ts             # its RTP timestamp: the key press's identity (§2.5.2.1)
    int event
    uint32_t duration       # the longest duration seen, in timestamp units
    uint32_t before         # earlier segments of a long-duration event (§2.5.1.3)
    int64_t last_ns         # when its last packet arrived


ctypedef struct DtmfSender:
    uint8_t queue[DTMF_QUEUE]
    uint32_t queue_duration[DTMF_QUEUE]
    int head
    int count
    int state
    int event
    uint32_t ts             # timestamp of the event being sent (its start)
    uint32_t duration
    uint32_t target
    int end_sent
    int gap_left


cdef int dtmf_digit_char(int event) noexcept nogil
cdef int dtmf_event_code(int digit_char) noexcept nogil
# Feed one telephone-event payload; returns 1 when a key press is complete and fills `event`
# and `duration` (timestamp units) with the one to report.
cdef int dtmf_rx_packet(DtmfReceiver* r, const uint8_t* payload, Py_ssize_t n, uint32_t ts,
                        int64_t now, int* event, uint32_t* duration) noexcept nogil
cdef int dtmf_rx_expire(DtmfReceiver* r, int64_t now, int* event, uint32_t* duration) noexcept nogil
cdef int dtmf_tx_queue(DtmfSender* s, int event, uint32_t duration) noexcept nogil
cdef int dtmf_tx_busy(const DtmfSender* s) noexcept nogil
# One tick of the sender at stream position `pos`: 1 if an event packet is to be sent this tick
# (payload, its timestamp and marker filled in), 0 if the stream is free for audio.
cdef int dtmf_tx_tick(DtmfSender* s, uint32_t pos, uint32_t samples_per_tick, uint8_t* payload,
                      uint32_t* ts, int* marker) noexcept nogil
