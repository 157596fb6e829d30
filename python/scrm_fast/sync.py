"""Live sync from WeCom's chat archive (``wecom-archive.md`` §1, §5): GetChatData from the
stored checkpoint, through the supervised SDK worker; each answer is kept raw and durable
(the spool) before the next call, and ingested through the tenant from there.

A round asks for batches of 1000 after the checkpoint until a short one; then the sync
waits for a ``msgaudit_notify`` callback (recorded by the server in the store) or the
interval. Nothing is kept outside the store: the checkpoint moves in the same transaction
as the batch it covers, and a spooled answer stays until its batch is committed, so a kill
at any moment loses and duplicates nothing (a re-driven batch's seqs already stored are
skipped before any RSA work).

SDK return codes, each on purpose: 10001 (network) and 10003 (system) and 10002 (parse)
back off with jitter and ask again; 10009 (IP not allowed), 10011 (certificate), 10010
(data expired), 10000 (bad parameter) stop with what to do; an item of a key version not
installed (10007's case) stays quarantined with its raw ciphertext, and the operator is
told which version to add before ``scrm quarantine --retry``.
"""

from __future__ import annotations

import queue
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import orjson

from scrm_fast.errors import ScrmError
from scrm_fast.sources import Document
from scrm_fast.storage import app_key

LIMIT = 1000  # GetChatData's largest batch
CALLS_PER_MINUTE = 600  # GetChatData's limit (spec §5)
# every return code of the SDK (spec §1)
CODES = {10000: "bad parameter", 10001: "network error", 10002: "data parse failure", 10003: "system failure",
         10004: "encryption failed because of a key error", 10005: "bad fileid", 10006: "decryption failed",
         10007: "no private key for the message's encryption version", 10008: "cannot parse encrypt_key",
         10009: "IP not allowed", 10010: "data expired", 10011: "certificate error"}
TRANSIENT = {10001: "network error", 10002: "data parse failure", 10003: "system failure"}
FATAL = {
    10000: "bad parameter (the request itself is wrong; this is a bug or a changed limit)",
    10009: "IP not allowed: add this server's outgoing IP to the chat archive's trusted IPs "
           "in WeCom's admin console (管理后台 → 会话内容存档 → 可信IP)",
    10010: "data expired: the checkpoint is older than WeCom keeps archive data (about 3 days)",
    10011: "certificate error: the SDK cannot verify WeCom's server certificate (check --proxy and the "
           "system clock)",
}


class SyncStopped(ScrmError):
    """The sync cannot go on without the operator (the message says what to do)."""


@dataclass
class SyncConfig:
    corpid: str
    secret: str
    proxy: str | None = None
    passwd: str | None = None
    timeout_s: int = 10
    interval_s: float = 30.0
    once: bool = False
    # in --once mode, transient errors in a row before giving up
    max_retries: int = 5
    media: bool = True  # fetch the round's media after it (GetMediaData through the same worker)
    directory_every_s: float = 3600.0  # the directory (and consent answers) refreshed this often
    max_media_bytes: int = 100 << 20
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass
class SyncSummary:
    rounds: int = 0
    calls: int = 0
    transient_errors: int = 0
    fetched: int = 0
    ingested: int = 0
    duplicates_skipped: int = 0
    quarantined: int = 0
    dropped_by_consent: int = 0
    reasons: dict = field(default_factory=dict)
    sdk_restarts: int = 0
    checkpoint: int = 0
    stopped_by: str = ""
    media_fetched: int = 0
    media_failed: dict = field(default_factory=dict)
    directory_refreshes: int = 0

    def as_dict(self) -> dict:
        return {"rounds": self.rounds, "calls": self.calls, "transient_errors": self.transient_errors,
                "fetched": self.fetched, "ingested": self.ingested, "duplicates_skipped": self.duplicates_skipped,
                "quarantined": self.quarantined, "quarantined_by_reason": dict(sorted(self.reasons.items())),
                "dropped_by_consent": self.dropped_by_consent, "sdk_restarts": self.sdk_restarts,
                "checkpoint": self.checkpoint, "stopped_by": self.stopped_by, "media_fetched": self.media_fetched,
                "media_failed_by_reason": dict(sorted(self.media_failed.items())),
                "directory_refreshes": self.directory_refreshes}


