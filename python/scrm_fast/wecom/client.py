"""The WeCom API client (``wecom-api.md`` §1, §4). Async (aiohttp); one instance per corp
and secret. Errors come back as HTTP 200 with a non-zero ``errcode``: a call whose errcode
is not 0 raises :class:`WeComError` (except where the API reports per-item results, which
are returned as they are)."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

TOKEN_INVALID = (42001, 40014)  # expired / invalid: fetch once more and retry once
RATE_LIMITED = (45009, 45033)
NO_RETRY = (40001, 60020, 48002)  # wrong secret, IP not trusted, not permitted: a person must act


def client_factory(base: str | None = None, corp: str | None = None, secret_file: str | None = None,
                   what: str = "SCRM_WECOM_SECRET_FILE"):
    """A factory of clients with the customer-contact secret, from the arguments or the
    environment (SCRM_WECOM_BASE, SCRM_WECOM_CORP, SCRM_WECOM_SECRET_FILE); None when no
    corp or secret file is given. An unreadable or empty secret file is an InputError."""
    import os

    from scrm_fast.errors import InputError

    base = base or os.environ.get("SCRM_WECOM_BASE", "https://qyapi.weixin.qq.com")
    corp = corp or os.environ.get("SCRM_WECOM_CORP", "")
    secret_file = secret_file or os.environ.get("SCRM_WECOM_SECRET_FILE", "")
    if not corp or not secret_file:
        return None
    try:
        with open(secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as e:
        raise InputError(f"{what} {secret_file}: {e.strerror}") from None
    if not secret:
        raise InputError(f"{what} {secret_file} is empty")
    return lambda: WeComClient(base, corp, secret)


class WeComError(Exception):
    def __init__(self, errcode: int, errmsg: str, api: str) -> None:
        super().__init__(f"{api}: WeCom error {errcode}: {errmsg}")
        self.errcode, self.errmsg, self.api = errcode, errmsg, api


class WeComClient:
    def __init__(self, base_url: str, corpid: str, secret: str, *, session: aiohttp.ClientSession | None = None,
                 timeout_s: float = 15.0, max_backoff_s: float = 8.0, access_token: str | None = None) -> None:
        """``base_url`` without ``/cgi-bin``; ``access_token``: a token given by the operator,
        used as it is (never refreshed: when WeCom rejects it, the call fails clearly)."""
        self.base = base_url.rstrip("/").removesuffix("/cgi-bin")
        self._fixed = access_token
        self.corpid, self._secret = corpid, secret
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._token: tuple[str, float] | None = None  # token, monotonic expiry
        self._lock = asyncio.Lock()
        self._max_backoff = max_backoff_s
        self.token_fetches = 0

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> WeComClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def token(self, *, force: bool = False) -> str:
        """The cached access token, fetched when missing or within 5 minutes of expiry; one
        fetch at a time however many callers wait (single-flight)."""
        if self._fixed is not None:
            if force:
                raise WeComError(42001, "the given access token was rejected; pass a fresh one", "gettoken")
            return self._fixed
        cur = self._token
        if not force and cur is not None and time.monotonic() < cur[1]:
            return cur[0]
        async with self._lock:
            if not force and self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            if force and self._token is not None and self._token is not cur:
                return self._token[0]  # someone refreshed while we waited
            async with self._http().get(f"{self.base}/cgi-bin/gettoken",
                                        params={"corpid": self.corpid, "corpsecret": self._secret}) as r:
                doc = await r.json(content_type=None)
            self.token_fetches += 1
            if doc.get("errcode", 0) != 0:
                raise WeComError(doc.get("errcode", -1), doc.get("errmsg", ""), "gettoken")
            ttl = int(doc.get("expires_in", 7200))
            self._token = (doc["access_token"], time.monotonic() + max(60, ttl - 300))
            return self._token[0]

    async def call(self, api: str, body: dict | None = None, *, method: str = "POST") -> dict:
        """One API call: the token in the query; 42001/40014 → one fresh token and one retry;
        45009/45033 → backoff with jitter, a few times; other errcodes raise."""
        tries, backoff, refreshed = 0, 0.5, False
        while True:
            tok = await self.token()
            url = f"{self.base}/cgi-bin/{api}"
            kw = {"params": {"access_token": tok}}
            if method == "POST":
                kw["json"] = body or {}
            else:
                kw["params"].update(body or {})
            async with self._http().request(method, url, **kw) as r:
                if r.status != 200:
                    raise WeComError(-r.status, f"HTTP {r.status}", api)
                doc = await r.json(content_type=None)
            code = doc.get("errcode", 0)
            if code == 0:
                return doc
            if code in TOKEN_INVALID and not refreshed and self._fixed is None:
                refreshed = True
                if self._token is not None and self._token[0] == tok:
                    self._token = None  # not a fresher one another caller fetched meanwhile
                continue
            if code in RATE_LIMITED and tries < 4:
                tries += 1
                await asyncio.sleep(min(self._max_backoff, backoff) * (0.5 + random.random()))
                backoff *= 2
                continue
            raise WeComError(code, doc.get("errmsg", ""), api)

    # -- inheritance (§4) ---------------------------------------------------------------------
    async def transfer_customer(self, handover: str, takeover: str, external_userids: list[str],
                                message: str | None = None, *, resigned: bool = False) -> list[dict]:
        """Per-customer results ``[{external_userid, errcode}]`` (≤ 100 a call)."""
        if not 1 <= len(external_userids) <= 100:
            raise ValueError("1 … 100 customers a call")
        body = {"handover_userid": handover, "takeover_userid": takeover, "external_userid": external_userids}
        if message and not resigned:
            if len(message) > 200:
                raise ValueError("the transfer message is at most 200 characters")
            body["transfer_success_msg"] = message
        api = "externalcontact/resigned/transfer_customer" if resigned else "externalcontact/transfer_customer"
        return (await self.call(api, body)).get("customer", [])

    async def transfer_result(self, handover: str, takeover: str, *, resigned: bool = False) -> list[dict]:
        """Every customer of this handover → takeover pair with its status, all pages."""
        api = "externalcontact/resigned/transfer_result" if resigned else "externalcontact/transfer_result"
        out, cursor = [], ""
        while True:
            doc = await self.call(api, {"handover_userid": handover, "takeover_userid": takeover, "cursor": cursor})
            out += doc.get("customer", [])
            cursor = doc.get("next_cursor") or ""
            if not cursor:
                return out

    async def transfer_groups(self, chat_ids: list[str], new_owner: str, *, resigned: bool) -> list[dict]:
        """``failed_chat_list`` (≤ 100 groups a call)."""
        if not 1 <= len(chat_ids) <= 100:
            raise ValueError("1 … 100 groups a call")
        api = "externalcontact/groupchat/transfer" if resigned else "externalcontact/groupchat/onjob_transfer"
        return (await self.call(api, {"chat_id_list": chat_ids, "new_owner": new_owner})).get("failed_chat_list", [])

    # -- mass messages (§5) ----------------------------------------------------------------
    async def add_msg_template(self, chat_type: str, sender: str, recipients: list[str], text: str,
                               attachments: list[dict]) -> tuple[str, list[str]]:
        """``(msgid, fail_list)``: one template for ``sender``'s customers (≤ 10,000) or groups (≤ 2,000)."""
        body: dict = {"chat_type": chat_type, "sender": sender, "allow_select": False}
        if chat_type == "group":
            if not 1 <= len(recipients) <= 2000:
                raise ValueError("1 … 2,000 groups a template")
            body["chat_id_list"] = recipients
        else:
            if not 1 <= len(recipients) <= 10_000:
                raise ValueError("1 … 10,000 customers a template")
            body["external_userid"] = recipients
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = attachments
        doc = await self.call("externalcontact/add_msg_template", body)
        return doc["msgid"], list(doc.get("fail_list", []))

    async def _dispatched(self, api: str, body: dict) -> dict:
        """Right after a create WeCom answers 41063 (being dispatched): wait and ask again."""
        for i in range(6):
            try:
                return await self.call(api, body)
            except WeComError as e:
                if e.errcode != 41063 or i == 5:
                    raise
                await asyncio.sleep(0.2 * (i + 1))
        raise AssertionError("unreachable")

    async def get_groupmsg_task(self, msgid: str) -> list[dict]:
        out, cursor = [], ""
        while True:
            doc = await self._dispatched("externalcontact/get_groupmsg_task",
                                         {"msgid": msgid, "limit": 1000, "cursor": cursor})
            out += doc.get("task_list", [])
            cursor = doc.get("next_cursor") or ""
            if not cursor:
                return out

    async def get_groupmsg_send_result(self, msgid: str, userid: str) -> list[dict]:
        out, cursor = [], ""
        while True:
            doc = await self._dispatched("externalcontact/get_groupmsg_send_result",
                                         {"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor})
            out += doc.get("send_list", [])
            cursor = doc.get("next_cursor") or ""
            if not cursor:
                return out

    async def remind_groupmsg_send(self, msgid: str) -> None:
        await self.call("externalcontact/remind_groupmsg_send", {"msgid": msgid})

    async def cancel_groupmsg_send(self, msgid: str) -> None:
        try:
            await self.call("externalcontact/cancel_groupmsg_send", {"msgid": msgid})
        except WeComError as e:
            if e.errcode != 41093:  # already cancelled: what we wanted
                raise

    async def get_groupmsg_list(self, chat_type: str, start_ms: int, end_ms: int,
                                creator: str | None = None) -> list[dict]:
        """Mass messages created in [start, end] (at most a month apart), all pages."""
        out, cursor = [], ""
        while True:
            body = {"chat_type": chat_type, "start_time": start_ms // 1000, "end_time": end_ms // 1000, "limit": 100,
                    "cursor": cursor, "filter_type": 2}
            if creator:
                body["creator"] = creator
            doc = await self.call("externalcontact/get_groupmsg_list_v2", body)
            out += doc.get("group_msg_list", [])
            cursor = doc.get("next_cursor") or ""
            if not cursor:
                return out

    # -- moments (§5) ------------------------------------------------------------------------
    async def add_moment_task(self, senders: list[str], tags: list[str], text: str, attachments: list[dict]) -> str:
        body: dict = {"visible_range": {"sender_list": {"user_list": senders}}}
        if tags:
            body["visible_range"]["external_contact_list"] = {"tag_list": tags}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = attachments
        return (await self.call("externalcontact/add_moment_task", body))["jobid"]

    async def get_moment_task_result(self, jobid: str) -> dict:
        return await self.call("externalcontact/get_moment_task_result", {"jobid": jobid}, method="GET")

    # -- contact ways and welcome messages (Q-10) ---------------------------------------------
    async def add_contact_way(self, users: list[str], *, state: str) -> tuple[str, str]:
        """A live code for several members (type 2, QR scene 2); ``state`` comes back in the
        add_external_contact event. Returns (config_id, qr_code URL)."""
        doc = await self.call("externalcontact/add_contact_way", {"type": 2, "scene": 2, "user": users,
                                                                  "state": state[:30]})
        return doc["config_id"], doc.get("qr_code", "")

    async def get_external_contact(self, external_userid: str) -> dict:
        doc = await self.read("externalcontact/get", {"external_userid": external_userid}, method="GET")
        return doc.get("external_contact", {})

    async def send_welcome_msg(self, welcome_code: str, text: str, attachments: list[dict]) -> None:
        body: dict = {"welcome_code": welcome_code}
        if text:
            body["text"] = {"content": text}
        if attachments:
            body["attachments"] = attachments
        await self.call("externalcontact/send_welcome_msg", body)

    async def mark_tag(self, userid: str, external_userid: str, tags: list[str]) -> None:
        await self.call("externalcontact/mark_tag", {"userid": userid, "external_userid": external_userid,
                                                     "add_tag": tags})

    # -- the directory (contacts) and the chat archive's consent (§3) --------------------------
    async def read(self, api: str, body: dict | None = None, *, method: str = "POST") -> dict:
        """:meth:`call` for reads, which may be repeated: a dropped connection or a timeout is
        tried again (three times, with backoff) instead of failing the whole refresh."""
        for attempt in range(4):
            try:
                return await self.call(api, body, method=method)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                if attempt == 3:
                    raise
                await asyncio.sleep(0.2 * 2 ** attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def departments(self) -> list[dict]:
        return (await self.read("department/list", method="GET")).get("department", [])

    async def users(self, department_id: int) -> list[dict]:
        """Members of a department and all below it (resigned members are not listed)."""
        doc = await self.read("user/list", {"department_id": department_id, "fetch_child": 1}, method="GET")
        return doc.get("userlist", [])

    async def permit_users(self) -> list[str]:
        """Employees with chat archiving enabled."""
        return (await self.read("msgaudit/get_permit_user_list", {})).get("ids", [])

    async def unassigned(self) -> list[dict]:
        """Resigned employees' customers not yet handed over: handover_userid,
        external_userid, dimission_time (s)."""
        out, cursor = [], ""
        while True:
            doc = await self.read("externalcontact/get_unassigned_list", {"page_size": 1000, "cursor": cursor})
            out += doc.get("info", [])
            cursor = doc.get("next_cursor", "")
            if doc.get("is_last", True) or not cursor:
                return out

    async def customers_of(self, userids: list[str]) -> list[dict]:
        """``batch/get_by_user`` for ≤ 100 employees at a time, every page: items of
        ``external_contact`` (the customer) and ``follow_info`` (who follows, since when)."""
        out = []
        for i in range(0, len(userids), 100):
            cursor = ""
            while True:
                doc = await self.read("externalcontact/batch/get_by_user",
                                      {"userid_list": userids[i:i + 100], "cursor": cursor, "limit": 100})
                out += doc.get("external_contact_list", [])
                cursor = doc.get("next_cursor", "")
                if not cursor:
                    break
        return out

    async def group_chat_ids(self) -> list[str]:
        ids, cursor = [], ""
        while True:
            doc = await self.read("externalcontact/groupchat/list", {"status_filter": 0, "cursor": cursor,
                                                                     "limit": 1000})
            ids += [g["chat_id"] for g in doc.get("group_chat_list", [])]
            cursor = doc.get("next_cursor", "")
            if not cursor:
                return ids

    async def group_chat(self, chat_id: str) -> dict:
        return (await self.read("externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 0})).get(
            "group_chat", {})

    async def check_single_agree(self, pairs: list[tuple[str, str]]) -> list[dict]:
        """(userid, external_userid) pairs, ≤ 100 a call: ``agreeinfo`` items
        (``exteranalopenid`` is the API's own spelling)."""
        out = []
        for i in range(0, len(pairs), 100):
            doc = await self.read("msgaudit/check_single_agree",
                                  {"info": [{"userid": u, "exteranalopenid": c} for u, c in pairs[i:i + 100]]})
            out += doc.get("agreeinfo", [])
        return out

    async def check_room_agree(self, roomid: str) -> list[dict]:
        """Each external member's ``agree_status`` in a group (the field is ``agree_status``)."""
        return (await self.read("msgaudit/check_room_agree", {"roomid": roomid})).get("agreeinfo", [])
