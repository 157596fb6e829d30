"""Customers and pools: a table per rule P-1 … P-8 on a real store with an injected clock,
a property test of random claim / return / recycle / assign / clock steps against caps kept
by the test, and the spreadsheet import (P-4) with a report checked row by row against
what this test planted."""

from __future__ import annotations

import csv
import io
import os
import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.customers import imports, rules
from control.customers.service import Customers
from scrm_fast.clock import ManualClock
from scrm_fast.errors import ConflictError, InputError
from scrm_fast.storage import ArchiveStore, app_key

SH = ZoneInfo("Asia/Shanghai")
T0 = int(datetime(2026, 12, 1, 10, 0, tzinfo=SH).timestamp() * 1000)
DAY = 86400_000


@pytest.fixture
def make(tmp_path):
    made = []

    def build(n_customers=0, pool=None, settings_doc=None, companies=None):
        store = ArchiveStore(tmp_path / f"c{len(made)}", master_key=os.urandom(32))
        made.append(store)
        clock = ManualClock(T0)
        cu = Customers(store, clock)
        if settings_doc:
            cu.run(lambda t: cu.update_settings(t, settings_doc))
        pid = None
        if pool is not None:
            pid = cu.run(lambda t: cu.add_pool(t, {"name": "公海", **pool}))["id"]
        ids = []
        for i in range(n_customers):
            doc = {"name": f"客户{i}", "phone": f"139{i:08d}"}
            if companies:
                doc["company"] = companies[i % len(companies)]
            ids.append(cu.run(lambda t: cu.add_customer(t, doc, by="test", pool=pid))["id"])
        return cu, clock, pid, ids
    yield build
    for s in made:
        s.close()


def claim(cu, pid, member, ids):
    return cu.run(lambda t: cu.claim(t, pid, member, ids))


# -- P-1 pools and their allocation rule -------------------------------------------------------------
@pytest.mark.parametrize("rule,member_claims,admin_assigns", [("claim", True, False), ("assign", False, True),
                                                              ("both", True, True)])
def test_p1_allocation_rule(make, rule, member_claims, admin_assigns):
    cu, clock, pid, ids = make(4, {"rule": rule, "members": ["m1", "m2"], "admins": ["boss"]})
    out = claim(cu, pid, "m1", [ids[0]])
    assert (out["claimed"] == [ids[0]]) is member_claims
    if not member_claims:
        assert out["refused"][0]["rule"] == "P-1"
    out = cu.run(lambda t: cu.claim(t, pid, "m2", [ids[1]], admin_assign=True))
    assert (out["claimed"] == [ids[1]]) is admin_assigns
    # not a member: refused whatever the rule
    out = claim(cu, pid, "stranger", [ids[2]])
    assert out["claimed"] == [] and out["refused"][0]["rule"] == "P-1"
    out = cu.run(lambda t: cu.claim(t, pid, "stranger", [ids[2]], admin_assign=True))
    assert out["claimed"] == []


# -- P-2 holding and daily caps ---------------------------------------------------------------------
@pytest.mark.parametrize("cap,asked", [(3, 2), (3, 3), (3, 5)])
def test_p2_holding_cap(make, cap, asked):
    cu, clock, pid, ids = make(8, {"members": ["m1"], "hold_cap": cap})
    out = claim(cu, pid, "m1", ids[:asked])
    assert len(out["claimed"]) == min(cap, asked)
    assert [r["rule"] for r in out["refused"]] == ["P-2"] * max(0, asked - cap)
    # returning one frees a place under the cap
    cu.run(lambda t: cu.give_back(t, pid, "m1", out["claimed"][:1]))
    assert claim(cu, pid, "m1", [ids[7]])["claimed"] == [ids[7]]


@pytest.mark.parametrize("cap", [1, 2, 4])
def test_p2_daily_cap_resets_at_the_tenant_midnight(make, cap):
    cu, clock, pid, ids = make(12, {"members": ["m1"], "daily_cap": cap})
    got = sum(len(claim(cu, pid, "m1", [c])["claimed"]) for c in ids[:cap + 2])
    assert got == cap
    clock.set(int(datetime(2026, 12, 1, 23, 59, 59, tzinfo=SH).timestamp() * 1000))
    assert claim(cu, pid, "m1", [ids[cap + 2]])["refused"][0]["rule"] == "P-2"
    clock.set(int(datetime(2026, 12, 2, 0, 0, tzinfo=SH).timestamp() * 1000))  # 16:00 UTC
    assert claim(cu, pid, "m1", [ids[cap + 2]])["claimed"] == [ids[cap + 2]]


