"""The adaptive jitter buffer on its own (native.jitter through JitterProbe): packets put in as
they arrive, one frame pulled per 20 ms tick, no sockets and no clock, so every rule is exact."""

from __future__ import annotations

import numpy as np
from native.jitter import JitterProbe

FRAME = 160


def frame(value: int) -> bytes:
    return np.full(FRAME, value, dtype=np.int16).tobytes()


def level(pcm: bytes | None) -> int | None:
    return None if pcm is None else int(np.frombuffer(pcm, dtype=np.int16)[0])


def test_waits_for_the_target_depth_then_plays_in_order():
    jb = JitterProbe()
    assert jb.target == 2
    jb.put(100, frame(1000))
    assert jb.pull() is None                     # priming: one packet is not yet two
    jb.put(101, frame(1100))
    assert [level(jb.pull()), level(jb.pull())] == [1000, 1100]


def test_reordered_packets_come_out_in_sequence_order():
    jb = JitterProbe()
    for seq in (11, 10, 13, 12):
        jb.put(seq, frame(seq * 100))
    assert [level(jb.pull()) for _ in range(4)] == [1000, 1100, 1200, 1300]
    assert jb.late == 0 and jb.concealed == 0


def test_a_lost_packet_is_concealed_by_the_last_frame_fading_6_db_per_repeat():
    jb = JitterProbe()
    jb.put(0, frame(8000))
    jb.put(1, frame(8000))
    jb.put(6, frame(3000))                        # 2..5 lost
    got = [level(jb.pull()) for _ in range(7)]
    assert got == [8000, 8000, 4000, 2000, 1000, 0, 3000]
    assert jb.concealed == 4


def test_a_packet_after_its_turn_is_late_dropped_and_deepens_the_buffer():
    jb = JitterProbe()
    jb.put(0, frame(100))
    jb.put(1, frame(200))
    jb.put(3, frame(400))
    assert [level(jb.pull()) for _ in range(3)] == [100, 200, 100]   # 2 concealed (repeat, -6 dB)
    jb.put(2, frame(300))                        # too late: its slot was played
    assert jb.late == 1 and jb.target == 3
    assert level(jb.pull()) == 400


def test_silence_goes_idle_and_the_next_talkspurt_primes_again():
    jb = JitterProbe()
    jb.put(0, frame(500))
    jb.put(1, frame(500))
    pulled = [jb.pull() for _ in range(14)]
    assert all(p is not None for p in pulled[:12]) and pulled[-1] is None
    # The next talkspurt (after silence suppression) starts anywhere in sequence space.
    jb.put(900, frame(700))
    assert jb.pull() is None
    jb.put(901, frame(710))
    assert level(jb.pull()) == 700


def test_a_jump_in_sequence_numbers_restarts_the_buffer():
    jb = JitterProbe()
    jb.put(0, frame(1))
    jb.put(1, frame(2))
    jb.put(2, frame(3))
    assert level(jb.pull()) == 1
    jb.put(30000, frame(9))                      # the sender restarted its numbering
    jb.put(30001, frame(9))
    assert jb.discarded == 2                     # packets 1 and 2 belonged to the old stream
    assert level(jb.pull()) == 9


def test_a_standing_backlog_is_trimmed_and_the_target_follows_the_jitter():
    jb = JitterProbe()
    seq = 0
    for _ in range(6):                           # a burst after a stall: 6 queued
        jb.put(seq, frame(seq))
        seq += 1
    for _ in range(250):                         # then one packet per tick for 5 s
        jb.pull(jitter_samples=0)
        jb.put(seq, frame(seq))
        seq += 1
    assert jb.discarded >= 4 and jb.queued <= 2
    assert jb.target == 1                        # no jitter: the minimum depth
    deep = JitterProbe()
    deep.put(0, frame(0))
    deep.put(1, frame(0))
    for s in range(2, 252):
        deep.pull(jitter_samples=400)            # 50 ms of jitter: keep the depth
        deep.put(s, frame(0))
    assert deep.target == 2


def test_undecodable_and_oversized_payloads_are_counted_not_played():
    jb = JitterProbe()
    jb.put(0, b"\x01\x02\x03")                   # odd length: not int16 samples
    jb.put(1, frame(50))
    jb.put(2, bytes(5000))                       # larger than any frame the engine takes
    assert level(jb.pull()) == 0                 # concealed (nothing good before it)
    assert level(jb.pull()) == 50
    assert jb.undecodable == 2
