"""A simulated device fleet: phones with SIM slots that play against the device API as real
ones do — poll for the next call, ring, talk (answer rates and talk times drawn from a seeded
generator), report the record — including the awkward ones: a phone that forgets a call
(its reservation must time out), reports sent twice, reports that arrive after the
reservation expired. Time is the server's injected clock (``SCRM_CLOCK=file:PATH``): the
fleet moves it forward, so a week runs in a minute. Used by the tests, the benchmark and
``scrm dialer simulate``."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp

from scrm_fast.clock import FileClock


@dataclass
class Phone:
    id: str
    token: str
    next_poll: int = 0
    call: dict | None = None  # the reservation being dialled
    granted_at: int = 0
    ends_at: int = 0
    outcome: str = ""
    talk: int = 0
    answered_at: int | None = None
    forget: bool = False
    late: bool = False
    n: int = 0


@dataclass
class FleetReport:
    grants: int = 0
    reports: int = 0
    duplicates_sent: int = 0
    duplicate_answers: int = 0
    forgotten: int = 0
    late: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    bad_refusals: list = field(default_factory=list)
    requests: int = 0
    errors: list = field(default_factory=list)


async def setup_fleet(session: aiohttp.ClientSession, base: str, admin: str, *, devices: int, sims: int,
                      unlicensed: int = 0, numbers: int = 2000, seed: int = 1, settings: dict | None = None,
                      dnc: int = 20) -> tuple[list[Phone], dict]:
    """Devices, seats (``unlicensed`` of them without outbound permission), two campaigns that
    share numbers (D-5 counts across campaigns), and a do-not-call list taken from them."""
    rng = random.Random(seed)
    h = {"Authorization": f"Bearer {admin}"}

    async def call(method, path, doc):
        async with session.request(method, base + path, json=doc, headers=h) as r:
            body = await r.json()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {body}")
            return body
    licensed = devices - unlicensed
    await call("PUT", "/api/v1/dialer/settings", {**(settings or {}), "licences": licensed})
    phones, seats = [], []
    for i in range(devices):
        d = await call("POST", "/api/v1/dialer/devices", {
            "name": f"phone-{i:03d}", "department": 1 + i % 3,
            "sims": [{"number": f"1{rng.randrange(30, 99)}{i:04d}{s:04d}", "carrier": rng.choice(["CM", "CU", "CT"])}
                     for s in range(sims)]})
        phones.append(Phone(d["id"], d["token"]))
        seats.append({"employee": f"emp{i:03d}", "device": d["id"], "outbound": i < licensed, "department": 1 + i % 3})
    await call("PUT", "/api/v1/dialer/seats", {"seats": seats})
    pool = [f"13{rng.randrange(0, 10)}{n:08d}" for n in range(numbers)]
    half = numbers // 2
    await call("POST", "/api/v1/dialer/campaigns", {"name": "renewals", "numbers": pool[: half + half // 4],
                                                    "priority": 7, "retries": 2, "retry_spacing_s": 3600})
    await call("POST", "/api/v1/dialer/campaigns", {"name": "leads", "numbers": pool[half:], "priority": 3,
                                                    "retries": 3, "retry_spacing_s": 1800})
    blocked = rng.sample(pool, dnc)
    await call("POST", "/api/v1/dialer/dnc", {"numbers": blocked, "reason": "asked not to be called"})
    return phones, {"numbers": pool, "dnc": blocked, "licensed": [p.id for p in phones[:licensed]],
                    "unlicensed": [p.id for p in phones[licensed:]]}


async def play(session: aiohttp.ClientSession, base: str, phones: list[Phone], clock: FileClock, start_ms: int,
               end_ms: int, *, seed: int = 1, tick_s: int = 20, answer_rate: float = 0.45,
               forget_rate: float = 0.01, duplicate_rate: float = 0.05, late_rate: float = 0.01,
               timeout_s: int = 900) -> FleetReport:
    """Plays the fleet from ``start_ms`` to ``end_ms`` of the server's clock."""
    rng = random.Random(seed)
    rep = FleetReport()
    known_reasons = {"no_licence", "outside_hours", "interval", "sim_daily_cap", "no_sim", "number_daily_cap",
                     "dnc", "nothing_to_call", "device_disabled", "busy"}
    t = start_ms
    for p in phones:
        p.next_poll = start_ms

    async def post(p: Phone, path: str, doc: dict | None):
        rep.requests += 1
        async with session.post(base + path, json=doc or {}, headers={"Authorization": f"Device {p.token}"}) as r:
            body = await r.json()
            if r.status >= 400:
                rep.errors.append((path, r.status, body))
            return r.status, body

    async def act(p: Phone, now: int) -> None:
        if p.call is not None:
            if now < p.ends_at:
                return
            if p.forget:  # the phone never reports: its reservation must time out
                p.call, p.forget = None, False
                p.next_poll = now
                return
            if p.late and now < p.granted_at + timeout_s * 1000 + tick_s * 1000:
                return
            p.n += 1
            doc = {"call_id": f"{p.id}-{p.n}", "reservation": p.call["id"], "started_at": p.granted_at,
                   "answered_at": p.answered_at, "ended_at": p.ends_at, "talk_seconds": p.talk,
                   "outcome": p.outcome, "recording": f"rec/{p.id}/{p.n}.amr" if p.talk else None}
            if doc["recording"] is None:
                del doc["recording"]
            if doc["answered_at"] is None:
                del doc["answered_at"]
            await post(p, "/api/v1/dialer/calls", doc)
            rep.reports += 1
            if rng.random() < duplicate_rate:
                rep.duplicates_sent += 1
                _, again = await post(p, "/api/v1/dialer/calls", doc)
                rep.duplicate_answers += bool(again.get("duplicate"))
            p.call, p.late = None, False
            p.next_poll = now
            return
        if now < p.next_poll:
            return
        status, body = await post(p, "/api/v1/dialer/next", None)
        if status != 200:
            p.next_poll = now + 60_000
            return
        if "call" in body:
            c = body["call"]
            if body.get("repeat"):  # the open reservation of a call this phone already had
                p.next_poll = now + tick_s * 1000
                return
            rep.grants += 1
            p.call, p.granted_at = c, now
            ring = rng.randint(3, 25) * 1000
            if rng.random() < answer_rate:
                p.outcome, p.talk = "answered", int(min(600, rng.expovariate(1 / 70))) + 1
                p.answered_at = now + ring
                p.ends_at = now + ring + p.talk * 1000
            else:
                p.outcome, p.talk, p.answered_at = rng.choice(["no_answer", "busy", "rejected"]), 0, None
                p.ends_at = now + ring
            r = rng.random()
            p.forget = r < forget_rate
            p.late = not p.forget and r < forget_rate + late_rate
            rep.forgotten += p.forget
            rep.late += p.late
            return
        ref = body.get("refused") or {}
        reason = ref.get("reason")
        rep.refusals[reason] = rep.refusals.get(reason, 0) + 1
        if reason not in known_reasons or not ref.get("rule"):
            rep.bad_refusals.append(ref)
        retry = ref.get("retry_at")
        p.next_poll = max(now + tick_s * 1000, retry or 0)
        if reason == "nothing_to_call":
            p.next_poll = now + 300_000

    while t < end_ms:
        clock.set(t)
        await asyncio.gather(*(act(p, t) for p in phones))
        # the next moment anything happens (a phone's poll or the end of its call)
        wake = min((p.ends_at if p.call is not None else p.next_poll) for p in phones)
        if any(p.call is not None and p.late for p in phones):
            wake = min(wake, t + tick_s * 1000)
        t = max(t + tick_s * 1000, wake)
    return rep


