"""The dialer over HTTP (the real app, pytest-aiohttp): device tokens, the device API's
answers and its bad input (4xx, never 500), R-2 scope on call records and statistics, the
trail, the OpenAPI document, and the incoming-call pop-up reaching the right console over
server-sent events."""

from __future__ import annotations

import asyncio

import pytest

from control.accounts import AccountService
from control.app import create_app
from control.config import ControlConfig
from scrm_fast.storage import ArchiveStore

PASSWORD = "correct-horse-9"


@pytest.fixture
async def client(aiohttp_client, tmp_path, monkeypatch, master_key):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("ann", PASSWORD, "regular", employee="ann", department=7)
    acc.create_user("ben", PASSWORD, "regular", employee="ben", department=7)
    acc.create_user("lea", PASSWORD, "leader", employee="lea", department=7)
    acc.close()
    clock = tmp_path / "clock"
    clock.write_text("1796090400000")  # 2026-12-01 10:00 Asia/Shanghai
    monkeypatch.setenv("SCRM_CLOCK", f"file:{clock}")
    c = await aiohttp_client(create_app(ControlConfig(data_dir=data)))
    c.clock = clock
    return c


async def login(client, username):
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def fleet(client, boss):
    r = await client.put("/api/v1/dialer/settings", json={"licences": 2, "interval_s": 0}, headers=boss)
    assert r.status == 200, await r.text()
    devs = []
    for i in range(2):
        r = await client.post("/api/v1/dialer/devices", json={"name": f"p{i}", "department": 7,
                                                             "sims": [{"number": f"1380000000{i}"}]}, headers=boss)
        assert r.status == 201
        devs.append(await r.json())
    r = await client.put("/api/v1/dialer/seats", json={"seats": [
        {"employee": "ann", "device": devs[0]["id"], "outbound": True},
        {"employee": "ben", "device": devs[1]["id"], "outbound": True}]}, headers=boss)
    assert r.status == 200, await r.text()
    return [{"Authorization": f"Device {d['token']}", "id": d["id"]} for d in devs]


