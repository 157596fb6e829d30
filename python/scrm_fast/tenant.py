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
               on_commit: Callable | None = None, index=None, index_commit_s: float = 5.0):
        """Ingests GetChatData documents: consent (when a directory is known), auditing and
        the index follow every batch. ``index``: an already open :class:`ArchiveIndex` to
        write (the server's); otherwise the tenant's is opened for this run."""
        from scrm_fast.sources import iter_documents

        return self.ingest_documents(iter_documents(files), keys, cipher, progress=progress, on_commit=on_commit,
                                     index=index, index_commit_s=index_commit_s, sniff=True)

    def ingest_documents(self, documents, keys, cipher=None, *, lookahead: bool = True, progress=None,
                         on_commit: Callable | None = None, index=None, index_commit_s: float = 5.0,
                         sniff: bool = False):
        """:meth:`ingest` over documents from any source (the live sync's GetChatData
        answers, without lookahead: each durable before the next is asked for)."""
        from scrm_fast._core import Cipher
        from scrm_fast.consent import build_policy
        from scrm_fast.pipeline import ingest_documents
        from scrm_fast.search import index_writer

        directory = self.directory()
        with index_writer(self.store, index) as ix:
            return ingest_documents(documents, keys, cipher if cipher is not None else Cipher.open(), self.store,
                                    progress=progress, on_commit=on_commit, policy=build_policy(directory, self.store),
                                    auditing=auditing_for(self.store, directory), index=ix,
                                    index_commit_s=index_commit_s, lookahead=lookahead, sniff=sniff)

    def retry_quarantine(self, keys, cipher=None) -> dict:
        from scrm_fast._core import Cipher
        from scrm_fast.consent import build_policy
        from scrm_fast.pipeline import retry_quarantine
        from scrm_fast.search import index_writer

        with index_writer(self.store) as index:
            return retry_quarantine(keys, cipher if cipher is not None else Cipher.open(), self.store,
                                    build_policy(self.directory(), self.store), index=index)

    # -- reading --------------------------------------------------------------------------
    def search(self, *, replace_unreadable: bool = False):
        """An :class:`ArchiveSearch` over this tenant's index."""
        from scrm_fast.search import ArchiveSearch, open_index

        return ArchiveSearch(self.store, open_index(self.store, replace_unreadable=replace_unreadable))