class CallLimiter:
    """At most ``limit`` calls in any ``window_s`` (a sliding window on monotonic time)."""

    def __init__(self, limit: int = CALLS_PER_MINUTE, window_s: float = 60.0,
                 now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit, self.window_s, self.now, self.sleep = limit, window_s, now, sleep
        self.calls: deque[float] = deque()

    def acquire(self) -> None:
        while True:
            t = self.now()
            while self.calls and self.calls[0] <= t - self.window_s:
                self.calls.popleft()
            if len(self.calls) < self.limit:
                self.calls.append(t)
                return
            self.sleep(self.calls[0] + self.window_s - t)


SPOOL = "sync.raw"  # after-seq → a fetched answer, raw, until its batch is committed
SPOOL_AHEAD = 2  # answers fetched ahead of the ingest at most
STATE_TABLE = "sync"
STATE_KEY = app_key("state")


def sync_state(store) -> dict:
    """What the sync last recorded (for ``/metrics`` and the console): ``checkpoint``,
    ``checkpoint_at`` (when it last moved or was confirmed current, ms), ``fetched``,
    ``last_error``, ``running`` (pid)."""
    with store.app_read() as t:
        return t.get(STATE_TABLE, STATE_KEY) or {}


def lag(store, now_ms: int) -> dict:
    """Archive lag: the newest stored message's age and the checkpoint's (since the sync last
    moved or confirmed it), in seconds (None when unknown), with the sync's last error."""
    st = sync_state(store)
    newest = store.stream_time()
    return {"newest_message_age_s": round((now_ms - newest) / 1000, 1) if newest else None,
            "checkpoint": store.checkpoint(),
            "checkpoint_age_s": round((now_ms - st["checkpoint_at"]) / 1000, 1) if st.get("checkpoint_at") else None,
            "running": bool(st.get("running")), "last_error": st.get("last_error") or None}


class Sync:
    def __init__(self, tenant, keys, worker, config: SyncConfig, *, clock=None,
                 sleep: Callable[[float], None] | None = None, log: Callable[[str], None] | None = None,
                 limiter: CallLimiter | None = None, rng: random.Random | None = None,
                 refresh_directory: Callable[[], dict] | None = None) -> None:
        from scrm_fast.clock import SystemClock

        self.tenant, self.keys, self.worker, self.config = tenant, keys, worker, config
        self.clock = clock or SystemClock()
        self.stop_event = threading.Event()
        self.sleep = sleep or self._interruptible_sleep
        self.log = log or (lambda m: print(f"scrm sync: {m}", file=sys.stderr, flush=True))
        self.limiter = limiter or CallLimiter(sleep=self.sleep)
        self.rng = rng or random.Random()
        self.summary = SyncSummary()
        self._told_versions: set[int] = set()
        self.refresh_directory = refresh_directory
        self._directory_at: float | None = None

    def _interruptible_sleep(self, s: float) -> None:
        self.stop_event.wait(max(0.0, s))

    def stop(self, *_: object) -> None:
        """Stops after the batch in hand (SIGTERM)."""
        self.stop_event.set()

    # -- state ------------------------------------------------------------------------------
    def _record(self, **changes: object) -> None:
        with self.tenant.store.app_write() as t:
            st = t.get(STATE_TABLE, STATE_KEY) or {}
            st.update(changes)
            t.put(STATE_TABLE, STATE_KEY, st)

    def _notified(self) -> int:
        with self.tenant.store.app_read() as t:
            return int(t.get("wc.notify", b"") or 0)

    # -- one call ---------------------------------------------------------------------------
    def _fetch(self, seq: int) -> bytes:
        """One GetChatData answer after ``seq``, transient failures retried with backoff."""
        c = self.config
        failures = 0
        while True:
            self.limiter.acquire()
            self.summary.calls += 1
            rc, body = self.worker.get_chat_data(seq, LIMIT, c.proxy, c.passwd, c.timeout_s)
            why = None
            if rc == 0:
                why = _body_error(body)
                if why is None:
                    return body
            elif rc in FATAL:
                self._record(last_error=f"{rc}: {FATAL[rc]}", last_error_at=self.clock.now_ms())
                raise SyncStopped(f"GetChatData returned {rc}: {FATAL[rc]}")
            elif rc not in TRANSIENT:
                meaning = CODES.get(rc, "unknown code")
                self._record(last_error=f"{rc}: {meaning}", last_error_at=self.clock.now_ms())
                raise SyncStopped(f"GetChatData returned {rc} ({meaning})")
            failures += 1
            self.summary.transient_errors += 1
            what = why or f"{rc} ({TRANSIENT[rc]})"
            self._record(last_error=what, last_error_at=self.clock.now_ms())
            if c.once and failures > c.max_retries:
                raise SyncStopped(f"GetChatData kept failing: {what}, {failures} times in a row; "
                                  "check the network path to WeCom (--proxy) and try again")
            delay = min(c.backoff_max_s, c.backoff_s * 2 ** (failures - 1))
            delay *= 0.5 + self.rng.random()  # jitter: many tenants must not retry in step
            self.log(f"GetChatData: {what}; retrying in {delay:.1f} s")
            self.sleep(delay)
            if self.stop_event.is_set():
                raise _Interrupted

    # -- the spool: fetched batches, durable before the next call ----------------------------
    def _spooled(self) -> list[tuple[bytes, dict]]:
        with self.tenant.store.app_read() as t:
            return list(t.scan(SPOOL))

    def _spool(self, after: int, body: bytes, last: int) -> bytes:
        key = after.to_bytes(8, "big")
        with self.tenant.store.app_write() as t:
            t.put(SPOOL, key, {"body": body, "last": last})
        return key

    def _unspool(self, keys: list[bytes]) -> None:
        if keys:
            with self.tenant.store.app_write() as t:
                for k in keys:
                    t.delete(SPOOL, k)

    # -- one round --------------------------------------------------------------------------
    def _documents(self, consumed: list[bytes]) -> Iterator[Document]:
        """Batches after the checkpoint until a short one. A fetch thread asks WeCom and
        keeps each answer raw and durable in the spool before it asks for the next (spec §5:
        stored before the checkpoint moves); the ingest decrypts and commits from here, one
        batch behind, so the next fetch overlaps the decryption. Batches left in the spool by
        a killed run are ingested first (their seqs already stored are skipped)."""
        store = self.tenant.store
        next_seq = store.checkpoint()
        for key, entry in self._spooled():
            consumed.append(key)
            next_seq = max(next_seq, int(entry.get("last", 0)))
            yield Document(f"spool(seq>{int.from_bytes(key, 'big')})", entry["body"])
        q: queue.Queue = queue.Queue()
        room = threading.Semaphore(SPOOL_AHEAD)
        done = threading.Event()

        def fetcher() -> None:
            seq = next_seq
            try:
                while not (self.stop_event.is_set() or done.is_set()):
                    while not room.acquire(timeout=0.2):
                        if self.stop_event.is_set() or done.is_set():
                            return
                    body = self._fetch(seq)
                    n = _count_items(body)
                    last = _last_seq(body)
                    if n and last is None:
                        raise SyncStopped(f"the GetChatData answer after seq {seq} has items without a seq")
                    key = self._spool(seq, body, last) if n else None
                    q.put((key, body, n, seq))
                    if n < LIMIT:
                        return
                    seq = last
            except _Interrupted:
                return
            except BaseException as e:  # noqa: BLE001 - raised again on the ingesting side
                q.put(e)
            finally:
                q.put(None)

        th = threading.Thread(target=fetcher, name="scrm-sync-fetch", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                key, body, n, after = item
                self.summary.fetched += n
                if key is not None:
                    consumed.append(key)
                    yield Document(f"GetChatData(seq>{after})", body)
                room.release()
        finally:
            done.set()
            room.release()
            th.join()

    def round(self) -> None:
        from scrm_fast.pipeline import IngestSummary

        consumed: list[bytes] = []
        restarts0 = getattr(self.worker, "restarts", 0)
        summary: IngestSummary = self.tenant.ingest_documents(self._documents(consumed), self.keys, self.worker,
                                                              what="scrm sync", wait=True)
        # every spooled batch of this round is committed (or kept as a rejected document) now
        self._unspool(consumed)
        s = self.summary
        s.rounds += 1
        s.ingested += summary.ingested
        s.duplicates_skipped += summary.duplicates_skipped
        s.quarantined += summary.quarantined
        s.dropped_by_consent += summary.dropped
        for k, v in summary.reasons.items():
            s.reasons[k] = s.reasons.get(k, 0) + v
        s.sdk_restarts += getattr(self.worker, "restarts", 0) - restarts0
        s.checkpoint = self.tenant.store.checkpoint()
        self._record(checkpoint=s.checkpoint, checkpoint_at=self.clock.now_ms(),
                     stream_time=self.tenant.store.stream_time(), fetched=s.fetched, last_error="")
        if summary.reasons.get("unknown_key_version"):
            self._tell_key_versions()
        if self.config.media and not self.stop_event.is_set():
            from scrm_fast.media import MediaFetcher

            m = MediaFetcher(self.tenant.store, [self.worker], max_bytes=self.config.max_media_bytes,
                             timeout_s=max(30, self.config.timeout_s), proxy=self.config.proxy,
                             passwd=self.config.passwd).run()
            s.media_fetched += m.fetched
            for k, v in m.failed.items():
                s.media_failed[k] = s.media_failed.get(k, 0) + v

    def _tell_key_versions(self) -> None:
        entries = self.tenant.store.quarantine_entries()
        versions = sorted({e.get("publickey_ver") for e in entries if e.get("reason") == "unknown_key_version"}
                          - {None} - self._told_versions)
        for v in versions:
            n = sum(1 for e in entries if e.get("reason") == "unknown_key_version" and e.get("publickey_ver") == v)
            self.log(f"{n} message(s) need private key version {v}: they are kept quarantined with their raw "
                     f"ciphertext; add key version {v} to --keys and run `scrm quarantine --retry`")
            self._told_versions.add(v)

    def run(self) -> SyncSummary:
        with self.tenant.store.lease("sync", f"scrm sync --corp {self.config.corpid}"):
            return self._run()

    def _run(self) -> SyncSummary:
        import os

        rc = self.worker.init(self.config.corpid, self.config.secret)
        if rc != 0:
            raise SyncStopped(f"Init returned {rc}: check --corp and the chat-archive secret")
        self._record(running=os.getpid(), started_at=self.clock.now_ms())
        try:
            while not self.stop_event.is_set():
                seen_notify = self._notified()
                self._maybe_refresh_directory()
                self.round()
                if self.config.once:
                    self.summary.stopped_by = "once"
                    break
                self._wait(seen_notify)
            else:
                self.summary.stopped_by = "signal"
        finally:
            self._record(running=0)
        if self.stop_event.is_set() and not self.summary.stopped_by:
            self.summary.stopped_by = "signal"
        return self.summary

    def _maybe_refresh_directory(self) -> None:
        """Before a round, when due: the directory from WeCom's contact APIs (consent
        answers included), so the round's messages are judged with it. A failure is
        reported and the archive sync goes on with the directory it has."""
        if self.refresh_directory is None:
            return
        now = time.monotonic()
        if self._directory_at is not None and now - self._directory_at < self.config.directory_every_s:
            return
        self._directory_at = now
        try:
            d = self.refresh_directory()
            self.summary.directory_refreshes += 1
            self.log(f"directory from WeCom: {len(d.get('employees', []))} employees, "
                     f"{len(d.get('customers', []))} customers, {len(d.get('groups', []))} groups")
        except Exception as e:  # noqa: BLE001 - WeCom's contact APIs down must not stop the archive
            self._record(last_error=f"directory: {e}", last_error_at=self.clock.now_ms())
            self.log(f"directory refresh failed ({e}); going on with the stored directory")

    def _wait(self, seen_notify: int) -> None:
        """Until the interval passes, a newer ``msgaudit_notify`` arrives, or a stop."""
        deadline = time.monotonic() + self.config.interval_s
        while not self.stop_event.is_set():
            if self._notified() != seen_notify:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop_event.wait(min(0.25, left))


class _Interrupted(Exception):
    pass


def _body_error(body: bytes) -> str | None:
    """None for an ``errcode 0`` answer; otherwise what WeCom said (cheap for the usual case)."""
    if body.startswith(b'{"errcode":0,'):
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "GetChatData answer is not JSON"
    if not isinstance(doc, dict):
        return "GetChatData answer is not a JSON object"
    if doc.get("errcode", 0) != 0:
        return f"WeCom errcode {doc.get('errcode')} ({doc.get('errmsg', '')})"
    return None


def _last_seq(body: bytes) -> int | None:
    """The seq of the answer's last item (items come in seq order)."""
    at = body.rfind(b'"seq":')
    if at < 0:
        return None
    digits = bytearray()
    for b in body[at + 6:at + 40]:
        if 48 <= b <= 57:
            digits.append(b)
        elif digits or b not in (32, 9):
            break
    return int(digits) if digits else None


def _count_items(body: bytes) -> int:
    """Items in a GetChatData answer without parsing it here (the engine parses it once):
    every item has exactly one ``"seq":`` key at its top level, and no other string holds
    that text unescaped except inside the base64 ciphertexts, which cannot."""
    return body.count(b'"seq":')


def install_signal_handlers(sync: Sync) -> None:
    signal.signal(signal.SIGTERM, sync.stop)
    signal.signal(signal.SIGINT, sync.stop)