async def test_device_api_round_trip_scope_and_trail(client):
    boss = await login(client, "boss")
    d0, d1 = await fleet(client, boss)
    r = await client.post("/api/v1/dialer/campaigns", json={"name": "c", "numbers": ["13900000001", "13900000002"]},
                          headers=boss)
    assert r.status == 201
    calls = {}
    for dev in (d0, d1):
        r = await client.post("/api/v1/dialer/next", headers={"Authorization": dev["Authorization"]})
        body = await r.json()
        assert r.status == 200 and "call" in body, body
        calls[dev["id"]] = body["call"]
        doc = {"call_id": "x1", "reservation": body["call"]["id"], "started_at": 1796090400000,
               "ended_at": 1796090460000, "talk_seconds": 50, "outcome": "answered"}
        r = await client.post("/api/v1/dialer/calls", json=doc, headers={"Authorization": dev["Authorization"]})
        assert r.status == 201
        r = await client.post("/api/v1/dialer/calls", json=doc, headers={"Authorization": dev["Authorization"]})
        assert r.status == 200 and (await r.json())["duplicate"]
    # a device's token is not an operator's, and the other way round
    r = await client.post("/api/v1/dialer/next", headers=boss)
    assert r.status == 401
    r = await client.get("/api/v1/dialer/calls", headers={"Authorization": d0["Authorization"]})
    assert r.status == 401
    r = await client.post("/api/v1/dialer/next", headers={"Authorization": "Device dev_forged"})
    assert r.status == 401
    # ann sees her calls only; the leader sees the department (no directory: only own); boss all
    ann = await login(client, "ann")
    rows = (await (await client.get("/api/v1/dialer/calls", headers=ann)).json())["calls"]
    assert [c["employee"] for c in rows] == ["ann"]
    rows = (await (await client.get("/api/v1/dialer/calls", headers=boss)).json())["calls"]
    assert sorted(c["employee"] for c in rows) == ["ann", "ben"]
    # narrowing inside the scope: by employee, by department (the seats' departments here)
    rows = (await (await client.get("/api/v1/dialer/calls?employee=ben", headers=boss)).json())["calls"]
    assert [c["employee"] for c in rows] == ["ben"]
    rows = (await (await client.get("/api/v1/dialer/calls?employee=ben", headers=ann)).json())["calls"]
    assert rows == []  # ann's scope holds only ann
    r = await client.put("/api/v1/dialer/seats", json={"seats": [
        {"employee": "ben", "device": d1["id"], "outbound": True, "department": 9}]}, headers=boss)
    assert r.status == 200
    rows = (await (await client.get("/api/v1/dialer/calls?department=9", headers=boss)).json())["calls"]
    assert [c["employee"] for c in rows] == ["ben"]
    st = await (await client.get("/api/v1/dialer/stats?from=2026-12-01&to=2026-12-01&employee=ben",
                                 headers=boss)).json()
    assert [r["employee"] for r in st["ranking"]] == ["ben"]
    st = await (await client.get("/api/v1/dialer/stats?from=2026-12-01&to=2026-12-01", headers=ann)).json()
    assert st["overview"]["calls"] == 1 and [r["employee"] for r in st["ranking"]] == ["ann"]
    # reads of call records are on the trail
    trail = await (await client.get("/api/v1/trail?limit=50", headers=boss)).json()
    entries = trail["entries"] if isinstance(trail, dict) else trail
    assert any(e["action"] == "read_calls" and e["user"] == "ann" for e in entries)
    # admin endpoints need dialer.admin
    r = await client.put("/api/v1/dialer/settings", json={"licences": 9}, headers=ann)
    assert r.status == 403
    # manual dial from someone else's device is refused; from one's own it is granted on the same path
    r = await client.post("/api/v1/dialer/dial", json={"device": d1["id"], "number": "13700000000"}, headers=ann)
    assert r.status == 404
    r = await client.post("/api/v1/dialer/dial", json={"device": d0["id"], "number": "13700000000"}, headers=ann)
    assert r.status == 200 and "call" in await r.json()
    r = await client.post("/api/v1/dialer/next", headers={"Authorization": d0["Authorization"]})
    body = await r.json()
    assert body["repeat"] and body["call"]["number"] == "13700000000" and body["call"]["kind"] == "manual"
    # a disabled device is refused by the scheduler (fail closed), enabled again it dials
    r = await client.put(f"/api/v1/dialer/devices/{d1['id']}", json={"state": "disabled"}, headers=boss)
    assert r.status == 200
    r = await client.post("/api/v1/dialer/next", headers={"Authorization": d1["Authorization"]})
    assert (await r.json())["refused"]["reason"] == "device_disabled"
    r = await client.put(f"/api/v1/dialer/devices/{d1['id']}", json={"state": "gone"}, headers=boss)
    assert r.status == 422
    # licences: a third outbound seat is refused with the rule
    r = await client.put("/api/v1/dialer/seats", json={"seats": [{"employee": "lea", "outbound": True}]},
                         headers=boss)
    assert r.status == 409 and "D-6" in (await r.json())["detail"]


@pytest.mark.parametrize("path,doc", [
    ("/api/v1/dialer/calls", {"call_id": "a", "outcome": "answered", "started_at": "x", "ended_at": 1}),
    ("/api/v1/dialer/calls", {"call_id": "a", "outcome": "answered", "started_at": 0, "ended_at": 1, "evil": 1}),
    ("/api/v1/dialer/calls", {"call_id": ["a"], "outcome": "answered", "started_at": 0, "ended_at": 1}),
    ("/api/v1/dialer/calls", {"call_id": "a", "outcome": "answered", "started_at": 0, "ended_at": 1,
                              "reservation": {"x": 1}}),
    ("/api/v1/dialer/calls", {"call_id": "a", "outcome": "answered", "started_at": 0, "ended_at": 2 ** 70}),
    ("/api/v1/dialer/ringing", {"number": 12}),
    ("/api/v1/dialer/ringing", {"number": "1" * 100}),
])
async def test_device_bad_input_is_4xx(client, path, doc):
    boss = await login(client, "boss")
    d0, _ = await fleet(client, boss)
    r = await client.post(path, json=doc, headers={"Authorization": d0["Authorization"]})
    assert 400 <= r.status < 500, (r.status, await r.text())
    r = await client.post(path, data=b"{not json", headers={"Authorization": d0["Authorization"],
                                                           "Content-Type": "application/json"})
    assert r.status == 400


@pytest.mark.parametrize("path,doc", [
    ("/api/v1/dialer/settings", {"interval_s": -1}), ("/api/v1/dialer/settings", {"timezone": "Mars/Base"}),
    ("/api/v1/dialer/settings", {"hours": [["18:00", "09:00"]]}), ("/api/v1/dialer/settings", {"nope": 1}),
    ("/api/v1/dialer/settings", {"number_daily_cap": 4}), ("/api/v1/dialer/settings", {"licences": True}),
])
async def test_admin_bad_input_is_4xx(client, path, doc):
    boss = await login(client, "boss")
    r = await client.put(path, json=doc, headers=boss)
    assert r.status == 422, await r.text()


