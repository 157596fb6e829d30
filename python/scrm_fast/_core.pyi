"""Typed stub of the Rust extension ``scrm_fast._core``: the user-facing documentation of
the engine. Every function that does real work releases the GIL and runs on all cores."""

from collections.abc import Iterable
from os import PathLike

__version__: str
KNOWN_MSGTYPES: list[str]

class ScrmError(Exception):
    """Root of every scrm_fast error."""

class KeyRingError(ScrmError):
    """A key file or key directory cannot be used (message names the file)."""

class BatchFormatError(ScrmError):
    """A GetChatData document is unusable as a whole (not JSON, errcode ≠ 0, no chatdata)."""

class VendorSdkError(ScrmError):
    """The vendor SDK library cannot be loaded or lacks a required symbol."""

class RecordError(ScrmError):
    """A stored record cannot be decoded."""

class SearchIndexError(ScrmError):
    """The search index cannot be opened, written or read."""

class SealError(ScrmError):
    """A stored value or data key does not open: wrong master key, a missing data key,
    damage, or a plaintext data directory of the earlier format."""

class QuerySyntaxError(ScrmError):
    """A search query string is not well formed."""

class KeyRing:
    """RSA private keys by ``publickey_ver``. Build once, reuse for every batch."""

    @staticmethod
    def load_dir(path: str | PathLike[str]) -> KeyRing:
        """Loads every ``<publickey_ver>.pem`` (PKCS#1 or PKCS#8) of a directory. Raises
        ``FileNotFoundError``/``OSError`` for I/O and ``KeyRingError`` for bad keys."""
    @staticmethod
    def from_pems(pems: dict[int, bytes]) -> KeyRing: ...
    def versions(self) -> list[int]: ...
    def __len__(self) -> int: ...
    def measure_rsa_rate(self, ver: int, ciphertexts: list[bytes], threads: int, seconds: float) -> tuple[int, float]:
        """RSA PKCS#1 v1.5 private decryptions with ``threads`` threads (each its own key
        copy) for ``seconds``: returns (operations, elapsed seconds). The RSA bound."""

class Cipher:
    """The symmetric layer: the open scheme (native) or the vendor SDK's DecryptData."""

    @staticmethod
    def open() -> Cipher: ...
    @staticmethod
    def vendor(path: str) -> Cipher:
        """Loads ``libWeWorkFinanceSdk_C.so`` (or a library with its C ABI) with dlopen.
        Inputs that would abort the vendor library are rejected before it sees them."""
    @property
    def kind(self) -> str:
        """``open``, ``vendor`` or ``supplied`` (one batch's answers of the SDK worker)."""

class VendorJob:
    """One batch with the RSA step done, bound for the supervised SDK worker."""

    def __len__(self) -> int: ...
    def request(self, start: int, end: int) -> bytes:
        """The worker request (one buffer) for entries ``start..end``."""
    def cipher(self, parts: list[tuple[int, bytes | None]]) -> Cipher:
        """The batch's cipher from the answers of consecutive ranges; ``None``: the worker
        died on that single entry (it is quarantined as ``sdk_crash``)."""

def vendor_prepare(batch: ChatBatch, keys: KeyRing, seen: object = None) -> VendorJob:
    """RSA-decrypts and validates every unseen item (parallel, GIL released)."""

def vendor_decrypt_request(cipher: Cipher, request: bytes) -> bytes:
    """Inside the SDK worker: answers one request with the vendor library (parallel)."""

class ChatBatch:
    """One parsed GetChatData response (≤ 1000 items)."""

    @staticmethod
    def parse(data: bytes) -> ChatBatch:
        """Raises ``BatchFormatError`` if the document as a whole is unusable; broken items
        are kept as items and quarantined by ``decode_batch``."""
    @staticmethod
    def from_items(items: list[str]) -> ChatBatch:
        """A batch of raw chatdata item JSON texts (as kept in quarantine)."""
    def seq_keys(self) -> list[bytes]:
        """8-byte big-endian seq keys of the items that have a seq."""
    def __len__(self) -> int: ...

