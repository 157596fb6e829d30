"""The dialer's rules D-1 … D-12, one table per rule (at, below and above each limit), on
a real store with an injected clock; a property test of random fleets, clocks and
interleavings checked against an oracle kept by the test; and the HTTP API (device tokens,
idempotent reports, bad input, scope, the pop-up)."""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer import rules
from dialer.service import Conflict, Dialer
from scrm_fast.clock import ManualClock
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore, app_key

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")


def at(tz, *a) -> int:
    return int(datetime(*a, tzinfo=tz).timestamp() * 1000)


@pytest.fixture
def make(tmp_path):
    """A dialer on a fresh store: ``make(settings, sims=…)`` → (dialer, clock, device id)."""
    made = []

    def build(settings: dict | None = None, sims: int = 1, start: int | None = None, seat: bool = True):
        n = len(made)
        store = ArchiveStore(tmp_path / f"d{n}", master_key=os.urandom(32))
        clock = ManualClock(start if start is not None else at(SH, 2026, 12, 1, 9, 0))
        dl = Dialer(store, clock)
        dl.run(lambda t: dl.update_settings(t, {"licences": 5, **(settings or {})}))
        dev = dl.run(lambda t: dl.add_device(t, "p", [{"number": f"1380000{n:02d}{i:02d}"} for i in range(sims)]))
        if seat:
            dl.run(lambda t: dl.set_seat(t, "emp", dev["id"], True))
        made.append(store)
        return dl, clock, dev["id"]
    yield build
    for s in made:
        s.close()


def nxt(dl, dev, manual=None):
    return dl.run(lambda t: dl.next_call(t, dev, manual=manual))


def report(dl, dev, call, *, talk=0, outcome=None, call_id=None, dur_s=None):
    now = dl.clock.now_ms()
    dur = (dur_s if dur_s is not None else talk + 5) * 1000
    doc = {"call_id": call_id or call["id"], "reservation": call["id"], "started_at": now, "ended_at": now + dur,
           "talk_seconds": talk, "outcome": outcome or ("answered" if talk else "no_answer")}
    dl.clock.advance(dur)
    return dl.run(lambda t: dl.report(t, dev, doc))


def campaign(dl, numbers, **kw):
    return dl.run(lambda t: dl.add_campaign(t, "c", numbers, **kw))


def cycle(dl, dev, clock, gap_s=100, **kw):
    """One call: next, report, then wait out the interval."""
    a = nxt(dl, dev)
    if "call" in a:
        report(dl, dev, a["call"], **kw)
        clock.advance(gap_s * 1000)
    return a


# -- D-1 valid calls ----------------------------------------------------------------------------
@pytest.mark.parametrize("talk,valid", [(29, False), (30, True), (31, True), (0, False)])
def test_d1_valid_call_from_talk_time(make, talk, valid):
    dl, clock, dev = make({"valid_seconds": 30})
    campaign(dl, ["13900000001"])
    a = nxt(dl, dev)
    rec = report(dl, dev, a["call"], talk=talk)["record"]
    assert rec["valid"] is valid and rec["connected"] is (talk > 0)


# -- D-2 rotation -----------------------------------------------------------------------------
@pytest.mark.parametrize("n,expected", [(1, [0, 1, 2, 0, 1, 2]), (2, [0, 0, 1, 1, 2, 2]), (3, [0, 0, 0, 1, 1, 1]),
                                        (6, [0, 0, 0, 0, 0, 0])])
def test_d2_rotation_after_n_consecutive_calls(make, n, expected):
    dl, clock, dev = make({"rotate_after": n, "interval_s": 0}, sims=3)
    campaign(dl, [f"1390000{i:04d}" for i in range(6)])
    slots = [cycle(dl, dev, clock, gap_s=0)["call"]["sim_slot"] for _ in range(6)]
    assert slots == expected
    warned = any(w.startswith("D-2") for w in dl.settings().warnings())
    assert warned is (n < 3)


