"""The codec interface: 20 ms frames of 16-bit PCM at the codec's stated rate."""

from __future__ import annotations

import numpy as np
import pytest

from mediacore.codecs import PCMA, PCMU, get_decoder, get_encoder
from mediacore.errors import MediaError


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "pcmu"])
def test_g711_round_trip_keeps_a_tone_within_companding_error(name, make_tone):
    encoder, decoder = get_encoder(name), get_decoder(name)
    assert encoder.sample_rate == decoder.sample_rate == 8000
    assert encoder.frame_samples == 160
    frame = make_tone(1000.0, 160)
    payload = encoder.encode(frame)
    assert len(payload) == 160
    decoded = decoder.decode(payload)
    assert decoded.dtype == np.int16 and decoded.shape == (160,)
    # G.711 keeps roughly 38 dB SNR for a loud tone: the error is a small fraction of the signal.
    error = decoded.astype(np.float64) - frame
    assert np.sqrt(np.mean(error**2)) < 0.02 * np.sqrt(np.mean(frame.astype(np.float64) ** 2))


def test_static_payload_types_follow_rfc3551():
    assert (PCMU.payload_type, PCMA.payload_type) == (0, 8)
    assert PCMU.clock_rate == PCMA.clock_rate == 8000


def test_ptime_sets_the_frame_size():
    assert get_encoder("PCMA", ptime_ms=30).frame_samples == 240
    with pytest.raises(MediaError, match="multiple of 10 ms"):
        get_encoder("PCMA", ptime_ms=25)


def test_frames_of_the_wrong_shape_are_refused(make_tone):
    encoder = get_encoder("PCMU")
    with pytest.raises(MediaError, match="160 samples at 8000 Hz, got 960"):
        encoder.encode(make_tone(1000.0, 960))   # a 48 kHz frame handed to an 8 kHz codec
    with pytest.raises(MediaError, match="int16"):
        encoder.encode(np.zeros(160, dtype=np.float32))
    with pytest.raises(MediaError, match="int16"):
        encoder.encode(bytes(320))


def test_unknown_codecs_are_refused():
    with pytest.raises(MediaError, match="G729"):
        get_encoder("G729")
    with pytest.raises(MediaError, match="opus"):
        get_decoder("opus")
