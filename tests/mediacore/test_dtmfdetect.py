"""In-band DTMF: the ITU-T Q.23 tone pairs must be recognised under the conditions of ITU-T Q.24
(levels, twist, frequency deviation, durations, noise), and speech or music must not be (talk-off).

All audio is synthesised with numpy; levels are in dBm0 per tone (0 dBm0 = a sine of peak 22706,
G.711 full scale being +3.17 dBm0).
"""

from __future__ import annotations

import numpy as np
import pytest

from native import dtmfdetect, g711

InbandDtmfDetector = dtmfdetect.InbandDtmfDetector

KEYPAD = "123A456B789C*0#D"
ROWS = (697.0, 770.0, 852.0, 941.0)
COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
DBM0_PEAK = 22706.0


def peak(dbm0: float) -> float:
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def pcm(signal: np.ndarray) -> np.ndarray:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def key_tone(key: str, ms: float, rate: int = 8000, row_dbm0: float = -10.0, col_dbm0: float = -10.0,
             deviation: float = 0.0) -> np.ndarray:
    index = KEYPAD.index(key)
    row, col = ROWS[index // 4] * (1 + deviation), COLUMNS[index % 4] * (1 + deviation)
    t = np.arange(int(rate * ms / 1000)) / rate
    return peak(row_dbm0) * np.sin(2 * np.pi * row * t + 0.3) + peak(col_dbm0) * np.sin(2 * np.pi * col * t + 1.1)


def silence(ms: float, rate: int = 8000) -> np.ndarray:
    return np.zeros(int(rate * ms / 1000))


def dialled(keys: str, rate: int = 8000, on_ms: float = 50, off_ms: float = 50, **levels) -> np.ndarray:
    """A digit string as an autodialler sends it: tone, pause, tone, ..."""
    parts = [silence(100, rate)]
    for key in keys:
        parts += [key_tone(key, on_ms, rate, **levels), silence(off_ms, rate)]
    return np.concatenate(parts)


def detect(signal: np.ndarray, rate: int = 8000) -> str:
    return "".join(InbandDtmfDetector(rate).feed(pcm(signal)))


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("dbm0", [-3, -10, -20, -30])
def test_all_16_digits_at_50_ms_tone_50_ms_pause(rate, dbm0):
    assert detect(dialled(KEYPAD, rate, row_dbm0=dbm0, col_dbm0=dbm0), rate) == KEYPAD


def test_tones_below_the_level_floor_are_ignored():
    assert detect(dialled(KEYPAD, row_dbm0=-45, col_dbm0=-45)) == ""


@pytest.mark.parametrize(
    ("row_dbm0", "col_dbm0", "accepted"),
    [
        (-10, -16, True),    # normal twist 6 dB (high group attenuated by the line)
        (-10, -17.5, True),  # 7.5 dB
        (-13, -10, True),    # reverse twist 3 dB
        (-10, -22, False),   # 12 dB normal twist: beyond 8 dB
        (-17, -10, False),   # 7 dB reverse twist: beyond 4 dB
    ],
)
def test_twist_limits(row_dbm0, col_dbm0, accepted):
    got = detect(dialled(KEYPAD, row_dbm0=row_dbm0, col_dbm0=col_dbm0))
    assert got == (KEYPAD if accepted else "")


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("deviation", [-0.015, 0.015])
def test_frequencies_off_by_1_5_percent_are_accepted(rate, deviation):
    assert detect(dialled(KEYPAD, rate, on_ms=60, deviation=deviation), rate) == KEYPAD


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("deviation", [-0.05, -0.04, 0.04, 0.05])
def test_frequencies_off_by_more_than_3_5_percent_are_rejected(rate, deviation):
    assert detect(dialled(KEYPAD, rate, on_ms=200, deviation=deviation), rate) == ""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_digits_survive_white_noise_at_12_db_snr(seed):
    signal = dialled(KEYPAD, row_dbm0=-20, col_dbm0=-20)
    tone_power = peak(-20) ** 2   # two tones of peak p carry p**2 / 2 each
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(tone_power / 10 ** 1.2), signal.shape)
    assert detect(signal + noise) == KEYPAD


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_digits_survive_g711_companding(law):
    # What a trunk really delivers: tones through a G.711 encoder and decoder, low and twisted.
    encode, decode = getattr(g711, f"{law}_encode"), getattr(g711, f"{law}_decode")
    signal = pcm(dialled(KEYPAD, row_dbm0=-24, col_dbm0=-30))
    assert "".join(InbandDtmfDetector(8000).feed(decode(encode(signal)))) == KEYPAD


@pytest.mark.parametrize("offset", range(0, 102, 17))
def test_40_ms_tone_is_a_digit_and_20_ms_is_not(offset):
    # Q.24: a 40 ms tone must be accepted wherever it falls against the analysis blocks.
    lead = np.zeros(160 + offset)
    assert detect(np.concatenate([lead, key_tone("5", 40), silence(100)])) == "5"
    assert detect(np.concatenate([lead, key_tone("5", 20), silence(100)])) == ""


