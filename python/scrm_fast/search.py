"""Archive search (rules V-2, V-5): the Tantivy index in ``DATA_DIR/index`` finds seqs; the
bodies, msgids and snippets come from LMDB. A query matches a message when every term
occurs in its text as a substring after case and width folding (DESIGN "Search
semantics"); see ``scrm search --help`` for the query language.

Keeping index and store in step: documents are added to the index only after their
batch is durable in LMDB, and every index commit records the checkpoint it covers, so
the index is always a subset of the store. :func:`catch_up` closes the gap after a crash
(it runs before every ingest); :func:`reindex` rebuilds from storage. Searches release
the GIL and read the last commit, so they run while an ingest (another process) writes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from scrm_fast._core import ArchiveIndex, QuerySyntaxError, SearchIndexError, page_json
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore

# rule V-2: message-type groups (tabs of the conversation view, filters of the search)
TYPE_GROUPS: dict[str, set[str] | None] = {
    "all": None,
    "image_video": {"image", "video"},
    "file": {"file"},
    "link": {"link"},
    "voice_call": {"meeting_voice_call", "voiptext"},
    "voice": {"voice"},
}
# rule V-2: time ranges (days back from the newest stored message); custom = since/until
TIME_RANGES = {"all": None, "7": 7, "30": 30, "90": 90}
DAY_MS = 86_400_000
MAX_LIMIT = 1000

__all__ = ["TYPE_GROUPS", "ArchiveSearch", "QuerySyntaxError", "SearchIndexError", "SearchScope", "catch_up",
           "index_dir", "open_index", "reindex"]


def index_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "index"


def open_index(store: ArchiveStore, *, replace_unreadable: bool = False) -> ArchiveIndex:
    """The archive's index (created when missing), its terms keyed with the store's token
    key. An index this version cannot read (another layout, damaged metadata) is an error,
    or with ``replace_unreadable`` is removed and started afresh (the next :func:`catch_up`
    fills it; an unreadable index may be of the earlier, plaintext layout, so it is not kept)."""
    path = index_dir(store.data_dir)
    try:
        return ArchiveIndex(str(path), store.token_key)
    except SearchIndexError:
        if not replace_unreadable or not path.exists():
            raise
        shutil.rmtree(path)
        import logging

        logging.getLogger("scrm.search").warning("search index at %s unreadable: removed, rebuilding", path)
        return ArchiveIndex(str(path), store.token_key)


@dataclass(frozen=True)
class SearchScope:
    """A caller's data scope (rule R-2): messages in which one of ``parties`` takes part,
    or said in one of ``rooms``, or in one of ``convs`` (chats inherited, rule I-1) — and in
    none of ``hidden`` (chats handed over to another employee)."""

    parties: frozenset[str]
    rooms: frozenset[str]
    convs: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()


def encode_cursor(c: tuple[int, int] | None) -> str | None:
    return None if c is None else f"{c[0]}:{c[1]}"


def decode_cursor(s: str | None) -> tuple[int, int] | None:
    if s is None or s == "":
        return None
    from scrm_fast.strict import uint

    t, sep, q = s.partition(":")
    try:
        if not sep:
            raise InputError("no ':'")
        return uint(t, "msgtime"), uint(q, "seq")
    except InputError:
        raise InputError(f"cursor {s[:60]!r} is not one this search returned (msgtime:seq)") from None


def catch_up(store: ArchiveStore, index: ArchiveIndex, chunk: int = 10_000) -> int:
    """Indexes every stored message the index lacks (after a crash between a store commit
    and an index commit, or a quarantine retry); the index writer must be open. Returns
    how many were added. An index holding a message the store lacks is rebuilt."""
    stored = store.counts()["records"]
    if index.num_docs() == stored:
        return 0
    have = index.seqs()
    missing: list[int] = []
    extra = False
    i = 0
    for s in store.record_seqs():  # merge walk: both ascending
        while i < len(have) and have[i] < s:
            extra, i = True, i + 1  # indexed but not stored
        if i < len(have) and have[i] == s:
            i += 1
        else:
            missing.append(s)
    if extra or i < len(have):
        # the index holds something the store does not: start over from storage
        index.clear()
        return _add_all(store, index, chunk)
    added = 0
    for at in range(0, len(missing), chunk):
        values = store.records_raw(missing[at:at + chunk])
        added += index.add_stored([v for v in values if v is not None])
    index.commit(store.checkpoint())
    return added


def _add_all(store: ArchiveStore, index: ArchiveIndex, chunk: int) -> int:
    n = 0
    for values in store.record_value_chunks(chunk):
        n += index.add_stored(values)
    index.commit(store.checkpoint())
    return n


@contextmanager
def index_writer(store: ArchiveStore, index: ArchiveIndex | None = None, threads: int = 1,
                 heap_mb: int = 64) -> Iterator[ArchiveIndex]:
    """The archive's index with its writer open and caught up with the store; the writer
    is released (after running merges) on exit. Additions not committed are dropped and
    indexed again by the next :func:`catch_up`."""
    if index is None:
        index = open_index(store, replace_unreadable=True)
    try:
        index.open_writer(threads, heap_mb)
    except SearchIndexError as e:
        raise InputError(str(e)) from None
    try:
        # another process may have committed since this reader opened (a server's other
        # worker caught up at start): compare with the index as it is now
        index.reload()
        catch_up(store, index)
        yield index
    finally:
        index.close_writer()


def reindex(data_dir: str | os.PathLike[str], threads: int | None = None, heap_mb: int = 256,
            chunk: int = 20_000) -> dict:
    """Rebuilds the index from storage (no RSA). Readers keep the old index until the
    single commit at the end."""
    with ArchiveStore(data_dir, readonly=True) as store:
        return rebuild(store, threads, heap_mb, chunk)


def rebuild(store: ArchiveStore, threads: int | None = None, heap_mb: int = 256, chunk: int = 20_000) -> dict:
    """:func:`reindex` on an open store."""
    index = open_index(store, replace_unreadable=True)  # another layout: nothing in it is reusable
    t0 = time.perf_counter()
    index.open_writer(threads or os.cpu_count() or 1, heap_mb)
    index.clear()
    n = _add_all(store, index, chunk)
    t1 = time.perf_counter()
    index.close_writer()
    t2 = time.perf_counter()
    return {"indexed": n, "segments": index.num_segments(), "build_s": round(t1 - t0, 3),
            "merge_s": round(t2 - t1, 3), "docs_per_s": round(n / (t1 - t0), 1) if t1 > t0 else 0.0}


class ArchiveSearch:
    """Searches one archive: the index finds seqs, the store gives messages and snippets."""

    def __init__(self, store: ArchiveStore, index: ArchiveIndex) -> None:
        self.store = store
        self.index = index

    def lag(self) -> int:
        """Stored messages the index does not (yet) hold."""
        return max(self.store.record_count() - self.index.num_docs(), 0)

    def search(self, query: str = "", *, employee: str | None = None, customer: str | None = None,
               group: str | None = None, conv: str | None = None, type_group: str = "all",
               days: int | None = None, since: int | None = None, until: int | None = None,
               cursor: str | None = None, limit: int = 20, scope: SearchScope | None = None,
               snippet_width: int = 80) -> dict:
        """One page, newest first: ``{"total", "items", "next_cursor"}``; each item has
        msgid, seq, msgtime, snippet (plain text) and highlights (character ranges of it)."""
        total, items, nxt, _ = self.page(query, employee=employee, customer=customer, group=group, conv=conv,
                                         type_group=type_group, days=days, since=since, until=until, cursor=cursor,
                                         limit=limit, scope=scope, snippet_width=snippet_width)
        return {"total": total, "items": orjson.loads(items), "next_cursor": nxt}

    def page(self, query: str = "", *, employee: str | None = None, customer: str | None = None,
             group: str | None = None, conv: str | None = None, type_group: str = "all",
             days: int | None = None, since: int | None = None, until: int | None = None,
             cursor: str | None = None, limit: int = 20, scope: SearchScope | None = None,
             snippet_width: int = 80, names: dict[str, str] | None = None) -> tuple[int, bytes, str | None, list[int]]:
        """:meth:`search` for answers that go out as JSON: ``(total, items as a JSON array,
        next_cursor, seqs of the items)``. The items are made in Rust from the stored records
        (no Python object per item); ``names`` ({userid: name}) adds each item's ``from_name``."""
        if type_group not in TYPE_GROUPS:
            raise InputError(f"type must be one of {', '.join(TYPE_GROUPS)}, not {type_group!r}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"limit must be between 1 and {MAX_LIMIT}")
        if days is not None:
            if days <= 0:
                raise InputError("days must be positive")
            since = self.store.stream_time() - days * DAY_MS
        types = TYPE_GROUPS[type_group]
        total, hits, nxt, terms = self.index.search(
            query, parties=[p for p in (employee, customer) if p], room=group, conv=conv,
            msgtypes=sorted(types) if types is not None else None, since=since, until=until,
            scope_parties=sorted(scope.parties) if scope is not None else None,
            scope_rooms=sorted(scope.rooms) if scope is not None else None,
            scope_convs=sorted(scope.convs) if scope is not None and scope.convs else None,
            scope_hidden=sorted(scope.hidden) if scope is not None and scope.hidden else None,
            before=decode_cursor(cursor), limit=limit)
        raws = self.store.records_raw([seq for _, seq in hits])
        items, seqs = page_json(hits, raws, terms, snippet_width, names)
        return total, items, encode_cursor(nxt), seqs

