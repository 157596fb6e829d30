"""Customers, pools and prospecting over HTTP (R-2 scoped: a member sees their own
customers and the pools they belong to). Stable paths other checks use:
``POST /api/v1/pools/{id}/claims`` (``{"customers": [...]}`` → ``claimed`` and ``refused:
[{customer, rule}]``) and ``POST /api/v1/pools/{id}/imports`` (a multipart spreadsheet →
the per-row report)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control.api import decide, endpoint, json_response, read_off_loop
from control.archive import allowed_employees
from control.customers import imports
from control.customers.service import Customers
from control.errors import ApiError, fields, json_body
from control.keys import CONFIG, USER, VIEWS
from control.trail import record
from scrm_fast.errors import InputError
from scrm_fast.strict import sint

routes = web.RouteTableDef()
CUSTOMERS = web.AppKey("customers", Customers)
_ID = {"type": "string", "pattern": "^[a-z0-9]{1,40}$"}
MAX_SHEET_BYTES = 20 << 20


def _owners(request: web.Request) -> set[str] | None:
    return allowed_employees(request[USER], request.app[VIEWS].directory())


def _me(request: web.Request) -> str:
    emp = request[USER].employee
    if not emp:
        raise ApiError(403, "forbidden", "your account is not linked to an employee (a WeCom userid)")
    return emp


def _is_admin(request: web.Request) -> bool:
    return "customers.admin" in request[USER].perms


async def _doc(request: web.Request) -> dict:
    return await json_body(request, request.app[CONFIG].max_json_bytes)


# -- settings --------------------------------------------------------------------------------
@routes.get("/api/v1/customers/settings")
@endpoint("Customer fields, custom fields, statuses, sources, tags, sales stages, switches (seed 003 §5.9.1)",
          perm="customers.read", tag="customers")
async def get_settings(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[CUSTOMERS].settings))


@routes.put("/api/v1/customers/settings")
@endpoint("Change customer settings (name and phone stay required; 赢单/输单 stay, P-8)", perm="customers.admin",
          tag="customers", body={"type": "object"})
async def put_settings(request: web.Request) -> web.Response:
    doc = await _doc(request)
    cu = request.app[CUSTOMERS]
    out = await decide(request, lambda t: cu.update_settings(t, doc))
    await record(request, "customer_settings", "customers", {"changed": sorted(doc)})
    return json_response(out)


# -- customers ---------------------------------------------------------------------------------
@routes.get("/api/v1/customers")
@endpoint("Customers in your scope (R-2), filtered", perm="customers.read", tag="customers", trailed=True,
          query={"owner": "string", "pool": "string", "status": "string", "tag": "string", "q": "string",
                 "limit": {"type": "integer", "minimum": 1, "maximum": 1000}, "after": "string"})
async def list_customers(request: web.Request) -> web.Response:
    q = request.query
    if set(q) - {"owner", "pool", "status", "tag", "q", "limit", "after"}:
        raise ApiError(400, "bad_request", "parameters: owner, pool, status, tag, q, limit, after")
    limit = sint(q["limit"], "limit", 1, 1000) if "limit" in q else 100
    for k in ("owner", "pool", "status", "tag", "q", "after"):
        if k in q and (len(q[k]) > 100 or "\0" in q[k]):
            raise ApiError(422, "invalid", f"{k}: at most 100 characters")
    rows, nxt = await read_off_loop(request, request.app[CUSTOMERS].list_customers, owners=_owners(request),
                                    owner=q.get("owner"), pool=q.get("pool"), status=q.get("status"),
                                    tag=q.get("tag"), q=q.get("q"), limit=limit, after=q.get("after"))
    await record(request, "read_customers", "customers", {"count": len(rows)})
    return json_response({"customers": rows, "next": nxt})


@routes.post("/api/v1/customers")
@endpoint("Add a customer (yours, or an admin names the owner)", perm="customers.write", tag="customers",
          body={"type": "object"})
async def add_customer(request: web.Request) -> web.Response:
    doc = await _doc(request)
    owner = doc.pop("owner", None)
    if owner is not None and not _is_admin(request):
        raise ApiError(403, "forbidden", "only customer admins set another owner")
    if owner is None:  # yours; an admin without an employee adds an unowned customer
        owner = request[USER].employee if _is_admin(request) else _me(request)
    elif not isinstance(owner, str) or not 0 < len(owner) <= 64:
        raise ApiError(422, "invalid", "owner: a WeCom userid")
    cu, by = request.app[CUSTOMERS], request[USER].username
    out = await decide(request, lambda t: cu.add_customer(t, doc, by=by, owner=owner))
    await record(request, "customer_added", out["id"])
    return json_response(out, status=201)


async def _scoped(request: web.Request, cid: str) -> dict:
    cu = request.app[CUSTOMERS]
    rec = await read_off_loop(request, lambda: cu.read(lambda t: cu.get(t, cid)))
    owners = _owners(request)
    if owners is not None and rec["owner"] not in owners:
        raise ApiError(404, "not_found", f"no customer {cid}")
    return rec


@routes.get("/api/v1/customers/{customer_id}")
@endpoint("One customer with its history", perm="customers.read", tag="customers", path={"customer_id": _ID},
          trailed=True)
async def get_customer(request: web.Request) -> web.Response:
    cid = request.match_info["customer_id"]
    try:
        rec = await _scoped(request, cid)
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    await record(request, "read_customer", cid)
    return json_response(rec)


@routes.put("/api/v1/customers/{customer_id}")
@endpoint("Change a customer's fields, status, source or tags", perm="customers.write", tag="customers",
          path={"customer_id": _ID}, body={"type": "object"})
async def put_customer(request: web.Request) -> web.Response:
    cid = request.match_info["customer_id"]
    doc = await _doc(request)
    try:
        await _scoped(request, cid)
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    cu, by = request.app[CUSTOMERS], request[USER].username
    out = await decide(request, lambda t: cu.update_customer(t, cid, doc, by))
    await record(request, "customer_changed", cid, {"fields": sorted(doc)})
    return json_response(out)


@routes.post("/api/v1/customers/{customer_id}/contacts")
@endpoint("Record a contact (call, message, visit): resets the recycle clock (P-3)", perm="customers.write",
          tag="customers", path={"customer_id": _ID},
          body={"type": "object", "required": ["kind"], "properties": {
              "kind": {"enum": ["call", "message", "visit", "other"]}, "at": {"type": "integer"}}})
async def add_contact(request: web.Request) -> web.Response:
    cid = request.match_info["customer_id"]
    doc = fields(await _doc(request), {"kind": (str, True), "at": (int, False)})
    try:
        await _scoped(request, cid)
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    cu, by = request.app[CUSTOMERS], request[USER].username
    return json_response(await decide(request, lambda t: cu.contact(t, cid, doc["kind"], doc.get("at"), by)))


@routes.put("/api/v1/customers/{customer_id}/tags")
@endpoint("Your personal tags on a customer", perm="customers.write", tag="customers", path={"customer_id": _ID},
          body={"type": "object", "required": ["tags"], "properties": {"tags": {"type": "array"}}})
async def put_tags(request: web.Request) -> web.Response:
    cid = request.match_info["customer_id"]
    doc = fields(await _doc(request), {"tags": (list, True)})
    try:
        await _scoped(request, cid)
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    cu, me = request.app[CUSTOMERS], _me(request)
    return json_response(await decide(request, lambda t: cu.set_personal_tags(t, cid, me, doc["tags"])))


@routes.get("/api/v1/companies")
@endpoint("Companies (企业) with their P-7 holder", perm="customers.read", tag="customers")
async def list_companies(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[CUSTOMERS].companies))


@routes.put("/api/v1/companies/{company_id}")
@endpoint("A company's fields (企业字段, as the settings enable them)", perm="customers.admin", tag="customers",
          path={"company_id": {"type": "string", "maxLength": 100}},
          body={"type": "object", "required": ["fields"], "properties": {"fields": {"type": "object"}}})
async def put_company(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"fields": (dict, True)})
    cu, cid = request.app[CUSTOMERS], request.match_info["company_id"]
    out = await decide(request, lambda t: cu.update_company(t, cid, doc["fields"]))
    await record(request, "company_changed", cid, {"fields": sorted(doc["fields"])})
    return json_response(out)


# -- opportunities (P-8) ---------------------------------------------------------------------------
@routes.get("/api/v1/opportunities")
@endpoint("Opportunities in your scope by sales stage (P-8)", perm="customers.read", tag="customers")
async def list_opportunities(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[CUSTOMERS].opportunities, _owners(request)))


@routes.post("/api/v1/opportunities")
@endpoint("Add an opportunity for a customer (resets P-3 (b)'s clock)", perm="customers.write", tag="customers",
          body={"type": "object", "required": ["customer", "name"], "properties": {
              "customer": {"type": "string"}, "name": {"type": "string"}, "amount": {"type": "integer"}}})
async def add_opportunity(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"customer": (str, True), "name": (str, True), "amount": (int, False)})
    try:
        await _scoped(request, doc["customer"])
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    cu, by = request.app[CUSTOMERS], request[USER].username
    out = await decide(request, lambda t: cu.add_opportunity(t, doc["customer"], doc["name"], doc.get("amount", 0),
                                                            by))
    return json_response(out, status=201)


@routes.put("/api/v1/opportunities/{opportunity_id}")
@endpoint("Move an opportunity to a stage (won/lost stay unless the re-edit switch is on, P-8)",
          perm="customers.write", tag="customers", path={"opportunity_id": _ID},
          body={"type": "object", "required": ["stage"], "properties": {"stage": {"type": "string"}}})
async def put_opportunity(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"stage": (str, True)})
    cu, by, oid = request.app[CUSTOMERS], request[USER].username, request.match_info["opportunity_id"]
    owners = _owners(request)

    def fn(t):
        opp = t.get("cu.opp", oid.encode())
        if opp is None or (owners is not None and opp["owner"] not in owners):
            from scrm_fast.errors import NotFoundError
            raise NotFoundError(f"no opportunity {oid}")
        return cu.set_stage(t, oid, doc["stage"], by)
    return json_response(await decide(request, fn))


# -- pools (P-1 … P-4) ----------------------------------------------------------------------------
@routes.get("/api/v1/pools")
@endpoint("Pools: all for admins, else those you belong to or run (with your holding count)",
          perm="customers.read", tag="pools")
async def list_pools(request: web.Request) -> web.Response:
    member = None if _is_admin(request) else _me(request)
    return json_response(await read_off_loop(request, request.app[CUSTOMERS].pools, member))


@routes.post("/api/v1/pools")
@endpoint("Add a pool: admins, members, rule claim|assign|both, caps (P-2), recycling (P-3), de-dup (P-4)",
          perm="customers.admin", tag="pools", body={"type": "object", "required": ["name"]})
async def add_pool(request: web.Request) -> web.Response:
    doc = await _doc(request)
    cu = request.app[CUSTOMERS]
    out = await decide(request, lambda t: cu.add_pool(t, doc))
    await record(request, "pool_added", out["id"])
    return json_response(out, status=201)


@routes.put("/api/v1/pools/{pool_id}")
@endpoint("Change a pool", perm="customers.admin", tag="pools", path={"pool_id": _ID}, body={"type": "object"})
async def put_pool(request: web.Request) -> web.Response:
    doc = await _doc(request)
    cu, pid = request.app[CUSTOMERS], request.match_info["pool_id"]
    out = await decide(request, lambda t: cu.update_pool(t, pid, doc))
    await record(request, "pool_changed", pid, {"fields": sorted(doc)})
    return json_response(out)


async def _pool_for(request: web.Request, admin: bool = False) -> dict:
    cu, pid = request.app[CUSTOMERS], request.match_info["pool_id"]
    try:
        pool = await read_off_loop(request, lambda: cu.read(lambda t: cu.pool(t, pid)))
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    if _is_admin(request):
        return pool
    me = _me(request)
    if admin and me not in pool["admins"]:
        raise ApiError(403, "forbidden", "you are not an admin of this pool")
    if me not in pool["admins"] and me not in pool["members"]:
        raise ApiError(404, "not_found", f"no pool {pid}")
    return pool


@routes.get("/api/v1/pools/{pool_id}/customers")
@endpoint("The pool's unclaimed customers (phones masked)", perm="customers.read", tag="pools",
          path={"pool_id": _ID}, query={"limit": {"type": "integer", "minimum": 1, "maximum": 1000}, "after": "string"})
async def pool_customers(request: web.Request) -> web.Response:
    await _pool_for(request)
    q = request.query
    limit = sint(q["limit"], "limit", 1, 1000) if "limit" in q else 200
    after = q.get("after")
    if after is not None and (len(after) > 40 or "\0" in after):
        raise ApiError(422, "invalid", "after: a customer id")
    rows = await read_off_loop(request, request.app[CUSTOMERS].pool_customers, request.match_info["pool_id"],
                               limit, after)
    return json_response({"customers": rows})


@routes.post("/api/v1/pools/{pool_id}/claims")
@endpoint("Claim customers from a pool: each checked and reserved atomically (P-1, P-2, P-5, P-7); refusals name "
          "their rule", perm="pools.claim", tag="pools", path={"pool_id": _ID},
          body={"type": "object", "required": ["customers"], "properties": {
              "customers": {"type": "array", "items": {"type": "string"}}}})
async def claim(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"customers": (list, True)})
    if not 1 <= len(doc["customers"]) <= 1000:
        raise ApiError(422, "invalid", "customers: 1 to 1,000 customer ids")
    await _pool_for(request)
    cu, pid, me = request.app[CUSTOMERS], request.match_info["pool_id"], _me(request)
    out = await decide(request, lambda t: cu.claim(t, pid, me, doc["customers"]))
    await record(request, "pool_claim", pid, {"claimed": out["claimed"][:200], "refused": len(out["refused"])})
    return json_response(out)


@routes.post("/api/v1/pools/{pool_id}/assign")
@endpoint("A pool admin assigns customers to a member (rules assign / both)", perm="pools.claim", tag="pools",
          path={"pool_id": _ID}, body={"type": "object", "required": ["member", "customers"]})
async def assign(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"member": (str, True), "customers": (list, True)})
    await _pool_for(request, admin=True)
    cu, pid, by = request.app[CUSTOMERS], request.match_info["pool_id"], request[USER].username
    out = await decide(request, lambda t: cu.claim(t, pid, doc["member"], doc["customers"], admin_assign=True,
                                                   by=by))
    await record(request, "pool_assign", pid, {"member": doc["member"], "claimed": out["claimed"][:200]})
    return json_response(out)


@routes.post("/api/v1/pools/{pool_id}/returns")
@endpoint("Return customers you hold to the pool", perm="pools.claim", tag="pools", path={"pool_id": _ID},
          body={"type": "object", "required": ["customers"]})
async def give_back(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"customers": (list, True)})
    await _pool_for(request)
    cu, pid, me = request.app[CUSTOMERS], request.match_info["pool_id"], _me(request)
    out = await decide(request, lambda t: cu.give_back(t, pid, me, doc["customers"]))
    await record(request, "pool_return", pid, {"returned": out["returned"][:200]})
    return json_response(out)


@routes.post("/api/v1/pools/recycle")
@endpoint("Run the recycling pass now (P-3, P-6; the server also runs it every minute)", perm="customers.admin",
          tag="pools")
async def recycle(request: web.Request) -> web.Response:
    cu = request.app[CUSTOMERS]
    out = await decide(request, cu.recycle)
    await record(request, "pool_recycle", "pools", {"recycled": len(out)})
    return json_response({"recycled": out})


@routes.post("/api/v1/pools/{pool_id}/imports")
@endpoint("Import a spreadsheet (.xlsx or .csv, multipart field `file`) into the pool: ≤ 5,000 rows, name and "
          "phone required; answers the per-row report (P-4)", perm="customers.admin", tag="pools",
          path={"pool_id": _ID})
async def import_sheet(request: web.Request) -> web.Response:
    await _pool_for(request, admin=True)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data with the spreadsheet in `file`")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
    except (ValueError, AssertionError) as e:
        raise ApiError(400, "bad_request", f"not a multipart body: {e}") from None
    if part is None:
        raise ApiError(422, "invalid", "no `file` part")
    data = bytearray()
    while True:
        chunk = await part.read_chunk(1 << 16)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_SHEET_BYTES:
            raise ApiError(413, "too_large", f"spreadsheet over {MAX_SHEET_BYTES} bytes")
    if not data:
        raise ApiError(422, "invalid", "the file is empty")
    filename = part.filename or "upload"
    cu, pid, by = request.app[CUSTOMERS], request.match_info["pool_id"], request[USER].username
    pool = await _pool_for(request)
    settings = await read_off_loop(request, cu.settings)

    def parse():
        rows = imports.read_rows(bytes(data), filename)
        return imports.plan(rows, settings, pool["dedup"])
    cands, report = await asyncio.to_thread(parse)  # openpyxl's parsing off the event loop
    out = await decide(request, lambda t: cu.import_rows(t, pid, cands, report, by, filename))
    await record(request, "pool_import", pid, {"import": out["id"], "accepted": out["accepted"],
                                               "rows": out["rows"]})
    return json_response(out, status=201)


@routes.get("/api/v1/imports/{import_id}")
@endpoint("An import's per-row report", perm="customers.admin", tag="pools", path={"import_id": _ID})
async def get_import(request: web.Request) -> web.Response:
    try:
        return json_response(await read_off_loop(request, request.app[CUSTOMERS].import_report,
                                                 request.match_info["import_id"]))
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None


@routes.get("/api/v1/imports/{import_id}/report.xlsx")
@endpoint("An import's per-row report as a spreadsheet", perm="customers.admin", tag="pools",
          path={"import_id": _ID},
          content="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
async def get_import_xlsx(request: web.Request) -> web.Response:
    try:
        doc = await read_off_loop(request, request.app[CUSTOMERS].import_report, request.match_info["import_id"])
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    body = await asyncio.to_thread(imports.report_xlsx, doc["report"])
    return web.Response(body=body, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="import-{doc["id"]}.xlsx"'})


@routes.get("/api/v1/pools/import-template.xlsx")
@endpoint("The import template", perm="customers.read", tag="pools",
          content="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
async def template(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(imports.template_xlsx)
    return web.Response(body=body, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": 'attachment; filename="customer-import-template.xlsx"'})


# -- prospecting seats (P-5) -------------------------------------------------------------------
@routes.get("/api/v1/prospect/seats")
@endpoint("Prospecting seats with their caps; the lead package's balance", perm="customers.read",
          tag="pools")
async def get_seats(request: web.Request) -> web.Response:
    cu = request.app[CUSTOMERS]
    seats = await read_off_loop(request, cu.seats)
    s = await read_off_loop(request, cu.settings)
    return json_response({"seats": seats, "lead_package": s["lead_package"]})


@routes.put("/api/v1/prospect/seats")
@endpoint("Set prospecting seats in bulk: on/off, daily (≤ 1,000) and monthly (≤ 10,000) caps (P-5)",
          perm="customers.admin", tag="pools", body={"type": "object", "required": ["seats"]})
async def put_seats(request: web.Request) -> web.Response:
    doc = fields(await _doc(request), {"seats": (list, True)})
    cu = request.app[CUSTOMERS]
    out = await decide(request, lambda t: cu.set_seats(t, doc["seats"]))
    await record(request, "prospect_seats", "prospect", {"members": [s["member"] for s in out][:100]})
    return json_response({"seats": out})


async def recycle_loop(app: web.Application, every_s: float = 60.0) -> None:
    """The scheduler: every process runs the pass now and then (each pass is one transaction;
    what one process recycled another finds done)."""
    import logging

    from control.keys import COMMITS

    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.wrap_future(app[COMMITS].submit(app[CUSTOMERS].recycle))
        except Exception:  # noqa: BLE001 - retried on the next round; the server goes on
            logging.getLogger("scrm.customers").exception("recycling failed")


# -- inheritance (I-1 … I-3) -------------------------------------------------------------------
TRANSFERS = web.AppKey("transfers", object)


@routes.post("/api/v1/transfers")
@endpoint("Start a transfer (I-1 on the job, I-2 resigned): customers and groups of `from` to `to`; the answer is "
          "the job, followed through WeCom until every customer is done, refused or at a limit",
          perm="customers.admin", tag="inheritance",
          body={"type": "object", "required": ["kind", "from", "to"], "properties": {
              "kind": {"enum": ["on_job", "resigned"]}, "from": {"type": "string"}, "to": {"type": "string"},
              "customers": {"type": "array", "items": {"type": "string"}},
              "groups": {"type": "array", "items": {"type": "string"}}, "message": {"type": "string"}}})
async def start_transfer(request: web.Request) -> web.Response:
    doc = await _doc(request)
    if set(doc) - {"kind", "from", "to", "customers", "groups", "message"}:
        raise ApiError(422, "invalid", "fields: kind, from, to, customers, groups, message")
    tr = request.app[TRANSFERS]
    if tr.client_factory is None:
        raise ApiError(409, "conflict", "WeCom is not configured: set SCRM_WECOM_CORP and SCRM_WECOM_SECRET_FILE")
    by = request[USER].username
    job = await decide(request, lambda t: tr.create(t, doc, by))
    disabled = 0
    if job["kind"] == "resigned":  # I-3: their access ends now, not when WeCom finishes
        disabled = await asyncio.to_thread(tr.disable_resigned, job["from"])
    await record(request, "transfer_started", job["id"], {"kind": job["kind"], "from": job["from"], "to": job["to"],
                                                          "customers": len(job["customers"]),
                                                          "groups": len(job["groups"]),
                                                          "accounts_disabled": disabled})
    try:
        job = await tr.advance(job["id"])
    except Exception as e:  # noqa: BLE001 - the job is stored; the scheduler goes on with it
        job = await asyncio.to_thread(tr.get, job["id"])
        job = {**job, "warning": f"WeCom did not answer yet ({type(e).__name__}); the job goes on in the background"}
    return json_response({**job, "accounts_disabled": disabled}, status=201)


@routes.get("/api/v1/transfers")
@endpoint("Transfers with their progress", perm="customers.admin", tag="inheritance")
async def list_transfers(request: web.Request) -> web.Response:
    return json_response(await read_off_loop(request, request.app[TRANSFERS].jobs))


@routes.get("/api/v1/transfers/candidates")
@endpoint("What an employee has to hand over: their customers (the directory's follow-ups and the SCRM's "
          "records) and the groups they own", perm="customers.admin", tag="inheritance",
          query={"employee": "string"})
async def candidates(request: web.Request) -> web.Response:
    emp = request.query.get("employee", "")
    if not 0 < len(emp) <= 64 or "\0" in emp or set(request.query) != {"employee"}:
        raise ApiError(422, "invalid", "employee: a WeCom userid")
    d = request.app[VIEWS].directory()
    cu = request.app[CUSTOMERS]

    def fn():
        out = {c["external_userid"]: {"external_userid": c["external_userid"], "name": c.get("name")}
               for c in d.customers.values() if emp in (c.get("follow_users") or [])}
        for _, rec in cu.read(lambda t: list(t.scan("cu.cust"))):
            if rec.get("owner") == emp and rec.get("external_userid"):
                out.setdefault(rec["external_userid"], {"external_userid": rec["external_userid"],
                                                        "name": rec["name"]})
        groups = [{"chat_id": g["roomid"], "name": g.get("name")} for g in d.groups.values() if g.get("owner") == emp]
        return {"employee": emp, "customers": sorted(out.values(), key=lambda c: c["external_userid"]),
                "groups": groups}
    return json_response(await read_off_loop(request, fn))


@routes.get("/api/v1/transfers/{transfer_id}")
@endpoint("One transfer: every customer's and group's state (waiting until …, done, refused, limit)",
          perm="customers.admin", tag="inheritance", path={"transfer_id": _ID})
async def get_transfer(request: web.Request) -> web.Response:
    try:
        return json_response(await read_off_loop(request, request.app[TRANSFERS].get,
                                                 request.match_info["transfer_id"]))
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None


@routes.post("/api/v1/transfers/{transfer_id}/poll")
@endpoint("Ask WeCom about a transfer now (the server also polls open ones every minute)",
          perm="customers.admin", tag="inheritance", path={"transfer_id": _ID})
async def poll_transfer(request: web.Request) -> web.Response:
    tr = request.app[TRANSFERS]
    try:
        await asyncio.to_thread(tr.get, request.match_info["transfer_id"])
    except InputError as e:
        raise ApiError(404, "not_found", str(e)) from None
    return json_response(await tr.advance(request.match_info["transfer_id"]))


def wecom_factory():
    """A client factory from the environment (SCRM_WECOM_BASE, SCRM_WECOM_CORP,
    SCRM_WECOM_SECRET_FILE: the customer-contact secret), or None."""
    from scrm_fast.wecom.client import client_factory

    return client_factory()


async def transfer_loop(app: web.Application) -> None:
    import os

    every = float(os.environ.get("SCRM_TRANSFER_POLL_S", "60"))
    while True:
        await asyncio.sleep(every)
        tr = app[TRANSFERS]
        if tr.client_factory is not None:
            await tr.run_open()