def test_d2_rotation_skips_a_capped_or_disabled_sim(make):
    dl, clock, dev = make({"rotate_after": 2, "interval_s": 0, "new_sim_cap": 2, "sim_daily_cap": 2}, sims=3)
    campaign(dl, [f"1390000{i:04d}" for i in range(10)])
    dl.run(lambda t: dl.set_sim(t, f"{dev}.1", "blocked"))
    slots = [cycle(dl, dev, clock, gap_s=0)["call"]["sim_slot"] for _ in range(4)]
    assert slots == [0, 0, 2, 2]
    assert nxt(dl, dev)["refused"]["reason"] == "sim_daily_cap"


# -- D-3 per-SIM daily cap and the new SIM's first day -----------------------------------------------
@pytest.mark.parametrize("cap", [1, 4])
def test_d3_sim_daily_cap_at_below_above(make, cap):
    dl, clock, dev = make({"sim_daily_cap": cap, "new_sim_cap": 30, "interval_s": 0},
                          start=at(SH, 2026, 12, 1, 9, 0))
    dl.run(lambda t: dl.add_dnc(t, "10000"))  # unrelated
    campaign(dl, [f"1390000{i:04d}" for i in range(20)])
    # a SIM in use since an earlier day: the full cap applies
    dl.run(lambda t: t.put("dl.sim", f"{dev}.0".encode(), {**t.get("dl.sim", f"{dev}.0".encode()),
                                                          "first_use": "2026-11-01"}))
    for _ in range(cap):
        assert "call" in cycle(dl, dev, clock, gap_s=0)
    r = nxt(dl, dev)["refused"]
    assert r["reason"] == "sim_daily_cap" and r["rule"] == "D-3"
    assert r["retry_at"] == at(SH, 2026, 12, 2, 0, 0)  # the tenant's midnight


@pytest.mark.parametrize("new_cap,cap,first_day", [(30, 60, 30), (3, 60, 3), (30, 10, 10)])
def test_d3_new_sim_first_day(make, new_cap, cap, first_day):
    dl, clock, dev = make({"sim_daily_cap": cap, "new_sim_cap": new_cap, "interval_s": 0, "number_daily_cap": 3,
                           "hours": [["00:00", "24:00"]]})
    campaign(dl, [f"139{i:08d}" for i in range(200)], retries=0)
    got = sum("call" in cycle(dl, dev, clock, gap_s=0, dur_s=1) for _ in range(first_day + 1))
    assert got == first_day
    clock.set(at(SH, 2026, 12, 2, 0, 0))  # the second day: the full cap
    got = sum("call" in cycle(dl, dev, clock, gap_s=0, dur_s=1) for _ in range(cap + 1))
    assert got == cap


# -- D-4 interval --------------------------------------------------------------------------------
@pytest.mark.parametrize("wait_s,granted", [(99, False), (100, True), (101, True)])
def test_d4_interval_after_the_call_ended(make, wait_s, granted):
    dl, clock, dev = make({"interval_s": 100})
    campaign(dl, ["13900000001", "13900000002"])
    a = nxt(dl, dev)
    report(dl, dev, a["call"], talk=40)
    end = clock.now_ms()
    clock.advance(wait_s * 1000)
    b = nxt(dl, dev)
    assert ("call" in b) is granted
    if not granted:
        assert b["refused"]["reason"] == "interval" and b["refused"]["retry_at"] == end + 100_000


# -- D-5 harassment limit, across campaigns and manual dials (D-11) ----------------------------------
@pytest.mark.parametrize("cap", [1, 2, 3])
def test_d5_number_daily_cap_across_campaigns_and_manual(make, cap):
    dl, clock, dev = make({"interval_s": 0, "number_daily_cap": cap})
    campaign(dl, ["+86 139-0000-0001"], retries=5, retry_spacing_s=0)
    campaign(dl, ["13900000001"], retries=5, retry_spacing_s=0, priority=1)
    got = []
    for _ in range(cap + 2):
        a = nxt(dl, dev, manual="13900000001") if len(got) % 2 else nxt(dl, dev)
        got.append(a)
        if "call" in a:
            report(dl, dev, a["call"])
    grants = [a for a in got if "call" in a]
    assert len(grants) == cap
    assert {a["refused"]["reason"] for a in got if "refused" in a} <= {"number_daily_cap", "nothing_to_call"}
    assert any(a.get("refused", {}).get("reason") == "number_daily_cap" for a in got)
    with pytest.raises(InputError, match="number_daily_cap"):
        rules.parse_settings({"number_daily_cap": 4})  # "at most 3 times per day"


