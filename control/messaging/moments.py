"""Moments (朋友圈, rule Q-7): each customer's moments get at most one post a day from
members, checked and reserved per customer in the write transaction; content ≤ 2000
characters with ≤ 9 images, or 1 video, or 1 link (one kind; images and video ≤ 10 MB, video
≤ 30 s); WeCom takes at most 10 moment tasks a minute per enterprise (``wecom-api.md`` §5),
reserved locally before calling. ``add_moment_task`` answers a job id, followed with
``get_moment_task_result`` until done.

Tables: ``ms.moment`` id → the moment (senders, customers reached and refused, job, state);
``q.m`` customer → [day, posts] (Q-7); ``ms.mmin`` minute → moment tasks created (≤ 10)."""

from __future__ import annotations

import asyncio
import secrets

from control.messaging import quota
from scrm_fast.errors import ConflictError, InputError, NotFoundError
from scrm_fast.storage import AppTxn, app_key

MAX_TEXT = 2000
PER_MINUTE = 10
MB = 1 << 20


def check_moment(text: object, attachments: object) -> tuple[str, list[dict]]:
    text = text or ""
    if not isinstance(text, str):
        raise InputError("text: a string")
    if len(text) > MAX_TEXT:
        raise InputError(f"Q-7: a post is at most {MAX_TEXT} characters ({len(text)})")
    atts = attachments or []
    if not isinstance(atts, list):
        raise InputError("attachments: a list")
    kinds = {a.get("msgtype") for a in atts if isinstance(a, dict)}
    if len(kinds) > 1 or any(not isinstance(a, dict) for a in atts):
        raise InputError("Q-7: attachments are of one kind: images, or a video, or a link")
    kind = next(iter(kinds), None)
    if kind not in (None, "image", "video", "link"):
        raise InputError("Q-7: images, a video or a link")
    if kind == "image" and len(atts) > 9:
        raise InputError("Q-7: at most 9 images")
    if kind in ("video", "link") and len(atts) > 1:
        raise InputError(f"Q-7: one {kind}")
    for a in atts:
        body = a.get(kind) or {}
        if not isinstance(body, dict):
            raise InputError(f"attachment {kind}: an object")
        size = body.get("size", 0)
        if kind in ("image", "video") and (isinstance(size, bool) or not isinstance(size, int) or size > 10 * MB):
            raise InputError(f"Q-7: {kind}s are at most 10 MB")
        if kind == "video" and (not isinstance(body.get("duration", 0), int) or body.get("duration", 0) > 30):
            raise InputError("Q-7: a video is at most 30 seconds")
    if not text and not atts:
        raise InputError("a post needs text or attachments")
    return text, [{"msgtype": kind, kind: a[kind]} for a in atts]


class Moments:
    def __init__(self, store, clock, client_factory=None) -> None:
        self.store, self.clock, self.client_factory = store, clock, client_factory

    def read(self, fn):
        with self.store.app_read() as t:
            return fn(t)

    def run(self, fn):
        with self.store.app_write() as t:
            return fn(t)

    def create(self, t: AppTxn, doc: dict, directory: dict, by: str) -> dict:
        if not isinstance(doc, dict) or set(doc) - {"senders", "tags", "customers", "text", "attachments"}:
            raise InputError("a moment: {senders, tags?, customers?, text, attachments}")
        senders = doc.get("senders")
        if not isinstance(senders, list) or not 1 <= len(senders) <= 1000 or not all(
                isinstance(s, str) and 0 < len(s) <= 64 for s in senders):
            raise InputError("senders: 1 to 1,000 member userids")
        tags = doc.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 100:
            raise InputError("tags: a list")
        text, atts = check_moment(doc.get("text"), doc.get("attachments"))
        now = self.clock.now_ms()
        minute = now // 60_000
        used = t.get("ms.mmin", app_key(minute)) or 0
        if used >= PER_MINUTE:
            raise ConflictError(f"WeCom takes at most {PER_MINUTE} moments a minute: try again in a minute")
        t.put("ms.mmin", app_key(minute), used + 1)
        # who will see it: the senders' customers (SCRM records and the directory), by tag if given
        reach: set[str] = set()
        want = set(senders)
        for _, rec in t.scan("cu.cust"):
            if rec.get("external_userid") and rec.get("owner") in want and (
                    not tags or set(tags) & set(rec.get("tags", []))):
                reach.add(rec["external_userid"])
        if not tags:
            for c in directory.get("customers", []):
                if want & set(c.get("follow_users") or []):
                    reach.add(c["external_userid"])
        if doc.get("customers") is not None:
            explicit = doc["customers"]
            if not isinstance(explicit, list):
                raise InputError("customers: a list")
            reach &= set(explicit)
        day = quota.periods(now)[0]
        ids = sorted(reach)
        rows = t.get_many("q.m", [r.encode() for r in ids])
        ok, refused, writes = [], [], []
        for rid, row in zip(ids, rows, strict=True):
            n = row[1] if row and row[0] == day else 0
            if n >= 1:
                refused.append({"recipient": rid, "rule": "Q-7", "reason": "already had a moment from members today"})
                continue
            writes.append((rid.encode(), [day, n + 1]))
            ok.append(rid)
        t.put_many("q.m", writes)
        mid = "mo" + secrets.token_hex(8)
        m = {"id": mid, "senders": sorted(want), "tags": tags, "text": text, "attachments": atts, "created": now,
             "by": by, "day": day, "reached": ok, "refused": refused, "state": "pushing", "jobid": None,
             "moment_id": None, "invalid_senders": []}
        t.put("ms.moment", mid.encode(), m)
        return m

    def get(self, mid: str) -> dict:
        m = self.read(lambda t: t.get("ms.moment", mid.encode())) if isinstance(mid, str) and len(mid) <= 40 else None
        if m is None:
            raise NotFoundError(f"no moment {mid}")
        return m

    def _update(self, mid: str, fn) -> dict:
        def step(t):
            m = t.get("ms.moment", mid.encode())
            fn(t, m)
            t.put("ms.moment", mid.encode(), m)
            return m
        return self.run(step)

    async def push(self, mid: str) -> dict:
        m = await asyncio.to_thread(self.get, mid)
        async with self.client_factory() as client:
            if m["jobid"] is None and m["state"] == "pushing":
                if not m["reached"]:
                    return await asyncio.to_thread(self._update, mid, lambda t, m: m.update(state="failed"))
                jobid = await client.add_moment_task(m["senders"], m["tags"], m["text"], m["attachments"])
                m = await asyncio.to_thread(self._update, mid, lambda t, m: m.update(jobid=jobid, state="running"))
            if m["state"] == "running":
                res = await client.get_moment_task_result(m["jobid"])
                if res.get("status") == 3:
                    r = res.get("result") or {}

                    def done(t, m, r=r):
                        m.update(state="done", moment_id=r.get("moment_id"),
                                 invalid_senders=(r.get("invalid_sender_list") or {}).get("user_list", []))
                    m = await asyncio.to_thread(self._update, mid, done)
        return m
