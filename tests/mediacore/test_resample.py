"""Sample-rate conversion 8k <-> 16k <-> 48k: flat passband, no aliasing, seamless frames, and a
constant, reported delay."""

from __future__ import annotations

import numpy as np
import pytest

from native import resample

Resampler = resample.Resampler

PAIRS = [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)]


def sine(frequency: float, rate: int, seconds: float = 0.5, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def fitted_amplitude(signal: np.ndarray, frequency: float, rate: int) -> tuple[float, float]:
    """Least-squares amplitude of a sine at `frequency`, and the RMS of what it leaves."""
    t = np.arange(len(signal)) / rate
    basis = np.stack([np.cos(2 * np.pi * frequency * t), np.sin(2 * np.pi * frequency * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal.astype(np.float64), rcond=None)
    residual = signal - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual**2)))


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_a_passband_sine_keeps_its_frequency_and_level(in_rate, out_rate):
    low = min(in_rate, out_rate)
    for frequency in (100.0, 1000.0, 0.3 * low, 0.45 * low):
        resampler = Resampler(in_rate, out_rate)
        out = resampler.process(sine(frequency, in_rate))
        assert len(out) == len(sine(frequency, in_rate)) * out_rate // in_rate
        steady = out[2 * resampler.delay:]
        amplitude, residual = fitted_amplitude(steady, frequency, out_rate)
        # Within 0.5 dB, and nothing left over but rounding: the frequency is the same.
        assert abs(20 * np.log10(amplitude / 10000.0)) < 0.5, frequency
        assert residual < 2.0, frequency


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 8000), (48000, 16000), (16000, 8000)])
def test_tones_above_the_new_nyquist_frequency_do_not_alias(in_rate, out_rate):
    # 6 kHz would fold to 2 kHz at 8 kHz; 12 kHz to 4 kHz at 16 kHz; 5 kHz to 3 kHz at 8 kHz.
    frequency = {8000: 6000.0, 16000: 12000.0}[out_rate] if in_rate == 48000 else 5000.0
    resampler = Resampler(in_rate, out_rate)
    out = resampler.process(sine(frequency, in_rate, amplitude=30000.0))
    steady = out[2 * resampler.delay:].astype(np.float64)
    level = 20 * np.log10(np.sqrt(np.mean(steady**2)) / (30000.0 / np.sqrt(2)) + 1e-12)
    assert level <= -50.0


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 48000), (16000, 48000), (8000, 16000)])
def test_upsampling_leaves_no_images(in_rate, out_rate):
    # A 3 kHz tone at 8 kHz has images at 5, 11, 13 kHz... when zero-stuffed; only 3 kHz may remain.
    frequency = 0.375 * in_rate
    resampler = Resampler(in_rate, out_rate)
    out = resampler.process(sine(frequency, in_rate))[2 * resampler.delay:]
    amplitude, residual = fitted_amplitude(out, frequency, out_rate)
    assert 20 * np.log10(residual / amplitude) < -60.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_frame_by_frame_equals_one_shot(in_rate, out_rate):
    rng = np.random.default_rng(1)
    signal = rng.integers(-20000, 20000, in_rate, dtype=np.int16)
    whole = Resampler(in_rate, out_rate).process(signal)
    framed = Resampler(in_rate, out_rate)
    frame = in_rate // 50
    by_frames = np.concatenate([framed.process(signal[i:i + frame]) for i in range(0, len(signal), frame)])
    assert np.array_equal(by_frames, whole)
    # Pieces that do not line up with the ratio (here: 1..997 samples) change nothing either.
    odd = Resampler(in_rate, out_rate)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.integers(1, 998))
        pieces.append(odd.process(signal[start:start + size]))
        start += size
    assert np.array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_delay_is_constant_and_as_reported(in_rate, out_rate):
    # A sum of passband sines, band-limited, so its ideal value is known at every output instant:
    # output sample m must be the input signal at time (m - delay) / out_rate, in every frame.
    low = min(in_rate, out_rate)
    components = [(0.05 * low, 5000.0, 0.1), (0.17 * low, 4000.0, 1.3), (0.31 * low, 3000.0, 2.0)]

    def signal(t: np.ndarray) -> np.ndarray:
        return sum(a * np.sin(2 * np.pi * f * t + p) for f, a, p in components)

    resampler = Resampler(in_rate, out_rate)
    assert resampler.delay > 0
    x = np.round(signal(np.arange(in_rate) / in_rate)).astype(np.int16)
    frame = in_rate // 50
    out = np.concatenate([resampler.process(x[i:i + frame]) for i in range(0, len(x), frame)])
    m = np.arange(2 * resampler.delay, len(out))
    expected = signal((m - resampler.delay) / out_rate)
    assert np.max(np.abs(out[m] - expected)) < 3.0   # rounding at both ends, nothing more
    # The delay is 5.5 ms with 8 kHz on either side, 2.75 ms between 16 and 48 kHz.
    assert resampler.delay / out_rate == pytest.approx(0.0055 if low == 8000 else 0.00275)


def test_full_scale_overshoot_saturates_instead_of_wrapping():
    # A full-scale square wave rings (Gibbs) above 32767 after filtering; the output must clip.
    square = np.where((np.arange(8000) // 20) % 2 == 0, 32767, -32768).astype(np.int16)
    out = Resampler(8000, 48000).process(square)[400:].astype(np.int64)
    assert out.max() == 32767 and out.min() == -32768
    # No wrap-around: the output never leaps from near +full scale to near -full scale.
    assert np.max(np.abs(np.diff(out))) < 40000


def test_same_rate_is_a_copy_and_bad_requests_are_refused():
    x = np.arange(-500, 500, dtype=np.int16)
    same = Resampler(16000, 16000)
    assert same.delay == 0 and np.array_equal(same.process(x), x)
    with pytest.raises(ValueError, match="44100"):
        Resampler(44100, 48000)
    with pytest.raises(TypeError):
        Resampler(8000, 16000).process(np.zeros(160, dtype=np.float64))
    assert len(Resampler(8000, 16000).process(np.zeros(0, dtype=np.int16))) == 0


def test_reset_forgets_the_previous_call():
    resampler = Resampler(8000, 48000)
    noise = np.random.default_rng(2).integers(-10000, 10000, 800, dtype=np.int16)
    first = resampler.process(noise)
    resampler.process(noise[::-1].copy())
    resampler.reset()
    assert np.array_equal(resampler.process(noise), first)