def test_d5_midnight_rollover_in_the_tenant_zone(make):
    # 23:59 and 00:00 Shanghai time are 15:59 and 16:00 UTC: the count resets at 16:00 UTC
    dl, clock, dev = make({"interval_s": 0, "number_daily_cap": 1, "hours": [["00:00", "24:00"]]},
                          start=at(SH, 2026, 12, 1, 23, 58))
    assert "call" in (a := nxt(dl, dev, manual="13900000009"))
    report(dl, dev, a["call"], dur_s=1)
    clock.set(at(SH, 2026, 12, 1, 23, 59, 59))
    assert nxt(dl, dev, manual="13900000009")["refused"]["reason"] == "number_daily_cap"
    clock.set(at(SH, 2026, 12, 2, 0, 0))
    assert datetime.fromtimestamp(clock.now_ms() / 1000, ZoneInfo("UTC")).hour == 16
    assert "call" in nxt(dl, dev, manual="13900000009")


# -- D-6 seats and licences -------------------------------------------------------------------------
def test_d6_licences(make):
    dl, clock, dev = make({"licences": 1}, seat=False)
    assert nxt(dl, dev)["refused"]["reason"] == "no_licence"
    dl.run(lambda t: dl.set_seat(t, "a", dev, True))
    with pytest.raises(Conflict, match="D-6"):
        dl.run(lambda t: dl.set_seat(t, "b", None, True))  # at the limit: refused
    with pytest.raises(Conflict, match="D-6"):
        dl.run(lambda t: dl.update_settings(t, {"licences": 0}))  # below the seats using them
    dl.run(lambda t: dl.set_seat(t, "a", dev, False))
    assert nxt(dl, dev)["refused"]["reason"] == "no_licence"
    dl.run(lambda t: dl.set_seat(t, "b", dev, True))  # the freed licence
    assert dl.seats()["used"] == 1
    dl.run(lambda t: dl.update_settings(t, {"licences": 3}))
    dl.run(lambda t: dl.set_seat(t, "c", None, True))
    dl.run(lambda t: dl.set_seat(t, "d", None, True))
    assert dl.seats()["used"] == 3
    with pytest.raises(Conflict):
        dl.run(lambda t: dl.set_seat(t, "e", None, True))


# -- D-7 call records and D-8 statistics, against brute force over every record ------------------------
def _many_calls(make):
    dl, clock, dev = make({"interval_s": 0, "hours": [["00:00", "24:00"]], "sim_daily_cap": 1000,
                           "new_sim_cap": 30}, sims=2)
    dev2 = dl.run(lambda t: dl.add_device(t, "q", [{"number": "13811110000"}]))["id"]
    dl.run(lambda t: dl.set_seat(t, "emp2", dev2, True))
    import random
    rng = random.Random(3)
    numbers = [f"1390000{i:04d}" for i in range(15)]
    for i in range(120):
        d = dev if i % 3 else dev2
        a = nxt(dl, d, manual=rng.choice(numbers))
        if "call" in a:
            talk = rng.choice([0, 0, 10, 45, 120])
            report(dl, d, a["call"], talk=talk, dur_s=talk + rng.randint(1, 20))
        clock.advance(rng.randint(1, 8) * 3600_000)
    inbound = {"call_id": "in-1", "direction": "in", "number": numbers[0], "started_at": clock.now_ms(),
               "ended_at": clock.now_ms() + 60_000, "talk_seconds": 50, "outcome": "answered"}
    dl.run(lambda t: dl.report(t, dev, inbound))
    with dl.store.app_read() as t:
        every = [v for _, v in t.scan("dl.call")]
    return dl, every, numbers


