"""Sensitive words, sensitive behaviours, review queues and alerts (rules A-1 … A-5).

Matching runs in Rust (``WordList``, ``audit_records``) on whole batches; this module
keeps the word list, the audit records, trigger statistics and alerts in the tenant's
LMDB, and handles review verdicts. Audit keys are per (message, entry) and per message
for behaviours, so ingest and rescans never duplicate a record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import msgpack
import orjson

from scrm_fast import heap
from scrm_fast._core import AuditBatch, WordList, audit_records, reply_timeouts
from scrm_fast.errors import InputError
from scrm_fast.storage import (
    ArchiveStore,
    StoreWriter,
    audit_key,
    content_audit_key,
    event_audit_key,
    now_ms,
    timeout_alert_key,
)

VERDICTS = ("abnormal", "normal", "ignore")  # 异常 / 正常 / 忽略 (rule A-3)
BEHAVIOURS = ("push_card", "red_packet", "delete_customer")  # rule A-4
DEFAULT_REPLY_THRESHOLDS_MS = (5 * 60_000, 30 * 60_000, 60 * 60_000)  # rule A-6 defaults


# -- word list -------------------------------------------------------------------------
def parse_word_file(path: str | Path) -> tuple[list[tuple], list[str]]:
    """One entry a line: ``word,related1,related2,…`` (at most 10 related words), with an
    optional ``| category | severity | applies_to`` suffix (applies_to: employee, customer,
    both). ``+phrase`` lines form the allow list; ``#`` lines are comments."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read word list: {e}") from e
    entries, allow = [], []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("+"):
            allow.append(line[1:].strip())
            continue
        words_part, *meta = [x.strip() for x in line.split("|")]
        words = [w.strip() for w in words_part.replace("，", ",").split(",") if w.strip()]
        if not words:
            raise InputError(f"{p}:{n}: no word")
        if len(words) > 11:
            raise InputError(f"{p}:{n}: {len(words) - 1} related words for {words[0]!r}, at most 10 (rule A-1)")
        category = meta[0] if len(meta) > 0 and meta[0] else "default"
        try:
            severity = int(meta[1]) if len(meta) > 1 and meta[1] else 1
        except ValueError as e:
            raise InputError(f"{p}:{n}: severity must be a number, not {meta[1]!r}") from e
        applies = meta[2] if len(meta) > 2 and meta[2] else "employee"
        if applies not in ("employee", "customer", "both"):
            raise InputError(f"{p}:{n}: applies_to must be employee, customer or both, not {applies!r}")
        entries.append((len(entries) + 1, words[0], words[1:], category, severity, applies))
    return entries, allow


def compile_words(entries: list[tuple], allow: list[str]) -> WordList:
    try:
        return WordList(entries, allow)
    except ValueError as e:
        raise InputError(f"word list: {e}") from e


def import_words(store: ArchiveStore, entries: list[tuple], allow: list[str]) -> int:
    """Replaces the word list (validated by compiling it first)."""
    compile_words(entries, allow)
    store.put_document("wordlist", {"entries": [list(e) for e in entries], "allow": allow, "imported_at": now_ms()})
    return len(entries)


def stored_words(store: ArchiveStore) -> tuple[list[tuple], list[str]]:
    doc = store.document("wordlist")
    if not isinstance(doc, dict):
        return [], []
    return [tuple(e) for e in doc["entries"]], doc["allow"]


def load_wordlist(store: ArchiveStore) -> WordList | None:
    entries, allow = stored_words(store)
    return compile_words(entries, allow) if entries else None


def word_stats(store: ArchiveStore) -> dict[str, tuple[int, int]]:
    """Per listed word: (trigger count, last trigger time ms) (rule A-1)."""
    return store.word_stats()


# -- behaviour switches ----------------------------------------------------------------
def behaviour_switches(store: ArchiveStore) -> dict[str, bool]:
    saved = store.document("behaviours") or {}
    return {b: bool(saved.get(b, True)) for b in BEHAVIOURS}


def set_behaviour(store: ArchiveStore, name: str, on: bool) -> dict[str, bool]:
    if name not in BEHAVIOURS:
        raise InputError(f"unknown behaviour {name!r}; known: {', '.join(BEHAVIOURS)}")
    cur = behaviour_switches(store)
    cur[name] = on
    store.put_document("behaviours", cur)
    return cur


