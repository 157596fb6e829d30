"""The ingest pipeline: documents → Rust batch decrypt → judge → LMDB, two batches ahead.

Python handles one GetChatData document (≤ 1000 messages) at a time; everything per
message happens in Rust with the GIL released. A batch is decrypted (RSA, AES, parsing:
order-free) on all cores by the worker, then judged (consent, in arrival order), audited
and committed (LMDB write and fsync) on this thread: while batch *n* is judged and
committed, batches *n + 1* and *n + 2* are decrypting, so the cores never wait for the
ordered part.
Idempotent: seqs already seen are skipped before any RSA work; a crash at any point
leaves whole committed batches, and a re-run resumes where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from scrm_fast import heap
from scrm_fast._core import (
    ArchiveIndex,
    AuditBatch,
    ChatBatch,
    Cipher,
    ConsentPolicy,
    DecodedBatch,
    DecryptedBatch,
    KeyRing,
    WordList,
    decode_batch,
    decrypt_batch,
    judge_batch,
)
from scrm_fast.audit import commit_audits, mark_timeouts_due
from scrm_fast.errors import BatchFormatError, InputError
from scrm_fast.media import queue_media
from scrm_fast.sources import Document, iter_documents
from scrm_fast.storage import ArchiveStore, now_ms, reject_record

# A file whose first this many documents are not GetChatData responses is refused.
SNIFF_DOCUMENTS = 3


def _not_responses(leading: dict[str, int], source: str) -> str | None:
    """Counts a rejected document against its file (``path:line``); the file's name when its
    first ``SNIFF_DOCUMENTS`` documents were all rejected."""
    path, _, line = source.rpartition(":")
    if not line.isdigit():
        return None
    n = int(line)
    if n == 1 or leading.get(path, 0) == n - 1:
        leading[path] = n
        if n >= SNIFF_DOCUMENTS:
            return path
    return None


@dataclass
class Auditing:
    """What the audit stage needs: the compiled word list (None: no list), its entries,
    the behaviour switches and the directory (for alert recipients)."""

    words: WordList | None
    entries: list[tuple]
    switches: dict[str, bool]
    directory: dict | None = None


@dataclass
class IngestSummary:
    documents: int = 0
    items: int = 0
    ingested: int = 0
    duplicates_skipped: int = 0
    quarantined: int = 0
    rejected_documents: int = 0
    unknown_msgtypes: int = 0
    reasons: Counter = field(default_factory=Counter)
    msgtypes: Counter = field(default_factory=Counter)
    checkpoint: int = 0
    elapsed_s: float = 0.0
    consent_applied: bool = False
    dropped: int = 0
    kept_by_rule: Counter = field(default_factory=Counter)
    dropped_by_rule: Counter = field(default_factory=Counter)
    audits: int = 0
    timeout_alerts: int = 0
    indexed: int = 0
    media: int = 0  # media items queued for fetching

    @property
    def msgs_per_s(self) -> float:
        """Messages decrypted and judged per second (stored or dropped by consent)."""
        return (self.ingested + self.dropped) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "documents": self.documents, "items": self.items, "ingested": self.ingested,
            "duplicates_skipped": self.duplicates_skipped, "quarantined": self.quarantined,
            "quarantined_by_reason": dict(sorted(self.reasons.items())),
            "rejected_documents": self.rejected_documents, "unknown_msgtypes": self.unknown_msgtypes,
            "msgtypes": dict(sorted(self.msgtypes.items())), "checkpoint": self.checkpoint,
            "elapsed_s": round(self.elapsed_s, 3), "msgs_per_s": round(self.msgs_per_s, 1),
            "consent_applied": self.consent_applied, "dropped_by_consent": self.dropped,
            "kept_by_rule": dict(sorted(self.kept_by_rule.items())),
            "dropped_by_rule": dict(sorted(self.dropped_by_rule.items())),
            "audit_records": self.audits, "timeout_alerts": self.timeout_alerts, "indexed": self.indexed,
            "media_queued": self.media,
        }


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when forced)."""

    def __init__(self, enabled: bool | None = None, interval: float = 0.5) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.interval = interval
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, s: IngestSummary, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        rate = s.ingested / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r  {s.ingested:>10,} ingested  {rate:>9,.0f} msg/s  "
                         f"dup {s.duplicates_skipped:,}  quarantined {s.quarantined:,}   ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _account(summary: IngestSummary, d: DecodedBatch) -> None:
    summary.ingested += d.stored
    summary.duplicates_skipped += d.skipped
    summary.quarantined += d.quarantined
    summary.unknown_msgtypes += d.unknown_msgtypes
    summary.reasons.update(d.reasons)
    summary.msgtypes.update(d.msgtypes)
    summary.dropped += d.dropped
    summary.kept_by_rule.update(d.kept_by_rule)
    summary.dropped_by_rule.update(d.dropped_by_rule)


