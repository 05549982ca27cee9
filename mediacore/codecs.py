"""Audio codecs behind one small interface: 20 ms frames of 16-bit PCM at a stated rate.

Every encoder takes a one-dimensional int16 numpy array of exactly `frame_samples` samples at
`sample_rate` and returns one RTP payload; every decoder takes one RTP payload and returns the
int16 samples it carries. Players, recorders, mixers and the WebRTC bridge speak only this.
G.711 here runs on the native table-driven kernels (`native.g711`); the engine uses the same
kernels directly when it relays. Opus (PyAV) and L16 come in a later increment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from mediacore.errors import MediaError
from native import g711


@dataclass(frozen=True)
class CodecInfo:
    """What SDP says about a codec (RFC 3551 §6 table of static payload types)."""

    name: str
    "Encoding name as in a=rtpmap (case-insensitive on the wire)."
    payload_type: int
    "The static payload type; dynamic codecs get theirs from the SDP."
    clock_rate: int
    "RTP timestamp units per second."
    channels: int = 1
    "Audio channels."


PCMU = CodecInfo("PCMU", 0, 8000)
PCMA = CodecInfo("PCMA", 8, 8000)

# RFC 3551 §4.5: 20 ms is the default packetization interval for audio.
DEFAULT_PTIME_MS = 20


class Encoder(ABC):
    """Turns one frame of 16-bit PCM into one RTP payload."""

    info: CodecInfo

    def __init__(self, ptime_ms: int = DEFAULT_PTIME_MS) -> None:
        if ptime_ms <= 0 or ptime_ms % 10:
            raise MediaError(f"packetization must be a positive multiple of 10 ms, got {ptime_ms}")
        self.ptime_ms = ptime_ms

    @property
    def sample_rate(self) -> int:
        return self.info.clock_rate

    @property
    def frame_samples(self) -> int:
        """Samples per frame (160 for 20 ms of G.711)."""
        return self.sample_rate * self.ptime_ms // 1000

    def encode(self, frame: np.ndarray) -> bytes:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise MediaError("a frame is a one-dimensional int16 numpy array")
        if frame.shape[0] != self.frame_samples:
            raise MediaError(
                f"{self.info.name} at {self.ptime_ms} ms takes {self.frame_samples} samples "
                f"at {self.sample_rate} Hz, got {frame.shape[0]}"
            )
        return self._encode(frame)

    @abstractmethod
    def _encode(self, frame: np.ndarray) -> bytes: ...


class Decoder(ABC):
    """Turns one RTP payload into 16-bit PCM at `sample_rate`."""

    info: CodecInfo

    @property
    def sample_rate(self) -> int:
        return self.info.clock_rate

    @abstractmethod
    def decode(self, payload: bytes) -> np.ndarray: ...


class PcmuEncoder(Encoder):
    info = PCMU

    def _encode(self, frame: np.ndarray) -> bytes:
        return g711.ulaw_encode(frame)


class PcmuDecoder(Decoder):
    info = PCMU

    def decode(self, payload: bytes) -> np.ndarray:
        return g711.ulaw_decode(payload)


class PcmaEncoder(Encoder):
    info = PCMA

    def _encode(self, frame: np.ndarray) -> bytes:
        return g711.alaw_encode(frame)


class PcmaDecoder(Decoder):
    info = PCMA

    def decode(self, payload: bytes) -> np.ndarray:
        return g711.alaw_decode(payload)


_ENCODERS: dict[str, type[Encoder]] = {"PCMU": PcmuEncoder, "PCMA": PcmaEncoder}
_DECODERS: dict[str, type[Decoder]] = {"PCMU": PcmuDecoder, "PCMA": PcmaDecoder}


def get_encoder(name: str, ptime_ms: int = DEFAULT_PTIME_MS) -> Encoder:
    """An encoder for the SDP encoding name (case-insensitive)."""
    try:
        return _ENCODERS[name.upper()](ptime_ms)
    except KeyError:
        raise MediaError(f"no encoder for codec {name!r}") from None


def get_decoder(name: str) -> Decoder:
    """A decoder for the SDP encoding name (case-insensitive)."""
    try:
        return _DECODERS[name.upper()]()
    except KeyError:
        raise MediaError(f"no decoder for codec {name!r}") from None
