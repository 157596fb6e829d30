"""Voice messages (AMR-NB, ``#!AMR\\n`` files) to WAV for the browser, decoded by Debian's
``libopencore-amrnb0`` (the opencore-amr decoder, through ctypes): this module only walks
the file's frames and writes the WAV header; the codec is the library's.

A WeCom voice message is AMR narrow-band: 8 kHz mono, one 20 ms frame of 160 samples per
frame header byte (mode in bits 3–6)."""

from __future__ import annotations

import ctypes as ct
import ctypes.util
import struct
import threading

from scrm_fast.errors import InputError

MAGIC = b"#!AMR\n"
# bytes after the frame header byte, per mode (0–7 speech, 8 SID, 15 no data; others unused)
FRAME_BYTES = {0: 12, 1: 13, 2: 15, 3: 17, 4: 19, 5: 20, 6: 26, 7: 31, 8: 5, 15: 0}
MAX_FRAMES = 30 * 60 * 50  # 30 minutes

_lib = None
_lock = threading.Lock()


def _library():
    global _lib
    with _lock:
        if _lib is None:
            name = ctypes.util.find_library("opencore-amrnb") or "libopencore-amrnb.so.0"
            try:
                lib = ct.CDLL(name)
            except OSError:
                raise InputError("playing voice needs libopencore-amrnb0 (scripts/setup.sh installs it)") from None
            lib.Decoder_Interface_init.argtypes, lib.Decoder_Interface_init.restype = [], ct.c_void_p
            lib.Decoder_Interface_exit.argtypes, lib.Decoder_Interface_exit.restype = [ct.c_void_p], None
            lib.Decoder_Interface_Decode.argtypes = [ct.c_void_p, ct.c_char_p, ct.POINTER(ct.c_short), ct.c_int]
            lib.Decoder_Interface_Decode.restype = None
            lib.Encoder_Interface_init.argtypes, lib.Encoder_Interface_init.restype = [ct.c_int], ct.c_void_p
            lib.Encoder_Interface_exit.argtypes, lib.Encoder_Interface_exit.restype = [ct.c_void_p], None
            lib.Encoder_Interface_Encode.argtypes = [ct.c_void_p, ct.c_int, ct.POINTER(ct.c_short), ct.c_char_p,
                                                     ct.c_int]
            lib.Encoder_Interface_Encode.restype = ct.c_int
            _lib = lib
        return _lib


def frames(data: bytes) -> list[bytes]:
    """The frames of an AMR-NB file (header byte included); a damaged file is an InputError."""
    if not data.startswith(MAGIC):
        raise InputError("not an AMR-NB file (no #!AMR header)")
    out, at = [], len(MAGIC)
    while at < len(data):
        mode = (data[at] >> 3) & 0x0F
        n = FRAME_BYTES.get(mode)
        if n is None:
            raise InputError(f"AMR frame {len(out)}: mode {mode} is not AMR-NB")
        if at + 1 + n > len(data):
            raise InputError(f"AMR frame {len(out)} is cut short")
        out.append(data[at:at + 1 + n])
        at += 1 + n
        if len(out) > MAX_FRAMES:
            raise InputError("AMR voice longer than 30 minutes")
    return out


def amr_to_wav(data: bytes) -> bytes:
    """16-bit PCM WAV (8 kHz mono) of an AMR-NB file."""
    fs = frames(data)
    lib = _library()
    pcm = (ct.c_short * 160)()
    chunks = []
    state = lib.Decoder_Interface_init()
    if not state:
        raise InputError("the AMR decoder could not start")
    try:
        for f in fs:
            lib.Decoder_Interface_Decode(state, f, pcm, 0)
            chunks.append(bytes(pcm))
    finally:
        lib.Decoder_Interface_exit(state)
    body = b"".join(chunks)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)  # PCM, mono, 8 kHz, 16 bit
    head = b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVEfmt " + fmt
    return head + b"data" + struct.pack("<I", len(body)) + body


def encode_amr(samples: list[int], mode: int = 7) -> bytes:
    """PCM (8 kHz, 16-bit values) to an AMR-NB file with the library's encoder (for tests
    and the simulator's voice messages)."""
    lib = _library()
    state = lib.Encoder_Interface_init(0)
    out = [MAGIC]
    buf = ct.create_string_buffer(64)
    try:
        for i in range(0, len(samples) - 159, 160):
            frame = (ct.c_short * 160)(*samples[i:i + 160])
            n = lib.Encoder_Interface_Encode(state, mode, frame, buf, 0)
            out.append(buf.raw[:n])
    finally:
        lib.Encoder_Interface_exit(state)
    return b"".join(out)