def _batch_cipher(cipher, batch: ChatBatch, keys: KeyRing, seen) -> Cipher:
    """The cipher for one batch: a :class:`Cipher` as given, or one batch's answers of a
    supervised SDK worker (``scrm_fast.wecom.sdk_worker.SdkWorker``)."""
    decrypt = getattr(cipher, "decrypt_batch", None)
    return decrypt(batch, keys, seen) if decrypt is not None else cipher


def ingest_files(files: Iterable[Path], keys: KeyRing, cipher: Cipher, store: ArchiveStore,
                 progress: Progress | None = None,
                 on_commit: Callable[[IngestSummary], None] | None = None,
                 policy: ConsentPolicy | None = None, auditing: Auditing | None = None,
                 index: ArchiveIndex | None = None, index_commit_s: float = 5.0) -> IngestSummary:
    """Ingests every document of ``files`` into ``store``; returns the counts. With a
    consent ``policy`` only what the rules allow is stored (rules C-0 … C-12). With an
    ``index`` (writer open) each batch is indexed once it is durable, and the index is
    committed every ``index_commit_s`` seconds and at the end."""
    return ingest_documents(iter_documents(files), keys, cipher, store, progress=progress, on_commit=on_commit,
                            policy=policy, auditing=auditing, index=index, index_commit_s=index_commit_s, sniff=True)


def _decode(batch: ChatBatch, keys: KeyRing, cipher, seen, policy: ConsentPolicy | None,
            auditing: Auditing | None) -> tuple[DecodedBatch, AuditBatch | None]:
    """Decrypts, judges and audits one batch in one Rust call (GIL released)."""
    c = _batch_cipher(cipher, batch, keys, seen)
    if auditing is None:
        return decode_batch(batch, keys, c, seen, now_ms(), policy), None
    decoded = decode_batch(batch, keys, c, seen, now_ms(), policy, True, auditing.words,
                           auditing.switches["push_card"], auditing.switches["red_packet"])
    return decoded, decoded.audit_batch()


def _decrypt(batch: ChatBatch, keys: KeyRing, cipher, seen) -> DecryptedBatch:
    """The pool's part of a batch: RSA, AES and parsing on all cores (any order)."""
    return decrypt_batch(batch, keys, _batch_cipher(cipher, batch, keys, seen), seen, now_ms())


def _judge(decrypted: DecryptedBatch, policy: ConsentPolicy | None,
           auditing: Auditing | None) -> tuple[DecodedBatch, AuditBatch | None]:
    """The ordered part, on the committing thread (GIL released): consent verdicts, audit."""
    if auditing is None:
        return judge_batch(decrypted, policy), None
    decoded = judge_batch(decrypted, policy, True, auditing.words, auditing.switches["push_card"],
                          auditing.switches["red_packet"])
    return decoded, decoded.audit_batch()


