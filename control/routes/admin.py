"""Administration: users and roles (R-1 … R-3), GetChatData uploads (ingest jobs), the
access trail."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from control.accounts import ALL_PERMS, SCOPES
from control.api import endpoint, json_response
from control.errors import ApiError, fields, json_body
from control.jobs import UploadTooLarge
from control.keys import ACCOUNTS, CONFIG, INGEST_JOBS, STORE, TRAIL, USER, VIEWS
from control.trail import record

routes = web.RouteTableDef()


@routes.get("/api/v1/users")
@endpoint("Operator accounts", perm="admin.users", tag="admin")
async def list_users(request: web.Request) -> web.Response:
    return json_response([u.public() for u in request.app[ACCOUNTS].list_users()])


@routes.post("/api/v1/users")
@endpoint("Create an operator account", perm="admin.users", tag="admin",
          body={"type": "object", "required": ["username", "password", "role"], "additionalProperties": False,
                "properties": {"username": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                               "password": {"type": "string", "minLength": 8},
                               "role": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                               "employee": {"type": "string"},
                               "department": {"type": "integer", "minimum": 0, "maximum": 2147483647},
                               "sharing": {"type": "boolean"}}})
async def create_user(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"username": (str, True), "password": (str, True), "role": (str, True), "employee": (str, False),
                  "department": (int, False), "sharing": (bool, False)})
    if not 0 <= doc.get("department", 0) < 2**31:
        raise ApiError(422, "invalid", "department must be a department id (0 … 2^31-1)")
    user = await asyncio.to_thread(request.app[ACCOUNTS].create_user, doc["username"], doc["password"], doc["role"],
                                   doc.get("employee"), doc.get("department"), doc.get("sharing", False))
    await record(request, "user_created", user.username, {"role": user.role})
    return json_response(user.public(), status=201)


@routes.post("/api/v1/users/disable")
@endpoint("Disable or enable accounts in bulk (R-3)", perm="admin.users", tag="admin",
          body={"type": "object", "required": ["usernames", "disabled"], "additionalProperties": False,
                "properties": {"usernames": {"type": "array", "items": {"type": "string"}},
                               "disabled": {"type": "boolean"}}})
async def disable_users(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"usernames": (list, True), "disabled": (bool, True)})
    if not all(isinstance(u, str) and 0 < len(u) <= 64 for u in doc["usernames"]):
        raise ApiError(422, "invalid", "usernames must be strings")
    n = request.app[ACCOUNTS].set_disabled(doc["usernames"], doc["disabled"])
    await record(request, "users_disabled" if doc["disabled"] else "users_enabled",
                              ",".join(doc["usernames"]))
    return json_response({"changed": n})


def run_ingest(app: web.Application, path: Path, job_id: str) -> dict:
    """One upload job's ingest (on a job thread): waits for the data directory's ingest
    lease, writes the server's open index."""
    from scrm_fast import KeyRing
    from scrm_fast.tenant import Tenant

    cfg = app[CONFIG]
    views = app[VIEWS]
    if cfg.keys_dir is None:
        raise RuntimeError("no key directory configured (scrm serve --keys DIR)")
    tenant = Tenant(cfg.data_dir, store=app[STORE])
    with views.index_lock:
        return tenant.ingest([path], KeyRing.load_dir(cfg.keys_dir), index=views.index,
                             what=f"upload job {job_id}", wait=True).as_dict()


@routes.post("/api/v1/ingest")
@endpoint("Upload GetChatData responses (JSONL); returns a job to poll. The upload is durable and "
          "journaled before the 202: a job a crash interrupts runs again when the server starts",
          perm="ingest.write", tag="admin", upload="application/octet-stream")
async def ingest(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    if cfg.keys_dir is None:
        raise ApiError(409, "conflict", "no key directory configured (scrm serve --keys DIR)")
    if request.content_length is not None and request.content_length > cfg.max_upload_bytes:
        raise ApiError(413, "too_large", f"upload over {cfg.max_upload_bytes} bytes")
    jobs = request.app[INGEST_JOBS]
    try:
        job = await jobs.receive(request.content.iter_chunked(1 << 16), cfg.max_upload_bytes,
                                 request[USER].username)
    except UploadTooLarge:
        raise ApiError(413, "too_large", f"upload over {cfg.max_upload_bytes} bytes") from None
    if job is None:
        raise ApiError(422, "invalid", "empty upload")
    await record(request, "ingest_upload", job["id"], {"bytes": job["bytes"]})
    # decrypting is CPU work in Rust (GIL released) on the job's thread: the loop stays free
    jobs.start(job["id"])
    return json_response(job, status=202)


@routes.get("/api/v1/jobs/{job_id}")
@endpoint("An ingest job's status (queued, running, done, failed) and summary", perm="ingest.write", tag="admin",
          path={"job_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"}})
async def get_job(request: web.Request) -> web.Response:
    job = await asyncio.to_thread(request.app[INGEST_JOBS].get, request.match_info["job_id"])
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    return json_response({k: v for k, v in job.items() if k != "pid"})


@routes.get("/api/v1/trail")
@endpoint("The access trail, newest first (R-4); `before` is the `next_cursor` of the previous page; "
          "`verify=1` also walks the whole chain and compares it with its anchor (off the event loop)",
          perm="trail.read", tag="admin",
          query={"limit": {"type": "integer", "minimum": 1, "maximum": 10000},
                 "before": {"type": "integer", "minimum": 0, "maximum": 2**62},
                 "verify": {"type": "integer", "minimum": 0, "maximum": 1}})