def run_audit(records: list, words: WordList | None, switches: dict[str, bool]) -> AuditBatch:
    return audit_records(records, words, switches["push_card"], switches["red_packet"], now_ms())


# -- committing ------------------------------------------------------------------------
def leader_map(directory: dict | None) -> dict[str, str | None]:
    """userid → their ``leader`` in the directory (empty without one)."""
    return {e["userid"]: e.get("leader") for e in (directory or {}).get("employees", [])}


def leader_chain(leaders: dict[str, str | None], userid: str, limit: int = 5) -> list[str]:
    """employee → supervisor → … (rule A-5), from a directory's :func:`leader_map`."""
    chain, cur = [], leaders.get(userid)
    while cur and cur not in chain and cur != userid and len(chain) < limit:
        chain.append(cur)
        cur = leaders.get(cur)
    return chain


def commit_audits(w: StoreWriter, batch: AuditBatch, words: list[tuple], directory: dict | None) -> int:
    """Writes the batch's new audit records, bumps trigger statistics and raises alerts,
    inside the caller's write transaction. Returns how many records were new."""
    audits = batch.audits()
    if not audits:
        return 0
    added = w.add_audits(audits)
    by_id = {e[0]: e[1] for e in words}
    for entry_id, (count, last) in batch.entry_triggers().items():  # one per entry hit
        word = by_id.get(entry_id)
        if word is not None:
            w.bump_word(word, count, last)
    alerts = []
    leaders = leader_map(directory)  # once a batch, not once an alert
    for key, value in audits:
        if not content_audit_key(key):
            continue
        a = msgpack.unpackb(value)
        alerts.append((key, msgpack.packb({
            "id": f"alert-{a['id']}", "kind": "sensitive_word", "audit_id": a["id"], "employee": a["employee"],
            "word": a["word"], "words": a["words"], "msgtime": a["msgtime"], "severity": a["severity"],
            "notify": leader_chain(leaders, a["employee"]), "raised_at": now_ms()})))
    w.add_alerts(alerts)
    return added


# -- review queue ----------------------------------------------------------------------
def get_audit(store: ArchiveStore, audit_id: str) -> dict | None:
    """One audit record by id: a single key lookup."""
    return store.audit(audit_key(audit_id))


def list_audits(store: ArchiveStore, kind: str | None = None, status: str | None = None) -> list[dict]:
    prefix = {"content": (b"c",), "behaviour": (b"b", b"e"), None: (b"c", b"b", b"e")}[kind]
    out = [a for k, a in store.audits() if k[:1] in prefix and (status is None or a["status"] == status)]
    return sorted(out, key=lambda a: (a["msgtime"], a["id"]))


def handle_audit(store: ArchiveStore, audit_id: str, verdict: str, remark: str | None, who: str) -> dict:
    """Sets the verdict of a pending record (rule A-3). A handled record is never changed:
    handling it again is refused."""
    if verdict not in VERDICTS:
        raise InputError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    key = audit_key(audit_id)
    with store.write() as w:
        a = w.audit(key)
        if a is None:
            raise InputError(f"no audit record {audit_id}")
        if a["status"] != "pending":
            raise InputError(f"{audit_id} was already handled ({a['verdict']}) by {a['handled_by']} "
                             f"at {a['handled_at']}; handled records are not changed")
        a.update(status="handled", verdict=verdict, remark=remark, handled_by=who, handled_at=now_ms())
        w.put_audit(key, a)
    return a


def context(store: ArchiveStore, audit: dict, around: int = 10) -> list[dict]:
    """The ``around`` messages before and after the audited one in its conversation
    (evidence for rule A-2), with the audited message itself, oldest first."""
    if audit.get("seq") is None or not audit.get("conv"):
        return []
    out = []
    for v in store.records_raw(store.context_seqs(audit["conv"], audit["seq"], around)):
        if v is None:
            continue
        r = msgpack.unpackb(v)
        out.append({"seq": r["seq"], "msgid": r["msgid"], "from": r["from"], "msgtime": r["msgtime"],
                    "msgtype": r["msgtype"], "text": r["text"]})
    return out


