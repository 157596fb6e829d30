"""Customers, companies, opportunities, pools and prospecting on the store's SCRM tables.
Every method that decides is a function of one :class:`~scrm_fast.storage.AppTxn`, so the
server runs it in the group commit: a claim's caps are checked and reserved in the same
write transaction that records the claim, atomically across `scrm serve` processes.

Tables (the store's ``app`` table, values sealed; phone numbers only as keyed digests in keys):

- ``cu.settings``  → fields, custom fields, statuses, sources, tags, stages, switches, lead package
- ``cu.cust``      customer id → record (fields, owner, pool, company, last contact, history)
- ``cu.phone``     phone digest → customer id (de-duplication, P-4)
- ``cu.ext``       WeCom external_userid → customer id (the link to the directory's contacts)
- ``cu.xfer``      transfer id → an inheritance job (``control.customers.transfers``); ``cu.xhist``
                   handover, customer → on-the-job transfer times (90 days / 2); ``cu.gday`` new owner,
                   day → groups transferred (≤ 300)
- ``cu.company``   company id → company (name, fields, P-7 holder, claim time)
- ``cu.opp``       opportunity id → opportunity (customer, stage, amount, history) (P-8)
- ``cu.pool``      pool id → pool (admins, members, rule, caps, recycling, de-dup) (P-1 … P-3)
- ``cu.inpool``    pool, customer → unclaimed customers of a pool
- ``cu.held``      pool, member, customer → since; ``cu.holdn`` pool, member → how many held (P-2)
- ``cu.claimday``  pool, member, day → claims that day (P-2); ``cu.pday`` / ``cu.pmonth`` member,
                   day / month → prospecting claims (P-5)
- ``cu.byc``       pool, last contact, customer → held customers by their last contact (P-3 (a))
- ``cu.byo``       pool, last opportunity, customer → … by their last new opportunity (P-3 (b))
- ``cu.pseat``     member → prospecting seat (on, daily cap, monthly cap) (P-5)
- ``cu.pcomp``     member, company → when the member first claimed its contacts (P-6)
- ``cu.import``    import id → the per-row report of a spreadsheet import (P-4)
"""

from __future__ import annotations

import secrets
from datetime import datetime
from zoneinfo import ZoneInfo

from control.customers import rules
from scrm_fast.errors import ConflictError, InputError, NotFoundError
from scrm_fast.storage import AppTxn, ArchiveStore, app_key

POOL_RULES = ("claim", "assign", "both")
TZ = ZoneInfo("Asia/Shanghai")  # the tenant's zone for "a day" (the dialer's setting names the same default)


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def _member(v: object, name: str = "member") -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 64 or "\0" in v:
        raise InputError(f"{name}: a WeCom userid")
    return v


