"""Archive reads for the HTTP API, filtered by the caller's data scope *inside* the query
(rule R-2): a conversation is visible only when an employee in scope takes part in it, and
every list is built from visible conversations only, so no filter, id or cursor reaches
another employee's messages. Every read of content is written to the access trail (R-4)
by the route that calls it."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from control.accounts import User
from control.errors import ApiError
from scrm_fast.search import DAY_MS, TYPE_GROUPS, ArchiveSearch, SearchScope, open_index
from scrm_fast.storage import ArchiveStore
from scrm_fast.views import ArchiveCatalog, dept_subtree, group_members, is_customer


@dataclass
class Directory:
    employees: dict[str, dict]
    departments: dict[int, dict]
    groups: dict[str, dict]
    customers: dict[str, dict]
    consent: list[dict]
    corp: dict
    # inheritance (I-1): (customer, old employee) → (new employee, on_job | resigned), in order
    successions: dict[tuple[str, str], tuple[str, str]] = dataclasses.field(default_factory=dict)

    @staticmethod
    def load(store: ArchiveStore) -> Directory:
        doc = store.directory() or {}
        succ = {}
        for s in doc.get("successions", []):
            if isinstance(s, dict) and {"customer", "from", "to", "kind"} <= set(s):
                succ[(s["customer"], s["from"])] = (s["to"], s["kind"])
        return Directory({e["userid"]: e for e in doc.get("employees", [])},
                         {d["id"]: d for d in doc.get("departments", [])},
                         {g["roomid"]: g for g in doc.get("groups", [])},
                         {c["external_userid"]: c for c in doc.get("customers", [])},
                         doc.get("consent", []), doc.get("corp", {}), succ)

    def heirs(self, customer: str, employee: str) -> tuple[set[str], bool]:
        """Who reads ``employee``'s chats with ``customer`` now: the chain of successors (a
        customer can be inherited more than once) and whether ``employee`` still does (a
        resigned employee's archive stays readable to those in scope, V-3; on the job, the old
        owner loses it, I-1)."""
        out, keep, cur, seen = set(), True, employee, set()
        while (customer, cur) in self.successions and cur not in seen:
            seen.add(cur)
            nxt, kind = self.successions[(customer, cur)]
            if cur == employee and kind == "on_job":
                keep = False
            out.add(nxt)
            cur = nxt
        return out, keep

    def as_document(self) -> dict:
        """The directory in its file's shape (what the library's views take)."""
        return {"employees": list(self.employees.values()), "departments": list(self.departments.values()),
                "groups": list(self.groups.values()), "customers": list(self.customers.values()),
                "consent": self.consent, "corp": self.corp,
                "successions": [{"customer": c, "from": f, "to": t, "kind": k}
                                for (c, f), (t, k) in self.successions.items()]}

    def name(self, uid: str) -> str:
        who = self.employees.get(uid) or self.customers.get(uid) or {}
        return who.get("name") or uid

    @functools.cached_property
    def names(self) -> dict[str, str]:
        """{userid: display name} for everyone with a name: what :meth:`name` answers (the
        user id for the rest), as one map for the search page (made once per directory)."""
        out = {u: c["name"] for u, c in self.customers.items() if c.get("name")}
        for u, e in self.employees.items():
            if e.get("name"):
                out[u] = e["name"]
            elif e:  # a known employee without a name is shown by id, not as a customer's name
                out.pop(u, None)
        return out

    def resigned(self) -> set[str]:
        return {u for u, e in self.employees.items() if e.get("status") == "resigned"}

    def subtree(self, dept: int) -> set[int]:
        return dept_subtree(self.departments, dept)

    def group_members(self, roomid: str) -> set[str]:
        return group_members(self.groups.get(roomid, {}))


def allowed_employees(user: User, d: Directory) -> set[str] | None:
    """None: everything; else the employee ids whose conversations the user may read."""
    if user.scope == "all":
        return None
    if user.scope == "department" and user.department is not None:
        depts = d.subtree(user.department)
        own = {u for u, e in d.employees.items() if e.get("department") in depts}
        return own | ({user.employee} if user.employee else set())
    return {user.employee} if user.employee else set()


def conv_parties(conv: str, d: Directory) -> set[str]:
    """Whose conversation this is for scope (R-2): its parties, with inherited customers'
    chats following their new owners (I-1)."""
    if conv.startswith("p:"):
        parties = set(conv[2:].split("|"))
        if d.successions:
            customers = [p for p in parties if is_customer(p)]
            for c in customers:
                for e in [p for p in parties if not is_customer(p)]:
                    heirs, keep = d.heirs(c, e)
                    parties |= heirs
                    if not keep:
                        parties.discard(e)
        return parties
    if conv.startswith("g:"):
        return d.group_members(conv[2:])
    if conv.startswith("s:"):
        return {conv[2:]}
    return set()


class ArchiveViews:
    def __init__(self, store: ArchiveStore, data_dir: Path) -> None:
        self.store = store
        self.data_dir = data_dir
        self._dir: tuple[float, Directory, set[str]] | None = None
        self._dir_checked = 0.0
        self.index = open_index(store, replace_unreadable=True)
        self.search = ArchiveSearch(store, self.index)
        self.catalog = ArchiveCatalog(store)
        self.index_lock = threading.Lock()  # one writer user at a time in this process

    def catch_up_index(self) -> int:
        """Indexes what the store holds and the index lacks; returns 0 (and logs) when
        another process (an ingest) holds the index writer, which catches up itself."""
        import logging

        from scrm_fast.errors import InputError
        from scrm_fast.search import index_writer

        with self.index_lock:
            try:
                with index_writer(self.store, self.index):
                    pass
            except InputError as e:
                logging.getLogger("scrm.control").warning("index catch-up skipped: %s", e)
                return 0
        return 1

    def raw_directory(self) -> dict:
        """The directory as the library views take it (the file's shape)."""
        return self.directory().as_document()

    def search_scope(self, user: User) -> SearchScope | None:
        """Rule R-2 for search: messages an in-scope employee takes part in, and the group
        chats such an employee is a member of (as for the conversation lists)."""
        d = self.directory()
        allowed = allowed_employees(user, d)
        if allowed is None:
            return None
        rooms = {r for r in d.groups if d.group_members(r) & allowed}
        convs, hidden = set(), set()
        for conv in self.inherited_convs(d):  # chats that follow their customer's new owner (I-1)
            now_visible = bool(conv_parties(conv, d) & allowed)
            by_party = bool(set(conv[2:].split("|")) & allowed)
            if now_visible and not by_party:
                convs.add(conv)
            elif by_party and not now_visible:
                hidden.add(conv)
        return SearchScope(frozenset(allowed), frozenset(rooms), frozenset(convs), frozenset(hidden))

    def inherited_convs(self, d: Directory) -> list[str]:
        """The one-to-one conversations whose (customer, employee) pair was inherited; worked
        out once per directory version."""
        if not d.successions:
            return []
        key = id(d)
        cached = getattr(self, "_inherited", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        pairs = set(d.successions)
        out = []
        for c in self.catalog.conversations():
            if c.conv.startswith("p:"):
                a, _, b = c.conv[2:].partition("|")
                if (a, b) in pairs or (b, a) in pairs:
                    out.append(c.conv)
        self._inherited = (key, out)
        return out

    def directory(self) -> Directory:
        """The tenant's directory, opened again only when it was saved again (its stamp is
        looked at once a second at most: every request asks)."""
        now = time.monotonic()
        if self._dir is not None and now - self._dir_checked < 1.0:
            return self._dir[1]
        stamp = self.store.directory_stamp()
        if self._dir is None or self._dir[0] != stamp:
            d = Directory.load(self.store)
            self._dir = (stamp, d, d.resigned())
        self._dir_checked = now
        return self._dir[1]

    def resigned(self) -> set[str]:
        self.directory()
        return self._dir[2] if self._dir else set()

    def visible(self, conv: str, allowed: set[str] | None, d: Directory) -> bool:
        return allowed is None or bool(conv_parties(conv, d) & allowed)

    def conversations(self, user: User, employee: str | None, kind: str | None) -> list[dict]:
        """Conversations (one per conversation id) with their last message time; rule V-2's
        counterpart lists: ``external`` (with customers), ``internal``, ``group``."""
        d = self.directory()
        allowed = allowed_employees(user, d)
        if employee is not None and allowed is not None and employee not in allowed:
            raise ApiError(403, "forbidden", f"employee {employee} is outside your data scope")
        out = []
        for c in self.catalog.conversations():  # one entry per conversation, cached until the store changes
            conv = c.conv
            if not conv.startswith(("p:", "g:")):
                continue
            parties = conv_parties(conv, d)
            ckind = "group" if conv.startswith("g:") else (
                "external" if any(is_customer(p) for p in parties) else "internal")
            if (kind is None or kind == ckind) and (employee is None or employee in parties) \
                    and (allowed is None or parties & allowed):
                out.append({"conv": conv, "kind": ckind, "parties": sorted(parties) if ckind != "group" else [],
                            "name": d.groups.get(conv[2:], {}).get("name") if ckind == "group" else None,
                            "title": d.groups.get(conv[2:], {}).get("name", conv[2:]) if ckind == "group" else
                            "、".join(d.name(p) for p in sorted(parties) if p != employee) or conv[2:],
                            "last_seq": c.last_seq, "last_msgtime": c.last_msgtime})
        out.sort(key=lambda c: -c["last_msgtime"])
        return out

    def messages(self, user: User, conv: str, type_group: str = "all", days: int | None = None,
                 since: int | None = None, until: int | None = None, before_seq: int | None = None,
                 limit: int = 50, after_seq: int | None = None) -> dict:
        """A conversation's messages, newest first, ``limit`` a page; ``next_cursor`` is the
        seq to pass as ``before_seq`` for the next page. With ``after_seq``: the ``limit``
        messages right after that one (the newer side of a message's context), newest first."""
        d = self.directory()
        if not self.visible(conv, allowed_employees(user, d), d):
            # same answer as for a conversation that does not exist: scope leaks nothing
            raise ApiError(404, "not_found", "no such conversation")
        types = TYPE_GROUPS.get(type_group, ...)
        if types is ...:
            raise ApiError(422, "invalid", f"type must be one of {', '.join(TYPE_GROUPS)}")
        if type_group == "voice_call" and conv.startswith("g:"):
            raise ApiError(422, "invalid", "voice calls are not a tab for groups (rule V-2)")
        if days is not None:
            since = self.store.stream_time() - days * DAY_MS
        if not self.store.has_conversation(conv):
            raise ApiError(404, "not_found", "no such conversation")
        items: list[dict] = []
        next_cursor = None
        # seqs in pages of the conversation index, records opened a page at a time (one
        # batch call into the vault, not one per message)
        seqs = self.store.conversation_seqs(conv, before=before_seq, after=after_seq, since=since, until=until)
        want = limit if after_seq is not None else limit + 1
        while len(items) < want:
            chunk = list(itertools.islice(seqs, max(want - len(items), 16)))
            if not chunk:
                break
            for raw in self.store.records_raw(chunk):
                if raw is None:
                    continue
                r = msgpack.unpackb(raw)
                if types is None or r["msgtype"] in types:
                    items.append(r)
                    if len(items) == want:
                        break
        if after_seq is not None:
            return {"conv": conv, "items": [message_view(r) for r in items[::-1]], "next_cursor": None}
        if len(items) > limit:
            items = items[:limit]
            next_cursor = items[-1]["seq"]
        return {"conv": conv, "items": [message_view(r) for r in items], "next_cursor": next_cursor}

    def message(self, user: User, seq: int) -> dict:
        r = self.store.get_record(seq)
        d = self.directory()
        if r is None or not self.visible(r.get("conv", ""), allowed_employees(user, d), d):
            raise ApiError(404, "not_found", f"no message {seq}")
        return message_view(r, full=True)


def message_view(r: dict, full: bool = False) -> dict:
    import orjson

    body = orjson.loads(r["raw"])
    view = {"seq": r["seq"], "msgid": r["msgid"], "msgtime": r["msgtime"], "msgtype": r["msgtype"],
            "action": r["action"], "from": r["from"], "tolist": r["tolist"], "roomid": r["roomid"],
            "text": r["text"], "conv": r.get("conv", ""), "rule": r.get("rule", "")}
    key = {"docmsg": "doc", "markdown": "info", "news": "info", "voiptext": "info", "qydiskfile": "info"}.get(
        r["msgtype"], r["msgtype"])
    view["payload"] = body.get(key) if key in body else body.get("redpacket")
    if full:
        view["message"] = body
    return view