@pytest.mark.parametrize("offset", range(0, 102, 17))
def test_40_ms_pause_separates_two_presses_of_the_same_key(offset):
    lead = np.zeros(160 + offset)
    signal = np.concatenate([lead, key_tone("9", 60), silence(40), key_tone("9", 60), silence(100)])
    assert detect(signal) == "99"


@pytest.mark.parametrize("offset", range(0, 102, 17))
def test_a_break_of_10_ms_inside_a_press_is_bridged(offset):
    lead = np.zeros(160 + offset)
    signal = np.concatenate([lead, key_tone("9", 80), silence(10), key_tone("9", 80), silence(100)])
    assert detect(signal) == "9"


def test_held_key_is_one_digit_with_its_duration():
    rng = np.random.default_rng(7)
    signal = np.concatenate([silence(100), key_tone("#", 2000), silence(200)])
    signal = signal + rng.normal(0.0, peak(-35), signal.shape)
    detector = InbandDtmfDetector(8000)
    first = detector.feed(pcm(signal[:8000]))   # the first second: still held
    assert first == ["#"]
    assert detector.held == "#"
    assert 800 <= detector.duration_ms <= 900 + 13
    assert detector.feed(pcm(signal[8000:])) == []
    assert detector.held is None
    # The press lasted 2 s, measured in whole 12.75 ms blocks.
    assert abs(detector.duration_ms - 2000) <= 26


def test_pieces_of_any_length_give_the_same_digits():
    signal = pcm(dialled("0123456789", on_ms=45, off_ms=45))
    detector = InbandDtmfDetector(8000)
    digits: list[str] = []
    rng = np.random.default_rng(3)
    start = 0
    while start < len(signal):
        size = int(rng.integers(1, 400))
        digits += detector.feed(signal[start:start + size])
        start += size
    assert "".join(digits) == "0123456789"


# --- Talk-off: nothing but DTMF may produce a digit -------------------------------------------

# Formant centres (Hz) of five vowels, as in the classic Peterson-Barney measurements.
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240),
          "e": (530, 1840, 2480), "o": (570, 840, 2410)}


def vowel(f0: float, formants: tuple[int, int, int], seconds: float, rate: int = 8000) -> np.ndarray:
    """A voiced vowel: harmonics of f0 (with 1 % vibrato) shaped by three formant resonances."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / rate
    signal = np.zeros_like(t)
    for h in range(1, int(0.48 * rate / f0)):
        gain = sum(1 / np.hypot(1, (h * f0 - f) / bw) for f, bw in zip(formants, (80, 100, 150), strict=True))
        signal += gain / np.sqrt(h) * np.sin(h * phase)
    return signal / np.max(np.abs(signal)) * peak(-6)


def test_talk_off_voiced_vowels_give_no_digits():
    # Pitches from a low male voice to a child's, in 3 Hz steps, for every vowel: many of these put
    # one harmonic on a row frequency and another on a column frequency.
    signal = np.concatenate([vowel(f0, formants, 0.15) for formants in VOWELS.values()
                             for f0 in np.arange(80.0, 330.0, 3.0)])
    assert detect(signal) == ""


def test_talk_off_music_chords_give_no_digits():
    rng = np.random.default_rng(11)
    notes = 440.0 * 2 ** (np.arange(-24, 20) / 12)
    t = np.arange(int(8000 * 0.25)) / 8000
    chords = []
    for _ in range(300):
        chord = np.zeros_like(t)
        for note in rng.choice(notes, 3, replace=False):
            for h in range(1, 6):
                if note * h < 3900:
                    chord += np.sin(2 * np.pi * note * h * t + rng.uniform(0, 6)) / h ** rng.uniform(0.5, 2)
        chords.append(chord / np.max(np.abs(chord)) * peak(-6))
    assert detect(np.concatenate(chords)) == ""


def test_talk_off_white_noise_and_a_1_khz_tone_give_no_digits():
    rng = np.random.default_rng(5)
    assert detect(rng.normal(0.0, peak(-10), 8000 * 10)) == ""
    t = np.arange(8000 * 2) / 8000
    assert detect(peak(-3) * np.sin(2 * np.pi * 1000 * t)) == ""
    # One DTMF frequency alone is not a digit either.
    assert detect(peak(-10) * np.sin(2 * np.pi * 770 * t)) == ""


def test_a_tone_pair_with_second_harmonics_12_db_down_is_not_a_digit():
    t = np.arange(8000) / 8000
    pair = key_tone("1", 1000)
    harmonics = peak(-22) * (np.sin(2 * np.pi * 2 * 697 * t) + np.sin(2 * np.pi * 2 * 1209 * t))
    assert detect(pair) == "1"
    assert detect(pair + harmonics) == ""


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="8000 or 16000"):
        InbandDtmfDetector(44100)
    with pytest.raises(TypeError):
        InbandDtmfDetector(8000).feed(np.zeros(160, dtype=np.float32))
    assert InbandDtmfDetector(8000).feed(np.zeros(0, dtype=np.int16)) == []
