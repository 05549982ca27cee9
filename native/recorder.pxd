# Crash-safe stereo WAV recorder for the media engine's 20 ms tick (issue #3).
#
# A call's two directions go to one RIFF/WAVE PCM 16-bit file, caller on the left channel, agent on
# the right. Audio is written with write(2) in chunks of at most one second, and after each chunk the
# RIFF and data chunk sizes are rewritten with pwrite(2), so a process killed at any moment leaves a
# file that plays up to the last chunk (mediacore.recording.repair() fixes the one remaining window,
# a kill between the write and the pwrite). Errors (ENOSPC, EIO, EFBIG...) never stop the engine:
# the first errno is kept in the struct, later audio is dropped and counted.
#
# Threading: every function runs without the GIL; one Recorder is used by one thread at a time.

from libc.stdint cimport int16_t, int64_t

cdef enum:
    # The canonical header: "RIFF" size "WAVE", a 16-byte "fmt " chunk, then "data" size (44 bytes).
    WAV_HEADER_BYTES = 44
    # Issue #3: a kill -9 may lose at most the last second, so never hold more than that in memory.
    RECORDER_MAX_FLUSH_MS = 1000
    RECORDER_DEFAULT_FLUSH_MS = 500
    RECORDER_CHANNELS = 2


ctypedef struct Recorder:
    int fd                  # owned: closed by recorder_close(); -1 once closed
    int sample_rate         # the bus rate (8000 today, 16000 later)
    int flush_frames        # sample frames (a left and a right sample each) held before a write(2)
    int buffered            # sample frames waiting in `buf`
    int16_t* buf            # interleaved little-endian L R L R ..., flush_frames * 2 samples
    int64_t data_bytes      # audio bytes on disk, the size the header announces
    int64_t frames_written  # sample frames on disk
    int64_t dropped_frames  # sample frames discarded because of `error` (or written after close)
    int error               # the first errno seen; 0 while healthy
    int closed              # recorder_close() has run


# Takes ownership of `fd` (opened O_WRONLY|O_CREAT|O_EXCL by the caller) and writes the header.
# Returns NULL (errno EINVAL or ENOMEM) without touching the fd when the arguments are bad or memory
# is short; a failed header write returns a Recorder whose `error` is set.
cdef Recorder* recorder_open(int fd, int sample_rate, int flush_ms) noexcept nogil
# Appends `n` sample frames; a NULL side records silence on that channel (a leg without audio).
cdef void recorder_write(Recorder* rec, const int16_t* left, const int16_t* right, int n) noexcept nogil
# Writes out what is buffered and updates the header sizes; returns `error` (0 when healthy).
cdef int recorder_flush(Recorder* rec) noexcept nogil
# Flushes, fixes the header, fsync()s and closes the fd; idempotent; returns `error`.
# fsync can block for milliseconds on a busy disk: call it off the tick when that matters.
cdef int recorder_close(Recorder* rec) noexcept nogil
# Closes (if still open) and releases the memory.
cdef void recorder_free(Recorder* rec) noexcept nogil


# The Python-side owner. Two ways for the engine to use it:
#   - borrow `wrapper.rec` while Python keeps the wrapper alive and leaves it alone; once the engine
#     has let go, Python calls close() in a thread executor (fsync stays off the tick);
#   - take it with detach(), after which the engine alone closes and frees it.
cdef class WavRecorder:
    cdef Recorder* rec
    # Hands the Recorder to native code (the engine), which then owns it: it must call
    # recorder_close() and recorder_free(). The wrapper is closed afterwards.
    cdef Recorder* detach(self) noexcept
    cdef Recorder* _live(self) except NULL
