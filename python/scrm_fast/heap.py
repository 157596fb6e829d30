"""Giving freed heap memory back to the system.

glibc's allocator keeps what a process frees in its arenas (one per thread that ever
allocated: the decode pool, the index writer's threads) and, once a large block has been
freed, serves later large blocks from those arenas instead of fresh mappings. A long
ingest that indexes and commits in waves then grows its resident memory with the length of
the run, though what it holds live is bounded. The pipeline calls :func:`release` after each
wave (an index commit, a chunk of the A-6 pass) so its resident memory stays flat in N."""

from __future__ import annotations

import ctypes

_trim = None
try:  # glibc only; elsewhere there is nothing to do. The process's own symbols: no
    # `ctypes.util.find_library`, which runs `ldconfig -p` in a subprocess at every start-up
    _trim = ctypes.CDLL(None).malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):
    _trim = None


def release() -> None:
    """Returns free heap pages of every arena to the system (a few ms; thread-safe)."""
    if _trim is not None:
        _trim(0)
