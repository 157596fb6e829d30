"""The scrm_fast exception hierarchy: one root, specific leaves.

The engine's exceptions are declared by the extension (``scrm_fast._core``) and re-exported
here; ``InputError`` is raised by the Python layer for bad arguments and bad files.
"""

from scrm_fast._core import (
    BatchFormatError,
    KeyRingError,
    QuerySyntaxError,
    RecordError,
    ScrmError,
    SealError,
    SearchIndexError,
    VendorSdkError,
)


class InputError(ScrmError):
    """A command-line argument, input file or data directory is not usable."""


class NotFoundError(InputError):
    """What a request names does not exist (HTTP 404)."""


class ConflictError(InputError):
    """A request the current state refuses: a cap, a licence, a settled record (HTTP 409)."""


class LeaseHeld(ConflictError):
    """Another process holds a data directory's lease (one ingest, one sync at a time)."""


__all__ = ["BatchFormatError", "ConflictError", "InputError", "KeyRingError", "LeaseHeld", "NotFoundError",
           "QuerySyntaxError", "RecordError", "ScrmError", "SealError", "SearchIndexError", "VendorSdkError"]
