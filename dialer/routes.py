"""The dialer's HTTP API under ``/api/v1/dialer/`` (mounted by ``control.app``).

Two kinds of caller: operators (bearer tokens, permissions ``dialer.admin`` /
``dialer.call`` / ``dialer.read``, data scope R-2) and devices (``Authorization: Device
<token>``, given once when the device is added). Every decision goes through the process's
:class:`~scrm_fast.storage.GroupCommit`: one atomic transaction per decision, one disk sync
per group of them."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from control.api import decide, endpoint, json_response, read_off_loop
from control.archive import allowed_employees
from control.errors import ApiError, fields, json_body
from control.keys import ACCOUNTS, CONFIG, DEVICE, DIALER, USER, VIEWS
from control.trail import record
from dialer import rules
from dialer.service import NotFound
from scrm_fast.errors import InputError
from scrm_fast.strict import sint

routes = web.RouteTableDef()
# set when the server shuts down: the event streams end, so shutdown does not wait on them
STREAMS_STOP = web.AppKey("dialer_streams_stop", asyncio.Event)


async def on_startup(app: web.Application) -> None:
    app[STREAMS_STOP] = asyncio.Event()


async def on_shutdown(app: web.Application) -> None:
    app[STREAMS_STOP].set()


_ID = {"type": "string", "pattern": "^[a-z0-9.]{1,40}$"}


async def body(request: web.Request, spec: dict) -> dict:
    return fields(await json_body(request, request.app[CONFIG].max_json_bytes), spec)


# -- settings, devices, seats, campaigns, DNC (dialer.admin) ----------------------------------
@routes.get("/api/v1/dialer/settings")
@endpoint("The dialer's settings (D-1 … D-6, D-12) with seed 003's advice beside each", perm="dialer.read",
          tag="dialer")
async def get_settings(request: web.Request) -> web.Response:
    dl = request.app[DIALER]
    s = await read_off_loop(request, dl.settings)
    used = await read_off_loop(request, lambda: dl.seats()["used"])
    return json_response({"settings": s.to_doc(), "warnings": s.warnings(), "licences_used": used,
                          "advice": {k: {"rule": v["rule"], "advice": v["advice"], "min": v["min"], "max": v["max"]}
                                     for k, v in rules.SETTINGS.items()}})


@routes.put("/api/v1/dialer/settings")
@endpoint("Change dialer settings (licences never below the seats using them, D-6)", perm="dialer.admin",
          tag="dialer", body={"type": "object"})
async def put_settings(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    dl = request.app[DIALER]
    out = await decide(request, lambda t: dl.update_settings(t, doc))
    await record(request, "dialer_settings", "dialer", {"changed": sorted(doc)})
    return json_response(out)


@routes.get("/api/v1/dialer/devices")
@endpoint("Devices with their SIMs, today's counts and caps", perm="dialer.read", tag="dialer")
async def list_devices(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[DIALER].devices))


@routes.post("/api/v1/dialer/devices")
@endpoint("Add a device with its SIM slots; the answer carries the device's token (shown once)",
          perm="dialer.admin", tag="dialer",
          body={"type": "object", "required": ["name", "sims"], "additionalProperties": False,
                "properties": {"name": {"type": "string"}, "department": {"type": "integer"},
                               "popup": {"type": "boolean"},
                               "sims": {"type": "array", "items": {"type": "object"}}}})
async def add_device(request: web.Request) -> web.Response:
    doc = await body(request, {"name": (str, True), "sims": (list, True), "department": (int, False),
                               "popup": (bool, False)})
    dl = request.app[DIALER]
    out = await decide(request, lambda t: dl.add_device(t, doc["name"], doc["sims"], doc.get("department"),
                                                       doc.get("popup", True)))
    await record(request, "dialer_device_added", out["id"], {"sims": len(out["sims"])})
    return json_response(out, status=201)


@routes.put("/api/v1/dialer/devices/{device_id}")
@endpoint("Enable or disable a device, switch its pop-up", perm="dialer.admin", tag="dialer",
          path={"device_id": _ID}, body={"type": "object", "properties": {
              "state": {"enum": ["active", "disabled"]}, "popup": {"type": "boolean"}}})
async def put_device(request: web.Request) -> web.Response:
    doc = await body(request, {"state": (str, False), "popup": (bool, False)})
    dl, did = request.app[DIALER], request.match_info["device_id"]
    out = await decide(request, lambda t: dl.set_device(t, did, doc.get("state"), doc.get("popup")))
    await record(request, "dialer_device_changed", did, doc)
    return json_response(out)


@routes.put("/api/v1/dialer/sims/{sim_id}")
@endpoint("Set a SIM's state (active / disabled / blocked)", perm="dialer.admin", tag="dialer", path={"sim_id": _ID},
          body={"type": "object", "required": ["state"], "properties": {"state": {"enum": ["active", "disabled",
                                                                                            "blocked"]}}})
async def put_sim(request: web.Request) -> web.Response:
    doc = await body(request, {"state": (str, True)})
    dl, sid = request.app[DIALER], request.match_info["sim_id"]
    out = await decide(request, lambda t: dl.set_sim(t, sid, doc["state"]))
    await record(request, "dialer_sim_state", sid, {"state": doc["state"]})
    return json_response({**out, "number": rules.mask_number(out["number"])})


@routes.get("/api/v1/dialer/seats")
@endpoint("Seats, licences bought and in use (D-6)", perm="dialer.read", tag="dialer")
async def list_seats(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[DIALER].seats))


@routes.put("/api/v1/dialer/seats")
@endpoint("Set seats in bulk: device and outbound permission; enabling beyond the licences is refused (D-6)",
          perm="dialer.admin", tag="dialer",
          body={"type": "object", "required": ["seats"], "properties": {"seats": {"type": "array", "items": {
              "type": "object", "required": ["employee", "outbound"], "properties": {
                  "employee": {"type": "string"}, "device": {"type": ["string", "null"]},
                  "outbound": {"type": "boolean"}, "department": {"type": "integer"}}}}}})
async def put_seats(request: web.Request) -> web.Response:
    doc = await body(request, {"seats": (list, True)})
    items = []
    for s in doc["seats"]:
        if not isinstance(s, dict):
            raise ApiError(422, "invalid", "each seat: an object")
        one = fields(s, {"employee": (str, True), "device": (str, False), "outbound": (bool, True),
                         "department": (int, False)})
        items.append(one)
    if not 1 <= len(items) <= 1000:
        raise ApiError(422, "invalid", "seats: 1 to 1000 entries")
    dl = request.app[DIALER]

    def fn(t):  # all or nothing: one seat over the licences refuses the whole change
        return [dl.set_seat(t, s["employee"], s.get("device"), s["outbound"], s.get("department")) for s in items]
    out = await decide(request, fn)
    await record(request, "dialer_seats", "dialer", {"employees": [s["employee"] for s in items][:100]})
    return json_response({"seats": out})


@routes.get("/api/v1/dialer/campaigns")
@endpoint("Campaigns with their numbers' states", perm="dialer.read", tag="dialer")
async def list_campaigns(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[DIALER].campaigns))


@routes.post("/api/v1/dialer/campaigns")
@endpoint("Add a campaign: numbers (or {number, customer}), priority 0–9, retries and their spacing",
          perm="dialer.admin", tag="dialer",
          body={"type": "object", "required": ["name", "numbers"], "properties": {
              "name": {"type": "string"}, "numbers": {"type": "array"}, "priority": {"type": "integer"},
              "retries": {"type": "integer"}, "retry_spacing_s": {"type": "integer"}}})
async def add_campaign(request: web.Request) -> web.Response:
    doc = await body(request, {"name": (str, True), "numbers": (list, True), "priority": (int, False),
                               "retries": (int, False), "retry_spacing_s": (int, False)})
    dl = request.app[DIALER]
    out = await decide(request, lambda t: dl.add_campaign(t, doc["name"], doc["numbers"], doc.get("priority", 5),
                                                         doc.get("retries", 1), doc.get("retry_spacing_s", 3600)))
    await record(request, "dialer_campaign_added", out["id"], {"numbers": out["total"]})
    return json_response(out, status=201)


@routes.post("/api/v1/dialer/campaigns/import")
@endpoint("Add a campaign from a CSV file (UTF-8; columns number[,customer]; a header row is recognised); "
          "answers the campaign and a per-row report of what was not taken", perm="dialer.admin", tag="dialer",
          upload="text/csv",
          query={"name": "string", **{k: {"type": "integer", "minimum": 0, "maximum": 30 * 86400}
                                      for k in ("priority", "retries", "retry_spacing_s")}})
async def import_campaign(request: web.Request) -> web.Response:
    import csv
    import io

    q = request.query
    if set(q) - {"name", "priority", "retries", "retry_spacing_s"}:
        raise ApiError(400, "bad_request", "parameters: name, priority, retries, retry_spacing_s")
    name = q.get("name", "")
    opts = {k: sint(q[k], k, 0, 30 * 86400) for k in ("priority", "retries", "retry_spacing_s") if k in q}
    limit = 8 << 20
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"CSV over {limit} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid", "the file is not UTF-8 text (save the spreadsheet as CSV UTF-8)") from None
    if "\0" in text:
        raise ApiError(422, "invalid", "the file is not a CSV text file")
    items, report, seen = [], [], {}
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise ApiError(422, "invalid", f"not a CSV file: {e}") from None
    if len(rows) > 100_001:
        raise ApiError(422, "invalid", "at most 100,000 numbers per campaign")
    for i, row in enumerate(rows, start=1):
        if not row or not any(c.strip() for c in row):
            continue
        cell = row[0].strip()
        try:
            number = rules.normalise_number(cell)
        except InputError as e:
            if i == 1:  # a header row
                continue
            report.append({"row": i, "status": "invalid", "reason": str(e)})
            continue
        if number in seen:
            report.append({"row": i, "status": "duplicate", "of_row": seen[number]})
            continue
        seen[number] = i
        customer = row[1].strip()[:64] if len(row) > 1 and row[1].strip() else None
        items.append({"number": number, "customer": customer})
    if not items:
        raise ApiError(422, "invalid", "no phone numbers in the file")
    dl = request.app[DIALER]
    out = await decide(request, lambda t: dl.add_campaign(t, name, items, opts.get("priority", 5),
                                                         opts.get("retries", 1), opts.get("retry_spacing_s", 3600)))
    await record(request, "dialer_campaign_imported", out["id"], {"numbers": out["total"], "rejected": len(report)})
    return json_response({"campaign": out, "accepted": len(items), "rejected": report}, status=201)


@routes.put("/api/v1/dialer/campaigns/{campaign_id}")
@endpoint("Pause or resume a campaign", perm="dialer.admin", tag="dialer", path={"campaign_id": _ID},
          body={"type": "object", "required": ["state"], "properties": {"state": {"enum": ["active", "paused"]}}})
async def put_campaign(request: web.Request) -> web.Response:
    doc = await body(request, {"state": (str, True)})
    dl, cid = request.app[DIALER], request.match_info["campaign_id"]
    return json_response(await decide(request, lambda t: dl.set_campaign_state(t, cid, doc["state"])))


@routes.get("/api/v1/dialer/dnc")
@endpoint("The do-not-call list (D-11), numbers masked", perm="dialer.read", tag="dialer")
async def list_dnc(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[DIALER].dnc))


@routes.post("/api/v1/dialer/dnc")
@endpoint("Put numbers on the do-not-call list (D-11): every campaign and employee", perm="dialer.admin",
          tag="dialer", body={"type": "object", "required": ["numbers"], "properties": {
              "numbers": {"type": "array", "items": {"type": "string"}}, "reason": {"type": "string"}}})
async def add_dnc(request: web.Request) -> web.Response:
    doc = await body(request, {"numbers": (list, True), "reason": (str, False)})
    if not 1 <= len(doc["numbers"]) <= 10_000:
        raise ApiError(422, "invalid", "numbers: 1 to 10,000 entries")
    dl, by = request.app[DIALER], request[USER].username
    out = await decide(request, lambda t: [dl.add_dnc(t, n, doc.get("reason", ""), by) for n in doc["numbers"]])
    await record(request, "dialer_dnc_added", "dnc", {"count": len(out)})
    return json_response(out, status=201)


@routes.post("/api/v1/dialer/dnc/remove")
@endpoint("Take numbers off the do-not-call list", perm="dialer.admin", tag="dialer",
          body={"type": "object", "required": ["numbers"], "properties": {
              "numbers": {"type": "array", "items": {"type": "string"}}}})
async def remove_dnc(request: web.Request) -> web.Response:
    doc = await body(request, {"numbers": (list, True)})
    dl = request.app[DIALER]
    out = await decide(request, lambda t: sum(dl.remove_dnc(t, n) for n in doc["numbers"]))
    await record(request, "dialer_dnc_removed", "dnc", {"count": out})
    return json_response({"removed": out})


@routes.post("/api/v1/dialer/contacts")
@endpoint("The caller records the pop-up shows (D-9): number, name, creator", perm="dialer.call", tag="dialer",
          body={"type": "object", "required": ["number", "name"], "properties": {
              "number": {"type": "string"}, "name": {"type": "string"}, "customer": {"type": "string"}}})
async def add_contact(request: web.Request) -> web.Response:
    doc = await body(request, {"number": (str, True), "name": (str, True), "customer": (str, False)})
    if not 0 < len(doc["name"]) <= 100:
        raise ApiError(422, "invalid", "name: 1–100 characters")
    dl, user = request.app[DIALER], request[USER]
    out = await decide(request, lambda t: dl.add_contact(t, doc["number"], doc["name"], doc.get("customer"),
                                                        user.username, user.department))
    return json_response(out, status=201)


# -- the device API ---------------------------------------------------------------------
@routes.post("/api/v1/dialer/next")
@endpoint("Device: the next call to dial — one atomic reservation of every cap (D-10) — or a refusal with its "
          "reason code and rule", device=True, tag="dialer-device")
async def next_call(request: web.Request) -> web.Response:
    dl, dev_id = request.app[DIALER], request[DEVICE]
    return json_response(await decide(request, lambda t: dl.next_call(t, dev_id)))


@routes.post("/api/v1/dialer/calls")
@endpoint("Device: report a call record (idempotent by call_id; late and out-of-order reports accepted)",
          device=True, tag="dialer-device",
          body={"type": "object", "required": ["call_id", "outcome", "started_at", "ended_at"], "properties": {
              "call_id": {"type": "string"}, "reservation": {"type": "string"},
              "direction": {"enum": ["out", "in"]}, "number": {"type": "string"}, "sim": {"type": "string"},
              "started_at": {"type": "integer"}, "answered_at": {"type": "integer"},
              "ended_at": {"type": "integer"}, "talk_seconds": {"type": "integer"},
              "outcome": {"enum": ["answered", "no_answer", "busy", "rejected", "failed", "not_dialled"]},
              "recording": {"type": "string"}}})
async def report_call(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    allowed = {"call_id", "reservation", "direction", "number", "sim", "started_at", "answered_at", "ended_at",
               "talk_seconds", "outcome", "recording"}
    if set(doc) - allowed:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(sorted(set(doc) - allowed))}")
    dl, dev_id = request.app[DIALER], request[DEVICE]
    out = await decide(request, lambda t: dl.report(t, dev_id, doc))
    return json_response(out, status=200 if out["duplicate"] else 201)


@routes.post("/api/v1/dialer/ringing")
@endpoint("Device or PBX: an incoming call is ringing on this line; answers whose consoles show the caller's "
          "record (D-9a … e)", device=True, tag="dialer-device",
          body={"type": "object", "required": ["number"], "properties": {"number": {"type": ["string", "null"]}}})
async def ringing(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    if set(doc) - {"number"}:
        raise ApiError(422, "invalid", "only number")
    dl, dev_id = request.app[DIALER], request[DEVICE]
    number = doc.get("number")
    if number is not None and not isinstance(number, str):
        raise ApiError(422, "invalid", "number: a string or null (a withheld number)")
    operators = [rules.Operator(u.username, level_of(u), u.department, None, "dialer.popup" in u.perms, u.sharing)
                 for u in request.app[ACCOUNTS].list_users() if not u.disabled]
    employees = {u.username: u.employee for u in request.app[ACCOUNTS].list_users()}
    out = await decide(request, lambda t: dl.ringing(t, dev_id, number, operators, employees))
    return json_response(out)


def level_of(user) -> str:
    """Seed 004's operator level of an account: its role's data scope (R-2)."""
    return {"all": "super", "department": "leader"}.get(user.role_scope, "regular")


# -- operators: manual dial, call records, statistics, pop-ups ----------------------------------
@routes.post("/api/v1/dialer/dial")
@endpoint("Dial a number from a device (manual dial or callback): the same reservation and checks as the "
          "scheduler's (D-10); the device gets it on its next poll", perm="dialer.call", tag="dialer",
          body={"type": "object", "required": ["device", "number"], "properties": {
              "device": {"type": "string"}, "number": {"type": "string"}}})
async def manual_dial(request: web.Request) -> web.Response:
    doc = await body(request, {"device": (str, True), "number": (str, True)})
    dl, user = request.app[DIALER], request[USER]

    def fn(t):
        dev = t.get("dl.dev", doc["device"].encode())
        if dev is None:
            raise NotFound(f"no device {doc['device']}")
        seat = dl.seat_of_device(t, dev)
        if user.role_scope != "all" and (seat is None or seat["employee"] != user.employee):
            raise NotFound(f"no device {doc['device']} at your seat")
        return dl.next_call(t, doc["device"], manual=doc["number"], by=user.username)
    out = await decide(request, fn)
    await record(request, "dialer_manual_dial", doc["device"], {"granted": "call" in out})
    return json_response(out)


def _scope(request: web.Request) -> set[str] | None:
    """The employees whose calls the caller may see (R-2), narrowed by the query's
    ``employee`` (comma-separated userids) and ``department`` (with its subtree: the directory's
    members and the seats placed there) — seed 003's 职能范围."""
    d = request.app[VIEWS].directory()
    allowed = allowed_employees(request[USER], d)
    q = request.query
    want: set[str] | None = None
    if "employee" in q:
        want = {e for e in q["employee"].split(",") if e}
        if not want or any(len(e) > 64 for e in want):
            raise ApiError(422, "invalid", "employee: comma-separated WeCom userids")
    if "department" in q:
        dep = sint(q["department"], "department", 0, 2**31 - 1)
        depts = d.subtree(dep) | {dep}
        members = {u for u, e in d.employees.items() if e.get("department") in depts}
        members |= {s["employee"] for s in request.app[DIALER].seats()["seats"] if s.get("department") in depts}
        want = members if want is None else want & members
    if want is None:
        return allowed
    return want if allowed is None else want & allowed


