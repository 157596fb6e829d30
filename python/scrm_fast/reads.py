"""The one way archived content leaves the store (rule R-4): each kind of content read is a
function here that takes who is reading and a way to write the access trail, writes the
entry, and only then returns the content together with its :class:`Receipt` — there is no
way to get the content without the entry. The CLI writes the trail synchronously
(:func:`cli_trail`); the server passes its group-committed writer (``control.trail``),
and its middleware refuses to answer a route marked as returning content without a receipt
(``control.app``), so a new endpoint cannot forget it either.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scrm_fast.storage import ArchiveStore

# (action, target, detail) → the trail entry written (durable when it returns)
TrailWrite = Callable[[str, str, dict], dict]


@dataclass(frozen=True)
class Receipt:
    """The trail entry a read wrote: its index in the chain and its MAC."""

    index: int
    mac: str

    @staticmethod
    def of(entry: dict) -> Receipt:
        return Receipt(int(entry["index"]), str(entry["mac"]))


def cli_trail(store: ArchiveStore, via: str = "cli") -> TrailWrite:
    """The trail writer of a command: the user is the operating-system account."""
    from scrm_fast.trail import AccessTrail

    user = f"{via}:{getpass.getuser()}"

    def write(action: str, target: str, detail: dict) -> dict:
        trail = AccessTrail(store)
        try:
            return trail.append(user, action, target, {**detail, "via": via})
        finally:
            trail.close()
    return write


def _ids(rows: list[dict]) -> dict:
    return {"ids": [r["id"] for r in rows][:1000], "count": len(rows)}


# -- the content functions: what is read, and what its entry says ----------------------------
def audit_rows(store: ArchiveStore, kind: str | None, status: str | None, context: bool,
               scope: Callable[[list[dict]], list[dict]] = lambda rows: rows) -> tuple[list[dict], tuple]:
    """Audit records (A-2, A-4) in ``scope``, with their context when asked; and the entry."""
    from scrm_fast import audit

    rows = scope(audit.list_audits(store, kind, status))
    if context:
        for r in rows:
            r["context"] = audit.context(store, r)
    return rows, ("read_audit_context" if context else "read_audits", "audits", _ids(rows))


def alert_rows(store: ArchiveStore,
               scope: Callable[[list[dict]], list[dict]] = lambda rows: rows) -> tuple[list[dict], tuple]:
    """Alerts (A-5, A-6) oldest first, each word alert linked to its message; and the entry."""
    from scrm_fast import audit

    rows = store.alerts()
    for r in rows:
        if r["kind"] == "sensitive_word" and "conv" not in r:
            a = audit.get_audit(store, r["audit_id"])
            if a is not None:
                r.update(conv=a["conv"], seq=a["seq"], customer=a.get("customer"), roomid=a.get("roomid"))
    rows.sort(key=lambda r: (r["msgtime"], r["id"]))
    rows = scope(rows)
    return rows, ("read_alerts", "alerts", _ids(rows))


def search_entry(query: str, filters: dict, seqs: list[int]) -> tuple:
    return ("search", query, {"filters": {k: v for k, v in filters.items() if v not in (None, "all")},
                              "seqs": seqs})


# -- reads with their receipts --------------------------------------------------------------
def released(content, entry: tuple, write: TrailWrite):
    """Writes ``entry`` and then hands ``content`` over with the receipt."""
    action, target, detail = entry
    return content, Receipt.of(write(action, target, detail))


def audits(store: ArchiveStore, write: TrailWrite, kind: str | None = None, status: str | None = None,
           context: bool = False) -> tuple[list[dict], Receipt]:
    return released(*audit_rows(store, kind, status, context), write)


def alerts(store: ArchiveStore, write: TrailWrite) -> tuple[list[dict], Receipt]:
    return released(*alert_rows(store), write)


def search(tenant, write: TrailWrite, query: str, **filters) -> tuple[dict, Receipt, int]:
    """A search page (as :meth:`ArchiveSearch.search`), its receipt and the index lag."""
    s = tenant.search()
    page = s.search(query, **filters)
    shown = {k: v for k, v in filters.items() if k not in ("cursor", "limit")}
    content, receipt = released(page, search_entry(query, shown, [it["seq"] for it in page["items"]]), write)
    return content, receipt, s.lag()


def export(store: ArchiveStore, write: TrailWrite, target: str) -> tuple[Iterator[bytes], Receipt]:
    """Every stored record as JSON lines, in chunks (the trail entry names how many)."""
    from scrm_fast import records_to_jsonl

    def chunks() -> Iterator[bytes]:
        for chunk in store.record_value_chunks():
            yield records_to_jsonl(chunk)
    return released(chunks(), ("export", target, {"records": store.record_count()}), write)