def test_d7_search_equals_brute_force(make):
    dl, every, numbers = _many_calls(make)
    assert len(every) > 100
    lo = sorted(c["started_at"] for c in every)[20]
    hi = sorted(c["started_at"] for c in every)[90]
    cases = [dict(), dict(number=numbers[3]), dict(start=lo, end=hi), dict(employees={"emp2"}),
             dict(direction="in"), dict(connected=True, min_talk=30, max_talk=100),
             dict(number="+86 " + numbers[0], connected=False), dict(employees=set())]
    for q in cases:
        want = [c for c in every
                if (q.get("number") is None or c["number"] == rules.normalise_number(q["number"]))
                and (q.get("start") is None or c["started_at"] >= q["start"])
                and (q.get("end") is None or c["started_at"] < q["end"])
                and (q.get("employees") is None or c["employee"] in q["employees"])
                and (q.get("direction") is None or c["direction"] == q["direction"])
                and (q.get("connected") is None or c["connected"] == q["connected"])
                and (q.get("min_talk") is None or c["talk_seconds"] >= q["min_talk"])
                and (q.get("max_talk") is None or c["talk_seconds"] <= q["max_talk"])]
        want.sort(key=lambda c: (c["started_at"], c["uid"]), reverse=True)
        got, cursor = [], None
        while True:  # paged, 7 at a time
            page, cursor = dl.search_calls(**q, limit=7, before=cursor)
            got += page
            if cursor is None:
                break
        assert [c["uid"] for c in got] == [c["uid"] for c in want], q


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_d8_statistics_equal_brute_force(make, granularity):
    dl, every, _ = _many_calls(make)
    days = sorted({c["day"] for c in every})
    out = dl.stats(days[0], days[-1], granularity, None)

    def bucket(day):
        d = datetime.fromisoformat(day).date()
        return {"day": day, "week": f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}", "month": day[:7]}[granularity]
    want: dict = {}
    for c in every:
        w = want.setdefault(c["employee"], {}).setdefault(bucket(c["day"]), Counter())
        w["calls"] += 1
        w["connected"] += c["connected"]
        w["valid"] += c["talk_seconds"] >= 30 and c["connected"]
        w["talk"] += c["talk_seconds"]
    for emp, buckets in want.items():
        for b, cnt in buckets.items():
            got = out["trend"][emp][b]
            assert (got["calls"], got["connected"], got["valid"], got["talk"]) == (
                cnt["calls"], cnt["connected"], cnt["valid"], cnt["talk"])
    assert out["overview"]["calls"] == len(every)
    ranks = [r["employee"] for r in out["ranking"]]
    totals = {e: sum(c["valid"] for c in b.values()) for e, b in want.items()}
    assert totals[ranks[0]] == max(totals.values())
    scoped = dl.stats(days[0], days[-1], granularity, {"emp2"})
    assert set(scoped["trend"]) == {"emp2"}


# -- D-9 the pop-up table (seed 004 §四) ------------------------------------------------------------
CH = rules.Channel("line1", group=7, popup=True)
REC_G7 = rules.Record("op-b", 7)
REC_G8 = rules.Record("op-x", 8)


def op(level, group=7, channel="line1", popup=True, sharing=False, name="op-b"):
    return rules.Operator(name, level, group, channel, popup, sharing)


@pytest.mark.parametrize("operator,record,shared,expected", [
    (op("super", group=1, channel=None), REC_G8, False, "D-9a"),
    (op("super", group=1, channel=None), None, False, "D-9a"),
    (op("leader"), REC_G7, False, "D-9b"),  # same group as the record's creator
    (op("leader"), REC_G8, False, None),  # another group's record, no sharing
    (op("leader", sharing=True), REC_G8, True, "D-9b"),  # sharing permission and the switch
    (op("leader", sharing=True), REC_G8, False, None),  # the permission without the switch
    (op("leader", group=8), REC_G8, True, None),  # not the channel's group
    (op("leader"), None, False, "D-9c"),
    (op("leader", group=8), None, False, None),
    (op("regular"), REC_G7, False, "D-9d"),  # the record's creator on the ringing line
    (op("regular", name="op-c"), REC_G7, False, None),  # not the creator
    (op("regular", name="op-c", sharing=True), REC_G7, True, "D-9d"),
    (op("regular", channel="line2"), REC_G7, False, None),  # another line
    (op("regular"), None, False, "D-9e"),
    (op("regular", channel="line2"), None, False, None),
    (op("super", popup=False), None, False, None),  # no pop-up permission
])
def test_d9_popup_table(operator, record, shared, expected):
    assert rules.pops_up(operator, CH, record, "13900000001", shared) == expected
    assert rules.pops_up(operator, CH, record, None, shared) is None  # no caller number: never
    off = rules.Channel("line1", 7, popup=False)
    assert rules.pops_up(operator, off, record, "13900000001", shared) is None