@routes.get("/api/v1/dialer/calls")
@endpoint("Call records in your scope, newest first (D-7)", perm="dialer.read", tag="dialer", trailed=True,
          query={"number": "string", "from": "integer", "to": "integer", "direction": {"enum": ["in", "out"]},
                 "connected": "boolean", "min_talk": "integer", "max_talk": "integer",
                 "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                 "cursor": {"type": "string", "pattern": "^[0-9a-f]{50}$"}, "employee": "string",
                 "department": "integer"})
async def search_calls(request: web.Request) -> web.Response:
    q = request.query
    unknown = set(q) - {"number", "from", "to", "direction", "connected", "min_talk", "max_talk", "limit", "cursor",
                        "employee", "department"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown parameter(s): {', '.join(sorted(unknown))}")

    def num(name, lo=0, hi=1 << 50):
        return sint(q[name], name, lo, hi) if name in q else None
    if q.get("direction") not in (None, "in", "out"):
        raise ApiError(422, "invalid", "direction: in or out")
    if q.get("connected") not in (None, "true", "false", "1", "0"):
        raise ApiError(422, "invalid", "connected: true or false")
    connected = None if "connected" not in q else q["connected"] in ("true", "1")
    cursor = None
    if "cursor" in q:
        try:
            cursor = bytes.fromhex(q["cursor"])
        except ValueError:
            raise ApiError(400, "bad_request", "cursor: the next_cursor of the previous page") from None
        if len(cursor) != 25:
            raise ApiError(400, "bad_request", "cursor: the next_cursor of the previous page")
    limit = num("limit", 1, 1000) or 100
    dl = request.app[DIALER]
    rows, nxt = await read_off_loop(request, dl.search_calls, number=q.get("number"), start=num("from"),
                                    end=num("to"), employees=_scope(request), direction=q.get("direction"),
                                    connected=connected, min_talk=num("min_talk", 0, 86400),
                                    max_talk=num("max_talk", 0, 86400), limit=limit, before=cursor)
    await record(request, "read_calls", "dialer.calls", {"count": len(rows), "number": bool(q.get("number"))})
    return json_response({"calls": rows, "next_cursor": nxt.hex() if nxt else None})


@routes.get("/api/v1/dialer/stats")
@endpoint("Call statistics in your scope (D-8): overview, per-employee trend by day/week/month, ranking",
          perm="dialer.read", tag="dialer",
          query={"from": "string", "to": "string", "granularity": {"enum": ["day", "week", "month"]},
                 "employee": "string", "department": "integer"})
async def stats(request: web.Request) -> web.Response:
    q = request.query
    if set(q) - {"from", "to", "granularity", "employee", "department"}:
        raise ApiError(400, "bad_request", "parameters: from, to, granularity, employee, department")
    dl = request.app[DIALER]
    s = await read_off_loop(request, dl.settings)
    today = rules.day_of(dl.clock.now_ms(), s.tz)
    out = await read_off_loop(request, dl.stats, q.get("from", today), q.get("to", today),
                              q.get("granularity", "day"), _scope(request))
    return json_response(out)


@routes.get("/api/v1/dialer/popups")
@endpoint("Pop-ups for you after seq `after` (D-9); the console listens to the stream below", perm="dialer.read",
          tag="dialer", query={"after": "integer"})
async def popups(request: web.Request) -> web.Response:
    after = sint(request.query.get("after", "0"), "after", 0, 1 << 62)
    dl, me = request.app[DIALER], request[USER].username
    rows, last = await read_off_loop(request, dl.popups_for, me, after)
    return json_response({"popups": rows, "last": last})


@routes.get("/api/v1/dialer/popups/stream")
@endpoint("Server-sent events: each pop-up for you as it rings (D-9), from any server process",
          perm="dialer.read", tag="dialer", content="text/event-stream", query={"after": "integer"})
async def popup_stream(request: web.Request) -> web.StreamResponse:
    dl, me = request.app[DIALER], request[USER].username
    after = request.query.get("after")
    last = (sint(after, "after", 0, 1 << 62) if after is not None
            else await read_off_loop(request, dl.popup_last))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    await resp.write(b": connected\n\n")
    stop = request.app[STREAMS_STOP]
    try:
        while not stop.is_set():
            rows, last = await read_off_loop(request, dl.popups_for, me, last)
            for r in rows:
                await resp.write(b"event: popup\ndata: " + orjson.dumps(r) + b"\n\n")
            try:  # every process polls the store: a ring on any worker reaches every console
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass
    except ConnectionResetError:
        pass
    return resp


_TOKENS: dict[str, tuple[str, float]] = {}  # token → (device id, checked at): a poll costs no lookup
_TOKEN_TTL_S = 10.0


def authenticate_device(request: web.Request) -> str:
    """The device id of ``Authorization: Device <token>``, or 401. A device's token is looked
    up at most every few seconds per process (a disabled device is refused by the scheduler,
    whose answer reads the device itself)."""
    import time

    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Device ") else ""
    if not token or len(token) > 100:
        raise ApiError(401, "unauthorized", "missing device token (Authorization: Device <token>)")
    now = time.monotonic()
    hit = _TOKENS.get(token)
    if hit is not None and now - hit[1] < _TOKEN_TTL_S:
        return hit[0]
    dl = request.app[DIALER]
    dev = dl.read(lambda t: dl.device_of_token(t, token))
    if dev is None:
        _TOKENS.pop(token, None)
        raise ApiError(401, "unauthorized", "unknown device token")
    if len(_TOKENS) > 100_000:
        _TOKENS.clear()
    _TOKENS[token] = (dev["id"], now)
    return dev["id"]


__all__ = ["routes", "authenticate_device", "InputError"]
