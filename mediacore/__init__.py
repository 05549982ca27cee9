"""Media: RTP/RTCP endpoints, codecs and the native engine that relays, transcodes and (later)
plays, records and mixes 20 ms frames of 16-bit PCM. See ARCHITECTURE.md, "The hot path"."""

from mediacore.engine import Endpoint, MediaEngine
from mediacore.errors import MediaError
from mediacore.events import EngineFailure, MediaEvent, RtcpReport, RtpTimeout, StreamStats

__all__ = [
    "EngineFailure",
    "Endpoint",
    "MediaEngine",
    "MediaError",
    "MediaEvent",
    "RtcpReport",
    "RtpTimeout",
    "StreamStats",
]