async def trail(request: web.Request) -> web.Response:
    from control.routes.archive import _int

    t = request.app[TRAIL]
    limit = _int(request, "limit", 1, 10_000) or 100
    before = _int(request, "before", 0, 2**62)
    entries = await asyncio.to_thread(t.entries, limit + 1, before, True)
    more = len(entries) > limit
    entries = entries[:limit]
    out = {"entries": entries, "next_cursor": entries[-1]["index"] if more else None}
    if _int(request, "verify", 0, 1):
        out["verify"] = await asyncio.to_thread(t.verify)
    return json_response(out)


@routes.post("/api/v1/users/{username}/password")
@endpoint("Reset an account's password (admins); its tokens are revoked", perm="admin.users", tag="admin",
          path={"username": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}},
          body={"type": "object", "required": ["new"], "additionalProperties": False,
                "properties": {"new": {"type": "string", "minLength": 8}}})
async def reset_password(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes), {"new": (str, True)})
    name = request.match_info["username"]
    n = await asyncio.to_thread(request.app[ACCOUNTS].change_password, name, None, doc["new"], by_admin=True)
    await record(request, "password_reset", name, {"tokens_revoked": n})
    return json_response({"username": name, "tokens_revoked": n})


@routes.get("/api/v1/departments")
@endpoint("Departments as a tree (id, name, parent, employees in each)", perm="archive.read", tag="admin")
async def departments(request: web.Request) -> web.Response:
    from control.archive import allowed_employees

    d = request.app[VIEWS].directory()
    user = request[USER]
    allowed = allowed_employees(user, d)
    if allowed is None:
        depts = set(d.departments)
    elif user.department is not None:  # a scoped role sees its own part of the tree
        depts = d.subtree(user.department) | {user.department}
    else:
        depts = {e.get("department") for u, e in d.employees.items() if u in allowed}
    counts: dict[int, int] = {}
    for u, e in d.employees.items():
        if allowed is None or u in allowed:
            counts[e.get("department")] = counts.get(e.get("department"), 0) + 1
    return json_response([{"id": k, "name": v.get("name"), "parent": v.get("parent"),
                          "employees": counts.get(k, 0)} for k, v in sorted(d.departments.items()) if k in depts])


@routes.get("/api/v1/roles")
@endpoint("Roles: function permissions and data scope of each (R-1, R-2; seed 004's levels), built-in and "
          "custom, with how many accounts hold each", perm="admin.users", tag="admin")
async def roles(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(request.app[ACCOUNTS].list_roles))


_ROLE_BODY = {"permissions": {"type": "array", "items": {"enum": sorted(ALL_PERMS)}, "maxItems": 64},
              "scope": {"enum": list(SCOPES)}}


@routes.post("/api/v1/roles")
@endpoint("Create a custom role (R-1): function permissions and a data scope", perm="admin.users", tag="admin",
          body={"type": "object", "required": ["role", "permissions", "scope"], "additionalProperties": False,
                "properties": {"role": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"}, **_ROLE_BODY}})
async def create_role(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"role": (str, True), "permissions": (list, True), "scope": (str, True)})
    role = request.app[ACCOUNTS].put_role(doc["role"], doc["permissions"], doc["scope"], create=True)
    await record(request, "role_created", role["role"], {"permissions": role["permissions"], "scope": role["scope"]})
    return json_response(role, status=201)


@routes.put("/api/v1/roles/{role}")
@endpoint("Redefine a custom role; accounts holding it get the new rights on their next request",
          perm="admin.users", tag="admin",
          body={"type": "object", "required": ["permissions", "scope"], "additionalProperties": False,
                "properties": _ROLE_BODY})
async def update_role(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"permissions": (list, True), "scope": (str, True)})
    name = request.match_info["role"]
    role = request.app[ACCOUNTS].put_role(name, doc["permissions"], doc["scope"], create=False)
    await record(request, "role_changed", name, {"permissions": role["permissions"], "scope": role["scope"]})
    return json_response(role)


@routes.delete("/api/v1/roles/{role}")
@endpoint("Delete a custom role that no account holds", perm="admin.users", tag="admin")
async def delete_role(request: web.Request) -> web.Response:
    name = request.match_info["role"]
    request.app[ACCOUNTS].delete_role(name)
    await record(request, "role_deleted", name)
    return json_response({"deleted": name})


@routes.patch("/api/v1/users/{username}")
@endpoint("Change an account's role, employee, department or sharing permission (R-1, R-2)",
          perm="admin.users", tag="admin",
          body={"type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {"role": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
                               "employee": {"type": "string", "maxLength": 64},
                               "department": {"type": "integer", "minimum": 0, "maximum": 2147483647},
                               "sharing": {"type": "boolean"}}})
async def update_user(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"role": (str, False), "employee": (str, False), "department": (int, False),
                  "sharing": (bool, False)})
    if not doc:
        raise ApiError(422, "invalid", "nothing to change: give role, employee, department or sharing")
    if not 0 <= doc.get("department", 0) < 2**31:
        raise ApiError(422, "invalid", "department must be a department id (0 … 2^31-1)")
    if len(doc.get("employee", "")) > 64:
        raise ApiError(422, "invalid", "employee: at most 64 characters")
    name = request.match_info["username"]
    user = request.app[ACCOUNTS].update_user(name, doc)
    await record(request, "user_changed", name, doc)
    return json_response(user.public())
