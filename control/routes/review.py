"""Review queues (A-3), words (A-1), behaviour switches (A-4), alerts (A-5, A-6) and consent
events (C-3, C-9, C-12)."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from control.api import endpoint, json_response
from control.archive import allowed_employees
from control.errors import ApiError, fields, json_body
from control.keys import CONFIG, STORE, USER, VIEWS
from control.trail import record, released
from scrm_fast import audit

routes = web.RouteTableDef()


def _in_scope(request: web.Request, rows: list[dict], key: str = "employee") -> list[dict]:
    return _scope(request, key)(rows)


def _scope(request: web.Request, key: str = "employee"):
    """The caller's data scope (R-2) as a filter of records (run anywhere: decided here)."""
    allowed = allowed_employees(request[USER], request.app[VIEWS].directory())
    return lambda rows: rows if allowed is None else [r for r in rows if r.get(key) in allowed]


def _named(request: web.Request, rows: list[dict]) -> list[dict]:
    """Adds the directory's names to audit and alert records (A-2: the employee, and the
    customer or the group the message was said in; A-5: who is notified)."""
    d = request.app[VIEWS].directory()
    for r in rows:
        r["employee_name"] = d.name(r["employee"]) if r.get("employee") else None
        r["customer_name"] = d.name(r["customer"]) if r.get("customer") else None
        room = r.get("roomid") or ""
        r["group_name"] = d.groups.get(room, {}).get("name") or room if room else None
        if "notify" in r:
            r["notify_names"] = [d.name(u) for u in r["notify"]]
    return rows


@routes.get("/api/v1/audits")
@endpoint("Audit records in your scope (A-2, A-4)", perm="audit.read", tag="audit", trailed=True,
          query={"kind": {"enum": ["content", "behaviour"]}, "status": {"enum": ["pending", "handled"]},
                 "context": "boolean"})
async def list_audits(request: web.Request) -> web.Response:
    from scrm_fast import reads

    kind, status = request.query.get("kind"), request.query.get("status")
    if kind not in (None, "content", "behaviour") or status not in (None, "pending", "handled"):
        raise ApiError(422, "invalid", "kind: content|behaviour, status: pending|handled")
    context = request.query.get("context")
    if context not in (None, "1", "0", "true", "false"):
        raise ApiError(400, "bad_request", "context must be true or false")
    rows, entry = await asyncio.to_thread(reads.audit_rows, request.app[STORE], kind, status,
                                          context in ("1", "true"), _scope(request))
    return json_response(await released(request, _named(request, rows), entry))


@routes.post("/api/v1/audits/{audit_id}/handle")
@endpoint("Set the verdict of a pending record (A-3)", perm="audit.handle", tag="audit",
          path={"audit_id": {"type": "string", "pattern": "^(c-[0-9]{1,18}-[0-9]{1,9}|b-[0-9]{1,18}|e-[0-9a-f]{24})$"}},
          body={"type": "object", "required": ["verdict"], "additionalProperties": False,
                "properties": {"verdict": {"enum": ["abnormal", "normal", "ignore"]}, "remark": {"type": "string"}}})
async def handle(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"verdict": (str, True), "remark": (str, False)})
    aid = request.match_info["audit_id"]
    store = request.app[STORE]
    found = audit.get_audit(store, aid)  # a malformed id is a clear 422 from audit_key
    if found is None or not _in_scope(request, [found]):
        raise ApiError(404, "not_found", f"no audit record {aid}")
    if found["status"] != "pending":
        raise ApiError(409, "conflict", f"{aid} was already handled; handled records are not changed")
    rec = audit.handle_audit(store, aid, doc["verdict"], doc.get("remark"), request[USER].username)
    await record(request, "audit_verdict", aid, {"verdict": doc["verdict"], "remark": doc.get("remark")})
    return json_response(rec)


_WORD_CHAR = re.compile("[0-9A-Za-z\u4e00-\u9fff]")


@routes.get("/api/v1/words")
@endpoint("The sensitive-word list with trigger counts (A-1)", perm="words.read", tag="audit")
async def get_words(request: web.Request) -> web.Response:
    store = request.app[STORE]
    entries, allow = audit.stored_words(store)
    stats = audit.word_stats(store)
    return json_response({"entries": [
        {"id": e[0], "word": e[1], "related": e[2], "category": e[3], "severity": e[4], "applies_to": e[5],
         "triggers": stats.get(e[1], (0, None))[0], "last_trigger": stats.get(e[1], (0, None))[1]}
        for e in entries], "allow": allow})


