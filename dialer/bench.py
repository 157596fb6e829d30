"""``scrm bench dialer``: scheduling decisions per second under concurrent devices against
``scrm serve`` with several worker processes, with the latency of ``next`` — beside a
baseline measured in the same run (``GET /api/v1/health`` from the same clients: what the
server answers when it decides nothing). The clients are raw keep-alive HTTP/1.1 on asyncio
streams (a few microseconds of client CPU a request); the server's clock is frozen inside
calling hours, the interval is 0 and the caps are wide, so every decision is a real one
(reserve, or refuse with a reason) and each granted call is reported at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from control.bench_http import RawClient, _pct

START_MS = 1796090400000  # 2026-12-01 10:00 Asia/Shanghai




async def _client(host: str, port: int, token: str, seconds: float, mode: str, out: dict) -> None:
    conn = await RawClient.connect(port, f"Device {token}" if token else "", host)
    request = conn.request
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        if mode == "health":
            status, _ = await request("GET", "/api/v1/health")
            out["lat"].append(time.perf_counter() - t0)
            out["status"][str(status)] = out["status"].get(str(status), 0) + 1
            continue
        status, data = await request("POST", "/api/v1/dialer/next")
        out["lat"].append(time.perf_counter() - t0)
        out["status"][str(status)] = out["status"].get(str(status), 0) + 1
        doc = orjson.loads(data)
        if "call" in doc:
            out["grants"] += 1
            n += 1
            rep = {"call_id": f"b{n}", "reservation": doc["call"]["id"], "started_at": START_MS,
                   "ended_at": START_MS, "talk_seconds": 0, "outcome": "no_answer"}
            t1 = time.perf_counter()
            status, _ = await request("POST", "/api/v1/dialer/calls", orjson.dumps(rep))
            out["report_lat"].append(time.perf_counter() - t1)
            out["status"][str(status)] = out["status"].get(str(status), 0) + 1
        else:
            reason = doc.get("refused", {}).get("reason")
            out["refusals"][reason] = out["refusals"].get(reason, 0) + 1
    conn.close()


async def _load(port: int, tokens: list[str], seconds: float, mode: str) -> dict:
    out = {"lat": [], "report_lat": [], "status": {}, "grants": 0, "refusals": {}}
    t0 = time.perf_counter()
    await asyncio.gather(*(_client("127.0.0.1", port, tok, seconds, mode, out) for tok in tokens))
    out["elapsed"] = time.perf_counter() - t0
    return out


def bench_dialer(devices: int = 50, seconds: float = 10.0, workers: int = 2, port: int = 18766,
                 rounds: int = 3, data: str | None = None) -> dict:
    from control.bench_http import wait_serving
    from dialer.service import Dialer
    from scrm_fast.clock import ManualClock
    from scrm_fast.storage import ArchiveStore

    root = Path(data) if data else Path(tempfile.mkdtemp(prefix="scrm-bench-dialer-"))
    ddir = root / "data"
    clock_file = root / "clock"
    clock_file.write_text(str(START_MS))
    from scrm_fast import sealing

    if not os.environ.get(sealing.ENV_MASTER):  # a throw-away tenant: its own key beside it
        sealing.new_master_key(root / "master.key")
        os.environ[sealing.ENV_MASTER] = str(root / "master.key")
    store = ArchiveStore(ddir)
    dl = Dialer(store, ManualClock(START_MS))
    dl.run(lambda t: dl.update_settings(t, {"licences": devices, "interval_s": 0, "sim_daily_cap": 1000,
                                            "rotate_after": 15, "hours": [["00:00", "24:00"]]}))
    tokens = []
    for i in range(devices):
        d = dl.run(lambda t: dl.add_device(t, f"bench-{i}", [{"number": f"1370{i:03d}{s:04d}",
                                                              "first_use": "2026-11-01"} for s in range(3)]))
        dl.run(lambda t: dl.set_seat(t, f"emp{i}", d["id"], True))
        tokens.append(d["token"])
    for c in range(3):
        dl.run(lambda t: dl.add_campaign(t, f"bench-{c}", [f"15{c}{n:08d}" for n in range(100_000)], retries=0))
    store.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SCRM_CLOCK": f"file:{clock_file}"}
    server = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(ddir), "--port", str(port),
                               "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    results = []
    try:
        wait_serving(f"http://127.0.0.1:{port}")
        for _ in range(rounds):
            base = asyncio.run(_load(port, [""] * devices, seconds / 2, "health"))
            run = asyncio.run(_load(port, tokens, seconds, "next"))
            decisions = len(run["lat"])
            results.append({
                "baseline_health_per_s": round(len(base["lat"]) / base["elapsed"], 1),
                "decisions_per_s": round(decisions / run["elapsed"], 1),
                "writes_per_s": round((decisions + len(run["report_lat"])) / run["elapsed"], 1),
                "ratio_to_baseline": round((decisions / run["elapsed"]) / (len(base["lat"]) / base["elapsed"]), 3),
                "next_p50_ms": round(_pct(run["lat"], 50) * 1000, 2),
                "next_p99_ms": round(_pct(run["lat"], 99) * 1000, 2),
                "report_p99_ms": round(_pct(run["report_lat"], 99) * 1000, 2),
                "grants": run["grants"], "refusals": run["refusals"], "statuses": run["status"],
                "baseline_statuses": base["status"]})
    finally:
        server.terminate()
        server.wait(timeout=30)
    med = {k: statistics.median(r[k] for r in results) for k in
           ("baseline_health_per_s", "decisions_per_s", "writes_per_s", "ratio_to_baseline", "next_p50_ms",
            "next_p99_ms", "report_p99_ms")}
    # the caps held under the load: counted from the stored call records
    store = ArchiveStore(ddir, readonly=True)
    with store.app_read() as t:
        per_sim: dict = {}
        per_num: dict = {}
        for _, c in t.scan("dl.call"):
            per_sim[c["sim"]] = per_sim.get(c["sim"], 0) + 1
            per_num[c["number"]] = per_num.get(c["number"], 0) + 1
    store.close()
    if data is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return {"devices": devices, "workers": workers, "seconds": seconds, "rounds": results, "median": med,
            "max_calls_per_sim": max(per_sim.values(), default=0), "max_calls_per_number": max(per_num.values(),
                                                                                             default=0),
            "id": secrets.token_hex(2)}