def test_p2_caps_only_for_rules_that_let_members_claim(make):
    cu, clock, pid, ids = make(5, {"rule": "assign", "members": ["m1"], "hold_cap": 1, "daily_cap": 1})
    out = cu.run(lambda t: cu.claim(t, pid, "m1", ids[:4], admin_assign=True))
    assert len(out["claimed"]) == 4  # an assign-only pool: the caps do not apply


# -- P-3 recycling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("days_quiet,recycled", [(6, False), (7, True), (8, True)])
def test_p3_recycle_without_contact(make, days_quiet, recycled):
    cu, clock, pid, ids = make(3, {"members": ["m1"], "recycle_no_contact_s": 7 * 86400})
    claim(cu, pid, "m1", ids)
    clock.advance(2 * DAY)
    cu.run(lambda t: cu.contact(t, ids[1], "call", None, "m1"))  # a contact restarts its clock
    clock.advance((days_quiet - 2) * DAY)
    out = cu.run(cu.recycle)
    got = {r["customer"] for r in out}
    assert (ids[0] in got) is recycled and (ids[2] in got) is recycled
    assert ids[1] not in got
    for r in out:
        assert r["rule"] == "P-3" and "no contact record" in r["reason"]
    rec = cu.read(lambda t: cu.get(t, ids[0]))
    assert (rec["owner"] is None) is recycled
    if recycled:
        assert rec["history"][-1]["what"] == "returned" and "P-3" in rec["history"][-1]["reason"]


def test_p3_dialer_calls_and_archived_chats_count_as_contact(make):
    from dialer.service import Dialer

    cu, clock, pid, ids = make(3, {"members": ["m1"], "recycle_no_contact_s": 7 * 86400})
    cu.run(lambda t: cu.update_customer(t, ids[2], {"external_userid": "wmChatty"}, "t"))
    claim(cu, pid, "m1", ids)
    clock.advance(5 * DAY)
    # a dialer call with customer 0's phone (the dialer's own record of it)
    dl = Dialer(cu.store, clock)
    dl.run(lambda t: dl.update_settings(t, {"licences": 1, "interval_s": 0, "hours": [["00:00", "24:00"]]}))
    dev = dl.run(lambda t: dl.add_device(t, "p", [{"number": "13800000000"}]))["id"]
    dl.run(lambda t: dl.set_seat(t, "m1", dev, True))
    a = dl.run(lambda t: dl.next_call(t, dev, manual="+86 139 0000 0000"))
    dl.run(lambda t: dl.report(t, dev, {"call_id": "c1", "reservation": a["call"]["id"], "started_at": clock.now_ms(),
                                        "ended_at": clock.now_ms() + 1000, "talk_seconds": 0, "outcome": "no_answer"}))
    # an archived chat with customer 2 (what the conversation index says)
    import time as _t
    cu._chats = (_t.monotonic(), {"wmChatty": clock.now_ms()})
    clock.advance(3 * DAY)  # 8 days after the claim, 3 after the call and the chat
    out = cu.run(cu.recycle)
    assert [r["customer"] for r in out] == [ids[1]]
    clock.advance(5 * DAY)
    cu._chats = (_t.monotonic(), {"wmChatty": 0})
    assert sorted(r["customer"] for r in cu.run(cu.recycle)) == sorted([ids[0], ids[2]])


def test_p3_recycle_without_new_opportunity(make):
    cu, clock, pid, ids = make(2, {"members": ["m1"], "recycle_no_opportunity_s": 30 * 86400})
    claim(cu, pid, "m1", ids)
    clock.advance(10 * DAY)
    cu.run(lambda t: cu.add_opportunity(t, ids[0], "续费", 100_00, "m1"))
    clock.advance(25 * DAY)
    out = cu.run(cu.recycle)
    assert [r["customer"] for r in out] == [ids[1]] and "no new opportunity" in out[0]["reason"]
    clock.advance(6 * DAY)
    assert [r["customer"] for r in cu.run(cu.recycle)] == [ids[0]]


