"""``scrm bench http``: archive reads over HTTP under concurrent clients, on loopback only,
bounded in time and count. A health probe runs beside the load every 50 ms: its latency
shows whether the event loop is ever blocked."""

from __future__ import annotations

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


def wait_serving(base: str, seconds: float = 20.0) -> None:
    """Returns once the service at ``base`` answers its health check; raises if it does not
    within ``seconds``."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/v1/health", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def login(base: str, username: str, password: str) -> str:
    """A session token from ``POST /api/v1/auth/login``."""
    import urllib.request

    req = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST",
                                 data=orjson.dumps({"username": username, "password": password}),
                                 headers={"Content-Type": "application/json"})
    return orjson.loads(urllib.request.urlopen(req, timeout=30).read())["token"]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and every live
    descendant of it (a server's worker processes), from ``/proc``."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rindex(b")") + 2:].split()  # the name may hold spaces and parentheses
        parent[int(d)] = int(rest[1])
        ticks[int(d)] = int(rest[11]) + int(rest[12])
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in ticks and p not in tree:
            tree.add(p)
            todo += [c for c, pp in parent.items() if pp == p]
    return sum(ticks[p] for p in tree) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run(host: str, port: int, token: str, clients: int, seconds: float, max_requests: int,
         targets: list[str], what: str, server_pid: int | None = None) -> dict:
    """The load comes from the Rust generator (``_core.http_load``: blocking keep-alive
    clients, the GIL released, a few microseconds of CPU a request); a health probe every
    50 ms runs beside it in a Python thread."""
    import http.client
    import threading

    from scrm_fast._core import http_load

    probe: list[float] = []
    stop = threading.Event()

    def prober() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while not stop.is_set():
            t0 = time.perf_counter()
            conn.request("GET", "/api/v1/health")
            conn.getresponse().read()
            probe.append(time.perf_counter() - t0)
            stop.wait(0.05)
        conn.close()

    th = threading.Thread(target=prober, daemon=True)
    server0 = tree_cpu_s(server_pid) if server_pid is not None else 0.0
    own0 = _self_cpu_s()
    th.start()
    try:
        res = http_load(host, port, targets, [("Authorization", f"Bearer {token}")], clients=clients,
                        seconds=seconds, max_requests=max_requests)
    finally:
        stop.set()
        th.join()
    # the load generator's CPU (and the probe's) counted apart from the server's
    own_cpu = _self_cpu_s() - own0
    server_cpu = tree_cpu_s(server_pid) - server0 if server_pid is not None else None
    lat = res["latencies_ms"]
    ok = res["statuses"].get(200, 0)
    elapsed = res["elapsed_s"]
    # the second half of the run: caches warm (each worker's per-segment counts)
    late = [x for x, t in zip(lat, res["started_ms"], strict=True) if t >= elapsed * 500]
    return {"what": what, "clients": clients, "distinct_targets": len(set(targets)), "requests": len(lat),
            "ok": ok, "errors": len(lat) - ok + len(res["errors"]),
            "error_samples": sorted(set(res["errors"]))[:5], "seconds": round(elapsed, 2),
            "requests_per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(_pct(lat, 50), 2), "p99_ms": round(_pct(lat, 99), 2),
            "max_ms": round(max(lat), 2) if lat else 0.0,
            "mean_ms": round(statistics.mean(lat), 2) if lat else 0.0,
            "second_half": {"requests_per_s": round(len(late) / (elapsed / 2), 1) if elapsed else 0.0,
                            "p50_ms": round(_pct(late, 50), 2), "p99_ms": round(_pct(late, 99), 2)},
            "probe_p50_ms": round(_pct(probe, 50) * 1000, 2), "probe_p99_ms": round(_pct(probe, 99) * 1000, 2),
            "probe_max_ms": round(max(probe) * 1000, 2) if probe else 0.0,
            "server_cpu_ms_per_request": round(1000 * server_cpu / len(lat), 3) if server_cpu is not None and lat
            else None,
            "loadgen_cpu_ms_per_request": round(1000 * own_cpu / len(lat), 3) if lat else None,
            "server_cpu_cores": round(server_cpu / elapsed, 2) if server_cpu is not None and elapsed else None}


def bench_http(data: str, clients: int = 50, seconds: float = 30.0, port: int = 18765,
               max_requests: int = 1_000_000, what: str = "messages", pool: int = 400, rounds: int = 1) -> dict:
    """Starts ``scrm serve`` on loopback for ``data``, loads it, stops it; ``rounds`` times,
    each a fresh server (cold caches: the first seconds count). ``what``: ``messages``
    (pages of 20 of random conversations) or ``search`` (``pool`` random 1–4 character
    queries, each a page of 20 with the total, round robin). One round: that round's
    figures; several: each round's and the medians."""
    runs = [_bench_http_once(data, clients, seconds, port, max_requests, what, pool) for _ in range(rounds)]
    if rounds == 1:
        return runs[0]
    keys = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "loadgen_cpu_ms_per_request")
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys if all(r[k] is not None for r in runs)}
    med["second_half_p99_ms"] = round(statistics.median(r["second_half"]["p99_ms"] for r in runs), 2)
    return {"what": what, "clients": clients, "rounds": rounds, "median": med,
            "p99_ms_per_round": [r["p99_ms"] for r in runs],
            "second_half_p99_ms_per_round": [r["second_half"]["p99_ms"] for r in runs], "per_round": runs}


def _bench_http_once(data: str, clients: int, seconds: float, port: int, max_requests: int, what: str,
                     pool: int) -> dict:
    queries = _sample_queries(data, pool) if what == "search" else None
    import secrets

    from control.accounts import AccountService

    acc = AccountService(Path(data))
    name = "bench-" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    acc.create_user(name, password, "admin")
    acc.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", data, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        import urllib.parse
        import urllib.request

        base = f"http://127.0.0.1:{port}"
        wait_serving(base)
        token = login(base, name, password)
        if queries is not None:
            targets = ["/api/v1/search?" + urllib.parse.urlencode({"q": q, "limit": "20"}) for q in queries]
        else:
            breq = urllib.request.Request(f"{base}/api/v1/conversations", headers={"Authorization": f"Bearer {token}"})
            convs = [c["conv"] for c in orjson.loads(urllib.request.urlopen(breq, timeout=60).read())]
            if not convs:
                raise RuntimeError("no conversations to read")
            rng = random.Random(1)
            targets = [f"/api/v1/conversations/{urllib.parse.quote(rng.choice(convs), safe='')}/messages?limit=20"
                       for _ in range(2000)]
        return _run("127.0.0.1", port, token, clients, seconds, max_requests, targets, what, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams, for load generators written in
    Python (the dialer and pools benchmarks: POSTs with per-client tokens, which the Rust
    generator does not send): a few microseconds of client CPU a request."""

    def __init__(self, reader, writer, authorization: str) -> None:
        self._r, self._w = reader, writer
        self._auth = f"Authorization: {authorization}\r\n" if authorization else ""

    @classmethod
    async def connect(cls, port: int, authorization: str = "", host: str = "127.0.0.1") -> RawClient:
        import asyncio

        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, authorization)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        self._w.write((f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{self._auth}Content-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        status = int((await self._r.readline()).split()[1])
        length = 0
        while True:
            line = await self._r.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self._r.readexactly(length)

    def close(self) -> None:
        self._w.close()
