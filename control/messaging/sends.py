"""Mass sends (Q-1 … Q-6, Q-8): checked content, recipients resolved from lists or a filter
over the customer records, every recipient's quota checked and reserved in one transaction
(refusals with their rule), pushed to WeCom per sender (``add_msg_template``), followed with
``get_groupmsg_task`` / ``get_groupmsg_send_result`` until every member executed (done) or a
month passed (failed); cancel and reminders (≤ 3 a day, Q-6). What WeCom reports settles the
ledger: sent (1) stays counted, in the day WeCom sent it; not a friend (2) is given back;
quota used elsewhere (3) gives this send's count back and makes sure the day counts the one
the customer did receive — so the ledger converges with WeCom's.

Tables: ``ms.send`` send id → the send (content, recipients with their state, refusals,
members, WeCom msgids); ``ms.open`` send id → the sends the scheduler still follows;
``ms.remind`` send, day → reminders sent (Q-6)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta

from control.messaging import quota
from scrm_fast.errors import ConflictError, InputError, NotFoundError
from scrm_fast.storage import AppTxn, app_key

ATTACHMENT_TYPES = ("image", "link", "miniprogram", "video", "file")
MAX_TEXT = 4000
MAX_ATTACHMENTS = 9
MAX_GROUPS_MEMBER = 200
MAX_REMINDERS_A_DAY = 3
MAX_CUSTOMERS_A_CALL = 10_000  # add_msg_template
MAX_GROUPS_A_CALL = 2000


def check_content(text: object, attachments: object) -> tuple[str, list[dict]]:
    """Q-4 and ``wecom-api.md`` §5's byte limits, each with the limit named."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError("text: a string")
    if len(text) > MAX_TEXT:
        raise InputError(f"Q-4: text over {MAX_TEXT} characters ({len(text)})")
    if len(text.encode()) > 4000:
        raise InputError(f"text over WeCom's 4000 bytes ({len(text.encode())} bytes in UTF-8)")
    attachments = attachments or []
    if not isinstance(attachments, list):
        raise InputError("attachments: a list")
    if len(attachments) > MAX_ATTACHMENTS:
        raise InputError(f"Q-4: at most {MAX_ATTACHMENTS} attachments ({len(attachments)})")
    if not text and not attachments:
        raise InputError("a send needs text or attachments")
    limits = {"link": {"title": 128, "url": 2048, "picurl": 2048, "desc": 512}, "miniprogram": {"title": 64}}
    out = []
    for a in attachments:
        kind = a.get("msgtype") if isinstance(a, dict) else None
        if kind not in ATTACHMENT_TYPES:
            raise InputError(f"Q-4: attachment types are {', '.join(ATTACHMENT_TYPES)}")
        body = a.get(kind)
        if not isinstance(body, dict):
            raise InputError(f"attachment {kind}: {{msgtype, {kind}: {{…}}}}")
        for field, lim in limits.get(kind, {}).items():
            v = body.get(field, "")
            if not isinstance(v, str) or len(v.encode()) > lim:
                raise InputError(f"attachment {kind}.{field}: at most {lim} bytes")
        out.append({"msgtype": kind, kind: body})
    return text, out


