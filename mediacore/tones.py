"""Call-progress tones (dial, ringback, busy, congestion), rendered once to bus-rate PCM.

Each tone is one or two sine frequencies switched on and off by a cadence; one full cadence
cycle is rendered and the engine loops it. Tone plans by country:

- CN (GB 3380 / YD/T 1066 family, the Chinese network): 450 Hz for everything; dial tone
  continuous, ringback 1 s on 4 s off, busy 0.35 s on 0.35 s off, congestion 0.7 s on 0.7 s off.
- US (North American Precise Tone Plan, ANSI T1.401): dial 350+440 Hz continuous at -13 dBm0
  per frequency, ringback 440+480 Hz 2 s on 4 s off at -19 dBm0, busy 480+620 Hz 0.5 s on
  0.5 s off at -24 dBm0, congestion (reorder) 480+620 Hz 0.25 s on 0.25 s off at -24 dBm0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mediacore.errors import MediaError
from mediacore.prompts import BUS_RATE

# G.711 (ITU-T G.711 Table 5): the sine at the codec's full scale is +3.17 dBm0; 16-bit full
# scale is used for it.
_FULL_SCALE_DBM0 = 3.17
# Raised-cosine edges on every burst (4 ms): a hard switch splatters clicks over the band.
_RAMP_MS = 4
# Continuous tones are rendered for 1 s: a whole number of periods of any integer frequency,
# so the loop joins without a phase jump.
_CONTINUOUS_MS = 1000


@dataclass(frozen=True)
class ToneSpec:
    """One call-progress tone."""

    frequencies: tuple[float, ...]
    "Frequencies added together (Hz)."
    cadence_ms: tuple[int, ...]
    "On, off, on, off ... durations of one cycle; empty for a continuous tone."
    level_dbm0: float
    "Level of each frequency (dBm0)."


TONE_PLANS: dict[str, dict[str, ToneSpec]] = {
    "CN": {
        "dial": ToneSpec((450.0,), (), -10.0),
        "ringback": ToneSpec((450.0,), (1000, 4000), -10.0),
        "busy": ToneSpec((450.0,), (350, 350), -10.0),
        "congestion": ToneSpec((450.0,), (700, 700), -10.0),
    },
    "US": {
        "dial": ToneSpec((350.0, 440.0), (), -13.0),
        "ringback": ToneSpec((440.0, 480.0), (2000, 4000), -19.0),
        "busy": ToneSpec((480.0, 620.0), (500, 500), -24.0),
        "congestion": ToneSpec((480.0, 620.0), (250, 250), -24.0),
    },
}
TONE_PLANS["CA"] = TONE_PLANS["US"]     # one North American plan


def tone_spec(name: str, country: str = "CN") -> ToneSpec:
    """The tone `name` (dial, ringback, busy, congestion) of `country` (CN, US, CA)."""
    plan = TONE_PLANS.get(country.upper())
    if plan is None:
        raise MediaError(f"no tone plan for country {country!r} (known: {', '.join(sorted(TONE_PLANS))})")
    spec = plan.get(name.lower())
    if spec is None:
        raise MediaError(f"no tone {name!r} (known: {', '.join(sorted(plan))})")
    return spec


def render_tone(spec: ToneSpec, rate: int = BUS_RATE) -> np.ndarray:
    """One cadence cycle of the tone as int16 PCM at `rate`, ready to be looped."""
    amplitude = 32767 * 10 ** ((spec.level_dbm0 - _FULL_SCALE_DBM0) / 20)
    cadence = spec.cadence_ms or (_CONTINUOUS_MS, 0)
    if len(cadence) % 2:
        raise MediaError("a cadence is pairs of on/off durations")
    ramp = max(1, rate * _RAMP_MS // 1000)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    pieces = []
    for on_ms, off_ms in zip(cadence[::2], cadence[1::2], strict=True):
        t = np.arange(rate * on_ms // 1000) / rate
        burst = sum(amplitude * np.sin(2 * math.pi * f * t) for f in spec.frequencies)
        if spec.cadence_ms and len(burst) > 2 * ramp:
            burst[:ramp] *= edge
            burst[-ramp:] *= edge[::-1]
        pieces += [burst, np.zeros(rate * off_ms // 1000)]
    pcm = np.concatenate(pieces)
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)