@routes.put("/api/v1/words")
@endpoint("Replace the word list", perm="words.write", tag="audit",
          body={"type": "object", "required": ["entries"],
                "additionalProperties": False,
                "properties": {"entries": {"type": "array", "items": {
                    "type": "object", "required": ["word"], "additionalProperties": False,
                    "properties": {"word": {"type": "string", "pattern": "[0-9A-Za-z\u4e00-\u9fff]"},
                                   "related": {"type": "array", "maxItems": 10, "items": {
                                       "type": "string", "pattern": "[0-9A-Za-z\u4e00-\u9fff]"}},
                                   "category": {"type": "string"},
                                   "severity": {"type": "integer", "minimum": 0, "maximum": 255},
                                   "applies_to": {"enum": ["employee", "customer", "both"]}}}},
                               "allow": {"type": "array", "items": {"type": "string"}}}})
async def put_words(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"entries": (list, True), "allow": (list, False)})
    entries = []
    for i, e in enumerate(doc["entries"], 1):
        if not isinstance(e, dict):
            raise ApiError(422, "invalid", f"entries[{i - 1}] must be an object")
        e = fields(e, {"word": (str, True), "related": (list, False), "category": (str, False),
                       "severity": (int, False), "applies_to": (str, False)})
        if not 0 <= e.get("severity", 1) <= 255:
            raise ApiError(422, "invalid", f"entries[{i - 1}].severity must be between 0 and 255")
        related = e.get("related", [])
        if not all(isinstance(r, str) for r in related):
            raise ApiError(422, "invalid", f"entries[{i - 1}].related must be strings")
        for w in [e["word"], *related]:
            if not _WORD_CHAR.search(w):  # the schema's pattern, checked the same way
                raise ApiError(422, "invalid", f"entries[{i - 1}]: {w!r} has no letter, digit or CJK character")
        entries.append((i, e["word"], related, e.get("category", "default"), e.get("severity", 1),
                        e.get("applies_to", "employee")))
    allow = doc.get("allow", [])
    if not all(isinstance(a, str) for a in allow):
        raise ApiError(422, "invalid", "allow must be a list of strings")
    try:
        n = audit.import_words(request.app[STORE], entries, allow)
    except ValueError as e:
        raise ApiError(422, "invalid", str(e)) from e
    await record(request, "words_replaced", "words", {"entries": n})
    return json_response({"entries": n, "allow": len(allow)})


@routes.get("/api/v1/behaviours")
@endpoint("Sensitive-behaviour switches (A-4)", perm="words.read", tag="audit")
async def get_behaviours(request: web.Request) -> web.Response:
    return json_response(audit.behaviour_switches(request.app[STORE]))


@routes.put("/api/v1/behaviours")
@endpoint("Switch sensitive behaviours on or off", perm="words.write", tag="audit",
          body={"type": "object", "additionalProperties": False,
                "properties": {"push_card": {"type": "boolean"}, "red_packet": {"type": "boolean"},
                               "delete_customer": {"type": "boolean"}}})
async def put_behaviours(request: web.Request) -> web.Response:
    doc = await json_body(request, request.app[CONFIG].max_json_bytes)
    store = request.app[STORE]
    for name, on in doc.items():
        if not isinstance(on, bool):
            raise ApiError(422, "invalid", f"{name} must be true or false")
        if name not in audit.BEHAVIOURS:
            raise ApiError(422, "invalid", f"unknown behaviour {name}")
    cur = audit.behaviour_switches(store)
    for name, on in doc.items():
        cur = audit.set_behaviour(store, name, on)
    await record(request, "behaviours_changed", "behaviours", doc)
    return json_response(cur)


@routes.get("/api/v1/alerts")
@endpoint("Alerts in your scope (A-5 sensitive words, A-6 timeout replies)", perm="alerts.read", tag="audit",
          trailed=True)
async def alerts(request: web.Request) -> web.Response:
    from scrm_fast import reads

    rows, entry = await asyncio.to_thread(reads.alert_rows, request.app[STORE], _scope(request))
    return json_response(await released(request, _named(request, rows), entry))


