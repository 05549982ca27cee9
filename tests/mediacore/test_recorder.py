"""Call recorder (issue #3): a call's two directions in one stereo WAV (caller left, agent right),
written so that a kill -9 mid-call leaves a file that plays up to the last flush, repaired at
start-up, measured (size, SHA-256) when it closes, and archived to Ogg/Opus."""

import errno
import hashlib
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile
from native.recorder import WavRecorder

from mediacore.errors import MediaError
from mediacore.recording import (
    RecordingFile,
    RepairAction,
    convert_to_ogg_opus,
    finalise,
    read_layout,
    repair,
    repair_directory,
)

ROOT = Path(__file__).resolve().parents[2]
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def caller_signal(start: int, n: int) -> np.ndarray:
    s = np.arange(start, start + n)
    return ((s % 20000) - 10000).astype(np.int16)


def agent_signal(start: int, n: int) -> np.ndarray:
    s = np.arange(start, start + n)
    return (10000 - (s * 3) % 17000).astype(np.int16)


def record(path: Path, seconds: float, flush_ms: int = 500, rate: int = RATE) -> RecordingFile:
    frame = rate // 50
    rec = RecordingFile.create(path, rate, flush_ms)
    for start in range(0, int(seconds * rate), frame):
        rec.write(caller_signal(start, frame), agent_signal(start, frame))
    return rec


def read(path: Path) -> np.ndarray:
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    assert rate == RATE
    return data


def test_stereo_round_trip_caller_left_agent_right(tmp_path):
    path = tmp_path / "recordings" / "call-1.wav"
    rec = record(path, 2.0)
    info = rec.close()
    data = read(path)
    assert data.shape == (2 * RATE, 2)
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, 2 * RATE))
    np.testing.assert_array_equal(data[:, 1], agent_signal(0, 2 * RATE))
    assert info.duration_s == 2.0 and info.error is None and info.dropped_frames == 0
    assert soundfile.info(str(path)).subtype == "PCM_16"


def test_a_leg_without_audio_records_silence_on_its_side(tmp_path):
    rec = RecordingFile.create(tmp_path / "c.wav")
    rec.write(caller_signal(0, FRAME), None)
    rec.write(None, agent_signal(0, FRAME))
    rec.write(None, None, n=FRAME)
    rec.close()
    data = read(tmp_path / "c.wav")
    np.testing.assert_array_equal(data[:FRAME, 0], caller_signal(0, FRAME))
    assert not data[:FRAME, 1].any()
    assert not data[FRAME : 2 * FRAME, 0].any()
    np.testing.assert_array_equal(data[FRAME : 2 * FRAME, 1], agent_signal(0, FRAME))
    assert not data[2 * FRAME :].any() and len(data) == 3 * FRAME


def test_the_header_is_valid_while_recording_up_to_the_last_flush(tmp_path):
    path = tmp_path / "live.wav"
    rec = record(path, 1.2, flush_ms=500)
    # Two flushes of 4000 frames are on disk; 1600 frames wait in memory (never more than 0.5 s).
    assert rec.frames_written == 8000
    assert rec.kernel.frames_buffered == 1600 < rec.kernel.flush_frames == 4000
    data = read(path)
    assert len(data) == 8000
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, 8000))
    rec.close()
    assert len(read(path)) == int(1.2 * RATE)


def test_size_and_sha256_match_the_file(tmp_path):
    path = tmp_path / "sum.wav"
    info = record(path, 1.5).close()
    body = path.read_bytes()
    assert info.size_bytes == os.stat(path).st_size == len(body) == 44 + int(1.5 * RATE) * 4
    assert info.sha256 == hashlib.sha256(body).hexdigest()
    assert finalise(path) == (info.size_bytes, info.sha256, 1.5)


def test_a_recording_is_never_overwritten_and_is_private(tmp_path):
    path = tmp_path / "once.wav"
    umask = os.umask(0)
    os.umask(umask)
    record(path, 0.1).close()
    assert os.stat(path).st_mode & 0o777 == 0o640 & ~umask
    with pytest.raises(MediaError, match="already exists"):
        RecordingFile.create(path)
    with pytest.raises(MediaError, match=".wav"):
        RecordingFile.create(tmp_path / "x.mp3")


def test_bad_frames_are_clear_errors(tmp_path):
    with RecordingFile.create(tmp_path / "bad.wav") as rec:
        with pytest.raises(MediaError, match="int16"):
            rec.write(np.zeros(FRAME, dtype=np.float64), None)
        with pytest.raises(MediaError, match="same length"):
            rec.write(caller_signal(0, FRAME), agent_signal(0, 80))
        with pytest.raises(MediaError):
            rec.write(None, None)
    assert rec.kernel.closed
    with pytest.raises(ValueError):
        WavRecorder(os.open(os.devnull, os.O_WRONLY), RATE, 5000)


