"""Injected time. Everything that decides by the date (dialer caps, quotas, recycling)
asks a clock object, so tests run months in seconds: :class:`ManualClock` in one process,
:class:`FileClock` for every worker of a `scrm serve` (``SCRM_CLOCK=file:PATH``: the file
holds epoch milliseconds, written by the test that drives the time)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scrm_fast.errors import InputError


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    def __init__(self, start_ms: int) -> None:
        self.t = int(start_ms)

    def now_ms(self) -> int:
        return self.t

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not go back")
        self.t += int(ms)

    def set(self, ms: int) -> None:
        self.t = int(ms)


class FileClock:
    """Reads the time from a file on every call (a few microseconds: the page cache)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.now_ms()  # a missing or broken file is an error at start, not at the first request

    def now_ms(self) -> int:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError) as e:
            raise InputError(f"clock file {self.path}: {e}") from None

    def set(self, ms: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(int(ms)))
        os.replace(tmp, self.path)


def from_env() -> SystemClock | FileClock:
    spec = os.environ.get("SCRM_CLOCK", "")
    if not spec or spec == "system":
        return SystemClock()
    if spec.startswith("file:"):
        return FileClock(spec[5:])
    raise InputError(f"SCRM_CLOCK={spec!r}: use system or file:PATH")