@routes.get("/api/v1/alerts/thresholds")
@endpoint("Timeout-reply levels (A-6): how long a customer waits before each level's alert", perm="alerts.read",
          tag="audit")
async def get_thresholds(request: web.Request) -> web.Response:
    return json_response({"reply_thresholds_ms": audit.reply_thresholds(request.app[STORE])})


@routes.put("/api/v1/alerts/thresholds")
@endpoint("Set the timeout-reply levels (A-6, increasing, 1–5 of them); every conversation's timeout alerts are "
          "recomputed with them in the background", perm="words.write", tag="audit",
          body={"type": "object", "required": ["reply_thresholds_ms"], "additionalProperties": False,
                "properties": {"reply_thresholds_ms": {"type": "array", "minItems": 1, "maxItems": 5,
                                                       "items": {"type": "integer", "minimum": 1000,
                                                                 "maximum": 30 * 86400 * 1000}}}})
async def put_thresholds(request: web.Request) -> web.Response:
    from scrm_fast.errors import InputError
    from scrm_fast.tenant import Tenant

    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes), {"reply_thresholds_ms": (list, True)})
    values = doc["reply_thresholds_ms"]
    if not 1 <= len(values) <= 5 or not all(isinstance(v, int) and not isinstance(v, bool)
                                            and 1000 <= v <= 30 * 86400 * 1000 for v in values):
        raise ApiError(422, "invalid", "reply_thresholds_ms: 1 to 5 durations in ms (1 s … 30 days)")
    store = request.app[STORE]
    try:
        out = await asyncio.to_thread(audit.set_reply_thresholds, store, values)
    except InputError as e:
        raise ApiError(422, "invalid", str(e)) from None
    await record(request, "thresholds_changed", "reply_thresholds", {"reply_thresholds_ms": out})
    # every conversation is due now (durably): the pass runs here in the background, or in the
    # ingest that holds the lease, or when a server starts after a crash
    tenant = Tenant(request.app[CONFIG].data_dir, store=store)
    asyncio.get_running_loop().run_in_executor(None, tenant.finish_due_timeouts)
    return json_response({"reply_thresholds_ms": out, "recomputing": True})


@routes.get("/api/v1/consent/events")
@endpoint("Consent enforcement events (C-3, C-9, C-12)", perm="consent.read", tag="consent")
async def consent_events(request: web.Request) -> web.Response:
    return json_response(_in_scope(request, request.app[STORE].enforcement_events()))


@routes.get("/api/v1/consent/rules")
@endpoint("Messages kept and dropped per consent rule", perm="consent.read", tag="consent")
async def consent_rules(request: web.Request) -> web.Response:
    if request[USER].scope != "all":  # tenant-wide counts: not for a scoped role
        raise ApiError(403, "forbidden", f"per-rule counts are tenant-wide; your data scope is {request[USER].scope}")
    return json_response(request.app[STORE].rule_counts())


@routes.get("/api/v1/consent/state")
@endpoint("Consent state: the enterprise switch and the latest answer per customer (from the directory, the "
          "stream and the msgaudit APIs), in your data scope", perm="consent.read", tag="consent",
          query={"status": {"enum": ["agreed", "disagreed"]}})
async def consent_state(request: web.Request) -> web.Response:
    from scrm_fast.views import latest_consent

    views = request.app[VIEWS]
    status = request.query.get("status")
    if status not in (None, "agreed", "disagreed"):
        raise ApiError(422, "invalid", "status must be agreed or disagreed")
    raw = views.raw_directory()
    state = await asyncio.to_thread(latest_consent, views.store, raw)
    d = views.directory()
    allowed = allowed_employees(request[USER], d)
    mine = None
    if allowed is not None:
        mine = {c for c, x in d.customers.items() if set(x.get("follow_users", [])) & allowed}
        mine |= {c["external_userid"] for c in raw["consent"] if c["userid"] in allowed}
    items = [{"external_userid": c, "name": d.name(c), "status": s} for c, s in sorted(state.items())
             if (mine is None or c in mine) and (status is None or s == status)]
    return json_response({"service_requires_consent": bool(d.corp.get("service_requires_consent", False)),
                          "customers": items})