class Sends:
    def __init__(self, store, clock, client_factory=None, push_lease_s: float | None = None) -> None:
        import os

        self.store = store
        self.clock = clock
        self.client_factory = client_factory
        # how long a started push is left to its process before another takes it over (then
        # finding in WeCom what the first may have created): longer than a WeCom call can take
        self.push_lease_ms = int(1000 * (push_lease_s if push_lease_s is not None
                                         else float(os.environ.get("SCRM_PUSH_LEASE_S", "60"))))

    def run(self, fn):
        with self.store.app_write() as t:
            return fn(t)

    def read(self, fn):
        with self.store.app_read() as t:
            return fn(t)

    # -- recipients ---------------------------------------------------------------------------
    def _resolve(self, t: AppTxn, doc: dict, directory: dict) -> tuple[str, list[tuple[str, str | None]], list[dict]]:
        """``(chat_type, [(recipient, its sender)], refused)`` from the body's customers,
        groups or filter."""
        kind = doc.get("kind")
        sender = doc.get("sender")
        chosen = [k for k in ("customers", "groups", "filter") if doc.get(k) is not None]
        if len(chosen) != 1:
            raise InputError("name exactly one of customers, groups or filter")
        owners = {c.get("external_userid"): (c.get("follow_users") or [None])[0]
                  for c in directory.get("customers", [])}
        group_owner = {g.get("roomid"): g.get("owner") for g in directory.get("groups", [])}
        refused = []
        if chosen[0] == "groups":
            ids = doc["groups"]
            if not isinstance(ids, list) or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in ids):
                raise InputError("groups: a list of chat ids")
            ids = list(dict.fromkeys(ids))
            if kind == "member" and len(ids) > MAX_GROUPS_MEMBER:
                raise InputError(f"Q-5: a member's group send picks at most {MAX_GROUPS_MEMBER} groups ({len(ids)})")
            out = []
            for g in ids:
                owner = group_owner.get(g)
                if kind == "member" and owner is not None and owner != sender:
                    refused.append({"recipient": g, "rule": "Q-5", "reason": f"not a group of {sender}"})
                    continue
                out.append((g, sender if kind == "member" else owner))
            return "group", out, refused
        if chosen[0] == "customers":
            ids = doc["customers"]
            if not isinstance(ids, list) or not all(isinstance(x, str) and 0 < len(x) <= 64 for x in ids):
                raise InputError("customers: a list of external_userids")
            ids = list(dict.fromkeys(ids))
        else:
            ids = self._filter(t, doc["filter"])
        if len(ids) > 100_000:
            raise InputError("at most 100,000 recipients a send")
        # each recipient's owner through the customers' WeCom-id index: two batch reads, not a
        # walk of every customer record inside the write transaction
        cids = t.get_many("cu.ext", [c.encode() for c in ids])
        known = [(c, cid) for c, cid in zip(ids, cids, strict=True) if cid]
        recs = t.get_many("cu.cust", [cid.encode() for _, cid in known])
        by_ext = {c: (rec or {}).get("owner") for (c, _), rec in zip(known, recs, strict=True)}
        out = []
        for c in ids:
            owner = by_ext.get(c) or owners.get(c)
            out.append((c, sender if kind == "member" else (sender or owner)))
        return "single", out, refused

    @staticmethod
    def _filter(t: AppTxn, f: object) -> list[str]:
        """Seed 003 §5.6.2's filters over the customer records linked to WeCom contacts: the
        employees who follow them, gender, source, follow-up status, tags (any / all), sales stage."""
        if not isinstance(f, dict) or set(f) - {"gender", "source", "status", "tags_any", "tags_all", "stage",
                                                "employees"}:
            raise InputError("filter: {employees?, gender?, source?, status?, tags_any?, tags_all?, stage?}")
        if "employees" in f and (not isinstance(f["employees"], list) or not all(
                isinstance(e, str) for e in f["employees"])):
            raise InputError("filter.employees: the userids whose customers to reach")
        for k in ("tags_any", "tags_all"):
            if k in f and (not isinstance(f[k], list) or len(f[k]) > 10):
                raise InputError(f"{k}: at most 10 tags")
        stage_of: dict[str, set] = {}
        if f.get("stage"):
            for _, o in t.scan("cu.opp"):
                stage_of.setdefault(o["customer"], set()).add(o["stage"])
        out = []
        for _, rec in t.scan("cu.cust"):
            ext = rec.get("external_userid")
            if not ext:
                continue
            if f.get("employees") and rec.get("owner") not in f["employees"]:
                continue
            if f.get("gender") and rec.get("gender") != f["gender"]:
                continue
            if f.get("source") and rec.get("source") != f["source"]:
                continue
            if f.get("status") and rec.get("status") != f["status"]:
                continue
            tags = set(rec.get("tags", []))
            if f.get("tags_any") and not tags & set(f["tags_any"]):
                continue
            if f.get("tags_all") and not set(f["tags_all"]) <= tags:
                continue
            if f.get("stage") and f["stage"] not in stage_of.get(rec["id"], set()):
                continue
            out.append(ext)
        return out

    def _check(self, doc: dict) -> tuple[str, str | None, str, list[dict], int | None]:
        if not isinstance(doc, dict):
            raise InputError("a send: a JSON object")
        unknown = set(doc) - {"kind", "sender", "customers", "groups", "filter", "text", "attachments",
                              "scheduled_at"}
        if unknown:
            raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        kind = doc.get("kind")
        if kind not in ("member", "enterprise"):
            raise InputError("kind: member or enterprise")
        sender = doc.get("sender")
        if kind == "member" and (not isinstance(sender, str) or not 0 < len(sender) <= 64):
            raise InputError("sender: the member's userid (a member send has one sender)")
        if sender is not None and (not isinstance(sender, str) or len(sender) > 64):
            raise InputError("sender: a userid")
        text, atts = check_content(doc.get("text"), doc.get("attachments"))
        at = doc.get("scheduled_at")
        if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 0 or at > 2**50):
            raise InputError("scheduled_at: epoch milliseconds")
        return kind, sender, text, atts, at

    def preview(self, t: AppTxn, doc: dict, directory: dict) -> dict:
        kind, sender, text, atts, at = self._check(doc)
        chat_type, recips, refused = self._resolve(t, doc, directory)
        ok, q_refused = quota.preview(t, [r for r, _ in recips], kind, self.clock.now_ms(), chat_type == "group")
        no_sender = [r for r, s in recips if s is None and r in set(ok)]
        refused = refused + q_refused + [{"recipient": r, "rule": "Q-1" if kind == "member" else "Q-2",
                                          "reason": "no follow-up employee to send it"} for r in no_sender]
        return {"reach": len(ok) - len(no_sender), "refused": refused, "chat_type": chat_type}

    def create(self, t: AppTxn, doc: dict, directory: dict, by: str) -> dict:
        """The send with its recipients' quota reserved (atomically), or refused each with its rule."""
        if isinstance(doc, dict) and any(isinstance(a, dict) and "material" in a for a in doc.get("attachments") or []):
            from control.messaging import materials

            text, atts = materials.resolve(t, doc.get("text") or "", doc["attachments"], doc.get("sender"))
            doc = {**doc, "text": text, "attachments": atts}
        kind, sender, text, atts, at = self._check(doc)
        chat_type, recips, refused = self._resolve(t, doc, directory)
        now = self.clock.now_ms()
        with_sender = [(r, s) for r, s in recips if s is not None]
        refused += [{"recipient": r, "rule": "Q-1" if kind == "member" else "Q-2",
                     "reason": "no follow-up employee to send it"} for r, s in recips if s is None]
        ok, q_refused = quota.reserve(t, [r for r, _ in with_sender], kind, now, chat_type == "group")
        refused += q_refused
        okset = set(ok)
        sid = "ms" + secrets.token_hex(8)
        senders: dict[str, list[str]] = {}
        for r, s in with_sender:
            if r in okset:
                senders.setdefault(s, []).append(r)
        send = {"id": sid, "kind": kind, "chat_type": chat_type, "sender": sender, "text": text, "attachments": atts,
                "scheduled_at": at, "created": now, "by": by, "reserved_at": now,
                "state": "not_started" if at is not None and at > now else "pushing",
                "recipients": {r: "reserved" for r in ok}, "senders": senders, "refused": refused,
                "members": {s: "unsent" for s in senders}, "msgids": {}, "pushed_at": None}
        if not ok:
            send["state"] = "failed"
            send["reason"] = "no recipient within its quota"
        self._store(t, send)
        return send

    OPEN = ("not_started", "pushing", "running")

    @classmethod
    def _store(cls, t: AppTxn, s: dict) -> None:
        """A send written, with its entry in ``ms.open`` while the scheduler still has work
        with it (its minute round reads those, not every send ever made)."""
        t.put("ms.send", s["id"].encode(), s)
        if s["state"] in cls.OPEN:
            t.put("ms.open", s["id"].encode(), None)
        else:
            t.delete("ms.open", s["id"].encode())

    def get(self, sid: str) -> dict:
        s = self.read(lambda t: t.get("ms.send", sid.encode())) if isinstance(sid, str) and len(sid) <= 40 else None
        if s is None:
            raise NotFoundError(f"no mass send {sid}")
        return s

    def view(self, s: dict) -> dict:
        states: dict[str, int] = {}
        for v in s["recipients"].values():
            states[v] = states.get(v, 0) + 1
        return {k: s[k] for k in ("id", "kind", "chat_type", "sender", "text", "attachments", "scheduled_at", "created",
                                  "by", "state", "refused", "members", "pushed_at")} | {
            "accepted": len(s["recipients"]), "recipient_states": states}

    def _update(self, sid: str, fn):
        def step(t):
            s = t.get("ms.send", sid.encode())
            out = fn(t, s)
            self._store(t, s)
            return s if out is None else out
        return self.run(step)

    def _give_back(self, t: AppTxn, s: dict, recipients: list[str], state: str) -> None:
        back = [r for r in recipients if s["recipients"].get(r) == "reserved"]
        quota.release(t, back, s["kind"], s["reserved_at"])
        for r in back:
            s["recipients"][r] = state

    # -- with WeCom ------------------------------------------------------------------------------
    async def push(self, sid: str) -> dict:
        """Creates the WeCom templates (one per sender) for a send that is due."""
        s = await asyncio.to_thread(self.get, sid)
        if s["state"] not in ("pushing", "not_started"):
            return s
        if s["state"] == "not_started" and (s["scheduled_at"] or 0) > self.clock.now_ms():
            return s
        async with self.client_factory() as client:
            for sender, recips in s["senders"].items():
                if sender in s["msgids"]:
                    continue  # created in an earlier round
                lease = self.push_lease_ms

                def claim(t, sender=sender, lease=lease):
                    """Compare-and-set in the write transaction: one process pushes a sender's
                    part at a time (the handler that created it, another worker's scheduler)."""
                    cur = t.get("ms.send", sid.encode())
                    if sender in cur["msgids"]:
                        return "done", None, cur
                    import time

                    prev = cur.setdefault("push_started", {}).get(sender)  # [tenant clock ms, wall s]
                    if prev is not None and (time.time() - prev[1]) * 1000 < lease:
                        return "busy", prev[0], cur  # the lease is real time: a process's liveness
                    cur["push_started"][sender] = [self.clock.now_ms(), time.time()]  # before the call
                    self._store(t, cur)
                    return "go", prev[0] if prev is not None else None, cur
                verdict, started, s = await asyncio.to_thread(self.run, claim)
                if verdict != "go":
                    continue
                if started is not None:
                    # an earlier push that may have reached WeCom (and then crashed): find its
                    # template before sending anything again
                    found = await self._created_before(client, s, sender, started)
                    if found:
                        def adopt(t, s, sender=sender, found=found, started=started):
                            s["msgids"][sender] = found
                            s["state"] = "running"
                            s["pushed_at"] = s["pushed_at"] or started
                        s = await asyncio.to_thread(self._update, sid, adopt)
                        continue
                cap = MAX_GROUPS_A_CALL if s["chat_type"] == "group" else MAX_CUSTOMERS_A_CALL
                for i in range(0, len(recips), cap):
                    part = recips[i:i + cap]
                    try:
                        msgid, fails = await client.add_msg_template(s["chat_type"], sender, part, s["text"],
                                                                     s["attachments"])
                    except Exception as e:  # noqa: BLE001 - WeCom refused the whole call: give its recipients back
                        code = getattr(e, "errcode", None)

                        def back(t, s, part=part, code=code):
                            self._give_back(t, s, part, f"wecom_{code}" if code else "wecom_error")
                        await asyncio.to_thread(self._update, sid, back)
                        continue

                    def record(t, s, sender=sender, msgid=msgid, fails=fails):
                        s["msgids"].setdefault(sender, []).append(msgid)
                        self._give_back(t, s, [f for f in fails if isinstance(f, str)], "not_sendable")
                        s["state"] = "running"
                        s["pushed_at"] = s["pushed_at"] or self.clock.now_ms()
                    s = await asyncio.to_thread(self._update, sid, record)
        return await asyncio.to_thread(self._finish_check, sid)

    async def _created_before(self, client, s: dict, sender: str, started: int) -> list[str]:
        """Templates WeCom holds for this send from an earlier, interrupted push: by sender,
        time and text, not claimed by another send."""
        rows = await client.get_groupmsg_list(s["chat_type"], started - 60_000, self.clock.now_ms() + 60_000, sender)
        claimed = set()
        for _, other in await asyncio.to_thread(lambda: self.read(lambda t: list(t.scan("ms.send")))):
            if other["id"] != s["id"]:
                for ms in other.get("msgids", {}).values():
                    claimed.update(ms)
        return [r["msgid"] for r in rows if (r.get("text") or {}).get("content", "") == s["text"]
                and r["msgid"] not in claimed]

    async def poll(self, sid: str) -> dict:
        """What WeCom says of each member and recipient; settles or gives back."""
        s = await asyncio.to_thread(self.get, sid)
        if s["state"] in ("not_started", "pushing"):
            return await self.push(sid)
        if s["state"] != "running":
            return s
        async with self.client_factory() as client:
            for sender, msgids in s["msgids"].items():
                for msgid in msgids:
                    tasks = await client.get_groupmsg_task(msgid)
                    results = await client.get_groupmsg_send_result(msgid, sender)

                    def record(t, s, sender=sender, tasks=tasks, results=results):
                        for task in tasks:
                            if task.get("userid") == sender and task.get("status") in (1, 2):
                                s["members"][sender] = "executed"
                        back, elsewhere, moved = [], [], {}
                        settled = s.setdefault("settled_at", {})
                        for r in results:
                            rid = r.get("external_userid") or r.get("chat_id")
                            st = r.get("status")
                            if s["recipients"].get(rid) != "reserved":
                                continue
                            at = int(r.get("send_time") or 0) * 1000 or self.clock.now_ms()
                            if st == 1:  # sent: counted in the period WeCom counted it
                                s["recipients"][rid] = "sent"
                                settled[rid] = at
                                moved.setdefault(at, []).append(rid)
                            elif st == 2:
                                back.append(rid)
                            elif st == 3:  # WeCom counted another mass message to them that day
                                elsewhere.append((rid, at))
                                settled[rid] = at
                        self._give_back(t, s, back, "not_a_friend")
                        self._give_back(t, s, [rid for rid, _ in elsewhere], "quota_used_elsewhere")
                        for rid, at in elsewhere:
                            quota.counted_elsewhere(t, rid, at)
                        for at, rids in moved.items():
                            quota.move(t, rids, s["kind"], s["reserved_at"], at)
                    s = await asyncio.to_thread(self._update, sid, record)
        return await asyncio.to_thread(self._finish_check, sid)

    def _finish_check(self, sid: str) -> dict:
        def step(t, s):
            if s["state"] != "running":
                return
            now = self.clock.now_ms()
            if all(v == "executed" for v in s["members"].values()):
                s["state"] = "done"
                # recipients WeCom never reported (the member sent, the result list lags) stay counted
            elif s["pushed_at"] and now >= one_month_after(s["pushed_at"]):
                s["state"] = "failed"  # not all members executed within a month
                self._give_back(t, s, [r for r, v in s["recipients"].items() if v == "reserved"], "expired")
        return self._update(sid, step)

    async def cancel(self, sid: str) -> dict:
        s = await asyncio.to_thread(self.get, sid)
        if s["state"] not in ("not_started", "pushing", "running"):
            raise ConflictError(f"a {s['state']} send cannot be cancelled")
        if s["msgids"]:
            async with self.client_factory() as client:
                for msgids in s["msgids"].values():
                    for m in msgids:
                        await client.cancel_groupmsg_send(m)

        def step(t, s):
            self._give_back(t, s, [r for r, v in s["recipients"].items() if v == "reserved"], "cancelled")
            s["state"] = "cancelled"
        return await asyncio.to_thread(self._update, sid, step)

    async def remind(self, sid: str) -> dict:
        """Q-6: at most 3 reminders a day per send, reserved before calling."""
        s = await asyncio.to_thread(self.get, sid)
        if s["state"] != "running":
            raise ConflictError("only a running send is reminded")
        day = quota.periods(self.clock.now_ms())[0]

        def take(t):
            key = app_key(sid, day)
            n = t.get("ms.remind", key) or 0
            if n >= MAX_REMINDERS_A_DAY:
                raise ConflictError(f"Q-6: {MAX_REMINDERS_A_DAY} reminders today already")
            t.put("ms.remind", key, n + 1)
            return n + 1
        n = await asyncio.to_thread(self.run, take)
        async with self.client_factory() as client:
            for msgids in s["msgids"].values():
                for m in msgids:
                    await client.remind_groupmsg_send(m)
        return {"reminders_today": n}

    async def run_due(self) -> None:
        open_ids = await asyncio.to_thread(lambda: self.read(
            lambda t: [k.decode() for k, _ in t.scan("ms.open", values=False)]))
        for sid in open_ids:
            try:
                await self.poll(sid)
            except Exception:  # noqa: BLE001 - retried next round
                import logging

                logging.getLogger("scrm.messaging").exception("send %s: a round failed", sid)


