"""One strict parser per kind of value that comes from outside (a path segment, a query
parameter, a cursor, a CLI argument) before it becomes a key, an integer for Rust or a log
entry. Python's ``int()`` takes ``+1``, ``1_000``, `` 1 `` and numbers of any size; these
take the canonical decimal form only, in range, and ids without control characters."""

from __future__ import annotations

import re

from scrm_fast.errors import InputError

_UINT = re.compile(r"(?:0|[1-9][0-9]{0,18})")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
I64_MAX = 2**63 - 1


class RangeError(InputError):
    """A well-formed number outside its range."""


def uint(text: str, name: str, hi: int = I64_MAX, lo: int = 0) -> int:
    """A non-negative decimal integer in ``[lo, hi]`` (no sign, no leading zero, no ``_``)."""
    return _integer(_UINT, text, name, lo, hi)


def sint(text: str, name: str, lo: int = -I64_MAX - 1, hi: int = I64_MAX) -> int:
    """A decimal integer, optionally negative, in ``[lo, hi]``."""
    return _integer(_INT, text, name, lo, hi)


def _integer(form: re.Pattern, text: str, name: str, lo: int, hi: int) -> int:
    if not isinstance(text, str) or not form.fullmatch(text):
        shown = text[:40] if isinstance(text, str) else type(text).__name__
        raise InputError(f"{name} must be a whole number written plainly (digits only), not {shown!r}")
    v = int(text)
    if not lo <= v <= hi:
        raise RangeError(f"{name} must be between {lo} and {hi}")
    return v


def ident(text: str, name: str, max_len: int = 200) -> str:
    """An id (user, customer, room, conversation): 1..max_len characters, none of them a
    control character or a lone surrogate (they cannot be a WeCom id, and a NUL would
    end up in keys and the trail)."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{name} must not be empty")
    if len(text) > max_len:
        raise InputError(f"{name} is longer than {max_len} characters")
    for c in text:
        o = ord(c)
        if o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o < 0xE000:
            raise InputError(f"{name} holds a control character (U+{o:04X})")
    return text