# -- D-10 one reservation per dial, settled, released, given back ---------------------------------------
def test_d10_reservation_repeat_timeout_and_not_dialled(make):
    dl, clock, dev = make({"interval_s": 0, "reservation_timeout_s": 60, "sim_daily_cap": 5, "new_sim_cap": 5})
    campaign(dl, [f"1390000{i:04d}" for i in range(10)], retries=3, retry_spacing_s=0)
    a = nxt(dl, dev)
    again = nxt(dl, dev)
    assert again["repeat"] and again["call"]["id"] == a["call"]["id"]  # a poll repeated: same call, no new count
    assert nxt(dl, dev, manual="13800009999")["refused"]["reason"] == "busy"

    def used():
        with dl.store.app_read() as t:
            return t.get("dl.simday", app_key(f"{dev}.0", "2026-12-01")) or 0
    assert used() == 1
    clock.advance(61_000)  # the phone went silent: the reservation expires, the count stays
    assert dl.run(dl.release_expired) == 1
    assert used() == 1
    b = nxt(dl, dev)
    assert b["call"]["id"] != a["call"]["id"] and used() == 2
    # a late report of the expired call is kept (marked late) and counts nothing twice
    late = dl.run(lambda t: dl.report(t, dev, {"call_id": "late-1", "reservation": a["call"]["id"],
                                               "started_at": a["call"]["at"], "ended_at": a["call"]["at"] + 9000,
                                               "talk_seconds": 0, "outcome": "no_answer"}))
    assert late["record"]["late"] and used() == 2
    # the phone could not dial: the count goes back
    dl.run(lambda t: dl.report(t, dev, {"call_id": "nd-1", "reservation": b["call"]["id"], "outcome": "not_dialled",
                                        "started_at": clock.now_ms(), "ended_at": clock.now_ms()}))
    assert used() == 1


def test_each_call_is_a_contact_record_of_its_customer(make):
    dl, clock, dev = make({"interval_s": 0})
    campaign(dl, [{"number": "13900000001", "customer": "wm-1"}])
    assert dl.last_contact("13900000001") is None
    a = nxt(dl, dev)
    t0 = clock.now_ms()
    report(dl, dev, a["call"], talk=0)
    got = dl.last_contact("+86 139 0000 0001")
    assert got == {"at": t0, "connected": False, "customer": "wm-1"}


def test_d10_duplicate_and_out_of_order_reports_change_nothing_twice(make):
    dl, clock, dev = make({"interval_s": 0})
    campaign(dl, ["13900000001", "13900000002"])
    a = nxt(dl, dev)
    doc = {"call_id": "c-1", "reservation": a["call"]["id"], "started_at": clock.now_ms(),
           "ended_at": clock.now_ms() + 50_000, "talk_seconds": 40, "outcome": "answered"}
    clock.advance(60_000)
    first = dl.run(lambda t: dl.report(t, dev, doc))
    for _ in range(3):
        dup = dl.run(lambda t: dl.report(t, dev, doc))
        assert dup["duplicate"] and dup["record"]["uid"] == first["record"]["uid"]
    with pytest.raises(Conflict):  # another call id for a settled reservation
        dl.run(lambda t: dl.report(t, dev, {**doc, "call_id": "c-2"}))
    # an inbound call reported with an older time than the outbound one: accepted, in its place
    dl.run(lambda t: dl.report(t, dev, {"call_id": "in-0", "direction": "in", "number": "13700000000",
                                        "started_at": doc["started_at"] - 3600_000,
                                        "ended_at": doc["started_at"] - 3500_000, "talk_seconds": 30,
                                        "outcome": "answered"}))
    day = dl.stats("2026-12-01", "2026-12-01", "day", None)["overview"]
    assert (day["calls"], day["in"], day["out"], day["talk"]) == (2, 1, 1, 70)
    page, _ = dl.search_calls()
    assert [c["call_id"] for c in page] == ["c-1", "in-0"]


