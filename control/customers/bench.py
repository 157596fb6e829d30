"""``scrm bench pools``: claims per second under concurrent members against ``scrm serve``
with worker processes (beside the health baseline of the same run), the import of a
5,000-row spreadsheet, and the recycling pass over a large number of held customers (the
pass reads only the customers that are due, through the last-contact index)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from control.bench_http import RawClient, _pct

T0 = 1796090400000




async def _client(port, token, seconds, mode, pool, ids, out):
    conn = await RawClient.connect(port, f"Bearer {token}")
    request = conn.request
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and (mode == "health" or ids):
        t0 = time.perf_counter()
        if mode == "health":
            await request("GET", "/api/v1/health")
        else:
            c = ids.pop()
            status, data = await request("POST", f"/api/v1/pools/{pool}/claims",
                                         orjson.dumps({"customers": [c]}))
            doc = orjson.loads(data)
            out["claimed"] += len(doc.get("claimed", []))
            out["refused"] += len(doc.get("refused", []))
        out["lat"].append(time.perf_counter() - t0)
    conn.close()


def bench_pools(clients: int = 50, seconds: float = 10.0, rounds: int = 3, workers: int = 2,
                recycle_customers: int = 200_000, port: int = 18767) -> dict:
    from control.accounts import AccountService
    from control.bench_http import login, wait_serving
    from control.customers import imports
    from control.customers.service import Customers
    from scrm_fast import sealing
    from scrm_fast.clock import ManualClock
    from scrm_fast.storage import ArchiveStore, app_key

    root = Path(tempfile.mkdtemp(prefix="scrm-bench-pools-"))
    if not os.environ.get(sealing.ENV_MASTER):
        sealing.new_master_key(root / "master.key")
        os.environ[sealing.ENV_MASTER] = str(root / "master.key")
    out: dict = {}
    # -- the import of 5,000 rows: parsing (csv and xlsx) + one transaction -------------------------
    store = ArchiveStore(root / "imp")
    cu = Customers(store, ManualClock(T0))
    pid = cu.run(lambda t: cu.add_pool(t, {"name": "p", "members": ["m"], "dedup": True}))["id"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["客户名称", "手机号", "企业"])
    for i in range(5000):
        w.writerow([f"客户{i}", f"+86 139-{i // 10000:04d}-{i % 10000:04d}", f"公司{i % 300}"])
    data = buf.getvalue().encode()
    from openpyxl import Workbook
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("s")
    for row in csv.reader(io.StringIO(buf.getvalue())):
        ws.append(row)
    xbuf = io.BytesIO()
    wb.save(xbuf)
    times = {"csv": [], "xlsx": []}
    for _ in range(3):
        for kind, blob in (("csv", data), ("xlsx", xbuf.getvalue())):
            p2 = cu.run(lambda t: cu.add_pool(t, {"name": "p", "members": ["m"], "dedup": False}))["id"]
            t0 = time.perf_counter()
            cands, report = imports.plan(imports.read_rows(blob, f"a.{kind}"), cu.settings(), False)
            doc = cu.run(lambda t, p2=p2, cands=cands, report=report: cu.import_rows(t, p2, cands, report, "b", "a"))
            times[kind].append(time.perf_counter() - t0)
            assert doc["accepted"] == 5000
    out["import_5000_rows_s"] = {k: round(statistics.median(v), 3) for k, v in times.items()}
    store.close()
    # -- the recycle pass over many held customers ------------------------------------------------
    store = ArchiveStore(root / "rec")
    clock = ManualClock(T0)
    cu = Customers(store, clock)
    pid = cu.run(lambda t: cu.add_pool(t, {"name": "big", "members": ["m"], "recycle_no_contact_s": 30 * 86400}))["id"]
    t0 = time.perf_counter()
    n = recycle_customers
    for start in range(0, n, 10_000):  # held customers written in bulk: each with its index entry
        def fill(t, start=start):
            for i in range(start, min(n, start + 10_000)):
                cid = f"cb{i:010d}"
                held = T0 - (40 if i % 100 == 0 else 10) * 86400_000  # 1 % are due
                t.put("cu.cust", cid.encode(), {"id": cid, "name": f"c{i}", "phone": f"1{i:010d}", "owner": "m",
                                                "pool": pid, "held_since": held, "last_contact": None,
                                                "last_opp": None, "history": [], "status": "", "source": "",
                                                "tags": [], "ptags": {}})
                t.put("cu.held", app_key(pid, "m", cid), held)
                t.put("cu.byc", app_key(pid, held, cid), None)
            t.put("cu.holdn", app_key(pid, "m"), min(n, start + 10_000))
        cu.run(fill)
    out["recycle_setup_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    got = 0
    while True:
        batch = cu.run(lambda t: cu.recycle(t, limit=5000))
        got += len(batch)
        if len(batch) < 5000:
            break
    out["recycle_pass"] = {"held_customers": n, "recycled": got, "seconds": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    again = cu.run(cu.recycle)
    out["recycle_pass_nothing_due_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    assert again == [] and got == n // 100
    store.close()
    # -- claims under concurrent members over HTTP -------------------------------------------------
    data_dir = root / "serve"
    store = ArchiveStore(data_dir)
    cu = Customers(store, ManualClock(T0))
    members = [f"m{i}" for i in range(clients)]
    pid = cu.run(lambda t: cu.add_pool(t, {"name": "claims", "members": members}))["id"]
    ids = []
    total = 400 * clients * rounds
    for start in range(0, total, 5000):
        def fill(t, start=start):
            return [cu.add_customer(t, {"name": f"n{i}", "phone": f"13{i:09d}"}, by="b", pool=pid)["id"]
                    for i in range(start, min(total, start + 5000))]
        ids += cu.run(fill)
    store.close()
    acc = AccountService(data_dir)
    for m in members:
        acc.create_user(m, "bench-pass-1", "regular", employee=m)
    acc.close()
    server = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(data_dir), "--port",
                               str(port), "--workers", str(workers)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_serving(base)
        tokens = [login(base, m, "bench-pass-1") for m in members]
        res = []
        for _ in range(rounds):
            h = {"lat": [], "claimed": 0, "refused": 0}
            t0 = time.perf_counter()
            asyncio.run(_gather(port, tokens, seconds / 2, "health", pid, [[] for _ in tokens], h))
            hs = len(h["lat"]) / (time.perf_counter() - t0)
            c = {"lat": [], "claimed": 0, "refused": 0}
            shares = [ids[i::clients] for i in range(clients)]
            ids = []
            t0 = time.perf_counter()
            asyncio.run(_gather(port, tokens, seconds, "claim", pid, shares, c))
            el = time.perf_counter() - t0
            ids = [x for s in shares for x in s]
            res.append({"baseline_health_per_s": round(hs, 1), "claims_per_s": round(c["claimed"] / el, 1),
                        "claim_p50_ms": round(_pct(c["lat"], 50) * 1000, 2),
                        "claim_p99_ms": round(_pct(c["lat"], 99) * 1000, 2), "refused": c["refused"]})
    finally:
        server.terminate()
        server.wait(timeout=30)
    out["claims"] = {"clients": clients, "workers": workers, "rounds": res,
                     "median_claims_per_s": statistics.median(r["claims_per_s"] for r in res),
                     "median_p99_ms": statistics.median(r["claim_p99_ms"] for r in res)}
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return out


async def _gather(port, tokens, seconds, mode, pool, shares, out):
    await asyncio.gather(*(_client(port, tok, seconds, mode, pool, share, out) for tok, share in zip(tokens, shares,
                                                                                                   strict=True)))
