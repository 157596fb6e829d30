"""The access trail (rule R-4): every read of archived content and every audit verdict is
appended to a log that is evidence. Each entry carries a keyed MAC (HMAC-SHA256 with the
trail key) over the previous entry's MAC and its own canonical JSON, so changing, removing
or reordering any stored entry breaks the chain from there on and nobody without the master
key can forge a new chain; entries are sealed at rest like the archive.

After every commit the head (entry count and last MAC, itself MAC'd) is **anchored outside
the data directory**: a file beside the master key (``sealing.anchor_path``). So ``verify``
also detects what a chain alone cannot: a truncated tail, a rollback of the whole data
directory to an older copy, a deleted trail. A writable trail whose stored head falls short
of its anchor refuses to open (a server does not start on a rolled-back directory).

Stored in a :class:`~scrm_fast.storage.SealedLog` of its own (``trail.lmdb`` in the data
directory), so that the archive's writers never wait for it and it can be copied off as
evidence on its own; this module owns what an entry means, the store how it is kept.

Cost: one synced write per *group* of appends (group commit) plus one anchor replacement:
threads queue their entries and one writer thread commits everything queued in one
transaction; an event loop commits what its requests appended during one turn in one
transaction (``append_async``). Each append returns only when its entry is durable.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import os
import threading
from pathlib import Path

import orjson

from scrm_fast.errors import InputError
from scrm_fast.storage import SealedLog, now_ms

GENESIS = "0" * 64
_TABLE = b"trail"
_FIELDS = ("index", "at", "user", "action", "target", "detail", "prev")
_SLOT = 256


class TrailTamperedError(InputError):
    """The trail does not match its anchor (truncated, rolled back or deleted)."""


def _canonical(body: dict) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _legacy_digest(prev: str, body: dict) -> str:
    """The earlier, unkeyed chain (SHA-256): entries written before the trail was keyed."""
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


class AccessTrail:
    """One data directory's trail. ``store``: its open :class:`ArchiveStore` (the keys);
    ``anchor``: the anchor file (default: beside the master key, when its path is known)."""

    def __init__(self, store, readonly: bool = False, anchor: Path | None = None) -> None:
        from scrm_fast import sealing

        self.data_dir = Path(store.data_dir)
        self._key = store.keys.trail_key
        if not self._key:
            raise InputError(f"{self.data_dir}: the key file has no trail key (open the store writable once)")
        if anchor is None and store.master_path is not None:
            anchor = sealing.anchor_path(store.master_path, store.keys.file.trail_id)
        self.anchor = anchor
        self._afd: int | None = None
        self.log = SealedLog(self.data_dir / "trail.lmdb", store.vault, _TABLE, readonly=readonly)
        self._cond = threading.Condition()
        self._queue: list[tuple[dict, object]] = []
        self._closed = False
        self._writer: threading.Thread | None = None
        # entries appended from event loops, per loop, until the loop commits them
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[dict, asyncio.Future]]] = {}
        self._lock = threading.Lock()
        if not readonly:
            problem = self._anchor_problem()
            if problem is not None:
                self.log.close()
                raise TrailTamperedError(f"{self.data_dir}: access trail {problem}; refusing to append to it "
                                         "(`scrm trail verify` says more)")

    # -- keyed chain -------------------------------------------------------------------
    def _mac(self, prev: str, body: dict) -> str:
        return hmac.new(self._key, prev.encode() + _canonical(body), hashlib.sha256).hexdigest()

    # -- the anchor --------------------------------------------------------------------
    # Two fixed slots of _SLOT bytes, written in place in turn (a torn write spoils one slot,
    # never both); each holds {"seq", "entries", "head", "mac"}; the valid slot with the
    # highest seq is the anchor. Writers of every process take turns on a flock of the file.
    def _anchor_fd(self) -> int:
        if self._afd is None:
            self._afd = os.open(self.anchor, os.O_RDWR | os.O_CREAT, 0o600)
        return self._afd

    def _slots(self, fd: int) -> list[dict]:
        out = []
        raw = os.pread(fd, 2 * _SLOT, 0)
        for at in (0, _SLOT):
            chunk = raw[at:at + _SLOT].strip(b" \n\0")
            if not chunk:
                continue
            try:
                a = orjson.loads(chunk)
                seq, entries, head = int(a["seq"]), int(a["entries"]), str(a["head"])
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                out.append({"bad": True})
                continue
            if not hmac.compare_digest(str(a.get("mac", "")), self._anchor_mac(seq, entries, head)):
                out.append({"bad": True})
                continue
            out.append({"seq": seq, "entries": entries, "head": head})
        return out

    def _read_anchor(self) -> dict | None:
        if self.anchor is None or not self.anchor.exists():
            return None
        try:
            fd = os.open(self.anchor, os.O_RDONLY)
        except OSError:
            return {"bad": True}
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            slots = self._slots(fd)
        finally:
            os.close(fd)
        good = [a for a in slots if not a.get("bad")]
        if not good:
            return {"bad": True} if slots else None
        return max(good, key=lambda a: a["seq"])

    def _anchor_mac(self, seq: int, entries: int, head: str) -> str:
        return hmac.new(self._key, f"anchor\0{seq}\0{entries}\0{head}".encode(), hashlib.sha256).hexdigest()

    def _write_anchor(self, entries: int, head: str) -> None:
        """Moves the anchor to this head unless another process (a server worker) already
        anchored a later one. Not fsynced: an anchor that lags after a power cut only leaves
        a tail unanchored (never a false alarm); a synced one cost each loop turn an fsync."""
        if self.anchor is None:
            return
        fd = self._anchor_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            good = [a for a in self._slots(fd) if not a.get("bad")]
            cur = max(good, key=lambda a: a["seq"]) if good else None
            if cur is not None and cur["entries"] >= entries:
                return
            seq = (cur["seq"] + 1) if cur is not None else 0
            body = orjson.dumps({"seq": seq, "entries": entries, "head": head,
                                 "mac": self._anchor_mac(seq, entries, head)})
            os.pwrite(fd, body.ljust(_SLOT - 1) + b"\n", (seq % 2) * _SLOT)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _head(self) -> tuple[int, str]:
        """(entries, last MAC) as stored."""
        e = self.log.last()
        return (0, GENESIS) if e is None else (e["index"] + 1, e.get("mac") or e.get("hash"))

    def _mac_at(self, index: int) -> str | None:
        e = self.log.get(index)
        return None if e is None else e.get("mac") or e.get("hash")

    def _anchor_problem(self) -> str | None:
        a = self._read_anchor()
        if a is None:
            return None
        if a.get("bad"):
            return f"anchor {self.anchor} is damaged or not this trail's"
        n, _ = self._head()
        if (not self.log.exists or (not self.log.existed and n == 0)) and a["entries"] > 0:
            return f"was deleted: its anchor records {a['entries']} entries"
        if n < a["entries"]:
            return (f"holds {n} entries but its anchor records {a['entries']}: truncated, or the data "
                    "directory was rolled back to an older copy")
        if a["entries"] and self._mac_at(a["entries"] - 1) != a["head"]:
            return (f"entry {a['entries'] - 1} differs from the anchored head: the data directory was "
                    "rolled back and written again, or the trail was rewritten")
        return None

    # -- appending ---------------------------------------------------------------------
    def close(self) -> None:
        # entries a loop appended but has not committed yet (closing from that loop's thread,
        # or after it stopped): written now, not lost
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop in list(self._pending):
            if loop is running or not loop.is_running():
                self._commit_pending(loop)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join()
        self.log.close()
        if self._afd is not None:
            os.close(self._afd)
            self._afd = None

    def append(self, user: str, action: str, target: str, detail: dict | None = None) -> dict:
        """Appends one entry and returns it once it is durable."""
        slot: dict = {}

        def done(kind: str, value: object) -> None:  # called with self._cond held
            slot[kind] = value

        with self._cond:
            self._enqueue(user, action, target, detail, done)
            while "entry" not in slot and "error" not in slot:
                self._cond.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["entry"]

    def append_async(self, user: str, action: str, target: str, detail: dict | None = None) -> asyncio.Future:
        """Queues one entry from an event loop: the future resolves once it is durable.

        Group commit on the loop's own thread: every entry appended during one turn of the
        loop goes into one synced transaction, committed by a callback that runs after the
        callbacks already due (``call_soon``). The loop waits for that one commit (a synced
        LMDB commit, ~0.3–0.5 ms here) once per batch, not per request, and no thread is
        woken: handing the batch to a writer thread and back cost more CPU per request (two
        thread switches, the GIL handed over each way) and a longer tail (measured: p99
        36–41 ms against 50–55 ms at 50 clients, see issue 6's note)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        if self._closed:
            raise RuntimeError("access trail is closed")
        fields = {"at": now_ms(), "user": user, "action": action, "target": target, "detail": detail or {}}
        pending = self._pending.setdefault(loop, [])
        pending.append((fields, fut))
        if len(pending) == 1:
            loop.call_soon(self._commit_pending, loop)
        return fut

    def _commit_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        if not batch:
            return
        try:
            # the writer thread's commits and these take turns on a Python lock (waiting for
            # it frees the GIL), never inside LMDB's own write lock while holding the GIL
            with self._lock:
                done = self._commit(batch)
        except Exception as e:  # noqa: BLE001 - handed to every waiting request
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), entry in zip(batch, done, strict=True):
            if not fut.done():
                fut.set_result(entry)

    def _enqueue(self, user: str, action: str, target: str, detail: dict | None, done) -> None:
        if self._closed:
            raise RuntimeError("access trail is closed")
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="scrm-trail", daemon=True)
            self._writer.start()
        fields = {"at": now_ms(), "user": user, "action": action, "target": target, "detail": detail or {}}
        self._queue.append((fields, done))
        self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
            try:
                with self._lock:
                    done = self._commit(batch)
                results = [("entry", e) for e in done]
            except Exception as e:  # noqa: BLE001 - handed to every waiting caller
                results = [("error", e)] * len(batch)
            with self._cond:
                for (_, callback), (k, v) in zip(batch, results, strict=True):
                    callback(k, v)
                self._cond.notify_all()

    def _commit(self, batch: list[tuple[dict, object]]) -> list[dict]:
        def make(last: dict | None) -> list[dict]:
            index, prev = (0, GENESIS) if last is None else (last["index"] + 1, last.get("mac") or last["hash"])
            out = []
            for fields, _ in batch:
                body = {"index": index, **fields, "prev": prev}
                entry = {**body, "mac": self._mac(prev, body)}
                out.append(entry)
                index, prev = index + 1, entry["mac"]
            return out

        out = self.log.append(make)
        # after the commit: an anchor never names an entry that is not durable
        if out:
            self._write_anchor(out[-1]["index"] + 1, out[-1]["mac"])
        return out

    # -- keys at rest and reading (the log's) ----------------------------------------------
    def reseal(self, plaintext: bool = False) -> int:
        with self._lock:
            return self.log.reseal(plaintext)

    def key_ids(self) -> dict[int, int]:
        return self.log.key_ids()

    def compact(self) -> None:
        self.log.compact()

    def entries(self, limit: int | None = None, before: int | None = None, newest_first: bool = False) -> list[dict]:
        """Entries oldest first (or newest first), ``limit`` at most, below index ``before``."""
        return self.log.entries(limit, before, newest_first)

    def verify(self) -> dict:
        """Walks the chain and compares its head with the anchor. ``{"ok": True, "entries":
        n, "head": mac, "anchored": bool}`` or the first problem found (``first_broken``,
        ``why``)."""
        prev, expected_index, n = GENESIS, 0, 0
        keyed_seen = False
        for key_index, e in self.log.scan():
            n += 1
            try:
                body = {f: e[f] for f in _FIELDS}
            except (KeyError, TypeError):  # None: the bytes did not open
                return {"ok": False, "entries": n, "first_broken": key_index,
                        "why": "entry does not open or is not a trail entry (changed)"}
            if key_index != expected_index or e["index"] != expected_index:
                return {"ok": False, "entries": n, "first_broken": key_index,
                        "why": f"expected entry {expected_index} here (removed or reordered)"}
            if e["prev"] != prev:
                return {"ok": False, "entries": n, "first_broken": key_index,
                        "why": "previous-MAC link does not match the entry before (removed or reordered)"}
            if "mac" in e:
                keyed_seen = True
                ok = hmac.compare_digest(self._mac(prev, body), str(e["mac"]))
                this = e["mac"]
            else:  # the earlier unkeyed chain may only come before every keyed entry
                ok = not keyed_seen and _legacy_digest(prev, body) == e.get("hash")
                this = e.get("hash")
            if not ok:
                return {"ok": False, "entries": n, "first_broken": key_index,
                        "why": "content does not match its MAC (entry was changed)"}
            prev, expected_index = this, expected_index + 1
        a = self._read_anchor()
        out = {"ok": True, "entries": n, "head": prev, "anchored": a is not None and not a.get("bad")}
        if a is None:
            return out
        problem = self._anchor_problem()
        if problem is not None:
            return {**out, "ok": False, "first_broken": min(n, a.get("entries", n)), "why": problem}
        if a["entries"] < n:
            # appended after the last anchor write (a crash between commit and anchor): fine
            out["unanchored_tail"] = n - a["entries"]
        return out
