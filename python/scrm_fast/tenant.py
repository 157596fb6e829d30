"""The one composition root of a data directory: :class:`Tenant` wires the store (sealed
with the data directory's keys), the directory, consent policy, auditing and the search
index once; the CLI, HTTP uploads and the live sync call it instead of re-wiring."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from scrm_fast.storage import ArchiveStore


def auditing_for(store: ArchiveStore, directory: dict | None):
    from scrm_fast.audit import behaviour_switches, load_wordlist, stored_words
    from scrm_fast.pipeline import Auditing

    return Auditing(load_wordlist(store), stored_words(store)[0], behaviour_switches(store), directory)


class Tenant:
    """One tenant's data directory, opened (``master_key``: the 32-byte master key; None
    reads ``$SCRM_MASTER_KEY_FILE``)."""

    def __init__(self, data_dir: str | os.PathLike[str], *, readonly: bool = False,
                 master_key: bytes | None = None, store: ArchiveStore | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.store = store if store is not None else ArchiveStore(data_dir, readonly=readonly, master_key=master_key)
        self._owns_store = store is None

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Tenant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the directory (spec §6) --------------------------------------------------------
    def directory(self) -> dict | None:
        return self.store.directory()

    def import_directory(self, doc: dict) -> None:
        """Keeps ``doc`` (validated by ``load_directory``) sealed in the store, with the
        contact events it carries (deleted customers, rule A-4)."""
        from scrm_fast.audit import behaviour_switches, contact_event_audits

        self.store.save_directory(doc)
        self.store.add_audits(contact_event_audits(doc.get("contact_events", []), behaviour_switches(self.store)))

    async def refresh_directory(self, client, now_ms: int) -> dict:
        """The directory from WeCom's APIs (``client``: a :class:`scrm_fast.wecom.WeComClient`
        with the contacts secret), merged with what the stored one knows and the APIs do not
        (see :mod:`scrm_fast.wecom.directory`), kept like an imported one; returns it."""
        from scrm_fast.directory import validate_directory
        from scrm_fast.wecom.directory import fetch_directory

        doc = await fetch_directory(client, self.directory(), now_ms)
        validate_directory(doc, "WeCom's directory")
        self.import_directory(doc)
        return doc

    # -- ingest ---------------------------------------------------------------------------
    def ingest(self, files: Iterable[Path], keys, cipher=None, *, progress=None,
               on_commit: Callable | None = None, index=None, index_commit_s: float = 5.0,
               what: str = "scrm ingest", wait: bool = False):
        """Ingests GetChatData documents: consent (when a directory is known), auditing and
        the index follow every batch. ``index``: an already open :class:`ArchiveIndex` to
        write (the server's); otherwise the tenant's is opened for this run."""
        from scrm_fast.sources import iter_documents

        return self.ingest_documents(iter_documents(files), keys, cipher, progress=progress, on_commit=on_commit,
                                     index=index, index_commit_s=index_commit_s, sniff=True, what=what, wait=wait)

    def ingest_documents(self, documents, keys, cipher=None, *, lookahead: bool = True, progress=None,
                         on_commit: Callable | None = None, index=None, index_commit_s: float = 5.0,
                         sniff: bool = False, what: str = "an ingest", wait: bool = False):
        """:meth:`ingest` over documents from any source (the live sync's GetChatData
        answers, without lookahead: each durable before the next is asked for). One run at
        a time per data directory holds the ``ingest`` lease (:meth:`ArchiveStore.lease`):
        another gets :class:`LeaseHeld` naming the holder, or waits with ``wait``."""
        from scrm_fast._core import Cipher
        from scrm_fast.consent import build_policy
        from scrm_fast.pipeline import ingest_documents
        from scrm_fast.search import index_writer

        with self.store.lease("ingest", what, wait=wait):
            directory = self.directory()
            with index_writer(self.store, index) as ix:
                return ingest_documents(documents, keys, cipher if cipher is not None else Cipher.open(), self.store,
                                        progress=progress, on_commit=on_commit,
                                        policy=build_policy(directory, self.store),
                                        auditing=auditing_for(self.store, directory), index=ix,
                                        index_commit_s=index_commit_s, lookahead=lookahead, sniff=sniff)

    def retry_quarantine(self, keys, cipher=None, *, index=None, wait: bool = False) -> dict:
        """Re-drives the quarantine through the whole pipeline (consent, audits, media,
        A-6, index) under the ingest lease."""
        from scrm_fast._core import Cipher
        from scrm_fast.consent import build_policy
        from scrm_fast.pipeline import retry_quarantine
        from scrm_fast.search import index_writer

        with self.store.lease("ingest", "quarantine retry", wait=wait):
            directory = self.directory()
            with index_writer(self.store, index) as ix:
                return retry_quarantine(keys, cipher if cipher is not None else Cipher.open(), self.store,
                                        build_policy(directory, self.store), index=ix,
                                        auditing=auditing_for(self.store, directory))

    def finish_due_timeouts(self) -> int | None:
        """The A-6 pass over conversations a killed ingest left due (the server runs it when
        it starts); None when an ingest holds the lease (its own pass will do them)."""
        from scrm_fast.audit import recompute_due_timeouts, timeouts_due
        from scrm_fast.errors import LeaseHeld

        if not timeouts_due(self.store):
            return 0
        try:
            with self.store.lease("ingest", "timeout-reply pass"):
                return recompute_due_timeouts(self.store, self.directory())
        except LeaseHeld:
            return None

    # -- reading --------------------------------------------------------------------------
    def search(self, *, replace_unreadable: bool = False):
        """An :class:`ArchiveSearch` over this tenant's index."""
        from scrm_fast.search import ArchiveSearch, open_index

        return ArchiveSearch(self.store, open_index(self.store, replace_unreadable=replace_unreadable))