# -- P-4 import -------------------------------------------------------------------------------------
def _sheet(rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["客户名称", "手机号", "企业"])
    w.writerows(rows)
    return buf.getvalue().encode()


def test_p4_import_report_names_every_row(make):
    cu, clock, pid, ids = make(1, {"members": ["m1"], "dedup": True})  # one customer exists: 13900000000
    rng = random.Random(4)
    rows, expect = [], {}
    seen = {"13900000000": "existing"}
    first_existing = None
    for i in range(300):
        r = i + 2  # the header is row 1
        kind = rng.choice(["ok"] * 6 + ["dup", "bad_phone", "no_name", "existing"])
        if kind == "ok" or (kind == "dup" and not [p for p in seen if seen[p] != "existing"]):
            phone = f"+86 138-{i:04d}-{rng.randrange(10000):04d}"
            norm = rules.normalise_phone(phone)
            if norm in seen:
                expect[r] = ("duplicate", seen[norm])
            else:
                seen[norm] = r
                expect[r] = ("accepted", None)
            rows.append([f"客户{i}", phone, ""])
        elif kind == "dup":
            earlier = rng.choice([p for p in seen if seen[p] != "existing"])
            rows.append([f"重复{i}", earlier, ""])
            expect[r] = ("duplicate", seen[earlier])
        elif kind == "existing":
            rows.append([f"老客户{i}", "139 0000 0000", ""])
            # the first such row duplicates the stored customer; later ones duplicate that row
            expect[r] = ("duplicate", first_existing or "existing")
            first_existing = first_existing or r
        elif kind == "bad_phone":
            rows.append([f"坏号{i}", rng.choice(["12345", "abc", "2380013800", "1380013800012"]), ""])
            expect[r] = ("invalid", "phone")
        else:
            rows.append(["", f"1370000{i:04d}", ""])
            expect[r] = ("invalid", "name")
    s = cu.settings()
    cands, report = imports.plan(imports.read_rows(_sheet(rows), "leads.csv"), s, True)
    out = cu.run(lambda t: cu.import_rows(t, pid, cands, report, "boss", "leads.csv"))
    got = {r["row"]: r for r in out["report"]}
    assert sorted(got) == sorted(expect)
    for row, (status, detail) in expect.items():
        g = got[row]
        assert g["status"] == status, (row, g, status)
        if status == "duplicate" and detail != "existing":
            assert g["of_row"] == detail
        if status == "duplicate" and detail == "existing":
            assert g["customer"] == ids[0]
        if status == "invalid":
            assert detail in g["reason"]
    assert out["accepted"] == sum(1 for s_, _ in expect.values() if s_ == "accepted")
    # the accepted ones are unclaimed customers of the pool now
    assert len(cu.pool_customers(pid, limit=1000)) == out["accepted"] + 1


def test_p4_row_limit_and_bad_files():
    s = rules.default_settings()
    ok = [["客户名称", "手机号"]] + [[f"n{i}", f"139{i:08d}"] for i in range(5000)]
    cands, report = imports.plan(ok, s)
    assert len(cands) == 5000 and report == []
    with pytest.raises(InputError, match="5000"):
        imports.plan(ok + [["n", "13800000000"]], s)
    with pytest.raises(InputError, match="5000"):
        imports.read_rows(_sheet([[f"n{i}", f"139{i:08d}"] for i in range(5002)]), "x.csv")
    for data, name in ((b"PK\x03\x04broken zip", "a.xlsx"), (b"\x00\x01\x02", "a.csv"), (b"", "a.csv"),
                       ("名字,电话\n".encode(), "a.csv"), (b"\xd0\xcf\x11\xe0", "a.xls")):
        with pytest.raises(InputError):
            imports.plan(imports.read_rows(data, name), s)


def test_p4_xlsx_round_trip_and_dedup_off(make):
    from openpyxl import Workbook, load_workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "电话", "备注"])
    ws.append(["甲", 13800000001, "数字格式的号码"])
    ws.append(["乙", "13800000001", "同一号码"])
    ws.append([None, None, None])
    buf = io.BytesIO()
    wb.save(buf)
    cu, clock, pid, _ = make(0, {"members": ["m1"], "dedup": False})
    cands, report = imports.plan(imports.read_rows(buf.getvalue(), "a.xlsx"), cu.settings(), False)
    out = cu.run(lambda t: cu.import_rows(t, pid, cands, report, "boss", "a.xlsx"))
    assert out["accepted"] == 2  # de-dup off: both rows kept
    back = load_workbook(io.BytesIO(imports.report_xlsx(out["report"])))
    assert [r[1] for r in back.active.iter_rows(min_row=2, values_only=True)] == ["已导入", "已导入"]