@pytest.mark.parametrize("doc,match", [
    ({"call_id": ""}, "call_id"), ({"call_id": "x", "outcome": "boom"}, "outcome"),
    ({"call_id": "x", "outcome": "answered", "started_at": 5}, "ended_at"),
    ({"call_id": "x", "outcome": "answered", "started_at": 10, "ended_at": 5}, "ended_at"),
    ({"call_id": "x", "outcome": "answered", "started_at": 0, "ended_at": 1000, "talk_seconds": 99}, "longer"),
    ({"call_id": "x", "outcome": "answered", "started_at": 0, "ended_at": 1000, "talk_seconds": True}, "talk"),
    ({"call_id": "x", "outcome": "answered", "started_at": 0, "ended_at": 1000, "reservation": "nope"}, "reservation"),
    ({"call_id": "x", "outcome": "answered", "started_at": 0, "ended_at": 1000}, "reservation"),
    ({"call_id": "x", "outcome": "answered", "started_at": 0, "ended_at": 1000, "number": "12ab"}, "phone"),
])
def test_bad_reports_are_clear_errors(make, doc, match):
    dl, clock, dev = make()
    with pytest.raises(Exception, match=match):
        dl.run(lambda t: dl.report(t, dev, doc))


def test_paused_campaign_is_skipped_and_resumed(make):
    dl, clock, dev = make({"interval_s": 0})
    big = campaign(dl, [f"1380{i:07d}" for i in range(1000)], priority=9)
    campaign(dl, ["13900000001"], priority=1)
    dl.run(lambda t: dl.set_campaign_state(t, big["id"], "paused"))
    a = nxt(dl, dev)  # behind 1,000 paused numbers of a higher priority: still found at once
    assert a["call"]["number"] == "13900000001"
    report(dl, dev, a["call"], talk=20)
    assert nxt(dl, dev)["refused"]["reason"] == "nothing_to_call"
    dl.run(lambda t: dl.set_campaign_state(t, big["id"], "active"))
    assert nxt(dl, dev)["call"]["campaign"] == big["id"]


# -- D-11 do-not-call ------------------------------------------------------------------------------
def test_d11_dnc_holds_across_campaigns_and_manual_dials(make):
    dl, clock, dev = make({"interval_s": 0})
    campaign(dl, ["13900000001", "13900000002"], priority=9)
    campaign(dl, ["139 0000 0001", "13900000003"], priority=1)
    dl.run(lambda t: dl.add_dnc(t, "+8613900000001"))
    dialled = []
    while "call" in (a := nxt(dl, dev)):
        dialled.append(a["call"]["number"])
        report(dl, dev, a["call"], talk=10)
    assert sorted(dialled) == ["13900000002", "13900000003"]
    r = nxt(dl, dev, manual="13900000001")["refused"]
    assert (r["reason"], r["rule"]) == ("dnc", "D-11")
    assert dl.run(lambda t: dl.remove_dnc(t, "13900000001"))
    assert "call" in nxt(dl, dev, manual="13900000001")


# -- D-12 calling hours in the tenant's zone, midnight and daylight saving ---------------------------------
@pytest.mark.parametrize("local_time,granted,retry", [
    ((8, 59), False, (9, 0)), ((9, 0), True, None), ((11, 59), True, None), ((12, 0), False, (13, 30)),
    ((13, 29), False, (13, 30)), ((13, 30), True, None), ((19, 59), True, None), ((20, 0), False, "tomorrow"),
])
def test_d12_calling_hours(make, local_time, granted, retry):
    dl, clock, dev = make({}, start=at(SH, 2026, 12, 1, *local_time))
    campaign(dl, ["13900000001"])
    a = nxt(dl, dev)
    assert ("call" in a) is granted
    if not granted:
        assert a["refused"]["reason"] == "outside_hours"
        want = at(SH, 2026, 12, 2, 9, 0) if retry == "tomorrow" else at(SH, 2026, 12, 1, *retry)
        assert a["refused"]["retry_at"] == want


