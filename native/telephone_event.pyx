# cython: language_level=3
"""RFC 4733 telephone-events: one report per key press in, digit queues out.

Receiving (§2.5.2): every packet of one key press carries the same RTP timestamp, the event's
start; updates grow the duration and the last one (sent three times) has the E bit. A press
longer than the 16-bit duration field continues in segments (§2.5.1.3), summed here. A key press
is reported once, when its first end packet arrives; retransmitted ends and stray late updates
carry the same timestamp and are ignored. If all end packets are lost the press is reported
when the next event starts or after DTMF_RX_END_TIMEOUT_NS of silence, with the longest
duration seen.

Sending (§2.5.1): the first packet of an event has the marker bit, then one update per 20 ms
tick with the same timestamp and a growing duration, then the end packet three times, then a
DTMF_GAP_TICKS pause before the next queued digit.
"""

from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef const char* DIGITS = b"0123456789*#ABCD"


cdef int dtmf_digit_char(int event) noexcept nogil:
    if 0 <= event < DTMF_EVENTS:
        return DIGITS[event]
    return 0


cdef int dtmf_event_code(int digit_char) noexcept nogil:
    cdef int i
    if 97 <= digit_char <= 100:      # a-d
        digit_char -= 32
    for i in range(DTMF_EVENTS):
        if DIGITS[i] == digit_char:
            return i
    return -1


cdef int dtmf_rx_packet(DtmfReceiver* r, const uint8_t* payload, Py_ssize_t n, uint32_t ts,
                        int64_t now, int* event, uint32_t* duration) noexcept nogil:
    cdef int code, end, report = 0
    cdef uint32_t dur
    if n < EVENT_PAYLOAD:
        return 0
    code = payload[0]
    end = payload[1] & 0x80
    dur = (<uint32_t>payload[2] << 8) | payload[3]
    if code >= DTMF_EVENTS:
        return 0                      # not a DTMF digit (flash, modem tones): not ours to report
    if r.active and ts == r.ts and code == r.event:
        r.last_ns = now
        if r.reported:
            return 0                  # a retransmitted end packet or a late update
        if dur > r.duration:
            r.duration = dur
        if end:
            r.reported = 1
            event[0] = r.event
            duration[0] = r.before + r.duration
            return 1
        return 0
    if (r.active and not r.reported and code == r.event
            and ts == r.ts + r.duration and r.duration >= 0xFF00):
        # §2.5.1.3: a press longer than the 16-bit duration field continues as a new segment
        # stamped where the previous one's duration ran out: the same key press.
        r.before += r.duration
        r.ts = ts
        r.duration = dur
        r.last_ns = now
        if end:
            r.reported = 1
            event[0] = code
            duration[0] = r.before + dur
            return 1
        return 0
    # A new key press. The previous one, if its end never came, ends here.
    if r.active and not r.reported:
        event[0] = r.event
        duration[0] = r.before + r.duration
        report = 1
    r.active = 1
    r.reported = 0
    r.before = 0
    r.ts = ts
    r.event = code
    r.duration = dur
    r.last_ns = now
    if end and not report:
        r.reported = 1                # only its end packets got through
        event[0] = code
        duration[0] = dur
        return 1
    return report


cdef int dtmf_rx_expire(DtmfReceiver* r, int64_t now, int* event, uint32_t* duration) noexcept nogil:
    if r.active and not r.reported and now - r.last_ns >= DTMF_RX_END_TIMEOUT_NS:
        r.reported = 1
        event[0] = r.event
        duration[0] = r.before + r.duration
        return 1
    return 0


cdef int dtmf_tx_queue(DtmfSender* s, int event, uint32_t duration) noexcept nogil:
    cdef int slot
    if s.count == DTMF_QUEUE or not 0 <= event < DTMF_EVENTS or duration == 0:
        return -1
    slot = (s.head + s.count) % DTMF_QUEUE
    s.queue[slot] = <uint8_t>event
    s.queue_duration[slot] = duration
    s.count += 1
    return 0


cdef int dtmf_tx_busy(const DtmfSender* s) noexcept nogil:
    """The stream toward the peer is taken by events (audio muted): an event is being sent."""
    return s.state == DTX_SENDING or s.state == DTX_ENDING


cdef inline void _build(DtmfSender* s, uint8_t* payload, int end) noexcept nogil:
    payload[0] = <uint8_t>s.event
    payload[1] = <uint8_t>((0x80 if end else 0) | DTMF_VOLUME)
    payload[2] = <uint8_t>(s.duration >> 8)
    payload[3] = <uint8_t>s.duration


cdef int dtmf_tx_tick(DtmfSender* s, uint32_t pos, uint32_t samples_per_tick, uint8_t* payload,
                      uint32_t* ts, int* marker) noexcept nogil:
    marker[0] = 0
    if s.state == DTX_GAP:
        if s.gap_left > 0:
            s.gap_left -= 1
            return 0
        s.state = DTX_IDLE
    if s.state == DTX_ENDING:
        # §2.5.1.4: the end packet again, unchanged.
        s.end_sent += 1
        if s.end_sent >= DTMF_END_RETRANSMITS:
            s.state = DTX_GAP
            s.gap_left = DTMF_GAP_TICKS
        _build(s, payload, 1)
        ts[0] = s.ts
        return 1
    if s.state == DTX_IDLE:
        if s.count == 0:
            return 0
        s.event = s.queue[s.head]
        s.target = s.queue_duration[s.head]
        s.head = (s.head + 1) % DTMF_QUEUE
        s.count -= 1
        s.ts = pos                    # §2.5.1.1: the event's timestamp is its start
        s.duration = samples_per_tick
        s.state = DTX_SENDING
        marker[0] = 1                 # §2.5.1.1: marker on the first packet of an event
    else:
        s.duration += samples_per_tick
    if s.duration >= s.target:
        s.duration = s.target
        s.state = DTX_ENDING
        s.end_sent = 1
        _build(s, payload, 1)
    else:
        _build(s, payload, 0)
    ts[0] = s.ts
    return 1