def _with_batch(store: ArchiveStore, decoded: DecodedBatch, audit: AuditBatch | None, auditing: Auditing | None,
                summary: IngestSummary, due: list[str]):
    """What goes into a batch's own transaction besides its records: its audit records,
    its media to fetch, and the conversations whose A-6 alerts are now due (``due``)."""
    def also(w) -> None:
        if audit is not None and len(audit):
            summary.audits += commit_audits(w, audit, auditing.entries, auditing.directory)
        if decoded.has_media:
            summary.media += queue_media(store, w.app(), decoded)
        if due:
            mark_timeouts_due(w, due)
    return also


# conversations an ingest remembers having marked due (rule A-6) in its earlier batches, at
# most: a later batch adding to one writes no second mark (the mark stays until the run's
# pass, which no other run can start while this one holds the ingest lease); beyond this
# many the memory is dropped and marks may be written again (memory stays flat in N)
MARKED_AT_MOST = 20_000


# rejected documents are kept in the next batch's transaction, or at most this many at once
REJECTS_PER_COMMIT = 500
# batches read and decrypting (or queued to) ahead of the one committing: judging, auditing
# and committing batch n (this thread) overlap the decrypting of the next ones. More than
# DECRYPTING: the pool does not finish concurrent batches in the order they came (a later
# one often ends first), and with only two ahead this thread, waiting on batch n, had
# queued nothing more: when n ended every core idled until it read the next document
LOOKAHEAD = 4
# batches decrypted at once (each on the whole pool): the next batch's items keep every core
# busy while one batch's results are gathered and handed back through Python, where one at
# a time left the pool idle at every batch boundary (about 1 % of an ingest's CPU)
DECRYPTING = 2


def ingest_documents(documents: Iterable[Document], keys: KeyRing, cipher: Cipher, store: ArchiveStore,
                     progress: Progress | None = None,
                     on_commit: Callable[[IngestSummary], None] | None = None,
                     policy: ConsentPolicy | None = None, auditing: Auditing | None = None,
                     index: ArchiveIndex | None = None, index_commit_s: float = 5.0,
                     lookahead: bool = True, sniff: bool = False) -> IngestSummary:
    """:func:`ingest_files` over documents from any source. With ``lookahead`` the next
    document is taken (and decrypted) while the previous one commits; without it (the live
    sync) a document is durable before the next one is asked for. With ``sniff`` (files), a
    file whose first documents are none of them GetChatData responses is refused at once
    (``InputError`` naming it) instead of being read to its end line by line.

    Rule A-6: each batch records the conversations it added to in its own transaction; the
    pass at the end recomputes those (and any a killed run left), so a crash between the
    last commit and the pass loses no alert."""
    from scrm_fast.audit import recompute_due_timeouts  # looked up per run (a test replaces it)

    summary = IngestSummary(consent_applied=policy is not None)
    t0 = time.perf_counter()
    # batches in flight, oldest first: (decrypting, their seq keys)
    pending: deque[tuple[Future[DecryptedBatch], list[bytes]]] = deque()
    last_index_commit = time.perf_counter()
    rejects: list[tuple[bytes, bytes]] = []
    marked: set[str] = set()  # conversations this run marked due in a committed batch

    def finish(p: tuple[Future[DecryptedBatch], list[bytes]]) -> None:
        decoded, audit = _judge(p[0].result(), policy, auditing)
        due = [c for c in decoded.conv_ids() if c not in marked] if auditing is not None and decoded.stored else []
        store.commit_batch(decoded, extra_rejects=rejects,
                           also=_with_batch(store, decoded, audit, auditing, summary, due))
        rejects.clear()
        if due:  # durable now
            if len(marked) + len(due) > MARKED_AT_MOST:
                marked.clear()
            marked.update(due)
        if index is not None and decoded.stored:
            # after the store commit: the index never holds what the store lacks
            summary.indexed += index.add_decoded(decoded)
            nonlocal last_index_commit
            if time.perf_counter() - last_index_commit >= index_commit_s:
                index.commit(store.checkpoint())
                heap.release()  # the segment's buffers are free now: memory stays flat in N
                last_index_commit = time.perf_counter()
        _account(summary, decoded)
        if on_commit is not None:
            on_commit(summary)
        if progress is not None:
            progress.update(summary)

    def finish_all() -> None:
        while pending:
            finish(pending.popleft())

    def flush_rejects() -> None:
        if rejects:
            store.commit_rejects(rejects)
            rejects.clear()

    depth = LOOKAHEAD if lookahead else 0
    with ThreadPoolExecutor(max_workers=DECRYPTING, thread_name_prefix="scrm-decode") as pool:
        leading: dict[str, int] = {}  # file → documents at its start that were not responses
        for doc in documents:
            summary.documents += 1
            try:
                batch = ChatBatch.parse(doc.data)
            except BatchFormatError as e:
                summary.rejected_documents += 1
                summary.reasons["bad_document"] += 1
                rejects.append(reject_record(doc.data, "bad_document", str(e), doc.source))
                if sniff and (path := _not_responses(leading, doc.source)) is not None:
                    finish_all()  # what came before is kept
                    flush_rejects()
                    raise InputError(f"{path}: not GetChatData responses (none of its first {SNIFF_DOCUMENTS} "
                                     f"documents is one: {e}); nothing more read from it") from None
                if len(rejects) >= REJECTS_PER_COMMIT or not lookahead:
                    flush_rejects()  # the live sync's source forgets a document once it returns
                continue
            summary.items += len(batch)
            keys_ = batch.seq_keys()
            seen = store.seen_among(keys_)
            for _, in_flight in pending:
                # batches in flight are not committed yet: their seqs count as seen too
                seen = seen + in_flight
            pending.append((pool.submit(_decrypt, batch, keys, cipher, seen), keys_))
            while len(pending) > depth:
                finish(pending.popleft())
        finish_all()
        flush_rejects()
        # the index's last commit (GIL released) runs beside the A-6 pass: they are
        # independent (records and alerts), and one core would idle otherwise
        committing = pool.submit(index.commit, store.checkpoint()) if index is not None else None
        try:
            if auditing is not None:
                summary.timeout_alerts = recompute_due_timeouts(store, auditing.directory)
        finally:
            if committing is not None:
                committing.result()
    heap.release()
    # the whole run's work: the A-6 pass is part of it (msgs_per_s and the bench's ratio count it)
    summary.elapsed_s = time.perf_counter() - t0
    summary.checkpoint = store.checkpoint()
    if progress is not None:
        progress.update(summary, final=True)
    return summary


