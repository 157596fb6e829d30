"""Per-tenant storage: one data directory, one LMDB environment.

Tables (all keys of seq-keyed tables are 8-byte big-endian seqs, so LMDB order = seq order):

- ``records``    seq → msgpack record (normalized fields + the decrypted JSON, ``raw``)
- ``msgids``     msgid → seq
- ``seen``       seq → ``S`` stored / ``Q`` quarantined: every seq that ever arrived
- ``quarantine`` seq → msgpack (reason, detail, the chatdata item exactly as received)
- ``rejects``    sha256 → msgpack: documents and items that have no usable seq
- ``consent``    customer \0 time status → msgpack: consent changes (stream, APIs)
- ``spoken``     roomid \0 userid → first message time: archived members who spoke (C-5)
- ``events``     rule \0 employee \0 customer \0 roomid \0 since → msgpack enforcement event
- ``rulecounts`` ``kept:C-1`` / ``dropped:C-2`` … → 8-byte count of consent decisions
- ``conv``       conversation \0 seq → empty: stored messages by conversation, in order
- ``audits``     ``c``+seq+entry / ``b``+seq / ``e``+digest → msgpack audit record (A-2, A-4)
- ``wordstats``  listed word → trigger count and last trigger time (A-1)
- ``alerts``     audit key → msgpack alert with the leader chain to notify (A-5)
- ``meta``       ``checkpoint`` (8-byte seq) and schema version

Durability: :meth:`ArchiveStore.commit_batch` writes one batch in one LMDB write
transaction, synced to disk before it returns; the checkpoint moves in the same
transaction, so after a crash the store and the checkpoint always agree.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
import msgpack

from scrm_fast._core import DecodedBatch
from scrm_fast.errors import InputError

SCHEMA_VERSION = 1
_TABLES = (b"records", b"msgids", b"seen", b"quarantine", b"rejects", b"consent", b"spoken", b"events",
           b"rulecounts", b"conv", b"audits", b"wordstats", b"alerts", b"meta")
_CHECKPOINT = b"checkpoint"
# Virtual address space only: LMDB files grow with the data, not to this size.
DEFAULT_MAP_SIZE = 1 << 40


def seq_key(seq: int) -> bytes:
    return struct.pack(">Q", seq)


def key_seq(key: bytes) -> int:
    return struct.unpack(">Q", key)[0]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class CommitResult:
    stored: int
    quarantined: int
    rejected: int
    dropped: int = 0


class ArchiveStore:
    """The archive of one tenant. Open one per process; LMDB serialises writers."""

    def __init__(self, data_dir: str | os.PathLike[str], *, readonly: bool = False,
                 map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.data_dir = Path(data_dir)
        path = self.data_dir / "archive.lmdb"
        if readonly and not path.exists():
            raise InputError(f"{self.data_dir}: no archive here (run `scrm ingest` first)")
        if not readonly:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"{self.data_dir}: cannot create data directory: {e.strerror}") from e
        try:
            self.env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_TABLES) + 4,
                                 readonly=readonly, lock=True, sync=True, metasync=True)
        except lmdb.Error as e:
            raise InputError(f"{path}: cannot open archive: {e}") from e
        self._db = {}
        if readonly:
            for name in _TABLES:
                self._db[name] = self.env.open_db(name, create=False)
        else:
            for name in _TABLES:
                self._db[name] = self.env.open_db(name)
            with self.env.begin(write=True) as txn:
                if txn.get(b"schema", db=self._db[b"meta"]) is None:
                    txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self._db[b"meta"])

    def close(self) -> None:
        self.env.close()

    def db(self, name: str):
        """The handle of one table (for the modules that own a table's format)."""
        return self._db[name.encode()]

    def __enter__(self) -> ArchiveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest -----------------------------------------------------------------------
    def seen_among(self, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
        """The ``(seq_key, status)`` pairs of ``keys`` that already arrived once."""
        if not keys:
            return []
        with self.env.begin(db=self._db[b"seen"]) as txn:
            return txn.cursor().getmulti(keys)

    def commit_batch(self, decoded: DecodedBatch, extra_rejects: list[tuple[bytes, bytes]] = (),
                     also: Callable[[lmdb.Transaction], None] | None = None) -> CommitResult:
        """Makes one decoded batch durable (one synced transaction) and advances the
        checkpoint to the batch's highest seq. ``also`` writes more in the same
        transaction (the batch's audit records)."""
        records = decoded.records()
        quarantine = decoded.quarantine()
        rejects = decoded.rejects() + list(extra_rejects)
        with self.env.begin(write=True) as txn:
            if records:
                txn.cursor(db=self._db[b"records"]).putmulti(records)
                txn.cursor(db=self._db[b"msgids"]).putmulti(decoded.msgids())
                txn.cursor(db=self._db[b"conv"]).putmulti(decoded.conv_entries())
            if quarantine:
                txn.cursor(db=self._db[b"quarantine"]).putmulti(quarantine)
            if also is not None:
                also(txn)
            if records or quarantine or decoded.dropped:
                txn.cursor(db=self._db[b"seen"]).putmulti(decoded.seen())
            if rejects:
                txn.cursor(db=self._db[b"rejects"]).putmulti(rejects)
            self._commit_policy_delta(txn, decoded)
            if decoded.max_msgtime is not None:
                self._advance(txn, b"stream_time", decoded.max_msgtime)
            if decoded.max_seq is not None:
                self._advance_checkpoint(txn, decoded.max_seq)
        return CommitResult(len(records), len(quarantine), len(rejects), decoded.dropped)

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
            txn.cursor(db=self._db[b"consent"]).putmulti(consent)
        spoken = decoded.spoken_entries()
        if spoken:
            txn.cursor(db=self._db[b"spoken"]).putmulti(spoken, overwrite=False)
        events = decoded.events()
        if events:
            txn.cursor(db=self._db[b"events"]).putmulti(events, overwrite=False)
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
            return list(txn.cursor(db=self._db[b"consent"])), list(txn.cursor(db=self._db[b"spoken"]))

    def put_consent(self, entries: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            txn.cursor(db=self._db[b"consent"]).putmulti(entries)

    def consent_changes(self) -> list[dict]:
        out = []
        with self.env.begin() as txn:
            for k, v in txn.cursor(db=self._db[b"consent"]):
                customer, _, rest = k.partition(b"\0")
                out.append({"external_userid": customer.decode(), "time": key_seq(rest[:8]), **msgpack.unpackb(v)})
        return out

    def enforcement_events(self) -> list[dict]:
        with self.env.begin() as txn:
            events = [msgpack.unpackb(v) for _, v in txn.cursor(db=self._db[b"events"])]
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
            txn.cursor(db=self._db[b"rejects"]).putmulti(rejects)

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

    def record_value_chunks(self, chunk: int = 10_000) -> Iterator[list[bytes]]:
        """Stored record values (msgpack) in seq order, ``chunk`` at a time."""
        with self.env.begin(db=self._db[b"records"], buffers=False) as txn:
            cur = txn.cursor()
            it = cur.iternext(keys=False, values=True)
            while True:
                block = [v for _, v in zip(range(chunk), it, strict=False)]
                if not block:
                    return
                yield block

    def record_pair_chunks(self, chunk: int = 10_000) -> Iterator[list[tuple[bytes, bytes]]]:
        """(seq_key, record) pairs in seq order, ``chunk`` at a time."""
        with self.env.begin(db=self._db[b"records"]) as txn:
            it = iter(txn.cursor())
            while True:
                block = [kv for _, kv in zip(range(chunk), it, strict=False)]
                if not block:
                    return
                yield block

    def get_record(self, seq: int) -> dict | None:
        with self.env.begin(db=self._db[b"records"]) as txn:
            v = txn.get(seq_key(seq))
        return msgpack.unpackb(v) if v is not None else None

    def seq_of_msgid(self, msgid: str) -> int | None:
        with self.env.begin(db=self._db[b"msgids"]) as txn:
            v = txn.get(msgid.encode())
        return key_seq(v) if v is not None else None

    def quarantine_entries(self) -> list[dict]:
        """Every quarantined item and reject, oldest seq first (rejects last)."""
        out = []
        with self.env.begin() as txn:
            for _, v in txn.cursor(db=self._db[b"quarantine"]):
                out.append({"table": "quarantine", **msgpack.unpackb(v)})
            for k, v in txn.cursor(db=self._db[b"rejects"]):
                out.append({"table": "rejects", "key": k.hex(), **msgpack.unpackb(v)})
        return out

    def quarantined_items(self) -> list[str]:
        """The raw chatdata items of the quarantine table (for a retry)."""
        with self.env.begin(db=self._db[b"quarantine"]) as txn:
            return [msgpack.unpackb(v)["item"] for _, v in txn.cursor()]

    def release_quarantine(self, decoded: DecodedBatch) -> CommitResult:
        """Stores what a quarantine retry recovered, removes recovered and consent-dropped
        items from the quarantine table; items that failed again get their new reason."""
        records = decoded.records()
        done = [k for k, v in decoded.seen() if v != b"Q"]
        with self.env.begin(write=True) as txn:
            if records:
                txn.cursor(db=self._db[b"records"]).putmulti(records)
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
                txn.cursor(db=self._db[b"quarantine"]).putmulti(quarantine)
            self._commit_policy_delta(txn, decoded)
        return CommitResult(len(records), len(quarantine), 0, decoded.dropped)


def reject_record(data: bytes, reason: str, detail: str, source: str) -> tuple[bytes, bytes]:
    """A ``rejects`` entry for a whole document that could not be used (kept verbatim)."""
    try:
        item: str | bytes = data.decode("utf-8")
    except UnicodeDecodeError:
        item = data
    value = msgpack.packb({"seq": None, "msgid": "", "publickey_ver": None, "reason": reason,
                           "detail": detail, "item": item, "at_ms": now_ms(), "source": source})
    return hashlib.sha256(data).digest(), value
