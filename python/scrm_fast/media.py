"""Media of the archive (``wecom-archive.md`` §1, §4): images, voice, video, files,
emotions, meeting voice calls, voip doc shares and the media items of mixed messages,
fetched with ``GetMediaData`` through the supervised SDK worker, in chunks (``indexbuf``
passed back until ``is_finish``), each chunk sealed and durable before the next is asked
for, so a kill mid-file resumes at the last chunk. The ``md5sum`` the message states is
checked (a mismatch is fetched once more from the start — the spec says a retry can fix it
— then kept flagged ``md5_mismatch``).

Tables (SCRM tables of the store): ``md.todo`` (fid → what to fetch; written with the batch
that stored the message), ``md.part`` (fid → a download in progress), ``md.item`` (fid →
the outcome: file name and download id, size, md5, or the reason it could not be fetched),
``md.seq`` (seq → the message's media, in order), ``md.file`` (content name → download id
that sealed it). ``fid`` is a keyed digest of the sdkfileid."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from scrm_fast.storage import ArchiveStore, app_key

TODO, PART, ITEM, SEQ, FILE = "md.todo", "md.part", "md.item", "md.seq", "md.file"
log = logging.getLogger("scrm.media")
MAX_BYTES = 100 << 20  # larger media is recorded as too_large, not fetched
TRANSIENT = {10001, 10002, 10003}


def fid_of(store: ArchiveStore, sdkfileid: str) -> bytes:
    return store.app_digest("media", sdkfileid)


def queue_media(store: ArchiveStore, t, decoded) -> int:
    """Queues a decoded batch's media for fetching inside the batch's transaction (``t``: its
    SCRM tables); media already fetched (a forwarded image) is not queued again. The entries
    are built and packed in Rust (``DecodedBatch.media_entries``), a batch at a time."""
    todo, by_seq = decoded.media_entries(*store.app_digest_key)
    done = t.get_many(ITEM, [fid for fid, _ in todo])
    fresh = [e for e, d in zip(todo, done, strict=True) if d is None]
    t.put_packed(TODO, fresh)
    t.put_packed(SEQ, by_seq)
    return len(fresh)


@dataclass
class MediaSummary:
    fetched: int = 0
    resumed: int = 0
    bytes: int = 0
    failed: dict = field(default_factory=dict)
    already: int = 0

    def as_dict(self) -> dict:
        return {"fetched": self.fetched, "resumed": self.resumed, "bytes": self.bytes,
                "failed_by_reason": dict(sorted(self.failed.items())), "already_stored": self.already}


class MediaFetcher:
    """Fetches every pending media item with ``workers`` (supervised SDK workers, one
    download each at a time: the concurrency bound)."""

    def __init__(self, store: ArchiveStore, workers: list, *, max_bytes: int = MAX_BYTES, timeout_s: int = 30,
                 proxy: str | None = None, passwd: str | None = None, retries: int = 3,
                 sleep=time.sleep) -> None:
        self.store, self.workers = store, workers
        self.max_bytes, self.timeout_s, self.proxy, self.passwd = max_bytes, timeout_s, proxy, passwd
        self.retries, self.sleep = retries, sleep
        self.summary = MediaSummary()
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def pending(self) -> list[tuple[bytes, dict]]:
        with self.store.app_read() as t:
            return list(t.scan(TODO))

    def _sweep(self) -> None:
        """Removes partial files no download records (a download is recorded before its file
        exists, so such a file is left from a discarded one)."""
        d = self.store.media.root / "partial"
        if not d.exists():
            return
        files = list(d.iterdir())  # before the records: a file listed here was recorded before it existed
        with self.store.app_read() as t:
            live = {v["id"] for _, v in t.scan(PART) if v}
        for f in files:
            if f.name not in live:
                f.unlink(missing_ok=True)

    def run(self) -> MediaSummary:
        self._sweep()
        queue = self.pending()
        it = iter(queue)

        def loop(worker) -> None:
            while True:
                with self._lock:
                    nxt = next(it, None)
                if nxt is None:
                    return
                try:
                    self.fetch_one(worker, *nxt)
                except Exception as e:  # noqa: BLE001 - one item's failure is recorded, the rest go on
                    log.exception("media %s", nxt[1].get("sdkfileid"))
                    self._count_fail("error")
                    self.errors.append(f"{nxt[1].get('sdkfileid')}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=loop, args=(w,), name=f"scrm-media-{i}") for i, w in
                   enumerate(self.workers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return self.summary

    def _count_fail(self, reason: str) -> None:
        with self._lock:
            self.summary.failed[reason] = self.summary.failed.get(reason, 0) + 1

    def _done(self, fid: bytes, item: dict, outcome: dict) -> None:
        with self.store.app_write() as t:
            t.put(ITEM, fid, {**{k: item[k] for k in ("sdkfileid", "kind", "filename", "seq", "msgid")},
                              "stated_md5": item.get("md5", ""), **outcome})
            t.delete(TODO, fid)
            t.delete(PART, fid)

    def fetch_one(self, worker, fid: bytes, item: dict) -> None:
        media = self.store.media
        if item.get("size", 0) > self.max_bytes:
            self._done(fid, item, {"ok": False, "reason": "too_large",
                                   "detail": f"stated size {item['size']} over the limit {self.max_bytes}"})
            self._count_fail("too_large")
            return
        with self.store.app_read() as t:
            part = t.get(PART, fid)
        if part is not None:
            p = media.partial(part["id"])
            if not p.exists() or p.stat().st_size < part["bytes"]:
                media.discard(part["id"])
                part = None  # killed while finishing (the file moved) or the disk lost it: start over
        for attempt in range(2):  # a second time from the start when the md5 disagrees
            if part is None:
                part = {"id": os.urandom(16).hex(), "indexbuf": "", "chunks": 0, "bytes": 0}
                with self.store.app_write() as t:  # recorded before its file exists: no orphan file
                    t.put(PART, fid, part)
            elif part["chunks"]:
                with self._lock:
                    self.summary.resumed += 1
            failure = self._download(worker, item["sdkfileid"], fid, part)
            if failure is not None:
                media.discard(part["id"])
                self._done(fid, item, {"ok": False, **failure})
                self._count_fail(failure["reason"])
                return
            name, size, md5 = media.digest(part["id"])
            with self.store.app_write() as t:  # equal content is kept once, under the id that sealed it
                owner = t.get(FILE, app_key(name))
                mine = owner is None or not media.final(name).exists()
                if mine:  # recorded before the move: a kill between them resumes into the same id
                    owner = {"id": part["id"]}
                    t.put(FILE, app_key(name), owner)
            if mine:
                media.install(part["id"], name)
            else:
                media.discard(part["id"])
            stated = item.get("md5", "")
            if stated and stated.lower() != md5 and attempt == 0:
                part = None
                with self.store.app_write() as t:
                    t.delete(PART, fid)
                continue
            ok = not stated or stated.lower() == md5
            self._done(fid, item, {"ok": ok, "name": name, "id": owner["id"], "size": size, "md5": md5,
                                   **({} if ok else {"reason": "md5_mismatch",
                                                     "detail": f"stated {stated}, got {md5} (twice)"})})
            with self._lock:
                if ok:
                    self.summary.fetched += 1
                    self.summary.bytes += size
            if not ok:
                self._count_fail("md5_mismatch")
            return

    def _download(self, worker, sdkfileid: str, fid: bytes, part: dict) -> dict | None:
        """Chunks until ``is_finish``; None when done, else the failure."""
        media = self.store.media
        failures = 0
        while True:
            c = worker.get_media_data(sdkfileid, part["indexbuf"], self.proxy, self.passwd, self.timeout_s)
            if c.rc in TRANSIENT and failures < self.retries:
                failures += 1
                self.sleep(0.2 * 2 ** failures)
                continue
            if c.rc != 0:
                from scrm_fast.sync import CODES

                reason = {10005: "bad_fileid", 10010: "media_expired"}.get(c.rc, "vendor_error")
                return {"reason": reason, "detail": f"GetMediaData returned {c.rc} ({CODES.get(c.rc, 'unknown')})"}
            failures = 0
            part["plain"] = part.get("plain", 0) + len(c.data)
            if part["plain"] > self.max_bytes:
                return {"reason": "too_large", "detail": f"more than {self.max_bytes} bytes"}
            if not c.is_finish and (not c.outindex or c.outindex == part["indexbuf"]):
                return {"reason": "vendor_error", "detail": "GetMediaData did not move its indexbuf"}
            part["bytes"] = media.append(part["id"], part["chunks"], c.data, part["bytes"])
            part["chunks"] += 1
            part["indexbuf"] = c.outindex
            with self.store.app_write() as t:
                t.put(PART, fid, part)  # after the chunk is durable: a kill resumes right here
            if c.is_finish:
                return None

def _state(item: dict | None) -> str:
    return "pending" if item is None else ("stored" if item.get("ok") else item.get("reason", "failed"))


def media_of(store: ArchiveStore, seq: int) -> list[dict]:
    """The media of stored message ``seq``, in order, with each item's state
    (``pending``, ``stored``, or the reason it could not be fetched)."""
    with store.app_read() as t:
        refs = t.get(SEQ, app_key(f"{seq:020d}")) or []
        out = []
        for n, r in enumerate(refs):
            item = t.get(ITEM, r["fid"])
            out.append({"n": n, "kind": r["kind"], "filename": r["filename"],
                        "size": (item or {}).get("size", r["size"]), "state": _state(item), "_item": item})
        return out


MEDIA_MSGTYPES = {"image", "voice", "video", "file", "emotion", "meeting_voice_call", "voip_doc_share", "mixed"}


def annotate(store: ArchiveStore, messages: list[dict]) -> None:
    """Adds ``media: [{n, kind, state}]`` to each message of a page that has media (two
    batch reads for the page)."""
    want = [m for m in messages if m.get("msgtype") in MEDIA_MSGTYPES]
    if not want:
        return
    with store.app_read() as t:
        refs = t.get_many(SEQ, [app_key(f"{m['seq']:020d}") for m in want])
        fids = [r["fid"] for rs in refs if rs for r in rs]
        items = dict(zip(fids, t.get_many(ITEM, fids), strict=True)) if fids else {}
    for m, rs in zip(want, refs, strict=True):
        if not rs:
            continue
        m["media"] = [{"n": n, "kind": r["kind"], "state": _state(items.get(r["fid"]))} for n, r in enumerate(rs)]
