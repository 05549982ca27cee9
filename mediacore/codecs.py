"""Audio codecs behind one small interface: 20 ms frames of 16-bit PCM at a stated rate.

Every encoder takes a one-dimensional int16 numpy array of exactly `frame_samples` samples at
`sample_rate` and returns one RTP payload; every decoder takes one RTP payload and returns the
int16 samples it carries. Players, recorders, mixers and the WebRTC bridge speak only this.
G.711 here runs on the native table-driven kernels (`native.g711`); the engine uses the same
kernels directly when it relays.

This module is also where SDP encoding names and clock rates become the media engine's codec
ids (`engine_codec`): G.711 µ-law and A-law, L16 and Opus are transcoded by the engine itself
(native/codecslot.pyx), so signalling can offer them for any leg.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from mediacore.errors import MediaError
from native import engine as _engine
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
# RFC 7587 §7: always "opus/48000/2" in a=rtpmap, whatever is sent; the payload type is dynamic
# (111 is only the customary choice of browsers and phones).
OPUS = CodecInfo("opus", 111, 48000, 2)


class UnsupportedCodec(MediaError, ValueError):
    """A codec name or clock rate the engine cannot carry."""


@dataclass(frozen=True)
class EngineCodec:
    """A codec as the media engine knows it."""

    name: str
    "Canonical encoding name: PCMU, PCMA, L16 or opus."
    codec_id: int
    "The engine's id for it (native.engine.CODEC_IDS)."
    clock_rate: int
    "RTP timestamp units per second (Opus: always 48000, RFC 7587 §4.1)."

    @property
    def frame_ticks(self) -> int:
        """RTP timestamp step of one 20 ms packet (160 for G.711, 960 for Opus)."""
        return self.clock_rate * DEFAULT_PTIME_MS // 1000


# Encoding name (upper case) -> (canonical name, default clock rate or None: must be said). The
# rates each codec accepts are the engine's (native.engine.CODEC_CLOCK_RATES). L16 has no
# default: its static payload types (RFC 3551 §6: 10, 11) are 44.1 kHz, which the engine does
# not run, so the rate always comes from an a=rtpmap line.
_ENGINE_CODECS: dict[str, tuple[str, int | None]] = {
    "PCMU": ("PCMU", 8000),
    "PCMA": ("PCMA", 8000),
    "L16": ("L16", None),
    "OPUS": ("opus", 48000),
}
ENGINE_CODEC_NAMES = tuple(spec[0] for spec in _ENGINE_CODECS.values())


def engine_codec(name: str, clock_rate: int | None = None) -> EngineCodec:
    """The engine codec for an SDP encoding name (case-insensitive, RFC 4566 §6) and clock rate
    (None: the codec's only or usual rate). UnsupportedCodec (a MediaError and a ValueError)
    when the engine cannot carry it."""
    spec = _ENGINE_CODECS.get(name.upper()) if isinstance(name, str) else None
    if spec is None:
        raise UnsupportedCodec(
            f"codec {name!r} is not supported by the media engine ({', '.join(ENGINE_CODEC_NAMES)})")
    canonical, default = spec
    codec_id = _engine.CODEC_IDS[canonical.upper()]
    rates = _engine.CODEC_CLOCK_RATES[codec_id]
    rate = default if clock_rate is None else clock_rate
    if rate is None:
        raise UnsupportedCodec(f"{canonical} needs a clock rate ({' or '.join(map(str, rates))} Hz)")
    if rate not in rates:
        raise UnsupportedCodec(
            f"{canonical} runs at {' or '.join(map(str, rates))} Hz in the media engine, not {rate}")
    return EngineCodec(canonical, codec_id, rate)

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
