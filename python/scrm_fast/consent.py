"""Consent (rules C-0 … C-12): building the Rust ``ConsentPolicy`` from the tenant's
directory and persisted consent state, and the client for WeCom's consent APIs
(``msgaudit/check_single_agree``, ``msgaudit/check_room_agree``, spec §5).

The policy is built once per ingest; per-message decisions run inside the Rust batch
call. Without a directory the system cannot tell archived employees or groups apart, so
no policy applies and ingest says so in its summary.
"""

from __future__ import annotations

from scrm_fast._core import ConsentPolicy
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore


def build_policy(directory: dict | None, store: ArchiveStore) -> ConsentPolicy | None:
    """The consent policy for ``store``'s tenant, or None when no directory is known."""
    if directory is None:
        return None
    corp = directory.get("corp", {})
    employees = directory.get("employees", [])
    archived = [e["userid"] for e in employees if e.get("archived", True)]
    groups = [(g["roomid"], g["owner"], [(int(c["time"]), c["owner"]) for c in g.get("owner_changes", [])],
               [m["id"] if isinstance(m, dict) else m for m in g.get("members", [])])
              for g in directory.get("groups", [])]
    consent = [(c["external_userid"], int(c["time"]), c["status"]) for c in directory.get("consent", [])]
    consent_entries, spoken_entries = store.consent_state()
    try:
        return ConsentPolicy(bool(corp.get("service_requires_consent", False)), archived,
                             [e["userid"] for e in employees], groups, consent, consent_entries, spoken_entries)
    except (ValueError, TypeError) as e:
        raise InputError(f"directory: {e}") from e


async def refresh_consent(client, directory: dict, store: ArchiveStore) -> dict:
    """Asks ``check_single_agree`` about every (follow-up employee, customer) pair and
    ``check_room_agree`` about every group of the directory (``client``: a
    :class:`scrm_fast.wecom.WeComClient`), and stores the answers as consent changes (source
    ``api:single`` or ``api:<roomid>``)."""
    import msgpack

    pairs = [(u, c["external_userid"]) for c in directory.get("customers", []) for u in c.get("follow_users", [])]
    changes = [(a["exteranalopenid"], int(a.get("status_change_time", 0)) * 1000, a["agree_status"], "single")
               for a in await client.check_single_agree(pairs)]
    for g in directory.get("groups", []):
        changes += [(a["exteranalopenid"], int(a.get("status_change_time", 0)) * 1000, a["agree_status"], g["roomid"])
                    for a in await client.check_room_agree(g["roomid"])]
    entries = [(ConsentPolicy.consent_key(c, t, s), msgpack.packb({"status": s, "source": f"api:{src}"}))
               for c, t, s, src in changes]
    if entries:
        store.put_consent(entries)
    return {"pairs": len(pairs), "groups": len(directory.get("groups", [])), "changes": len(entries)}
