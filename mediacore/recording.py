"""Call recordings on disk: crash-safe stereo WAV files, their size and checksum, start-up repair,
and Ogg/Opus archive copies.

A recording is written by the native kernel (`native.recorder`): caller on the left channel, agent
on the right, 16-bit PCM at the bus rate, flushed at least once a second with the header sizes
rewritten after every flush. A process killed mid-call therefore leaves a file that plays up to the
last flush; the one window left (killed between writing audio and rewriting the sizes, or power
lost before the sizes reached the disk) is closed by `repair()`, which the server runs over
`<data dir>/recordings/` at start-up, before the media engine opens any new recording.

Everything here that reads or writes whole files (`RecordingFile.close`, `finalise`, `repair`,
`repair_directory`, `convert_to_ogg_opus`) blocks for as long as the disk takes: call it from a
thread executor (`await loop.run_in_executor(None, finalise, path)`), never on the event loop and
never on the media engine's tick.
"""

from __future__ import annotations

import errno as errno_codes
import hashlib
import os
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import soundfile
from native.recorder import WavRecorder

from mediacore.errors import MediaError

# Issue #3: a kill -9 loses at most the last flush; half a second keeps write(2) calls rare (two a
# second per call) while losing little. The kernel refuses more than 1000 ms.
DEFAULT_FLUSH_MS = 500
# Hashing and conversion read this much at a time: large enough for few syscalls, small enough
# not to matter next to thousands of calls' buffers.
READ_CHUNK = 1 << 20
# RFC 7845 §5.1 / libopus: Opus encodes 8, 12, 16, 24 or 48 kHz input; libsndfile does not resample.
OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
# RIFF sizes are unsigned 32-bit little-endian fields.
RIFF_SIZE_MAX = 0xFFFFFFFF


@dataclass(frozen=True)
class RecordingInfo:
    """What the database index keeps about a closed recording."""

    path: Path
    "The file on disk."
    size_bytes: int
    "Its size, as os.stat reports it."
    sha256: str
    "SHA-256 of the whole file, lowercase hex."
    duration_s: float
    "Seconds of audio the file holds."
    error: str | None = None
    "Why audio was lost while recording (e.g. 'ENOSPC: No space left on device'), else None."
    dropped_frames: int = 0
    "Sample frames not written because of `error`."


