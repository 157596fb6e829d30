"""A fake WeCom on loopback for tests and the demo: the shapes, limits and error codes of
``wecom-api.md`` — tokens that expire (and can be invalidated early, answering 42001 or
40014), at most 100 items a call, the 24-hour takeover, refusals and full takeovers
(statuses 3 and 4, and the ``transfer_fail`` event), the 90-day / two-transfers rule (40128),
resigned / not resigned (40097, 90500, 90502), 300 groups a day per new owner. Time is an
injected clock, shared with the server under test."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

DAY_MS = 86400_000
TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class Transfer:
    handover: str
    takeover: str
    ext: str
    start: int
    resigned: bool
    status: int = 2  # 1 done, 2 waiting, 3 refused, 4 takeover at its limit, 5 no record


@dataclass
class FakeState:
    corpid: str = "wwfake0001"
    secrets: dict[str, str] = field(default_factory=lambda: {"contact-secret": "contact"})
    employees: dict[str, dict] = field(default_factory=dict)  # userid → {status, limit}
    follows: set[tuple[str, str]] = field(default_factory=set)  # (employee, external_userid)
    refusing: set[str] = field(default_factory=set)  # customers who refuse a takeover
    groups: dict[str, str] = field(default_factory=dict)  # chat_id → owner
    transfers: list[Transfer] = field(default_factory=list)
    history: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (handover, ext) → starts
    group_day: dict[tuple[str, str], int] = field(default_factory=dict)  # (new owner, day) → groups
    tokens: dict[str, int] = field(default_factory=dict)  # token → expiry ms
    invalid_code: int = 42001
    calls: list[str] = field(default_factory=list)
    # mass messages: WeCom's own truth of who received what (its quota, either profile)
    quota_profile: str = "seed"
    templates: dict[str, dict] = field(default_factory=dict)  # msgid → template
    received: dict[str, list[int]] = field(default_factory=dict)  # recipient → times it received one
    events: list[dict] = field(default_factory=list)  # transfer_fail events it would push
    moments: dict[str, dict] = field(default_factory=dict)  # jobid → moment task
    contact_ways: dict[str, dict] = field(default_factory=dict)  # config_id → {users, state}
    names: dict[str, str] = field(default_factory=dict)  # external_userid → name
    welcome_codes: dict[str, float] = field(default_factory=dict)  # code → issued at (valid 20 s)
    welcomes: list[dict] = field(default_factory=list)  # welcome messages sent
    tagged: list[tuple[str, str, tuple]] = field(default_factory=list)
    answer_delay_s: float = 0.0  # add_msg_template answers this late (a crash test kills the caller meanwhile)
    arrive_delay_s: float = 0.0  # add_msg_template reaches WeCom this late (before anything is created)
    slow: dict[str, float] = field(default_factory=dict)  # API path (after /cgi-bin/) → seconds before answering
    limited: dict[str, int] = field(default_factory=dict)  # API path → the next N calls answer 45009
    # the directory (serve_directory): departments, groups' details, consent answers, archiving
    departments: list[dict] = field(default_factory=list)
    group_info: dict[str, dict] = field(default_factory=dict)  # chat_id → {name, members: [(id, join ms)]}
    consent: list[dict] = field(default_factory=list)  # {userid, external_userid, status, time ms}
    permit: set[str] = field(default_factory=set)
    drop_every: int = 0  # every Nth directory read drops the connection (a fault to survive)
    reads: int = 0
    read_log: list[tuple[str, dict | None]] = field(default_factory=list)  # (API, body) of directory reads


class FakeWeCom:
    def __init__(self, clock, state: FakeState | None = None) -> None:
        self.clock = clock
        self.s = state or FakeState()

    # -- helpers ----------------------------------------------------------------------------
    def invalidate_tokens(self, code: int = 42001) -> None:
        """WeCom drops tokens early now and then: the next call answers ``code``."""
        self.s.tokens.clear()
        self.s.invalid_code = code

    def customers_of(self, employee: str) -> set[str]:
        return {e for u, e in self.s.follows if u == employee}

    def _settle(self) -> None:
        """Takeovers whose 24 hours have passed complete (or fail) now."""
        now = self.clock.now_ms()
        for tr in self.s.transfers:
            if tr.status != 2 or now < tr.start + DAY_MS:
                continue
            if tr.ext in self.s.refusing and not tr.resigned:
                tr.status = 3
                self.s.events.append({"ChangeType": "transfer_fail", "FailReason": "customer_refused",
                                      "UserID": tr.takeover, "ExternalUserID": tr.ext})
                continue
            limit = self.s.employees.get(tr.takeover, {}).get("limit", 50_000)
            if len(self.customers_of(tr.takeover)) >= limit:
                tr.status = 4
                self.s.events.append({"ChangeType": "transfer_fail", "FailReason": "customer_limit_exceed",
                                      "UserID": tr.takeover, "ExternalUserID": tr.ext})
                continue
            self.s.follows.discard((tr.handover, tr.ext))
            self.s.follows.add((tr.takeover, tr.ext))
            tr.status = 1

    @staticmethod
    def _err(code: int, msg: str) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": msg})

    def _auth(self, request: web.Request) -> web.Response | None:
        tok = request.query.get("access_token", "")
        exp = self.s.tokens.get(tok)
        if exp is None:
            return self._err(self.s.invalid_code if tok else 41001, "invalid access_token")
        if self.clock.now_ms() >= exp:
            return self._err(42001, "access_token expired")
        return None

    # -- the app ----------------------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def slow(request: web.Request, handler):
            api = request.path.removeprefix("/cgi-bin/")
            if self.s.limited.get(api, 0) > 0:
                self.s.limited[api] -= 1
                return self._err(45009, "api freq out of limit")
            delay = self.s.slow.get(api, 0.0)
            if delay:
                import asyncio

                await asyncio.sleep(delay)
            return await handler(request)

        app = web.Application(middlewares=[slow])
        app.router.add_get("/cgi-bin/gettoken", self.gettoken)
        for api in ("externalcontact/transfer_customer", "externalcontact/resigned/transfer_customer"):
            app.router.add_post(f"/cgi-bin/{api}", self.transfer_customer)
        for api in ("externalcontact/transfer_result", "externalcontact/resigned/transfer_result"):
            app.router.add_post(f"/cgi-bin/{api}", self.transfer_result)
        for api in ("externalcontact/groupchat/transfer", "externalcontact/groupchat/onjob_transfer"):
            app.router.add_post(f"/cgi-bin/{api}", self.transfer_groups)
        app.router.add_post("/cgi-bin/externalcontact/add_msg_template", self.add_msg_template)
        app.router.add_post("/cgi-bin/externalcontact/get_groupmsg_task", self.groupmsg_task)
        app.router.add_post("/cgi-bin/externalcontact/get_groupmsg_list_v2", self.groupmsg_list)
        app.router.add_post("/cgi-bin/externalcontact/add_moment_task", self.add_moment)
        app.router.add_post("/cgi-bin/externalcontact/add_contact_way", self.add_contact_way)
        app.router.add_get("/cgi-bin/externalcontact/get", self.get_contact)
        app.router.add_post("/cgi-bin/externalcontact/send_welcome_msg", self.send_welcome)
        app.router.add_post("/cgi-bin/externalcontact/mark_tag", self.mark_tag)
        app.router.add_get("/cgi-bin/externalcontact/get_moment_task_result", self.moment_result)
        app.router.add_post("/cgi-bin/externalcontact/get_groupmsg_send_result", self.groupmsg_result)
        app.router.add_post("/cgi-bin/externalcontact/remind_groupmsg_send", self.remind)
        app.router.add_post("/cgi-bin/externalcontact/cancel_groupmsg_send", self.cancel)
        app.router.add_get("/cgi-bin/department/list", self.department_list)
        app.router.add_get("/cgi-bin/user/list", self.user_list)
        app.router.add_post("/cgi-bin/msgaudit/get_permit_user_list", self.permit_list)
        app.router.add_post("/cgi-bin/externalcontact/get_unassigned_list", self.unassigned_list)
        app.router.add_post("/cgi-bin/externalcontact/batch/get_by_user", self.by_user)
        app.router.add_post("/cgi-bin/externalcontact/groupchat/list", self.groupchat_list)
        app.router.add_post("/cgi-bin/externalcontact/groupchat/get", self.groupchat_get)
        app.router.add_post("/cgi-bin/msgaudit/check_single_agree", self.single_agree)
        app.router.add_post("/cgi-bin/msgaudit/check_room_agree", self.room_agree)
        return app

    # -- the directory (contacts, archiving, consent) -----------------------------------------
    def serve_directory(self, doc: dict) -> None:
        """Serves a simulated enterprise's ``directory.json`` through WeCom's API shapes."""
        self.s.corpid = doc["corp"]["corpid"]
        self.s.departments = list(doc.get("departments", []))
        for e in doc.get("employees", []):
            self.s.employees[e["userid"]] = dict(e)
            if e.get("archived"):
                self.s.permit.add(e["userid"])
        for c in doc.get("customers", []):
            self.s.names[c["external_userid"]] = c.get("name", "")
            for u in c.get("follow_users", []):
                self.s.follows.add((u, c["external_userid"]))
        for g in doc.get("groups", []):
            self.s.groups[g["roomid"]] = g["owner"]
            self.s.group_info[g["roomid"]] = {"name": g.get("name", ""), "members": [
                (m["id"], int(m.get("join_time", 0))) for m in g.get("members", [])]}
        self.s.consent = list(doc.get("consent", []))

    async def _read(self, request: web.Request) -> web.Response | dict | None:
        """Authenticates a directory read and injects the dropped-connection fault."""
        if (bad := self._auth(request)) is not None:
            return bad
        self.s.reads += 1
        if self.s.drop_every and self.s.reads % self.s.drop_every == 0:
            request.transport.close()  # the client sees the connection drop mid-request
            raise web.HTTPServiceUnavailable()
        body = await request.json() if request.method == "POST" else None
        self.s.read_log.append((request.path.removeprefix("/cgi-bin/"), body))
        return body

    def _ok(self, **doc: object) -> web.Response:
        return web.json_response({"errcode": 0, "errmsg": "ok", **doc})

    def _resigned(self, uid: str) -> bool:
        return self.s.employees.get(uid, {}).get("status") == "resigned"

    async def department_list(self, request: web.Request) -> web.Response:
        if isinstance(r := await self._read(request), web.Response):
            return r
        return self._ok(department=[{"id": d["id"], "name": d["name"], "parentid": d.get("parent", 0), "order": i}
                                    for i, d in enumerate(self.s.departments)])

    async def user_list(self, request: web.Request) -> web.Response:
        if isinstance(r := await self._read(request), web.Response):
            return r
        out = [{"userid": uid, "name": e.get("name", ""), "department": [e.get("department", 1)],
                "main_department": e.get("department", 1), "status": 1,
                "direct_leader": [e["leader"]] if e.get("leader") else []}
               for uid, e in self.s.employees.items() if not self._resigned(uid)]
        return self._ok(userlist=out)

    async def permit_list(self, request: web.Request) -> web.Response:
        if isinstance(r := await self._read(request), web.Response):
            return r
        return self._ok(ids=sorted(self.s.permit))

    async def unassigned_list(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        rows = sorted((u, ext) for u, ext in self.s.follows if self._resigned(u))
        size = min(1000, int(body.get("page_size", 1000) or 1000))
        start = int(body.get("cursor") or 0)
        page = rows[start:start + size]
        last = start + size >= len(rows)
        return self._ok(info=[{"handover_userid": u, "external_userid": ext,
                               "dimission_time": (self.s.employees[u].get("resigned_at") or 0) // 1000}
                              for u, ext in page], is_last=last, next_cursor="" if last else str(start + size))

    async def by_user(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        users = body.get("userid_list", [])
        if not users or len(users) > 100:
            return self._err(40058, "userid_list must hold 1 to 100 members")
        limit = min(100, int(body.get("limit", 50) or 50))
        rows = sorted((u, ext) for u, ext in self.s.follows if u in set(users))
        start = int(body.get("cursor") or 0)
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return self._ok(external_contact_list=[
            {"external_contact": {"external_userid": ext, "name": self.s.names.get(ext, ""),
                                  "type": 1 if ext.startswith("wm") else 2},
             "follow_info": {"userid": u, "createtime": 0}} for u, ext in page],
            next_cursor=str(start + limit) if more else "")

    async def groupchat_list(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        limit = int(body.get("limit", 100) or 100)
        if not 1 <= limit <= 1000:
            return self._err(40058, "limit must be 1 to 1000")
        ids = sorted(self.s.groups)
        start = int(body.get("cursor") or 0)
        more = start + limit < len(ids)
        return self._ok(group_chat_list=[{"chat_id": c, "status": 0} for c in ids[start:start + limit]],
                        next_cursor=str(start + limit) if more else "")

    async def groupchat_get(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        cid = body.get("chat_id", "")
        if cid not in self.s.groups:
            return self._err(90501, "not a customer group")
        info = self.s.group_info.get(cid, {"name": "", "members": []})
        return self._ok(group_chat={"chat_id": cid, "name": info["name"], "owner": self.s.groups[cid],
                                    "member_list": [{"userid": m, "type": 2 if m.startswith(("wm", "wo")) else 1,
                                                     "join_time": t // 1000} for m, t in info["members"]]})

    async def single_agree(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        info = body.get("info", [])
        if len(info) > 100:
            return self._err(40058, "at most 100 pairs")
        asked = {(i.get("userid"), i.get("exteranalopenid")) for i in info}
        out = [{"userid": c["userid"], "exteranalopenid": c["external_userid"], "agree_status": c["status"],
                "status_change_time": c["time"] // 1000}
               for c in self.s.consent if (c.get("userid"), c["external_userid"]) in asked]
        return self._ok(agreeinfo=out)

    async def room_agree(self, request: web.Request) -> web.Response:
        if isinstance(body := await self._read(request), web.Response):
            return body
        rid = body.get("roomid", "")
        members = {m for m, _ in self.s.group_info.get(rid, {"members": []})["members"]}
        out = [{"exteranalopenid": c["external_userid"], "agree_status": c["status"],
                "status_change_time": c["time"] // 1000}
               for c in self.s.consent if c.get("roomid") == rid and c["external_userid"] in members]
        return self._ok(agreeinfo=out)

    # -- mass messages (§5) ----------------------------------------------------------------------
    def _may_receive(self, rid: str, now: int) -> bool:
        """WeCom's quota: ``seed`` 4 a month per recipient (templates created through the API
        are enterprise sends), ``daily-total`` 1 a day in total."""
        times = self.s.received.get(rid, [])
        d = datetime.fromtimestamp(now / 1000, TZ)
        if self.s.quota_profile == "daily-total":
            return not any(datetime.fromtimestamp(t / 1000, TZ).date() == d.date() for t in times)
        month = (d.year, d.month)
        return sum(1 for t in times if (datetime.fromtimestamp(t / 1000, TZ).year,
                                        datetime.fromtimestamp(t / 1000, TZ).month) == month) < 4

    def execute(self, msgid: str) -> None:
        """The member confirms the send in the client: each recipient gets it, or status 3
        (already received another mass message) when WeCom's quota says no."""
        tpl = self.s.templates[msgid]
        if tpl["cancelled"]:
            return
        now = self.clock.now_ms()
        tpl["executed"] = now
        for rid, st in tpl["results"].items():
            if st != 0:
                continue
            if self._may_receive(rid, now):
                tpl["results"][rid] = 1
                self.s.received.setdefault(rid, []).append(now)
            else:
                tpl["results"][rid] = 3

    async def add_msg_template(self, request: web.Request) -> web.Response:
        self.s.calls.append(request.path)
        if self.s.arrive_delay_s:
            import asyncio

            await asyncio.sleep(self.s.arrive_delay_s)
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        chat = body.get("chat_type", "single")
        ids = body.get("chat_id_list" if chat == "group" else "external_userid") or []
        if not isinstance(ids, list) or len(ids) > (2000 if chat == "group" else 10_000):
            return self._err(40058, "too many recipients")
        text = (body.get("text") or {}).get("content", "")
        if len(text.encode()) > 4000:
            return self._err(40058, "text over 4000 bytes")
        atts = body.get("attachments") or []
        if len(atts) > 9:
            return self._err(41064, "too many attachments")
        if any(a.get("msgtype") not in ("image", "link", "miniprogram", "video", "file") for a in atts):
            return self._err(41065, "bad attachment type")
        sender = body.get("sender")
        if sender not in self.s.employees:
            return self._err(60111, "userid not found")
        now = self.clock.now_ms()
        fail, ok = [], []
        for rid in ids:
            if chat == "single" and (sender, rid) not in self.s.follows:
                fail.append(rid)  # not this member's customer: never sendable
            else:
                ok.append(rid)
        if not ok:
            return self._err(41048, "no recipient can receive it")
        msgid = "msg" + secrets.token_hex(6)
        self.s.templates[msgid] = {"sender": sender, "chat_type": chat, "created": now, "executed": None,
                                   "cancelled": False, "reminders": [], "results": {r: 0 for r in ok},
                                   "text": text}
        if self.s.answer_delay_s:
            import asyncio

            await asyncio.sleep(self.s.answer_delay_s)
        return web.json_response({"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid})

    async def push(self, url: str, token: str, aes_key: str, event: dict) -> int:
        """Delivers ``event`` to a callback URL as WeCom does (signed, encrypted, fresh
        timestamp and nonce); returns the HTTP status."""
        import aiohttp

        from scrm_fast.wecom.callback import seal_event

        xml = "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in event.items()) + "</xml>"
        ts, nonce = str(self.clock.now_ms() // 1000), secrets.token_hex(8)
        body, sig = seal_event(token, aes_key, self.s.corpid, xml, ts, nonce)
        async with aiohttp.ClientSession() as s, s.post(
                url, params={"msg_signature": sig, "timestamp": ts, "nonce": nonce}, data=body) as r:
            return r.status

    def new_contact(self, userid: str, ext: str, name: str, config_id: str | None = None) -> dict:
        """A customer adds ``userid`` (through a live code): the event WeCom would push."""
        self.s.follows.add((userid, ext))
        self.s.names[ext] = name
        code = "wc" + secrets.token_hex(6)
        self.s.welcome_codes[code] = self.clock.now_ms()
        state = self.s.contact_ways.get(config_id, {}).get("state", "") if config_id else ""
        return {"Event": "change_external_contact", "ChangeType": "add_external_contact", "UserID": userid,
                "ExternalUserID": ext, "State": state, "WelcomeCode": code}

    async def add_contact_way(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        users = body.get("user") or []
        if body.get("type") == 2 and not 1 <= len(users) <= 100:
            return self._err(40058, "user: 1 … 100 for a multi-member code")
        if len(body.get("state") or "") > 30:
            return self._err(40058, "state: at most 30 characters")
        cfg = "cfg" + secrets.token_hex(6)
        self.s.contact_ways[cfg] = {"users": users, "state": body.get("state", "")}
        return web.json_response({"errcode": 0, "errmsg": "ok", "config_id": cfg,
                                  "qr_code": f"https://wework.qpic.cn/fake/{cfg}"})

    async def get_contact(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        ext = request.query.get("external_userid", "")
        if ext not in self.s.names:
            return self._err(84061, "no such external contact")
        return web.json_response({"errcode": 0, "errmsg": "ok", "external_contact": {
            "external_userid": ext, "name": self.s.names[ext]}})

    async def send_welcome(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        code = body.get("welcome_code", "")
        issued = self.s.welcome_codes.pop(code, None)  # one use
        if issued is None or self.clock.now_ms() - issued > 20_000:
            return self._err(41051, "welcome_code invalid or used")
        text = (body.get("text") or {}).get("content", "")
        if len(text) > 4000:
            return self._err(40058, "text too long")
        self.s.welcomes.append({"code": code, "text": text, "attachments": body.get("attachments") or []})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def mark_tag(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        self.s.tagged.append((body.get("userid"), body.get("external_userid"), tuple(body.get("add_tag") or [])))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def add_moment(self, request: web.Request) -> web.Response:
        self.s.calls.append(request.path)
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        now = self.clock.now_ms()
        recent = [m for m in self.s.moments.values() if now - m["created"] < 60_000]
        if len(recent) >= 10:
            return self._err(45009, "at most 10 moment tasks a minute")
        text = (body.get("text") or {}).get("content", "")
        if len(text) > 2000:
            return self._err(40058, "text over 2000 characters")
        users = ((body.get("visible_range") or {}).get("sender_list") or {}).get("user_list") or []
        jobid = "job" + secrets.token_hex(6)
        self.s.moments[jobid] = {"created": now, "senders": users, "text": text,
                                 "invalid": [u for u in users if u not in self.s.employees]}
        return web.json_response({"errcode": 0, "errmsg": "ok", "jobid": jobid})

    async def moment_result(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        m = self.s.moments.get(request.query.get("jobid", ""))
        if m is None:
            return self._err(40058, "no such jobid")
        return web.json_response({"errcode": 0, "errmsg": "ok", "status": 3, "type": "add_moment_task", "result": {
            "errcode": 0, "moment_id": "mom" + request.query["jobid"][3:],
            "invalid_sender_list": {"user_list": m["invalid"], "department_list": []},
            "invalid_external_contact_list": {"tag_list": []}}})

    async def groupmsg_list(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        t0, t1 = int(body.get("start_time", 0)) * 1000, int(body.get("end_time", 0)) * 1000
        if t1 < t0 or t1 - t0 > 31 * DAY_MS:
            return self._err(40058, "start_time and end_time at most a month apart")
        rows = [{"msgid": m, "creator": t["sender"], "create_type": 0, "text": {"content": t["text"]},
                 "create_time": t["created"] // 1000}
                for m, t in self.s.templates.items()
                if t0 <= t["created"] <= t1 + 999 and t["chat_type"] == body.get("chat_type", "single")
                and (not body.get("creator") or t["sender"] == body["creator"])]
        start = int(body.get("cursor") or 0)
        nxt = str(start + 100) if start + 100 < len(rows) else ""
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": nxt, "group_msg_list":
                                  rows[start:start + 100]})

    async def groupmsg_task(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        tpl = self.s.templates.get(body.get("msgid"))
        if tpl is None:
            return self._err(41062, "no such msgid")
        st = 2 if tpl["executed"] else 0
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": "", "task_list": [
            {"userid": tpl["sender"], "status": st, "send_time": (tpl["executed"] or 0) // 1000}]})

    async def groupmsg_result(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        tpl = self.s.templates.get(body.get("msgid"))
        if tpl is None:
            return self._err(41062, "no such msgid")
        key = "chat_id" if tpl["chat_type"] == "group" else "external_userid"
        sent = (tpl["executed"] or 0) // 1000
        rows = [{key: r, "userid": tpl["sender"], "status": st, **({"send_time": sent} if st in (1, 3) else {})}
                for r, st in tpl["results"].items()]
        start = int(body.get("cursor") or 0)
        lim = min(1000, int(body.get("limit") or 1000))
        nxt = str(start + lim) if start + lim < len(rows) else ""
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": nxt,
                                  "send_list": rows[start:start + lim]})

    async def remind(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        tpl = self.s.templates.get((await request.json()).get("msgid"))
        if tpl is None:
            return self._err(41062, "no such msgid")
        now = self.clock.now_ms()
        recent = [t for t in tpl["reminders"] if now - t < DAY_MS]
        if len(recent) >= 3:
            return self._err(41094, "at most 3 reminders in 24 hours")
        tpl["reminders"] = recent + [now]
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def cancel(self, request: web.Request) -> web.Response:
        if (bad := self._auth(request)) is not None:
            return bad
        tpl = self.s.templates.get((await request.json()).get("msgid"))
        if tpl is None:
            return self._err(41062, "no such msgid")
        if tpl["cancelled"]:
            return self._err(41093, "already cancelled")
        tpl["cancelled"] = True
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def gettoken(self, request: web.Request) -> web.Response:
        self.s.calls.append("gettoken")
        if request.query.get("corpid") != self.s.corpid or request.query.get("corpsecret") not in self.s.secrets:
            return self._err(40001, "invalid credential")
        tok = secrets.token_urlsafe(24)
        self.s.tokens[tok] = self.clock.now_ms() + 7200_000
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": 7200})

    async def transfer_customer(self, request: web.Request) -> web.Response:
        resigned = "/resigned/" in request.path
        self.s.calls.append(request.path)
        if (bad := self._auth(request)) is not None:
            return bad
        self._settle()
        body = await request.json()
        ho, to, exts = body.get("handover_userid"), body.get("takeover_userid"), body.get("external_userid")
        if not isinstance(exts, list) or not 1 <= len(exts) <= 100:
            return self._err(40058, "external_userid: 1 … 100")
        msg = body.get("transfer_success_msg")
        if msg is not None and (resigned or len(msg) > 200):
            return self._err(40058, "transfer_success_msg: at most 200 characters (on-the-job only)")
        if ho == to:
            return self._err(40130, "handover and takeover are the same")
        if ho not in self.s.employees or to not in self.s.employees:
            return self._err(60111, "userid not found")
        if resigned and self.s.employees[ho]["status"] != "resigned":
            return self._err(40097, "the handover employee has not resigned")
        now = self.clock.now_ms()
        out = []
        for ext in exts:
            code = 0
            if not isinstance(ext, str) or not ext.startswith(("wm", "wo")):
                code = 40096
            elif (ho, ext) not in self.s.follows:
                code = 40131 if any(e == ext for _, e in self.s.follows) else 84061
            elif any(tr.ext == ext and tr.status == 2 for tr in self.s.transfers):
                code = 40129
            elif not resigned and len([t for t in self.s.history.get((ho, ext), []) if now - t < 90 * DAY_MS]) >= 2:
                code = 40128
            if code == 0:
                self.s.transfers.append(Transfer(ho, to, ext, now, resigned))
                if not resigned:
                    self.s.history.setdefault((ho, ext), []).append(now)
            out.append({"external_userid": ext, "errcode": code})
        return web.json_response({"errcode": 0, "errmsg": "ok", "customer": out})

    async def transfer_result(self, request: web.Request) -> web.Response:
        resigned = "/resigned/" in request.path
        self.s.calls.append(request.path)
        if (bad := self._auth(request)) is not None:
            return bad
        self._settle()
        body = await request.json()
        ho, to = body.get("handover_userid"), body.get("takeover_userid")
        rows = [tr for tr in self.s.transfers if tr.handover == ho and tr.takeover == to and tr.resigned == resigned]
        start = int(body.get("cursor") or 0)
        page = rows[start:start + 100]
        nxt = str(start + 100) if start + 100 < len(rows) else ""
        return web.json_response({"errcode": 0, "errmsg": "ok", "next_cursor": nxt, "customer": [
            {"external_userid": tr.ext, "status": tr.status, "takeover_time": (tr.start + DAY_MS) // 1000}
            for tr in page]})

    async def transfer_groups(self, request: web.Request) -> web.Response:
        resigned = request.path.endswith("/groupchat/transfer")
        self.s.calls.append(request.path)
        if (bad := self._auth(request)) is not None:
            return bad
        body = await request.json()
        ids, owner = body.get("chat_id_list"), body.get("new_owner")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            return self._err(40058, "chat_id_list: 1 … 100")
        if owner not in self.s.employees:
            return self._err(60111, "userid not found")
        day = datetime.fromtimestamp(self.clock.now_ms() / 1000, TZ).date().isoformat()
        failed = []
        for chat in ids:
            cur = self.s.groups.get(chat)
            code = 0
            if cur is None:
                code = 90501
            elif cur == owner:
                code = 90504
            elif resigned and self.s.employees.get(cur, {}).get("status") != "resigned":
                code = 90500
            elif not resigned and self.s.employees.get(cur, {}).get("status") == "resigned":
                code = 90502
            elif self.s.group_day.get((owner, day), 0) >= 300:
                code = 45034  # over the 300 groups a day
            if code:
                failed.append({"chat_id": chat, "errcode": code, "errmsg": "failed"})
            else:
                self.s.groups[chat] = owner
                self.s.group_day[(owner, day)] = self.s.group_day.get((owner, day), 0) + 1
        return web.json_response({"errcode": 0, "errmsg": "ok", "failed_chat_list": failed})