async def play_against(base: str, user: str, password: str, clock_file: str, *, devices: int, sims: int,
                       days: int, numbers: int, seed: int, start_ms: int | None = None) -> dict:
    """The fleet against a server that is already running with ``SCRM_CLOCK=file:CLOCK_FILE``."""
    from control.bench_http import login

    token = await asyncio.to_thread(login, base, user, password)
    clock = FileClock(clock_file)
    start = start_ms if start_ms is not None else clock.now_ms()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
        phones, _ = await setup_fleet(s, base, token, devices=devices, sims=sims, numbers=numbers, seed=seed)
        rep = await play(s, base, phones, clock, start, start + days * 86400_000, seed=seed)
    return {"devices": devices, "days": days, "grants": rep.grants, "reports": rep.reports,
            "duplicates_sent": rep.duplicates_sent, "forgotten_calls": rep.forgotten, "late_reports": rep.late,
            "refusals": rep.refusals, "http_errors": len(rep.errors), "requests": rep.requests}


def simulate_week(data: str, *, devices: int = 20, sims: int = 3, days: int = 7, numbers: int = 8000,
                  seed: int = 1, workers: int = 2, start_day: str | None = None, port: int | None = None,
                  settings: dict | None = None) -> dict:
    """``scrm dialer simulate``: a fleet of ``devices`` phones plays ``days`` days against a
    ``scrm serve`` of ``data`` (started here with an injected clock, stopped at the end); the
    calls stay in the data directory (its statistics, records, SIM counters). Returns the
    fleet's report and what the stored records show."""
    import os
    import secrets
    import socket
    import subprocess
    import sys
    import tempfile
    from datetime import date, datetime, timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from control.accounts import AccountService
    from control.bench_http import login, wait_serving
    from dialer.rules import DEFAULT_TIMEZONE
    from scrm_fast.storage import ArchiveStore

    tz = ZoneInfo((settings or {}).get("timezone", DEFAULT_TIMEZONE))
    first = date.fromisoformat(start_day) if start_day else date.today() - timedelta(days=days)
    start = int(datetime.combine(first, datetime.min.time(), tz).timestamp() * 1000) + 7 * 3600_000
    end = start + days * 86400_000
    ArchiveStore(data).close()
    acc = AccountService(Path(data))
    name, password = "dialer-sim-" + secrets.token_hex(3), secrets.token_urlsafe(16)
    acc.create_user(name, password, "admin")
    acc.close()
    clock_dir = Path(tempfile.mkdtemp(prefix="scrm-dialer-clock-"))
    clock = FileClock.__new__(FileClock)
    clock.path = clock_dir / "clock"
    clock.set(start)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    env = {**os.environ, "SCRM_CLOCK": f"file:{clock.path}", "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(data), "--port", str(port),
                               "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_serving(base)
        token = login(base, name, password)

        async def run():
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
                phones, info = await setup_fleet(s, base, token, devices=devices, sims=sims, unlicensed=0,
                                                 numbers=numbers, seed=seed, settings=settings)
                return await play(s, base, phones, clock, start, end, seed=seed)
        rep = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=60)
        acc = AccountService(Path(data))
        acc.set_disabled([name], True)
        acc.close()
    store = ArchiveStore(data, readonly=True)
    with store.app_read() as t:
        calls = [v for _, v in t.scan("dl.call")]
    store.close()
    per_sim: dict = {}
    per_num: dict = {}
    for c in calls:
        per_sim[(c["sim"], c["day"])] = per_sim.get((c["sim"], c["day"]), 0) + 1
        per_num[(c["number"], c["day"])] = per_num.get((c["number"], c["day"]), 0) + 1
    return {"devices": devices, "days": days, "from": first.isoformat(), "calls": len(calls),
            "connected": sum(c["connected"] for c in calls), "valid": sum(c["valid"] for c in calls),
            "grants": rep.grants, "reports": rep.reports, "duplicates_sent": rep.duplicates_sent,
            "forgotten_calls": rep.forgotten, "late_reports": rep.late, "refusals": rep.refusals,
            "http_errors": len(rep.errors), "requests": rep.requests,
            "max_calls_per_sim_day": max(per_sim.values(), default=0),
            "max_calls_per_number_day": max(per_num.values(), default=0)}
