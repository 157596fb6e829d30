"""Archive views (rules V-1 … V-4): employees, conversations, messages. Scope-filtered;
every content read goes to the access trail (R-4)."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from control.api import endpoint, json_response, read_measured, read_off_loop
from control.archive import allowed_employees
from control.errors import ApiError
from control.keys import STORE, USER, VIEWS
from control.trail import record
from scrm_fast.errors import InputError

routes = web.RouteTableDef()


def _int(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(request.query.getall(name)) > 1:
        raise ApiError(400, "bad_request", f"query parameter '{name}' given more than once")
    from scrm_fast.strict import RangeError, sint

    try:
        return sint(raw, f"query parameter '{name}'", lo, hi)
    except RangeError as e:
        raise ApiError(422, "invalid", str(e)) from None
    except InputError as e:
        raise ApiError(400, "bad_request", str(e)) from None


def _ident(value: str, what: str, max_len: int = 200) -> str:
    from scrm_fast.strict import ident

    try:
        return ident(value, what, max_len)
    except InputError as e:
        raise ApiError(422, "invalid", str(e)) from None


@routes.get("/api/v1/employees")
@endpoint("Employees in your data scope with archive status (V-1, V-3)", perm="archive.read",
          query={"status": {"enum": ["active", "resigned"]}, "q": "string"})
async def employees(request: web.Request) -> web.Response:
    d = request.app[VIEWS].directory()
    allowed = allowed_employees(request[USER], d)
    status = request.query.get("status")
    if status not in (None, "active", "resigned"):
        raise ApiError(422, "invalid", "status must be active or resigned")
    q = request.query.get("q", "")
    out = []
    for uid, e in sorted(d.employees.items()):
        if allowed is not None and uid not in allowed:
            continue
        if status and e.get("status", "active") != status:
            continue
        if q and q not in uid and q not in e.get("name", ""):
            continue
        dept = d.departments.get(e.get("department"), {})
        out.append({"userid": uid, "name": e.get("name", uid), "department": dept.get("name"),
                    "archived": e.get("archived", True), "status": e.get("status", "active"),
                    "resigned_at": e.get("resigned_at"), "leader": e.get("leader")})
    return json_response(out)


@routes.get("/api/v1/conversations")
@endpoint("Conversations in your data scope (V-2 counterpart lists)", perm="archive.read",
          query={"employee": "string", "kind": {"enum": ["external", "internal", "group"]}})
async def conversations(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind not in (None, "external", "internal", "group"):
        raise ApiError(422, "invalid", "kind must be external, internal or group")
    rows = await read_off_loop(request, request.app[VIEWS].conversations, request[USER],
                               request.query.get("employee"), kind)
    return json_response(rows)


@routes.get("/api/v1/conversations/{conv}/messages")
@endpoint("Messages of one conversation, newest first (V-2 tabs and time ranges)", perm="archive.read", trailed=True,
          query={"type": {"enum": ["all", "image_video", "file", "link", "voice_call", "voice"]},
                 "days": {"type": "integer", "minimum": 1, "maximum": 3650},
                 "since": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "until": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "before_seq": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "after_seq": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "limit": {"type": "integer", "minimum": 1, "maximum": 500}})
async def messages(request: web.Request) -> web.Response:
    conv = _ident(request.match_info["conv"], "conversation id", 600)
    days = _int(request, "days", 1, 3650)
    page = await read_off_loop(
        request, request.app[VIEWS].messages, request[USER], conv, request.query.get("type", "all"), days,
        _int(request, "since", 0, 2**62), _int(request, "until", 0, 2**62), _int(request, "before_seq", 0, 2**62),
        _int(request, "limit", 1, 500) or 50, _int(request, "after_seq", 0, 2**62))
    from scrm_fast.media import annotate

    annotate(request.app[STORE], page["items"])
    await record(request, "read_messages", conv, {"seqs": [m["seq"] for m in page["items"]]})
    return json_response(page)


@routes.get("/api/v1/messages/{seq}")
@endpoint("One message in full", perm="archive.read", trailed=True,
          path={"seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}})
async def message(request: web.Request) -> web.Response:
    seq, m = _seq_message(request)
    await record(request, "read_message", str(seq), {"conv": m["conv"]})
    return json_response(m)


_MEDIA_TYPES = {"image": "image/jpeg", "emotion": "image/gif", "voice": "audio/amr", "video": "video/mp4",
                "meeting_voice_call": "application/octet-stream"}


def _seq_message(request: web.Request) -> tuple[int, dict]:
    """The ``{seq}`` of the path and its message, in the caller's scope (404 outside it)."""
    from scrm_fast.strict import uint

    try:
        seq = uint(request.match_info["seq"], "seq")
    except InputError as e:
        # +23962, 2_3962, 023962 are not the id 23962: only its canonical form names it
        raise ApiError(400, "bad_request", str(e)) from None
    return seq, request.app[VIEWS].message(request[USER], seq)