def test_a_full_disk_is_counted_not_crashing():
    fd = os.open("/dev/full", os.O_WRONLY)
    rec = WavRecorder(fd, RATE, 500)
    assert rec.error == errno.ENOSPC  # the header write already failed
    for start in range(0, RATE, FRAME):
        rec.write(caller_signal(start, FRAME), agent_signal(start, FRAME))
    assert rec.dropped_frames == RATE
    assert rec.frames_written == 0
    assert rec.close() == errno.ENOSPC
    assert rec.close() == errno.ENOSPC  # idempotent
    rec.write(caller_signal(0, FRAME), None)
    assert rec.dropped_frames == RATE + FRAME


def test_a_read_only_descriptor_is_counted_not_crashing(tmp_path):
    path = tmp_path / "ro.wav"
    path.write_bytes(b"")
    rec = WavRecorder(os.open(path, os.O_RDONLY), RATE, 200)
    rec.write(caller_signal(0, 4000), None)
    assert rec.error == errno.EBADF and rec.dropped_frames == 4000
    assert rec.close() == errno.EBADF


CHILD = textwrap.dedent(
    """
    import resource, signal, sys, time
    import numpy as np
    from mediacore.recording import RecordingFile

    def caller(start, n):
        s = np.arange(start, start + n)
        return ((s % 20000) - 10000).astype(np.int16)

    def agent(start, n):
        s = np.arange(start, start + n)
        return (10000 - (s * 3) % 17000).astype(np.int16)

    path, mode = sys.argv[1], sys.argv[2]
    if mode == "fsize":
        # A file size limit is a disk that fills up mid-call: write(2) returns short, then EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
    rec = RecordingFile.create(path, 8000, 500)
    start = 0
    reported = 0
    while True:
        rec.write(caller(start, 160), agent(start, 160))
        start += 160
        if rec.frames_written != reported:
            reported = rec.frames_written
            print("flushed", reported, flush=True)
        if mode == "pause" and start == 18400:
            print("paused", rec.frames_written, rec.kernel.frames_buffered, flush=True)
            time.sleep(60)
        if start >= 8000 * 300:
            sys.exit("not killed after 5 minutes of audio")   # bound the file if the test stalls
        if mode == "fsize" and start == 16000:
            rec.kernel.close()
            print("closed", rec.kernel.error, rec.frames_written, rec.dropped_frames, flush=True)
            sys.exit(0)
    """
)


@pytest.fixture
def child(tmp_path):
    """Run the recording script above in a real process; always reaped, killed if still alive."""
    procs = []

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def lines_until(proc: subprocess.Popen, word: str) -> list[str]:
    for line in proc.stdout:
        fields = line.split()
        if fields[0] == word:
            return fields[1:]
    raise AssertionError(f"the recording process ended (rc={proc.wait(timeout=10)}) before '{word}'")


def test_kill_9_while_idle_leaves_every_flushed_second_playable(tmp_path, child):
    path = tmp_path / "killed.wav"
    proc = child(str(path), "pause")
    written, buffered = map(int, lines_until(proc, "paused"))
    assert (written, buffered) == (16000, 2400)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    data = read(path)
    # Everything flushed survived; the 0.3 s still in memory is what a kill may cost.
    assert len(data) == 16000
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, 16000))
    np.testing.assert_array_equal(data[:, 1], agent_signal(0, 16000))
    assert repair(path).action is RepairAction.INTACT


def test_kill_9_mid_write_leaves_a_readable_prefix_that_repair_completes(tmp_path, child):
    path = tmp_path / "busy.wav"
    proc = child(str(path), "busy")
    for _ in range(3):
        flushed = int(lines_until(proc, "flushed")[0])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    data = read(path)
    assert len(data) >= flushed
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, len(data)))
    np.testing.assert_array_equal(data[:, 1], agent_signal(0, len(data)))
    report = repair(path)
    assert report.action in (RepairAction.INTACT, RepairAction.SIZES_FIXED)
    repaired = read(path)
    assert len(repaired) >= len(data)
    np.testing.assert_array_equal(repaired[:, 0], caller_signal(0, len(repaired)))
    assert os.stat(path).st_size == 44 + 4 * len(repaired)


def test_disk_filling_up_mid_call_keeps_whole_frames_and_counts_the_rest(tmp_path, child):
    path = tmp_path / "full.wav"
    # Room for the header, one flush of 4000 frames and 989.5 more: the second write is cut short
    # in the middle of a sample frame.
    limit = 44 + 16000 + 3958
    proc = child(str(path), "fsize", str(limit))
    err, written, dropped = map(int, lines_until(proc, "closed"))
    assert proc.wait(timeout=10) == 0
    assert err == errno.EFBIG
    assert written == 4989 and dropped == 16000 - 4989
    assert os.stat(path).st_size == 44 + 4 * 4989
    data = read(path)
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, 4989))
    assert repair(path).action is RepairAction.INTACT


def stale(path: Path, extra_frames: int, extra_bytes: bytes = b"") -> bytes:
    """A recording killed after write(2) but before the sizes were rewritten."""
    record(path, 1.0).close()
    tail = np.column_stack([caller_signal(RATE, extra_frames), agent_signal(RATE, extra_frames)])
    added = tail.astype("<i2").tobytes() + extra_bytes
    with open(path, "ab") as f:
        f.write(added)
    return added


