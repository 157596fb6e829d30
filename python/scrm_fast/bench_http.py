"""``scrm bench http``: archive reads over HTTP under concurrent clients, on loopback only,
bounded in time and count. A health probe runs beside the load every 50 ms: its latency
shows whether the event loop is ever blocked."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _sample_queries(data: str, n: int = 400, seed: int = 3) -> list[str]:
    """1- to 4-character substrings of stored messages (what people search for)."""
    import msgpack

    from scrm_fast.storage import ArchiveStore

    rng = random.Random(seed)
    texts: list[str] = []
    with ArchiveStore(data, readonly=True) as store:
        for chunk in store.record_value_chunks(5000):
            texts += [t for t in (msgpack.unpackb(v)["text"] for v in chunk[::50]) if len(t.strip()) >= 4]
            if len(texts) >= 5000:
                break
    out = []
    while len(out) < n and texts:
        t = rng.choice(texts)
        k = rng.randint(1, 4)
        at = rng.randrange(len(t) - k + 1)
        q = t[at:at + k]
        if q.strip() == q and not any(c in q for c in '"()\n'):
            out.append('"' + q + '"')
    return out


async def _run(base: str, token: str, clients: int, seconds: float, max_requests: int,
               queries: list[str] | None = None) -> dict:
    import aiohttp

    h = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=h) as s:
        convs: list[str] = []
        if queries is None:
            async with s.get(f"{base}/api/v1/conversations") as r:
                convs = [c["conv"] for c in await r.json()]
            if not convs:
                raise RuntimeError("no conversations to read")
        lat: list[float] = []
        probe: list[float] = []
        errors = 0
        stop = time.perf_counter() + seconds
        rng = random.Random(1)

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop and len(lat) < max_requests:
                if queries is not None:
                    url, params = f"{base}/api/v1/search", {"q": rng.choice(queries), "limit": "20"}
                else:
                    url, params = f"{base}/api/v1/conversations/{rng.choice(convs)}/messages", {"limit": "20"}
                t0 = time.perf_counter()
                async with s.get(url, params=params) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t0)

        async def prober() -> None:
            async with aiohttp.ClientSession() as ps:
                while time.perf_counter() < stop and len(lat) < max_requests:
                    t0 = time.perf_counter()
                    async with ps.get(f"{base}/api/v1/health") as r:
                        await r.read()
                    probe.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.05)

        t0 = time.perf_counter()
        await asyncio.gather(prober(), *(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    ms = 1000
    return {"what": "search" if queries is not None else "messages", "clients": clients, "requests": len(lat),
            "errors": errors, "seconds": round(elapsed, 2),
            "requests_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(_pct(lat, 50) * ms, 2), "p99_ms": round(_pct(lat, 99) * ms, 2),
            "probe_p50_ms": round(_pct(probe, 50) * ms, 2), "probe_p99_ms": round(_pct(probe, 99) * ms, 2),
            "probe_max_ms": round(max(probe) * ms, 2) if probe else 0.0,
            "mean_ms": round(statistics.mean(lat) * ms, 2) if lat else 0.0}


def bench_http(data: str, clients: int = 50, seconds: float = 30.0, port: int = 18765,
               max_requests: int = 200_000, what: str = "messages") -> dict:
    """Starts ``scrm serve`` on loopback for ``data``, loads it, stops it. ``what``:
    ``messages`` (pages of 20 of random conversations) or ``search`` (random 1–4 character
    queries, a page of 20 with the total)."""
    queries = _sample_queries(data) if what == "search" else None
    import secrets

    from control.accounts import AccountService

    acc = AccountService(Path(data))
    name = "bench-" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    acc.create_user(name, password, "admin")
    acc.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "scrm_fast.cli", "serve", "--data", data, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        import urllib.request

        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/v1/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST",
                                     data=orjson.dumps({"username": name, "password": password}),
                                     headers={"Content-Type": "application/json"})
        token = orjson.loads(urllib.request.urlopen(req, timeout=10).read())["token"]
        return asyncio.run(_run(base, token, clients, seconds, max_requests, queries))
    finally:
        server.terminate()
        server.wait(timeout=30)