class Customers:
    def __init__(self, store: ArchiveStore, clock) -> None:
        self.store = store
        self.clock = clock

    def digest(self, phone: str) -> bytes:
        return self.store.app_digest("customer-phone", phone)

    _chats: tuple[float, dict[str, int]] | None = None

    def chat_times(self) -> dict[str, int]:
        """external_userid → time of the newest archived message of a one-to-one chat with
        them (a contact record for P-3), from the archive's conversation index; kept a minute."""
        import time

        now = time.monotonic()
        if self._chats is not None and now - self._chats[0] < 60:
            return self._chats[1]
        out: dict[str, int] = {}
        for c in self.store.conversation_summaries():
            if c.conv.startswith("p:"):
                for party in c.conv[2:].split("|"):
                    if party.startswith(("wm", "wo")) and out.get(party, 0) < c.last_msgtime:
                        out[party] = c.last_msgtime
        self._chats = (now, out)
        return out

    def _latest_contact(self, t: AppTxn, rec: dict) -> int:
        """The newest contact with a customer from every source: recorded contacts, the
        dialer's calls with its phone, archived chats with its WeCom id (P-3 (a))."""
        best = rec.get("last_contact") or 0
        call = t.get("dl.lastcall", self.store.app_digest("phone", rec["phone"]))
        if isinstance(call, dict):
            best = max(best, call.get("at") or 0)
        ext = rec.get("external_userid")
        if ext:
            best = max(best, self.chat_times().get(ext, 0))
        return best

    def run(self, fn):
        with self.store.app_write() as t:
            return fn(t)

    def read(self, fn):
        with self.store.app_read() as t:
            return fn(t)

    def day(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, TZ).date().isoformat()

    # -- settings ------------------------------------------------------------------------
    @staticmethod
    def settings_in(t: AppTxn) -> dict:
        s = t.get("cu.settings", b"")
        return s if isinstance(s, dict) else rules.default_settings()

    def settings(self) -> dict:
        return self.read(self.settings_in)

    def update_settings(self, t: AppTxn, doc: dict) -> dict:
        new = rules.merge_settings(self.settings_in(t), doc)
        t.put("cu.settings", b"", new)
        return new

    # -- customers ------------------------------------------------------------------------
    def add_customer(self, t: AppTxn, doc: dict, *, by: str | None, pool: str | None = None,
                     owner: str | None = None, source: str | None = None, checked: bool = False,
                     allow_same_phone: bool = False) -> dict:
        s = self.settings_in(t)
        fields = doc if checked else rules.check_record(s, doc)
        d = self.digest(fields["phone"])
        dup = t.get("cu.phone", d)
        if dup is not None and not allow_same_phone:
            raise ConflictError(f"a customer with this phone exists: {dup}")
        now = self.clock.now_ms()
        cid = _id("cu")
        rec = {"id": cid, **{k: v for k, v in fields.items()}, "status": fields.get("status", s["statuses"][0]),
               "source": fields.get("source", source or s["sources"][-1]), "tags": fields.get("tags", []),
               "ptags": {}, "owner": owner, "pool": pool, "created": now, "created_by": by,
               "last_contact": None, "last_opp": None, "held_since": now if owner else None,
               "history": [{"at": now, "what": "created", "by": by, "pool": pool, "owner": owner}]}
        t.put("cu.cust", cid.encode(), rec)
        if dup is None:
            t.put("cu.phone", d, cid)
        if fields.get("external_userid"):
            t.put("cu.ext", fields["external_userid"].encode(), cid)
        if pool is not None and owner is None:
            t.put("cu.inpool", app_key(pool, cid), None)
        if fields.get("company"):
            self._company(t, fields["company"])
        return rec

    def get(self, t: AppTxn, cid: str) -> dict:
        rec = t.get("cu.cust", cid.encode()) if isinstance(cid, str) and 0 < len(cid) <= 40 else None
        if rec is None:
            raise NotFoundError(f"no customer {cid}")
        return rec

    def update_customer(self, t: AppTxn, cid: str, doc: dict, by: str) -> dict:
        rec = self.get(t, cid)
        changes = rules.check_record(self.settings_in(t), doc, partial=True)
        if "phone" in changes and changes["phone"] != rec["phone"]:
            d = self.digest(changes["phone"])
            if t.get("cu.phone", d) is not None:
                raise ConflictError("a customer with this phone exists")
            t.delete("cu.phone", self.digest(rec["phone"]))
            t.put("cu.phone", d, cid)
        if changes.get("external_userid") != rec.get("external_userid") and "external_userid" in changes:
            if rec.get("external_userid"):
                t.delete("cu.ext", rec["external_userid"].encode())
            if changes["external_userid"]:
                other = t.get("cu.ext", changes["external_userid"].encode())
                if other is not None and other != cid:
                    raise ConflictError(f"customer {other} is linked to this WeCom contact")
                t.put("cu.ext", changes["external_userid"].encode(), cid)
        rec.update(changes)
        self._log(rec, "updated", by, fields=sorted(changes))
        t.put("cu.cust", cid.encode(), rec)
        return rec

    def set_personal_tags(self, t: AppTxn, cid: str, member: str, tags: list[str]) -> dict:
        rec = self.get(t, cid)
        rec["ptags"][member] = rules._strs(tags, "tags", 50)
        t.put("cu.cust", cid.encode(), rec)
        return rec

    @staticmethod
    def _log(rec: dict, what: str, by: str | None, **kw) -> None:
        rec["history"].append({"at": kw.pop("at", None) or 0, "what": what, "by": by, **kw})
        del rec["history"][:-50]  # the latest 50 events stay with the record

    def list_customers(self, *, owners: set[str] | None, owner: str | None = None, pool: str | None = None,
                       status: str | None = None, tag: str | None = None, q: str | None = None,
                       limit: int = 100, after: str | None = None) -> tuple[list[dict], str | None]:
        """Customers in key order from ``after``; ``owners``: the caller's scope (None: all)."""
        def fn(t):
            out = []
            start = after.encode() + b"\0" if after else None
            for key, rec in t.scan("cu.cust", start=start):
                if owners is not None and rec["owner"] not in owners:
                    continue
                if owner is not None and rec["owner"] != owner:
                    continue
                if pool is not None and rec["pool"] != pool:
                    continue
                if status is not None and rec["status"] != status:
                    continue
                if tag is not None and tag not in rec["tags"]:
                    continue
                if q and q not in rec["name"] and q not in rec["phone"]:
                    continue
                out.append(rec)
                if len(out) == limit:
                    return out, key.decode()
            return out, None
        return self.read(fn)

    def contact(self, t: AppTxn, cid: str, kind: str, at: int | None, by: str | None) -> dict:
        """A contact record (call, message, visit): resets the recycle clock (P-3 (a))."""
        if kind not in ("call", "message", "visit", "other"):
            raise InputError("kind: call, message, visit or other")
        rec = self.get(t, cid)
        now = self.clock.now_ms()
        at = now if at is None else at
        if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= now + 60_000:
            raise InputError("at: epoch milliseconds, not in the future")
        self._touch(t, rec, "last_contact", "cu.byc", at)
        self._log(rec, f"contact:{kind}", by, at=at)
        t.put("cu.cust", cid.encode(), rec)
        return rec

    def _touch(self, t: AppTxn, rec: dict, field: str, table: str, at: int) -> None:
        old = rec.get(field)
        if old is not None and old >= at:
            return
        rec[field] = at
        if rec["owner"] is not None and rec["pool"] is not None:
            since = rec["held_since"] or 0
            if old is not None or since:
                t.delete(table, app_key(rec["pool"], max(old or 0, since), rec["id"]))
            t.put(table, app_key(rec["pool"], max(at, since), rec["id"]), None)

    # -- companies (P-7) ------------------------------------------------------------------
    def _company(self, t: AppTxn, name: str) -> dict:
        comp = t.get("cu.company", name.encode())
        if comp is None:
            comp = {"id": name, "name": name, "fields": {}, "holder": None, "claimed_at": None}
            t.put("cu.company", name.encode(), comp)
        return comp

    def companies(self) -> list[dict]:
        return self.read(lambda t: [v for _, v in t.scan("cu.company")])

    def update_company(self, t: AppTxn, cid: str, fields: dict) -> dict:
        comp = t.get("cu.company", cid.encode()) if isinstance(cid, str) and 0 < len(cid) <= 100 else None
        if comp is None:
            raise NotFoundError(f"no company {cid}")
        s = self.settings_in(t)
        comp["fields"] = {**comp.get("fields", {}), **rules.check_company(s, fields)}
        spec = s.get("company_fields") or rules.default_settings()["company_fields"]
        missing = [k for k, f in spec.items() if f["required"] and k != "name" and not comp["fields"].get(k)]
        if missing:
            raise InputError(f"required company field(s) missing: {', '.join(missing)}")
        t.put("cu.company", cid.encode(), comp)
        return comp

    # -- opportunities (P-8) --------------------------------------------------------------------
    def add_opportunity(self, t: AppTxn, cid: str, name: str, amount: int, by: str) -> dict:
        rec = self.get(t, cid)
        if not isinstance(name, str) or not 0 < len(name) <= 100:
            raise InputError("name: 1–100 characters")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= 10**12:
            raise InputError("amount: cents, 0 … 10^12")
        s = self.settings_in(t)
        now = self.clock.now_ms()
        oid = _id("op")
        opp = {"id": oid, "customer": cid, "name": name, "amount": amount, "stage": s["stages"][0], "owner":
               rec["owner"], "created": now, "by": by, "history": [{"at": now, "stage": s["stages"][0], "by": by}]}
        t.put("cu.opp", oid.encode(), opp)
        self._touch(t, rec, "last_opp", "cu.byo", now)
        self._log(rec, "opportunity", by, at=now, opportunity=oid)
        t.put("cu.cust", cid.encode(), rec)
        if rec.get("company"):  # a converted company keeps its contacts (P-6)
            comp = self._company(t, rec["company"])
            comp["converted"] = True
            t.put("cu.company", rec["company"].encode(), comp)
        return opp

    def set_stage(self, t: AppTxn, oid: str, stage: str, by: str) -> dict:
        opp = t.get("cu.opp", oid.encode()) if isinstance(oid, str) and len(oid) <= 40 else None
        if opp is None:
            raise NotFoundError(f"no opportunity {oid}")
        s = self.settings_in(t)
        if stage not in s["stages"]:
            raise InputError(f"stage: one of {', '.join(s['stages'])}")
        if opp["stage"] in (rules.WON, rules.LOST) and stage != opp["stage"] and not s["stage_reopen"]:
            raise ConflictError(f"P-8: a {opp['stage']} opportunity does not change stage (the re-edit switch "
                                "is off)")
        opp["stage"] = stage
        opp["history"].append({"at": self.clock.now_ms(), "stage": stage, "by": by})
        t.put("cu.opp", oid.encode(), opp)
        return opp

    def opportunities(self, owners: set[str] | None) -> dict[str, list[dict]]:
        def fn(t):
            by_stage = {st: [] for st in self.settings_in(t)["stages"]}
            for _, o in t.scan("cu.opp"):
                if owners is None or o["owner"] in owners:
                    by_stage.setdefault(o["stage"], []).append(o)
            return by_stage
        return self.read(fn)

    # -- pools (P-1 … P-3) -------------------------------------------------------------------
    def add_pool(self, t: AppTxn, doc: dict) -> dict:
        pid = _id("pl")
        pool = self._check_pool({"id": pid, "created": self.clock.now_ms()}, doc)
        t.put("cu.pool", pid.encode(), pool)
        return pool

    def update_pool(self, t: AppTxn, pid: str, doc: dict) -> dict:
        pool = self.pool(t, pid)
        pool = self._check_pool(pool, doc)
        t.put("cu.pool", pid.encode(), pool)
        return pool

    @staticmethod
    def _check_pool(pool: dict, doc: dict) -> dict:
        if not isinstance(doc, dict):
            raise InputError("a pool: a JSON object")
        unknown = set(doc) - {"name", "admins", "members", "rule", "hold_cap", "daily_cap", "recycle_no_contact_s",
                              "recycle_no_opportunity_s", "dedup", "prospect"}
        if unknown:
            raise InputError(f"unknown pool field(s): {', '.join(sorted(unknown))}")
        out = {"name": "", "admins": [], "members": [], "rule": "claim", "hold_cap": None, "daily_cap": None,
               "recycle_no_contact_s": None, "recycle_no_opportunity_s": None, "dedup": True, "prospect": False,
               **pool}
        for k, v in doc.items():
            if k == "name":
                if not isinstance(v, str) or not 0 < len(v.strip()) <= 50:
                    raise InputError("name: 1–50 characters")
                out[k] = v.strip()
            elif k in ("admins", "members"):
                if not isinstance(v, list) or len(v) > 10_000:
                    raise InputError(f"{k}: a list of WeCom userids")
                out[k] = sorted({_member(x, k) for x in v})
            elif k == "rule":
                if v not in POOL_RULES:
                    raise InputError("rule (P-1): claim, assign or both")
                out[k] = v
            elif k in ("hold_cap", "daily_cap"):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1_000_000):
                    raise InputError(f"{k} (P-2): null (none) or 1 … 1,000,000")
                out[k] = v
            elif k in ("recycle_no_contact_s", "recycle_no_opportunity_s"):
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 60 <= v <= 3650 * 86400):
                    raise InputError(f"{k} (P-3): null (never) or 60 s … 10 years")
                out[k] = v
            elif k in ("dedup", "prospect"):
                if not isinstance(v, bool):
                    raise InputError(f"{k}: true or false")
                out[k] = v
        if not out["name"]:
            raise InputError("name: 1–50 characters")
        return out

    def pool(self, t: AppTxn, pid: str) -> dict:
        pool = t.get("cu.pool", pid.encode()) if isinstance(pid, str) and 0 < len(pid) <= 40 else None
        if pool is None:
            raise NotFoundError(f"no pool {pid}")
        return pool

    def pools(self, member: str | None) -> list[dict]:
        """Every pool (``member`` None) or the pools ``member`` belongs to or runs, with counts."""
        def fn(t):
            out = []
            for _, p in t.scan("cu.pool"):
                if member is not None and member not in p["members"] and member not in p["admins"]:
                    continue
                unclaimed = sum(1 for _ in t.scan("cu.inpool", app_key(p["id"]) + b"\0", values=False))
                mine = (t.get("cu.holdn", app_key(p["id"], member)) or 0) if member else None
                out.append({**p, "unclaimed": unclaimed, "held_by_me": mine})
            return out
        return self.read(fn)

    def pool_customers(self, pid: str, limit: int = 200, after: str | None = None) -> list[dict]:
        def fn(t):
            self.pool(t, pid)
            head = app_key(pid) + b"\0"
            start = head + after.encode() + b"\0" if after else None
            out = []
            for key, _ in t.scan("cu.inpool", head, start=start, values=False, limit=limit):
                rec = t.get("cu.cust", key[len(head):])
                out.append({k: rec.get(k) for k in ("id", "name", "status", "source", "tags", "company", "created")}
                           | {"phone": rec["phone"][:3] + "****" + rec["phone"][-4:]})
            return out
        return self.read(fn)

    def claim(self, t: AppTxn, pid: str, member: str, customers: list, *, admin_assign: bool = False,
              by: str | None = None) -> dict:
        """Members claim (or an admin assigns) customers of a pool. Each is checked and, when
        it passes, reserved in this transaction: in the pool (``not_in_pool``), the pool's rule
        (P-1), the member's holding cap and daily claim cap (P-2), the prospecting seat's caps and
        the lead package (P-5), one member per company (P-7). Refusals name their rule."""
        pool = self.pool(t, pid)
        _member(member)
        if not isinstance(customers, list) or not 1 <= len(customers) <= 1000:
            raise InputError("customers: 1 to 1,000 customer ids")
        now = self.clock.now_ms()
        day = self.day(now)
        s = self.settings_in(t)
        claimed, refused = [], []

        def refuse(c, rule, why):
            refused.append({"customer": c, "rule": rule, "reason": why})
        if admin_assign:
            if pool["rule"] == "claim":
                return {"claimed": [], "refused": [{"customer": c, "rule": "P-1", "reason": "this pool's rule is "
                                                    "member claim: admins do not assign"} for c in customers]}
            if member not in pool["members"]:
                return {"claimed": [], "refused": [{"customer": c, "rule": "P-1", "reason": f"{member} is not a "
                                                    "member of the pool"} for c in customers]}
        elif pool["rule"] == "assign":
            return {"claimed": [], "refused": [{"customer": c, "rule": "P-1", "reason": "this pool's rule is admin "
                                                "assign: members do not claim"} for c in customers]}
        elif member not in pool["members"]:
            return {"claimed": [], "refused": [{"customer": c, "rule": "P-1", "reason": "you are not a member of "
                                                "this pool"} for c in customers]}
        hkey = app_key(pid, member)
        held = t.get("cu.holdn", hkey) or 0
        dkey = app_key(pid, member, day)
        today = t.get("cu.claimday", dkey) or 0
        seat = t.get("cu.pseat", member.encode()) if pool["prospect"] else None
        pd = t.get("cu.pday", app_key(member, day)) or 0 if pool["prospect"] else 0
        pm = t.get("cu.pmonth", app_key(member, day[:7])) or 0 if pool["prospect"] else 0
        leads = s["lead_package"]
        seen = set()
        for c in customers:
            if not isinstance(c, str) or not 0 < len(c) <= 40 or c in seen:
                refuse(c, "P-1", "not a customer id, or named twice")
                continue
            seen.add(c)
            if not t.has("cu.inpool", app_key(pid, c)):
                refuse(c, "not_in_pool", "not an unclaimed customer of this pool")
                continue
            caps_apply = pool["rule"] in ("claim", "both")  # P-2: only for rules that let members claim
            if caps_apply and pool["hold_cap"] is not None and held >= pool["hold_cap"]:
                refuse(c, "P-2", f"holding cap {pool['hold_cap']} reached")
                continue
            if not admin_assign and pool["daily_cap"] is not None and today >= pool["daily_cap"]:
                refuse(c, "P-2", f"daily claim cap {pool['daily_cap']} reached")
                continue
            if pool["prospect"]:
                if seat is None:
                    refuse(c, "P-5", "no prospecting seat")
                    continue
                if pd >= seat["daily_cap"]:
                    refuse(c, "P-5", f"prospecting daily cap {seat['daily_cap']} reached")
                    continue
                if pm >= seat["monthly_cap"]:
                    refuse(c, "P-5", f"prospecting monthly cap {seat['monthly_cap']} reached")
                    continue
                if seat["on"] and leads <= 0:
                    refuse(c, "P-5", "the lead package is used up")
                    continue
            rec = t.get("cu.cust", c.encode())
            comp = None
            if rec.get("company") and s["protection"]:
                comp = self._company(t, rec["company"])
                if comp["holder"] not in (None, member):
                    refuse(c, "P-7", f"the company's contacts are held by {comp['holder']}")
                    continue
            # reserve
            t.delete("cu.inpool", app_key(pid, c))
            t.put("cu.held", app_key(pid, member, c), now)
            held += 1
            if not admin_assign:
                today += 1
            if pool["prospect"]:
                pd += 1
                pm += 1
                if seat["on"]:
                    leads -= 1
            if comp is not None:
                comp["holder"], comp["claimed_at"] = member, comp["claimed_at"] or now
                t.put("cu.company", comp["id"].encode(), comp)
            if pool["prospect"] and rec.get("company") and not t.has("cu.pcomp", app_key(member, rec["company"])):
                t.put("cu.pcomp", app_key(member, rec["company"]), now)  # P-6's clock for this company
            rec["owner"], rec["held_since"] = member, now
            for field, table in (("last_contact", "cu.byc"), ("last_opp", "cu.byo")):
                t.put(table, app_key(pid, max(rec.get(field) or 0, now), c), None)
            self._log(rec, "assigned" if admin_assign else "claimed", by or member, at=now, pool=pid, owner=member)
            t.put("cu.cust", c.encode(), rec)
            claimed.append(c)
        if claimed:
            t.put("cu.holdn", hkey, held)
            if today:
                t.put("cu.claimday", dkey, today)
            if pool["prospect"]:
                t.put("cu.pday", app_key(member, day), pd)
                t.put("cu.pmonth", app_key(member, day[:7]), pm)
                if leads != s["lead_package"]:
                    s["lead_package"] = leads
                    t.put("cu.settings", b"", s)
        return {"claimed": claimed, "refused": refused}

    def release(self, t: AppTxn, pid: str, cid: str, reason: str, by: str | None) -> bool:
        """A held customer back to its pool (returned by the member, recycled, released)."""
        rec = t.get("cu.cust", cid.encode())
        if rec is None or rec["pool"] != pid or rec["owner"] is None:
            return False
        member = rec["owner"]
        since = rec["held_since"] or 0
        t.delete("cu.held", app_key(pid, member, cid))
        n = t.incr("cu.holdn", app_key(pid, member), -1)
        if n < 0:
            raise AssertionError("a holding count below zero")
        for field, table in (("last_contact", "cu.byc"), ("last_opp", "cu.byo")):
            t.delete(table, app_key(pid, max(rec.get(field) or 0, since), cid))
        t.put("cu.inpool", app_key(pid, cid), None)
        rec["owner"], rec["held_since"] = None, None
        self._log(rec, "returned", by, at=self.clock.now_ms(), pool=pid, reason=reason, owner=member)
        t.put("cu.cust", cid.encode(), rec)
        if rec.get("company"):
            comp = t.get("cu.company", rec["company"].encode())
            if comp is not None and comp["holder"] == member and not self._holds_company(t, pid, member,
                                                                                         rec["company"]):
                comp["holder"], comp["claimed_at"] = None, None
                t.put("cu.company", rec["company"].encode(), comp)
        return True

    def _holds_company(self, t: AppTxn, pid: str, member: str, company: str) -> bool:
        head = app_key(pid, member) + b"\0"
        for key, _ in t.scan("cu.held", head, values=False):
            r = t.get("cu.cust", key[len(head):])
            if r is not None and r.get("company") == company:
                return True
        return False

    def give_back(self, t: AppTxn, pid: str, member: str, customers: list) -> dict:
        """The member returns customers to the pool."""
        self.pool(t, pid)
        done, refused = [], []
        for c in customers if isinstance(customers, list) else []:
            rec = t.get("cu.cust", c.encode()) if isinstance(c, str) and len(c) <= 40 else None
            if rec is None or rec["pool"] != pid or rec["owner"] != member:
                refused.append({"customer": c, "rule": "P-1", "reason": "not a customer you hold from this pool"})
            else:
                self.release(t, pid, c, "returned by the member", member)
                done.append(c)
        return {"returned": done, "refused": refused}

    def recycle(self, t: AppTxn, limit: int = 5000) -> list[dict]:
        """P-3 and P-6: held customers whose last contact (a) or last new opportunity (b) is
        older than the pool's setting go back to the pool, each with its reason; a prospecting
        company not converted within the release time is released whole. At most ``limit``
        per call (the scheduler calls again)."""
        now = self.clock.now_ms()
        out = []
        for _, pool in list(t.scan("cu.pool")):
            pid = pool["id"]
            for _field, table, setting, reason in (
                    ("last_contact", "cu.byc", "recycle_no_contact_s", "no contact record"),
                    ("last_opp", "cu.byo", "recycle_no_opportunity_s", "no new opportunity")):
                x = pool.get(setting)
                if x is None:
                    continue
                head = app_key(pid) + b"\0"
                cutoff = now - x * 1000
                for key, _ in list(t.scan(table, head, values=False, limit=limit - len(out))):
                    at = int.from_bytes(key[len(head):len(head) + 8], "big")
                    if at > cutoff:
                        break
                    cid = key[len(head) + 9:].decode()
                    if table == "cu.byc":
                        rec = t.get("cu.cust", cid.encode())
                        latest = self._latest_contact(t, rec)
                        if latest > cutoff:  # a call or a chat since: its clock moves, no recycling
                            self._touch(t, rec, "last_contact", "cu.byc", latest)
                            t.put("cu.cust", cid.encode(), rec)
                            continue
                    if self.release(t, pid, cid, f"P-3: {reason} for {x} s", None):
                        out.append({"customer": cid, "pool": pid, "rule": "P-3", "reason": f"{reason} for {x} s",
                                    "since": at})
                    if len(out) >= limit:
                        return out
        rel = self.settings_in(t).get("prospect_release_s")
        if rel:
            for key, at in list(t.scan("cu.pcomp")):
                member, company = key.decode().split("\0", 1)
                comp = t.get("cu.company", company.encode()) or {}
                if comp.get("converted"):
                    t.delete("cu.pcomp", key)  # converted: the member keeps the company's contacts
                    continue
                if now - at < rel * 1000:
                    continue
                t.delete("cu.pcomp", key)
                for _, pool in list(t.scan("cu.pool")):
                    if not pool["prospect"]:
                        continue
                    head = app_key(pool["id"], member) + b"\0"
                    for hkey, _ in list(t.scan("cu.held", head, values=False)):
                        cid = hkey[len(head):].decode()
                        r = t.get("cu.cust", cid.encode())
                        if r.get("company") == company and self.release(
                                t, pool["id"], cid, f"P-6: not converted within {rel} s", None):
                            out.append({"customer": cid, "pool": pool["id"], "rule": "P-6",
                                        "reason": f"company {company} not converted within {rel} s"})
        return out

    # -- spreadsheet import (P-4) --------------------------------------------------------------
    def import_rows(self, t: AppTxn, pid: str, cands: list[dict], report: list[dict], by: str,
                    filename: str) -> dict:
        """The planned rows into the pool in this one transaction; with the pool's de-dup on,
        a phone that is already a customer is a duplicate of that customer."""
        pool = self.pool(t, pid)
        out = list(report)
        accepted = 0
        for c in cands:
            f = c["fields"]
            d = self.digest(f["phone"])
            existing = t.get("cu.phone", d)
            if existing is not None and pool["dedup"]:
                out.append({"row": c["row"], "status": "duplicate", "customer": existing,
                            "reason": f"phone of customer {existing}"})
                continue
            rec = self.add_customer(t, f, by=by, pool=pid, source="表格导入", checked=True,
                                    allow_same_phone=not pool["dedup"])
            out.append({"row": c["row"], "status": "accepted", "customer": rec["id"]})
            accepted += 1
        out.sort(key=lambda r: r["row"])
        iid = _id("im")
        doc = {"id": iid, "pool": pid, "file": filename[:200], "by": by, "at": self.clock.now_ms(),
               "rows": len(out), "accepted": accepted,
               "duplicates": sum(r["status"] == "duplicate" for r in out),
               "invalid": sum(r["status"] == "invalid" for r in out), "report": out}
        t.put("cu.import", iid.encode(), doc)
        return doc

    def import_report(self, iid: str) -> dict:
        doc = self.read(lambda t: t.get("cu.import", iid.encode())) if isinstance(iid, str) and len(iid) <= 40 \
            else None
        if doc is None:
            raise NotFoundError(f"no import {iid}")
        return doc

    # -- prospecting seats (P-5) ----------------------------------------------------------------
    def set_seats(self, t: AppTxn, seats: list) -> list[dict]:
        if not isinstance(seats, list) or not 1 <= len(seats) <= 1000:
            raise InputError("seats: 1 to 1,000 entries")
        out = []
        for s in seats:
            if not isinstance(s, dict) or set(s) - {"member", "on", "daily_cap", "monthly_cap"}:
                raise InputError("each seat: {member, on, daily_cap, monthly_cap}")
            m = _member(s.get("member"))
            cur = t.get("cu.pseat", m.encode()) or {"member": m, "on": False, "daily_cap": 1000, "monthly_cap": 10000}
            if "on" in s:
                if not isinstance(s["on"], bool):
                    raise InputError("on: true or false")
                cur["on"] = s["on"]
            for k, hi in (("daily_cap", 1000), ("monthly_cap", 10000)):
                if k in s:
                    v = s[k]
                    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                        raise InputError(f"{k} (P-5): 0 … {hi}")
                    cur[k] = v
            t.put("cu.pseat", m.encode(), cur)
            out.append(cur)
        return out

    def seats(self) -> list[dict]:
        return self.read(lambda t: [v for _, v in t.scan("cu.pseat")])