def test_d12_daylight_saving_day(make):
    # 2026-03-08 in New York: 02:00 → 03:00; the day has 23 hours and 02:30 never happens
    s = {"timezone": "America/New_York", "hours": [["01:00", "04:00"]], "interval_s": 0, "number_daily_cap": 1}
    dl, clock, dev = make(s, start=at(NY, 2026, 3, 8, 0, 59))
    assert nxt(dl, dev, manual="13900000001")["refused"]["retry_at"] == at(NY, 2026, 3, 8, 1, 0)
    clock.set(at(NY, 2026, 3, 8, 1, 59))
    a = nxt(dl, dev, manual="13900000001")
    report(dl, dev, a["call"], dur_s=1)
    clock.advance(60_000 - 1000)  # one real minute later the wall clock says 03:00: still inside hours
    assert rules.local(clock.now_ms(), NY).strftime("%H:%M") == "03:00"
    assert nxt(dl, dev, manual="13900000001")["refused"]["reason"] == "number_daily_cap"
    assert "call" in nxt(dl, dev, manual="13900000002")
    # the next day starts at local midnight: 23 hours after the previous one
    assert rules.next_midnight(at(NY, 2026, 3, 8, 0, 0), NY) - at(NY, 2026, 3, 8, 0, 0) == 23 * 3600_000
    assert rules.day_of(at(NY, 2026, 3, 8, 23, 59), NY) == "2026-03-08"
    # the autumn day has 25 hours
    assert rules.next_midnight(at(NY, 2026, 11, 1, 0, 0), NY) - at(NY, 2026, 11, 1, 0, 0) == 25 * 3600_000