def retry_quarantine(keys: KeyRing, cipher: Cipher, store: ArchiveStore,
                     policy: ConsentPolicy | None = None, index: ArchiveIndex | None = None,
                     auditing: Auditing | None = None) -> dict:
    """Re-drives every quarantined item (e.g. after a missing key version is installed)
    through the whole pipeline: recovered messages are judged by the consent policy,
    audited, their media queued, their A-6 alerts recomputed and they are indexed, like
    any other."""
    from scrm_fast.audit import recompute_due_timeouts

    items = store.quarantined_items()
    if not items:
        return {"retried": 0, "recovered": 0, "still_quarantined": 0, "dropped_by_consent": 0, "reasons": {},
                "audit_records": 0, "timeout_alerts": 0}
    batch = ChatBatch.from_items(items)
    decoded, audit = _decode(batch, keys, cipher, None, policy, auditing)
    summary = IngestSummary()
    due = decoded.conv_ids() if auditing is not None and decoded.stored else []
    res = store.release_quarantine(decoded, also=_with_batch(store, decoded, audit, auditing, summary, due))
    if index is not None and res.stored:
        index.add_decoded(decoded)
        index.commit(store.checkpoint())
    alerts = recompute_due_timeouts(store, auditing.directory) if auditing is not None else 0
    return {"retried": len(items), "recovered": res.stored, "still_quarantined": res.quarantined,
            "dropped_by_consent": decoded.dropped, "reasons": dict(decoded.reasons),
            "audit_records": summary.audits, "timeout_alerts": alerts}