# -- contact events (rule A-4: deleting a customer) -------------------------------------
def contact_event_audits(events: Iterable[dict], switches: dict[str, bool]) -> list[tuple[bytes, bytes]]:
    """``del_external_contact`` events (the employee deleted the customer) → behaviour
    audit records, keyed by the event's content."""
    out = []
    if not switches.get("delete_customer", True):
        return out
    for ev in events:
        if ev.get("event", ev.get("change_type")) != "del_external_contact":
            continue
        raw = orjson.dumps(ev, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(raw).digest()[:12]
        out.append((event_audit_key(digest), msgpack.packb({
            "id": f"e-{digest.hex()}", "kind": "behaviour", "behaviour": "delete_customer", "seq": None,
            "msgid": "", "msgtime": int(ev.get("time", 0)), "employee": ev.get("userid", ""),
            "customer": ev.get("external_userid", ""), "roomid": "", "conv": "", "sender": ev.get("userid", ""),
            "entry_id": None, "word": None, "words": [], "category": None, "severity": None, "text": "",
            "status": "pending", "verdict": None, "remark": None, "handled_by": None, "handled_at": None,
            "created_at": now_ms()})))
    return out


def import_contact_events(store: ArchiveStore, path: str | Path) -> tuple[int, int]:
    p = Path(path)
    events = []
    try:
        for n, line in enumerate(p.read_bytes().splitlines(), 1):
            if line.strip():
                try:
                    events.append(orjson.loads(line))
                except orjson.JSONDecodeError as e:
                    raise InputError(f"{p}:{n}: not JSON: {e}") from e
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from e
    audits = contact_event_audits(events, behaviour_switches(store))
    return len(events), store.add_audits(audits)


def rescan(store: ArchiveStore, directory: dict | None = None, chunk: int = 20_000) -> dict:
    """Re-matches the whole archive from storage (no RSA) after the word list or the
    switches changed; adds the missing records, never duplicates existing ones."""
    words_entries, _ = stored_words(store)
    words = load_wordlist(store)
    switches = behaviour_switches(store)
    scanned = added = 0
    for block in store.record_pair_chunks(chunk):
        scanned += len(block)
        batch = run_audit(block, words, switches)
        if not len(batch):
            continue
        new = batch.without(store.audit_keys_among(batch.keys()))
        if len(new):
            with store.write() as w:
                added += commit_audits(w, new, words_entries, directory)
    return {"scanned": scanned, "added": added}


# -- timeout-reply alerts (rule A-6) --------------------------------------------------------
def reply_thresholds(store: ArchiveStore) -> list[int]:
    saved = store.document("reply_thresholds")
    return list(saved) if saved else list(DEFAULT_REPLY_THRESHOLDS_MS)


def set_reply_thresholds(store: ArchiveStore, thresholds_ms: list[int]) -> list[int]:
    """New timeout-reply levels. Every one-to-one conversation is recorded as due first (so
    a crash before the pass loses nothing: the next pass, or a server starting, does them),
    then the levels are written; :func:`recompute_due_timeouts` applies them."""
    if not thresholds_ms or any(t <= 0 for t in thresholds_ms) or sorted(thresholds_ms) != thresholds_ms:
        raise InputError("thresholds must be positive and increasing, e.g. 5m,30m,1h")
    _mark_all_due(store)
    store.put_document("reply_thresholds", thresholds_ms)
    return thresholds_ms


def parse_duration_ms(text: str) -> int:
    units = {"s": 1000, "m": 60_000, "h": 3_600_000}
    t = text.strip().lower()
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(float(t) * 1000)
    except ValueError as e:
        raise InputError(f"{text!r} is not a duration (e.g. 300s, 5m, 1h)") from e


def _alert_records(found: list[tuple], directory: dict | None) -> list[tuple[bytes, bytes]]:
    alerts = []
    leaders = leader_map(directory)
    for conv, seq, level, threshold, since, answered_at, delay in found:
        a, _, b = conv[2:].partition("|")
        customer, employee = (a, b) if a.startswith(("wm", "wo")) else (b, a)
        chain = [employee, *leader_chain(leaders, employee)]
        alerts.append((timeout_alert_key(conv, seq, level), msgpack.packb({
            "id": f"timeout-{seq}-{level}", "kind": "timeout_reply", "level": level, "threshold_ms": threshold,
            "conv": conv, "seq": seq, "employee": employee, "customer": customer, "msgtime": since,
            # an unanswered wait is measured when read (ArchiveStore.alerts): the stream moves on
            "answered_at": answered_at, "delay_ms": delay if answered_at is not None else None,
            "word": None, "words": [], "notify": chain[:level], "raised_at": now_ms()})))
    return alerts


# The one-to-one conversations a committed batch added to, whose A-6 alerts are not yet
# recomputed: written in the batch's own transaction, removed with the recomputed alerts.
_TIMEOUTS_DUE = "a6due"
# Conversations whose customer still waits short of the last threshold: their alerts change
# when the stream's time moves on, so each pass after it moved does them again.
_WAITING = "a6wait"
_PASS = "a6pass"  # b"stream": the stream time the last pass measured waits against


def _timeout_pass(store: ArchiveStore, directory: dict | None, convs: list[str], entries: list[tuple[bytes, bytes]],
                  thresholds: list[int], stream_now: int, due_keys: list[bytes] = ()) -> int:
    """Replaces the A-6 alerts of ``convs`` (``entries``: their whole timelines) and their
    waiting marks, and removes ``due_keys``, in one transaction."""
    found, waiting = reply_timeouts(entries, thresholds, stream_now)
    alerts = _alert_records(found, directory)
    still = set(waiting)

    def marks(w: StoreWriter) -> None:
        app = w.app()
        app.delete_many(_TIMEOUTS_DUE, due_keys)
        app.delete_many(_WAITING, store.app_digests("conv", [c for c in convs if c not in still]))
        app.put_digested(_WAITING, "conv", [c for c in convs if c in still])
    store.replace_timeout_alerts(alerts, convs, also=marks)
    return len(alerts)


def recompute_timeouts(store: ArchiveStore, directory: dict | None) -> int:
    """Recomputes the timeout-reply alerts of every one-to-one conversation from its whole
    stored timeline: every one is marked due, then the (bounded, crash-safe) due pass."""
    _mark_all_due(store)
    return recompute_due_timeouts(store, directory)


def _mark_all_due(store: ArchiveStore) -> None:
    convs = [c.conv for c in store.conversation_summaries() if c.conv.startswith("p:")]
    for i in range(0, len(convs), 10_000):
        with store.write() as w:
            mark_timeouts_due(w, convs[i:i + 10_000])


def mark_timeouts_due(w: StoreWriter, convs: Iterable[str]) -> None:
    """Records, in the batch's transaction ``w``, that ``convs`` need their A-6 alerts
    recomputed (a crash before the pass leaves the record; the next pass does them)."""
    w.app().put_digested(_TIMEOUTS_DUE, "conv", [c for c in convs if c.startswith("p:")])


def timeouts_due(store: ArchiveStore) -> int:
    with store.app_read() as app:
        due = sum(1 for _ in app.scan(_TIMEOUTS_DUE, values=False))
        moved = app.get(_PASS, b"stream") != store.stream_time()
        return due + (sum(1 for _ in app.scan(_WAITING, values=False)) if moved else 0)


# one A-6 pass transaction reads at most about this many timeline entries
TIMEOUT_PASS_ENTRIES = 20_000


def recompute_due_timeouts(store: ArchiveStore, directory: dict | None, chunk: int = 2_000,
                           max_entries: int | None = None) -> int:
    """The A-6 pass: every conversation recorded as due (by this run or by one killed
    before its pass) and, when the stream's time moved on since the last pass, every one
    whose customer still waits; ``chunk`` conversations per transaction. Afterwards the
    stored alerts are those of the complete stream. Returns the alerts those conversations
    now have."""
    thresholds = reply_thresholds(store)
    stream_now = store.stream_time()
    with store.app_write() as app:
        if app.get(_PASS, b"stream") != stream_now:
            # every waiting conversation becomes due, a bounded piece at a time (memory
            # stays flat however many customers wait)
            piece: list[tuple[bytes, object]] = []
            for kv in app.scan(_WAITING):
                piece.append(kv)
                if len(piece) >= chunk:
                    app.put_many(_TIMEOUTS_DUE, piece)
                    piece = []
            app.put_many(_TIMEOUTS_DUE, piece)
            app.put(_PASS, b"stream", stream_now)
    n = 0
    while True:
        with store.app_read() as app:
            due = list(app.scan(_TIMEOUTS_DUE, limit=chunk))
        if not due:
            return n
        # bounded by entries too: a chunk of long conversations is cut (memory stays flat)
        convs, entries = store.timelines([str(c) for _, c in due], max_entries=max_entries or TIMEOUT_PASS_ENTRIES)
        n += _timeout_pass(store, directory, convs, entries, thresholds, stream_now,
                           [k for k, _ in due[:len(convs)]])
        del convs, entries
        heap.release()