def one_month_after(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, quota.TZ)
    month = d.month % 12 + 1
    year = d.year + (d.month == 12)
    try:
        nd = d.replace(year=year, month=month)
    except ValueError:  # the 31st into a shorter month: its last day
        nd = (d.replace(day=1, year=year, month=month % 12 + 1) if month < 12 else d.replace(
            day=1, year=year + 1, month=1)) - timedelta(days=1)
        nd = nd.replace(hour=d.hour, minute=d.minute, second=d.second)
    return int(nd.timestamp() * 1000)


# -- tag-based group invites (Q-9, Q-11) --------------------------------------------------------
GROUP_CAP = 200  # members a customer group holds
DEDUP_WINDOW = 2000  # de-duplication looks at the 2,000 most recently active members


def check_invite(doc: object) -> dict:
    if not isinstance(doc, dict) or set(doc) - {"title", "content", "tags", "match", "groups", "filter_joined",
                                                "scheduled_at"}:
        raise InputError("a tag invite: {title, content, tags, match any|all, groups: [{chat_id, qr_media_id}], "
                         "filter_joined?}")
    title, content = doc.get("title"), doc.get("content", "")
    if not isinstance(title, str) or not 0 < len(title) <= 20:
        raise InputError("Q-9: the title is 1–20 characters")
    if not isinstance(content, str) or len(content) > 50:
        raise InputError("Q-9: the content is at most 50 characters")
    tags = doc.get("tags")
    if not isinstance(tags, list) or not 1 <= len(tags) <= 10 or not all(isinstance(x, str) for x in tags):
        raise InputError("Q-9: 1 to 10 tags")
    match = doc.get("match", "any")
    if match not in ("any", "all"):
        raise InputError("match: any or all")
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, dict) and isinstance(g.get("chat_id"), str) and isinstance(g.get("qr_media_id"), str)
            for g in groups):
        raise InputError("groups: [{chat_id, qr_media_id}] in the order their QR codes are handed out")
    return {"title": title, "content": content, "tags": tags, "match": match, "groups": groups,
            "filter_joined": doc.get("filter_joined", True) is not False, "scheduled_at": doc.get("scheduled_at")}


