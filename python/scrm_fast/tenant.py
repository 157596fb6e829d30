"""One tenant's data directory as the commands and the service see it: its directory file
and the audit set-up that ingest needs."""

from __future__ import annotations

from pathlib import Path


def tenant_directory(data: str, given: str | None) -> dict | None:
    """The directory given on the command line (validated, then kept in the data
    directory), else the one kept from an earlier import, else None."""
    from scrm_fast.directory import load_directory

    if given:
        return load_directory(given)
    kept = Path(data) / "directory.json"
    return load_directory(kept) if kept.exists() else None


def auditing_for(store, directory):
    from scrm_fast.audit import behaviour_switches, load_wordlist, stored_words
    from scrm_fast.pipeline import Auditing

    return Auditing(load_wordlist(store), stored_words(store)[0], behaviour_switches(store), directory)


def import_directory_events(store, directory: dict) -> None:
    """Contact events kept in the directory (``contact_events``): deleted customers (A-4)."""
    from scrm_fast.audit import behaviour_switches, contact_event_audits

    audits = contact_event_audits(directory.get("contact_events", []), behaviour_switches(store))
    if audits:
        with store.env.begin(write=True) as txn:
            txn.cursor(db=store.db("audits")).putmulti(audits, overwrite=False)
