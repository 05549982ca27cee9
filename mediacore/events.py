"""What the media engine reports to the rest of the process, one dataclass per kind of event.

Events are produced by the native engine thread, queued, and delivered on the asyncio loop to the
handler registered with `MediaEngine.set_event_handler`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaEvent:
    """Base class of everything the engine reports."""


@dataclass(frozen=True)
class RtpTimeout(MediaEvent):
    """An endpoint that had been receiving RTP received none for its `rtp_timeout`
    (Asterisk's `rtptimeout`): the far end is gone, hung or on a dead network path.
    Reported once; reported again if media resumes and stops again."""

    endpoint_id: int
    "The endpoint that went silent."


@dataclass(frozen=True)
class StreamStats(MediaEvent):
    """Counters and RFC 3550 receiver statistics of one endpoint. Returned by
    `MediaEngine.stats()`, and delivered as an event (with `final=True`) when the endpoint is
    destroyed, covering every packet it handled."""

    endpoint_id: int
    "The endpoint these figures belong to."
    packets_in: int
    "Valid RTP packets received from the latched source."
    bytes_in: int
    "Size of those packets (RTP header and payload, without UDP/IP)."
    packets_out: int
    "RTP packets sent to the remote."
    bytes_out: int
    "Size of those packets."
    packets_expected: int
    "Packets the sender sent, from the extended highest sequence number (RFC 3550 A.3)."
    packets_lost: int
    "Expected minus received (RFC 3550 A.3); negative when duplicates outnumber losses."
    jitter_ms: float
    "Interarrival jitter estimate in milliseconds (RFC 3550 A.8)."
    malformed: int
    "Datagrams on the RTP port that were not valid RTP, dropped."
    dropped: int
    "Valid packets not relayed: no route, foreign source, payload type not negotiated."
    rtcp_packets_in: int
    """RTCP compounds received (on port+1, or multiplexed on the RTP port per RFC 5761), including
    those then rejected as malformed (`rtcp_malformed`)."""
    send_errors: int
    "Packets the kernel refused to send."
    ssrc_in: int | None
    "SSRC of the stream being received, None before the first packet."
    ssrc_out: int
    "Our SSRC on this leg (RFC 3550 §8.1, chosen at random)."
    remote: tuple[str, int] | None
    "Where this leg's RTP goes: the signalled address, or the latched source (symmetric RTP)."
    latched: bool
    "True once `remote` was learnt from received packets rather than signalling."
    final: bool = False
    "True for the event sent when the endpoint was destroyed."
    frame_mode: bool = False
    "True while the leg's received audio is decoded to frames (jitter buffer in use)."
    jitter_depth: int = 0
    "The adaptive jitter buffer's current target depth, in packets (0: never used)."
    late: int = 0
    "Packets that arrived after their playout time and were dropped by the jitter buffer."
    concealed: int = 0
    "Frames the jitter buffer filled by concealment because their packet was lost or late."
    discarded: int = 0
    "Packets the jitter buffer dropped to shorten its delay or when the stream jumped."
    dtmf_in: int = 0
    "RFC 4733 key presses received (each also delivered as a DtmfDigit event)."
    port_overruns: int = 0
    "PCM port: frames dropped because one side did not keep up (see MediaEngine.write_frame)."
    rtcp_reports_out: int = 0
    "RTCP compound reports sent (SR or RR, SDES CNAME; RFC 3550 §6.1)."
    rtcp_malformed: int = 0
    "Received RTCP compounds that failed the RFC 3550 A.2 validity checks, dropped whole."
    remote_fraction_lost: float | None = None
    """Share of our packets (0.0-1.0) the far end lost in its last report interval, from its
    last report block about our stream (RFC 3550 §6.4.1 fraction lost / 256); None before any."""
    remote_packets_lost: int | None = None
    "The far end's cumulative count of our packets lost (24-bit signed, §6.4.1); None before any."
    remote_jitter_ms: float | None = None
    "Interarrival jitter of our stream as the far end measures it (A.8), in ms; None before any."
    round_trip_ms: float | None = None
    """Round-trip time from the far end's LSR/DLSR answering one of our sender reports
    (§6.4.1), in ms; None until the peer has echoed an SR of ours."""
    remote_bye: bool = False
    "The far end sent an RTCP BYE (RFC 3550 §6.6): it is leaving the session."

    @property
    def loss_fraction(self) -> float:
        """Lost over expected, 0.0 when nothing was expected (RFC 3550 §6.4.1 fraction lost)."""
        if self.packets_expected <= 0:
            return 0.0
        return max(0, self.packets_lost) / self.packets_expected


@dataclass(frozen=True)
class RtcpReport(MediaEvent):
    """The far end's RTCP reported on the stream we send it (an SR or RR report block about our
    SSRC, RFC 3550 §6.4.1). Delivered at most once a second per endpoint; `MediaEngine.stats()`
    always holds the latest figures."""

    endpoint_id: int
    "The endpoint whose outgoing stream was reported on."
    fraction_lost: float
    "Share of our packets (0.0-1.0) lost in the far end's last interval."
    packets_lost: int
    "The far end's cumulative count of our packets lost (negative with duplicates)."
    jitter_ms: float
    "Interarrival jitter of our stream at the far end (RFC 3550 A.8), in ms."
    round_trip_ms: float | None
    "Round-trip time (LSR/DLSR, §6.4.1) in ms, None if the report did not echo an SR of ours."
    stats: StreamStats
    "The endpoint's full statistics at the moment the report arrived."


@dataclass(frozen=True)
class EngineFailure(MediaEvent):
    """The engine could not do something the operating system refused (e.g. registering a
    socket with epoll). With `endpoint_id` None the engine thread itself stopped."""

    endpoint_id: int | None
    "The endpoint concerned, or None for the engine as a whole."
    errno: int
    "The operating-system error number."
    message: str
    "os.strerror(errno)."


@dataclass(frozen=True)
class DtmfDigit(MediaEvent):
    """One key press received on an endpoint: reported once per press, however many packets
    (updates, retransmitted end packets) carried it."""

    endpoint_id: int
    "The endpoint the digit arrived on."
    digit: str
    "'0'-'9', '*', '#' or 'A'-'D'."
    duration_ms: int
    "How long the key was held, from the event's duration field (RFC 4733 §2.3.5)."
    source: str = "rfc4733"
    "How it was detected: 'rfc4733' (telephone-event packets) or 'inband' (tone detection)."


@dataclass(frozen=True)
class PromptDone(MediaEvent):
    """A prompt, tone or music on hold stopped playing on an endpoint. After this event the
    engine no longer reads the prompt's buffer."""

    endpoint_id: int
    "The endpoint it played to."
    play_id: int
    "The id `MediaEngine.play` returned."
    completed: bool
    """True if it played to its end; False if stopped, replaced by another prompt, or the
    endpoint was destroyed."""