async def test_bad_queries_are_4xx(client):
    boss = await login(client, "boss")
    for q in ("from=abc", "limit=0", "limit=100000", "cursor=zz", "cursor=00", "direction=up", "connected=maybe",
              "bogus=1", "number=12ab"):
        r = await client.get(f"/api/v1/dialer/calls?{q}", headers=boss)
        assert 400 <= r.status < 500, (q, r.status)
    for q in ("from=2026-13-01", "granularity=year", "from=2026-12-01&to=2025-01-01"):
        r = await client.get(f"/api/v1/dialer/stats?{q}", headers=boss)
        assert 400 <= r.status < 500, (q, r.status)


async def test_openapi_documents_the_dialer(client):
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["paths"]["/api/v1/dialer/next"]["post"]["security"] == [{"device": []}]
    assert doc["paths"]["/api/v1/dialer/calls"]["get"]["x-trailed"] is True
    for p in ("/api/v1/dialer/settings", "/api/v1/dialer/devices", "/api/v1/dialer/seats", "/api/v1/dialer/dnc",
              "/api/v1/dialer/campaigns", "/api/v1/dialer/stats", "/api/v1/dialer/ringing",
              "/api/v1/dialer/popups/stream", "/api/v1/dialer/dial"):
        assert p in doc["paths"], p


async def test_popup_reaches_the_right_console_over_sse(client):
    boss = await login(client, "boss")
    d0, d1 = await fleet(client, boss)
    ann, ben = await login(client, "ann"), await login(client, "ben")
    # ann's record of a customer; the call rings on ann's line (d0)
    r = await client.post("/api/v1/dialer/contacts", json={"number": "13912345678", "name": "王先生"}, headers=ann)
    assert r.status == 201

    async def listen(h, got):
        async with client.get("/api/v1/dialer/popups/stream", headers=h) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            async for line in r.content:
                if line.startswith(b"data: "):
                    got.append(line)
                    return
    got_ann, got_ben = [], []
    ta = asyncio.create_task(listen(ann, got_ann))
    tb = asyncio.create_task(listen(ben, got_ben))
    await asyncio.sleep(0.5)
    r = await client.post("/api/v1/dialer/ringing", json={"number": "139-1234-5678"},
                          headers={"Authorization": d0["Authorization"]})
    out = await r.json()
    assert r.status == 200 and out["record_found"]
    who = {p["operator"]: p["rule"] for p in out["popups"]}
    # boss is super (D-9a); lea leads group 7, the line's and the record creator's (D-9b); ann created the
    # record and is linked to the ringing line (D-9d); ben is linked to another line: nothing
    assert who == {"boss": "D-9a", "lea": "D-9b", "ann": "D-9d"}
    await asyncio.wait_for(ta, 5)
    assert "王先生".encode() in got_ann[0]
    await asyncio.sleep(0.6)
    assert not got_ben
    tb.cancel()
    # the JSON form says the same
    rows = (await (await client.get("/api/v1/dialer/popups?after=0", headers=ben)).json())["popups"]
    assert rows == []


async def test_campaign_import_from_csv_with_a_row_report(client):
    boss = await login(client, "boss")
    csv = "号码,客户\n+86 139-0000-0001,wm-1\n13900000002\n139 0000 0001,wm-9\nnot-a-phone\n\n13900000003,wm-3\n"
    r = await client.post("/api/v1/dialer/campaigns/import?name=回访&priority=7", data=("\ufeff" + csv).encode(),
                          headers={**boss, "Content-Type": "text/csv"})
    out = await r.json()
    assert r.status == 201, out
    assert out["accepted"] == 3 and out["campaign"]["total"] == 3 and out["campaign"]["priority"] == 7
    assert out["rejected"] == [{"row": 4, "status": "duplicate", "of_row": 2},
                               {"row": 5, "status": "invalid", "reason": "'not-a-phone' is not a phone number"}]
    for bad in (b"\xff\xfe\x00b\x00a\x00d", b"PK\x03\x04\x00\x00binary", b"header only\n"):
        r = await client.post("/api/v1/dialer/campaigns/import?name=x", data=bad,
                              headers={**boss, "Content-Type": "text/csv"})
        assert r.status == 422, (bad, r.status)
