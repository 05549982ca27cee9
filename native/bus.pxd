# The media bus: the one PCM format every frame-mode endpoint, player, echo, PCM port, mixer and
# recorder speaks inside the engine, and the codec slot that turns RTP payloads into it and back.
# Raising the bus to 16 kHz later means changing BUS_RATE/BUS_FRAME here, not the modules.

from libc.stdint cimport int16_t, uint8_t

cdef enum:
    # 20 ms mono 16-bit frames (RFC 3551 §4.5: 20 ms is the default audio packetization).
    BUS_RATE = 8000
    BUS_FRAME = 160          # BUS_RATE * 20 ms
    BUS_TICKS_PER_SECOND = 50
    # Largest encoded payload of one frame the engine builds or buffers: 20 ms of L16 at 48 kHz
    # (1920 octets) fits, and so does Opus at its maximum (RFC 6716 §3.4: 1275 octets a frame).
    MAX_FRAME_PAYLOAD = 1920

# Codec families: endpoints of one family can relay packets (G.711 µ-law <-> A-law is a table
# lookup per octet); between families the audio goes through bus frames. L16 and Opus relay only
# to the same codec at the same clock rate: their family is FAMILY_CODEC * codec + clock rate.
cdef enum CodecFamily:
    FAMILY_G711 = 1
    FAMILY_PCM = 2           # a PCM port: bus frames, no RTP
    FAMILY_CODEC = 0x100000  # above every clock rate

# The codec slot: a frame-mode endpoint decodes and encodes through these two pointers, so a
# codec with state (Opus) plugs in with its state pointer. Both return the number of samples
# (decoder) or octets (encoder) written, or -1 if the input cannot be handled.
ctypedef Py_ssize_t (*frame_decoder)(void* state, const uint8_t* payload, Py_ssize_t n,
                                     int16_t* out, Py_ssize_t max_out) noexcept nogil
ctypedef Py_ssize_t (*frame_encoder)(void* state, const int16_t* pcm, Py_ssize_t n,
                                     uint8_t* out, Py_ssize_t max_out) noexcept nogil