# -- P-5 prospecting seats and the lead package ----------------------------------------------------------
def test_p5_seat_caps_and_lead_package(make):
    cu, clock, pid, ids = make(12, {"members": ["m1", "m2"], "prospect": True}, {"lead_package": 3})
    assert claim(cu, pid, "m1", [ids[0]])["refused"][0]["rule"] == "P-5"  # no seat yet
    cu.run(lambda t: cu.set_seats(t, [{"member": "m1", "on": True, "daily_cap": 2, "monthly_cap": 10000},
                                      {"member": "m2", "on": False, "daily_cap": 1000}]))
    out = claim(cu, pid, "m1", ids[:3])
    assert len(out["claimed"]) == 2 and out["refused"][0]["rule"] == "P-5"  # daily cap 2
    assert cu.settings()["lead_package"] == 1  # seat on: each claim consumed a lead
    out = claim(cu, pid, "m2", ids[3:8])
    assert len(out["claimed"]) == 5 and cu.settings()["lead_package"] == 1  # seat off consumes nothing
    clock.advance(DAY)
    out = claim(cu, pid, "m1", ids[8:11])
    assert len(out["claimed"]) == 1 and "lead package" in out["refused"][0]["reason"]
    assert cu.settings()["lead_package"] == 0  # never below zero
    with pytest.raises(InputError):
        cu.run(lambda t: cu.set_seats(t, [{"member": "m1", "daily_cap": 1001}]))
    with pytest.raises(InputError):
        cu.run(lambda t: cu.set_seats(t, [{"member": "m1", "monthly_cap": 10001}]))


def test_p5_monthly_cap(make):
    cu, clock, pid, ids = make(6, {"members": ["m1"], "prospect": True}, {"lead_package": 100})
    cu.run(lambda t: cu.set_seats(t, [{"member": "m1", "on": True, "daily_cap": 1000, "monthly_cap": 3}]))
    assert len(claim(cu, pid, "m1", ids[:5])["claimed"]) == 3
    clock.set(int(datetime(2027, 1, 1, 0, 0, tzinfo=SH).timestamp() * 1000))
    assert len(claim(cu, pid, "m1", ids[3:5])["claimed"]) == 2  # a new month


# -- P-6 prospecting release ------------------------------------------------------------------------------
def test_p6_unconverted_company_released_whole(make):
    cu, clock, pid, ids = make(4, {"members": ["m1"], "prospect": True},
                               {"lead_package": 100, "prospect_release_s": 3600}, companies=["甲公司", "乙公司"])
    cu.run(lambda t: cu.set_seats(t, [{"member": "m1", "on": True}]))
    claim(cu, pid, "m1", ids)
    cu.run(lambda t: cu.add_opportunity(t, ids[1], "首单", 0, "m1"))  # 乙公司 converted
    clock.advance(3599_000)
    assert cu.run(cu.recycle) == []
    clock.advance(1000)
    out = cu.run(cu.recycle)
    assert sorted(r["customer"] for r in out) == sorted([ids[0], ids[2]]) and {r["rule"] for r in out} == {"P-6"}


# -- P-7 resource protection ------------------------------------------------------------------------------------
@pytest.mark.parametrize("protection", [True, False])
def test_p7_one_member_per_company(make, protection):
    cu, clock, pid, ids = make(4, {"members": ["m1", "m2"]}, {"protection": protection}, companies=["甲公司"])
    assert len(claim(cu, pid, "m1", ids[:2])["claimed"]) == 2
    out = claim(cu, pid, "m2", ids[2:])
    if protection:
        assert out["claimed"] == [] and {r["rule"] for r in out["refused"]} == {"P-7"}
        cu.run(lambda t: cu.give_back(t, pid, "m1", ids[:2]))  # m1 holds none of it any more
        assert len(claim(cu, pid, "m2", ids[2:])["claimed"]) == 2
    else:
        assert len(out["claimed"]) == 2