# -- never over a cap: random fleets, clocks and interleavings ---------------------------------------
OPS = st.lists(st.tuples(st.sampled_from(["next", "next", "report", "report", "forget", "not_dialled", "manual",
                                          "advance", "advance_long", "dnc", "sweep", "seat_off", "seat_on"]),
                         st.integers(0, 3), st.integers(0, 200)), min_size=5, max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, devices=st.integers(1, 3), sims=st.integers(1, 3), cap=st.integers(1, 6),
       rot=st.integers(1, 4), interval=st.sampled_from([0, 30, 100]), ncap=st.integers(1, 3),
       tz=st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/Berlin"]))
def test_property_no_interleaving_breaks_a_cap(tmp_path_factory, ops, devices, sims, cap, rot, interval, ncap, tz):
    zone = ZoneInfo(tz)
    hours = [["08:00", "12:00"], ["13:00", "23:30"]]
    store = ArchiveStore(tmp_path_factory.mktemp("prop"), master_key=os.urandom(32))
    clock = ManualClock(at(zone, 2026, 3, 7, 22, 0))  # near midnight and DST in two of the zones
    dl = Dialer(store, clock)
    try:
        dl.run(lambda t: dl.update_settings(t, {"licences": devices, "sim_daily_cap": cap, "new_sim_cap": cap,
                                                "rotate_after": rot, "interval_s": interval,
                                                "number_daily_cap": ncap, "timezone": tz, "hours": hours,
                                                "reservation_timeout_s": 120}))
        devs = []
        for i in range(devices):
            d = dl.run(lambda t: dl.add_device(t, f"p{i}", [{"number": f"1381{i}{s:06d}"} for s in range(sims)]))
            dl.run(lambda t: dl.set_seat(t, f"e{i}", d["id"], True))
            devs.append(d["id"])
        numbers = [f"1390000{i:04d}" for i in range(6)]
        campaign(dl, numbers[:4], retries=3, retry_spacing_s=0)
        campaign(dl, numbers[2:], retries=2, retry_spacing_s=60, priority=8)
        # the oracle: what was granted and what happened to it, kept here
        open_resv: dict[str, dict] = {}
        grants: list[dict] = []  # calls that count (not given back)
        last_end: dict[str, int] = {}
        dnc_since: dict[str, int] = {}
        seat_on = {d: True for d in devs}
        for kind, i, x in ops:
            dev = devs[i % devices]
            now = clock.now_ms()
            if kind in ("next", "manual"):
                a = nxt(dl, dev, manual=numbers[x % 6] if kind == "manual" else None)
                if "call" in a and not a.get("repeat"):
                    c = a["call"]
                    assert dev not in open_resv
                    g = {"dev": dev, "sim": c["sim"], "number": c["number"], "at": now, "id": c["id"]}
                    grants.append(g)
                    open_resv[dev] = g
                    assert seat_on[dev], "a seat without outbound permission dialled"
                    assert rules.in_hours(now, dl.settings()), "dialled outside hours"
                    assert c["number"] not in dnc_since, "dialled a do-not-call number"
                    assert now >= last_end.get(dev, 0) + interval * 1000, "interval broken"
                elif "refused" in a:
                    assert a["refused"]["reason"] in rules_reasons() and a["refused"]["rule"]
            elif kind in ("report", "not_dialled") and dev in open_resv:
                g = open_resv.pop(dev)
                dur = x * 1000
                clock.advance(dur)  # the report arrives when the call ended
                expired = clock.now_ms() >= g["at"] + 120_000
                if kind == "not_dialled":
                    dl.run(lambda t: dl.report(t, dev, {"call_id": g["id"], "reservation": g["id"],
                                                        "outcome": "not_dialled", "started_at": now,
                                                        "ended_at": now}))
                    if not expired:
                        grants.remove(g)  # given back
                    else:
                        last_end[dev] = max(last_end.get(dev, 0), g["at"] + 120_000)
                else:
                    dl.run(lambda t: dl.report(t, dev, {"call_id": g["id"], "reservation": g["id"],
                                                        "outcome": "answered" if x % 2 else "no_answer",
                                                        "talk_seconds": x // 2 if x % 2 else 0,
                                                        "started_at": now, "ended_at": now + dur}))
                    # an expired reservation ended at its expiry; a settled one when the call ended
                    end = g["at"] + 120_000 if expired else now + dur
                    last_end[dev] = max(last_end.get(dev, 0), end)
            elif kind == "forget" and dev in open_resv:
                g = open_resv.pop(dev)
                clock.advance(121_000)
                last_end[dev] = max(last_end.get(dev, 0), g["at"] + 120_000)
                # the next poll (or the sweep) releases it; until then the device is busy
                dl.run(dl.release_expired)
            elif kind == "advance":
                clock.advance(x * 1000)
            elif kind == "advance_long":
                clock.advance(x * 600_000)
            elif kind == "dnc":
                n = numbers[x % 6]
                dl.run(lambda t: dl.add_dnc(t, n))
                dnc_since.setdefault(n, now)
            elif kind == "sweep":
                dl.run(dl.release_expired)
            elif kind in ("seat_off", "seat_on"):
                on = kind == "seat_on"
                dl.run(lambda t: dl.set_seat(t, f"e{i % devices}", dev, on))
                seat_on[dev] = on
            # a reservation past its time is expired (the next poll or the sweep says so)
            for d, g in list(open_resv.items()):
                if clock.now_ms() >= g["at"] + 120_000:
                    open_resv.pop(d)
                    last_end[d] = max(last_end.get(d, 0), g["at"] + 120_000)
        # every count the oracle kept is within its limit, and equals the store's
        s = dl.settings()
        per_sim = Counter((g["sim"], rules.day_of(g["at"], zone)) for g in grants)
        per_num = Counter((g["number"], rules.day_of(g["at"], zone)) for g in grants)
        assert all(n <= cap for n in per_sim.values()), per_sim
        assert all(n <= ncap for n in per_num.values()), per_num
        with store.app_read() as t:
            for (sim, day), n in per_sim.items():
                assert t.get("dl.simday", app_key(sim, day)) == n
            stored = [(k, v) for k, v in t.scan("dl.simday")]
            assert all(isinstance(v, int) and v > 0 for _, v in stored)
            assert sum(v for _, v in stored) == len(grants)
        assert s.licences == devices
    finally:
        store.close()


def rules_reasons():
    from dialer.service import REASON_RULE
    return set(REASON_RULE)


def test_dst_days_are_23_and_25_hours_in_berlin():
    b = ZoneInfo("Europe/Berlin")
    assert rules.next_midnight(at(b, 2026, 3, 29, 0, 0), b) - at(b, 2026, 3, 29, 0, 0) == 23 * 3600_000
    assert rules.next_midnight(at(b, 2026, 10, 25, 0, 0), b) - at(b, 2026, 10, 25, 0, 0) == 25 * 3600_000
    assert timedelta(hours=1)  # zoneinfo is the oracle here; the rule code only asks it