SPOKE_SCAN = 20_000  # the newest messages of a group read to see who was active lately


def last_active(store, roomid: str) -> dict[str, int]:
    """member → the time of their newest archived message in the group (the newest
    ``SPOKE_SCAN`` messages read through the conversation index, records opened in batches)."""
    import itertools

    import msgpack

    if store is None:
        return {}
    out: dict[str, int] = {}
    seqs = itertools.islice(store.conversation_seqs("g:" + roomid), SPOKE_SCAN)  # newest first
    while chunk := list(itertools.islice(seqs, 1000)):
        for raw in store.records_raw(chunk):
            if raw is not None:
                r = msgpack.unpackb(raw)
                if out.get(r["from"], 0) < r["msgtime"]:
                    out[r["from"]] = r["msgtime"]
    return out


def plan_invite(t: AppTxn, inv: dict, directory: dict, store=None) -> tuple[list[tuple[dict, list[str]]], list[dict]]:
    """Customers with the tags, less those already in the groups (among the 2,000 most recently
    active members — newest archived message, else joining —, Q-11), handed each group's QR code
    until the group would hold 200 (Q-9). Returns ([(group, its customers)], refused)."""
    rooms = {g.get("roomid"): g for g in directory.get("groups", [])}
    joined: set[str] = set()
    size: dict[str, int] = {}
    for g in inv["groups"]:
        members = (rooms.get(g["chat_id"]) or {}).get("members") or []
        size[g["chat_id"]] = len(members)
        spoke = last_active(store, g["chat_id"]) if len(members) > DEDUP_WINDOW else {}
        recent = sorted(members, key=lambda m: -max(spoke.get(m.get("id"), 0), m.get("join_time") or 0))
        joined |= {m.get("id") for m in recent[:DEDUP_WINDOW]}
    want = set(inv["tags"])
    picked = []
    for _, rec in t.scan("cu.cust"):
        ext = rec.get("external_userid")
        tags = set(rec.get("tags", []))
        if ext and ((want & tags) if inv["match"] == "any" else want <= tags):
            picked.append(ext)
    refused, plan = [], []
    queue = []
    for ext in picked:
        if inv["filter_joined"] and ext in joined:
            refused.append({"recipient": ext, "rule": "Q-9", "reason": "already in one of the groups"})
        else:
            queue.append(ext)
    for g in inv["groups"]:
        room = max(0, GROUP_CAP - size[g["chat_id"]])
        take, queue = queue[:room], queue[room:]
        if take:
            plan.append((g, take))
    refused += [{"recipient": ext, "rule": "Q-9", "reason": f"every group would be over {GROUP_CAP} members"}
                for ext in queue]
    return plan, refused


def create_invite(sends: Sends, t: AppTxn, doc: dict, directory: dict, by: str) -> dict:
    """One enterprise send per group (its QR code attached): each customer's Q-2 quota is
    reserved as for any enterprise send (Q-9 counts against Q-2)."""
    inv = check_invite(doc)
    plan, refused = plan_invite(t, inv, directory, sends.store)
    created = []
    for g, customers in plan:
        s = sends.create(t, {"kind": "enterprise", "customers": customers,
                             "text": f"{inv['title']}\n{inv['content']}".strip(),
                             "attachments": [{"msgtype": "image", "image": {"media_id": g["qr_media_id"]}}],
                             **({"scheduled_at": inv["scheduled_at"]} if inv["scheduled_at"] else {})}, directory, by)
        created.append({"group": g["chat_id"], "send": s["id"], "accepted": list(s["recipients"]),
                        "refused": s["refused"]})
        refused += s["refused"]
    iid = "ti" + secrets.token_hex(8)
    out = {"id": iid, **{k: inv[k] for k in ("title", "content", "tags", "match", "filter_joined")},
           "sends": created, "refused": refused, "created": sends.clock.now_ms(), "by": by}
    t.put("ms.invite", iid.encode(), out)
    return out