# -- P-8 sales stages ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reopen", [False, True])
def test_p8_stages(make, reopen):
    cu, clock, pid, ids = make(1, {"members": ["m1"]}, {"stage_reopen": reopen})
    opp = cu.run(lambda t: cu.add_opportunity(t, ids[0], "年单", 5_000_00, "m1"))
    assert opp["stage"] == "初步接触" and cu.settings()["stages"] == rules.DEFAULT_STAGES
    cu.run(lambda t: cu.set_stage(t, opp["id"], "商务谈判", "m1"))
    cu.run(lambda t: cu.set_stage(t, opp["id"], rules.WON, "m1"))
    if reopen:
        assert cu.run(lambda t: cu.set_stage(t, opp["id"], "方案报价", "m1"))["stage"] == "方案报价"
    else:
        with pytest.raises(ConflictError, match="P-8"):
            cu.run(lambda t: cu.set_stage(t, opp["id"], "方案报价", "m1"))
    for bad in (["初步接触", "赢单"], ["a", "b", "输单", "赢单"], ["a", "赢单", "输单", "a"]):
        with pytest.raises(InputError):
            rules.merge_settings(rules.default_settings(), {"stages": bad})
    ok = rules.merge_settings(rules.default_settings(), {"stages": ["接触", "报价", "赢单", "输单"]})
    assert ok["stages"][-2:] == ["赢单", "输单"]


def test_fields_settings_and_record_checks():
    s = rules.default_settings()
    assert len(rules.BASIC_FIELDS) == 17
    with pytest.raises(InputError):
        rules.merge_settings(s, {"fields": {"phone": {"required": False}}})
    s2 = rules.merge_settings(s, {"fields": {"email": {"enabled": True, "required": True}},
                                  "custom": [{"key": "level", "label": "等级", "type": "choice",
                                              "options": ["A", "B"], "required": True},
                                             {"key": "visit", "label": "拜访日", "type": "date"}]})
    with pytest.raises(InputError, match="email"):
        rules.check_record(s2, {"name": "a", "phone": "13800000000", "custom": {"level": "A"}})
    with pytest.raises(InputError, match="level"):
        rules.check_record(s2, {"name": "a", "phone": "13800000000", "email": "a@b", "custom": {"level": "C"}})
    ok = rules.check_record(s2, {"name": " 王 ", "phone": "+86 138 0000 0000", "email": "a@b",
                                 "custom": {"level": "B", "visit": "2026-12-01"}})
    assert ok["name"] == "王" and ok["phone"] == "13800000000"
    for bad in ("12345", "2380013800", "138001380001", "abc", "", "+0123"):
        with pytest.raises(InputError):
            rules.normalise_phone(bad)
    for good, norm in (("010-8888 6666", "01088886666"), ("+1 415 555 0100", "+14155550100"),
                       ("8613800000000", "13800000000"), (13800000000, "13800000000")):
        assert rules.normalise_phone(good) == norm


# -- never over a cap ------------------------------------------------------------------------------------
STEPS = st.lists(st.tuples(st.sampled_from(["claim", "claim", "return", "recycle", "assign", "contact", "advance",
                                            "advance_day"]), st.integers(0, 2), st.lists(st.integers(0, 14),
                                                                                         min_size=1, max_size=5)),
                 min_size=3, max_size=60)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, hold=st.integers(1, 5), daily=st.integers(1, 5), rule=st.sampled_from(["claim", "both"]),
       protection=st.booleans())
