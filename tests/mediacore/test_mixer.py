"""Conference mixer (issue #3): every member hears the sum of the others (N-1), saturated, with mute,
deaf, listen and whisper routes, for up to 50 members; checked against a numpy reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native.mixer import Mixer

from mediacore.conference import (
    MAX_MEMBERS,
    MemberRoute,
    SupervisorMode,
    apply_routes,
    hears,
    supervisor_route,
    validate_routes,
)
from mediacore.errors import MediaError

N = 160  # 20 ms at 8 kHz

CALLER, AGENT, SUPERVISOR = 0, 1, 2


def const(value: int, n: int = N) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def reference_mix(routes, frames, n=N):
    """What each member should hear: the saturated int32 sum of the frames it hears."""
    out = {}
    for listener in routes:
        acc = np.zeros(n, dtype=np.int32)
        for slot in hears(routes, listener):
            if frames.get(slot) is not None:
                acc += frames[slot].astype(np.int32)
        out[listener] = np.clip(acc, -32768, 32767).astype(np.int16)
    return out


def conference(*slots: int, frame_samples: int = N) -> Mixer:
    mixer = Mixer(frame_samples)
    for slot in slots:
        mixer.join(slot)
    return mixer


def test_three_members_each_hear_the_other_two_and_not_themselves():
    mixer = conference(0, 1, 2)
    rng = np.random.default_rng(1)
    frames = {s: rng.integers(-3000, 3000, N).astype(np.int16) for s in range(3)}
    out = mixer.mix(frames)
    assert sorted(out) == [0, 1, 2]
    np.testing.assert_array_equal(out[0], frames[1] + frames[2])
    np.testing.assert_array_equal(out[1], frames[0] + frames[2])
    np.testing.assert_array_equal(out[2], frames[0] + frames[1])


def test_a_lone_member_hears_silence():
    mixer = conference(7)
    np.testing.assert_array_equal(mixer.mix({7: const(1234)})[7], const(0))


def test_the_sum_clips_at_full_scale_instead_of_wrapping():
    mixer = conference(0, 1, 2, 3)
    out = mixer.mix({0: const(30000), 1: const(30000), 2: const(-30000), 3: const(-30000)})
    # Member 2 hears 30000 + 30000 - 30000 = 30000: the int32 sum overflows int16 on the way but
    # the result does not clip.
    np.testing.assert_array_equal(out[2], const(30000))
    np.testing.assert_array_equal(out[0], const(-30000))
    out = mixer.mix({0: const(30000), 1: const(30000), 2: const(30000), 3: const(0)})
    np.testing.assert_array_equal(out[3], const(32767))
    out = mixer.mix({0: const(-32768), 1: const(-32768), 2: const(0), 3: const(-5)})
    np.testing.assert_array_equal(out[2], const(-32768))
    np.testing.assert_array_equal(out[3], const(-32768))


def test_muted_member_is_heard_by_nobody_but_still_hears():
    mixer = conference(0, 1, 2)
    mixer.set_muted(1)
    out = mixer.mix({0: const(100), 1: const(20), 2: const(3)})
    assert out[0][0] == 3 and out[2][0] == 100 and out[1][0] == 103
    mixer.set_muted(1, False)
    out = mixer.mix({0: const(100), 1: const(20), 2: const(3)})
    assert out[0][0] == 23


def test_deaf_member_hears_silence_but_is_still_heard():
    mixer = conference(0, 1, 2)
    mixer.set_deaf(0)
    out = mixer.mix({0: const(100), 1: const(20), 2: const(3)})
    np.testing.assert_array_equal(out[0], const(0))
    assert out[1][0] == 103 and out[2][0] == 120


def test_listen_hears_everyone_and_is_heard_by_nobody():
    mixer = Mixer(N)
    routes = {
        CALLER: MemberRoute(),
        AGENT: MemberRoute(),
        SUPERVISOR: supervisor_route(SupervisorMode.LISTEN, AGENT),
    }
    apply_routes(mixer, routes)
    out = mixer.mix({CALLER: const(1000), AGENT: const(200), SUPERVISOR: const(30)})
    assert out[SUPERVISOR][0] == 1200
    assert out[CALLER][0] == 200
    assert out[AGENT][0] == 1000


def test_whisper_reaches_the_agent_only_and_the_supervisor_still_hears_both():
    mixer = Mixer(N)
    routes = {
        CALLER: MemberRoute(),
        AGENT: MemberRoute(),
        SUPERVISOR: supervisor_route(SupervisorMode.WHISPER, AGENT),
    }
    apply_routes(mixer, routes)
    out = mixer.mix({CALLER: const(1000), AGENT: const(200), SUPERVISOR: const(30)})
    assert out[AGENT][0] == 1030  # caller + supervisor's coaching
    assert out[CALLER][0] == 200  # the caller never hears the supervisor
    assert out[SUPERVISOR][0] == 1200
    # Barge: the supervisor joins the conversation.
    apply_routes(mixer, {**routes, SUPERVISOR: supervisor_route(SupervisorMode.BARGE, AGENT)})
    out = mixer.mix({CALLER: const(1000), AGENT: const(200), SUPERVISOR: const(30)})
    assert (out[CALLER][0], out[AGENT][0], out[SUPERVISOR][0]) == (230, 1030, 1200)


def test_whisper_is_saturated_too_and_mute_silences_it():
    mixer = conference(0, 1, 2)
    mixer.set_whisper(2, 1)
    out = mixer.mix({0: const(30000), 1: const(0), 2: const(30000)})
    np.testing.assert_array_equal(out[1], const(32767))
    mixer.set_muted(2)
    out = mixer.mix({0: const(30000), 1: const(0), 2: const(30000)})
    np.testing.assert_array_equal(out[1], const(30000))


def test_two_whisperers_to_one_agent_and_whispers_to_a_member_who_left():
    mixer = conference(0, 1, 2, 3)
    mixer.set_whisper(2, 1)
    mixer.set_whisper(3, 1)
    out = mixer.mix({0: const(1), 1: const(10), 2: const(100), 3: const(1000)})
    assert out[1][0] == 1101 and out[0][0] == 10 and out[2][0] == 11 and out[3][0] == 11
    mixer.leave(1)
    # The whisperers fall back to listening: heard by nobody, even by the slot's next occupant.
    assert mixer.route(2) == mixer.route(3) == (True, False, None)
    mixer.join(1)
    out = mixer.mix({0: const(1), 1: const(10), 2: const(100), 3: const(1000)})
    assert (out[0][0], out[1][0], out[2][0], out[3][0]) == (10, 1, 11, 11)


def test_no_audio_this_tick_is_silence_and_frames_are_not_reused():
    mixer = conference(0, 1)
    out = mixer.mix({0: const(500), 1: None})
    assert out[1][0] == 500 and out[0][0] == 0
    # Nothing sent on the next tick: the previous frame must not be mixed again.
    out = mixer.mix({})
    np.testing.assert_array_equal(out[1], const(0))


def test_fifty_members_each_hear_the_other_forty_nine():
    slots = range(MAX_MEMBERS)
    mixer = conference(*slots)
    rng = np.random.default_rng(50)
    frames = {s: rng.integers(-600, 600, N).astype(np.int16) for s in slots}
    out = mixer.mix(frames)
    total = sum(f.astype(np.int32) for f in frames.values())
    for s in slots:
        np.testing.assert_array_equal(out[s], (total - frames[s]).astype(np.int16))
    with pytest.raises(ValueError):
        mixer.join(MAX_MEMBERS)


def test_a_16_khz_bus_and_a_shorter_tick():
    mixer = conference(0, 1, 2, frame_samples=320)
    frames = {s: np.arange(320, dtype=np.int16) * (s + 1) for s in range(3)}
    out = mixer.mix(frames)
    np.testing.assert_array_equal(out[0], np.arange(320, dtype=np.int16) * 5)
    short = {s: f[:160] for s, f in frames.items()}
    out = mixer.mix(short, n=160)
    assert out[2].shape == (160,)
    np.testing.assert_array_equal(out[2], np.arange(160, dtype=np.int16) * 3)


def test_run_gives_the_same_mix_as_one_tick():
    mixer = conference(*range(10))
    rng = np.random.default_rng(3)
    frames = {s: rng.integers(-4000, 4000, N).astype(np.int16) for s in range(10)}
    mixer.set_whisper(9, 0)
    expected = mixer.mix(frames)
    mixer.run(frames, 5)
    reference = reference_mix({s: MemberRoute(whisper_to=0 if s == 9 else None) for s in range(10)}, frames)
    for s in range(10):
        np.testing.assert_array_equal(expected[s], reference[s])


def test_bad_requests_are_clear_errors():
    mixer = conference(0, 1)
    with pytest.raises(ValueError, match="already taken"):
        mixer.join(0)
    with pytest.raises(ValueError, match="out of range"):
        mixer.join(-1)
    with pytest.raises(ValueError, match="not a member"):
        mixer.set_muted(5)
    with pytest.raises(ValueError):
        mixer.set_whisper(0, 0)
    with pytest.raises(ValueError, match="whisper target"):
        mixer.set_whisper(0, 9)
    with pytest.raises(ValueError, match="160"):
        mixer.mix({0: const(1, 80)})
    with pytest.raises(TypeError):
        mixer.mix({0: np.zeros(N, dtype=np.float32)})
    with pytest.raises(ValueError, match="not a member"):
        mixer.mix({3: const(1)})
    with pytest.raises(ValueError):
        Mixer(0)
    # A failed tick leaves no borrowed frame behind.
    np.testing.assert_array_equal(mixer.mix({})[1], const(0))


def test_route_validation():
    with pytest.raises(MediaError, match="itself"):
        validate_routes({0: MemberRoute(whisper_to=0)})
    with pytest.raises(MediaError, match="not a member"):
        validate_routes({0: MemberRoute(whisper_to=4)})
    with pytest.raises(MediaError, match="0..49"):
        validate_routes({50: MemberRoute()})
    mixer = conference(0, 1, 2)
    apply_routes(mixer, {1: MemberRoute(deaf=True), 4: MemberRoute(whisper_to=1)})
    assert mixer.members == [1, 4]
    assert mixer.route(1) == (False, True, None)
    assert mixer.route(4) == (False, False, 1)


routes_strategy = st.dictionaries(
    st.integers(0, MAX_MEMBERS - 1),
    st.tuples(st.booleans(), st.booleans(), st.integers(-1, MAX_MEMBERS - 1)),
    min_size=1,
    max_size=MAX_MEMBERS,
)


@settings(max_examples=150, deadline=None)
@given(routes_strategy, st.integers(0, 2**32 - 1), st.sampled_from([100, 3000, 32767]))
def test_any_routes_mix_like_the_numpy_reference(raw, seed, amplitude):
    routes = {}
    for slot, (muted, deaf, target) in raw.items():
        whisper = target if target in raw and target != slot else None
        routes[slot] = MemberRoute(muted=muted, deaf=deaf, whisper_to=whisper)
    rng = np.random.default_rng(seed)
    frames = {
        slot: None if rng.random() < 0.2 else rng.integers(-amplitude, amplitude + 1, N).astype(np.int16)
        for slot in routes
    }
    mixer = Mixer(N)
    apply_routes(mixer, routes)
    out = mixer.mix(frames)
    expected = reference_mix(routes, frames)
    assert sorted(out) == sorted(routes)
    for slot in routes:
        np.testing.assert_array_equal(out[slot], expected[slot])
