"""The directory from WeCom's APIs: the fake WeCom serves a simulated enterprise's
``directory.json`` through the contact and chat-archive API shapes (dropping connections
now and then); ``scrm directory sync`` must rebuild what the APIs can tell, keep what
they cannot from the stored directory, and give the consent policy the same answers as
the file (the simulator's expected archive is the oracle)."""

from __future__ import annotations

import orjson

from scrm_fast.clock import ManualClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.fake import FakeWeCom
from scrm_fast.wecom.thread import serving
from tests.conftest import run_scrm

T0 = 1_702_000_000_000


def _fake(doc: dict) -> FakeWeCom:
    fake = FakeWeCom(ManualClock(T0))
    fake.serve_directory(doc)
    fake.s.drop_every = 7
    return fake


def _sync(data, base, corp, secret_file) -> None:
    run_scrm("directory", "sync", "--data", str(data), "--corp", corp, "--secret-file", str(secret_file),
             "--api-base", base, check=True)


def test_directory_from_wecom_matches_the_enterprise(small_corpus, tmp_path):
    truth = orjson.loads((small_corpus / "directory.json").read_bytes())
    fake = _fake(truth)
    secret = tmp_path / "secret"
    secret.write_text("contact-secret")
    data = tmp_path / "fresh"
    with serving(fake) as base:
        _sync(data, base, truth["corp"]["corpid"], secret)
    assert fake.s.reads > 20 and fake.s.reads // 7 >= 3  # connections were dropped and retried
    with ArchiveStore(data, readonly=True) as store:
        got = store.directory()
    assert got["departments"] == truth["departments"]
    emps = {e["userid"]: e for e in got["employees"]}
    resigned_with_customers = {u for c in truth["customers"] for u in c["follow_users"]
                               if any(e["userid"] == u and e["status"] == "resigned" for e in truth["employees"])}
    for e in truth["employees"]:
        if e["status"] == "active":
            assert emps[e["userid"]] == e
        elif e["userid"] in resigned_with_customers:  # known from get_unassigned_list, name not told
            g = emps[e["userid"]]
            assert (g["status"], g["resigned_at"], g["archived"]) == ("resigned", e["resigned_at"], e["archived"])
    custs = {c["external_userid"]: c for c in got["customers"]}
    assert set(custs) == {c["external_userid"] for c in truth["customers"] if c["follow_users"]}
    for c in truth["customers"]:
        if c["follow_users"]:
            assert sorted(custs[c["external_userid"]]["follow_users"]) == sorted(c["follow_users"])
            assert custs[c["external_userid"]]["name"] == c["name"]
    groups = {g["roomid"]: g for g in got["groups"]}
    assert set(groups) == {g["roomid"] for g in truth["groups"]}
    for g in truth["groups"]:
        mine = groups[g["roomid"]]
        assert (mine["name"], mine["owner"], mine["members"]) == (g["name"], g["owner"], g["members"])
    want = {(c["userid"], c["external_userid"], c["status"], c["time"]) for c in truth["consent"]}
    have = {(c["userid"], c["external_userid"], c["status"], c["time"]) for c in got["consent"]}
    assert want <= have and want  # every answer the enterprise has, asked for pair by pair


