"""Inheritance against the fake WeCom (rules I-1 … I-3, ``wecom-api.md`` §4): batches of
100 with per-customer errcodes, refusals and a taker at its limit, the 90-day rule checked
before calling, more than 300 groups (the rest the next day), the 24-hour takeover polled
("waiting until …"), a token WeCom drops early; final states equal WeCom's; the archive
scope moves at takeover and not before; a resigned employee's accounts are disabled at once."""

from __future__ import annotations

import asyncio
import shutil
import urllib.parse

import orjson
import pytest

from control.accounts import AccountService
from control.app import create_app
from control.config import ControlConfig
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore, app_key
from scrm_fast.wecom.fake import DAY_MS, FakeWeCom
from tests.conftest import run_scrm

PASSWORD = "correct-horse-9"
T0 = 1796090400000


@pytest.fixture(scope="module")
def archive(small_corpus, tmp_path_factory):
    data = tmp_path_factory.mktemp("xfer") / "data"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--directory",
             str(small_corpus / "directory.json"), "--no-progress", str(small_corpus / "batches"), check=True)
    directory = orjson.loads((small_corpus / "directory.json").read_bytes())
    store = ArchiveStore(data, readonly=True)
    convs = [c.conv for c in store.conversation_summaries() if c.conv.startswith("p:")]
    import msgpack

    # conversations with some text to search for come first (the search check needs one)
    texty = {r["conv"] for chunk in store.record_value_chunks() for r in map(msgpack.unpackb, chunk)
             if len(r.get("text") or "") >= 2}
    convs.sort(key=lambda c: c not in texty)
    store.close()
    emps = {e["userid"]: e for e in directory["employees"]}
    # an active employee with one-to-one customer chats, a successor, and a resigned one
    by_emp: dict[str, list[tuple[str, str]]] = {}
    for conv in convs:
        a, b = conv[2:].split("|")
        for e, c in ((a, b), (b, a)):
            if e in emps and c.startswith(("wm", "wo")):
                by_emp.setdefault(e, []).append((c, conv))
    active = sorted((e for e in by_emp if emps[e]["status"] == "active"), key=lambda e: -len(by_emp[e]))
    resigned = [e for e in by_emp if emps[e]["status"] == "resigned"]
    return {"data": data, "directory": directory, "old": active[0], "chats": by_emp[active[0]][:3],
            "heir": next(e for e in emps if emps[e]["status"] == "active" and e != active[0]
                         and e not in by_emp), "resigned": resigned[0] if resigned else None,
            "resigned_chats": by_emp[resigned[0]][:2] if resigned else []}


