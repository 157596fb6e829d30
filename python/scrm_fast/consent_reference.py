"""The consent rules (C-0 … C-12) written message by message in plain Python.

This is the oracle, not the product: the simulator labels its ground truth with it and
the tests compare the Rust engine against it. It is deliberately naive (dicts and lists,
one message at a time, in seq order) so that it can be read against spec/rules.md §C.
Never used on an ingest path.
"""

from __future__ import annotations


def _is_customer(uid: str) -> bool:
    return uid.startswith(("wo", "wm"))


class ConsentReference:
    def __init__(self, directory: dict) -> None:
        self.switch = bool(directory.get("corp", {}).get("service_requires_consent", False))
        self.archived = {e["userid"] for e in directory.get("employees", []) if e.get("archived", True)}
        self.groups = {}
        for g in directory.get("groups", []):
            changes = sorted(((c["time"], c["owner"]) for c in g.get("owner_changes", [])), key=lambda x: x[0])
            members = [m["id"] if isinstance(m, dict) else m for m in g.get("members", [])]
            self.groups[g["roomid"]] = (g["owner"], changes, members)
        self.consent: dict[str, dict[int, str]] = {}
        for c in directory.get("consent", []):
            self._set(c["external_userid"], c["time"], c["status"])
        self.spoken: dict[str, dict[str, int]] = {}

    def _set(self, customer: str, time: int, status: str) -> None:
        self.consent.setdefault(customer, {})[time] = "Disagree" if status in ("Disagree", "disagree") else "Agree"

    def disagrees_at(self, customer: str, t: int) -> bool:
        times = [x for x in self.consent.get(customer, {}) if x <= t]
        return bool(times) and self.consent[customer][max(times)] == "Disagree"

    def judge(self, m: dict) -> tuple[bool, str]:
        """(keep, rule id) for one message; updates the state like the stream does."""
        t = m.get("msgtype")
        if t in ("agree", "disagree"):
            p = m.get(t, {})
            customer = p.get("userid") or m.get("from", "")
            when = p.get(f"{t}_time") or m.get("msgtime", 0)
            self._set(customer, when, t)
            return True, "C-consent"
        if m.get("action") == "switch":
            return True, "C-0"
        sender, peers, room, when = m.get("from", ""), m.get("tolist", []), m.get("roomid", ""), m.get("msgtime", 0)
        if not room:
            people = [sender, *peers]
            if not any(p in self.archived and not _is_customer(p) for p in people):
                return False, "C-0"
            customers = [p for p in people if _is_customer(p)]
            if not customers:
                return True, "C-0"
            if not self.disagrees_at(customers[0], when):
                return True, "C-1"
            return False, "C-3" if self.switch else "C-2"
        if sender in self.archived and not _is_customer(sender):
            self.spoken.setdefault(room, {}).setdefault(sender, when)
        disagree = _is_customer(sender) and self.disagrees_at(sender, when)
        group = self.groups.get(room)
        if group is not None:
            first_owner, changes, _ = group
            owner = first_owner
            for ct, o in changes:
                if ct <= when:
                    owner = o
            if owner in self.archived:
                transferred = owner != first_owner
                if not disagree:
                    return True, "C-7" if transferred else "C-4"
                if transferred:
                    return False, "C-12"
                return False, "C-9" if self.switch else "C-8"
        if any(ts <= when for ts in self.spoken.get(room, {}).values()):
            return (False, "C-10") if disagree else (True, "C-5")
        members = group[2] if group is not None else []
        if any(p in self.archived for p in [*members, sender, *peers]):
            return False, "C-11" if disagree else "C-6"
        return False, "C-0"
