"""Archive catalogue views (rules V-1, V-3, V-4): employees with their archive counts,
resigned employees, customers with their sessions. Computed from the conversation index
(``conv`` table: one seek per conversation, not one per message) and the directory, so
counts follow every ingest; the per-conversation summary is cached until the store
changes (checkpoint or record count).

A *session* is a conversation: one employee with one customer, or a group chat. Data
scope (rule R-2) is applied by the caller passing ``allowed`` employee ids.
"""

from __future__ import annotations

import threading

from scrm_fast.storage import ArchiveStore, ConvSummary


def is_customer(uid: str) -> bool:
    return uid.startswith(("wo", "wm"))


def group_members(group: dict) -> set[str]:
    """Everyone a directory group names: members, the owner and every past owner."""
    ids = {m["id"] if isinstance(m, dict) else m for m in group.get("members", [])}
    ids |= {group.get("owner", "")} | {c["owner"] for c in group.get("owner_changes", [])}
    return ids - {""}


def dept_subtree(departments: dict[int, dict], root: int) -> set[int]:
    """``root`` and every department below it."""
    out, frontier = {root}, [root]
    while frontier:
        d = frontier.pop()
        for k, v in departments.items():
            if v.get("parent") == d and k not in out:
                out.add(k)
                frontier.append(k)
    return out


class ArchiveCatalog:
    """V-1 / V-3 / V-4 lists for one archive."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int], list[ConvSummary]] | None = None

    def conversations(self) -> list[ConvSummary]:
        """Every conversation with its newest message; recomputed only after the store changed."""
        stamp = (self.store.checkpoint(), self.store.counts()["records"])
        with self._lock:
            if self._cache is not None and self._cache[0] == stamp:
                return self._cache[1]
        out = self.store.conversation_summaries()
        with self._lock:
            self._cache = (stamp, out)
        return out

    @staticmethod
    def _members(directory: dict) -> dict[str, set[str]]:
        return {g["roomid"]: group_members(g) for g in directory.get("groups", [])}

    def _per_party(self, directory: dict) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, list[int]]]:
        """Archived counterpart customers per employee, archived groups per party, and the
        session times (newest message per session) per customer."""
        members = self._members(directory)
        customers_of: dict[str, set[str]] = {}
        groups_of: dict[str, set[str]] = {}
        sessions_of: dict[str, list[int]] = {}
        for c in self.conversations():
            if c.conv.startswith("p:"):
                parties = c.conv[2:].split("|")
                custs = [p for p in parties if is_customer(p)]
                for e in (p for p in parties if not is_customer(p)):
                    customers_of.setdefault(e, set()).update(custs)
                for cu in custs:
                    sessions_of.setdefault(cu, []).append(c.last_msgtime)
            elif c.conv.startswith("g:"):
                room = c.conv[2:]
                for m in members.get(room, ()):
                    groups_of.setdefault(m, set()).add(room)
                    if is_customer(m):
                        sessions_of.setdefault(m, []).append(c.last_msgtime)
        return customers_of, groups_of, sessions_of

    def employees(self, directory: dict, *, status: str = "active", allowed: set[str] | None = None,
                  department: int | None = None, name: str | None = None, enabled: bool | None = None,
                  resigned_since: int | None = None, resigned_until: int | None = None) -> dict:
        """V-1 (``status="active"``) and V-3 (``status="resigned"``): totals and one row per
        employee with customer count, archived customer count and archived group count."""
        customers_of, groups_of, _ = self._per_party(directory)
        follow: dict[str, int] = {}
        for c in directory.get("customers", []):
            for u in set(c.get("follow_users", [])):
                follow[u] = follow.get(u, 0) + 1
        depts = {d["id"]: d for d in directory.get("departments", [])}
        subtree = dept_subtree(depts, department) if department is not None else None
        items = []
        scoped = [e for e in directory.get("employees", [])
                  if (e.get("status", "active") == status) and (allowed is None or e["userid"] in allowed)]
        for e in scoped:
            uid = e["userid"]
            if subtree is not None and e.get("department") not in subtree:
                continue
            if name and name not in uid and name not in e.get("name", ""):
                continue
            if enabled is not None and bool(e.get("archived", True)) != enabled:
                continue
            rt = e.get("resigned_at")
            if resigned_since is not None and (rt is None or rt < resigned_since):
                continue
            if resigned_until is not None and (rt is None or rt > resigned_until):
                continue
            row = {"userid": uid, "name": e.get("name", uid), "department_id": e.get("department"),
                   "department": depts.get(e.get("department"), {}).get("name"),
                   "archived": bool(e.get("archived", True)), "customer_count": follow.get(uid, 0),
                   "archived_customer_count": len(customers_of.get(uid, ())),
                   "archived_group_count": len(groups_of.get(uid, ()))}
            if status == "resigned":
                row["resigned_at"] = rt
                row["customers_contacted"] = row["archived_customer_count"]
            items.append(row)
        items.sort(key=lambda r: r["userid"])
        return {"totals": {"employees": len(scoped), "archive_enabled": sum(bool(e.get("archived", True))
                                                                            for e in scoped),
                           "matching": len(items)},
                "items": items}

    def customers(self, directory: dict, *, consent: dict[str, str] | None = None, allowed: set[str] | None = None,
                  follow_user: str | None = None, name: str | None = None) -> dict:
        """V-4: customers with archived sessions: follow-up employees, collaborators, total
        sessions (with every employee and group) and the last session time. ``consent``
        maps a customer to ``agreed`` / ``disagreed`` (latest known answer)."""
        customers_of, _, sessions_of = self._per_party(directory)
        talked_with: dict[str, set[str]] = {}
        for e, custs in customers_of.items():
            for c in custs:
                talked_with.setdefault(c, set()).add(e)
        known = {c["external_userid"]: c for c in directory.get("customers", [])}
        items = []
        for cid, times in sessions_of.items():
            c = known.get(cid, {})
            follows = list(c.get("follow_users", []))
            if allowed is not None and not (set(follows) | talked_with.get(cid, set())) & allowed:
                continue
            if follow_user and follow_user not in follows:
                continue
            if name and name not in c.get("name", "") and name not in cid:
                continue
            items.append({"external_userid": cid, "name": c.get("name", cid), "follow_users": follows,
                          "collaborators": list(c.get("collaborators", [])), "sessions": len(times),
                          "last_session_time": max(times), "consent": (consent or {}).get(cid, "unknown")})
        items.sort(key=lambda r: (-r["last_session_time"], r["external_userid"]))
        return {"total": len(items), "items": items}


def latest_consent(store: ArchiveStore, directory: dict) -> dict[str, str]:
    """The latest consent answer per customer, from the directory and the stored changes."""
    events = [(c["time"], c["external_userid"], c["status"]) for c in directory.get("consent", [])]
    events += [(c["time"], c["external_userid"], c.get("status", "")) for c in store.consent_changes()]
    out: dict[str, str] = {}
    for _, cid, st in sorted(events):
        st = st.lower()
        out[cid] = "disagreed" if st.startswith("disagree") else "agreed" if "agree" in st else out.get(cid, "unknown")
    return out
