"""G.711 kernels against the reference every Python 3.11 ships: `audioop` (ITU-T G.711 tables).

Every one of the 65,536 16-bit inputs and every one of the 256 code words is checked, so the
native lookup tables cannot differ from the standard anywhere.
"""

import warnings

import numpy as np
import pytest

from native import g711

with warnings.catch_warnings():
    # audioop is deprecated (PEP 594) but is exactly the reference we want in 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_encode_matches_audioop_for_every_16_bit_sample():
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_16_bit_sample():
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_every_code_word():
    assert g711.ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_matches_audioop_for_every_code_word():
    assert g711.alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_transcoding_is_decode_then_encode_for_every_code_word():
    assert g711.ulaw_to_alaw(ALL_CODES) == audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES, 2), 2)
    assert g711.alaw_to_ulaw(ALL_CODES) == audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES, 2), 2)


def test_bytes_input_is_native_endian_16_bit_pcm():
    raw = ALL_SAMPLES.tobytes()
    assert g711.ulaw_encode(raw) == g711.ulaw_encode(ALL_SAMPLES)
    assert g711.alaw_encode(bytearray(raw)) == g711.alaw_encode(ALL_SAMPLES)


def test_strided_array_is_accepted():
    stereo = np.stack([ALL_SAMPLES, ALL_SAMPLES[::-1]], axis=1)
    assert g711.ulaw_encode(stereo[:, 0]) == g711.ulaw_encode(ALL_SAMPLES)


def test_decoded_code_words_reencode_to_themselves():
    # Every decoded value lies inside its own quantisation interval (G.711 decision values).
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        again = encode(decode(ALL_CODES))
        # µ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes as 0xFF.
        diffs = [i for i in range(256) if again[i] != ALL_CODES[i]]
        assert diffs in ([], [0x7F])


def test_empty_buffers():
    assert g711.ulaw_encode(b"") == b""
    assert g711.alaw_decode(b"").shape == (0,)
    assert g711.ulaw_to_alaw(b"") == b""


def test_odd_byte_count_is_a_clear_error():
    with pytest.raises(ValueError, match="even number of bytes"):
        g711.ulaw_encode(b"\x00\x01\x02")


def test_wrong_sample_type_is_a_clear_error():
    with pytest.raises(TypeError, match="int16"):
        g711.alaw_encode(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="one-dimensional"):
        g711.alaw_encode(np.zeros((2, 160), dtype=np.int16))
