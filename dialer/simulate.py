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
