"""A simulated week of 20 phones × 3 SIMs against `scrm serve` with 2 worker processes (rule
D-10): the fleet moves the servers' injected clock; afterwards the stored call records are
checked by an oracle written here (tenant days and hours from zoneinfo, counts by brute
force) — no SIM over its daily cap, no number over 3 a day, no device interval shorter than
the setting, no call outside hours or to a do-not-call number, no seat without a licence —
and every refusal had its reason. The week crosses America/New_York's spring-forward day."""

from __future__ import annotations

import asyncio
import os
from collections import Counter, defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from control.accounts import AccountService
from control.bench_http import login
from dialer.simulate import play, setup_fleet
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from tests.conftest import start_serve

TZ = ZoneInfo("America/New_York")
SETTINGS = {"timezone": "America/New_York", "hours": [["09:00", "12:00"], ["13:30", "18:00"]],
            "sim_daily_cap": 40, "new_sim_cap": 15, "rotate_after": 5, "interval_s": 100, "number_daily_cap": 3,
            "valid_seconds": 30, "reservation_timeout_s": 900}


def _ms(*a) -> int:
    return int(datetime(*a, tzinfo=TZ).timestamp() * 1000)


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialer-week")
    data = root / "data"
    clock_path = root / "clock"
    start, end = _ms(2026, 3, 4, 7, 0), _ms(2026, 3, 11, 7, 0)
    clock_path.write_text(str(start))
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", "correct-horse-9", "admin")
    acc.close()
    os.environ["SCRM_CLOCK"] = f"file:{clock_path}"
    try:
        err = (root / "serve.err").open("wb")
        proc, base = start_serve(data, "--workers", "2", stderr=err)
    finally:
        del os.environ["SCRM_CLOCK"]
    token = login(base, "boss", "correct-horse-9")

    async def run():
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as s:
            phones, info = await setup_fleet(s, base, token, devices=20, sims=3, unlicensed=2, numbers=8000,
                                             seed=5, settings=SETTINGS)
            rep = await play(s, base, phones, FileClock(clock_path), start, end, seed=5)
            return phones, info, rep
    phones, info, rep = asyncio.run(run())
    proc.terminate()
    proc.wait(30)
    err.close()
    store = ArchiveStore(data, readonly=True)
    with store.app_read() as t:
        calls = [v for _, v in t.scan("dl.call")]
        sims = {v["id"]: v for _, v in t.scan("dl.sim")}
    store.close()
    return {"calls": calls, "sims": sims, "info": info, "rep": rep, "err": (root / "serve.err").read_text()}


def test_the_fleet_ran_a_week(week):
    rep = week["rep"]
    assert not rep.errors, rep.errors[:5]
    assert "Traceback" not in week["err"], week["err"][-3000:]
    days = {c["day"] for c in week["calls"]}
    assert len(days) >= 5  # weekdays and weekend alike: hours apply every day
    assert len(week["calls"]) > 3000
    assert rep.reports == len([c for c in week["calls"]]) - 0  # one record per reported call (duplicates ignored)
    assert rep.duplicates_sent > 0 and rep.duplicate_answers == rep.duplicates_sent
    assert rep.forgotten > 0 and rep.late > 0


def test_no_cap_broken_in_the_stored_records(week):
    calls = [c for c in week["calls"] if c["direction"] == "out"]
    local = {c["uid"]: datetime.fromtimestamp(c["started_at"] / 1000, TZ) for c in calls}
    per_sim_day = Counter((c["sim"], local[c["uid"]].date()) for c in calls)
    first_day = {}
    for (sim, day) in per_sim_day:
        first_day[sim] = min(day, first_day.get(sim, day))
    for (sim, day), n in per_sim_day.items():
        cap = SETTINGS["new_sim_cap"] if day == first_day[sim] else SETTINGS["sim_daily_cap"]
        assert n <= cap, (sim, day, n)
    assert max(per_sim_day.values()) == SETTINGS["sim_daily_cap"]  # the cap was reached, not just respected
    per_number_day = Counter((c["number"], local[c["uid"]].date()) for c in calls)
    assert max(per_number_day.values()) <= 3
    for c in calls:  # D-12: inside hours in the tenant's zone (across the DST change)
        hhmm = local[c["uid"]].strftime("%H:%M")
        assert any(a <= hhmm < b for a, b in SETTINGS["hours"]), (c, hhmm)
    dnc = set(week["info"]["dnc"])
    assert not [c for c in calls if c["number"] in dnc]
    unlicensed = set(week["info"]["unlicensed"])
    assert not [c for c in calls if c["device"] in unlicensed]
    by_device = defaultdict(list)
    for c in calls:
        by_device[c["device"]].append(c)
    for rows in by_device.values():
        rows.sort(key=lambda c: c["started_at"])
        for a, b in zip(rows, rows[1:], strict=False):
            assert b["started_at"] - a["ended_at"] >= SETTINGS["interval_s"] * 1000, (a, b)


def test_rotation_spreads_calls_over_the_sims(week):
    calls = [c for c in week["calls"] if c["direction"] == "out"]
    by_device = defaultdict(list)
    for c in calls:
        by_device[c["device"]].append(c)
    for rows in by_device.values():
        rows.sort(key=lambda c: c["started_at"])
        run, longest = 1, 1
        for a, b in zip(rows, rows[1:], strict=False):
            run = run + 1 if a["sim"] == b["sim"] else 1
            longest = max(longest, run)
        # D-2: at most rotate_after in a row, unless the other SIMs were capped (then one is left)
        assert longest <= SETTINGS["rotate_after"] + SETTINGS["sim_daily_cap"], longest
        assert len({c["sim"] for c in rows}) == 3


def test_every_refusal_had_its_reason(week):
    rep = week["rep"]
    assert not rep.bad_refusals
    for reason in ("outside_hours", "interval", "no_licence", "sim_daily_cap"):
        assert rep.refusals.get(reason, 0) > 0, rep.refusals


def test_scrm_dialer_simulate_command(tmp_path):
    import orjson

    from tests.conftest import run_scrm

    out = run_scrm("dialer", "simulate", "--data", str(tmp_path / "data"), "--devices", "3", "--days", "1",
                   "--numbers", "500", "--start", "2026-12-01", check=True)
    rep = orjson.loads(out.stdout)
    assert rep["http_errors"] == 0 and rep["calls"] > 0
    # first day of every SIM: at most the new-SIM cap (default 30), three SIMs per phone
    assert rep["max_calls_per_sim_day"] <= 30 and rep["calls"] <= 3 * 3 * 30
    assert rep["max_calls_per_number_day"] <= 3
    store = ArchiveStore(tmp_path / "data", readonly=True)
    with store.app_read() as t:
        assert sum(1 for _ in t.scan("dl.call")) == rep["calls"]
    store.close()
