"""WeCom's contact-change events (``change_external_contact``, ``wecom-api.md`` §2) applied
to the tenant: the directory's follow-ups, the behaviour audit (rule A-4: an employee
deleted a customer) and consent (``msg_audit_approved``: the customer agreed to archiving).

The callback route only records an event as pending (``wc.pending``, in the transaction
that de-duplicates it) and answers; :func:`apply_pending` applies pending events and
removes them in one write transaction, so each is applied exactly once, by whichever
server process gets there first, also after a crash."""

from __future__ import annotations

import msgpack
import orjson

from scrm_fast.storage import ArchiveStore, app_key

PENDING = "wc.pending"
HANDLED = {"add_external_contact", "del_external_contact", "del_follow_user", "msg_audit_approved"}


def is_contact_change(ev: dict) -> bool:
    return ev.get("Event") == "change_external_contact" and ev.get("ChangeType") in HANDLED


def pending_key(now_ms: int, digest: bytes) -> bytes:
    return app_key(f"{now_ms:016d}", digest.hex())


def _follow(doc: dict, ext: str, user: str, add: bool) -> bool:
    customers = doc.setdefault("customers", [])
    c = next((c for c in customers if c.get("external_userid") == ext), None)
    if c is None:
        if not add:
            return False
        customers.append({"external_userid": ext, "name": "", "follow_users": [user]})
        return True
    follows = c.setdefault("follow_users", [])
    if add and user not in follows:
        follows.append(user)
        return True
    if not add and user in follows:
        follows.remove(user)
        return True
    return False


def apply_to_directory(doc: dict, ev: dict) -> bool:
    """The directory change an event makes (True when ``doc`` changed)."""
    kind, ext, user = ev.get("ChangeType"), ev.get("ExternalUserID", ""), ev.get("UserID", "")
    if not ext or not user:
        return False
    if kind == "add_external_contact":
        return _follow(doc, ext, user, True)
    if kind in ("del_external_contact", "del_follow_user"):
        return _follow(doc, ext, user, False)
    return False


def _time_ms(ev: dict, fallback_ms: int) -> int:
    t = ev.get("CreateTime", "")
    return int(t) * 1000 if t.isdigit() and len(t) <= 12 else fallback_ms


def apply_pending(store: ArchiveStore, now_ms: int, limit: int = 200) -> int:
    """Applies up to ``limit`` pending events in one transaction; returns how many."""
    from scrm_fast._core import ConsentPolicy
    from scrm_fast.audit import behaviour_switches, contact_event_audits

    switches = behaviour_switches(store)
    with store.write() as w:
        t = w.app()
        items = list(t.scan(PENDING, limit=limit))
        if not items:
            return 0
        doc = w.directory()
        changed = False
        audits, consent = [], []
        for key, ev in items:
            t.delete(PENDING, key)
            kind = ev.get("ChangeType")
            if doc is not None:
                changed |= apply_to_directory(doc, ev)
            at = _time_ms(ev, now_ms)
            if kind == "del_external_contact" and ev.get("Source") != "DELETE_BY_TRANSFER":
                # rule A-4 (the employee deleted the customer; a transfer's removal is not that)
                audits += contact_event_audits([{"event": "del_external_contact", "userid": ev.get("UserID", ""),
                                                 "external_userid": ev.get("ExternalUserID", ""), "time": at}],
                                               switches)
            elif kind == "msg_audit_approved" and ev.get("ExternalUserID"):
                consent.append((ConsentPolicy.consent_key(ev["ExternalUserID"], at, "Agree"),
                                msgpack.packb({"status": "Agree", "source": "callback"})))
        if changed and doc is not None:
            w.save_directory(doc)
        w.add_audits(audits)
        w.put_consent(consent)
    return len(items)


def describe(ev: dict) -> str:
    return orjson.dumps({k: ev.get(k) for k in ("ChangeType", "UserID", "ExternalUserID")}).decode()
