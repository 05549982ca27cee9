# cython: language_level=3
"""Crash-safe stereo WAV recorder: the kernel the engine calls each tick, and `WavRecorder`, a thin
Python wrapper over it for tests and for recordings fed from Python (mediacore.recording).

File layout (the canonical 44-byte WAVE header, Microsoft "Multimedia Programming Interface and
Data Specifications 1.0", 1991): "RIFF" <file size - 8> "WAVE", "fmt " <16> PCM(1) channels rate
byte-rate block-align bits, "data" <audio bytes>, then interleaved little-endian 16-bit samples.
"""

from libc.errno cimport EFBIG, EINTR, EINVAL, EIO, ENOMEM, errno
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
from posix.types cimport off_t
from posix.unistd cimport close, fsync, ftruncate, pwrite, write

cdef extern from *:
    """
    #define CC_HOST_BIG_ENDIAN (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    """
    int CC_HOST_BIG_ENDIAN
    uint16_t __builtin_bswap16(uint16_t x) nogil

# RIFF sizes are 32-bit: the data chunk can hold at most 4 GiB - 1 minus the 36 header bytes that
# the RIFF size also counts (37 hours of 8 kHz stereo). Past that the recorder stops with EFBIG.
cdef int64_t MAX_DATA_BYTES = 0xFFFFFFFF - 36
cdef int BLOCK_ALIGN = RECORDER_CHANNELS * 2


cdef inline void _put_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _put_le16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _put_tag(uint8_t* dst, const char* tag) noexcept nogil:
    dst[0] = <uint8_t>tag[0]
    dst[1] = <uint8_t>tag[1]
    dst[2] = <uint8_t>tag[2]
    dst[3] = <uint8_t>tag[3]


cdef inline int16_t _le(int16_t s) noexcept nogil:
    # WAV samples are little-endian; the test folds away on x86 and ARM.
    if CC_HOST_BIG_ENDIAN:
        return <int16_t>__builtin_bswap16(<uint16_t>s)
    return s


cdef void _fail(Recorder* rec, int err) noexcept nogil:
    # Keep the first error: it is the cause, later ones are consequences.
    if rec.error == 0:
        rec.error = err if err != 0 else EIO


cdef int _write_all(int fd, const uint8_t* p, size_t length, size_t* done) noexcept nogil:
    """write(2) until `length` bytes are out; a short write is continued, EINTR retried."""
    cdef ssize_t r
    done[0] = 0
    while done[0] < length:
        r = write(fd, p + done[0], length - done[0])
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return EIO
        done[0] += <size_t>r
    return 0


cdef int _pwrite_all(int fd, const uint8_t* p, size_t length, off_t offset) noexcept nogil:
    cdef ssize_t r
    cdef size_t done = 0
    while done < length:
        r = pwrite(fd, p + done, length - done, offset + <off_t>done)
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return EIO
        done += <size_t>r
    return 0


cdef int _write_sizes(Recorder* rec) noexcept nogil:
    """Rewrite the RIFF size (offset 4) and data size (offset 40) for what is on disk."""
    cdef uint8_t field[4]
    cdef int err
    _put_le32(field, <uint32_t>(rec.data_bytes + 36))
    err = _pwrite_all(rec.fd, field, 4, 4)
    if err == 0:
        _put_le32(field, <uint32_t>rec.data_bytes)
        err = _pwrite_all(rec.fd, field, 4, 40)
    return err


