"""Mass sends and quotas over HTTP. Stable paths: ``POST /api/v1/mass-sends`` (``kind``
member|enterprise, ``sender``, ``customers`` or ``groups`` or a ``filter``, ``text``,
``attachments``, optional ``scheduled_at``; the answer: the task with ``accepted`` and
``refused: [{recipient, rule}]``), ``GET /api/v1/mass-sends/{id}``, ``GET
/api/v1/quotas/{customer_or_group}``."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from control.api import decide, endpoint, json_response, read_off_loop
from control.errors import ApiError, json_body
from control.keys import CONFIG, STORE, USER
from control.messaging import quota
from control.messaging.sends import Sends
from control.trail import record
from scrm_fast.errors import InputError

routes = web.RouteTableDef()
SENDS = web.AppKey("sends", Sends)
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_SEND_BODY = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"enum": ["member", "enterprise"]}, "sender": {"type": "string"},
    "customers": {"type": "array", "items": {"type": "string"}},
    "groups": {"type": "array", "items": {"type": "string"}},
    "filter": {"type": "object"}, "text": {"type": "string", "maxLength": 4000},
    "attachments": {"type": "array", "maxItems": 9}, "scheduled_at": {"type": "integer"}}}


def _may_send(request: web.Request, doc: dict) -> None:
    user = request[USER]
    if doc.get("kind") == "enterprise" and "messaging.admin" not in user.perms:
        raise ApiError(403, "forbidden", "enterprise sends need messaging.admin")
    if doc.get("kind") == "member" and user.role_scope != "all" and doc.get("sender") != user.employee:
        raise ApiError(403, "forbidden", "a member sends as themselves (R-2)")


@routes.post("/api/v1/mass-sends/preview")
@endpoint("How many a send would reach and why the others would not (each with its rule); reserves nothing",
          perm="messaging.send", tag="messaging", body=_SEND_BODY)
async def preview(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    _may_send(request, doc)
    sends, directory = request.app[SENDS], request.app[STORE].directory() or {}
    return json_response(await read_off_loop(request, lambda: sends.read(lambda t: sends.preview(t, doc, directory))))


@routes.post("/api/v1/mass-sends")
@endpoint("Create a mass send: every recipient's quota checked and reserved atomically (Q-0 … Q-5); pushed to WeCom "
          "now or at scheduled_at", perm="messaging.send", tag="messaging", body=_SEND_BODY)
async def create(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    _may_send(request, doc)
    sends, directory, by = request.app[SENDS], request.app[STORE].directory() or {}, request[USER].username
    if sends.client_factory is None:
        raise ApiError(409, "conflict", "WeCom is not configured: set SCRM_WECOM_CORP and SCRM_WECOM_SECRET_FILE")
    s = await decide(request, lambda t: sends.create(t, doc, directory, by))
    await record(request, "mass_send_created", s["id"], {"kind": s["kind"], "accepted": len(s["recipients"]),
                                                        "refused": len(s["refused"])})
    accepted = list(s["recipients"])
    if s["state"] == "pushing":
        try:
            s = await sends.push(s["id"])
        except Exception as e:  # noqa: BLE001 - stored and reserved: the scheduler pushes it again
            s = {**(await asyncio.to_thread(sends.get, s["id"])),
                 "warning": f"WeCom did not answer ({type(e).__name__})"}
    return json_response({**sends.view(s), "accepted": accepted, "accepted_count": len(accepted)}, status=201)


@routes.get("/api/v1/mass-sends")
@endpoint("Mass sends with their state (Q-8)", perm="messaging.send", tag="messaging")
async def list_sends(request: web.Request) -> web.Response:
    sends, user = request.app[SENDS], request[USER]

    def fn(t):
        return [sends.view(s) for _, s in t.scan("ms.send")
                if user.role_scope == "all" or s["sender"] == user.employee]
    return json_response(await read_off_loop(request, lambda: sends.read(fn)))


async def _send(request: web.Request) -> dict:
    sends, user = request.app[SENDS], request[USER]
    try:
        s = await read_off_loop(request, sends.get, request.match_info["send_id"])
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    if user.role_scope != "all" and s["sender"] != user.employee:
        raise ApiError(404, "not_found", "no such mass send")
    return s


@routes.get("/api/v1/mass-sends/{send_id}")
@endpoint("One mass send: state (not started / running / done / failed, Q-8), members executed or not, each "
          "recipient's state", perm="messaging.send", tag="messaging", path={"send_id": _ID})
async def get_send(request: web.Request) -> web.Response:
    s = await _send(request)
    return json_response({**request.app[SENDS].view(s), "recipients": s["recipients"],
                          "settled_at": s.get("settled_at", {}), "accepted": list(s["recipients"])})


@routes.post("/api/v1/mass-sends/{send_id}/poll")
@endpoint("Ask WeCom about a send now (the server also does every minute)", perm="messaging.send", tag="messaging",
          path={"send_id": _ID})
async def poll(request: web.Request) -> web.Response:
    s = await _send(request)
    return json_response(request.app[SENDS].view(await request.app[SENDS].poll(s["id"])))


@routes.post("/api/v1/mass-sends/{send_id}/cancel")
@endpoint("Cancel a send: unsent recipients get their quota back", perm="messaging.send", tag="messaging",
          path={"send_id": _ID})
async def cancel(request: web.Request) -> web.Response:
    s = await _send(request)
    out = await _conflict(request.app[SENDS].cancel(s["id"]))
    await record(request, "mass_send_cancelled", s["id"])
    return json_response(request.app[SENDS].view(out))


@routes.post("/api/v1/mass-sends/{send_id}/remind")
@endpoint("Remind the members who have not executed it (at most 3 a day, Q-6)", perm="messaging.admin",
          tag="messaging", path={"send_id": _ID})
async def remind(request: web.Request) -> web.Response:
    s = await _send(request)
    return json_response(await _conflict(request.app[SENDS].remind(s["id"])))


async def _conflict(coro):
    from scrm_fast.errors import ConflictError

    try:
        return await coro
    except ConflictError as e:
        raise ApiError(409, "conflict", str(e)) from None


@routes.get("/api/v1/quotas/{recipient}")
@endpoint("What a customer or group received this day and month and what it may still receive (Q-0 … Q-3)",
          perm="messaging.send", tag="messaging", path={"recipient": _ID})
async def get_quota(request: web.Request) -> web.Response:
    sends, rid = request.app[SENDS], request.match_info["recipient"]
    return json_response(await read_off_loop(request, lambda: sends.read(
        lambda t: quota.usage(t, rid, sends.clock.now_ms()))))


@routes.put("/api/v1/quotas/settings")
@endpoint("The quota model (Q-0): seed (default) or daily-total", perm="messaging.admin", tag="messaging",
          body={"type": "object", "required": ["profile"], "properties": {"profile": {"enum": list(quota.PROFILES)}}})
async def put_profile(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    if set(doc) != {"profile"}:
        raise ApiError(422, "invalid", "body: {profile}")
    out = await decide(request, lambda t: quota.set_profile(t, doc["profile"]))
    await record(request, "quota_profile", "quotas", out)
    return json_response(out)


async def send_loop(app: web.Application) -> None:
    every = float(os.environ.get("SCRM_SEND_POLL_S", "60"))
    while True:
        await asyncio.sleep(every)
        if app[SENDS].client_factory is not None:
            await app[SENDS].run_due()


# -- moments (Q-7) ------------------------------------------------------------------------------
MOMENTS = web.AppKey("moments", object)


@routes.post("/api/v1/moments")
@endpoint("Post to customers' moments (Q-7: one a day per customer from members; 2000 characters; 9 images or 1 "
          "video or 1 link); refusals name their rule", perm="messaging.send", tag="messaging",
          body={"type": "object", "required": ["senders"], "properties": {
              "senders": {"type": "array", "items": {"type": "string"}}, "tags": {"type": "array"},
              "customers": {"type": "array"}, "text": {"type": "string", "maxLength": 2000},
              "attachments": {"type": "array"}}})
async def post_moment(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    user = request[USER]
    if user.role_scope != "all" and doc.get("senders") != [user.employee]:
        raise ApiError(403, "forbidden", "a member posts as themselves (R-2)")
    mo = request.app[MOMENTS]
    if mo.client_factory is None:
        raise ApiError(409, "conflict", "WeCom is not configured: set SCRM_WECOM_CORP and SCRM_WECOM_SECRET_FILE")
    directory = request.app[STORE].directory() or {}
    m = await decide(request, lambda t: mo.create(t, doc, directory, user.username))
    await record(request, "moment_created", m["id"], {"reached": len(m["reached"]), "refused": len(m["refused"])})
    try:
        m = await mo.push(m["id"])
    except Exception as e:  # noqa: BLE001 - stored: polled again
        m = {**m, "warning": f"WeCom did not answer ({type(e).__name__})"}
    return json_response(m, status=201)


@routes.get("/api/v1/moments/{moment_id}")
@endpoint("One moment: reached, refused (Q-7), WeCom's job and result", perm="messaging.send", tag="messaging",
          path={"moment_id": _ID})
async def get_moment(request: web.Request) -> web.Response:
    try:
        return json_response(await read_off_loop(request, request.app[MOMENTS].get, request.match_info["moment_id"]))
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None


@routes.post("/api/v1/moments/{moment_id}/poll")
@endpoint("Ask WeCom about a moment's job now", perm="messaging.send", tag="messaging", path={"moment_id": _ID})
async def poll_moment(request: web.Request) -> web.Response:
    mo = request.app[MOMENTS]
    try:
        await read_off_loop(request, mo.get, request.match_info["moment_id"])
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    return json_response(await mo.push(request.match_info["moment_id"]))


# -- welcome messages and channels (Q-10) ---------------------------------------------------------
WELCOME = web.AppKey("welcome", object)


@routes.put("/api/v1/welcome/default")
@endpoint("The default welcome message (Q-10: ≤ 500 characters, %NICKNAME% for the customer's name, remark ≤ 20, "
          "image ≤ 2 MB jpg/png)", perm="messaging.admin", tag="messaging",
          body={"type": "object", "required": ["text"]})
async def put_default_welcome(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    w = request.app[WELCOME]
    out = await decide(request, lambda t: w.put_welcome(t, "default", doc))
    await record(request, "welcome_default", "welcome")
    return json_response(out)


@routes.get("/api/v1/channels")
@endpoint("Channels (渠道活码) with their live codes and how many customers came through them", perm="messaging.send",
          tag="messaging")
async def list_channels(request: web.Request) -> web.Response:
    w = request.app[WELCOME]
    return json_response(await read_off_loop(request, lambda: w.read(lambda t: [v for _, v in t.scan("ms.channel")])))


@routes.post("/api/v1/channels")
@endpoint("Add a channel: employees, tags and its own welcome message; its live code is made in WeCom",
          perm="messaging.admin", tag="messaging", body={"type": "object", "required": ["name", "employees"]})
async def add_channel(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    w = request.app[WELCOME]
    ch = await decide(request, lambda t: w.add_channel(t, doc))
    if w.client_factory is not None:
        try:
            ch = await w.make_live_code(ch["id"])
        except Exception as e:  # noqa: BLE001 - the channel is kept; the code can be made again
            ch = {**ch, "warning": f"the live code was not made ({type(e).__name__})"}
    await record(request, "channel_added", ch["id"])
    return json_response(ch, status=201)


@routes.post("/api/v1/tag-invites")
@endpoint("Invite customers with tags into groups (Q-9: title ≤ 20, content ≤ 50, ≤ 10 tags any/all; each group's "
          "QR code until it would hold 200; those already in the groups filtered, Q-11; counts against Q-2)",
          perm="messaging.admin", tag="messaging", body={"type": "object", "required": ["title", "tags", "groups"]})
async def tag_invite(request: web.Request) -> web.Response:
    from control.messaging.sends import create_invite

    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    sends, directory, by = request.app[SENDS], request.app[STORE].directory() or {}, request[USER].username
    if sends.client_factory is None:
        raise ApiError(409, "conflict", "WeCom is not configured: set SCRM_WECOM_CORP and SCRM_WECOM_SECRET_FILE")
    inv = await decide(request, lambda t: create_invite(sends, t, doc, directory, by))
    for part in inv["sends"]:
        try:
            await sends.push(part["send"])
        except Exception:  # noqa: BLE001 - each send is stored and reserved: the scheduler pushes it again
            pass
    await record(request, "tag_invite", inv["id"], {"sends": len(inv["sends"]), "refused": len(inv["refused"])})
    return json_response(inv, status=201)


# -- the material library (seed 003 §5.6.1) ---------------------------------------------------------
@routes.get("/api/v1/materials")
@endpoint("Materials you may use (articles, videos, scripts) by category, with share counts", perm="messaging.send",
          tag="messaging", query={"kind": {"enum": ["article", "video", "script"]}, "category": "string"})
async def list_materials(request: web.Request) -> web.Response:
    from control.messaging import materials

    q, user, sends = request.query, request[USER], request.app[SENDS]
    emp = None if user.role_scope == "all" else user.employee

    def fn(t):
        return [m for _, m in t.scan("ms.material")
                if (emp is None or materials.visible(m, emp)) and q.get("kind") in (None, m["kind"])
                and q.get("category") in (None, m["category"])]
    return json_response(await read_off_loop(request, lambda: sends.read(fn)))


@routes.post("/api/v1/materials")
@endpoint("Add a material", perm="messaging.admin", tag="messaging", body={"type": "object", "required": ["kind"]})
async def add_material(request: web.Request) -> web.Response:
    from control.messaging import materials

    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    sends, by = request.app[SENDS], request[USER].username
    out = await decide(request, lambda t: materials.add(t, doc, by, sends.clock.now_ms()))
    return json_response(out, status=201)


@routes.put("/api/v1/materials/{material_id}")
@endpoint("Change a material (its category, scope, content)", perm="messaging.admin", tag="messaging",
          path={"material_id": _ID}, body={"type": "object"})
async def put_material(request: web.Request) -> web.Response:
    from control.messaging import materials

    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    mid = request.match_info["material_id"]
    return json_response(await decide(request, lambda t: materials.update(t, mid, doc)))
