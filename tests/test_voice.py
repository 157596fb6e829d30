"""Voice messages to WAV through Debian's opencore-amr decoder: a 440 Hz tone encoded by
the library's encoder comes back as 440 Hz (counted zero crossings, an oracle apart from
both), the WAV header is right, damaged files are clear errors."""

from __future__ import annotations

import math
import struct

import pytest

from scrm_fast.errors import InputError
from scrm_fast.voice import amr_to_wav, encode_amr, frames


def test_a_tone_survives_the_round_trip():
    tone = [int(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(8000 * 2)]  # 2 s
    amr = encode_amr(tone)
    assert amr.startswith(b"#!AMR\n") and len(frames(amr)) == 100  # 20 ms frames
    wav = amr_to_wav(amr)
    riff, size, wave, fmt, n, pcm_fmt, ch, rate, brate, align, bits = struct.unpack("<4sI4s4sIHHIIHH", wav[:36])
    assert (riff, wave, fmt, pcm_fmt, ch, rate, bits) == (b"RIFF", b"WAVE", b"fmt ", 1, 1, 8000, 16)
    assert size == len(wav) - 8 and wav[36:40] == b"data"
    pcm = struct.unpack(f"<{(len(wav) - 44) // 2}h", wav[44:])
    assert len(pcm) == 100 * 160
    crossings = sum(1 for a, b in zip(pcm, pcm[1:], strict=False) if (a < 0) != (b < 0))
    assert 2 * 2 * 440 * 0.95 < crossings < 2 * 2 * 440 * 1.05, crossings  # 440 Hz: 880 crossings a second
    assert max(abs(x) for x in pcm[800:]) > 2000  # not silence


@pytest.mark.parametrize("bad,why", [(b"RIFF....", "no #!AMR"), (b"#!AMR\n\x3c" + b"x" * 10, "cut short"),
                                     (b"#!AMR\n\x48" + b"x" * 40, "mode 9")])
def test_damaged_files_are_clear_errors(bad, why):
    with pytest.raises(InputError, match=why):
        amr_to_wav(bad)