cdef Recorder* recorder_open(int fd, int sample_rate, int flush_ms) noexcept nogil:
    cdef Recorder* rec
    cdef uint8_t header[WAV_HEADER_BYTES]
    cdef size_t done
    cdef int err
    if fd < 0 or sample_rate <= 0 or sample_rate > 384000 or flush_ms <= 0 or flush_ms > RECORDER_MAX_FLUSH_MS:
        errno = EINVAL
        return NULL
    rec = <Recorder*>malloc(sizeof(Recorder))
    if rec == NULL:
        errno = ENOMEM
        return NULL
    memset(rec, 0, sizeof(Recorder))
    rec.fd = fd
    rec.sample_rate = sample_rate
    rec.flush_frames = <int>((<int64_t>sample_rate * flush_ms) // 1000)
    if rec.flush_frames < 1:
        rec.flush_frames = 1
    rec.buf = <int16_t*>malloc(<size_t>rec.flush_frames * BLOCK_ALIGN)
    if rec.buf == NULL:
        free(rec)
        errno = ENOMEM
        return NULL

    _put_tag(header, b"RIFF")
    _put_le32(header + 4, 36)
    _put_tag(header + 8, b"WAVE")
    _put_tag(header + 12, b"fmt ")
    _put_le32(header + 16, 16)
    _put_le16(header + 20, 1)                                  # WAVE_FORMAT_PCM
    _put_le16(header + 22, RECORDER_CHANNELS)
    _put_le32(header + 24, <uint32_t>sample_rate)
    _put_le32(header + 28, <uint32_t>(sample_rate * BLOCK_ALIGN))   # bytes per second
    _put_le16(header + 32, <uint16_t>BLOCK_ALIGN)
    _put_le16(header + 34, 16)                                 # bits per sample
    _put_tag(header + 36, b"data")
    _put_le32(header + 40, 0)
    err = _write_all(fd, header, WAV_HEADER_BYTES, &done)
    if err != 0:
        _fail(rec, err)
    return rec


cdef int recorder_flush(Recorder* rec) noexcept nogil:
    cdef size_t length
    cdef size_t done = 0
    cdef int64_t whole
    cdef int err
    if rec.buffered == 0 or rec.error != 0 or rec.fd < 0:
        if rec.error != 0 or rec.fd < 0:
            rec.dropped_frames += rec.buffered
        rec.buffered = 0
        return rec.error
    length = <size_t>rec.buffered * BLOCK_ALIGN
    if rec.data_bytes + <int64_t>length > MAX_DATA_BYTES:
        # The 32-bit RIFF sizes are full; the file stays valid at its current length.
        rec.dropped_frames += rec.buffered
        rec.buffered = 0
        _fail(rec, EFBIG)
        return rec.error
    err = _write_all(rec.fd, <const uint8_t*>rec.buf, length, &done)
    if err != 0:
        # Only whole sample frames count; a partial one at the end is cut off (when the disk lets
        # us) so the data chunk stays a whole number of blocks.
        whole = <int64_t>(done // BLOCK_ALIGN)
        rec.data_bytes += whole * BLOCK_ALIGN
        rec.frames_written += whole
        rec.dropped_frames += rec.buffered - whole
        rec.buffered = 0
        if done % BLOCK_ALIGN:
            ftruncate(rec.fd, <off_t>(WAV_HEADER_BYTES + rec.data_bytes))
        _fail(rec, err)
        _write_sizes(rec)
        return rec.error
    rec.data_bytes += <int64_t>length
    rec.frames_written += rec.buffered
    rec.buffered = 0
    # The audio is out before the sizes that announce it, so a kill in between leaves a header
    # that is too short (repairable), never one that promises audio that is not there.
    err = _write_sizes(rec)
    if err != 0:
        _fail(rec, err)
    return rec.error


cdef void recorder_write(Recorder* rec, const int16_t* left, const int16_t* right, int n) noexcept nogil:
    cdef int take
    cdef int i
    cdef int16_t* dst
    if n <= 0:
        return
    if rec.error != 0 or rec.closed:
        rec.dropped_frames += n
        return
    while n > 0:
        take = rec.flush_frames - rec.buffered
        if take > n:
            take = n
        dst = rec.buf + <size_t>rec.buffered * RECORDER_CHANNELS
        if left != NULL and right != NULL:
            for i in range(take):
                dst[2 * i] = _le(left[i])
                dst[2 * i + 1] = _le(right[i])
        elif left != NULL:
            for i in range(take):
                dst[2 * i] = _le(left[i])
                dst[2 * i + 1] = 0
        elif right != NULL:
            for i in range(take):
                dst[2 * i] = 0
                dst[2 * i + 1] = _le(right[i])
        else:
            memset(dst, 0, <size_t>take * BLOCK_ALIGN)
        rec.buffered += take
        n -= take
        if left != NULL:
            left += take
        if right != NULL:
            right += take
        if rec.buffered >= rec.flush_frames:
            if recorder_flush(rec) != 0:
                rec.dropped_frames += n
                return


cdef int recorder_close(Recorder* rec) noexcept nogil:
    if rec.closed:
        return rec.error
    recorder_flush(rec)
    rec.closed = 1
    if rec.fd >= 0:
        # The index records size and checksum at close: what was written must be on disk by then,
        # also after an error (the audio before it is still a valid recording).
        if fsync(rec.fd) != 0:
            _fail(rec, errno)
        if close(rec.fd) != 0 and errno != EINTR:
            _fail(rec, errno)
        rec.fd = -1
    return rec.error


cdef void recorder_free(Recorder* rec) noexcept nogil:
    if rec == NULL:
        return
    recorder_close(rec)
    free(rec.buf)
    free(rec)


cdef class WavRecorder:
    """A stereo WAV recording on an open file descriptor (which it owns from now on).

    `write(left, right)` takes int16 numpy arrays (or anything exposing contiguous int16 samples);
    `None` for a side records silence there, `n` gives the length when both sides are `None`.
    Errors never raise during writes: they are kept in `error` (an errno) and later audio is
    counted in `dropped_frames`, exactly as in the engine.
    """

    def __cinit__(self, int fd, int sample_rate=8000, int flush_ms=RECORDER_DEFAULT_FLUSH_MS):
        self.rec = NULL
        if fd < 0:
            raise ValueError(f"not an open file descriptor: {fd}")
        if sample_rate <= 0 or sample_rate > 384000:
            raise ValueError(f"sample rate must be 1..384000 Hz, got {sample_rate}")
        if flush_ms <= 0 or flush_ms > RECORDER_MAX_FLUSH_MS:
            raise ValueError(f"flush interval must be 1..{RECORDER_MAX_FLUSH_MS} ms, got {flush_ms}")
        with nogil:
            self.rec = recorder_open(fd, sample_rate, flush_ms)
        if self.rec == NULL:
            raise MemoryError("no memory for the recorder buffer")

    def __dealloc__(self):
        if self.rec != NULL:
            with nogil:
                recorder_free(self.rec)
            self.rec = NULL

    cdef Recorder* detach(self) noexcept:
        cdef Recorder* rec = self.rec
        self.rec = NULL
        return rec

    cdef Recorder* _live(self) except NULL:
        if self.rec == NULL:
            raise ValueError("the recorder was handed to the engine")
        return self.rec

    def write(self, const int16_t[::1] left, const int16_t[::1] right, n=None) -> None:
        cdef Recorder* rec = self._live()
        cdef Py_ssize_t count
        cdef const int16_t* lp = NULL
        cdef const int16_t* rp = NULL
        if left is None and right is None:
            if n is None:
                raise ValueError("give n when both sides are silent")
            count = n
        elif left is not None and right is not None and left.shape[0] != right.shape[0]:
            raise ValueError(f"both sides need the same length, got {left.shape[0]} and {right.shape[0]}")
        else:
            count = left.shape[0] if left is not None else right.shape[0]
            if n is not None and n != count:
                raise ValueError(f"n={n} does not match the frame length {count}")
        if count < 0 or count > 0x7FFFFFFF:
            raise ValueError(f"bad frame length {count}")
        if count == 0:
            return
        if left is not None:
            lp = &left[0]
        if right is not None:
            rp = &right[0]
        with nogil:
            recorder_write(rec, lp, rp, <int>count)

    def flush(self) -> int:
        """Write out the buffered audio and update the header; returns `error`."""
        cdef Recorder* rec = self._live()
        with nogil:
            recorder_flush(rec)
        return rec.error

    def close(self) -> int:
        """Flush, fix the header, fsync and close the descriptor; returns `error` (0 when fine)."""
        cdef Recorder* rec = self._live()
        with nogil:
            recorder_close(rec)
        return rec.error

    @property
    def error(self) -> int:
        """The first errno seen (0 while healthy)."""
        return self._live().error

    @property
    def dropped_frames(self) -> int:
        return self._live().dropped_frames

    @property
    def frames_written(self) -> int:
        """Sample frames on disk (announced by the header)."""
        return self._live().frames_written

    @property
    def frames_buffered(self) -> int:
        return self._live().buffered

    @property
    def data_bytes(self) -> int:
        return self._live().data_bytes

    @property
    def sample_rate(self) -> int:
        return self._live().sample_rate

    @property
    def flush_frames(self) -> int:
        return self._live().flush_frames

    @property
    def closed(self) -> bool:
        return self.rec == NULL or self.rec.closed != 0
