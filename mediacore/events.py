"""What the media engine reports to the rest of the process, one dataclass per kind of event.

Events are produced by the native engine thread, queued, and delivered on the asyncio loop to the
handler registered with `MediaEngine.set_event_handler`. Later increments add `DtmfDigit` and
`PromptDone` here.
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
    "RTCP packets received (on port+1, or multiplexed on the RTP port per RFC 5761)."
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

    @property
    def loss_fraction(self) -> float:
        """Lost over expected, 0.0 when nothing was expected (RFC 3550 §6.4.1 fraction lost)."""
        if self.packets_expected <= 0:
            return 0.0
        return max(0, self.packets_lost) / self.packets_expected


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