def test_property_no_sequence_breaks_a_cap(tmp_path_factory, steps, hold, daily, rule, protection):
    store = ArchiveStore(tmp_path_factory.mktemp("cprop"), master_key=os.urandom(32))
    try:
        clock = ManualClock(T0)
        cu = Customers(store, clock)
        cu.run(lambda t: cu.update_settings(t, {"protection": protection}))
        members = ["m0", "m1", "m2"]
        pid = cu.run(lambda t: cu.add_pool(t, {"name": "p", "rule": rule, "members": members, "hold_cap": hold,
                                                "daily_cap": daily, "recycle_no_contact_s": 2 * 86400}))["id"]
        ids = [cu.run(lambda t: cu.add_customer(t, {"name": f"c{i}", "phone": f"139{i:08d}",
                                                    "company": f"co{i % 4}"}, by="t", pool=pid))["id"]
               for i in range(15)]
        owner: dict[str, str | None] = {c: None for c in ids}  # the oracle's view
        claims_today: dict[tuple[str, str], int] = {}
        for kind, m, picks in steps:
            member = members[m]
            chosen = [ids[i] for i in picks]
            day = datetime.fromtimestamp(clock.now_ms() / 1000, SH).date()
            if kind in ("claim", "assign"):
                out = cu.run(lambda t: cu.claim(t, pid, member, chosen, admin_assign=kind == "assign"))
                for c in out["claimed"]:
                    assert owner[c] is None, "claimed a customer someone holds"
                    owner[c] = member
                    if kind == "claim":
                        claims_today[(member, day)] = claims_today.get((member, day), 0) + 1
            elif kind == "return":
                out = cu.run(lambda t: cu.give_back(t, pid, member, chosen))
                for c in out["returned"]:
                    assert owner[c] == member
                    owner[c] = None
            elif kind == "recycle":
                for r in cu.run(cu.recycle):
                    owner[r["customer"]] = None
            elif kind == "contact":
                held = [c for c in chosen if owner[c] is not None]
                for c in held:
                    cu.run(lambda t: cu.contact(t, c, "visit", None, "t"))
            elif kind == "advance":
                clock.advance(picks[0] * 3 * 3600_000)
            else:
                clock.advance(DAY)
            # the caps, from the oracle's own counts
            for mm in members:
                assert sum(1 for o in owner.values() if o == mm) <= hold or rule == "assign"
            assert all(n <= daily for n in claims_today.values())
            if protection:
                holders: dict[str, set] = {}
                for i, c in enumerate(ids):
                    if owner[c] is not None:
                        holders.setdefault(f"co{i % 4}", set()).add(owner[c])
                assert all(len(h) == 1 for h in holders.values()), holders
        # the store agrees with the oracle, and no count is negative
        with store.app_read() as t:
            for mm in members:
                n = t.get("cu.holdn", app_key(pid, mm)) or 0
                assert n == sum(1 for o in owner.values() if o == mm) and n >= 0
            for c in ids:
                assert t.get("cu.cust", c.encode())["owner"] == owner[c]
                assert t.has("cu.inpool", app_key(pid, c)) == (owner[c] is None)
    finally:
        store.close()


def test_chat_times_equal_a_scan_of_the_stored_records(small_corpus, tmp_path):
    """The archive's side of P-3's contact clock: the newest one-to-one message with each
    customer, from the conversation index, against a scan of every stored record."""
    from tests.conftest import run_scrm

    data = tmp_path / "data"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(small_corpus / "batches"), check=True)
    store = ArchiveStore(data)
    try:
        want: dict[str, int] = {}
        for seq in store.record_seqs():
            r = store.get_record(seq)
            if r["conv"].startswith("p:"):
                for party in r["conv"][2:].split("|"):
                    if party.startswith(("wm", "wo")):
                        want[party] = max(want.get(party, 0), r["msgtime"])
        assert len(want) > 10
        assert Customers(store, ManualClock(T0)).chat_times() == want
    finally:
        store.close()


def test_company_fields_follow_the_settings(make):
    cu, clock, pid, ids = make(1, {"members": ["m1"]}, companies=["星辰科技"])
    comp = cu.run(lambda t: cu.update_company(t, "星辰科技", {"phone": "010-88886666", "website": "https://x.cn"}))
    assert comp["fields"] == {"phone": "010-88886666", "website": "https://x.cn"}
    with pytest.raises(InputError, match="not an enabled"):
        cu.run(lambda t: cu.update_company(t, "星辰科技", {"ceo": "x"}))
    cu.run(lambda t: cu.update_settings(t, {"company_fields": {"website": {"enabled": False},
                                                               "industry": {"required": True}}}))
    with pytest.raises(InputError, match="not an enabled"):
        cu.run(lambda t: cu.update_company(t, "星辰科技", {"website": "https://y.cn"}))
    with pytest.raises(InputError, match="industry"):
        cu.run(lambda t: cu.update_company(t, "星辰科技", {"phone": "010-1"}))
    assert cu.run(lambda t: cu.update_company(t, "星辰科技", {"industry": "软件"}))["fields"]["industry"] == "软件"
    with pytest.raises(InputError):
        rules.merge_settings(rules.default_settings(), {"company_fields": {"name": {"required": False}}})
    with pytest.raises(InputError):
        cu.run(lambda t: cu.update_company(t, "无此公司", {"phone": "1"}))
