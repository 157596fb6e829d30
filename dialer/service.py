"""The dialer's state and every decision on it. Each public method is one transaction on
the store's SCRM tables; the ones that decide (``next_call``, ``dial``, ``report``,
``release_expired``, seat changes) are written as functions of an :class:`AppTxn` so that
the server runs many of them in one synced commit (``GroupCommit``) — each still atomic, and
atomic across processes, because LMDB admits one writer at a time.

Tables (all under the store's ``app`` table, values sealed):

- ``dl.settings``  → the settings document (``dialer.rules.Settings``)
- ``dl.dev``       device id → device (name, SIM ids, department, pop-up switch, rotation
                   state: current SIM and consecutive calls, end of the last call, open reservation)
- ``dl.devtok``    SHA-256 of a device token → device id
- ``dl.sim``       SIM id → SIM (device, slot, number, carrier, first-use day, state, counters)
- ``dl.simday``    SIM id, day → dials reserved that day (D-3)
- ``dl.numday``    number digest, day → dials reserved that day (D-5, across campaigns: D-11)
- ``dl.seat``      employee → seat (device, outbound permission) (D-6); ``dl.lic`` → seats with permission
- ``dl.camp``      campaign id → campaign; ``dl.target`` campaign, index → number and attempts;
                   ``dl.queue`` (9 - priority, due, campaign, index) → what to call next;
                   ``dl.qpaused`` (campaign, queue key) → the entries of a paused campaign
- ``dl.dnc``       number digest → entry (D-11)
- ``dl.resv``      reservation id → reservation; ``dl.resvexp`` (expiry, id) → for the sweep
- ``dl.call``      (start, uid) → call record; ``dl.callid`` (device, device call id) → its key
                   (reports are idempotent); ``dl.callnum`` (number digest, start, uid) → key: the
                   D-7 search by number (the others walk the records newest first)
- ``dl.roll``      (day, employee) → roll-up counters (D-8), kept with each record
- ``dl.lastcall``  number digest → the latest call with it (a contact record for P-3)
- ``dl.contact``   number digest → the caller's record for the pop-up (creator, group)
- ``dl.popup``     seq → a pop-up event (who gets it); ``dl.popseq`` → the last seq

A day is the tenant's calendar day in its time zone (D-12). Counters are reserved at the
dial: a reservation that times out keeps its count (the phone may have dialled: fail closed);
a device that reports ``not_dialled`` gives it back.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import date, timedelta

from dialer import rules
from dialer.rules import Settings
from scrm_fast.errors import ConflictError, InputError, NotFoundError
from scrm_fast.storage import AppTxn, ArchiveStore, app_key

REASON_RULE = {
    "no_licence": "D-6", "outside_hours": "D-12", "interval": "D-4", "sim_daily_cap": "D-3",
    "no_sim": "D-3", "number_daily_cap": "D-5", "dnc": "D-11", "nothing_to_call": "D-10",
    "device_disabled": "D-10", "busy": "D-10",
}
OUTCOMES = ("answered", "no_answer", "busy", "rejected", "failed", "not_dialled")
MAX_SCAN = 400  # queue entries one decision may look at before it answers nothing_to_call


NotFound = NotFoundError
Conflict = ConflictError


def _refusal(reason: str, detail: str, retry_at: int | None = None) -> dict:
    return {"refused": {"reason": reason, "rule": REASON_RULE[reason], "detail": detail, "retry_at": retry_at}}


def _uid() -> str:
    return secrets.token_hex(8)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Dialer:
    """The dialer of one tenant, over its store. ``clock`` has ``now_ms()``."""

    def __init__(self, store: ArchiveStore, clock) -> None:
        self.store = store
        self.clock = clock

    # -- helpers --------------------------------------------------------------------------
    def digest(self, number: str) -> bytes:
        return self.store.app_digest("phone", number)

    def run(self, fn: Callable[[AppTxn], object]) -> object:
        """One write transaction in this thread (the server batches through GroupCommit)."""
        with self.store.app_write() as t:
            return fn(t)

    def read(self, fn: Callable[[AppTxn], object]) -> object:
        with self.store.app_read() as t:
            return fn(t)

    _parsed: tuple[dict, Settings] | None = None

    def settings_in(self, t: AppTxn) -> Settings:
        doc = t.get("dl.settings", b"")
        if not isinstance(doc, dict):
            return Settings()
        cached = self._parsed
        if cached is not None and cached[0] == doc:  # parsed once per change, not per decision
            return cached[1]
        s = rules.parse_settings(doc)
        self._parsed = (doc, s)
        return s

    def settings(self) -> Settings:
        return self.read(self.settings_in)

    # -- settings -------------------------------------------------------------------------
    def update_settings(self, t: AppTxn, doc: dict) -> dict:
        cur = self.settings_in(t)
        new = rules.parse_settings(doc, cur)
        used = t.get("dl.lic", b"") or 0
        if new.licences < used:
            raise Conflict(f"D-6: {used} seats have outbound permission; licences cannot go below that "
                           "(turn seats off first)")
        t.put("dl.settings", b"", new.to_doc())
        return {"settings": new.to_doc(), "warnings": new.warnings(), "licences_used": used}

    # -- devices and SIMs ------------------------------------------------------------------
    def add_device(self, t: AppTxn, name: str, sims: list[dict], department: int | None = None,
                   popup: bool = True) -> dict:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise InputError("name: 1–100 characters")
        if not isinstance(sims, list) or not 1 <= len(sims) <= 16:
            raise InputError("sims: 1 to 16 SIM cards")
        dev_id = "d" + _uid()
        token = "dev_" + secrets.token_urlsafe(24)
        sim_ids = []
        for slot, s in enumerate(sims):
            if not isinstance(s, dict):
                raise InputError("each SIM: an object with number and carrier")
            number = rules.normalise_number(s.get("number"))
            carrier = s.get("carrier", "")
            if not isinstance(carrier, str) or len(carrier) > 40:
                raise InputError("carrier: up to 40 characters")
            first = s.get("first_use")
            if first is not None:
                try:
                    first = date.fromisoformat(first).isoformat()
                except (TypeError, ValueError):
                    raise InputError("first_use: a day YYYY-MM-DD") from None
            sid = f"{dev_id}.{slot}"
            t.put("dl.sim", sid.encode(), {"id": sid, "device": dev_id, "slot": slot, "number": number,
                                            "carrier": carrier, "first_use": first, "state": "active",
                                            "calls": 0, "connected": 0, "failures": 0})
            sim_ids.append(sid)
        dev = {"id": dev_id, "name": name.strip(), "sims": sim_ids, "department": department, "popup": bool(popup),
               "state": "active", "seat": None, "current": None, "consecutive": 0, "last_end": None, "resv": None,
               "seen": None, "created": self.clock.now_ms()}
        t.put("dl.dev", dev_id.encode(), dev)
        t.put("dl.devtok", token_digest(token), dev_id)
        return {**self._device_view(t, dev), "token": token}

    def device_of_token(self, t: AppTxn, token: str) -> dict | None:
        dev_id = t.get("dl.devtok", token_digest(token))
        return t.get("dl.dev", dev_id.encode()) if dev_id else None

    def set_device(self, t: AppTxn, dev_id: str, state: str | None, popup: bool | None) -> dict:
        dev = t.get("dl.dev", dev_id.encode())
        if dev is None:
            raise NotFound(f"no device {dev_id}")
        if state is not None:
            if state not in ("active", "disabled"):
                raise InputError("state: active or disabled")
            dev["state"] = state
        if popup is not None:
            dev["popup"] = bool(popup)
        t.put("dl.dev", dev_id.encode(), dev)
        return self._device_view(t, dev)

    def set_sim(self, t: AppTxn, sim_id: str, state: str) -> dict:
        if state not in ("active", "disabled", "blocked"):
            raise InputError("state: active, disabled or blocked")
        sim = t.get("dl.sim", sim_id.encode())
        if sim is None:
            raise NotFound(f"no SIM {sim_id}")
        sim["state"] = state
        t.put("dl.sim", sim_id.encode(), sim)
        return sim

    def _device_view(self, t: AppTxn, dev: dict) -> dict:
        s = self.settings_in(t)
        today = rules.day_of(self.clock.now_ms(), s.tz)
        sims = []
        for sid in dev["sims"]:
            sim = t.get("dl.sim", sid.encode())
            used = t.get("dl.simday", app_key(sid, today)) or 0
            cap = s.first_day_cap if sim["first_use"] in (None, today) else s.sim_daily_cap
            sims.append({**sim, "number": rules.mask_number(sim["number"]), "today": used, "cap_today": cap})
        return {k: dev.get(k) for k in ("id", "name", "department", "popup", "state", "seat", "consecutive", "last_end",
                                    "resv", "seen", "created")} | {"current": dev["current"], "sims": sims}

    def devices(self) -> list[dict]:
        def fn(t):
            return [self._device_view(t, d) for _, d in t.scan("dl.dev")]
        return self.read(fn)

    # -- seats and licences (D-6) -----------------------------------------------------------
    def set_seat(self, t: AppTxn, employee: str, device: str | None, outbound: bool,
                 department: int | None = None) -> dict:
        if not isinstance(employee, str) or not employee or len(employee) > 64 or "\0" in employee:
            raise InputError("employee: a WeCom userid")
        if device is not None and t.get("dl.dev", device.encode()) is None:
            raise NotFound(f"no device {device}")
        s = self.settings_in(t)
        cur = t.get("dl.seat", employee.encode())
        was = bool(cur and cur["outbound"])
        used = t.get("dl.lic", b"") or 0
        if outbound and not was:
            if used >= s.licences:
                raise Conflict(f"D-6: all {s.licences} licences are in use; buy more or turn a seat off")
            t.put("dl.lic", b"", used + 1)
        elif was and not outbound:
            t.put("dl.lic", b"", used - 1)
        if cur and cur["device"] and cur["device"] != device:  # the seat leaves its old device
            old = t.get("dl.dev", cur["device"].encode())
            if old is not None and old.get("seat") == employee:
                old["seat"] = None
                t.put("dl.dev", cur["device"].encode(), old)
        if device is not None:  # one seat per device: the device leaves its previous seat
            dev = t.get("dl.dev", device.encode())
            prev = dev.get("seat")
            if prev and prev != employee:
                other = t.get("dl.seat", prev.encode())
                if other is not None:
                    other["device"] = None
                    t.put("dl.seat", prev.encode(), other)
            dev["seat"] = employee
            t.put("dl.dev", device.encode(), dev)
        seat = {"employee": employee, "device": device, "outbound": bool(outbound), "department": department}
        t.put("dl.seat", employee.encode(), seat)
        return seat

    def seats(self) -> dict:
        def fn(t):
            s = self.settings_in(t)
            return {"seats": [v for _, v in t.scan("dl.seat")], "licences": s.licences,
                    "used": t.get("dl.lic", b"") or 0}
        return self.read(fn)

    @staticmethod
    def seat_of_device(t: AppTxn, dev: dict | None) -> dict | None:
        emp = (dev or {}).get("seat")
        return t.get("dl.seat", emp.encode()) if emp else None

    # -- campaigns and do-not-call --------------------------------------------------------
    def add_campaign(self, t: AppTxn, name: str, numbers: list, priority: int = 5, retries: int = 1,
                     retry_spacing_s: int = 3600) -> dict:
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise InputError("name: 1–100 characters")
        for k, v, lo, hi in (("priority", priority, 0, 9), ("retries", retries, 0, 10),
                             ("retry_spacing_s", retry_spacing_s, 0, 30 * 86400)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"{k}: an integer from {lo} to {hi}")
        if not isinstance(numbers, list) or not 1 <= len(numbers) <= 100_000:
            raise InputError("numbers: 1 to 100,000 entries")
        cid = "c" + _uid()
        now = self.clock.now_ms()
        seen: set[str] = set()
        n = 0
        for item in numbers:
            if isinstance(item, dict):
                number, customer = item.get("number"), item.get("customer")
            else:
                number, customer = item, None
            number = rules.normalise_number(number)
            if number in seen:
                continue
            seen.add(number)
            t.put("dl.target", app_key(cid, n), {"number": number, "customer": customer, "attempts": 0,
                                                 "state": "queued", "due": now, "last": None})
            t.put("dl.queue", app_key(9 - priority, now, cid, n), None)
            n += 1
        camp = {"id": cid, "name": name.strip(), "priority": priority, "retries": retries,
                "retry_spacing_s": retry_spacing_s, "state": "active", "total": n, "created": now}
        t.put("dl.camp", cid.encode(), camp)
        return camp

    def campaigns(self) -> list[dict]:
        def fn(t):
            out = []
            for _, c in t.scan("dl.camp"):
                states: dict[str, int] = {}
                for _, tg in t.scan("dl.target", app_key(c["id"]) + b"\0"):
                    states[tg["state"]] = states.get(tg["state"], 0) + 1
                out.append({**c, "targets": states})
            return out
        return self.read(fn)

    def set_campaign_state(self, t: AppTxn, cid: str, state: str) -> dict:
        """Pausing moves the campaign's queue entries aside (``dl.qpaused``), resuming puts
        them back: the scheduler never walks over a paused campaign's numbers."""
        if state not in ("active", "paused"):
            raise InputError("state: active or paused")
        camp = t.get("dl.camp", cid.encode())
        if camp is None:
            raise NotFound(f"no campaign {cid}")
        if camp["state"] != state:
            prio = app_key(9 - camp["priority"]) + b"\0"
            if state == "paused":
                for key, _ in list(t.scan("dl.queue", prio, values=False)):
                    if key[18:-9].decode() == cid:
                        t.delete("dl.queue", key)
                        t.put("dl.qpaused", app_key(cid) + b"\0" + key, None)
            else:
                head = app_key(cid) + b"\0"
                for key, _ in list(t.scan("dl.qpaused", head, values=False)):
                    t.delete("dl.qpaused", key)
                    t.put("dl.queue", key[len(head):], None)
            camp["state"] = state
            t.put("dl.camp", cid.encode(), camp)
        return camp

    def add_dnc(self, t: AppTxn, number: str, reason: str = "", by: str = "") -> dict:
        n = rules.normalise_number(number)
        entry = {"number": n, "reason": str(reason)[:200], "by": by, "added": self.clock.now_ms()}
        t.put("dl.dnc", self.digest(n), entry)
        return {**entry, "number": rules.mask_number(n)}

    def remove_dnc(self, t: AppTxn, number: str) -> bool:
        return t.delete("dl.dnc", self.digest(rules.normalise_number(number)))

    def dnc(self) -> list[dict]:
        return self.read(lambda t: [{**v, "number": rules.mask_number(v["number"])} for _, v in t.scan("dl.dnc")])

    # -- the pop-up (D-9) -------------------------------------------------------------------
    def add_contact(self, t: AppTxn, number: str, name: str, customer: str | None, creator: str,
                    creator_group: int | None) -> dict:
        n = rules.normalise_number(number)
        rec = {"number": n, "name": name, "customer": customer, "creator": creator, "creator_group": creator_group,
               "created": self.clock.now_ms()}
        t.put("dl.contact", self.digest(n), rec)
        return {**rec, "number": rules.mask_number(n)}

    def ringing(self, t: AppTxn, dev_id: str, number: str | None, operators: list[rules.Operator],
                employees: dict[str, str | None]) -> dict:
        """An incoming call rings on device ``dev_id``: which operators' consoles show the
        caller's record, by the D-9 table; stored as a pop-up event every server process serves."""
        s = self.settings_in(t)
        dev = t.get("dl.dev", dev_id.encode())
        n = rules.normalise_number(number) if number else None
        contact = t.get("dl.contact", self.digest(n)) if n else None
        ch = rules.Channel(dev_id, dev.get("department"), bool(dev.get("popup")))
        rec = rules.Record(contact["creator"], contact["creator_group"]) if contact else None
        targets = []
        for op in operators:
            emp = employees.get(op.username)
            seat = t.get("dl.seat", emp.encode()) if emp else None
            op = rules.Operator(op.username, op.level, op.group, (seat or {}).get("device"), op.popup, op.sharing)
            rule = rules.pops_up(op, ch, rec, n, s.shared_records)
            if rule:
                targets.append({"operator": op.username, "rule": rule})
        seq = t.incr("dl.popseq", b"")
        event = {"seq": seq, "at": self.clock.now_ms(), "device": dev_id, "number": n,
                 "contact": {k: contact[k] for k in ("name", "customer", "creator")} if contact else None,
                 "targets": targets}
        t.put("dl.popup", app_key(seq), event)
        return {"seq": seq, "popups": targets, "record_found": contact is not None}

    def popup_last(self) -> int:
        return self.read(lambda t: t.get("dl.popseq", b"") or 0)

    def popups_for(self, username: str, after: int, limit: int = 100) -> tuple[list[dict], int]:
        def fn(t):
            out, last = [], after
            for _, ev in t.scan("dl.popup", start=app_key(after + 1), limit=1000):
                last = ev["seq"]
                mine = [x["rule"] for x in ev["targets"] if x["operator"] == username]
                if mine:
                    out.append({k: ev[k] for k in ("seq", "at", "device", "number", "contact")} | {"rule": mine[0]})
                    if len(out) >= limit:
                        break
            return out, last
        return self.read(fn)

    # -- the scheduler (D-10) ----------------------------------------------------------------
    def next_call(self, t: AppTxn, dev_id: str, manual: str | None = None, by: str | None = None) -> dict:
        """One answer for device ``dev_id``: its open reservation, a new one (every cap it
        touches reserved in this transaction), or a refusal with its reason and rule.
        ``manual``: a number an operator asked to dial (same checks, D-10)."""
        now = self.clock.now_ms()
        dev = t.get("dl.dev", dev_id.encode())
        if dev is None:
            raise NotFound(f"no device {dev_id}")
        dev["seen"] = now
        answer = self._decide(t, dev_id, dev, now, manual, by)
        t.put("dl.dev", dev_id.encode(), dev)  # once, whatever the answer (last seen, rotation, reservation)
        return answer

    def _decide(self, t: AppTxn, dev_id: str, dev: dict, now: int, manual: str | None, by: str | None) -> dict:
        s = self.settings_in(t)
        if dev["resv"] is not None:
            r = t.get("dl.resv", dev["resv"].encode())
            if r is not None and r["state"] == "open" and r["expires"] > now:
                if manual is not None:
                    return _refusal("busy", "the device has a call reserved; report it first")
                return {"call": self._call_view(r), "repeat": True}
            if r is not None and r["state"] == "open":
                self._expire(t, r, dev, now)
        if dev["state"] != "active":
            return _refusal("device_disabled", "the device is disabled")
        seat = self.seat_of_device(t, dev)
        if seat is None or not seat["outbound"]:
            return _refusal("no_licence", "no seat with outbound permission is linked to this device")
        if not rules.in_hours(now, s):
            return _refusal("outside_hours", f"outside calling hours ({s.timezone})", rules.next_open(now, s))
        if dev["last_end"] is not None and now < dev["last_end"] + s.interval_s * 1000:
            return _refusal("interval", f"{s.interval_s} s must pass after the last call ended",
                            dev["last_end"] + s.interval_s * 1000)
        today = rules.day_of(now, s.tz)
        sim, why = self._pick_sim(t, dev, s, today)
        if sim is None:
            return _refusal(why, "every SIM of the device is at its daily cap" if why == "sim_daily_cap"
                            else "the device has no active SIM", rules.next_midnight(now, s.tz)
                            if why == "sim_daily_cap" else None)
        if manual is not None:
            number = rules.normalise_number(manual)
            d = self.digest(number)
            if t.get("dl.dnc", d) is not None:
                return _refusal("dnc", "the number is on the do-not-call list")
            if (t.get("dl.numday", d + app_key(today)) or 0) >= s.number_daily_cap:
                return _refusal("number_daily_cap", f"the number was dialled {s.number_daily_cap} times today",
                                rules.next_midnight(now, s.tz))
            target = None
        else:
            found = self._pick_target(t, s, now, today)
            if isinstance(found, dict):
                return found
            number, d, target = found
        # reserve: every count in this one transaction
        t.incr("dl.simday", app_key(sim["id"], today))
        t.incr("dl.numday", d + app_key(today))
        if sim["first_use"] is None:
            sim["first_use"] = today
            t.put("dl.sim", sim["id"].encode(), sim)
        if dev["current"] == sim["id"]:
            dev["consecutive"] += 1
        else:
            dev["current"], dev["consecutive"] = sim["id"], 1
        rid = "r" + _uid()
        r = {"id": rid, "device": dev_id, "sim": sim["id"], "sim_slot": sim["slot"], "number": number,
             "campaign": target[0] if target else None, "target": target[1] if target else None,
             "customer": target[2] if target else None,
             "employee": seat["employee"], "department": seat.get("department"), "kind": "manual" if manual else
             "campaign", "by": by, "day": today, "at": now, "expires": now + s.reservation_timeout_s * 1000,
             "state": "open", "call": None}
        t.put("dl.resv", rid.encode(), r)
        t.put("dl.resvexp", app_key(r["expires"], rid), None)
        dev["resv"] = rid
        return {"call": self._call_view(r), "repeat": False}

    @staticmethod
    def _call_view(r: dict) -> dict:
        return {k: r[k] for k in ("id", "number", "sim", "sim_slot", "campaign", "kind", "at", "expires")}

    def _pick_sim(self, t: AppTxn, dev: dict, s: Settings, today: str) -> tuple[dict | None, str]:
        """D-2 and D-3: stay on the current SIM until ``rotate_after`` consecutive calls, then
        the least-used eligible SIM after it (slot order breaks ties); never one at its cap."""
        cur = dev["current"]
        if cur is not None and dev["consecutive"] < s.rotate_after:  # staying on the working SIM
            sim = t.get("dl.sim", cur.encode())
            if sim is not None and sim["state"] == "active":
                cap = s.first_day_cap if sim["first_use"] in (None, today) else s.sim_daily_cap
                if (t.get("dl.simday", app_key(cur, today)) or 0) < cap:
                    return sim, ""
        eligible = []
        for pos, sid in enumerate(dev["sims"]):
            sim = t.get("dl.sim", sid.encode())
            if sim is None or sim["state"] != "active":
                continue
            used = t.get("dl.simday", app_key(sid, today)) or 0
            cap = s.first_day_cap if sim["first_use"] in (None, today) else s.sim_daily_cap
            if used < cap:
                eligible.append((pos, used, sim))
        if not eligible:
            any_active = any((t.get("dl.sim", sid.encode()) or {}).get("state") == "active" for sid in dev["sims"])
            return None, "sim_daily_cap" if any_active else "no_sim"
        n = len(dev["sims"])
        cur_pos = dev["sims"].index(cur) if cur in dev["sims"] else -1
        others = [e for e in eligible if e[2]["id"] != cur] or eligible
        # least used today; then the first slot after the current one
        best = min(others, key=lambda e: (e[1], (e[0] - cur_pos - 1) % n))
        return best[2], ""

    def _pick_target(self, t: AppTxn, s: Settings, now: int, today: str):
        """The next due number of the active campaigns, highest priority first, earliest due
        first (one cursor: at the first entry not yet due it jumps to the next priority); a
        number on the DNC list leaves its campaign, one at its daily cap waits for the next day.
        A paused campaign has no entries here (``set_campaign_state`` moves them aside)."""
        looked = 0
        tomorrow = rules.next_midnight(now, s.tz)
        moves = []
        start: bytes | None = None
        try:
            while True:
                jumped = False
                for key, _ in t.scan("dl.queue", start=start, values=False):
                    looked += 1
                    if looked > MAX_SCAN:
                        return _refusal("nothing_to_call", f"no dialable number among the next {MAX_SCAN} due")
                    prio = int.from_bytes(key[:8], "big")
                    if int.from_bytes(key[9:17], "big") > now:  # nothing more due at this priority
                        if prio < 9:
                            start, jumped = app_key(prio + 1), True
                        break
                    cid, idx = key[18:-9].decode(), int.from_bytes(key[-8:], "big")
                    tkey = app_key(cid, idx)
                    tg = t.get("dl.target", tkey)
                    d = self.digest(tg["number"])
                    if t.get("dl.dnc", d) is not None:
                        moves.append((key, None))
                        tg["state"] = "dnc"
                        t.put("dl.target", tkey, tg)
                        continue
                    if (t.get("dl.numday", d + app_key(today)) or 0) >= s.number_daily_cap:
                        moves.append((key, app_key(prio, tomorrow, cid, idx)))
                        continue
                    moves.append((key, None))
                    tg["state"] = "reserved"
                    tg["attempts"] += 1
                    t.put("dl.target", tkey, tg)
                    return tg["number"], d, (cid, idx, tg.get("customer"))
                if not jumped:
                    return _refusal("nothing_to_call", "no campaign has a number due now")
        finally:
            for old, new in moves:
                t.delete("dl.queue", old)
                if new is not None:
                    t.put("dl.queue", new, None)

    def _requeue(self, t: AppTxn, r: dict, end: int, connected: bool) -> None:
        if r["campaign"] is None:
            return
        camp = t.get("dl.camp", r["campaign"].encode())
        tkey = app_key(r["campaign"], r["target"])
        tg = t.get("dl.target", tkey)
        if camp is None or tg is None:
            return
        if connected:
            tg["state"] = "done"
        elif tg["attempts"] > camp["retries"]:
            tg["state"] = "failed"
        else:
            tg["state"] = "queued"
            tg["due"] = end + camp["retry_spacing_s"] * 1000
            key = app_key(9 - camp["priority"], tg["due"], r["campaign"], r["target"])
            if camp["state"] == "paused":
                t.put("dl.qpaused", app_key(r["campaign"]) + b"\0" + key, None)
            else:
                t.put("dl.queue", key, None)
        t.put("dl.target", tkey, tg)

    def _expire(self, t: AppTxn, r: dict, dev: dict, now: int) -> None:
        """A reservation with no call record in time: the device is free again, its counts
        stay (the phone may have dialled), the number goes back to its campaign."""
        r["state"] = "expired"
        t.put("dl.resv", r["id"].encode(), r)
        t.delete("dl.resvexp", app_key(r["expires"], r["id"]))
        if dev.get("resv") == r["id"]:
            dev["resv"] = None
            dev["last_end"] = max(dev["last_end"] or 0, r["expires"])
        self._requeue(t, r, r["expires"], False)

    def release_expired(self, t: AppTxn, limit: int = 1000) -> int:
        now = self.clock.now_ms()
        done = 0
        for key, _ in list(t.scan("dl.resvexp", values=False, limit=limit)):
            if int.from_bytes(key[:8], "big") > now:
                break
            rid = key[9:].decode()
            r = t.get("dl.resv", rid.encode())
            if r is None or r["state"] != "open":
                t.delete("dl.resvexp", key)
                continue
            dev = t.get("dl.dev", r["device"].encode())
            self._expire(t, r, dev, now)
            t.put("dl.dev", r["device"].encode(), dev)
            done += 1
        return done

    # -- call records (D-7, D-1, D-8) ---------------------------------------------------------
    def report(self, t: AppTxn, dev_id: str, doc: dict) -> dict:
        """A call record from a device: idempotent by (device, ``call_id``); late and
        out-of-order reports are accepted. Settles the reservation it names."""
        now = self.clock.now_ms()
        s = self.settings_in(t)
        call_id = doc.get("call_id")
        if not isinstance(call_id, str) or not 1 <= len(call_id) <= 64 or "\0" in call_id:
            raise InputError("call_id: the device's id of the call, 1–64 characters")
        idkey = app_key(dev_id, call_id)
        known = t.get("dl.callid", idkey)
        if known is not None:
            return {"record": self._record_view(t.get("dl.call", known)), "duplicate": True}
        direction = doc.get("direction", "out")
        if direction not in ("out", "in"):
            raise InputError("direction: out or in")
        outcome = doc.get("outcome")
        if outcome not in OUTCOMES:
            raise InputError(f"outcome: one of {', '.join(OUTCOMES)}")
        times = {}
        for k in ("started_at", "answered_at", "ended_at"):
            v = doc.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 50):
                raise InputError(f"{k}: epoch milliseconds")
            times[k] = v
        if times["started_at"] is None or times["ended_at"] is None or times["ended_at"] < times["started_at"]:
            raise InputError("started_at and ended_at are required, ended_at not before started_at")
        talk = doc.get("talk_seconds", 0)
        if isinstance(talk, bool) or not isinstance(talk, int) or not 0 <= talk <= 86400:
            raise InputError("talk_seconds: an integer from 0 to 86400")
        if talk > (times["ended_at"] - times["started_at"]) // 1000 + 1:
            raise InputError("talk_seconds is longer than the call")
        recording = doc.get("recording")
        if recording is not None and (not isinstance(recording, str) or len(recording) > 500):
            raise InputError("recording: a reference of up to 500 characters")
        dev = t.get("dl.dev", dev_id.encode())
        rid = doc.get("reservation")
        r = None
        if direction == "out":
            if rid is not None:
                if not isinstance(rid, str) or len(rid) > 40:
                    raise InputError("reservation: the id next gave")
                r = t.get("dl.resv", rid.encode())
                if r is None or r["device"] != dev_id:
                    raise NotFound(f"no reservation {rid} of this device")
                if r["state"] == "open" and r["expires"] <= now:
                    # past its time: expired, swept or not (what follows does not depend on the sweep)
                    self._expire(t, r, dev, now)
                    t.put("dl.dev", dev_id.encode(), dev)
                if r["call"] is not None:
                    raise Conflict(f"reservation {rid} was settled by call {r['call']}")
            elif doc.get("number") is None:
                raise InputError("an outbound call names its reservation (or at least its number)")
        number = rules.normalise_number(doc["number"]) if doc.get("number") is not None else (r or {}).get("number")
        if number is None:
            raise InputError("number: the other party's number")
        if r is not None and number != r["number"]:
            raise InputError("the number differs from the reservation's")
        seat = self.seat_of_device(t, dev)
        employee = r["employee"] if r else (seat or {}).get("employee")
        department = r.get("department") if r else (seat or {}).get("department")
        sim = r["sim"] if r else doc.get("sim")
        if sim is not None and (not isinstance(sim, str) or len(sim) > 40):
            raise InputError("sim: the SIM id")
        d = self.digest(number)
        if r is not None and outcome == "not_dialled":
            # the phone did not dial: the counts go back, nothing is recorded as a call
            if r["state"] == "open":
                t.incr("dl.simday", app_key(r["sim"], r["day"]), -1)
                t.incr("dl.numday", d + app_key(r["day"]), -1)
                if dev["resv"] == rid:
                    dev["resv"] = None
                    if dev["current"] == r["sim"] and dev["consecutive"] > 0:
                        dev["consecutive"] -= 1
                    t.put("dl.dev", dev_id.encode(), dev)
                t.delete("dl.resvexp", app_key(r["expires"], rid))
                tg_key = app_key(r["campaign"], r["target"]) if r["campaign"] else None
                if tg_key is not None:
                    tg = t.get("dl.target", tg_key)
                    tg["attempts"] = max(0, tg["attempts"] - 1)
                    t.put("dl.target", tg_key, tg)
                    self._requeue(t, {**r}, now, False)
            r["state"], r["call"] = "not_dialled", call_id
            t.put("dl.resv", rid.encode(), r)
            return {"record": None, "duplicate": False, "released": True}
        connected = outcome == "answered" and talk > 0
        uid = _uid()
        start = times["started_at"]
        ckey = app_key(start, uid)
        rec = {"uid": uid, "device": dev_id, "call_id": call_id, "reservation": rid, "direction": direction,
               "number": number, "sim": sim, "employee": employee, "department": department, "campaign":
               (r or {}).get("campaign"), **times, "talk_seconds": talk, "outcome": outcome, "connected": connected,
               "valid": connected and talk >= s.valid_seconds, "recording": recording, "received": now,
               "late": bool(r and r["state"] == "expired"), "unreserved": direction == "out" and r is None,
               "day": rules.day_of(start, s.tz)}
        if rec["unreserved"]:  # a call the scheduler did not give out still counts against the caps
            if sim is not None:
                t.incr("dl.simday", app_key(sim, rec["day"]))
            t.incr("dl.numday", d + app_key(rec["day"]))
        t.put("dl.call", ckey, rec)
        t.put("dl.callid", idkey, ckey)
        # every call is a contact with the number's customer: what a pool's recycle clock reads
        last = t.get("dl.lastcall", d)
        if last is None or last["at"] < start:
            t.put("dl.lastcall", d, {"at": start, "connected": connected,
                                     "customer": (r or {}).get("customer") or (last or {}).get("customer")})
        t.put("dl.callnum", d + app_key(start, uid), ckey)
        rk = app_key(rec["day"], employee or "-")  # the employee's day: what D-8 sums
        roll = t.get("dl.roll", rk) or {"calls": 0, "out": 0, "in": 0, "connected": 0, "valid": 0, "talk": 0,
                                        "department": department}
        roll["calls"] += 1
        roll[direction] += 1
        roll["connected"] += int(connected)
        roll["valid"] += int(rec["valid"])
        roll["talk"] += talk
        t.put("dl.roll", rk, roll)
        if sim is not None:
            simrec = t.get("dl.sim", sim.encode())
            if simrec is not None:
                simrec["calls"] += 1
                simrec["connected"] += int(connected)
                simrec["failures"] += int(outcome == "failed")
                t.put("dl.sim", sim.encode(), simrec)
        if r is not None:
            was_open = r["state"] == "open"
            r["call"] = call_id
            if was_open:
                r["state"] = "settled"
                t.delete("dl.resvexp", app_key(r["expires"], rid))
                end = min(max(times["ended_at"], r["at"]), now)
                if dev["resv"] == rid:
                    dev["resv"] = None
                dev["last_end"] = max(dev["last_end"] or 0, end)
                t.put("dl.dev", dev_id.encode(), dev)
                self._requeue(t, r, end, connected)
            t.put("dl.resv", rid.encode(), r)
        return {"record": self._record_view(rec), "duplicate": False}

    def last_contact(self, number: str) -> dict | None:
        """The latest call with ``number`` (time, connected, customer): a contact record for the
        customers' recycle rule (P-3)."""
        d = self.digest(rules.normalise_number(number))
        return self.read(lambda t: t.get("dl.lastcall", d))

    @staticmethod
    def _record_view(rec: dict) -> dict:
        return dict(rec)

    def search_calls(self, *, number: str | None = None, start: int | None = None, end: int | None = None,
                     employees: set[str] | None = None, direction: str | None = None, connected: bool | None = None,
                     min_talk: int | None = None, max_talk: int | None = None, limit: int = 100,
                     before: bytes | None = None) -> tuple[list[dict], bytes | None]:
        """D-7: newest first. ``employees``: the caller's data scope (None: all)."""
        def keep(rec):
            if start is not None and rec["started_at"] < start:
                return False
            if end is not None and rec["started_at"] >= end:
                return False
            if employees is not None and rec["employee"] not in employees:
                return False
            if direction is not None and rec["direction"] != direction:
                return False
            if connected is not None and rec["connected"] != connected:
                return False
            if min_talk is not None and rec["talk_seconds"] < min_talk:
                return False
            return max_talk is None or rec["talk_seconds"] <= max_talk

        def fn(t):
            out, nxt = [], None
            if number is not None:
                d = self.digest(rules.normalise_number(number))
                keys = (ck for _, ck in t.scan("dl.callnum", d, reverse=True,
                                               start=d + before if before else None))
            else:
                hi = before if before is not None else (app_key(end, b"") if end is not None else None)
                keys = (k for k, _ in t.scan("dl.call", reverse=True, start=hi, values=False))
            for ck in keys:
                if before is not None and ck >= before:
                    continue
                rec = t.get("dl.call", ck)
                if number is None and start is not None and rec["started_at"] < start:
                    break
                if keep(rec):
                    if len(out) == limit:
                        break
                    out.append(rec)
                    nxt = ck  # the next page is what comes before the last one shown
            else:
                nxt = None
            return out, nxt
        return self.read(fn)

    def stats(self, start_day: str, end_day: str, granularity: str, employees: set[str] | None) -> dict:
        """D-8 from the roll-ups: the overview, each employee's trend per day/week/month, and
        the ranking (most valid calls first)."""
        if granularity not in ("day", "week", "month"):
            raise InputError("granularity: day, week or month")
        try:
            d0, d1 = date.fromisoformat(start_day), date.fromisoformat(end_day)
        except (TypeError, ValueError):
            raise InputError("from and to: days YYYY-MM-DD") from None
        if d1 < d0 or (d1 - d0).days > 400:
            raise InputError("to must not be before from, and at most 400 days after it")

        def bucket(d: date) -> str:
            if granularity == "day":
                return d.isoformat()
            if granularity == "week":
                y, w, _ = d.isocalendar()
                return f"{y}-W{w:02d}"
            return d.strftime("%Y-%m")

        zero = {"calls": 0, "out": 0, "in": 0, "connected": 0, "valid": 0, "talk": 0}

        def fn(t):
            overview = dict(zero)
            trend: dict[str, dict[str, dict]] = {}
            per: dict[str, dict] = {}
            d = d0
            while d <= d1:
                b = bucket(d)
                for key, roll in t.scan("dl.roll", app_key(d.isoformat()) + b"\0"):
                    emp = key[11:].decode()
                    if employees is not None and emp not in employees:
                        continue
                    for k in zero:
                        overview[k] += roll[k]
                    e = per.setdefault(emp, dict(zero))
                    tb = trend.setdefault(emp, {}).setdefault(b, dict(zero))
                    for k in zero:
                        e[k] += roll[k]
                        tb[k] += roll[k]
                d += timedelta(days=1)
            ranking = sorted(({"employee": k, **v} for k, v in per.items()),
                             key=lambda r: (-r["valid"], -r["connected"], -r["talk"], r["employee"]))
            return {"overview": overview, "trend": trend, "ranking": ranking, "granularity": granularity}
        return self.read(fn)
