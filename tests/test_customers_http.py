"""Customers and pools over HTTP: claims racing over two `scrm serve` worker processes
(exactly the cap is held; one member wins a protected company), the spreadsheet import
as multipart uploads (5,000 rows with planted faults, 5,001 refused, broken files 4xx),
R-2 scope, and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import random

import aiohttp
import pytest

from control.accounts import AccountService
from control.app import create_app
from control.bench_http import login
from control.config import ControlConfig
from control.customers import rules
from scrm_fast.storage import ArchiveStore
from tests.conftest import start_serve

PASSWORD = "correct-horse-9"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("pools-served")
    data = root / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    for i in range(20):
        acc.create_user(f"rep{i}", PASSWORD, "regular", employee=f"rep{i}")
    acc.close()
    proc, base = start_serve(data, "--workers", "2")
    yield {"base": base, "data": data}
    proc.terminate()
    proc.wait(30)


async def _json(s, method, url, token, doc=None):
    async with s.request(method, url, json=doc, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


def test_fifty_concurrent_claims_hold_exactly_the_cap(served):
    base = served["base"]
    boss = login(base, "boss", PASSWORD)
    rep = login(base, "rep0", PASSWORD)

    async def run():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
            st, pool = await _json(s, "POST", f"{base}/api/v1/pools", boss,
                                   {"name": "华东公海", "members": ["rep0"], "hold_cap": 10})
            assert st == 201, pool
            ids = []
            for i in range(60):
                st, c = await _json(s, "POST", f"{base}/api/v1/customers", boss,
                                    {"name": f"线索{i}", "phone": f"1370000{i:04d}", "owner": "nobody"})
                assert st == 201, c
                ids.append(c["id"])
            # put them into the pool: the owner gives them back... simpler: import
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["客户名称", "手机号"])
            for i in range(60):
                w.writerow([f"池客户{i}", f"1360000{i:04d}"])
            form = aiohttp.FormData()
            form.add_field("file", buf.getvalue().encode(), filename="leads.csv", content_type="text/csv")
            async with s.post(f"{base}/api/v1/pools/{pool['id']}/imports", data=form,
                              headers={"Authorization": f"Bearer {boss}"}) as r:
                rep_ = await r.json()
                assert r.status == 201 and rep_["accepted"] == 60, rep_
            pool_ids = [x["customer"] for x in rep_["report"]]
            # 50 concurrent claims, each for a different customer, by one member, two processes
            outs = await asyncio.gather(*(_json(s, "POST", f"{base}/api/v1/pools/{pool['id']}/claims", rep,
                                                {"customers": [pool_ids[i]]}) for i in range(50)))
            assert all(st == 200 for st, _ in outs)
            claimed = [c for _, o in outs for c in o["claimed"]]
            refused = [r for _, o in outs for r in o["refused"]]
            st, mine = await _json(s, "GET", f"{base}/api/v1/customers?owner=rep0&limit=1000", rep)
            return claimed, refused, mine
    claimed, refused, mine = asyncio.run(run())
    assert len(claimed) == 10 and len(set(claimed)) == 10
    assert len(refused) == 40 and {r["rule"] for r in refused} == {"P-2"}
    assert sorted(c["id"] for c in mine["customers"]) == sorted(claimed)  # stored: exactly 10


def test_twenty_members_race_for_one_protected_company(served):
    base = served["base"]
    boss = login(base, "boss", PASSWORD)
    reps = [login(base, f"rep{i}", PASSWORD) for i in range(20)]

    async def run():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
            st, _ = await _json(s, "PUT", f"{base}/api/v1/customers/settings", boss, {"protection": True})
            assert st == 200
            st, pool = await _json(s, "POST", f"{base}/api/v1/pools", boss,
                                   {"name": "企业公海", "members": [f"rep{i}" for i in range(20)]})
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["客户名称", "手机号", "企业"])
            for i in range(20):
                w.writerow([f"联系人{i}", f"1350000{i:04d}", "星辰科技有限公司"])
            form = aiohttp.FormData()
            form.add_field("file", buf.getvalue().encode(), filename="c.csv", content_type="text/csv")
            async with s.post(f"{base}/api/v1/pools/{pool['id']}/imports", data=form,
                              headers={"Authorization": f"Bearer {boss}"}) as r:
                ids = [x["customer"] for x in (await r.json())["report"]]
            # each member asks for a different contact of the same company, all at once
            outs = await asyncio.gather(*(_json(s, "POST", f"{base}/api/v1/pools/{pool['id']}/claims", reps[i],
                                                {"customers": [ids[i]]}) for i in range(20)))
            st, comps = await _json(s, "GET", f"{base}/api/v1/companies", boss)
            return outs, comps
    outs, comps = asyncio.run(run())
    winners = [i for i, (_, o) in enumerate(outs) if o["claimed"]]
    assert len(winners) == 1
    assert all(o["refused"][0]["rule"] == "P-7" for i, (_, o) in enumerate(outs) if i not in winners)
    assert next(c for c in comps if c["id"] == "星辰科技有限公司")["holder"] == f"rep{winners[0]}"


# -- the app in-process ----------------------------------------------------------------------------
@pytest.fixture
async def client(aiohttp_client, tmp_path):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("ann", PASSWORD, "regular", employee="ann")
    acc.create_user("ben", PASSWORD, "regular", employee="ben")
    acc.create_user("nobody", PASSWORD, "regular")
    acc.close()
    return await aiohttp_client(create_app(ControlConfig(data_dir=data)))


async def hdr(client, user):
    r = await client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


def _csv(rows, header=("客户名称", "手机号")):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


async def upload(client, h, pid, data, name="leads.csv"):
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return await client.post(f"/api/v1/pools/{pid}/imports", data=form, headers=h)


async def test_import_5000_rows_with_planted_faults_and_limits(client):
    boss = await hdr(client, "boss")
    r = await client.post("/api/v1/pools", json={"name": "导入池", "members": ["ann"]}, headers=boss)
    pid = (await r.json())["id"]
    rng = random.Random(9)
    rows, planted = [], {}
    for i in range(5000):
        row = i + 2
        k = rng.random()
        if k < 0.03:
            rows.append([f"客户{i}", "12-34"])
            planted[row] = "invalid"
        elif k < 0.05:
            rows.append(["", f"1590000{i:04d}"])
            planted[row] = "invalid"
        elif k < 0.08 and i > 10:
            j = rng.randrange(0, 10)  # a phone of one of the first rows (planted valid below)
            rows.append([f"重复{i}", f"1580000{j:04d}"])
            planted[row] = "duplicate"
        else:
            rows.append([f"客户{i}", f"158 0000 {i:04d}"])
            planted[row] = "accepted"
    for i in range(11):
        rows[i] = [f"客户{i}", f"1580000{i:04d}"]
        planted[i + 2] = "accepted"
    r = await upload(client, boss, pid, _csv(rows))
    out = await r.json()
    assert r.status == 201, out
    got = {x["row"]: x["status"] for x in out["report"]}
    assert got == planted
    assert out["accepted"] == sum(v == "accepted" for v in planted.values())
    r = await client.get(f"/api/v1/imports/{out['id']}/report.xlsx", headers=boss)
    assert r.status == 200 and (await r.read())[:2] == b"PK"
    # 5,001 rows: refused with the limit, nothing imported
    r = await upload(client, boss, pid, _csv([[f"x{i}", f"1570000{i:04d}"] for i in range(5001)]))
    assert r.status == 422 and "5000" in (await r.json())["detail"]
    # broken and non-spreadsheet files: clear 4xx, never 500
    for data, name in ((b"PK\x03\x04not really a zip", "a.xlsx"), (b"\x00\x01\x02\x03binary", "a.bin"),
                       ("姓名\n张三\n".encode(), "a.csv"), (b"\xd0\xcf\x11\xe0\xa1\xb1", "old.xls"),
                       (b"\xff\xfe\xfd", "a.csv")):
        r = await upload(client, boss, pid, data, name)
        assert 400 <= r.status < 500, (name, r.status, await r.text())
    r = await client.post(f"/api/v1/pools/{pid}/imports", data=b"raw", headers={**boss,
                                                                                "Content-Type": "text/csv"})
    assert r.status == 415
    r = await client.get("/api/v1/pools/import-template.xlsx", headers=boss)
    assert r.status == 200 and (await r.read())[:2] == b"PK"


async def test_scope_claims_and_bad_input(client):
    boss, ann, ben = await hdr(client, "boss"), await hdr(client, "ann"), await hdr(client, "ben")
    r = await client.post("/api/v1/customers", json={"name": "王女士", "phone": "13811112222"}, headers=ann)
    assert r.status == 201
    mine = (await r.json())["id"]
    r = await client.post("/api/v1/customers", json={"name": "重复", "phone": "+86 138 1111 2222"}, headers=ben)
    assert r.status == 409  # one customer per phone
    r = await client.get(f"/api/v1/customers/{mine}", headers=ben)
    assert r.status == 404  # not ben's
    r = await client.get(f"/api/v1/customers/{mine}", headers=ann)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    rows = (await (await client.get("/api/v1/customers", headers=ben)).json())["customers"]
    assert rows == []
    r = await client.post("/api/v1/pools", json={"name": "p", "members": ["ann"]}, headers=ann)
    assert r.status == 403
    r = await client.post("/api/v1/pools", json={"name": "p", "members": ["ann"], "rule": "assign"}, headers=boss)
    pid = (await r.json())["id"]
    r = await upload(client, boss, pid, _csv([["甲", "13700000001"], ["乙", "13700000002"]]))
    ids = [x["customer"] for x in (await r.json())["report"]]
    r = await client.post(f"/api/v1/pools/{pid}/claims", json={"customers": ids}, headers=ann)
    assert r.status == 200 and {x["rule"] for x in (await r.json())["refused"]} == {"P-1"}
    r = await client.post(f"/api/v1/pools/{pid}/claims", json={"customers": ids}, headers=ben)
    assert r.status == 404  # not a member: the pool is not visible
    r = await client.post(f"/api/v1/pools/{pid}/assign", json={"member": "ann", "customers": ids}, headers=boss)
    assert (await r.json())["claimed"] == ids
    r = await client.post(f"/api/v1/pools/{pid}/claims", json={"customers": ids}, headers=await hdr(client,
                                                                                                   "nobody"))
    assert r.status in (403, 404)
    for path, doc in (("/api/v1/pools", {"name": "x", "hold_cap": 0}), ("/api/v1/pools", {"name": "x", "rule": "y"}),
                      ("/api/v1/pools", {"name": ""}), ("/api/v1/customers", {"name": "x", "phone": "123"}),
                      ("/api/v1/customers", {"name": "x"}), ("/api/v1/customers/settings", {"stages": ["a"]}),
                      (f"/api/v1/pools/{pid}/claims", {"customers": "abc"}),
                      (f"/api/v1/pools/{pid}/claims", {"customers": []})):
        method = "PUT" if path.endswith("settings") else "POST"
        r = await client.request(method, path, json=doc, headers=boss)
        assert r.status == 422, (path, doc, r.status, await r.text())
    r = await client.get("/api/v1/customers?limit=0", headers=boss)
    assert r.status == 422
    r = await client.get("/api/v1/pools/nope!/customers", headers=boss)
    assert 400 <= r.status < 500
    assert rules.normalise_phone("138 1111 2222") == "13811112222"


async def test_opportunity_stage_rules_over_http(client):
    ann = await hdr(client, "ann")
    r = await client.post("/api/v1/customers", json={"name": "赵总", "phone": "13900001111"}, headers=ann)
    cid = (await r.json())["id"]
    r = await client.post("/api/v1/opportunities", json={"customer": cid, "name": "年度合同", "amount": 990000},
                          headers=ann)
    assert r.status == 201
    oid = (await r.json())["id"]
    assert (await client.put(f"/api/v1/opportunities/{oid}", json={"stage": "赢单"}, headers=ann)).status == 200
    r = await client.put(f"/api/v1/opportunities/{oid}", json={"stage": "商务谈判"}, headers=ann)
    assert r.status == 409 and "P-8" in (await r.json())["detail"]
    by_stage = await (await client.get("/api/v1/opportunities", headers=ann)).json()
    assert [o["id"] for o in by_stage["赢单"]] == [oid]
    r = await client.put(f"/api/v1/opportunities/{oid}", json={"stage": "x"}, headers=await hdr(client, "ben"))
    assert r.status == 404
