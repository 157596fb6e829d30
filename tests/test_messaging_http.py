"""Mass sends over HTTP against the fake WeCom: 50 concurrent member sends that all include
one customer over two `scrm serve` processes (exactly one reaches it that day), the same for
enterprise sends at the monthly limit; a send's states (Q-8) with reminders (Q-6), cancel
and not-sendable recipients giving their quota back; a simulated month after which the
ledger equals WeCom's counts."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

import aiohttp
import pytest

from control.accounts import AccountService
from control.app import create_app
from control.bench_http import login
from control.config import ControlConfig
from control.messaging import quota
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.fake import DAY_MS, FakeWeCom
from scrm_fast.wecom.thread import environ, serving
from tests.conftest import start_serve

PASSWORD = "correct-horse-9"
T0 = 1796090400000


def test_concurrent_sends_over_two_processes(tmp_path):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    for i in range(50):
        acc.create_user(f"u{i}", PASSWORD, "regular", employee=f"m{i}")
    acc.close()
    clock_path = tmp_path / "clock"
    clock_path.write_text(str(T0))
    fake = FakeWeCom(FileClock(clock_path))
    for i in range(50):
        fake.s.employees[f"m{i}"] = {"status": "active"}
        fake.s.follows |= {(f"m{i}", "wmShared"), (f"m{i}", f"wmOwn{i}"), (f"m{i}", "wmShared2")}
    (tmp_path / "secret").write_text("contact-secret")
    with serving(fake) as wecom:
        with environ(SCRM_CLOCK=f"file:{clock_path}", SCRM_WECOM_BASE=wecom, SCRM_WECOM_CORP=fake.s.corpid,
                     SCRM_WECOM_SECRET_FILE=str(tmp_path / "secret")):
            proc, base = start_serve(data, "--workers", "2")
        try:
            tokens = [login(base, f"u{i}", PASSWORD) for i in range(50)]
            boss = login(base, "boss", PASSWORD)

            async def run():
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as s:
                    async def send(tok, doc):
                        async with s.post(f"{base}/api/v1/mass-sends", json=doc,
                                          headers={"Authorization": f"Bearer {tok}"}) as r:
                            return r.status, await r.json()
                    member = await asyncio.gather(*(send(tokens[i], {
                        "kind": "member", "sender": f"m{i}", "customers": ["wmShared", f"wmOwn{i}"],
                        "text": "双十二活动"}) for i in range(50)))
                    enterprise = await asyncio.gather(*(send(boss, {
                        "kind": "enterprise", "sender": f"m{i}", "customers": ["wmShared2"], "text": "月度资讯"})
                        for i in range(50)))
                    async with s.get(f"{base}/api/v1/quotas/wmShared", headers={"Authorization": f"Bearer {boss}"}) \
                            as r:
                        q = await r.json()
                    return member, enterprise, q
            member, enterprise, q = asyncio.run(run())
        finally:
            proc.terminate()
            proc.wait(30)
    assert all(st == 201 for st, _ in member), [b for st, b in member if st != 201][:2]
    got = [b for _, b in member if "wmShared" in b["accepted"]]
    assert len(got) == 1  # one member mass message a day for that customer, whichever process answered
    refusals = [r for _, b in member for r in b["refused"] if r["recipient"] == "wmShared"]
    assert len(refusals) == 49 and {r["rule"] for r in refusals} == {"Q-1"}
    assert all(f"wmOwn{i}" in b["accepted"] for i, (_, b) in enumerate(member))  # the others unaffected
    assert sum("wmShared2" in b["accepted"] for _, b in enterprise) == 4  # four a month
    assert q["member_today"] == 1
    sent = [t for t in fake.s.templates.values() if "wmShared" in t["results"]]
    assert len(sent) == 1  # WeCom was asked once for that customer


@pytest.fixture
async def env(aiohttp_server, aiohttp_client, tmp_path, monkeypatch):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    clock_path = tmp_path / "clock"
    clock_path.write_text(str(T0))
    clock = FileClock(clock_path)
    fake = FakeWeCom(clock)
    server = await aiohttp_server(fake.app())
    (tmp_path / "secret").write_text("contact-secret")
    for k, v in {"SCRM_CLOCK": f"file:{clock_path}", "SCRM_WECOM_BASE": str(server.make_url("")).rstrip("/"),
                 "SCRM_WECOM_CORP": fake.s.corpid, "SCRM_WECOM_SECRET_FILE": str(tmp_path / "secret"),
                 "SCRM_SEND_POLL_S": "3600"}.items():
        monkeypatch.setenv(k, v)
    client = await aiohttp_client(create_app(ControlConfig(data_dir=data)))
    r = await client.post("/api/v1/auth/login", json={"username": "boss", "password": PASSWORD})
    h = {"Authorization": f"Bearer {(await r.json())['token']}"}
    return {"client": client, "fake": fake, "clock": clock, "h": h}


async def test_states_reminders_cancel_and_not_sendable(env):
    c, fake, clock, h = env["client"], env["fake"], env["clock"], env["h"]
    fake.s.employees.update({"zhang": {"status": "active"}, "li": {"status": "active"}})
    fake.s.follows |= {("zhang", "wm1"), ("zhang", "wm2"), ("li", "wm3")}
    r = await c.post("/api/v1/mass-sends", headers=h, json={"kind": "member", "sender": "zhang",
                                                            "customers": ["wm1", "wm2", "wmNotMine"], "text": "hi"})
    s = await r.json()
    assert r.status == 201 and s["state"] == "running" and sorted(s["accepted"]) == ["wm1", "wm2", "wmNotMine"]
    got = await (await c.get(f"/api/v1/mass-sends/{s['id']}", headers=h)).json()
    assert got["recipients"]["wmNotMine"] == "not_sendable"  # WeCom's fail_list: its quota given back
    assert (await (await c.get("/api/v1/quotas/wmNotMine", headers=h)).json())["member_today"] == 0
    # three reminders a day
    for _ in range(3):
        assert (await c.post(f"/api/v1/mass-sends/{s['id']}/remind", headers=h)).status == 200
    r = await c.post(f"/api/v1/mass-sends/{s['id']}/remind", headers=h)
    assert r.status == 409 and "Q-6" in (await r.json())["detail"]
    # the member executes it: done, both sent
    fake.execute(next(iter(fake.s.templates)))
    got = await (await c.post(f"/api/v1/mass-sends/{s['id']}/poll", headers=h)).json()
    assert got["state"] == "done" and got["members"] == {"zhang": "executed"}
    assert got["recipient_states"] == {"sent": 2, "not_sendable": 1}
    # scheduled: not started until its time
    r = await c.post("/api/v1/mass-sends", headers=h, json={"kind": "enterprise", "sender": "li", "customers": ["wm3"],
                                                            "text": "周报", "scheduled_at": T0 + 3600_000})
    sched = await r.json()
    assert sched["state"] == "not_started"
    clock.set(T0 + 3600_000)
    got = await (await c.post(f"/api/v1/mass-sends/{sched['id']}/poll", headers=h)).json()
    assert got["state"] == "running"
    # never executed: failed a month after the push, the quota given back
    clock.set(T0 + 3600_000 + 31 * DAY_MS)
    from control.keys import STORE

    def following():
        with c.server.app[STORE].app_read() as t:
            return {k.decode() for k, _ in t.scan("ms.open", values=False)}
    assert following() == {sched["id"]}  # the done one left the scheduler's list
    got = await (await c.post(f"/api/v1/mass-sends/{sched['id']}/poll", headers=h)).json()
    assert got["state"] == "failed" and got["recipient_states"] == {"expired": 1}
    assert following() == set()
    # cancel gives back
    r = await c.post("/api/v1/mass-sends", headers=h, json={"kind": "enterprise", "sender": "li", "customers": ["wm3"],
                                                            "text": "again"})
    cs = await r.json()
    assert (await (await c.get("/api/v1/quotas/wm3", headers=h)).json())["enterprise_this_month"] == 1
    got = await (await c.post(f"/api/v1/mass-sends/{cs['id']}/cancel", headers=h)).json()
    assert got["state"] == "cancelled"
    assert (await (await c.get("/api/v1/quotas/wm3", headers=h)).json())["enterprise_this_month"] == 0
    assert (await c.post(f"/api/v1/mass-sends/{cs['id']}/cancel", headers=h)).status == 409
    # bad input: clear 4xx
    for doc in ({"kind": "x"}, {"kind": "member", "customers": ["wm1"], "text": "a"},
                {"kind": "member", "sender": "zhang", "text": "a"},
                {"kind": "member", "sender": "zhang", "customers": ["wm1"], "groups": ["g"], "text": "a"},
                {"kind": "member", "sender": "zhang", "customers": ["wm1"], "text": "x" * 4001},
                {"kind": "enterprise", "customers": ["wm1"], "text": "a", "attachments": [{"msgtype": "voice"}]}):
        r = await c.post("/api/v1/mass-sends", headers=h, json=doc)
        assert r.status == 422, (doc, r.status)


async def test_a_simulated_month_leaves_the_ledger_equal_to_wecoms(env):
    c, fake, clock, h = env["client"], env["fake"], env["clock"], env["h"]
    r = await c.put("/api/v1/quotas/settings", headers=h, json={"profile": "daily-total"})
    assert r.status == 200
    fake.s.quota_profile = "daily-total"
    members = [f"m{i}" for i in range(4)]
    customers = [f"wmc{i}" for i in range(12)]
    for m in members:
        fake.s.employees[m] = {"status": "active"}
        for cst in customers:
            fake.s.follows.add((m, cst))
    rng = random.Random(12)
    ids = []
    for day in range(30):
        t = T0 + day * DAY_MS
        clock.set(t)
        if rng.random() < 0.3:  # a send from the WeCom client itself, outside the SCRM
            fake.s.received.setdefault(rng.choice(customers), []).append(t)
        for _ in range(3):
            m = rng.choice(members)
            pick = rng.sample(customers, 5)
            r = await c.post("/api/v1/mass-sends", headers=h, json={
                "kind": rng.choice(["member", "enterprise"]), "sender": m, "customers": pick, "text": f"第{day}天"})
            s = await r.json()
            assert r.status == 201, s
            ids.append(s["id"])
        for msgid, tpl in fake.s.templates.items():  # most members execute the same day
            if tpl["executed"] is None and not tpl["cancelled"] and rng.random() < 0.8:
                fake.execute(msgid)
        for sid in ids:
            await c.post(f"/api/v1/mass-sends/{sid}/poll", headers=h)
    clock.set(T0 + 62 * DAY_MS)  # past every send's month
    for sid in ids:
        await c.post(f"/api/v1/mass-sends/{sid}/poll", headers=h)
    states = [(await (await c.get(f"/api/v1/mass-sends/{sid}", headers=h)).json()) for sid in ids]
    assert {s["state"] for s in states} <= {"done", "failed"} and any(s["state"] == "failed" for s in states)
    # per customer and day: what the SCRM's sends delivered (by the day WeCom sent them) equals
    # what WeCom delivered through them; a recipient WeCom turned away (3) had one that day
    ours: dict[tuple[str, str], int] = {}
    for s in states:
        for rid, st in s["recipients"].items():
            if st == "sent":
                day = quota.periods(s["settled_at"][rid])[0]
                ours[(rid, day)] = ours.get((rid, day), 0) + 1
    theirs: dict[tuple[str, str], int] = {}
    for tpl in fake.s.templates.values():
        for rid, st in tpl["results"].items():
            if st == 1:
                d = quota.periods(tpl["executed"])[0]
                theirs[(rid, d)] = theirs.get((rid, d), 0) + 1
    assert ours == theirs and all(v == 1 for v in ours.values())
    everything: dict[tuple[str, str], int] = {}
    for rid, times in fake.s.received.items():
        for t in times:
            key = (rid, datetime.fromtimestamp(t / 1000, quota.TZ).date().isoformat())
            everything[key] = everything.get(key, 0) + 1
    for s in states:
        for rid, st in s["recipients"].items():
            if st == "quota_used_elsewhere":
                assert everything.get((rid, quota.periods(s["settled_at"][rid])[0]), 0) == 1
    # the ledger's current day equals WeCom's for every customer
    last = quota.periods(T0 + 29 * DAY_MS)[0]
    clock.set(T0 + 29 * DAY_MS + 3600_000)
    for rid in customers:
        u = await (await c.get(f"/api/v1/quotas/{rid}", headers=h)).json()
        if u["day"] == last:
            assert u["member_today"] + u["enterprise_today"] == everything.get((rid, last), 0), rid


async def test_moments_against_the_fake(env):
    c, fake, h = env["client"], env["fake"], env["h"]
    fake.s.employees["zhang"] = {"status": "active"}
    for i in range(3):
        r = await c.post("/api/v1/customers", headers=h, json={"name": f"c{i}", "phone": f"1390000100{i}",
                                                               "owner": "zhang", "external_userid": f"wmM{i}"})
        assert r.status == 201
    r = await c.post("/api/v1/moments", headers=h, json={"senders": ["zhang", "ghost"], "text": "店庆",
                                                         "attachments": [{"msgtype": "image",
                                                                          "image": {"media_id": "m1", "size": 1000}}]})
    m = await r.json()
    assert r.status == 201 and m["state"] == "done" and m["moment_id"], m
    assert sorted(m["reached"]) == ["wmM0", "wmM1", "wmM2"] and m["invalid_senders"] == ["ghost"]
    r = await c.post("/api/v1/moments", headers=h, json={"senders": ["zhang"], "text": "again"})
    again = await r.json()
    assert again["reached"] == [] and {x["rule"] for x in again["refused"]} == {"Q-7"}
    assert (await c.get(f"/api/v1/moments/{m['id']}", headers=h)).status == 200
    r = await c.post("/api/v1/moments", headers=h, json={"senders": ["zhang"], "text": "x" * 2001})
    assert r.status == 422


async def test_two_pushes_of_one_send_make_one_template(env):
    """The handler that created a send and another worker's scheduler may push it at once:
    the claim in the write transaction lets one through."""
    from control.messaging.routes import SENDS

    c, fake, clock, h = env["client"], env["fake"], env["clock"], env["h"]
    fake.s.employees["zhang"] = {"status": "active"}
    fake.s.follows |= {("zhang", "wmR1")}
    r = await c.post("/api/v1/mass-sends", headers=h, json={"kind": "member", "sender": "zhang", "customers": ["wmR1"],
                                                            "text": "hi", "scheduled_at": T0 + 60_000})
    s = await r.json()
    assert s["state"] == "not_started"
    clock.set(T0 + 60_000)
    fake.s.arrive_delay_s = 0.5  # the network is slow: every push is in flight before WeCom sees any
    sends = c.server.app[SENDS]
    await asyncio.gather(sends.push(s["id"]), sends.push(s["id"]), sends.push(s["id"]))
    assert len(fake.s.templates) == 1
    got = await (await c.get(f"/api/v1/mass-sends/{s['id']}", headers=h)).json()
    assert got["state"] == "running"
