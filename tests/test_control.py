"""The control plane through the real app (pytest-aiohttp): auth, data scopes on every
archive endpoint, bad input, the OpenAPI document, the access trail, uploads."""

from __future__ import annotations

import asyncio
import io
import shutil
import struct
import urllib.parse

import lmdb
import orjson
import pytest

from control.accounts import AccountService
from control.app import create_app
from control.config import ControlConfig
from scrm_fast.simulate import simulate
from tests.conftest import run_scrm

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    """A simulated enterprise ingested with its directory and a word list, plus accounts."""
    root = tmp_path_factory.mktemp("tenant")
    sim = root / "sim"
    simulate(sim, 2500, seed=41, doc_items=500)
    data = root / "data"
    words = root / "words.txt"
    words.write_text("保本,稳赚\n返点,回扣 | kickback | 3 | both\n", encoding="utf-8")
    run_scrm("words", "import", "--data", str(data), str(words), check=True)
    run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(data), "--directory", str(sim / "directory.json"),
             "--no-progress", str(sim / "batches"), check=True)
    directory = orjson.loads((sim / "directory.json").read_bytes())
    active = [e for e in directory["employees"] if e["status"] == "active" and e["archived"]]
    resigned = next(e for e in directory["employees"] if e["status"] == "resigned")
    acc = AccountService(data)
    acc.create_user("admin", PASSWORD, "admin")
    acc.create_user("auditor", PASSWORD, "auditor")
    acc.create_user("alice", PASSWORD, "regular", employee=active[0]["userid"])
    acc.create_user("bob", PASSWORD, "regular", employee=active[1]["userid"])
    acc.create_user("lead", PASSWORD, "leader", employee=active[0]["userid"], department=active[0]["department"])
    acc.create_user("gone", PASSWORD, "regular", employee=resigned["userid"])
    acc.close()
    return {"data": data, "sim": sim, "alice": active[0]["userid"], "bob": active[1]["userid"],
            "directory": directory}


@pytest.fixture
async def client(aiohttp_client, tenant, tmp_path, monkeypatch, master_key):
    data = tmp_path / "data"
    shutil.copytree(tenant["data"], data)  # each test gets its own tenant copy
    # ... and its own master key file (the same key): a copy of a data directory shares its
    # trail's id, so its trail anchor (beside the master key) must be its own
    own_key = tmp_path / "master" / "master.key"
    own_key.parent.mkdir()
    shutil.copy(master_key, own_key)
    monkeypatch.setenv("SCRM_MASTER_KEY_FILE", str(own_key))
    app = create_app(ControlConfig(data_dir=data, keys_dir=tenant["sim"] / "keys"))
    c = await aiohttp_client(app)
    c.data_dir = data
    return c


async def login(client, username: str) -> dict:
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def test_public_endpoints_and_openapi_matches_routes(client):
    assert (await client.get("/api/v1/health")).status == 200
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    routes = set()
    for r in client.app.router.routes():
        info = r.resource.get_info()
        path = info.get("formatter") or info.get("path")
        if r.method != "HEAD" and path and path.startswith(("/api/", "/metrics", "/wecom/")):
            routes.add((path, r.method))
    assert documented == routes
    assert (await client.get("/metrics")).status == 401  # metrics.read needed
    metrics = await (await client.get("/metrics", headers=await login(client, "admin"))).text()
    assert "scrm_http_requests_total" in metrics and "scrm_archive_records" in metrics


async def test_tokens_forged_revoked_disabled(client):
    r = await client.get("/api/v1/conversations")
    assert r.status == 401 and (await r.json())["error"] == "unauthorized"
    r = await client.get("/api/v1/conversations", headers={"Authorization": "Bearer scrm_forged"})
    assert r.status == 401
    h = await login(client, "alice")
    r = await client.post("/api/v1/tokens", json={"name": "ci", "ttl_days": 30}, headers=h)
    assert r.status == 201
    tok = await r.json()
    api = {"Authorization": f"Bearer {tok['token']}"}
    assert (await client.get("/api/v1/me", headers=api)).status == 200
    assert (await client.delete(f"/api/v1/tokens/{tok['id']}", headers=h)).status == 200
    r = await client.get("/api/v1/me", headers=api)
    assert r.status == 401 and "revoked" in (await r.json())["detail"]
    admin = await login(client, "admin")
    r = await client.post("/api/v1/users/disable", json={"usernames": ["alice"], "disabled": True}, headers=admin)
    assert r.status == 200
    assert (await client.get("/api/v1/me", headers=h)).status == 401  # session revoked at once
    r = await client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status == 403
    # resigned employees cannot sign in (rule R-3)
    r = await client.post("/api/v1/auth/login", json={"username": "gone", "password": PASSWORD})
    assert r.status == 403


async def test_expired_token(client):
    acc = client.app[__import__("control.keys", fromlist=["ACCOUNTS"]).ACCOUNTS]
    token, _ = acc.issue_token("admin", "short", ttl_s=-1)
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401 and "expired" in (await r.json())["detail"]