class RecordingFile:
    """One stereo WAV recording being written: the caller on the left, the agent on the right.

    Open it with `RecordingFile.create()`; feed it frames with `write()` (Python-fed legs, tests) or
    hand `kernel` to the media engine, which then writes from its tick. `close()` flushes, fixes
    the header, fsyncs and returns the size and checksum for the index.
    """

    def __init__(self, path: Path, kernel: WavRecorder) -> None:
        self.path = path
        self.kernel = kernel

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], sample_rate: int = 8000, flush_ms: int = DEFAULT_FLUSH_MS
    ) -> RecordingFile:
        """Create `path` (it must not exist: a recording is never overwritten) and write its header."""
        target = Path(path)
        if target.suffix.lower() != ".wav":
            raise MediaError(f"a recording is a .wav file, got {target.name!r}")
        if not 0 < flush_ms <= 1000:
            raise MediaError(f"flush interval must be 1..1000 ms, got {flush_ms}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        except FileExistsError:
            raise MediaError(f"recording {target} already exists") from None
        except OSError as exc:
            raise MediaError(f"cannot create recording {target}: {exc.strerror}") from exc
        try:
            kernel = WavRecorder(fd, sample_rate, flush_ms)
        except (ValueError, MemoryError) as exc:
            os.close(fd)
            target.unlink(missing_ok=True)
            raise MediaError(str(exc)) from exc
        return cls(target, kernel)

    def write(self, left: np.ndarray | None, right: np.ndarray | None, n: int | None = None) -> None:
        """Append one frame per side (int16, same length); `None` records silence on that side."""
        for side in (left, right):
            if side is not None and (
                not isinstance(side, np.ndarray) or side.dtype != np.int16 or side.ndim != 1
            ):
                raise MediaError("a frame is a one-dimensional int16 numpy array")
        try:
            self.kernel.write(
                None if left is None else np.ascontiguousarray(left),
                None if right is None else np.ascontiguousarray(right),
                n,
            )
        except ValueError as exc:
            raise MediaError(str(exc)) from exc

    def flush(self) -> None:
        self.kernel.flush()

    @property
    def error(self) -> str | None:
        """The first write error, as 'ENOSPC: No space left on device', or None."""
        return describe_errno(self.kernel.error)

    @property
    def dropped_frames(self) -> int:
        return self.kernel.dropped_frames

    @property
    def frames_written(self) -> int:
        return self.kernel.frames_written

    def close(self) -> RecordingInfo:
        """Flush, fix the header, fsync, close; then measure the file for the index (blocking)."""
        code = self.kernel.close()
        _fsync_directory(self.path.parent)
        size, digest, duration = finalise(self.path)
        return RecordingInfo(
            self.path, size, digest, duration, describe_errno(code), self.kernel.dropped_frames
        )

    def __enter__(self) -> RecordingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.kernel.closed:
            self.kernel.close()


def _fsync_directory(directory: Path) -> None:
    # fsync(2) on the file does not persist its directory entry; without this a power cut could
    # lose a recording the index already lists.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_errno(code: int) -> str | None:
    if code == 0:
        return None
    return f"{errno_codes.errorcode.get(code, str(code))}: {os.strerror(code)}"


@dataclass(frozen=True)
class WavLayout:
    """Where a WAV file's audio is and what its header claims (Microsoft RIFF WAVE, 1991)."""

    channels: int
    sample_rate: int
    block_align: int
    "Bytes per sample frame (all channels)."
    data_offset: int
    "File offset of the first audio byte."
    data_bytes: int
    "The data chunk size the header announces."
    riff_bytes: int
    "The RIFF chunk size the header announces (file size - 8 when consistent)."
    file_bytes: int


def read_layout(path: str | os.PathLike[str]) -> WavLayout:
    """Parse the RIFF chunks up to `data`; raise MediaError when the file is not a PCM WAV file."""
    with open(path, "rb") as f:
        return _read_layout(f, os.fstat(f.fileno()).st_size)


def _read_layout(f, file_bytes: int) -> WavLayout:
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise MediaError("not a RIFF/WAVE file")
    riff_bytes = struct.unpack_from("<I", head, 4)[0]
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while True:
        f.seek(pos)
        chunk = f.read(8)
        if len(chunk) < 8:
            raise MediaError("no data chunk")
        chunk_id, size = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
        if chunk_id == b"fmt ":
            body = f.read(min(size, 40))
            if len(body) < 16:
                raise MediaError("fmt chunk too short")
            _tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
            fmt = (channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise MediaError("data chunk before the fmt chunk")
            channels, rate, block_align, _bits = fmt
            if channels == 0 or rate == 0 or block_align == 0:
                raise MediaError(f"unusable fmt chunk: {channels} channels, {rate} Hz, block {block_align}")
            return WavLayout(channels, rate, block_align, pos + 8, size, riff_bytes, file_bytes)
        # RIFF chunks are padded to an even length.
        pos += 8 + size + (size & 1)


def finalise(path: str | os.PathLike[str]) -> tuple[int, str, float]:
    """(size_bytes, sha256_hex, duration_s) of a closed recording, for the database index."""
    try:
        with open(path, "rb") as f:
            size, digest = _sha256(f)
            layout = _read_layout(f, size)
    except OSError as exc:
        raise MediaError(f"cannot read recording {path}: {exc.strerror}") from exc
    audio = min(layout.data_bytes, size - layout.data_offset)
    return size, digest, (audio // layout.block_align) / layout.sample_rate


def _sha256(f) -> tuple[int, str]:
    """Size and SHA-256 of an open file, both from the same read so they cannot disagree."""
    digest = hashlib.sha256()
    size = 0
    f.seek(0)
    while chunk := f.read(READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class RepairAction(Enum):
    INTACT = "intact"
    "The header matches the file; nothing was changed."
    SIZES_FIXED = "sizes_fixed"
    "The RIFF/data sizes were rewritten (and a partial trailing sample frame cut off)."
    UNREADABLE = "unreadable"
    "Not a WAV file this can repair (no header, no data chunk); left untouched."


@dataclass(frozen=True)
class RepairReport:
    path: Path
    action: RepairAction
    data_bytes_before: int = 0
    "The data size the header announced."
    data_bytes_after: int = 0
    "The data size it announces now."
    truncated_bytes: int = 0
    "Bytes of a partial sample frame cut from the end."
    reason: str = ""
    "Why the file is unreadable, for the operator."


def repair(path: str | os.PathLike[str]) -> RepairReport:
    """Make a WAV recording's header agree with its length after a crash; report what was done.

    Only for files no process is writing: run it at start-up before the engine opens recordings.
    """
    target = Path(path)
    try:
        with open(target, "r+b") as f:
            return _repair_open(target, f)
    except OSError as exc:
        return RepairReport(target, RepairAction.UNREADABLE, reason=exc.strerror or str(exc))


def _repair_open(target: Path, f) -> RepairReport:
    file_bytes = os.fstat(f.fileno()).st_size
    try:
        layout = _read_layout(f, file_bytes)
    except MediaError as exc:
        return RepairReport(target, RepairAction.UNREADABLE, reason=str(exc))
    available = file_bytes - layout.data_offset
    declared = layout.data_bytes
    if declared <= available and declared % layout.block_align == 0:
        end = layout.data_offset + declared + (declared & 1)
        if end >= file_bytes or _chunks_fill(f, end, file_bytes):
            if layout.riff_bytes == file_bytes - 8:
                return RepairReport(target, RepairAction.INTACT, declared, declared)
            _put_u32(f, 4, file_bytes - 8)
            os.fsync(f.fileno())
            return RepairReport(target, RepairAction.SIZES_FIXED, declared, declared)
    # The data chunk is the last one (as the recorder writes it): it runs to the end of the file,
    # less a sample frame cut in half by the crash.
    data_bytes = available - available % layout.block_align
    if layout.data_offset + data_bytes - 8 > RIFF_SIZE_MAX:
        return RepairReport(
            target, RepairAction.UNREADABLE, declared, declared, reason="too large for RIFF sizes"
        )
    truncated = available - data_bytes
    if truncated:
        f.truncate(layout.data_offset + data_bytes)
    _put_u32(f, layout.data_offset - 4, data_bytes)
    _put_u32(f, 4, layout.data_offset + data_bytes - 8)
    os.fsync(f.fileno())
    return RepairReport(target, RepairAction.SIZES_FIXED, declared, data_bytes, truncated)


def _chunks_fill(f, pos: int, file_bytes: int) -> bool:
    """True when the bytes after the data chunk are well-formed chunks ending exactly at the end of
    the file (a LIST/INFO chunk some other tool appended), so the header is right as it is."""
    while pos < file_bytes:
        f.seek(pos)
        chunk = f.read(8)
        if len(chunk) < 8 or not all(32 <= c < 127 for c in chunk[:4]):
            return False
        size = struct.unpack_from("<I", chunk, 4)[0]
        pos += 8 + size + (size & 1)
    return pos == file_bytes


def _put_u32(f, offset: int, value: int) -> None:
    f.seek(offset)
    f.write(struct.pack("<I", value))
    f.flush()


def repair_directory(directory: str | os.PathLike[str]) -> list[RepairReport]:
    """Repair every .wav under `directory` (recursively); one report per file, in path order."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return [repair(p) for p in sorted(root.rglob("*")) if p.suffix.lower() == ".wav" and p.is_file()]


def convert_to_ogg_opus(wav_path: str | os.PathLike[str], ogg_path: str | os.PathLike[str]) -> RecordingInfo:
    """Encode a closed WAV recording to Ogg/Opus for the archive (lossy, about 1/7 the size).

    Runs after close, off the hot path, in a thread executor: it takes about as long as encoding the
    audio does. The Ogg file appears complete or not at all (written under a temporary name, fsynced,
    then renamed); an existing `ogg_path` is never overwritten.
    """
    source = Path(wav_path)
    target = Path(ogg_path)
    if target.exists():
        raise MediaError(f"{target} already exists")
    try:
        info = soundfile.info(str(source))
    except (RuntimeError, OSError) as exc:
        raise MediaError(f"cannot read {source}: {exc}") from exc
    if info.samplerate not in OPUS_RATES:
        raise MediaError(f"Opus takes 8, 12, 16, 24 or 48 kHz audio, {source} is {info.samplerate} Hz")
    partial = target.with_name(target.name + ".part")
    try:
        with (
            soundfile.SoundFile(str(source)) as src,
            soundfile.SoundFile(
                str(partial),
                "x",
                samplerate=info.samplerate,
                channels=info.channels,
                format="OGG",
                subtype="OPUS",
            ) as dst,
        ):
            for block in src.blocks(blocksize=info.samplerate * 10, dtype="int16"):
                dst.write(block)
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except (RuntimeError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise MediaError(f"cannot convert {source} to Ogg/Opus: {exc}") from exc
    with open(target, "rb") as f:
        size, digest = _sha256(f)
    return RecordingInfo(target, size, digest, info.frames / info.samplerate)
