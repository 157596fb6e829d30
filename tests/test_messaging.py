"""Mass messaging quotas (rules Q-0 … Q-6, Q-8): the ledger's limits at, below and above,
in both profiles and across the tenant's midnight and month; content checks; a property
test of random reserve / settle / release / cancel / clock steps; sends against the fake
WeCom through their states; a simulated month after which the ledger equals WeCom's counts."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.messaging import quota
from control.messaging.sends import Sends, check_content, one_month_after
from scrm_fast.clock import ManualClock
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore

SH = quota.TZ
T0 = int(datetime(2026, 12, 1, 10, 0, tzinfo=SH).timestamp() * 1000)
DAY = 86400_000


@pytest.fixture
def store(tmp_path):
    s = ArchiveStore(tmp_path / "d", master_key=os.urandom(32))
    yield s
    s.close()


def reserve(store, recips, kind, now, group=False):
    with store.app_write() as t:
        return quota.reserve(t, recips, kind, now, group)


# -- Q-1 … Q-3 and Q-0 ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,limit,rule", [("member", 1, "Q-1"), ("enterprise", 4, "Q-2")])
def test_limits_at_below_above(store, kind, limit, rule):
    for i in range(limit + 2):
        ok, refused = reserve(store, ["wmA"], kind, T0 + i * 60_000)
        if i < limit:
            assert ok == ["wmA"]
        else:
            assert ok == [] and refused[0]["rule"] == rule


def test_q2_counted_apart_from_q1(store):
    assert reserve(store, ["wmA"], "member", T0)[0] == ["wmA"]
    for i in range(4):  # the enterprise's four use none of the member's one
        assert reserve(store, ["wmA"], "enterprise", T0 + i)[0] == ["wmA"]
    assert reserve(store, ["wmA"], "member", T0)[1][0]["rule"] == "Q-1"


def test_q3_groups(store):
    assert reserve(store, ["wrG"], "member", T0, group=True)[0] == ["wrG"]
    assert reserve(store, ["wrG"], "member", T0, group=True)[1][0]["rule"] == "Q-3"
    for _ in range(4):
        reserve(store, ["wrG"], "enterprise", T0, group=True)
    assert reserve(store, ["wrG"], "enterprise", T0, group=True)[1][0]["rule"] == "Q-3"


def test_day_and_month_in_the_tenant_zone(store):
    late = int(datetime(2026, 12, 31, 23, 59, tzinfo=SH).timestamp() * 1000)
    assert reserve(store, ["wmA"], "member", late)[0] == ["wmA"]
    assert reserve(store, ["wmA"], "member", late + 59_000)[0] == []
    assert reserve(store, ["wmA"], "member", late + 60_000)[0] == ["wmA"]  # 00:00 Shanghai = 16:00 UTC
    for i in range(4):
        reserve(store, ["wmB"], "enterprise", late - i)
    assert reserve(store, ["wmB"], "enterprise", late)[0] == []
    assert reserve(store, ["wmB"], "enterprise", late + 60_000)[0] == ["wmB"]  # a new month


def test_q0_daily_total_profile(store):
    with store.app_write() as t:
        quota.set_profile(t, "daily-total")
    assert reserve(store, ["wmA"], "enterprise", T0)[0] == ["wmA"]
    r = reserve(store, ["wmA"], "member", T0)[1][0]
    assert r["rule"] == "Q-0"
    assert reserve(store, ["wmA"], "enterprise", T0 + DAY)[0] == ["wmA"]
    # the ledger answers either: back to seed, the member's one of today is still free
    with store.app_write() as t:
        quota.set_profile(t, "seed")
    assert reserve(store, ["wmA"], "member", T0 + DAY)[0] == ["wmA"]
    with pytest.raises(InputError):
        with store.app_write() as t:
            quota.set_profile(t, "weekly")


def test_release_gives_back_only_its_period(store):
    reserve(store, ["wmA"], "member", T0)
    with store.app_write() as t:
        quota.release(t, ["wmA"], "member", T0)
    assert reserve(store, ["wmA"], "member", T0)[0] == ["wmA"]
    with store.app_write() as t:  # given back the next day: yesterday's count is not today's
        quota.release(t, ["wmA"], "member", T0)
        quota.release(t, ["wmA"], "member", T0 - DAY)
        assert quota.usage(t, "wmA", T0)["member_today"] == 0


# -- content and groups ------------------------------------------------------------------------
def test_q4_content():
    assert check_content("x" * 4000, [])[0] == "x" * 4000
    with pytest.raises(InputError, match="Q-4"):
        check_content("x" * 4001, [])
    with pytest.raises(InputError, match="bytes"):
        check_content("中" * 1334, [])  # under 4000 characters, over WeCom's 4000 bytes
    img = {"msgtype": "image", "image": {"media_id": "m"}}
    assert len(check_content("", [img] * 9)[1]) == 9
    with pytest.raises(InputError, match="Q-4"):
        check_content("", [img] * 10)
    with pytest.raises(InputError, match="types"):
        check_content("hi", [{"msgtype": "voice", "voice": {}}])
    with pytest.raises(InputError, match="title"):
        check_content("hi", [{"msgtype": "link", "link": {"title": "a" * 129, "url": "https://x"}}])
    with pytest.raises(InputError):
        check_content("", [])


def test_q5_member_group_send_at_most_200(store):
    sends = Sends(store, ManualClock(T0))
    base = {"kind": "member", "sender": "zhang", "text": "hi"}
    with store.app_write() as t:
        out = sends.create(t, {**base, "groups": [f"wr{i}" for i in range(200)]}, {}, "t")
        assert len(out["recipients"]) == 200
        with pytest.raises(InputError, match="Q-5"):
            sends.create(t, {**base, "groups": [f"wr{i}" for i in range(201)]}, {}, "t")


def test_q8_one_month_after():
    at = int(datetime(2026, 1, 31, 9, 0, tzinfo=SH).timestamp() * 1000)
    assert datetime.fromtimestamp(one_month_after(at) / 1000, SH).date().isoformat() == "2026-02-28"
    assert one_month_after(T0) == int(datetime(2027, 1, 1, 10, 0, tzinfo=SH).timestamp() * 1000)


# -- never over a limit, never negative -------------------------------------------------------------------
STEPS = st.lists(st.tuples(st.sampled_from(["reserve_m", "reserve_e", "release", "release", "settle", "advance_h",
                                            "advance_d", "profile"]),
                           st.lists(st.integers(0, 4), min_size=1, max_size=4)), min_size=3, max_size=80)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_property_counts_stay_within_limits(tmp_path_factory, steps):
    store = ArchiveStore(tmp_path_factory.mktemp("q"), master_key=os.urandom(32))
    try:
        now = T0
        profile = "seed"
        held: list[tuple[str, str, int]] = []  # the oracle: (recipient, kind, reserved at)
        for kind, picks in steps:
            recips = [f"wm{i}" for i in dict.fromkeys(picks)]
            if kind in ("reserve_m", "reserve_e"):
                k = "member" if kind == "reserve_m" else "enterprise"
                day0, month0 = quota.periods(now)

                def counts(rid, held=held, day0=day0, month0=month0):
                    mine = [(kk, quota.periods(at)) for r, kk, at in held if r == rid]
                    return (sum(1 for kk, (d, _) in mine if kk == "member" and d == day0),
                            sum(1 for kk, (_, m) in mine if kk == "enterprise" and m == month0),
                            sum(1 for kk, (d, _) in mine if kk == "enterprise" and d == day0))
                before = {r: counts(r) for r in recips}
                ok, refused = reserve(store, recips, k, now)
                for r in ok:  # granted only below the limit of the profile in force
                    md, em, ed = before[r]
                    if profile == "daily-total":
                        assert md + ed < 1
                    elif k == "member":
                        assert md < 1
                    else:
                        assert em < 4
                for x in refused:  # refused only at the limit
                    md, em, ed = before[x["recipient"]]
                    assert (md + ed >= 1) if profile == "daily-total" else (md >= 1 if k == "member" else em >= 4)
                held += [(r, k, now) for r in ok]
            elif kind == "release" and held:  # cancelled, failed, not sendable
                r, k, at = held.pop(picks[0] % len(held))
                with store.app_write() as t:
                    quota.release(t, [r], k, at)
            elif kind == "settle" and held:  # WeCom sent it now: the count moves to now's period
                i = picks[0] % len(held)
                r, k, at = held[i]
                with store.app_write() as t:
                    quota.move(t, [r], k, at, now)
                held[i] = (r, k, now)
            elif kind == "advance_h":
                now += picks[0] * 3 * 3600_000
            elif kind == "advance_d":
                now += DAY
            else:
                profile = "daily-total" if profile == "seed" else "seed"
                with store.app_write() as t:
                    quota.set_profile(t, profile)
            day, month = quota.periods(now)
            for i in range(5):
                rid = f"wm{i}"
                mine = [(k, quota.periods(at)) for r, k, at in held if r == rid]
                md = sum(1 for k, (d, _) in mine if k == "member" and d == day)
                em = sum(1 for k, (_, m) in mine if k == "enterprise" and m == month)
                ed = sum(1 for k, (d, _) in mine if k == "enterprise" and d == day)
                with store.app_read() as t:
                    u = quota.usage(t, rid, now)
                assert (u["member_today"], u["enterprise_this_month"], u["enterprise_today"]) == (md, em, ed)
                assert min(md, em, ed) >= 0
    finally:
        store.close()


# -- Q-7 moments ------------------------------------------------------------------------------------
def test_q7_content():
    from control.messaging.moments import check_moment

    img = {"msgtype": "image", "image": {"media_id": "m", "size": 1 << 20}}
    assert len(check_moment("x" * 2000, [img] * 9)[1]) == 9
    for text, atts, match in (("x" * 2001, [], "2000"), ("", [img] * 10, "9 images"),
                              ("hi", [img, {"msgtype": "link", "link": {"title": "t", "url": "u"}}], "one kind"),
                              ("hi", [{"msgtype": "video", "video": {"size": 1, "duration": 31}}], "30 seconds"),
                              ("hi", [{"msgtype": "video", "video": {"size": 1}}] * 2, "one video"),
                              ("hi", [{"msgtype": "image", "image": {"size": 11 << 20}}], "10 MB"),
                              ("", [], "text or")):
        with pytest.raises(InputError, match=match):
            check_moment(text, atts)


def test_q7_one_post_a_day_per_customer_and_ten_a_minute(store):
    from control.messaging.moments import Moments
    from scrm_fast.errors import ConflictError

    clock = ManualClock(T0)
    mo = Moments(store, clock)
    directory = {"customers": [{"external_userid": f"wm{i}", "follow_users": ["zhang" if i < 3 else "li"]}
                               for i in range(6)]}
    with store.app_write() as t:
        first = mo.create(t, {"senders": ["zhang"], "text": "新品上市"}, directory, "t")
    assert first["reached"] == ["wm0", "wm1", "wm2"] and first["refused"] == []
    with store.app_write() as t:
        both = mo.create(t, {"senders": ["zhang", "li"], "text": "再来一条"}, directory, "t")
    assert both["reached"] == ["wm3", "wm4", "wm5"]
    assert {r["recipient"] for r in both["refused"]} == {"wm0", "wm1", "wm2"}
    assert {r["rule"] for r in both["refused"]} == {"Q-7"}
    clock.advance(DAY)
    for i in range(10):  # ten a minute for the enterprise, counted here before WeCom is asked
        with store.app_write() as t:
            mo.create(t, {"senders": ["zhang"], "text": f"第{i}条"}, directory, "t")
    with pytest.raises(ConflictError, match="10 moments a minute"):
        with store.app_write() as t:
            mo.create(t, {"senders": ["zhang"], "text": "多了"}, directory, "t")
    clock.advance(60_000)
    with store.app_write() as t:
        assert mo.create(t, {"senders": ["zhang"], "text": "下一分钟"}, directory, "t")["reached"] == []


# -- Q-9 tag invites, Q-11 the de-duplication window ---------------------------------------------------
def test_q9_q11_tag_invites(store):
    from control.messaging.sends import create_invite

    clock = ManualClock(T0)
    sends = Sends(store, clock)
    with store.app_write() as t:
        for i in range(12):
            t.put("cu.cust", f"c{i}".encode(), {"id": f"c{i}", "external_userid": f"wmT{i}", "owner": "zhang",
                                                "tags": ["VIP"] if i < 10 else ["普通"]})
            t.put("cu.ext", f"wmT{i}".encode(), f"c{i}")  # the WeCom-id index the service keeps
    old = [{"id": f"wmOld{i}", "join_time": 1000 + i} for i in range(500)]
    directory = {"groups": [
        {"roomid": "G1", "members": [{"id": f"wmX{i}", "join_time": T0 - i} for i in range(197)]
         + [{"id": "wmT0", "join_time": T0}]},
        {"roomid": "G2", "members": []},
        {"roomid": "G9", "members": old[:1] + [{"id": "wmT9", "join_time": 5}]
         + [{"id": f"wmY{i}", "join_time": T0 - i} for i in range(2200)]}]}
    for _ in range(4):  # wmT5 had its four enterprise sends this month
        with store.app_write() as t:
            quota.reserve(t, ["wmT5"], "enterprise", T0, False)
    doc = {"title": "VIP 客户专属群", "content": "扫码进群领福利", "tags": ["VIP"],
           "groups": [{"chat_id": "G1", "qr_media_id": "qr1"}, {"chat_id": "G2", "qr_media_id": "qr2"}]}
    with store.app_write() as t:
        inv = create_invite(sends, t, doc, directory, "boss")
    by_group = {p["group"]: p["accepted"] for p in inv["sends"]}
    assert by_group["G1"] == ["wmT1", "wmT2"]  # 198 members: room for two, then the next QR code
    assert sorted(by_group["G2"]) == sorted(["wmT3", "wmT4", "wmT6", "wmT7", "wmT8", "wmT9"])
    rules_ = {r["recipient"]: r["rule"] for r in inv["refused"]}
    assert rules_ == {"wmT0": "Q-9", "wmT5": "Q-2"}
    # in a group of 2,202 the de-duplication sees only the 2,000 most recently active
    with store.app_write() as t:
        inv2 = create_invite(sends, t, {**doc, "groups": [{"chat_id": "G9", "qr_media_id": "qr9"},
                                                          {"chat_id": "G2", "qr_media_id": "qr2"}]}, directory, "boss")
    assert not any(r["recipient"] == "wmT9" and r["rule"] == "Q-9" for r in inv2["refused"])
    for bad in ({**doc, "title": "t" * 21}, {**doc, "content": "c" * 51}, {**doc, "tags": [f"t{i}" for i in range(11)]},
                {**doc, "groups": []}, {**doc, "match": "some"}):
        with pytest.raises(InputError):
            with store.app_write() as t:
                create_invite(sends, t, bad, directory, "boss")


def test_materials_attach_and_count_shares(store):
    from control.messaging import materials

    sends = Sends(store, ManualClock(T0))
    with store.app_write() as t:
        art = materials.add(t, {"kind": "article", "title": "年终盘点", "url": "https://x.cn/a", "category": "资讯"},
                            "boss", T0)
        script = materials.add(t, {"kind": "script", "title": "开场白", "text": "您好，我是小王。",
                                   "scope": ["zhang"]}, "boss", T0)
        vid = materials.add(t, {"kind": "video", "title": "产品介绍", "media_id": "mv1"}, "boss", T0)
        s = sends.create(t, {"kind": "member", "sender": "zhang", "customers": ["wm1"], "text": "看看这个",
                             "attachments": [{"material": art["id"]}, {"material": script["id"]},
                                             {"material": vid["id"]}]}, {}, "t")
        assert s["text"] == "看看这个\n您好，我是小王。"
        assert [a["msgtype"] for a in s["attachments"]] == ["link", "video"]
        assert s["attachments"][0]["link"]["url"] == "https://x.cn/a"
        assert [materials.get(t, m["id"])["shares"] for m in (art, script, vid)] == [1, 1, 1]
        with pytest.raises(InputError, match="not shared"):  # the script is zhang's only
            sends.create(t, {"kind": "member", "sender": "li", "customers": ["wm2"], "text": "x",
                             "attachments": [{"material": script["id"]}]}, {}, "t")
        for bad in ({"kind": "article", "title": "t"}, {"kind": "video", "title": "t"}, {"kind": "x"},
                    {"kind": "article", "title": "t" * 65, "url": "u"}):
            with pytest.raises(InputError):
                materials.add(t, bad, "boss", T0)


def test_recipients_by_filter(store):
    sends = Sends(store, ManualClock(T0))
    with store.app_write() as t:
        for i in range(8):
            t.put("cu.cust", f"c{i}".encode(), {
                "id": f"c{i}", "external_userid": f"wmF{i}", "owner": "zhang" if i < 4 else "li",
                "gender": "女" if i % 2 else "男", "source": "表格导入", "status": "跟进中",
                "tags": ["VIP"] if i < 6 else []})
            t.put("cu.ext", f"wmF{i}".encode(), f"c{i}")
        t.put("cu.opp", b"o1", {"id": "o1", "customer": "c1", "stage": "商务谈判", "owner": "zhang"})
        cases = [({"employees": ["li"]}, {"wmF4", "wmF5", "wmF6", "wmF7"}),
                 ({"gender": "女", "tags_any": ["VIP"]}, {"wmF1", "wmF3", "wmF5"}),
                 ({"employees": ["zhang"], "stage": "商务谈判"}, {"wmF1"}),
                 ({"tags_all": ["VIP"], "gender": "男"}, {"wmF0", "wmF2", "wmF4"})]
        for f, want in cases:  # the brute force: each case's set written out above
            assert set(sends._filter(t, f)) == want, f
            p = sends.preview(t, {"kind": "enterprise", "filter": f, "text": "x"}, {})
            assert p["reach"] == len(want), f
        with pytest.raises(InputError):
            sends.preview(t, {"kind": "enterprise", "filter": {"colour": "red"}, "text": "x"}, {})


def test_q11_activity_read_from_the_archive(small_corpus, tmp_path):
    """Who was active lately in a group, from the conversation index, against a scan of every
    stored record of it."""
    from control.messaging.sends import last_active
    from tests.conftest import run_scrm

    data = tmp_path / "data"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(small_corpus / "batches"), check=True)
    st = ArchiveStore(data)
    try:
        by_room: dict[str, dict[str, int]] = {}
        for seq in st.record_seqs():
            r = st.get_record(seq)
            if r["conv"].startswith("g:"):
                room = by_room.setdefault(r["conv"][2:], {})
                room[r["from"]] = max(room.get(r["from"], 0), r["msgtime"])
        busiest = max(by_room, key=lambda k: len(by_room[k]))
        assert len(by_room[busiest]) > 3
        assert last_active(st, busiest) == by_room[busiest]
    finally:
        st.close()