async def test_login_throttling(client):
    # growing delays, never a lock-out (tests/test_accounts.py follows them to the end)
    for _ in range(3):
        r = await client.post("/api/v1/auth/login", json={"username": "bob", "password": "wrong-password"})
        assert r.status == 401
    r = await client.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 61


async def test_regular_operator_sees_only_own_conversations(client, tenant):
    alice, bob = tenant["alice"], tenant["bob"]
    h = await login(client, "alice")
    convs = await (await client.get("/api/v1/conversations", headers=h)).json()
    assert convs, "alice has conversations"
    for c in convs:
        assert c["kind"] == "group" or alice in c["parties"]
    assert (await client.get(f"/api/v1/conversations?employee={bob}", headers=h)).status == 403
    admin = await login(client, "admin")
    all_convs = await (await client.get("/api/v1/conversations", headers=admin)).json()
    bobs = [c for c in all_convs if c["kind"] != "group" and bob in c["parties"] and alice not in c["parties"]]
    assert bobs and len(all_convs) > len(convs)
    foreign = bobs[0]
    # not through the conversation, its pages, the message id, or any filter
    for q in ("", "?type=file", "?days=7", "?before_seq=999999999", "?limit=500"):
        r = await client.get(f"/api/v1/conversations/{foreign['conv']}/messages{q}", headers=h)
        assert r.status == 404, q
    r = await client.get(f"/api/v1/messages/{foreign['last_seq']}", headers=h)
    assert r.status == 404
    # paging her own conversation never leaves it
    own = convs[0]["conv"]
    seen, cursor = [], None
    while True:
        q = f"?limit=7&before_seq={cursor}" if cursor else "?limit=7"
        page = await (await client.get(f"/api/v1/conversations/{own}/messages{q}", headers=h)).json()
        assert all(m["conv"] == own for m in page["items"])
        seen += [m["seq"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    audits = await (await client.get("/api/v1/audits", headers=h)).json()
    assert all(a["employee"] == alice for a in audits)
    all_audits = await (await client.get("/api/v1/audits", headers=admin)).json()
    assert len(all_audits) >= len(audits)
    # a regular operator may not handle audits or read the trail
    assert (await client.post("/api/v1/audits/b-1/handle", json={"verdict": "normal"}, headers=h)).status == 403
    assert (await client.get("/api/v1/trail", headers=h)).status == 403


async def test_leader_scope_is_the_department_subtree(client, tenant):
    h = await login(client, "lead")
    me = await (await client.get("/api/v1/me", headers=h)).json()
    assert me["scope"] == "department"
    emps = await (await client.get("/api/v1/employees", headers=h)).json()
    d = tenant["directory"]
    dept = next(e for e in d["employees"] if e["userid"] == tenant["alice"])["department"]
    subtree = {dept} | {x["id"] for x in d["departments"] if x["parent"] == dept}
    assert {e["userid"] for e in emps} == {e["userid"] for e in d["employees"] if e["department"] in subtree}


async def test_bad_input_is_4xx_never_500(client):
    h = await login(client, "admin")
    cases = [
        ("post", "/api/v1/auth/login", {"data": b"{not json"}, 400),
        ("post", "/api/v1/auth/login", {"json": {"username": 1, "password": "x"}}, 422),
        ("post", "/api/v1/auth/login", {"json": {"username": "a", "password": "b", "extra": 1}}, 422),
        ("post", "/api/v1/auth/login", {"json": [1, 2]}, 422),
        ("post", "/api/v1/tokens", {"json": {"ttl_days": "many"}, "headers": h}, 422),
        ("post", "/api/v1/tokens", {"data": io.BytesIO(b"x" * (2 << 20)), "headers": h}, 413),
        ("get", "/api/v1/conversations?kind=' OR 1=1 --", {"headers": h}, 422),
        ("get", "/api/v1/conversations/p:x'%3B DROP TABLE/messages", {"headers": h}, 404),
        ("get", "/api/v1/conversations/p:a|b/messages?limit=abc", {"headers": h}, 400),
        ("get", "/api/v1/conversations/p:a|b/messages?limit=100000", {"headers": h}, 422),
        ("get", "/api/v1/messages/not-a-number", {"headers": h}, 400),
        ("get", "/api/v1/messages/999999999999", {"headers": h}, 404),
        ("post", "/api/v1/audits/zzz/handle", {"json": {"verdict": "normal"}, "headers": h}, 422),
        ("post", "/api/v1/audits/c-1-1/handle", {"json": {"verdict": "maybe"}, "headers": h}, 404),
        ("put", "/api/v1/words", {"json": {"entries": [{"word": "x", "related": [1]}]}, "headers": h}, 422),
        ("put", "/api/v1/words", {"json": {"entries": [{"word": "！"}]}, "headers": h}, 422),
        ("put", "/api/v1/behaviours", {"json": {"push_card": "yes"}, "headers": h}, 422),
        ("post", "/api/v1/users", {"json": {"username": "x", "password": "short", "role": "admin"}, "headers": h}, 422),
        ("post", "/api/v1/users", {"json": {"username": "<script>", "password": "longenough1", "role": "admin"},
                                   "headers": h}, 422),
        ("get", "/api/v1/nope", {"headers": h}, 404),
        ("delete", "/api/v1/health", {}, 405),
    ]
    for method, path, kw, status in cases:
        r = await getattr(client, method)(path, **kw)
        body = await r.json()
        assert r.status == status, (path, r.status, body)
        assert set(body) == {"error", "detail"}, body


async def test_handle_audit_and_trail(client):
    h = await login(client, "auditor")
    pending = await (await client.get("/api/v1/audits?status=pending&kind=content", headers=h)).json()
    aid = pending[0]["id"]
    r = await client.post(f"/api/v1/audits/{aid}/handle", json={"verdict": "abnormal", "remark": "承诺保本"},
                          headers=h)
    assert r.status == 200 and (await r.json())["handled_by"] == "auditor"
    r = await client.post(f"/api/v1/audits/{aid}/handle", json={"verdict": "normal"}, headers=h)
    assert r.status == 409
    handled = await (await client.get("/api/v1/audits?status=handled", headers=h)).json()
    assert [a["id"] for a in handled] == [aid]
    conv = pending[0]["conv"]
    await client.get(f"/api/v1/conversations/{conv}/messages", headers=h)
    trail = await (await client.get("/api/v1/trail", params={"verify": "1"}, headers=h)).json()
    actions = [e["action"] for e in trail["entries"]]
    assert "audit_verdict" in actions and "read_messages" in actions and trail["verify"]["ok"]
    assert trail["verify"]["anchored"]
    await client.close()  # release the LMDB environments before tampering
    assert run_scrm("trail", "verify", "--data", str(client.data_dir), check=True).returncode == 0
    env = lmdb.open(str(client.data_dir / "trail.lmdb"), max_dbs=2)
    db = env.open_db(b"trail")
    with env.begin(write=True, db=db) as txn:  # sealed: a change is any change of its bytes
        raw = bytearray(txn.get(struct.pack(">Q", 1)))
        raw[40] ^= 1
        txn.put(struct.pack(">Q", 1), bytes(raw))
    env.close()
    r = run_scrm("trail", "verify", "--data", str(client.data_dir))
    assert r.returncode == 3
    out = orjson.loads(r.stdout)
    assert out["ok"] is False and out["first_broken"] == 1 and "changed" in out["why"]


async def test_upload_ingest_job(client, tenant):
    h = await login(client, "admin")
    before = await (await client.get("/api/v1/stats", headers=h)).json()
    extra = tenant["sim"].parent / "extra"
    if not extra.exists():
        simulate(extra, 300, seed=77)
    body = b"".join(p.read_bytes() for p in sorted((extra / "batches").glob("*.jsonl")))
    # the extra corpus has its own keys: upload with the tenant's keys quarantines nothing lost
    r = await client.post("/api/v1/ingest", data=io.BytesIO(body), headers=h)
    assert r.status == 202
    job = await r.json()
    for _ in range(100):
        job = await (await client.get(f"/api/v1/jobs/{job['id']}", headers=h)).json()
        if job["status"] not in ("queued", "running"):
            break
        await asyncio.sleep(0.1)
    assert job["status"] == "done", job
    after = await (await client.get("/api/v1/stats", headers=h)).json()
    # other keys: every item is kept in quarantine with its reason, nothing dropped silently
    assert after["quarantine"] == before["quarantine"] + job["summary"]["quarantined"]
    assert job["summary"]["quarantined"] + job["summary"]["duplicates_skipped"] == 300
    r = await client.post("/api/v1/ingest", data=b"", headers=h)
    assert r.status == 422
    lead = await login(client, "lead")
    assert (await client.post("/api/v1/ingest", data=io.BytesIO(body), headers=lead)).status == 403


def stored_records(client) -> list[dict]:
    import msgpack

    from control.keys import STORE

    return [msgpack.unpackb(v) for chunk in client.app[STORE].record_value_chunks() for v in chunk]


async def test_search_is_scoped_exact_and_trailed(client, tenant):
    records = stored_records(client)
    alice, d = tenant["alice"], tenant["directory"]
    alice_rooms = {g["roomid"] for g in d["groups"]
                   if alice in {m["id"] for m in g["members"]} | {g["owner"]} | {c["owner"] for c in
                                                                                 g.get("owner_changes", [])}}

    def visible_to_alice(r):
        return alice in {r["from"], *r["tolist"]} or r["roomid"] in alice_rooms

    by_seq = {r["seq"]: r for r in records}
    names = {c["external_userid"]: c["name"] for c in d["customers"] if c.get("name")}
    names |= {e["userid"]: e["name"] for e in d["employees"] if e.get("name")}

    async def pages(h, **params):
        seqs, cursor, total = [], None, None
        while True:
            q = {**params, "limit": "37", **({"cursor": cursor} if cursor else {})}
            r = await client.get("/api/v1/search", params=q, headers=h)
            assert r.status == 200, await r.text()
            page = await r.json()
            total = page["total"] if total is None else total
            assert page["total"] == total and page["index_lag"] == 0
            seqs += [it["seq"] for it in page["items"]]
            for it in page["items"]:  # each item is its stored record's fields, the sender named
                r = by_seq[it["seq"]]
                assert {k: it[k] for k in ("msgid", "msgtime", "msgtype", "from", "tolist", "roomid", "conv")} == \
                       {k: r[k] for k in ("msgid", "msgtime", "msgtype", "from", "tolist", "roomid", "conv")}
                assert it["from_name"] == names.get(r["from"], r["from"])
                assert set(it) == {"msgid", "seq", "msgtime", "snippet", "highlights", "msgtype", "from", "tolist",
                                   "roomid", "conv", "from_name"}
            cursor = page["next_cursor"]
            if not cursor:
                return total, seqs

    def newest(rs):
        return [r["seq"] for r in sorted(rs, key=lambda r: (r["msgtime"], r["seq"]), reverse=True)]

    admin = await login(client, "admin")
    want = newest(r for r in records if "的" in r["text"])
    assert await pages(admin, q="的") == (len(want), want)
    h = await login(client, "alice")
    want = newest(r for r in records if "的" in r["text"] and visible_to_alice(r))
    assert 0 < len(want) < len([r for r in records if "的" in r["text"]])
    assert await pages(h, q="的") == (len(want), want)
    # filters cannot widen the scope: bob's conversations, bob as employee filter
    assert (await client.get("/api/v1/search", params={"employee": tenant["bob"]}, headers=h)).status == 403
    bob_only = [r for r in records if tenant["bob"] in {r["from"], *r["tolist"]} and not visible_to_alice(r)]
    conv = bob_only[0]["conv"]
    assert await pages(h, conv=conv) == (0, [])
    # bad queries are problem documents, not server errors
    for params in ({"q": "(的"}, {"q": "的", "cursor": "x"}, {"q": "x" * 1001}, {"type": "photos"},
                   {"q": "的", "limit": "0"}, {"days": "-1"}):
        r = await client.get("/api/v1/search", params=params, headers=admin)
        assert 400 <= r.status < 500, (params, r.status)
        assert "detail" in await r.json()
    # the search was written to the access trail with the seqs it showed
    r = await client.get("/api/v1/trail", params={"limit": "2000", "verify": "1"}, headers=admin)
    body = await r.json()
    assert body["verify"]["ok"]
    assert any(e["action"] == "search" and e["user"] == "alice" and e["target"] == "的" and e["detail"]["seqs"]
               for e in body["entries"])


async def test_archive_lists_v1_v3_v4(client, tenant):
    d = tenant["directory"]
    admin = await login(client, "admin")
    records = stored_records(client)
    convs = {r["conv"] for r in records}
    r = await client.get("/api/v1/archive/employees", headers=admin)
    assert r.status == 200
    body = await r.json()
    active = [e for e in d["employees"] if e["status"] == "active"]
    assert body["totals"]["employees"] == len(active)
    assert body["totals"]["archive_enabled"] == sum(e["archived"] for e in active)
    for row in body["items"]:
        uid = row["userid"]
        custs = {p for c in convs if c.startswith("p:") and uid in c[2:].split("|")
                 for p in c[2:].split("|") if p.startswith(("wm", "wo"))}
        assert row["archived_customer_count"] == len(custs), uid
        assert row["customer_count"] == sum(uid in c.get("follow_users", []) for c in d["customers"])
    r = await client.get("/api/v1/archive/employees", params={"status": "resigned"}, headers=admin)
    resigned = (await r.json())["items"]
    assert {x["userid"] for x in resigned} == {e["userid"] for e in d["employees"] if e["status"] == "resigned"}
    assert all(x["resigned_at"] for x in resigned)
    r = await client.get("/api/v1/archive/customers", headers=admin)
    body = await r.json()
    last: dict[str, int] = {}
    sessions: dict[str, set] = {}
    for rec in records:
        if rec["conv"].startswith("p:"):
            for p in rec["conv"][2:].split("|"):
                if p.startswith(("wm", "wo")):
                    last[p] = max(last.get(p, 0), rec["msgtime"])
                    sessions.setdefault(p, set()).add(rec["conv"])
    one_to_one = {x["external_userid"]: x for x in body["items"] if x["external_userid"] in last}
    assert set(one_to_one) == set(last)
    for cid, x in one_to_one.items():
        assert x["sessions"] >= len(sessions[cid]) and x["last_session_time"] >= last[cid]
    # scope: alice sees only herself among employees
    h = await login(client, "alice")
    body = await (await client.get("/api/v1/archive/employees", headers=h)).json()
    assert [x["userid"] for x in body["items"]] == [tenant["alice"]]
    r = await client.get("/api/v1/archive/employees", params={"enabled": "maybe"}, headers=admin)
    assert r.status == 422


async def test_message_context_after_a_seq(client):
    records = stored_records(client)
    by_conv: dict[str, list[int]] = {}
    for r in records:
        by_conv.setdefault(r["conv"], []).append(r["seq"])
    conv, seqs = max(((c, s) for c, s in by_conv.items() if c.startswith("p:")), key=lambda x: len(x[1]))
    seqs.sort()
    pivot = seqs[len(seqs) // 2]
    admin = await login(client, "admin")
    r = await client.get(f"/api/v1/conversations/{conv}/messages", params={"after_seq": str(pivot), "limit": "5"},
                         headers=admin)
    assert r.status == 200
    got = [m["seq"] for m in (await r.json())["items"]]
    assert got == sorted([s for s in seqs if s > pivot][:5], reverse=True)
    r = await client.get(f"/api/v1/conversations/{conv}/messages", params={"before_seq": str(pivot + 1), "limit": "3"},
                         headers=admin)
    assert [m["seq"] for m in (await r.json())["items"]] == sorted([s for s in seqs if s <= pivot], reverse=True)[:3]


async def test_departments_roles_and_consent_state(client, tenant):
    d = tenant["directory"]
    admin = await login(client, "admin")
    deps = await (await client.get("/api/v1/departments", headers=admin)).json()
    assert {x["id"] for x in deps} == {x["id"] for x in d["departments"]}
    assert sum(x["employees"] for x in deps) == len(d["employees"])
    roles = {r["role"]: r for r in await (await client.get("/api/v1/roles", headers=admin)).json()}
    assert roles["regular"]["scope"] == "self" and "admin.users" in roles["admin"]["permissions"]
    state = await (await client.get("/api/v1/consent/state", headers=admin)).json()
    latest = {}
    for c in sorted(d["consent"], key=lambda c: c["time"]):
        latest[c["external_userid"]] = "disagreed" if c["status"] == "Disagree" else "agreed"
    got = {c["external_userid"]: c["status"] for c in state["customers"]}
    # the directory's answers, unless the stream changed them later
    assert set(latest) <= set(got)
    assert state["service_requires_consent"] == d["corp"]["service_requires_consent"]
    r = await client.get("/api/v1/consent/state", params={"status": "maybe"}, headers=admin)
    assert r.status == 422
    lead = await login(client, "lead")
    scoped = await (await client.get("/api/v1/consent/state", headers=lead)).json()
    assert len(scoped["customers"]) < len(state["customers"])
    alice = await login(client, "alice")
    assert (await client.get("/api/v1/consent/state", headers=alice)).status == 403  # no consent.read


async def test_custom_roles_and_account_changes_take_effect_at_once(client, tenant):
    admin = await login(client, "admin")
    bob = await login(client, "bob")
    # a custom role: the words list only, no archive reading
    r = await client.post("/api/v1/roles", json={"role": "words-editor", "permissions": ["words.read", "words.write"],
                                                 "scope": "self"}, headers=admin)
    assert r.status == 201, await r.text()
    assert (await client.post("/api/v1/roles", json={"role": "words-editor", "permissions": [], "scope": "self"},
                              headers=admin)).status == 409
    for bad in ({"role": "x", "permissions": ["root"], "scope": "self"},
                {"role": "x", "permissions": [], "scope": "galaxy"},
                {"role": "../x", "permissions": [], "scope": "self"},
                {"role": "x", "permissions": "words.read", "scope": "self"}):
        r = await client.post("/api/v1/roles", json=bad, headers=admin)
        assert r.status == 422, bad
    assert (await client.put("/api/v1/roles/admin", json={"permissions": [], "scope": "all"},
                             headers=admin)).status == 409  # built-ins are fixed
    assert (await client.post("/api/v1/roles", json={"role": "y", "permissions": [], "scope": "all"},
                              headers=bob)).status == 403
    assert (await client.get("/api/v1/conversations", headers=bob)).status == 200
    r = await client.patch("/api/v1/users/bob", json={"role": "words-editor"}, headers=admin)
    assert r.status == 200 and (await r.json())["permissions"] == ["words.read", "words.write"]
    # bob's existing session now has the new role's rights
    assert (await client.get("/api/v1/conversations", headers=bob)).status == 403
    assert (await client.get("/api/v1/words", headers=bob)).status == 200
    # redefining the role changes what its holders may do, also at once
    r = await client.put("/api/v1/roles/words-editor", json={"permissions": ["archive.read"], "scope": "all"},
                         headers=admin)
    assert r.status == 200
    me = await (await client.get("/api/v1/me", headers=bob)).json()
    assert me["scope"] == "all" and me["permissions"] == ["archive.read"]
    assert (await client.get("/api/v1/words", headers=bob)).status == 403
    roles = {x["role"]: x for x in await (await client.get("/api/v1/roles", headers=admin)).json()}
    assert roles["words-editor"]["users"] == 1 and roles["words-editor"]["builtin"] is False
    # a role somebody holds cannot be deleted; afterwards it can
    r = await client.delete("/api/v1/roles/words-editor", headers=admin)
    assert r.status == 409 and "bob" in (await r.json())["detail"]
    assert (await client.patch("/api/v1/users/bob", json={"role": "regular", "sharing": True},
                               headers=admin)).status == 200
    assert (await client.get("/api/v1/me", headers=bob)).status == 200
    assert (await (await client.get("/api/v1/me", headers=bob)).json())["scope"] == "department"
    assert (await client.delete("/api/v1/roles/words-editor", headers=admin)).status == 200
    assert (await client.delete("/api/v1/roles/words-editor", headers=admin)).status == 404
    assert (await client.delete("/api/v1/roles/regular", headers=admin)).status == 409
    for bad in ({}, {"role": "nope"}, {"password": "x" * 10}, {"department": -1}, {"sharing": "yes"}):
        r = await client.patch("/api/v1/users/bob", json=bad, headers=admin)
        assert r.status == 422, bad
    assert (await client.patch("/api/v1/users/nobody", json={"sharing": True}, headers=admin)).status == 404
    trail = await (await client.get("/api/v1/trail", params={"limit": 10000}, headers=admin)).json()
    actions = [e["action"] for e in trail["entries"]]
    assert {"role_created", "role_changed", "role_deleted", "user_changed"} <= set(actions)


def test_login_throttling_is_shared_between_server_processes(tmp_path):
    import subprocess
    import sys

    from control.errors import ApiError

    def other_worker(password: str, times: int) -> list[int]:
        """Login attempts from another process on the same data directory: their statuses."""
        code = ("import sys; from pathlib import Path; from control.accounts import AccountService\n"
                "from control.errors import ApiError\n"
                "a = AccountService(Path(sys.argv[1])); out = []\n"
                "for _ in range(int(sys.argv[3])):\n"
                "    try: a.login('carol', sys.argv[2], '10.0.0.1'); out.append(200)\n"
                "    except ApiError as e: out.append(e.status)\n"
                "print(out)")
        p = subprocess.run([sys.executable, "-c", code, str(tmp_path), password, str(times)], capture_output=True,
                           text=True, check=True, timeout=120)
        return orjson.loads(p.stdout)

    import time

    a = AccountService(tmp_path)
    a.create_user("carol", PASSWORD, "regular")
    assert other_worker("wrong-password", 3) == [401, 401, 401]
    with pytest.raises(ApiError) as e:  # the other process's failures slow this one down …
        a.login("carol", PASSWORD, "10.0.0.1")
    assert e.value.status == 429
    time.sleep(int(e.value.headers["Retry-After"]) + 0.1)
    with pytest.raises(ApiError) as e:
        a.login("carol", "wrong-password", "10.0.0.9")
    assert e.value.status == 401
    assert other_worker(PASSWORD, 1) == [429]  # … and this one's the other (a 2 s wait now)
    time.sleep(2.2)
    token, _ = a.login("carol", PASSWORD, "10.0.0.2")  # waited, never locked out
    assert token
    a.close()


async def test_repeated_searches_run_on_the_loop_first_ones_and_slow_ones_on_threads(client, tenant):
    from control.api import INLINE_MAX_S, ReadCosts
    from control.keys import READ_COSTS

    admin = await login(client, "admin")
    costs = client.app[READ_COSTS]

    async def search(q: str) -> list[int]:
        r = await client.get("/api/v1/search", params={"q": q, "limit": "5"}, headers=admin)
        assert r.status == 200
        return [it["seq"] for it in (await r.json())["items"]]

    before = (costs.inline, costs.threaded)
    first = await search("的")
    assert (costs.inline, costs.threaded) == (before[0], before[1] + 1), "a first-time read goes to the threads"
    [key] = [k for k in costs._last if "的" in k]  # timed; set as fast (a busy CI box may take longer)
    costs.note(key, INLINE_MAX_S / 2)
    assert await search("的") == first
    assert (costs.inline, costs.threaded) == (before[0] + 1, before[1] + 1), "a cheap repeat runs on the loop"
    # a read that was slow last time goes back to the threads
    costs.note(key, INLINE_MAX_S * 10)
    assert await search("的") == first
    assert costs.threaded == before[1] + 2
    text = await (await client.get("/metrics", headers=admin)).text()
    assert f'scrm_archive_reads_total{{where="event_loop"}} {costs.inline}' in text
    # bounded: a full map starts over
    small = ReadCosts(limit=2)
    for k in "abc":
        small.note(k, 0.0)
    assert not small.cheap("a") and small.cheap("c")


async def test_every_route_that_returns_content_is_trailed(client, tenant):
    """Walks every GET route of the OpenAPI document as an admin: a route whose answer
    holds archived text (an oracle from the stored records, not the route's metadata) must
    be marked trailed and must have added a trail entry before answering."""
    from control.keys import TRAIL

    admin = await login(client, "admin")
    records = stored_records(client)
    texts = [r["text"] for r in records if len(r["text"]) >= 6]
    # what only messages hold: not a name, department or id of the directory
    known = orjson.dumps(tenant["directory"]).decode()
    fragments = {t[:6] for t in texts if t[:6] not in known}
    conv = records[0]["conv"]
    values = {"conv": conv, "seq": str(records[0]["seq"])}
    doc = await (await client.get("/api/v1/openapi.json")).json()
    trail = client.app[TRAIL]
    checked = 0
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        if op is None or "{job_id}" in path or "{token_id}" in path:
            continue
        if not path.startswith("/api/"):
            continue  # WeCom's callback: signed requests from WeCom, no archived text
        if "text/event-stream" in op["responses"]["200"]["content"]:
            continue  # a stream that stays open (the dialer's pop-ups: no archived text)
        url = path
        for name, v in values.items():
            url = url.replace("{" + name + "}", urllib.parse.quote(v, safe=""))
        if "{" in url:
            continue  # ids of other kinds (customers, pools, imports): no archived text behind them
        params = {"q": "的"} if path.endswith("/search") else {}
        if path.endswith("/transfers/candidates"):
            params = {"employee": next(iter(tenant["directory"]["employees"]))["userid"]}
        before = len(trail.entries())
        r = await client.get(url, params=params, headers=admin)
        assert r.status == 200, (path, r.status)
        body = (await r.read()).decode("utf-8", "replace")
        holds_content = any(f in body for f in fragments)
        grew = len(trail.entries()) > before
        if holds_content or op.get("x-trailed"):
            checked += 1
            assert op.get("x-trailed"), f"{path} returns archived text but is not marked trailed"
            assert grew, f"{path} answered without a trail entry"
    assert checked >= 4


async def test_malformed_ids_and_cursors_are_4xx_never_500(client, tenant):
    admin = await login(client, "admin")
    records = stored_records(client)
    seq = records[0]["seq"]
    assert (await client.get(f"/api/v1/messages/{seq}", headers=admin)).status == 200
    # int() accepts all of these; none is the message's id
    for bad in (f"+{seq}", f"{str(seq)[:1]}_{str(seq)[1:]}" if len(str(seq)) > 1 else f"0{seq}", f"0{seq}",
                "99999999999999999999", "-1"):
        r = await client.get(f"/api/v1/messages/{urllib.parse.quote(bad)}", headers=admin)
        assert r.status == 400, (bad, r.status)
    for cursor in ("-1:-1", "1:99999999999999999999", "+1:2", "1:2:3", "x"):
        r = await client.get("/api/v1/search", params={"q": "的", "cursor": cursor}, headers=admin)
        assert 400 <= r.status < 500, (cursor, r.status)
    conv = records[0]["conv"]
    r = await client.get(f"/api/v1/conversations/{urllib.parse.quote(conv + chr(0), safe='')}/messages",
                         headers=admin)
    assert r.status == 422
    r = await client.get("/api/v1/search", params={"q": "的", "employee": "a\x00b"}, headers=admin)
    assert r.status == 422
    for perms in ([["archive.read"]], [{}], "archive.read", [1]):
        r = await client.post("/api/v1/roles", json={"role": "r1", "permissions": perms, "scope": "self"},
                              headers=admin)
        assert r.status == 422, (perms, r.status)
    r = await client.post("/api/v1/roles", json={"role": "r1", "permissions": ["archive.read"], "scope": "self"},
                          headers=admin)
    assert r.status in (200, 201)
    r = await client.put("/api/v1/roles/r1", json={"permissions": [["x"]], "scope": "self"}, headers=admin)
    assert r.status == 422


async def test_a_large_json_body_in_small_pieces_with_pauses_is_read_whole(client):
    admin = await login(client, "admin")
    entries = [{"word": f"词{i:05d}", "related": [f"关联{i:05d}"]} for i in range(1500)]
    body = orjson.dumps({"entries": entries})
    assert len(body) > 46_000

    async def pieces():
        for at in range(0, len(body), 4096):
            yield body[at:at + 4096]
            await asyncio.sleep(0.005)

    r = await client.put("/api/v1/words", data=pieces(), headers={**admin, "Content-Type": "application/json"})
    assert r.status == 200, await r.text()
    got = await (await client.get("/api/v1/words", headers=admin)).json()
    assert len(got["entries"]) == 1500
    # over the limit in pieces: 413, not a parse error
    big = orjson.dumps({"entries": [{"word": "长" * 200}] * 20_000})

    async def big_pieces():
        for at in range(0, len(big), 65536):
            yield big[at:at + 65536]

    r = await client.put("/api/v1/words", data=big_pieces(), headers={**admin, "Content-Type": "application/json"})
    assert r.status == 413


async def test_every_route_refuses_malformed_path_and_query_values(client):
    """Walks the OpenAPI document: every path segment and every declared query value, sent
    out of form (a NUL, overlong, `+1`, `1_0`, a 20-digit number, an unknown enum value),
    is answered 400 or 422 by the one parameter check — never a 500 and never the handler's
    200 (which would mean the value reached it)."""
    admin = await login(client, "admin")
    doc = await (await client.get("/api/v1/openapi.json")).json()
    bad_path = {"string": ["a\x00b", "x" * 201, "\x7f"], "integer": ["+1", "1_0", "99999999999999999999", "01"]}
    tried = 0
    for path, ops in doc["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, op in ops.items():
            params = op.get("parameters", [])
            good = {p["name"]: ("1" if p["schema"].get("type") == "integer" else "abc")
                    for p in params if p["in"] == "path"}
            for p in params:
                kind = "integer" if p["schema"].get("type") == "integer" else "string"
                if p["in"] == "path":
                    values = bad_path[kind]
                elif "enum" in p["schema"]:
                    values = ["no-such-value"]
                elif kind == "integer":
                    values = ["+1", "1_0", "99999999999999999999"]
                else:
                    values = ["a\x00b", "x" * 2001]
                for v in values:
                    url, query = path, {}
                    for name, g in good.items():
                        url = url.replace("{" + name + "}", urllib.parse.quote(v if name == p["name"] else g, safe=""))
                    if p["in"] == "query":
                        query = {p["name"]: v}
                    r = await client.request(method.upper(), url, params=query, headers=admin,
                                             json={} if method in ("post", "put", "patch") else None)
                    tried += 1
                    assert r.status in (400, 422), (method, path, p["name"], v, r.status, await r.text())
    assert tried > 100


@pytest.mark.parametrize("role", ["admin", "auditor", "leader", "regular", "custom"])
async def test_each_role_walks_every_route_and_gets_exactly_its_permissions(client, tenant, role):
    """Every operation of the OpenAPI document, called by an account of each built-in role
    and of a custom one: refused 403 exactly where the role lacks the operation's declared
    permission, never refused for permission otherwise, never a 500."""
    import re

    from control.accounts import ROLES
    from control.keys import ACCOUNTS

    acc = client.app[ACCOUNTS]
    if role == "custom":
        perms = {"alerts.read", "metrics.read", "customers.read", "dialer.read"}
        acc.put_role("walker", sorted(perms), "self", create=True)
        acc.create_user("walker", PASSWORD, "walker", employee=tenant["alice"])
        name = "walker"
    else:
        perms = set(ROLES[role][0])
        name = f"walk-{role}"
        acc.create_user(name, PASSWORD, role, employee=tenant["alice"])
    h = await login(client, name)
    doc = await (await client.get("/api/v1/openapi.json")).json()
    walked = refused = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("security") != [{"bearer": []}] or path == "/api/v1/auth/logout":
                continue  # public, a device's, or one that ends this session
            url = path
            for p in op.get("parameters", []):
                if p["in"] != "path":
                    continue
                pattern = p["schema"].get("pattern")
                value = "1" if p["schema"].get("type") == "integer" else next(
                    (c for c in ("abc", "0123456789abcdef", "r1") if pattern is None or re.search(pattern, c)), "abc")
                url = url.replace("{" + p["name"] + "}", value)
            lacks = op.get("x-permission") is not None and op["x-permission"] not in perms
            if "text/event-stream" in op["responses"]["200"]["content"] and not lacks:
                continue  # a stream that stays open (the dialer's pop-ups)
            r = await client.request(method.upper(), url, headers=h,
                                     json={} if method in ("post", "put", "patch") else None)
            text = (await r.read()).decode("utf-8", "replace")  # some answers are files
            assert r.status < 500, (role, method, path, r.status, text)
            walked += 1
            if lacks:
                refused += 1
                assert r.status == 403 and "lacks the permission" in text, (role, method, path, r.status, text)
            else:
                assert "lacks the permission" not in text, (role, method, path, r.status, text)
    assert walked > 80 and (refused == 0) == (role == "admin")


async def test_content_answers_carry_their_trail_receipt_and_none_leaves_without(aiohttp_client, client):
    """A content route answers with the index of the trail entry it wrote (X-Trail-Entry);
    a route marked as returning content that wrote none is refused by the server itself."""
    from control.api import endpoint, json_response
    from control.app import create_app
    from control.config import ControlConfig
    from control.keys import TRAIL

    admin = await login(client, "admin")
    r = await client.get("/api/v1/alerts", headers=admin)
    assert r.status == 200
    newest = client.app[TRAIL].entries(1, None, True)[0]
    assert r.headers["X-Trail-Entry"] == str(newest["index"]) and newest["action"] == "read_alerts"
    r = await client.get("/api/v1/audits", params={"status": "pending"}, headers=admin)
    newest = client.app[TRAIL].entries(1, None, True)[0]
    assert r.headers["X-Trail-Entry"] == str(newest["index"]) and newest["action"] == "read_audits"
    assert newest["detail"]["count"] == len(await r.json())

    @endpoint("leaks", perm="archive.read", trailed=True)
    async def forgetful(request):
        return json_response({"text": "archived words"})

    app = create_app(ControlConfig(data_dir=client.data_dir, keys_dir=None))
    app.router.add_get("/api/v1/forgetful", forgetful)
    await client.close()  # one server on the data directory at a time
    other = await aiohttp_client(app)
    h = await login(other, "admin")
    r = await other.get("/api/v1/forgetful", headers=h)
    assert r.status == 500 and b"archived words" not in await r.read()