def test_synced_directory_gives_the_same_consent_decisions(small_corpus, tmp_path):
    """Imported once from the file, then refreshed from WeCom (the enterprise unchanged):
    ingesting the archive with it stores exactly what the simulator says consent allows."""
    truth = orjson.loads((small_corpus / "directory.json").read_bytes())
    secret = tmp_path / "secret"
    secret.write_text("contact-secret")
    data = tmp_path / "d"
    run_scrm("directory", "import", "--data", str(data), str(small_corpus / "directory.json"), check=True)
    fake = _fake(truth)
    with serving(fake) as base:
        _sync(data, base, truth["corp"]["corpid"], secret)
        # a group's owner changes at WeCom: the refresh records the change with its time
        g0 = truth["groups"][0]
        new_owner = next(e["userid"] for e in truth["employees"] if e["userid"] != g0["owner"])
        with ArchiveStore(data, readonly=True) as store:
            before = store.directory()
        fake.s.groups[g0["roomid"]] = new_owner
        fake.clock.set(T0 + 60_000)
        _sync(data, base, truth["corp"]["corpid"], secret)
    with ArchiveStore(data, readonly=True) as store:
        after = store.directory()
    g = next(x for x in after["groups"] if x["roomid"] == g0["roomid"])
    assert g["owner"] == new_owner and g["owner_changes"][-1]["owner"] == new_owner
    assert g["owner_changes"][:-1] == g0.get("owner_changes", [])
    assert {e["userid"]: e for e in before["employees"]} == {e["userid"]: e for e in truth["employees"]}
    # back to the enterprise's real owner history for the consent comparison
    fixed = {**after, "groups": [x if x["roomid"] != g0["roomid"] else {**x, "owner": g0["owner"],
                                                                         "owner_changes": g0.get("owner_changes", [])}
                                 for x in after["groups"]]}
    (tmp_path / "synced.json").write_bytes(orjson.dumps(fixed))
    d2 = tmp_path / "d2"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(d2), "--directory",
             str(tmp_path / "synced.json"), "--no-progress", str(small_corpus / "batches"), check=True)
    assert run_scrm("export", "--data", str(d2), check=True).stdout == (small_corpus / "expected.jsonl").read_bytes()


def test_wrong_secret_is_a_clear_error(small_corpus, tmp_path):
    truth = orjson.loads((small_corpus / "directory.json").read_bytes())
    fake = _fake(truth)
    secret = tmp_path / "secret"
    secret.write_text("not-the-secret")
    with serving(fake) as base:
        p = run_scrm("directory", "sync", "--data", str(tmp_path / "d"), "--corp", truth["corp"]["corpid"],
                     "--secret-file", str(secret), "--api-base", base)
    err = p.stderr.decode()
    assert p.returncode != 0 and "40001" in err and "Traceback" not in err, err
    assert fake.s.calls.count("gettoken") == 1  # a wrong secret is never retried in a loop


def test_sync_refreshes_the_directory_before_its_round(small_corpus, tmp_path):
    """`scrm sync --contacts-secret-file`: the directory from WeCom first, then the
    archive judged with it — what the simulator says consent allows."""
    from scrm_fast.wecom.standin import build_standin, feed_items, write_feed

    truth = orjson.loads((small_corpus / "directory.json").read_bytes())
    feed = tmp_path / "feed"
    write_feed(feed, feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    (tmp_path / "contacts").write_text("contact-secret")
    (tmp_path / "archive").write_text("archive-secret")
    data = tmp_path / "d"
    run_scrm("directory", "import", "--data", str(data), str(small_corpus / "directory.json"), check=True)
    fake = _fake(truth)
    with serving(fake) as base:
        p = run_scrm("sync", "--data", str(data), "--corp", truth["corp"]["corpid"], "--secret-file",
                     str(tmp_path / "archive"), "--keys", str(small_corpus / "keys"),
                     "--sdk", str(build_standin(tmp_path / "sdk")), "--once", "--no-media", "--json",
                     "--contacts-secret-file", str(tmp_path / "contacts"), "--api-base", base,
                     env={"STANDIN_SDK_DATA": str(feed)}, check=True)
    assert orjson.loads(p.stdout)["directory_refreshes"] == 1
    assert "directory from WeCom" in p.stderr.decode()
    with ArchiveStore(data, readonly=True) as store:
        assert store.directory()["source"]["wecom"]
    assert run_scrm("export", "--data", str(data), check=True).stdout == (small_corpus / "expected.jsonl").read_bytes()
    # WeCom's contact APIs unreachable: reported, and the archive sync goes on
    p = run_scrm("sync", "--data", str(data), "--corp", truth["corp"]["corpid"], "--secret-file",
                 str(tmp_path / "archive"), "--keys", str(small_corpus / "keys"),
                 "--sdk", str(build_standin(tmp_path / "sdk")), "--once", "--no-media", "--json",
                 "--contacts-secret-file", str(tmp_path / "contacts"), "--api-base", "http://127.0.0.1:9",
                 env={"STANDIN_SDK_DATA": str(feed)}, check=True)
    assert "directory refresh failed" in p.stderr.decode()
