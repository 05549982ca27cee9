"""Prompts as bus frames: audio files of any rate, resampled once to the engine's bus rate.

The engine plays 16-bit mono PCM at `BUS_RATE` straight from a buffer (it never resamples per
call). `PromptCache.load` reads a file with soundfile (WAV, and anything else libsndfile reads),
mixes it to mono, converts the rate with a polyphase windowed-sinc filter and keeps the result,
read-only, keyed by path, modification time and size: a prompt played to a thousand callers is
read and resampled once, and replacing the file on disk is picked up at the next play.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import soundfile
from native.engine import BUS_SAMPLE_RATE

from mediacore.errors import MediaError

BUS_RATE: int = BUS_SAMPLE_RATE
"The engine's internal sample rate (Hz); every prompt is converted to it."

# Filter design. The 6 dB point sits at 92 % of the lower Nyquist frequency and the stop band
# starts at that Nyquist frequency, so nothing above it folds back (at 8 kHz: flat to ~3.4 kHz,
# the telephone band of ITU-T G.712, and -80 dB from 4 kHz). 80 dB is below the G.711
# quantisation noise of a full-scale signal (~38 dB SNR), so no aliasing is audible.
_CUTOFF = 0.92
_TRANSITION = 0.08                  # half the transition band, as a fraction of the Nyquist
_STOPBAND_DB = 80.0
_KAISER_BETA = 0.1102 * (_STOPBAND_DB - 8.7)    # Kaiser's formula for A > 50 dB
# Output samples computed per block (bounds the temporary index matrix to a few MB).
_BLOCK = 4096
# Prompts kept in memory per engine: enough for every IVR menu and MOH class of a site.
DEFAULT_CACHE_ENTRIES = 256


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Convert mono audio (int16, or float in [-1, 1]) from `rate_in` to `rate_out` Hz and return
    int16. Rational factor L/M with a polyphase Kaiser-windowed sinc low-pass; the filter is
    symmetric, so the output is time-aligned with the input."""
    if rate_in <= 0 or rate_out <= 0:
        raise MediaError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise MediaError("resample takes one channel (a one-dimensional array)")
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    else:
        x = x.astype(np.float64)
    if rate_in != rate_out and x.size:
        x = _polyphase(x, rate_in, rate_out)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _polyphase(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    nyquist = min(rate_in, rate_out) / 2
    fs_up = rate_in * up                             # the virtual zero-stuffed rate
    fc = _CUTOFF * nyquist / fs_up                   # cycles per upsampled sample
    # Kaiser's length estimate N = (A - 8) / (2.285 * dw) for the full transition band 2*T.
    dw = 2 * math.pi * (2 * _TRANSITION * nyquist) / fs_up
    half = max(2, math.ceil((_STOPBAND_DB - 8) / (2.285 * dw) / up / 2))   # taps per side, per phase
    # Prototype h[n], n in [-half*up, (half+1)*up): gain `up` restores the zero-stuffing's loss.
    n = np.arange(-half * up, (half + 1) * up)
    window = np.kaiser(len(n), _KAISER_BETA)
    h = up * 2 * fc * np.sinc(2 * fc * n) * window
    # Polyphase table: output at upsampled time t = j*down uses x[t//up - k] * h[t%up + k*up].
    ks = np.arange(-half + 1, half + 1)
    phases = np.arange(up)
    table = h[phases[:, None] + ks[None, :] * up + half * up]
    padded = np.concatenate([np.zeros(half + 1), x, np.zeros(half + 1)])
    count = -(-len(x) * up // down)                  # ceil(len * L / M)
    out = np.empty(count)
    for start in range(0, count, _BLOCK):
        t = np.arange(start, min(count, start + _BLOCK), dtype=np.int64) * down
        base = t // up
        idx = base[:, None] - ks[None, :] + (half + 1)
        out[start:start + len(t)] = np.einsum("ij,ij->i", padded[idx], table[t % up])
    return out


def load_prompt(path: str | Path, rate: int = BUS_RATE) -> np.ndarray:
    """Read an audio file, mix to mono and resample to `rate`: int16 samples."""
    try:
        data, file_rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise MediaError(f"cannot read prompt {path}: {exc}") from None
    if data.shape[0] == 0:
        raise MediaError(f"prompt {path} holds no audio")
    return resample(data.mean(axis=1), int(file_rate), rate)


class PromptCache:
    """Bus-rate PCM of prompt files, loaded and resampled once per file version."""

    def __init__(self, rate: int = BUS_RATE, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        if max_entries < 1:
            raise MediaError("a prompt cache holds at least one entry")
        self.rate = rate
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self.loads = 0
        "How many times a file was actually read and resampled (the rest were cache hits)."

    def load(self, path: str | Path) -> np.ndarray:
        """The prompt's samples (read-only int16 at `rate`), from the cache when the file has
        not changed since it was loaded."""
        resolved = Path(path).resolve()
        try:
            st = resolved.stat()
        except OSError as exc:
            raise MediaError(f"cannot read prompt {path}: {exc.strerror}") from None
        key = (str(resolved), st.st_mtime_ns, st.st_size)
        pcm = self._entries.get(key)
        if pcm is not None:
            self._entries.move_to_end(key)
            return pcm
        pcm = load_prompt(resolved, self.rate)
        pcm.flags.writeable = False    # shared by every call playing it
        self.loads += 1
        # An older version of the same file is never asked for again.
        for stale in [k for k in self._entries if k[0] == key[0]]:
            del self._entries[stale]
        self._entries[key] = pcm
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return pcm

    def __len__(self) -> int:
        return len(self._entries)