def test_repair_extends_a_stale_header_and_cuts_a_half_frame(tmp_path):
    path = tmp_path / "stale.wav"
    stale(path, 100, b"\x01\x02")
    report = repair(path)
    assert report.action is RepairAction.SIZES_FIXED
    assert (report.data_bytes_before, report.data_bytes_after, report.truncated_bytes) == (32000, 32400, 2)
    data = read(path)
    assert len(data) == RATE + 100
    np.testing.assert_array_equal(data[:, 0], caller_signal(0, RATE + 100))
    layout = read_layout(path)
    assert layout.riff_bytes == os.stat(path).st_size - 8 == 36 + 32400
    assert repair(path).action is RepairAction.INTACT


def test_repair_shrinks_a_header_that_promises_missing_audio(tmp_path):
    path = tmp_path / "long.wav"
    record(path, 0.5).close()
    with open(path, "r+b") as f:
        f.seek(40)
        f.write(struct.pack("<I", 0xFFFFFFFF))  # as a streaming writer leaves it
        f.seek(4)
        f.write(struct.pack("<I", 0xFFFFFFFF))
    report = repair(path)
    assert report.action is RepairAction.SIZES_FIXED and report.data_bytes_after == 4000 * 4
    assert len(read(path)) == 4000


def test_repair_fixes_a_riff_size_alone(tmp_path):
    path = tmp_path / "riff.wav"
    record(path, 0.1).close()
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", 36))
    report = repair(path)
    assert report.action is RepairAction.SIZES_FIXED and report.truncated_bytes == 0
    assert read_layout(path).riff_bytes == os.stat(path).st_size - 8


def test_repair_leaves_intact_and_foreign_files_alone(tmp_path):
    good = tmp_path / "good.wav"
    record(good, 0.3).close()
    # A LIST chunk after the audio, as some editors append: the header is right as it is.
    listed = tmp_path / "listed.wav"
    record(listed, 0.3).close()
    with open(listed, "ab") as f:
        f.write(b"LIST" + struct.pack("<I", 10) + b"INFOabcdef")
    with open(listed, "r+b") as f:
        f.seek(4)
        f.write(struct.pack("<I", os.stat(listed).st_size - 8))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 4)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    before = {p: p.read_bytes() for p in (good, listed, garbage, empty)}
    assert repair(good).action is RepairAction.INTACT
    assert repair(listed).action is RepairAction.INTACT
    assert repair(garbage).action is RepairAction.UNREADABLE
    report = repair(empty)
    assert report.action is RepairAction.UNREADABLE and "RIFF" in report.reason
    assert {p: p.read_bytes() for p in before} == before
    with pytest.raises(MediaError):
        finalise(garbage)


def test_repair_directory_walks_the_recordings_tree(tmp_path):
    root = tmp_path / "recordings"
    (root / "2026" / "11").mkdir(parents=True)
    stale(root / "2026" / "11" / "a.wav", 10)
    record(root / "b.wav", 0.2).close()
    (root / "c.wav").write_bytes(b"RIFF")
    (root / "notes.txt").write_text("not a recording")
    reports = repair_directory(root)
    assert [(r.path.relative_to(root).as_posix(), r.action) for r in reports] == [
        ("2026/11/a.wav", RepairAction.SIZES_FIXED),
        ("b.wav", RepairAction.INTACT),
        ("c.wav", RepairAction.UNREADABLE),
    ]
    assert repair_directory(tmp_path / "missing") == []


def test_ogg_opus_archive_keeps_both_sides_apart(tmp_path):
    wav = tmp_path / "call.wav"
    rec = RecordingFile.create(wav)
    t = np.arange(2 * RATE) / RATE
    left = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    right = np.round(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    for start in range(0, len(t), FRAME):
        rec.write(left[start : start + FRAME], right[start : start + FRAME])
    rec.close()
    ogg = tmp_path / "call.ogg"
    info = convert_to_ogg_opus(wav, ogg)
    meta = soundfile.info(str(ogg))
    assert (meta.format, meta.subtype, meta.channels, meta.samplerate) == ("OGG", "OPUS", 2, RATE)
    assert info.size_bytes == os.stat(ogg).st_size < os.stat(wav).st_size
    assert info.sha256 == hashlib.sha256(ogg.read_bytes()).hexdigest()
    assert abs(info.duration_s - 2.0) < 0.05
    decoded, _ = soundfile.read(str(ogg), dtype="float64", always_2d=True)
    freqs = np.fft.rfftfreq(len(decoded), 1 / RATE)
    peaks = [freqs[np.argmax(np.abs(np.fft.rfft(decoded[:, ch])))] for ch in (0, 1)]
    assert abs(peaks[0] - 440) < 5 and abs(peaks[1] - 1000) < 5
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(MediaError, match="exists"):
        convert_to_ogg_opus(wav, ogg)


def test_ogg_opus_refuses_a_rate_opus_cannot_take(tmp_path):
    wav = tmp_path / "odd.wav"
    soundfile.write(str(wav), np.zeros((1000, 2), dtype=np.int16), 11025, subtype="PCM_16")
    with pytest.raises(MediaError, match="Opus"):
        convert_to_ogg_opus(wav, tmp_path / "odd.ogg")
