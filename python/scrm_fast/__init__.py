"""scrm-fast: a WeCom chat-archive processor with a Rust core.

Batches cross into Rust whole (``decode_batch``); Python orchestrates sources, storage and
the CLI. See ``scrm --help``.
"""

from scrm_fast._core import (
    KNOWN_MSGTYPES,
    ChatBatch,
    Cipher,
    ConsentPolicy,
    DecodedBatch,
    KeyRing,
    WordList,
    audit_records,
    decode_batch,
    normalize_text,
    records_to_jsonl,
)
from scrm_fast.errors import (
    BatchFormatError,
    InputError,
    KeyRingError,
    RecordError,
    ScrmError,
    VendorSdkError,
)

__all__ = [
    "KNOWN_MSGTYPES",
    "BatchFormatError",
    "ChatBatch",
    "Cipher",
    "ConsentPolicy",
    "DecodedBatch",
    "InputError",
    "KeyRing",
    "KeyRingError",
    "RecordError",
    "ScrmError",
    "VendorSdkError",
    "WordList",
    "audit_records",
    "decode_batch",
    "normalize_text",
    "records_to_jsonl",
]