class DecodedBatch:
    """The outcome of ``decode_batch``, shaped for LMDB ``putmulti``."""

    skipped: int
    unknown_msgtypes: int
    max_seq: int | None
    def media(self) -> list[tuple[int, str, str, str, int, str, str]]:
        """``(seq, msgid, sdkfileid, md5sum, size, kind, filename)`` of the stored messages'
        media (the spec's media types and the media items of mixed messages)."""
    @property
    def has_media(self) -> bool: ...
    def media_entries(self, mac_key: bytes, person: bytes
                      ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """``(md.todo, md.seq)`` entries of the batch's media, values msgpack: ``fid`` → what
        to fetch (first message naming the file wins), 20-digit seq → its media in order."""
    def sealed_records(self, vault: Vault) -> list[tuple[bytes, bytes]]:
        """``records()`` sealed under ``vault`` for the ``records`` table."""
    @property
    def stored(self) -> int: ...
    @property
    def quarantined(self) -> int: ...
    @property
    def reasons(self) -> dict[str, int]:
        """Quarantined/rejected counts by reason code (``bad_base64_key``, ``unknown_key_version``,
        ``rsa_failed``, ``aes_failed``, ``vendor_error``, ``bad_json``, ``bad_message``,
        ``msgid_mismatch``, ``bad_item``, ``bad_base64_msg``)."""
    @property
    def msgtypes(self) -> dict[str, int]: ...
    def records(self) -> list[tuple[bytes, bytes]]:
        """(seq_key, msgpack record): seq, msgid, publickey_ver, action, from, tolist, roomid,
        msgtime, msgtype, known, text, raw (the decrypted JSON bytes)."""
    def msgids(self) -> list[tuple[bytes, bytes]]: ...
    def seen(self) -> list[tuple[bytes, bytes]]: ...
    def quarantine(self) -> list[tuple[bytes, bytes]]: ...
    def rejects(self) -> list[tuple[bytes, bytes]]: ...
    def conv_entries(self) -> list[tuple[bytes, bytes]]: ...
    def conv_ids(self) -> list[str]: ...
    def audit_batch(self) -> AuditBatch | None: ...
    @property
    def max_msgtime(self) -> int | None: ...
    def consent_entries(self) -> list[tuple[bytes, bytes]]: ...
    def spoken_entries(self) -> list[tuple[bytes, bytes]]: ...
    def events(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def dropped(self) -> int: ...
    kept_by_rule: dict[str, int]
    dropped_by_rule: dict[str, int]

def decode_batch(
    batch: ChatBatch,
    keys: KeyRing,
    cipher: Cipher,
    seen: Iterable[bytes | tuple[bytes, bytes]] | None = None,
    now_ms: int = 0,
    policy: ConsentPolicy | None = None,
    audit: bool = False,
    words: WordList | None = None,
    push_card: bool = True,
    red_packet: bool = True,
) -> DecodedBatch:
    """Decrypts and parses every item whose seq is not in ``seen``, in parallel, with the
    GIL released. One bad item never fails the batch: it becomes a quarantine record."""

class DecryptedBatch:
    """A batch ``decrypt_batch`` decrypted and parsed, not yet judged (``judge_batch``)."""

def decrypt_batch(
    batch: ChatBatch,
    keys: KeyRing,
    cipher: Cipher,
    seen: Iterable[bytes | tuple[bytes, bytes]] | None = None,
    now_ms: int = 0,
) -> DecryptedBatch:
    """The order-free part of ``decode_batch`` (all cores, GIL released): batches may be
    decrypted in any order, several at once."""

def judge_batch(
    decrypted: DecryptedBatch,
    policy: ConsentPolicy | None = None,
    audit: bool = False,
    words: WordList | None = None,
    push_card: bool = True,
    red_packet: bool = True,
) -> DecodedBatch:
    """The rest of ``decode_batch``: consent verdicts (judge batches in arrival order), the
    audit, the store's shapes; on the calling thread. ``ValueError`` when judged before."""

def records_to_jsonl(values: list[bytes]) -> bytes:
    """Stored record values → JSONL (decrypted JSON with ``seq`` first), one line each."""

def seal_response(public_pems: dict[int, bytes], items: list[tuple[int, str, int, bytes]]) -> bytes:
    """Seals (seq, msgid, publickey_ver, plaintext) items into one GetChatData response
    (open scheme), in parallel. For the simulator and tests."""

def generate_private_key(bits: int = 2048, pkcs8: bool = True) -> bytes: ...
def public_key_of(private_pem: bytes) -> bytes: ...

class ConsentPolicy:
    """Consent rules C-0 … C-12, built once per ingest; pass it to ``decode_batch``."""

    def __init__(
        self,
        service_requires_consent: bool,
        archived: list[str],
        employees: list[str],
        groups: list[tuple[str, str, list[tuple[int, str]], list[str]]],
        consent: list[tuple[str, int, str]],
        consent_entries: list[tuple[bytes, bytes]],
        spoken_entries: list[tuple[bytes, bytes]],
    ) -> None: ...
    @property
    def service_requires_consent(self) -> bool: ...
    @staticmethod
    def consent_key(customer: str, time: int, status_: str) -> bytes: ...

class WordList:
    """Sensitive-word entries (id, word, related words ≤ 10, category, severity,
    applies_to) and an allow list, compiled once into a character-wise automaton over
    normalized text (NFKC, case, traditional → simplified, separators removed)."""

    def __init__(self, entries: list[tuple[int, str, list[str], str, int, str]], allow: list[str] = ...) -> None: ...
    def __len__(self) -> int: ...
    def find_batch(
        self, texts: list[str], customers: list[bool] | None = None, parallel: bool = True
    ) -> list[list[tuple[int, str, int, int]]]:
        """Per text: (entry id, listed word, start, end), character offsets in the original."""
    def scan(
        self, texts: list[str], customers: list[bool] | None = None, parallel: bool = True
    ) -> list[tuple[int, int, str, int, int]]:
        """Flat: (text index, entry id, listed word, start, end)."""
    def scan_columns(self, texts: list[str], customers: list[bool] | None = None, parallel: bool = True) -> bytes:
        """``scan``'s hits as little-endian u32 ×5 each: text index, entry id, word index
        (into ``words()``), start, end."""
    def words(self) -> list[str]: ...

class AuditBatch:
    def audits(self) -> list[tuple[bytes, bytes]]: ...
    def keys(self) -> list[bytes]: ...
    def without(self, found: list[bytes | tuple[bytes, bytes]]) -> AuditBatch: ...
    def entry_triggers(self) -> dict[int, tuple[int, int]]: ...
    def __len__(self) -> int: ...

def audit_records(
    records: list[bytes | tuple[bytes, bytes]],
    words: WordList | None = None,
    push_card: bool = True,
    red_packet: bool = True,
    now_ms: int = 0,
) -> AuditBatch:
    """Content (A-1/A-2) and behaviour (A-4) audit records of stored records, in parallel."""

def normalize_text(text: str) -> str:
    """The matcher's normalization of ``text``."""

class ArchiveIndex:
    """The Tantivy search index of one archive (CJK-exact substring search)."""

    def __init__(self, path: str, token_key: bytes) -> None:
        """Opens (or creates) the index at ``path``; every term is keyed with ``token_key``
        (32 bytes): the index files hold no character of any message."""
    def open_writer(self, threads: int = 1, heap_mb: int = 64) -> None: ...
    def add_stored(self, values: list[bytes]) -> int: ...
    def add_decoded(self, batch: DecodedBatch) -> int: ...
    def clear(self) -> None: ...
    def commit(self, max_seq: int) -> None: ...
    def close_writer(self) -> None: ...
    def reload(self) -> None: ...
    def num_docs(self) -> int: ...
    def num_segments(self) -> int: ...
    def committed(self) -> tuple[int, int] | None: ...
    def seqs(self) -> list[int]: ...
    def search(
        self,
        query: str,
        *,
        parties: list[str] = ...,
        room: str | None = None,
        conv: str | None = None,
        msgtypes: list[str] | None = None,
        since: int | None = None,
        until: int | None = None,
        scope_parties: list[str] | None = None,
        scope_rooms: list[str] | None = None,
        scope_convs: list[str] | None = None,
        scope_hidden: list[str] | None = None,
        before: tuple[int, int] | None = None,
        limit: int = 20,
    ) -> tuple[int, list[tuple[int, int]], tuple[int, int] | None, list[str]]:
        """(total, [(msgtime, seq)] newest first, next cursor, highlight terms)."""

def wecom_callback_decrypt(encoding_aes_key: str, encrypted: str, receive_id: str) -> bytes:
    """The message in a WeCom callback (padding, frame and receive id checked; ValueError)."""
def wecom_callback_encrypt(encoding_aes_key: str, message: bytes, receive_id: str, random16: bytes) -> str: ...
def page_json(hits: list[tuple[int, int]], raws: list[bytes | None], terms: list[str], width: int = 80,
              names: dict[str, str] | None = None) -> tuple[bytes, list[int]]: ...
def fold_search_text(text: str) -> str: ...
def check_search_query(query: str) -> list[str]: ...

SEALED_OVERHEAD: int

class Vault:
    """The data keys of one data directory (AES-256-GCM): seals with the current key, opens
    with any. A sealed value is ``0xC1 | key id | nonce | ciphertext | tag``, bound to its table
    and key. Batch calls release the GIL."""

    def __init__(self, keys: dict[int, bytes], current: int) -> None: ...
    @property
    def current(self) -> int: ...
    def seal(self, table: bytes, key: bytes, value: bytes) -> bytes: ...
    def open(self, table: bytes, key: bytes, value: bytes) -> bytes: ...
    def seal_pairs(self, table: bytes, pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]: ...
    def open_pairs(self, table: bytes, pairs: list[tuple[bytes, bytes]]) -> list[bytes]: ...
    def seal_digested(self, table: bytes, head: bytes, mac_key: bytes, person: bytes, kind: str,
                      values: list[str]) -> list[tuple[bytes, bytes]]:
        """``[(head + app_digest(kind, value), sealed msgpack(value))]``: personal values keyed by
        their keyed digest (``AppTxn.put_digested``)."""
    @staticmethod
    def key_id_of(value: bytes) -> int | None: ...

def wrap_key(master: bytes, id: int, key: bytes) -> bytes:
    """Data key ``id`` wrapped under the 32-byte master key."""

def unwrap_key(master: bytes, id: int, wrapped: bytes) -> bytes:
    """Data key ``id`` unwrapped; ``SealError`` when ``master`` is not the one it was wrapped with."""

def app_digests(mac_key: bytes, person: bytes, kind: str, values: list[str]) -> list[bytes]:
    """BLAKE2b-128 keyed with ``mac_key``, personalised with ``person``, of ``kind \\0 value``
    for each value (``ArchiveStore.app_digest`` of many)."""
def random_key(n: int | None = None) -> bytes:
    """``n`` (default 32) random bytes from OpenSSL's DRBG."""
