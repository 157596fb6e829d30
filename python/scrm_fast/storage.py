"""Per-tenant storage: one data directory, one LMDB environment, and the **one owner of
the stored format**: table names, key layouts and encodings live here and nowhere else
(the Rust batch emits keys in the layout documented below; every other module calls the
methods of :class:`ArchiveStore` and never opens a cursor).

Tables (all keys of seq-keyed tables are 8-byte big-endian seqs, so LMDB order = seq order).
Values marked *sealed* are AES-256-GCM under the data directory's current data key, bound
to their table and key (``scrm_fast.sealing``, ``_core.Vault``); keys hold ids only (seqs,
msgids, user, customer and room ids), never message content:

- ``records``    seq → *sealed* msgpack record (normalized fields + the decrypted JSON, ``raw``)
- ``msgids``     msgid → seq
- ``seen``       seq → ``S`` stored / ``Q`` quarantined / ``D`` dropped: every seq that arrived
- ``quarantine`` seq → *sealed* msgpack (reason, detail, the chatdata item exactly as received)
- ``rejects``    sha256 → *sealed* msgpack: documents and items that have no usable seq
- ``consent``    customer \0 time status → *sealed* msgpack: consent changes (stream, APIs)
- ``spoken``     roomid \0 userid → first message time: archived members who spoke (C-5)
- ``events``     rule \0 employee \0 customer \0 roomid \0 since → *sealed* enforcement event
- ``rulecounts`` ``kept:C-1`` / ``dropped:C-2`` … → 8-byte count of consent decisions
- ``conv``       conversation \0 seq → msgtime + role: stored messages by conversation
- ``audits``     ``c``+seq+entry / ``b``+seq / ``e``+digest → *sealed* audit record (A-2, A-4)
- ``wordstats``  keyed digest of a listed word → *sealed* (word, count, last trigger) (A-1)
- ``alerts``     audit key / ``t``+conv+seq+level → *sealed* alert with its leader chain (A-5, A-6)
- ``app``        table \0 key → *sealed* msgpack value: the SCRM tables (dialer, quotas, pools)
                 through :class:`AppTxn` (``ArchiveStore.app_read`` / ``app_write`` /
                 :class:`GroupCommit`); their keys hold ids and keyed digests
                 (:meth:`ArchiveStore.app_digest`) of what is personal (phone numbers), never the data
- ``meta``       ``checkpoint``, ``stream_time`` (8-byte), ``schema``; *sealed* documents
                 (``directory``, ``wordlist``, ``behaviours``, ``reply_thresholds``) and the
                 directory's change stamp

Durability: :meth:`ArchiveStore.commit_batch` writes one batch in one LMDB write
transaction, synced to disk before it returns; the checkpoint moves in the same
transaction, so after a crash the store and the checkpoint always agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb
import msgpack
import orjson

from scrm_fast._core import DecodedBatch, SealError, Vault, app_digests
from scrm_fast.errors import InputError, LeaseHeld
from scrm_fast.sealing import fsync_dir

SCHEMA_VERSION = 2
_TABLES = (b"records", b"msgids", b"seen", b"quarantine", b"rejects", b"consent", b"spoken", b"events",
           b"rulecounts", b"conv", b"audits", b"wordstats", b"alerts", b"meta", b"app")
# tables whose every value is sealed; ``meta`` seals its documents only (see _SEALED_META)
SEALED_TABLES = (b"records", b"quarantine", b"rejects", b"consent", b"events", b"audits", b"wordstats", b"alerts",
                 b"app")
_SEALED_META = (b"directory", b"wordlist", b"behaviours", b"reply_thresholds")
_CHECKPOINT = b"checkpoint"
_APP_PERSON = b"scrm-app-keys"  # the personalisation of app_digest
_DIRECTORY_STAMP = b"directory_stamp"
# Virtual address space only: LMDB files grow with the data, not to this size.
DEFAULT_MAP_SIZE = 1 << 40


def put_appending(cur: lmdb.Cursor, items: list[tuple[bytes, bytes]]) -> None:
    """Puts ``items`` (overwriting) through ``cur``. Items in key order, all after every key
    stored (a new batch's seqs), go as appends: LMDB then leaves a full page full and starts
    the next, where an ordinary put splits it in half, so tables keyed by seq stayed part
    empty (the records table about 72 % full, the seen table about 64 %). Any item that
    cannot be appended (out of order, or not past the last key) is refused by LMDB, not
    written, and counted; then every item is put the ordinary way."""
    if items:
        _, added = cur.putmulti(items, append=True)
        if added != len(items):
            cur.putmulti(items)


def seq_key(seq: int) -> bytes:
    return struct.pack(">Q", seq)


def key_seq(key: bytes) -> int:
    return struct.unpack(">Q", key)[0]


def now_ms() -> int:
    return int(time.time() * 1000)


def conv_time(v: bytes) -> int:
    """The message time kept in a ``conv`` table value (0 for entries written before the
    index carried it)."""
    return struct.unpack(">q", v[:8])[0] if len(v) >= 8 else 0


def audit_key(audit_id: str) -> bytes:
    """``c-<seq>-<entry>`` / ``b-<seq>`` / ``e-<hex>`` → the ``audits`` key."""
    try:
        kind, _, rest = audit_id.partition("-")
        if kind == "c":
            seq, entry = rest.split("-")
            return b"c" + seq_key(int(seq)) + struct.pack(">I", int(entry))
        if kind == "b":
            return b"b" + seq_key(int(rest))
        if kind == "e":
            return b"e" + bytes.fromhex(rest)
    except (ValueError, struct.error):  # not numbers, or out of the 64/32-bit range
        pass
    raise InputError(f"{audit_id!r} is not an audit id (c-SEQ-ENTRY, b-SEQ or e-HEX)")


def content_audit_key(key: bytes) -> bool:
    """An ``audits`` key of a sensitive-word record (they raise alerts)."""
    return key[:1] == b"c"


def event_audit_key(digest: bytes) -> bytes:
    return b"e" + digest


def timeout_alert_key(conv: str, seq: int, level: int) -> bytes:
    return b"t" + conv.encode() + b"\0" + seq_key(seq) + bytes([level])


@dataclass
class CommitResult:
    stored: int
    quarantined: int
    rejected: int
    dropped: int = 0


@dataclass(frozen=True)
class ConvSummary:
    conv: str
    last_seq: int
    last_msgtime: int


class StoreWriter:
    """The typed view of one write transaction (seals on the way in, opens on the way out);
    what other modules write inside a batch's transaction goes through it."""

    def __init__(self, store: ArchiveStore, txn: lmdb.Transaction) -> None:
        self._s = store
        self._txn = txn

    def add_audits(self, pairs: list[tuple[bytes, bytes]]) -> int:
        """New audit records (msgpack); existing keys are kept. Returns how many were new."""
        if not pairs:
            return 0
        _, added = self._txn.cursor(db=self._s._db[b"audits"]).putmulti(self._s._seal(b"audits", pairs),
                                                                      overwrite=False)
        return added

    @property
    def store(self) -> ArchiveStore:
        return self._s

    def app(self) -> AppTxn:
        """The SCRM tables inside this same transaction."""
        return AppTxn(self._s, self._txn, True)

    def put_consent(self, entries: list[tuple[bytes, bytes]]) -> None:
        if entries:
            self._txn.cursor(db=self._s._db[b"consent"]).putmulti(self._s._seal(b"consent", entries))

    def directory(self) -> dict | None:
        raw = self._s._get(self._txn, b"meta", b"directory")
        d = msgpack.unpackb(raw) if raw is not None else None
        return d if isinstance(d, dict) else None

    def save_directory(self, doc: dict) -> None:
        self._s._put_directory(self._txn, doc)

    def add_alerts(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """New alerts; an alert already raised for the same key is kept."""
        if pairs:
            self._txn.cursor(db=self._s._db[b"alerts"]).putmulti(self._s._seal(b"alerts", pairs), overwrite=False)

    def bump_word(self, word: str, count: int, last: int) -> None:
        """Trigger statistics of one listed word (rule A-1)."""
        key = self._s._word_key(word)
        cur = self._s._get(self._txn, b"wordstats", key)
        c0, l0 = msgpack.unpackb(cur)[1:] if cur else (0, 0)
        self._s._put(self._txn, b"wordstats", key, msgpack.packb([word, c0 + count, max(l0, last)]))

    def audit(self, key: bytes) -> dict | None:
        raw = self._s._get(self._txn, b"audits", key)
        return msgpack.unpackb(raw) if raw is not None else None

    def put_audit(self, key: bytes, record: dict) -> None:
        self._s._put(self._txn, b"audits", key, msgpack.packb(record))


class AppTxn:
    """One transaction over the SCRM tables (``app``): msgpack values, sealed under the data
    key and bound to their table and key. ``table`` names are short ASCII words; keys are
    bytes the caller builds from ids (:func:`app_key`) and digests (``ArchiveStore.app_digest``).
    The dialer, quotas and pools keep their state here; none of them opens LMDB."""

    def __init__(self, store: ArchiveStore, txn: lmdb.Transaction, write: bool) -> None:
        self._s = store
        self._txn = txn
        self.write = write
        self._db = store._db.get(b"app")
        self._vault = store.vault

    @staticmethod
    def _full(table: str, key: bytes) -> bytes:
        return table.encode() + b"\0" + key

    def get(self, table: str, key: bytes) -> object | None:
        full = table.encode() + b"\0" + key
        v = self._txn.get(full, db=self._db)
        if v is None:
            return None
        try:
            return msgpack.unpackb(self._vault.open(b"app", full, v))
        except SealError as e:
            raise InputError(f"{self._s.data_dir}: {e}") from None

    def get_many(self, table: str, keys: list[bytes]) -> list[object | None]:
        """The values of ``keys`` (None where absent), opened in one batch call."""
        head = table.encode() + b"\0"
        fulls = [head + k for k in keys]
        found = dict(self._txn.cursor(db=self._db).getmulti(fulls)) if fulls else {}
        pairs = [(k, bytes(found[k])) for k in fulls if k in found]
        try:
            opened = dict(zip([k for k, _ in pairs], self._vault.open_pairs(b"app", pairs), strict=True))
        except SealError as e:
            raise InputError(f"{self._s.data_dir}: {e}") from None
        return [msgpack.unpackb(opened[k]) if k in opened else None for k in fulls]

    def put_many(self, table: str, items: list[tuple[bytes, object]]) -> None:
        """Writes many values, sealed in one batch call."""
        self.put_packed(table, [(k, msgpack.packb(v)) for k, v in items])

    def put_packed(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        """:meth:`put_many` of values already msgpack (built in Rust for a whole batch)."""
        assert self.write, "a read transaction"
        head = table.encode() + b"\0"
        sealed = self._vault.seal_pairs(b"app", [(head + k, v) for k, v in items])
        if sealed:
            self._txn.cursor(db=self._db).putmulti(sealed)

    def put_digested(self, table: str, kind: str, values: list[str]) -> None:
        """Writes each of the personal ``values`` (strings) under the key
        ``ArchiveStore.app_digest(kind, value)``, sealed, in one batch call: what
        ``put_many(table, [(app_digest(kind, v), v) ...])`` writes."""
        assert self.write, "a read transaction"
        if values:
            sealed = self._vault.seal_digested(b"app", table.encode() + b"\0", self._s.token_key, _APP_PERSON,
                                               kind, values)
            self._txn.cursor(db=self._db).putmulti(sealed)

    def has(self, table: str, key: bytes) -> bool:
        """Whether ``key`` is in ``table`` (index entries often hold no value: None)."""
        return self._txn.get(table.encode() + b"\0" + key, db=self._db) is not None

    def put(self, table: str, key: bytes, value: object) -> None:
        assert self.write, "a read transaction"
        full = table.encode() + b"\0" + key
        self._txn.put(full, self._vault.seal(b"app", full, msgpack.packb(value)), db=self._db)

    def delete(self, table: str, key: bytes) -> bool:
        assert self.write, "a read transaction"
        return self._txn.delete(table.encode() + b"\0" + key, db=self._db)

    def delete_many(self, table: str, keys: Iterable[bytes]) -> int:
        """Deletes every one of ``keys`` from ``table``; returns how many were there."""
        assert self.write, "a read transaction"
        head, delete, db = table.encode() + b"\0", self._txn.delete, self._db
        return sum(1 for k in keys if delete(head + k, db=db))

    def incr(self, table: str, key: bytes, by: int = 1) -> int:
        """Adds ``by`` to an integer value (absent: 0) and returns the new value; a value that
        reaches 0 is removed."""
        cur = self.get(table, key)
        new = (cur if isinstance(cur, int) else 0) + by
        if new == 0:
            self.delete(table, key)
        else:
            self.put(table, key, new)
        return new

    def scan(self, table: str, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False,
             limit: int | None = None, values: bool = True) -> Iterator[tuple[bytes, object | None]]:
        """``(key, value)`` of ``table`` whose key starts with ``prefix``, in key order (or
        reversed), from ``start`` (inclusive; reversed: at or below it). Keys are returned
        without the table part; ``values=False`` skips opening the values (yields None)."""
        if self._s._db.get(b"app") is None:
            return
        head = self._full(table, prefix)
        tlen = len(table) + 1
        cur = self._txn.cursor(db=self._s._db[b"app"])
        if not reverse:
            ok = cur.set_range(self._full(table, start) if start is not None else head)
        else:
            # the last key <= start (or the last key with the prefix)
            bound = self._full(table, start) if start is not None else head + b"\xff" * 64
            ok = cur.set_range(bound)
            if ok:
                if cur.key() != bound:
                    ok = cur.prev()
            else:
                ok = cur.last()
        n = 0
        while ok:
            k = cur.key()
            if not k.startswith(head):
                break
            if limit is not None and n >= limit:
                break
            n += 1
            v = None
            if values:
                try:
                    v = msgpack.unpackb(self._s.vault.open(b"app", k, bytes(cur.value())))
                except SealError as e:
                    raise InputError(f"{self._s.data_dir}: {e}") from None
            yield k[tlen:], v
            ok = cur.prev() if reverse else cur.next()


_U64 = struct.Struct(">Q")


def app_key(*parts: str | int | bytes) -> bytes:
    """A key for :class:`AppTxn` tables whose byte order is the parts' order: strings as
    UTF-8 (no NUL; parts joined by NUL), integers as 8-byte big-endian (non-negative), bytes as
    given (fixed-width digests)."""
    out = []
    for p in parts:
        t = type(p)
        if t is str:
            b = p.encode()
            if b"\0" in b:
                raise InputError("an id must not contain NUL")
            out.append(b)
        elif t is int:
            out.append(_U64.pack(p))
        elif t is bytes:
            out.append(p)
        elif isinstance(p, bool):
            raise TypeError("a bool is not a key part")
        elif isinstance(p, int):
            out.append(_U64.pack(p))
        else:
            out.append(bytes(p))
    return b"\0".join(out)


class GroupCommit:
    """Write transactions of many callers, committed together: every submitted function runs
    in a nested transaction of one LMDB write transaction (its own effects undone if it raises)
    and each caller gets its answer only after the one synced commit. LMDB lets one writer at a
    time in across processes, so this is what keeps check-and-reserve atomic across `scrm serve`
    workers while paying one disk sync per group instead of one per decision."""

    def __init__(self, store: ArchiveStore, max_group: int = 256) -> None:
        import queue
        import threading

        self._s = store
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._max = max_group
        self._thread = threading.Thread(target=self._run, name="scrm-group-commit", daemon=True)
        self._closed = False
        self.groups = 0
        self.items = 0
        self._thread.start()

    def submit(self, fn: Callable[[AppTxn], object]):
        """A ``concurrent.futures.Future`` of ``fn(txn)`` (wrap with ``asyncio.wrap_future``)."""
        from concurrent.futures import Future

        if self._closed:
            raise RuntimeError("closed")
        fut: Future = Future()
        self._q.put((fn, fut))
        return fut

    def run(self, fn: Callable[[AppTxn], object]) -> object:
        return self.submit(fn).result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._thread.join()

    def _run(self) -> None:
        import queue

        while True:
            first = self._q.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < self._max:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            results: list[tuple[bool, object]] = []
            try:
                with self._s.env.begin(write=True) as txn:
                    for fn, _ in group:
                        child = self._s.env.begin(write=True, parent=txn)
                        try:
                            out = fn(AppTxn(self._s, child, True))
                        except BaseException as e:  # noqa: BLE001 - handed to its caller
                            child.abort()
                            results.append((False, e))
                        else:
                            child.commit()
                            results.append((True, out))
            except BaseException as e:  # noqa: BLE001 - the commit failed: every caller hears it
                for _, fut in group:
                    fut.set_exception(e)
            else:
                self.groups += 1
                self.items += len(group)
                for (ok, val), (_, fut) in zip(results, group, strict=True):
                    if ok:
                        fut.set_result(val)
                    else:
                        fut.set_exception(val)
            if stop:
                return


class ArchiveStore:
    """The archive of one tenant. Open one per process; LMDB serialises writers.

    ``master_key`` (32 bytes; default: the file ``$SCRM_MASTER_KEY_FILE`` names) opens the
    data directory's keys; nothing on disk is created or changed before it proved right."""

    def __init__(self, data_dir: str | os.PathLike[str], *, readonly: bool = False,
                 map_size: int = DEFAULT_MAP_SIZE, master_key: bytes | None = None,
                 allow_migrating: bool = False) -> None:
        from scrm_fast import sealing

        self.data_dir = Path(data_dir)
        path = self.data_dir / "archive.lmdb"
        _recover_compaction(self.data_dir)
        master = master_key if master_key is not None else sealing.read_master_key()
        kf = sealing.read_key_file(self.data_dir)
        if kf is None:
            if path.exists():
                raise InputError(f"{self.data_dir}: a plaintext data directory of the earlier format; encrypt it "
                                 f"with `scrm migrate --data {self.data_dir}` (nothing was read or changed)")
            if readonly:
                raise InputError(f"{self.data_dir}: no archive here (run `scrm ingest` first)")
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as e:
                raise InputError(f"{self.data_dir}: cannot create data directory: {e.strerror}") from e
            kf = sealing.new_key_file(master)
            sealing.write_key_file(self.data_dir, kf)
        elif kf.migrating and not allow_migrating:
            raise InputError(f"{self.data_dir}: an encryption migration did not finish; run "
                             f"`scrm migrate --data {self.data_dir}` again")
        self.keys = sealing.open_keys(self.data_dir, master, kf)  # the right master key, or stop here
        if not kf.trail and not readonly:  # a key file made before the trail had a key
            sealing.add_trail_key(kf, master)
            sealing.write_key_file(self.data_dir, kf)
            self.keys = sealing.open_keys(self.data_dir, master, kf)
        if readonly and not path.exists():
            raise InputError(f"{self.data_dir}: no archive here (run `scrm ingest` first)")
        self.master_path = sealing.master_key_path() if master_key is None else None
        # held shared by every process that has the store open; compaction needs it alone
        lock = self.data_dir / "store.lock"
        if not readonly:
            self._lock_fd: int | None = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        else:  # a read-only copy (evidence on read-only media) has nothing to lock against
            try:
                self._lock_fd = os.open(lock, os.O_RDONLY)
            except OSError:
                self._lock_fd = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        self.vault: Vault = self.keys.vault
        self.token_key: bytes = self.keys.token_key
        self._word_mac = hashlib.blake2b(key=self.token_key, digest_size=16, person=b"scrm-wordstats")
        try:
            self.env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_TABLES) + 4, mode=0o700,
                                 readonly=readonly, lock=True, sync=True, metasync=True)
        except lmdb.Error as e:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            raise InputError(f"{path}: cannot open archive: {e}") from e
        self._db = {}
        if readonly:
            missing = []
            for name in _TABLES:
                try:
                    self._db[name] = self.env.open_db(name, create=False)
                except lmdb.NotFoundError:  # "app": a table added after this copy was written
                    if name != b"app":
                        missing.append(name.decode())
            if missing:
                self.env.close()
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                if b"meta" not in self._db:
                    # its first writer has not committed its tables yet (they come in one
                    # transaction): nothing to read, said as for an empty directory
                    raise InputError(f"{self.data_dir}: no archive here yet (it is being created)")
                raise InputError(f"{self.data_dir}: written by an earlier version (no {', '.join(missing)} "
                                 f"table); open it once for writing (e.g. `scrm ingest`) to add them")
        else:
            # every table and the schema in one transaction: a reader opening the directory
            # meanwhile sees all of them or none
            with self.env.begin(write=True) as txn:
                for name in _TABLES:
                    self._db[name] = self.env.open_db(name, txn=txn)
                if txn.get(b"schema", db=self._db[b"meta"]) is None:
                    txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self._db[b"meta"])
        self._sealed_tables = tuple(t for t in SEALED_TABLES if t in self._db)
        self._app_mac = hashlib.blake2b(key=self.token_key, digest_size=16, person=_APP_PERSON)

    def close(self) -> None:
        self.env.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def exclusive(self) -> None:
        """Makes sure no other process has this store open (a server, an ingest): what
        swaps the environment's file (:meth:`compact`) needs that. A clear error otherwise."""
        try:
            if self._lock_fd is None:
                raise BlockingIOError
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{self.data_dir}: open in another process (a server or an ingest?); stop it "
                             "first: this rewrites the archive file") from None

    def __enter__(self) -> ArchiveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sealing ------------------------------------------------------------------------
    def _seal(self, table: bytes, pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return self.vault.seal_pairs(table, pairs)

    def _open(self, table: bytes, pairs: list[tuple[bytes, bytes]]) -> list[bytes]:
        try:
            return self.vault.open_pairs(table, pairs)
        except SealError as e:
            raise InputError(f"{self.data_dir}: {e}") from None

    def _get(self, txn: lmdb.Transaction, table: bytes, key: bytes) -> bytes | None:
        v = txn.get(key, db=self._db[table])
        if v is None:
            return None
        try:
            return self.vault.open(table, key, bytes(v))
        except SealError as e:
            raise InputError(f"{self.data_dir}: {e}") from None

    def _put(self, txn: lmdb.Transaction, table: bytes, key: bytes, value: bytes) -> None:
        txn.put(key, self.vault.seal(table, key, value), db=self._db[table])

    def _items(self, txn: lmdb.Transaction, table: bytes) -> list[tuple[bytes, bytes]]:
        """Every (key, opened value) of ``table`` (opened in one batch call)."""
        pairs = list(txn.cursor(db=self._db[table]))
        return list(zip([k for k, _ in pairs], self._open(table, pairs), strict=True))

    def _word_key(self, word: str) -> bytes:
        h = self._word_mac.copy()
        h.update(word.encode())
        return h.digest()

    @contextmanager
    def write(self) -> Iterator[StoreWriter]:
        """One write transaction (committed and synced on exit) through its typed view."""
        with self.env.begin(write=True) as txn:
            yield StoreWriter(self, txn)

    # -- the SCRM tables ------------------------------------------------------------------
    @contextmanager
    def app_read(self) -> Iterator[AppTxn]:
        with self.env.begin() as txn:
            yield AppTxn(self, txn, False)

    @contextmanager
    def app_write(self) -> Iterator[AppTxn]:
        """One synced write transaction over the SCRM tables (callers that decide many
        things at once share one through :class:`GroupCommit`)."""
        with self.env.begin(write=True) as txn:
            yield AppTxn(self, txn, True)

    @property
    def media(self) -> MediaFiles:
        """The media files of this data directory (sealed)."""
        m = getattr(self, "_media", None)
        if m is None:
            m = self._media = MediaFiles(self)
        return m

    def app_digest(self, kind: str, value: str) -> bytes:
        """A keyed 16-byte digest of a personal value (a phone number) for use in keys: equal
        values meet, the key file is needed to tell which value it is."""
        h = self._app_mac.copy()
        h.update(kind.encode() + b"\0" + value.encode())
        return h.digest()

    def app_digests(self, kind: str, values: list[str]) -> list[bytes]:
        """:meth:`app_digest` of each of ``values``, in one call (Rust, the same digest)."""
        return app_digests(self.token_key, _APP_PERSON, kind, values)

    @property
    def app_digest_key(self) -> tuple[bytes, bytes]:
        """``(key, personalisation)`` of :meth:`app_digest`, for Rust that computes the same
        digests over a whole batch (``DecodedBatch.media_entries``)."""
        return self.token_key, _APP_PERSON

    # -- leases ---------------------------------------------------------------------------
    @contextmanager
    def lease(self, name: str, what: str, *, wait: bool = False) -> Iterator[None]:
        """Holds the data directory's ``name`` lease (``ingest``: one run that writes
        messages at a time; ``sync``: one live sync) across every process, or raises
        :class:`LeaseHeld` naming its holder (``wait``: blocks until it is free). An flock
        on ``DATA/<name>.lease``: a holder that dies releases it with its descriptor."""
        path = self.data_dir / f"{name}.lease"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
                raise LeaseHeld(f"{self.data_dir}: another {name} is running ({holder}); wait for it to "
                                "finish or stop it") from None
            os.ftruncate(fd, 0)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            os.pwrite(fd, f"{what}, pid {os.getpid()}, since {stamp}".encode()[:400], 0)
            yield
        finally:
            os.close(fd)  # the lock goes with the descriptor

    # -- sealed documents in meta ----------------------------------------------------------
    def document(self, name: str) -> object | None:
        key = name.encode()
        assert key in _SEALED_META, name
        with self.env.begin() as txn:
            raw = self._get(txn, b"meta", key)
        return msgpack.unpackb(raw) if raw is not None else None

    def put_document(self, name: str, doc: object) -> None:
        key = name.encode()
        assert key in _SEALED_META, name
        with self.env.begin(write=True) as txn:
            if key == b"directory":
                self._put_directory(txn, doc)
            else:
                self._put(txn, b"meta", key, msgpack.packb(doc))

    def _put_directory(self, txn: lmdb.Transaction, doc: object) -> None:
        self._put(txn, b"meta", b"directory", msgpack.packb(doc))
        cur = txn.get(_DIRECTORY_STAMP, db=self._db[b"meta"])
        txn.put(_DIRECTORY_STAMP, seq_key((key_seq(cur) if cur else 0) + 1), db=self._db[b"meta"])

    def directory(self) -> dict | None:
        """The tenant's directory (spec §6) kept by ``scrm directory import`` / ingest."""
        d = self.document("directory")
        return d if isinstance(d, dict) else None

    def save_directory(self, doc: dict) -> None:
        self.put_document("directory", doc)

    def directory_stamp(self) -> int:
        """Changes whenever the directory is saved (cheap: one plain key)."""
        with self.env.begin(db=self._db[b"meta"]) as txn:
            cur = txn.get(_DIRECTORY_STAMP)
            return key_seq(cur) if cur is not None else 0

    # -- ingest -----------------------------------------------------------------------
    def seen_among(self, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
        """The ``(seq_key, status)`` pairs of ``keys`` that already arrived once."""
        if not keys:
            return []
        with self.env.begin(db=self._db[b"seen"]) as txn:
            return txn.cursor().getmulti(keys)

    def commit_batch(self, decoded: DecodedBatch, extra_rejects: list[tuple[bytes, bytes]] = (),
                     also: Callable[[StoreWriter], None] | None = None) -> CommitResult:
        """Makes one decoded batch durable (one synced transaction) and advances the
        checkpoint to the batch's highest seq. ``also`` writes more in the same
        transaction (the batch's audit records)."""
        records = decoded.stored
        quarantine = decoded.quarantine()
        rejects = decoded.rejects() + list(extra_rejects)
        sealed_records = decoded.sealed_records(self.vault) if records else []
        sealed_quarantine = self._seal(b"quarantine", quarantine) if quarantine else []
        with self.env.begin(write=True) as txn:
            if records:
                put_appending(txn.cursor(db=self._db[b"records"]), sealed_records)
                txn.cursor(db=self._db[b"msgids"]).putmulti(decoded.msgids())
                txn.cursor(db=self._db[b"conv"]).putmulti(decoded.conv_entries())
            if quarantine:
                txn.cursor(db=self._db[b"quarantine"]).putmulti(sealed_quarantine)
            if also is not None:
                also(StoreWriter(self, txn))
            if records or quarantine or decoded.dropped:
                put_appending(txn.cursor(db=self._db[b"seen"]), decoded.seen())
            if rejects:
                txn.cursor(db=self._db[b"rejects"]).putmulti(self._seal(b"rejects", rejects))
            self._commit_policy_delta(txn, decoded)
            if decoded.max_msgtime is not None:
                self._advance(txn, b"stream_time", decoded.max_msgtime)
            if decoded.max_seq is not None:
                self._advance_checkpoint(txn, decoded.max_seq)
        return CommitResult(records, len(quarantine), len(rejects), decoded.dropped)

    def _advance(self, txn: lmdb.Transaction, key: bytes, value: int) -> None:
        meta = self._db[b"meta"]
        cur = txn.get(key, db=meta)
        if cur is None or key_seq(cur) < value:
            txn.put(key, seq_key(max(value, 0)), db=meta)

    def stream_time(self) -> int:
        """The newest message time stored: the stream's own "now" (rule A-6)."""
        with self.env.begin(db=self._db[b"meta"]) as txn:
            cur = txn.get(b"stream_time")
            return key_seq(cur) if cur is not None else 0

    def _commit_policy_delta(self, txn: lmdb.Transaction, decoded: DecodedBatch) -> None:
        """Consent state changes and decision counts, in the batch's own transaction: after
        a crash the state always matches the stored messages."""
        consent = decoded.consent_entries()
        if consent:
            txn.cursor(db=self._db[b"consent"]).putmulti(self._seal(b"consent", consent))
        spoken = decoded.spoken_entries()
        if spoken:
            txn.cursor(db=self._db[b"spoken"]).putmulti(spoken, overwrite=False)
        events = decoded.events()
        if events:
            txn.cursor(db=self._db[b"events"]).putmulti(self._seal(b"events", events), overwrite=False)
        counts = self._db[b"rulecounts"]
        for prefix, by_rule in ((b"kept:", decoded.kept_by_rule), (b"dropped:", decoded.dropped_by_rule)):
            for rule, n in by_rule.items():  # a handful of rule ids per batch
                key = prefix + rule.encode()
                cur = txn.get(key, db=counts)
                txn.put(key, struct.pack(">Q", (struct.unpack(">Q", cur)[0] if cur else 0) + n), db=counts)

    # -- consent state ----------------------------------------------------------------
    def consent_state(self) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """The persisted consent and spoken tables as (key, value) pairs, for the policy."""
        with self.env.begin() as txn:
            return self._items(txn, b"consent"), list(txn.cursor(db=self._db[b"spoken"]))

    def put_consent(self, entries: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor(db=self._db[b"consent"]).putmulti(self._seal(b"consent", entries))

    def consent_changes(self) -> list[dict]:
        out = []
        with self.env.begin() as txn:
            for k, v in self._items(txn, b"consent"):
                customer, _, rest = k.partition(b"\0")
                out.append({"external_userid": customer.decode(), "time": key_seq(rest[:8]), **msgpack.unpackb(v)})
        return out

    def enforcement_events(self) -> list[dict]:
        with self.env.begin() as txn:
            events = [msgpack.unpackb(v) for _, v in self._items(txn, b"events")]
        return sorted(events, key=lambda e: (e["time"], e["rule"], e["customer"]))

    def rule_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"kept": {}, "dropped": {}}
        with self.env.begin() as txn:
            for k, v in txn.cursor(db=self._db[b"rulecounts"]):
                kind, _, rule = k.decode().partition(":")
                out[kind][rule] = struct.unpack(">Q", v)[0]
        return out

    def commit_rejects(self, rejects: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor(db=self._db[b"rejects"]).putmulti(self._seal(b"rejects", rejects))

    def _advance_checkpoint(self, txn: lmdb.Transaction, seq: int) -> None:
        meta = self._db[b"meta"]
        cur = txn.get(_CHECKPOINT, db=meta)
        if cur is None or key_seq(cur) < seq:
            txn.put(_CHECKPOINT, seq_key(seq), db=meta)

    # -- reading ----------------------------------------------------------------------
    def checkpoint(self) -> int:
        with self.env.begin(db=self._db[b"meta"]) as txn:
            cur = txn.get(_CHECKPOINT)
            return key_seq(cur) if cur is not None else 0

    def record_count(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db[b"records"])["entries"]

    def counts(self) -> dict[str, int]:
        with self.env.begin() as txn:
            return {name.decode(): txn.stat(self._db[name])["entries"]
                    for name in (b"records", b"quarantine", b"rejects")}

    def record_seqs(self) -> Iterator[int]:
        """Every stored seq, ascending."""
        with self.env.begin(db=self._db[b"records"]) as txn:
            for k in txn.cursor().iternext(keys=True, values=False):
                yield key_seq(k)

    def record_pair_chunks(self, chunk: int = 10_000) -> Iterator[list[tuple[bytes, bytes]]]:
        """(seq_key, record msgpack) pairs in seq order, ``chunk`` at a time (opened on
        every core per chunk)."""
        with self.env.begin(db=self._db[b"records"]) as txn:
            it = iter(txn.cursor())
            while True:
                block = [kv for _, kv in zip(range(chunk), it, strict=False)]
                if not block:
                    return
                yield list(zip([k for k, _ in block], self._open(b"records", block), strict=True))

    def record_value_chunks(self, chunk: int = 10_000) -> Iterator[list[bytes]]:
        """Stored record values (msgpack) in seq order, ``chunk`` at a time."""
        with self.env.begin(db=self._db[b"records"]) as txn:
            it = iter(txn.cursor())
            while True:
                block = [kv for _, kv in zip(range(chunk), it, strict=False)]
                if not block:
                    return
                yield self._open(b"records", block)

    def records_raw(self, seqs: Iterable[int]) -> list[bytes | None]:
        """The record msgpack of each of ``seqs`` (None where none is stored), in order."""
        keys = [seq_key(s) for s in seqs]
        with self.env.begin(db=self._db[b"records"]) as txn:
            found = [(k, txn.get(k)) for k in keys]
        present = [(k, v) for k, v in found if v is not None]
        opened = iter(self._open(b"records", present)) if present else iter(())
        return [next(opened) if v is not None else None for _, v in found]

    def get_record(self, seq: int) -> dict | None:
        with self.env.begin() as txn:
            v = self._get(txn, b"records", seq_key(seq))
        return msgpack.unpackb(v) if v is not None else None

    def seq_of_msgid(self, msgid: str) -> int | None:
        with self.env.begin(db=self._db[b"msgids"]) as txn:
            v = txn.get(msgid.encode())
        return key_seq(v) if v is not None else None

    # -- conversations --------------------------------------------------------------------
    def conversation_summaries(self) -> list[ConvSummary]:
        """Every conversation with its newest message (one seek per conversation)."""
        out = []
        with self.env.begin() as txn:
            cur = txn.cursor(db=self._db[b"conv"])
            ok = cur.first()
            while ok:
                conv = cur.key()[:-9]
                # jump to this conversation's last entry: one seek per conversation
                if cur.set_range(conv + b"\x01"):
                    cur.prev()
                else:
                    cur.last()
                seq_k, t = cur.key()[-8:], conv_time(cur.value())
                if t == 0:  # an index entry written before entries carried the time
                    raw = self._get(txn, b"records", seq_k)
                    t = msgpack.unpackb(raw)["msgtime"] if raw is not None else 0
                out.append(ConvSummary(conv.decode(), key_seq(seq_k), t))
                ok = cur.next()
        return out

    def timelines(self, convs: Iterable[str], max_entries: int | None = None
                  ) -> tuple[list[str], list[tuple[bytes, bytes]]]:
        """The ``conv`` table entries of ``convs`` (for the timeout-reply pass, rule A-6):
        ``(the conversations read, their entries)``; with ``max_entries``, it stops after the
        conversation that reached it (at least one is read whole)."""
        out: list[tuple[bytes, bytes]] = []
        done: list[str] = []
        with self.env.begin(db=self._db[b"conv"]) as txn:
            cur = txn.cursor()
            append = out.append
            for conv in convs:
                if max_entries is not None and done and len(out) >= max_entries:
                    break
                prefix = conv.encode() + b"\0"
                if cur.set_range(prefix):
                    # the cursor's own iteration (one C call an entry) from where it stands
                    for kv in cur:
                        if not kv[0].startswith(prefix):
                            break
                        append(kv)
                done.append(conv)
        return done, out

    def has_conversation(self, conv: str) -> bool:
        prefix = conv.encode() + b"\0"
        with self.env.begin(db=self._db[b"conv"]) as txn:
            cur = txn.cursor()
            return cur.set_range(prefix) and cur.key().startswith(prefix)

    def conversation_seqs(self, conv: str, *, before: int | None = None, after: int | None = None,
                          since: int | None = None, until: int | None = None) -> Iterator[int]:
        """A conversation's seqs: newest first below ``before`` (all when None), or oldest
        first above ``after``; ``since``/``until`` bound the message time (newest-first walk
        stops at ``since``)."""
        prefix = conv.encode() + b"\0"
        with self.env.begin(db=self._db[b"conv"]) as txn:
            cur = txn.cursor()
            if after is not None:
                ok = cur.set_range(prefix + seq_key(after + 1))
                while ok and cur.key().startswith(prefix):
                    t = conv_time(cur.value())
                    if (since is None or t >= since) and (until is None or t <= until):
                        yield key_seq(cur.key()[-8:])
                    ok = cur.next()
                return
            start = prefix + seq_key(before) if before is not None else conv.encode() + b"\x01"
            ok = cur.set_range(start)
            ok = cur.prev() if ok else cur.last()
            while ok and cur.key().startswith(prefix):
                t = conv_time(cur.value())
                if until is not None and t > until:
                    ok = cur.prev()
                    continue
                if since is not None and t < since:
                    return
                yield key_seq(cur.key()[-8:])
                ok = cur.prev()

    def context_seqs(self, conv: str, seq: int, around: int) -> list[int]:
        """Up to ``around`` seqs before ``seq`` in its conversation, it, and ``around`` after,
        oldest first."""
        prefix = conv.encode() + b"\0"
        me = prefix + seq_key(seq)
        seqs: list[int] = []
        with self.env.begin(db=self._db[b"conv"]) as txn:
            cur = txn.cursor()
            if cur.set_range(me):
                before = []
                c2 = txn.cursor()
                c2.set_range(me)
                while len(before) < around and c2.prev() and c2.key().startswith(prefix):
                    before.append(key_seq(c2.key()[len(prefix):]))
                seqs = before[::-1]
                n = 0
                while n <= around and cur.key().startswith(prefix):
                    seqs.append(key_seq(cur.key()[len(prefix):]))
                    n += 1
                    if not cur.next():
                        break
        return seqs

    # -- audits and alerts ---------------------------------------------------------------
    def audit(self, key: bytes) -> dict | None:
        with self.env.begin() as txn:
            raw = self._get(txn, b"audits", key)
        return msgpack.unpackb(raw) if raw is not None else None

    def audits(self) -> list[tuple[bytes, dict]]:
        with self.env.begin() as txn:
            return [(k, msgpack.unpackb(v)) for k, v in self._items(txn, b"audits")]

    def audit_keys_among(self, keys: list[bytes]) -> list[bytes]:
        """Which of ``keys`` the ``audits`` table holds."""
        with self.env.begin(db=self._db[b"audits"]) as txn:
            return [k for k, _ in txn.cursor().getmulti(keys)]

    def add_audits(self, pairs: list[tuple[bytes, bytes]]) -> int:
        with self.write() as w:
            return w.add_audits(pairs)

    def alerts(self) -> list[dict]:
        with self.env.begin() as txn:
            rows = [msgpack.unpackb(v) for _, v in self._items(txn, b"alerts")]
            cur = txn.get(b"stream_time", db=self._db[b"meta"])
        now = key_seq(cur) if cur is not None else 0
        for r in rows:  # an unanswered customer has waited until the stream's newest message
            if r.get("kind") == "timeout_reply" and r.get("answered_at") is None:
                r["delay_ms"] = max(0, now - r["msgtime"])
        return rows

    def replace_timeout_alerts(self, alerts: list[tuple[bytes, bytes]], convs: Iterable[str],
                               also: Callable[[StoreWriter], None] | None = None) -> None:
        """Drops the timeout alerts of the conversations ``convs`` and writes ``alerts`` in
        their place, in one transaction (with what ``also`` writes)."""
        with self.env.begin(write=True) as txn:
            cur = txn.cursor(db=self._db[b"alerts"])
            stale = []
            for conv in convs:
                prefix = b"t" + conv.encode() + b"\0"
                if cur.set_range(prefix):
                    for k in cur.iternext(values=False):
                        if not k.startswith(prefix):
                            break
                        stale.append(k)
            db = self._db[b"alerts"]
            for k in stale:
                txn.delete(k, db=db)
            if alerts:
                txn.cursor(db=self._db[b"alerts"]).putmulti(self._seal(b"alerts", alerts))
            if also is not None:
                also(StoreWriter(self, txn))

    def word_stats(self) -> dict[str, tuple[int, int]]:
        """Per listed word: (trigger count, last trigger time ms) (rule A-1)."""
        with self.env.begin() as txn:
            rows = [msgpack.unpackb(v) for _, v in self._items(txn, b"wordstats")]
        return {w: (c, t) for w, c, t in rows}

    # -- quarantine ---------------------------------------------------------------------
    def quarantine_entries(self) -> list[dict]:
        """Every quarantined item and reject, oldest seq first (rejects last)."""
        out = []
        with self.env.begin() as txn:
            for _, v in self._items(txn, b"quarantine"):
                out.append({"table": "quarantine", **msgpack.unpackb(v)})
            for k, v in self._items(txn, b"rejects"):
                out.append({"table": "rejects", "key": k.hex(), **msgpack.unpackb(v)})
        return out

    def quarantined_items(self) -> list[str]:
        """The raw chatdata items of the quarantine table (for a retry)."""
        with self.env.begin() as txn:
            return [msgpack.unpackb(v)["item"] for _, v in self._items(txn, b"quarantine")]

    def release_quarantine(self, decoded: DecodedBatch,
                           also: Callable[[StoreWriter], None] | None = None) -> CommitResult:
        """Stores what a quarantine retry recovered, removes recovered and consent-dropped
        items from the quarantine table; items that failed again get their new reason.
        ``also`` writes more in the same transaction (the audit records)."""
        records = decoded.records()
        done = [k for k, v in decoded.seen() if v != b"Q"]
        with self.env.begin(write=True) as txn:
            if records:
                txn.cursor(db=self._db[b"records"]).putmulti(self._seal(b"records", records))
                txn.cursor(db=self._db[b"msgids"]).putmulti(decoded.msgids())
                txn.cursor(db=self._db[b"conv"]).putmulti(decoded.conv_entries())
            if done:
                txn.cursor(db=self._db[b"seen"]).putmulti(decoded.seen())
                q = txn.cursor(db=self._db[b"quarantine"])
                for key in done:  # per recovered item; retries are rare and small
                    if q.set_key(key):
                        q.delete()
            quarantine = decoded.quarantine()
            if quarantine:
                txn.cursor(db=self._db[b"quarantine"]).putmulti(self._seal(b"quarantine", quarantine))
            if also is not None:
                also(StoreWriter(self, txn))
            self._commit_policy_delta(txn, decoded)
            if decoded.max_msgtime is not None:
                self._advance(txn, b"stream_time", decoded.max_msgtime)
        return CommitResult(len(records), len(quarantine), 0, decoded.dropped)

    # -- keys at rest ---------------------------------------------------------------------
    def sealed_key_ids(self) -> dict[int, int]:
        """How many stored values each data key seals (None-sealed values count as -1)."""
        out: dict[int, int] = {}
        with self.env.begin() as txn:
            for table in self._sealed_tables + (b"meta",):
                for k, v in txn.cursor(db=self._db[table]):
                    if table == b"meta" and k not in _SEALED_META:
                        continue
                    kid = Vault.key_id_of(v)
                    kid = -1 if kid is None else kid
                    out[kid] = out.get(kid, 0) + 1
        return out

    def reseal(self, chunk: int = 5_000, plaintext: bool = False) -> int:
        """Seals again, under the current data key, every value that is under another key
        (or, with ``plaintext``, not sealed: the earlier format's), ``chunk`` values per
        transaction, so a crash keeps every value readable and a rerun goes on. Returns how
        many values were rewritten."""
        current = self.vault.current
        done = 0
        for table in self._sealed_tables + (b"meta",):
            db = self._db[table]
            after: bytes | None = None
            while True:
                with self.env.begin(write=True) as txn:
                    cur = txn.cursor(db=db)
                    # ``after``: the first key the previous chunk did not look at
                    ok = cur.set_range(after) if after is not None else cur.first()
                    todo, n = [], 0
                    while ok and n < chunk:
                        k, v = cur.key(), cur.value()
                        n += 1
                        if table != b"meta" or k in _SEALED_META:
                            kid = Vault.key_id_of(v)
                            if kid is None and plaintext:
                                todo.append((k, self._migrated(table, k, v)))
                            elif kid is not None and kid != current:
                                todo.append((k, self.vault.open(table, k, v)))
                        ok = cur.next()
                    last = cur.key() if ok else None
                    for k, plain in todo:
                        if table == b"wordstats" and plaintext:
                            txn.delete(k, db=db)
                            k = self._word_key(msgpack.unpackb(plain)[0])
                        txn.put(k, self.vault.seal(table, k, plain), db=db)
                    done += len(todo)
                if not ok:
                    break
                after = last
        return done

    def _migrated(self, table: bytes, key: bytes, value: bytes) -> bytes:
        """A value of the earlier plaintext format in this format's plaintext encoding."""
        if table == b"wordstats":  # word → (count, last) became digest → [word, count, last]
            count, last = struct.unpack(">Qq", value)
            return msgpack.packb([key.decode(), count, last])
        return bytes(value)

    def compact(self) -> None:
        """Rewrites the environment without its free pages (where values replaced by a
        migration or re-encryption could still be read), then swaps it in. No other
        process may have the store open (checked: :meth:`exclusive`)."""
        self.exclusive()
        compact_env(self.env, self.data_dir / "archive.lmdb")


class SealedLog:
    """An append-only log of JSON entries keyed by their index (8-byte big-endian), sealed
    like the archive, in an LMDB environment of its own (the access trail: it can be copied
    off as evidence by itself, and the archive's writers never wait for it). The trail owns
    what an entry means; this owns how it is stored.

    ``path`` missing and ``readonly``: an empty log (:attr:`exists` is False)."""

    def __init__(self, path: Path, vault: Vault, table: bytes, readonly: bool = False) -> None:
        self.path, self._vault, self._table = path, vault, table
        self.existed = path.exists()
        self._env: lmdb.Environment | None = None
        if readonly and not self.existed:
            return
        if not readonly:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._env = lmdb.open(str(path), map_size=1 << 36, max_dbs=2, readonly=readonly, sync=True)
        self._db = self._env.open_db(table, create=not readonly)

    @property
    def exists(self) -> bool:
        return self._env is not None

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _open(self, key: bytes, value: bytes) -> dict:
        return orjson.loads(self._vault.open(self._table, key, bytes(value)))

    def last(self) -> dict | None:
        if self._env is None:
            return None
        with self._env.begin(db=self._db) as txn:
            cur = txn.cursor()
            return self._open(cur.key(), cur.value()) if cur.last() else None

    def get(self, index: int) -> dict | None:
        if self._env is None:
            return None
        key = seq_key(index)
        with self._env.begin(db=self._db) as txn:
            v = txn.get(key)
        return self._open(key, v) if v is not None else None

    def append(self, make: Callable[[dict | None], list[dict]]) -> list[dict]:
        """One synced transaction: ``make(last entry)`` returns the entries to add (each with
        its ``index``), written sealed."""
        with self._env.begin(write=True, db=self._db) as txn:
            cur = txn.cursor()
            last = self._open(cur.key(), cur.value()) if cur.last() else None
            entries = make(last)
            for e in entries:
                key = seq_key(e["index"])
                txn.put(key, self._vault.seal(self._table, key, orjson.dumps(e)))
        return entries

    def entries(self, limit: int | None = None, before: int | None = None, newest_first: bool = False) -> list[dict]:
        """Entries oldest first (or newest first), ``limit`` at most, below index ``before``."""
        if self._env is None:
            return []
        out = []
        with self._env.begin(db=self._db) as txn:
            cur = txn.cursor()
            if newest_first:
                if before is None:
                    ok = cur.last()
                else:  # the last key below ``before``
                    ok = cur.set_range(seq_key(before))
                    ok = cur.prev() if ok else cur.last()
                while ok and (limit is None or len(out) < limit):
                    out.append(self._open(cur.key(), cur.value()))
                    ok = cur.prev()
            else:
                for k, v in cur:
                    out.append(self._open(k, v))
                    if limit is not None and len(out) >= limit:
                        break
        return out

    def scan(self) -> Iterator[tuple[int, dict | None]]:
        """Every stored ``(index, entry)`` in key order; the entry is None where the stored
        bytes do not open or are not a JSON entry (what a verifier reports as changed)."""
        if self._env is None:
            return
        with self._env.begin(db=self._db) as txn:
            for k, v in txn.cursor():
                try:
                    e = self._open(k, v)
                except (SealError, orjson.JSONDecodeError, ValueError):
                    e = None
                yield key_seq(k), e if isinstance(e, dict) else None

    def reseal(self, plaintext: bool = False) -> int:
        """Seals every entry again under the current data key (``plaintext``: also the
        earlier format's unsealed entries). Returns how many were rewritten."""
        if self._env is None:
            return 0
        current = self._vault.current
        with self._env.begin(write=True, db=self._db) as txn:
            todo = []
            for k, v in txn.cursor():
                kid = Vault.key_id_of(v)
                if kid is None and plaintext:
                    todo.append((k, bytes(v)))
                elif kid is not None and kid != current:
                    todo.append((k, self._vault.open(self._table, k, bytes(v))))
            for k, plain in todo:
                txn.put(k, self._vault.seal(self._table, k, plain))
        return len(todo)

    def key_ids(self) -> dict[int, int]:
        """Entries per data key (-1: not sealed)."""
        out: dict[int, int] = {}
        if self._env is None:
            return out
        with self._env.begin(db=self._db) as txn:
            for _, v in txn.cursor():
                kid = Vault.key_id_of(v)
                kid = -1 if kid is None else kid
                out[kid] = out.get(kid, 0) + 1
        return out

    def compact(self) -> None:
        """Rewrites the environment without its free pages and swaps it in (closes the log;
        the caller holds the store exclusively)."""
        if self._env is not None:
            compact_env(self._env, self.path)
            self._env = None


def compact_env(env: lmdb.Environment, path: Path) -> None:
    """Copies ``env`` (at ``path``) without its free pages, closes it, and swaps the copy
    in; a crash at any point is finished or undone by :func:`_recover_compaction`."""
    import shutil

    new, old = path.with_name(path.name + ".compact"), path.with_name(path.name + ".old")
    if new.exists():
        shutil.rmtree(new)
    new.mkdir(mode=0o700)
    env.copy(str(new), compact=True)
    with open(new / "data.mdb", "rb+") as f:
        os.fsync(f.fileno())
    fsync_dir(new)
    env.close()
    os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old)
    fsync_dir(path.parent)


def _recover_compaction(data_dir: Path) -> None:
    """Finishes or undoes a :func:`compact_env` a crash interrupted (archive and trail)."""
    for name in ("archive.lmdb", "trail.lmdb"):
        _recover_one(data_dir / name)


def _recover_one(path: Path) -> None:
    import shutil

    new, old = path.with_name(path.name + ".compact"), path.with_name(path.name + ".old")
    if path.exists():
        if new.exists():  # the copy was not finished: the original is intact
            shutil.rmtree(new)
        if old.exists():  # swapped already: the old copy is what is left to remove
            shutil.rmtree(old)
    elif old.exists() and new.exists():  # between the two renames: the copy was complete
        os.replace(new, path)
        shutil.rmtree(old)
    elif old.exists():
        os.replace(old, path)


def read_legacy_tables(path: Path, names: list[bytes]) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every entry of the named tables of an LMDB environment of an earlier layout (a
    data directory's own ``control.lmdb`` of accounts), read-only, for moving it in."""
    env = lmdb.open(str(path), max_dbs=len(names) + 1, readonly=True, lock=False)
    out: dict[bytes, list[tuple[bytes, bytes]]] = {}
    try:
        with env.begin() as txn:
            for name in names:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.NotFoundError:
                    continue
                out[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
    finally:
        env.close()
    return out


def reject_record(data: bytes, reason: str, detail: str, source: str) -> tuple[bytes, bytes]:
    """A ``rejects`` entry for a whole document that could not be used (kept verbatim)."""
    try:
        item: str | bytes = data.decode("utf-8")
    except UnicodeDecodeError:
        item = data
    value = msgpack.packb({"seq": None, "msgid": "", "publickey_ver": None, "reason": reason,
                           "detail": detail, "item": item, "at_ms": now_ms(), "source": source})
    return hashlib.sha256(data).digest(), value


class MediaFiles:
    """Media content in the data directory (``media/``), sealed like every stored value:
    a file is frames of ``u32 length, sealed chunk``, chunk *i* sealed under the file's
    download id and *i* (so chunks cannot be swapped or dropped unnoticed). Finished files
    are named by a keyed digest of their content (equal content is kept once; which
    download id sealed it is in the ``md.file`` table) and written by the media fetcher
    (:mod:`scrm_fast.media`); downloads in progress live in ``media/partial/`` until
    finished. The SCRM tables hold which file a media item is."""

    def __init__(self, store: ArchiveStore) -> None:
        self._vault = store.vault
        self.root = store.data_dir / "media"
        self._mac = hashlib.blake2b(key=store.token_key, digest_size=20, person=b"scrm-media")

    def _ensure(self) -> None:
        (self.root / "partial").mkdir(parents=True, exist_ok=True, mode=0o700)

    def partial(self, download_id: str) -> Path:
        self._ensure()
        return self.root / "partial" / download_id

    def final(self, name: str) -> Path:
        return self.root / name[:2] / name

    @staticmethod
    def _aad(download_id: str, i: int) -> bytes:
        return bytes.fromhex(download_id) + struct.pack(">I", i)

    def append(self, download_id: str, i: int, data: bytes, size_before: int) -> int:
        """Appends chunk ``i`` (durable on return) after ``size_before`` bytes (anything
        after it — a chunk written by a process killed before recording it — is cut off);
        returns the file's new size."""
        p = self.partial(download_id)
        sealed = self._vault.seal(b"media", self._aad(download_id, i), data)
        with open(p, "r+b" if p.exists() else "wb") as f:
            f.truncate(size_before)
            f.seek(size_before)
            f.write(struct.pack(">I", len(sealed)) + sealed)
            f.flush()
            os.fsync(f.fileno())
            return f.tell()

    def chunks(self, path: Path, download_id: str) -> Iterator[bytes]:
        """The opened chunks of a media file, in order (a damaged file raises InputError)."""
        with open(path, "rb") as f:
            i = 0
            while head := f.read(4):
                if len(head) < 4:
                    raise InputError(f"{path}: truncated media file")
                (n,) = struct.unpack(">I", head)
                sealed = f.read(n)
                if len(sealed) < n:
                    raise InputError(f"{path}: truncated media file")
                try:
                    yield self._vault.open(b"media", self._aad(download_id, i), sealed)
                except Exception as e:  # noqa: BLE001 - a wrong key or tampering: say which file
                    raise InputError(f"{path}: media chunk {i} does not open: {e}") from None
                i += 1

    def digest(self, download_id: str) -> tuple[str, int, str]:
        """A finished download's content name (keyed digest), size and md5 hex."""
        mac, md5, size = self._mac.copy(), hashlib.md5(usedforsecurity=False), 0
        for c in self.chunks(self.partial(download_id), download_id):
            mac.update(c)
            md5.update(c)
            size += len(c)
        return mac.hexdigest(), size, md5.hexdigest()

    def install(self, download_id: str, name: str) -> None:
        """Moves a finished download in place under its content name (durably)."""
        dest = self.final(name)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(self.partial(download_id), dest)
        fsync_dir(dest.parent)

    def discard(self, download_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.partial(download_id).unlink()