@pytest.fixture
async def env(archive, tmp_path, monkeypatch, master_key, aiohttp_server, aiohttp_client):
    data = tmp_path / "data"
    shutil.copytree(archive["data"], data)
    own_key = tmp_path / "mk" / "master.key"
    own_key.parent.mkdir()
    shutil.copy(master_key, own_key)
    monkeypatch.setenv("SCRM_MASTER_KEY_FILE", str(own_key))
    clock_file = tmp_path / "clock"
    clock_file.write_text(str(T0))
    clock = FileClock(clock_file)
    fake = FakeWeCom(clock)
    for e in archive["directory"]["employees"]:
        fake.s.employees[e["userid"]] = {"status": e["status"]}
    for c in archive["directory"]["customers"]:
        for u in c.get("follow_users", []):
            fake.s.follows.add((u, c["external_userid"]))
    server = await aiohttp_server(fake.app())
    (tmp_path / "secret").write_text("contact-secret")
    monkeypatch.setenv("SCRM_CLOCK", f"file:{clock_file}")
    monkeypatch.setenv("SCRM_WECOM_BASE", str(server.make_url("")).rstrip("/"))
    monkeypatch.setenv("SCRM_WECOM_CORP", fake.s.corpid)
    monkeypatch.setenv("SCRM_WECOM_SECRET_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("SCRM_TRANSFER_POLL_S", "3600")
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("olduser", PASSWORD, "regular", employee=archive["old"])
    acc.create_user("heiruser", PASSWORD, "regular", employee=archive["heir"])
    if archive["resigned"]:
        acc.create_user("gone", PASSWORD, "regular", employee=archive["resigned"])
    acc.close()
    client = await aiohttp_client(create_app(ControlConfig(data_dir=data)))
    return {"client": client, "fake": fake, "clock": clock, "data": data, **archive}


async def hdr(client, user):
    r = await client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def sees(client, h, conv) -> bool:
    r = await client.get(f"/api/v1/conversations/{urllib.parse.quote(conv, safe='')}/messages?limit=5", headers=h)
    return r.status == 200


async def test_on_the_job_transfer_against_the_fake(env):
    client, fake, clock = env["client"], env["fake"], env["clock"]
    old, heir = env["old"], env["heir"]
    boss = await hdr(client, "boss")
    real = [c for c, _ in env["chats"]]
    # the customers' records in the SCRM, owned by the old employee
    for i, ext in enumerate(real):
        r = await client.post("/api/v1/customers", headers=boss, json={
            "name": f"客户{i}", "phone": f"1390000{i:04d}", "external_userid": ext, "owner": old})
        assert r.status == 201, await r.text()
    for ext in real:  # WeCom knows them as the old employee's customers
        fake.s.follows.add((old, ext))
    synthetic = [f"wmsyn{i:05d}" for i in range(250)]
    for ext in synthetic:
        fake.s.follows.add((old, ext))
    fake.s.refusing |= set(synthetic[:5])
    fake.s.employees[heir]["limit"] = len(fake.customers_of(heir)) + len(real) + 240  # the last few: at the limit
    twice = "wmtwice000"  # transferred twice within 90 days already: WeCom would say 40128
    fake.s.follows.add((old, twice))
    from control.keys import STORE

    with client.server.app[STORE].app_write() as t:  # the SCRM's own ledger of two earlier transfers
        t.put("cu.xhist", app_key(old, twice), [T0 - 30 * DAY_MS, T0 - 10 * DAY_MS])
    stranger = "wmnotyours"
    fake.s.follows.add(("someone-else", stranger))
    fake.s.employees["someone-else"] = {"status": "active"}
    groups = [f"wrg{i:04d}" for i in range(320)]
    for g in groups:
        fake.s.groups[g] = old
    custs = real + synthetic + [twice, stranger]
    olduser, heiruser = await hdr(client, "olduser"), await hdr(client, "heiruser")
    conv = env["chats"][0][1]
    assert await sees(client, olduser, conv) and not await sees(client, heiruser, conv)

    r = await client.post("/api/v1/transfers", headers=boss, json={
        "kind": "on_job", "from": old, "to": heir, "customers": custs, "groups": groups,
        "message": "您好，由我继续为您服务"})
    job = await r.json()
    assert r.status == 201, job
    sent = [c for c in fake.s.calls if c.endswith("/transfer_customer")]
    assert len(sent) == 3  # 252 to send: batches of 100, 100, 52
    assert job["customers"][twice]["state"] == "local_refused" and job["customers"][twice]["errcode"] == 40128
    assert not any(tr.ext == twice for tr in fake.s.transfers)  # never sent
    assert job["customers"][stranger] == {"state": "failed", "errcode": 40131,
                                          "reason": "not the customer's follow-up employee"}
    later = [g for g in groups if job["groups"][g]["state"] == "scheduled"]
    assert sum(g["state"] == "done" for g in job["groups"].values()) == 300 and len(later) == 20
    assert {job["groups"][g]["day"] for g in later} == {"2026-12-02"}
    assert all(fake.s.groups[g] == heir for g in groups if job["groups"][g]["state"] == "done")
    assert all(fake.s.groups[g] == old for g in later)
    # before the 24 hours: waiting until …, nothing moved
    clock.set(T0 + 23 * 3600_000)
    fake.invalidate_tokens(40014)  # WeCom dropped the token early
    job = await (await client.post(f"/api/v1/transfers/{job['id']}/poll", headers=boss)).json()
    waiting = [c for c in job["customers"].values() if c["state"] == "waiting"]
    assert waiting and all(c["until"] == T0 + DAY_MS for c in waiting)
    assert all(fake.s.groups[g] == heir for g in later)  # a new day (09:00 on 12-02): the rest went
    assert await sees(client, olduser, conv) and not await sees(client, heiruser, conv)
    rec = (await (await client.get("/api/v1/customers?limit=10", headers=boss)).json())["customers"]
    assert {c["owner"] for c in rec} == {old}
    # after them: done, refused, at the limit — what WeCom says
    clock.set(T0 + DAY_MS + 60_000)
    job = await (await client.post(f"/api/v1/transfers/{job['id']}/poll", headers=boss)).json()
    wecom = {tr.ext: {1: "done", 3: "refused", 4: "limit", 5: "no_record"}[tr.status] for tr in fake.s.transfers}
    ours = {e: c["state"] for e, c in job["customers"].items() if e in wecom}
    assert ours == wecom
    assert {s for s in ours.values()} == {"done", "refused", "limit"}
    assert sum(s == "refused" for s in ours.values()) == 5
    assert all(job["customers"][e]["state"] == "done" for e in real), [job["customers"][e] for e in real]
    # the archive scope moved at takeover: the heir reads the whole history, the old owner no longer
    await asyncio.sleep(1.1)  # the views look at the directory's stamp once a second
    assert await sees(client, heiruser, conv) and not await sees(client, olduser, conv)
    # search follows too: the heir finds the chat's messages, the old owner no longer does
    page = await (await client.get(f"/api/v1/conversations/{urllib.parse.quote(conv, safe='')}/messages?limit=50",
                                   headers=boss)).json()
    text = next(m["text"] for m in page["items"] if len(m["text"] or "") >= 2)
    q = {"q": text[:2], "conv": conv, "limit": "100"}
    found = await (await client.get("/api/v1/search", params=q, headers=heiruser)).json()
    assert found["total"] > 0 and {i["conv"] for i in found["items"]} == {conv}
    found = await (await client.get("/api/v1/search", params=q, headers=olduser)).json()
    assert found["total"] == 0
    everything = await (await client.get("/api/v1/search", params={**q, "conv": conv}, headers=boss)).json()
    heirs_view = await (await client.get("/api/v1/search", params=q, headers=heiruser)).json()
    assert heirs_view["total"] == everything["total"]  # the whole history, not part of it
    rec = (await (await client.get("/api/v1/customers?limit=10", headers=boss)).json())["customers"]
    assert {c["owner"] for c in rec} == {heir}
    assert all(g["state"] == "done" for g in job["groups"].values()) and job["state"] == "done"
    assert fake.s.calls.count("gettoken") >= 2  # refreshed once after the early drop


async def test_resigned_transfer_disables_accounts_at_once_and_keeps_the_archive(env):
    if env["resigned"] is None:
        pytest.skip("the corpus has no resigned employee with chats")
    client, fake, clock = env["client"], env["fake"], env["clock"]
    gone, heir = env["resigned"], env["heir"]
    boss = await hdr(client, "boss")
    conv = env["resigned_chats"][0][1]
    ext = env["resigned_chats"][0][0]
    fake.s.follows.add((gone, ext))
    r = await client.post("/api/v1/transfers", headers=boss, json={
        "kind": "resigned", "from": gone, "to": heir, "customers": [ext]})
    job = await r.json()
    assert r.status == 201 and job["accounts_disabled"] == 1, job
    r = await client.post("/api/v1/auth/login", json={"username": "gone", "password": PASSWORD})
    assert r.status in (401, 403)  # I-3: at once, not after the takeover
    heiruser = await hdr(client, "heiruser")
    assert not await sees(client, heiruser, conv)
    clock.set(T0 + DAY_MS + 1000)
    job = await (await client.post(f"/api/v1/transfers/{job['id']}/poll", headers=boss)).json()
    assert job["customers"][ext]["state"] == "done" and job["state"] == "done"
    await asyncio.sleep(1.1)  # the views look at the directory's stamp once a second
    assert await sees(client, heiruser, conv) and await sees(client, boss, conv)  # V-3: still readable


async def test_transfer_input_is_checked(env):
    client = env["client"]
    boss = await hdr(client, "boss")
    for doc in ({"kind": "x", "from": "a", "to": "b", "customers": ["wm1"]},
                {"kind": "on_job", "from": "a", "to": "a", "customers": ["wm1"]},
                {"kind": "on_job", "from": "a", "to": "b"},
                {"kind": "on_job", "from": "a", "to": "b", "customers": ["wm1"], "message": "x" * 201},
                {"kind": "resigned", "from": "a", "to": "b", "customers": ["wm1"], "message": "hi"},
                {"kind": "on_job", "from": "a", "to": "b", "customers": "wm1"}):
        r = await client.post("/api/v1/transfers", headers=boss, json=doc)
        assert r.status == 422, (doc, r.status)
    r = await client.get("/api/v1/transfers/xfnope", headers=boss)
    assert r.status == 404


async def test_groups_left_sending_by_a_crash_are_sent_again(env):
    """A group a crashed process was sending is sent again after the lease; WeCom's 90504
    (already the new owner's) means done, not failed."""
    from control.customers.routes import TRANSFERS

    client, fake = env["client"], env["fake"]
    old, heir = env["old"], env["heir"]
    boss = await hdr(client, "boss")
    fake.s.groups.update({"wrMoved": heir, "wrNotYet": old})  # one moved before the crash, one not
    tr = client.server.app[TRANSFERS]

    def crashed(t):
        job = tr.create(t, {"kind": "on_job", "from": old, "to": heir, "groups": ["wrMoved", "wrNotYet"]}, "t")
        for g in job["groups"]:
            job["groups"][g] = {"state": "sending", "day": "2026-12-01", "since": 0}
        t.put("cu.xfer", job["id"].encode(), job)
        return job["id"]
    jid = tr.cu.run(crashed)
    job = await (await client.post(f"/api/v1/transfers/{jid}/poll", headers=boss)).json()
    assert {g: s["state"] for g, s in job["groups"].items()} == {"wrMoved": "done", "wrNotYet": "done"}
    assert fake.s.groups["wrNotYet"] == heir and job["state"] == "done"
