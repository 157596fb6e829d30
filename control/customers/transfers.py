"""Inheritance (rules I-1 … I-3, ``wecom-api.md`` §4): on-the-job and resigned transfers of
customers and groups through WeCom's APIs, never trusting a call blindly.

A transfer is a durable job in the store (``cu.xfer``). Each step is written before the next
WeCom call: customers go in batches of ≤ 100 with every per-customer errcode kept; the
90-day / two-transfers rule is checked before calling (40128 is never reached); groups go
≤ 100 a call and ≤ 300 a day per new owner (``cu.gday``, reserved in the write transaction),
the rest scheduled for the next day; ``transfer_result`` is polled until every customer is
done (1), refused (3), at the taker's limit (4) or without record (5) — status 2 shows
"waiting until …". Only when WeCom reports a takeover done does the customer's record, its
pool holding and its archive visibility move to the new owner (I-1); a resigned employee's
accounts are disabled when the transfer starts (I-3), their archive stays readable (V-3).
A call repeated after a crash that WeCom answers "already being transferred" (40100/40129)
is taken as started and polled."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime

from control.customers.service import TZ, Customers
from scrm_fast.errors import ConflictError, InputError, NotFoundError
from scrm_fast.storage import AppTxn, app_key

log = logging.getLogger("scrm.transfers")
DAY_MS = 86400_000
GROUP_LEASE_S = 600  # a group "sending" this long without an answer was left by a crashed process
FINAL = {1: "done", 3: "refused", 4: "limit", 5: "no_record"}
REASONS = {"refused": "the customer refused the takeover", "limit": "the new owner is at the customer limit",
           "no_record": "WeCom has no record of this transfer",
           40096: "not a valid external_userid", 40097: "the employee has not resigned",
           40098: "the new owner is not verified", 40099: "the new owner is at the customer limit",
           40100: "already in a transfer", 40128: "transferred twice in 90 days", 40129: "being transferred",
           40130: "handover and takeover are the same", 40131: "not the customer's follow-up employee",
           84061: "no such relation", 90500: "the group owner has not resigned", 90501: "not a customer group",
           90502: "the group owner has resigned", 90504: "the owner is unchanged", 45034: "over 300 groups a day"}


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, TZ).date().isoformat()


class Transfers:
    def __init__(self, customers: Customers, client_factory=None, accounts=None) -> None:
        self.cu = customers
        self.store = customers.store
        self.clock = customers.clock
        self.client_factory = client_factory  # () -> WeComClient, or None: WeCom not configured
        self.accounts = accounts
        self._running: set[str] = set()

    # -- the job in the store ------------------------------------------------------------------
    def create(self, t: AppTxn, doc: dict, by: str) -> dict:
        kind = doc.get("kind")
        if kind not in ("on_job", "resigned"):
            raise InputError("kind: on_job or resigned")
        src, dst = doc.get("from"), doc.get("to")
        for name, v in (("from", src), ("to", dst)):
            if not isinstance(v, str) or not 0 < len(v) <= 64 or "\0" in v:
                raise InputError(f"{name}: a WeCom userid")
        if src == dst:
            raise InputError("from and to are the same employee")
        custs, groups = doc.get("customers", []), doc.get("groups", [])
        for name, v in (("customers", custs), ("groups", groups)):
            if not isinstance(v, list) or len(v) > 20_000 or not all(
                    isinstance(x, str) and 0 < len(x) <= 64 and "\0" not in x for x in v):
                raise InputError(f"{name}: a list of WeCom ids")
        if not custs and not groups:
            raise InputError("nothing to transfer: customers and/or groups")
        msg = doc.get("message")
        if msg is not None and (not isinstance(msg, str) or len(msg) > 200 or kind == "resigned"):
            raise InputError("message: up to 200 characters, on-the-job transfers only")
        now = self.clock.now_ms()
        jid = "xf" + secrets.token_hex(8)
        c_state = {}
        for ext in dict.fromkeys(custs):
            hist = [x for x in (t.get("cu.xhist", app_key(src, ext)) or []) if now - x < 90 * DAY_MS]
            if kind == "on_job" and len(hist) >= 2:
                c_state[ext] = {"state": "local_refused", "errcode": 40128, "rule": "I-1",
                                "reason": "transferred twice in 90 days: WeCom would answer 40128; not sent"}
            else:
                c_state[ext] = {"state": "pending"}
        job = {"id": jid, "kind": kind, "from": src, "to": dst, "message": msg, "created": now, "by": by,
               "state": "running", "customers": c_state,
               "groups": {g: {"state": "pending"} for g in dict.fromkeys(groups)}, "log": []}
        t.put("cu.xfer", jid.encode(), job)
        return job

    def get(self, jid: str) -> dict:
        job = self.cu.read(lambda t: t.get("cu.xfer", jid.encode())) if isinstance(jid, str) and len(jid) <= 40 \
            else None
        if job is None:
            raise NotFoundError(f"no transfer {jid}")
        return job

    def jobs(self) -> list[dict]:
        return self.cu.read(lambda t: [self.summary(v) for _, v in t.scan("cu.xfer")])

    @staticmethod
    def summary(job: dict) -> dict:
        counts: dict[str, int] = {}
        for c in job["customers"].values():
            counts[c["state"]] = counts.get(c["state"], 0) + 1
        gcounts: dict[str, int] = {}
        for g in job["groups"].values():
            gcounts[g["state"]] = gcounts.get(g["state"], 0) + 1
        return {k: job[k] for k in ("id", "kind", "from", "to", "created", "by", "state")} | {
            "customers": counts, "groups": gcounts}

    def _update(self, jid: str, fn) -> dict:
        def step(t):
            job = t.get("cu.xfer", jid.encode())
            fn(t, job)
            t.put("cu.xfer", jid.encode(), job)
            return job
        return self.cu.run(step)

    # -- driving it --------------------------------------------------------------------------------
    async def advance(self, jid: str) -> dict:
        """One round: send what is pending (batches of 100; groups within today's 300), poll
        the results, apply completed takeovers. Safe to call again at any time."""
        if self.client_factory is None:
            raise ConflictError("WeCom is not configured (SCRM_WECOM_CORP, SCRM_WECOM_SECRET_FILE)")
        if jid in self._running:
            return self.get(jid)
        self._running.add(jid)
        try:
            async with self.client_factory() as client:
                return await self._advance(client, jid)
        finally:
            self._running.discard(jid)

    async def _advance(self, client, jid: str) -> dict:
        job = await asyncio.to_thread(self.get, jid)
        if job["state"] == "done":
            return job
        resigned = job["kind"] == "resigned"
        pending = [e for e, c in job["customers"].items() if c["state"] == "pending"]
        for i in range(0, len(pending), 100):
            batch = pending[i:i + 100]
            results = await client.transfer_customer(job["from"], job["to"], batch, job["message"], resigned=resigned)
            by_ext = {r.get("external_userid"): int(r.get("errcode", -1)) for r in results}

            def record(t, job, batch=batch, by_ext=by_ext):
                now = self.clock.now_ms()
                for ext in batch:
                    code = by_ext.get(ext, -1)
                    if code in (0, 40100, 40129):  # started (or started by an earlier try)
                        job["customers"][ext] = {"state": "waiting", "errcode": code, "sent": now}
                        if not resigned and code == 0:
                            hist = [x for x in (t.get("cu.xhist", app_key(job["from"], ext)) or [])
                                    if now - x < 90 * DAY_MS]
                            t.put("cu.xhist", app_key(job["from"], ext), hist + [now])
                    else:
                        job["customers"][ext] = {"state": "failed", "errcode": code,
                                                 "reason": REASONS.get(code, "WeCom refused it")}
                job["log"].append({"at": now, "what": "sent", "customers": len(batch)})
            job = await asyncio.to_thread(self._update, jid, record)
        job = await self._send_groups(client, jid, job, resigned)
        status: dict[str, dict] = {}
        if any(c["state"] == "waiting" for c in job["customers"].values()):
            rows = await client.transfer_result(job["from"], job["to"], resigned=resigned)
            status = {r["external_userid"]: r for r in rows}
        return await asyncio.to_thread(self._apply_results, jid, status)

    async def _send_groups(self, client, jid: str, job: dict, resigned: bool) -> dict:
        import time

        today = day_of(self.clock.now_ms())
        mine: list[str] = []

        def reserve(t, job):  # today's share of the 300, reserved before calling
            # pending ones, scheduled ones whose day came, and ones a crashed process was sending
            due = [g for g, s in job["groups"].items() if s["state"] == "pending" or
                   (s["state"] == "scheduled" and s["day"] <= today) or
                   (s["state"] == "sending" and time.time() - s.get("since", 0) > GROUP_LEASE_S)]
            key = app_key(job["to"], today)
            used = t.get("cu.gday", key) or 0
            room = max(0, 300 - used)
            take, later = due[:room], due[room:]
            t.put("cu.gday", key, used + len(take))
            for g in take:
                job["groups"][g] = {"state": "sending", "day": today, "since": time.time()}
            for g in later:
                job["groups"][g] = {"state": "scheduled", "day": _next_day(today),
                                    "reason": "over 300 groups a day: tomorrow"}
            mine.extend(take)
        job = await asyncio.to_thread(self._update, jid, reserve)
        sending = mine  # only what this round reserved (another process sends its own)
        for i in range(0, len(sending), 100):
            batch = sending[i:i + 100]
            failed = await client.transfer_groups(batch, job["to"], resigned=resigned)
            # 90504 "owner unchanged": already the new owner's (a retry after a crash): done
            bad = {f["chat_id"]: int(f.get("errcode", -1)) for f in failed if int(f.get("errcode", -1)) != 90504}

            def record(t, job, batch=batch, bad=bad):
                now = self.clock.now_ms()
                moved = []
                for g in batch:
                    if g in bad:
                        job["groups"][g] = {"state": "failed", "errcode": bad[g],
                                            "reason": REASONS.get(bad[g], "WeCom refused it")}
                    else:
                        job["groups"][g] = {"state": "done", "at": now}
                        moved.append(g)
                if len(bad):  # what did not move gives its share of the day back
                    t.incr("cu.gday", app_key(job["to"], today), -len(bad))
                job["log"].append({"at": now, "what": "groups", "moved": len(moved), "failed": len(bad)})
                return moved
            job = await asyncio.to_thread(self._update, jid, record)
            moved = [g for g in batch if job["groups"][g]["state"] == "done"]
            if moved:
                await asyncio.to_thread(self._move_groups, job, moved)
        return job

    def _apply_results(self, jid: str, status: dict[str, dict]) -> dict:
        done_now: list[str] = []

        def step(t, job):
            now = self.clock.now_ms()
            for ext, c in job["customers"].items():
                if c["state"] != "waiting":
                    continue
                r = status.get(ext)
                if r is None:
                    continue
                st = int(r.get("status", 0))
                if st == 2:
                    c["until"] = int(r.get("takeover_time", 0)) * 1000  # "waiting until …"
                elif st in FINAL:
                    c["state"] = FINAL[st]
                    c["at"] = now
                    if st == 1:
                        done_now.append(ext)
                        self._take_over(t, ext, job["from"], job["to"], job["kind"])
                    else:
                        c["reason"] = REASONS[FINAL[st]]
            if all(c["state"] not in ("pending", "waiting") for c in job["customers"].values()) and all(
                    g["state"] in ("done", "failed") for g in job["groups"].values()):
                job["state"] = "done"
                job["finished"] = now
        job = self._update(jid, step)
        if done_now:
            self._move_archive(job, done_now)
        return job

    def _take_over(self, t: AppTxn, ext: str, src: str, dst: str, kind: str) -> None:
        """The customer's record and pool holding follow the new owner (I-1)."""
        cid = t.get("cu.ext", ext.encode())
        rec = t.get("cu.cust", cid.encode()) if cid else None
        if rec is None or rec["owner"] != src:
            return
        now = self.clock.now_ms()
        pid = rec["pool"]
        if pid is not None:
            if t.has("cu.held", app_key(pid, src, cid)):
                t.delete("cu.held", app_key(pid, src, cid))
                t.incr("cu.holdn", app_key(pid, src), -1)
                t.put("cu.held", app_key(pid, dst, cid), now)
                t.incr("cu.holdn", app_key(pid, dst), 1)
        rec["owner"] = dst
        rec["history"].append({"at": now, "what": f"inherited ({kind})", "by": None, "from": src, "owner": dst})
        del rec["history"][:-50]
        t.put("cu.cust", cid.encode(), rec)

    def _move_archive(self, job: dict, exts: list[str]) -> None:
        """The directory says who follows the customer now, and records the succession the
        archive views read: the new owner sees the whole history; on the job, the old one no
        longer does; a resigned one's stays readable to those in scope (V-3)."""
        d = self.store.directory() or {}
        customers = {c.get("external_userid"): c for c in d.get("customers", [])}
        now = self.clock.now_ms()
        for ext in exts:
            c = customers.get(ext)
            if c is not None:
                fu = [u for u in c.get("follow_users", []) if u != job["from"]]
                c["follow_users"] = fu + ([job["to"]] if job["to"] not in fu else [])
            d.setdefault("successions", []).append({"customer": ext, "from": job["from"], "to": job["to"],
                                                    "kind": job["kind"], "at": now})
        self.store.save_directory(d)

    def _move_groups(self, job: dict, chats: list[str]) -> None:
        d = self.store.directory() or {}
        now = self.clock.now_ms()
        for g in d.get("groups", []):
            if g.get("roomid") in chats:
                g["owner"] = job["to"]
                g.setdefault("owner_changes", []).append({"owner": job["to"], "time": now})
        self.store.save_directory(d)

    def transfer_failed(self, t: AppTxn, takeover: str, ext: str, reason: str) -> str:
        """The ``transfer_fail`` callback: the waiting transfer of ``ext`` to ``takeover``
        is refused (customer_refused) or at the taker's limit (customer_limit_exceed) now."""
        state = {"customer_refused": "refused", "customer_limit_exceed": "limit"}.get(reason)
        if state is None:
            return "unknown reason"
        hit = 0
        for key, job in list(t.scan("cu.xfer")):
            c = job["customers"].get(ext)
            if job["to"] == takeover and c is not None and c["state"] == "waiting":
                job["customers"][ext] = {**c, "state": state, "reason": REASONS[state], "at": self.clock.now_ms(),
                                         "by": "transfer_fail"}
                t.put("cu.xfer", key, job)
                hit += 1
        return f"{hit} transfer(s) marked {state}"

    def disable_resigned(self, employee: str) -> int:
        """I-3: every account of a resigned employee is disabled at once."""
        if self.accounts is None:
            return 0
        names = [u.username for u in self.accounts.list_users() if u.employee == employee and not u.disabled]
        return self.accounts.set_disabled(names, True) if names else 0

    async def run_open(self) -> None:
        for s in await asyncio.to_thread(self.jobs):
            if s["state"] != "done":
                try:
                    await self.advance(s["id"])
                except Exception:  # noqa: BLE001 - one job's trouble does not stop the others
                    log.exception("transfer %s: a round failed; retried on the next", s["id"])


def _next_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