@routes.get("/api/v1/messages/{seq}/media")
@endpoint("The media of one message: kind, file name, size and state (pending, stored, or why not)",
          perm="archive.read", trailed=True, path={"seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}})
async def message_media(request: web.Request) -> web.Response:
    from scrm_fast.media import media_of

    seq, m = _seq_message(request)
    items = [{k: v for k, v in x.items() if k != "_item"} for x in media_of(request.app[STORE], seq)]
    await record(request, "list_media", str(seq), {"conv": m["conv"], "items": len(items)})
    return json_response({"seq": seq, "items": items})


@routes.get("/api/v1/messages/{seq}/media/{n}")
@endpoint("One media item's content (images inline, files as attachments; format=wav: a voice message "
          "decoded from AMR for the browser); each read is trailed",
          perm="archive.read", trailed=True, content="application/octet-stream",
          path={"seq": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                "n": {"type": "integer", "minimum": 0, "maximum": 999}},
          query={"format": {"enum": ["wav"]}})
async def message_media_content(request: web.Request) -> web.StreamResponse:
    from scrm_fast.media import media_of
    from scrm_fast.strict import uint

    seq, m = _seq_message(request)
    try:
        n = uint(request.match_info["n"], "n")
    except InputError as e:
        raise ApiError(400, "bad_request", str(e)) from None
    items = media_of(request.app[STORE], seq)
    if n >= len(items):
        raise ApiError(404, "not_found", f"message {seq} has no media item {n}")
    it = items[n]
    if it["state"] != "stored":
        raise ApiError(409, "not_available", f"media item {n} of message {seq} is {it['state']}")
    item = it["_item"]
    media = request.app[STORE].media
    path = media.final(item["name"])
    fmt = request.query.get("format")
    if fmt not in (None, "wav") or (fmt == "wav" and it["kind"] != "voice"):
        raise ApiError(400, "bad_request", "format=wav is for voice messages only")
    if fmt == "wav":
        from scrm_fast.voice import amr_to_wav

        def decode() -> bytes:
            return amr_to_wav(b"".join(media.chunks(path, item["id"])))
        try:
            wav = await asyncio.to_thread(decode)
        except InputError as e:
            raise ApiError(422, "invalid", f"voice message {seq}: {e}") from None
        await record(request, "read_media", f"{seq}/{n}", {"conv": m["conv"], "kind": "voice", "format": "wav"})
        return web.Response(body=wav, headers={"Content-Type": "audio/wav", "Cache-Control": "private, no-store",
                                               "X-Content-Type-Options": "nosniff"})
    await record(request, "read_media", f"{seq}/{n}", {"conv": m["conv"], "kind": it["kind"], "size": item["size"]})
    ext = (it["filename"].rsplit(".", 1)[-1].lower() if "." in it["filename"] else "")
    ctype = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(
        ext, _MEDIA_TYPES.get(it["kind"], "application/octet-stream"))
    resp = web.StreamResponse(headers={"Content-Type": ctype, "Content-Length": str(item["size"]),
                                       "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})
    if it["kind"] in ("file", "voip_doc_share", "meeting_voice_call"):
        from urllib.parse import quote

        name = it["filename"] or f"{seq}-{n}"
        resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    await resp.prepare(request)
    chunks = media.chunks(path, item["id"])
    while True:
        c = await asyncio.to_thread(next, chunks, None)
        if c is None:
            break
        await resp.write(c)
    await resp.write_eof()
    return resp


@routes.get("/api/v1/stats")
@endpoint("Archive counts and the checkpoint; a scoped role gets the conversations in its scope, not the "
          "tenant's totals (R-2)", perm="archive.read")
async def stats(request: web.Request) -> web.Response:
    store = request.app[STORE]
    views = request.app[VIEWS]
    d = views.directory()
    allowed = allowed_employees(request[USER], d)
    if allowed is None:
        from control.customers.routes import TRANSFERS
        from scrm_fast.sync import lag

        out = {**store.counts(), "checkpoint": store.checkpoint(),
               "sync": lag(store, request.app[TRANSFERS].clock.now_ms())}
        if "consent.read" in request[USER].perms:
            out["consent"] = store.rule_counts()
        return json_response(out)
    convs = await read_off_loop(request, lambda: sum(
        1 for c in views.catalog.conversations() if c.conv.startswith(("p:", "g:"))
        and views.visible(c.conv, allowed, d)))
    return json_response({"checkpoint": store.checkpoint(), "scope": request[USER].scope,
                          "conversations": convs})


_SEARCH_LIMIT = 100


def _str(request: web.Request, name: str, max_len: int = 200) -> str | None:
    vals = request.query.getall(name, [])
    if len(vals) > 1:
        raise ApiError(400, "bad_request", f"query parameter '{name}' given more than once")
    v = vals[0] if vals else None
    if v is not None and len(v) > max_len:
        raise ApiError(422, "invalid", f"query parameter '{name}' is longer than {max_len} characters")
    if v and name != "q":  # ids; a query may hold any text
        _ident(v, f"query parameter '{name}'", max_len)
    return v or None


@routes.get("/api/v1/search")
@endpoint("Search the archive, newest first: every term must occur as a substring (case and width folded, "
          "CJK-exact); OR, NOT or -term, (parentheses), \"quoted phrases\"; filters narrow (V-2, V-5)",
          perm="archive.read", trailed=True,
          query={"q": {"type": "string", "maxLength": 1000}, "employee": "string", "customer": "string",
                 "group": "string", "conv": "string",
                 "type": {"enum": ["all", "image_video", "file", "link", "voice_call", "voice"]},
                 "days": {"type": "integer", "minimum": 1, "maximum": 3650},
                 "since": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "until": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "cursor": "string", "limit": {"type": "integer", "minimum": 1, "maximum": _SEARCH_LIMIT}})
async def search(request: web.Request) -> web.Response:
    from scrm_fast import reads
    from scrm_fast.errors import InputError, QuerySyntaxError

    views = request.app[VIEWS]
    user = request[USER]
    q = _str(request, "q", 1000) or ""
    employee = _str(request, "employee")
    d = views.directory()
    allowed = allowed_employees(user, d)
    if employee is not None and allowed is not None and employee not in allowed:
        raise ApiError(403, "forbidden", f"employee {employee} is outside your data scope")
    type_group = _str(request, "type") or "all"
    filters = {"employee": employee, "customer": _str(request, "customer"), "group": _str(request, "group"),
               "conv": _str(request, "conv"), "type_group": type_group, "days": _int(request, "days", 1, 3650),
               "since": _int(request, "since", 0, 2**62), "until": _int(request, "until", 0, 2**62)}
    try:
        limit = _int(request, "limit", 1, _SEARCH_LIMIT) or 20
        # the same query, filters, page size and caller cost the same on every page
        key = ("search", q, limit, user.username, *filters.values())
        total, items, nxt, seqs = await read_measured(
            request, key, views.search.page, q, **filters, cursor=_str(request, "cursor", 64), limit=limit,
            scope=views.search_scope(user), names=d.names)
    except QuerySyntaxError as e:
        raise ApiError(422, "invalid_query", str(e)) from None
    except InputError as e:
        raise ApiError(422, "invalid", str(e)) from None
    lag = views.search.lag()
    await record(request, *reads.search_entry(q, filters, seqs))
    # the items come as JSON from Rust (see ArchiveSearch.page); the page is put around them
    body = b'{"total":%d,"items":%b,"next_cursor":%b,"index_lag":%d}' % (total, items, orjson.dumps(nxt), lag)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _bool(request: web.Request, name: str) -> bool | None:
    v = _str(request, name)
    if v is None:
        return None
    if v not in ("true", "false"):
        raise ApiError(422, "invalid", f"query parameter '{name}' must be true or false")
    return v == "true"


@routes.get("/api/v1/archive/employees")
@endpoint("Employee archive lists with counts: active (V-1) or resigned (V-3), in your data scope",
          perm="archive.read",
          query={"status": {"enum": ["active", "resigned"]}, "department": {"type": "integer", "minimum": 0,
                                                                             "maximum": 2**31},
                 "name": "string", "enabled": {"enum": ["true", "false"]},
                 "resigned_since": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "resigned_until": {"type": "integer", "minimum": 0, "maximum": 2**62}})
async def archive_employees(request: web.Request) -> web.Response:
    views = request.app[VIEWS]
    status = _str(request, "status") or "active"
    if status not in ("active", "resigned"):
        raise ApiError(422, "invalid", "status must be active or resigned")
    allowed = allowed_employees(request[USER], views.directory())
    out = await asyncio.to_thread(
        views.catalog.employees, views.raw_directory(), status=status, allowed=allowed,
        department=_int(request, "department", 0, 2**31), name=_str(request, "name"),
        enabled=_bool(request, "enabled"), resigned_since=_int(request, "resigned_since", 0, 2**62),
        resigned_until=_int(request, "resigned_until", 0, 2**62))
    return json_response(out)


@routes.get("/api/v1/archive/customers")
@endpoint("Customer archive list (V-4): follow-up employees, collaborators, sessions, last session time",
          perm="archive.read", query={"follow_user": "string", "name": "string"})
async def archive_customers(request: web.Request) -> web.Response:
    from scrm_fast.views import latest_consent

    views = request.app[VIEWS]
    allowed = allowed_employees(request[USER], views.directory())
    raw = views.raw_directory()
    out = await asyncio.to_thread(lambda: views.catalog.customers(
        raw, consent=latest_consent(views.store, raw), allowed=allowed, follow_user=_str(request, "follow_user"),
        name=_str(request, "name")))
    return json_response(out)
