"""Consent rules C-0 … C-12 through the real batch call: a table with one case per rule
row (both switch positions where the rule depends on it), a property test against the
message-by-message reference, the simulated enterprise end to end, and the consent APIs
against a fake WeCom server on loopback."""

from __future__ import annotations

import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrm_fast import ChatBatch, Cipher, ConsentPolicy, KeyRing, _core, decode_batch
from scrm_fast.consent import build_policy, refresh_consent
from scrm_fast.consent_reference import ConsentReference
from scrm_fast.storage import ArchiveStore
from tests.conftest import run_scrm

T0 = 1_700_000_000_000
PEM = _core.generate_private_key(2048)
PUB = _core.public_key_of(PEM)
KEYS = KeyRing.from_pems({1: PEM})

# emp, boss: archived employees; plain: an employee whose chats are not archived
DIRECTORY = {
    "corp": {"corpid": "wwtest", "service_requires_consent": False},
    "employees": [{"userid": "emp", "archived": True}, {"userid": "boss", "archived": True},
                  {"userid": "plain", "archived": False}],
    "groups": [
        {"roomid": "wrOwner", "owner": "emp", "members": [{"id": "emp"}, {"id": "wmA"}, {"id": "wmNo"}]},
        {"roomid": "wrMember", "owner": "plain", "members": [{"id": "plain"}, {"id": "emp"}, {"id": "wmNo"}]},
        {"roomid": "wrTransfer", "owner": "plain", "owner_changes": [{"owner": "boss", "time": T0 + 500}],
         "members": [{"id": "plain"}, {"id": "boss"}, {"id": "wmNo"}]},
        {"roomid": "wrNone", "owner": "plain", "members": [{"id": "plain"}, {"id": "wmA"}]},
    ],
    # wmNo pressed "disagree" at T0 + 100
    "consent": [{"userid": "emp", "external_userid": "wmNo", "status": "Disagree", "time": T0 + 100}],
}


def msg(i: int, sender: str, to: list[str], room: str = "", t: int = 1000, msgtype: str = "text") -> dict:
    m = {"msgid": f"m{i}", "action": "send", "from": sender, "tolist": to, "roomid": room, "msgtime": T0 + t,
         "msgtype": msgtype}
    m[msgtype] = {"content": f"hello {i}"} if msgtype == "text" else {"userid": sender, f"{msgtype}_time": T0 + t}
    return m


def run_policy(messages: list[dict], policy: ConsentPolicy, start: int = 1):
    items = [(start + i, m["msgid"], 1, orjson.dumps(m)) for i, m in enumerate(messages)]
    d = decode_batch(ChatBatch.parse(_core.seal_response({1: PUB}, items)), KEYS, Cipher.open(), policy=policy)
    kept = {msgpack.unpackb(v)["msgid"]: msgpack.unpackb(v)["rule"] for _, v in d.records()}
    return d, kept


def policy_for(switch: bool, directory: dict = DIRECTORY) -> ConsentPolicy:
    doc = {**directory, "corp": {**directory["corp"], "service_requires_consent": switch}}
    groups = [(g["roomid"], g["owner"], [(c["time"], c["owner"]) for c in g.get("owner_changes", [])],
               [m["id"] for m in g["members"]]) for g in doc["groups"]]
    return ConsentPolicy(switch, ["emp", "boss"], ["emp", "boss", "plain"], groups,
                         [(c["external_userid"], c["time"], c["status"]) for c in doc["consent"]], [], [])


# (case, switch, messages before the judged one, the judged message, keep, rule, event kind)
CASES = [
    ("C-0 no archived employee", False, [], msg(1, "plain", ["wmA"]), False, "C-0", None),
    ("C-0 employees only", True, [], msg(1, "emp", ["plain"]), True, "C-0", None),
    ("C-1 agree, switch off", False, [], msg(1, "emp", ["wmA"]), True, "C-1", None),
    ("C-1 agree, switch on", True, [], msg(1, "wmA", ["emp"]), True, "C-1", None),
    ("C-2 disagree, switch off", False, [], msg(1, "emp", ["wmNo"]), False, "C-2", None),
    ("C-3 disagree, switch on", True, [], msg(1, "wmNo", ["emp"]), False, "C-3", "block_chat"),
    ("C-4 archived owner", False, [], msg(1, "wmA", ["emp"], "wrOwner"), True, "C-4", None),
    ("C-4 new joiner defaults to agree", True, [], msg(1, "wmNew", ["emp"], "wrOwner"), True, "C-4", None),
    ("C-5 member has spoken", False, [msg(0, "emp", ["plain"], "wrMember", 900)],
     msg(1, "wmA", ["emp"], "wrMember"), True, "C-5", None),
    ("C-5 the first words themselves", True, [], msg(1, "emp", ["plain"], "wrMember"), True, "C-5", None),
    ("C-6 member has not spoken", False, [], msg(1, "wmA", ["emp"], "wrMember"), False, "C-6", None),
    ("C-7 after transfer to archived admin", True, [], msg(1, "wmA", ["boss"], "wrTransfer", 600), True,
     "C-7", None),
    ("C-7 before the transfer (not spoken)", False, [], msg(1, "wmA", ["boss"], "wrTransfer", 400), False,
     "C-6", None),
    ("C-8 owner, disagree, switch off", False, [], msg(1, "wmNo", ["emp"], "wrOwner"), False, "C-8", None),
    ("C-8 others' messages still kept", False, [], msg(1, "emp", ["wmNo"], "wrOwner"), True, "C-4", None),
    ("C-9 owner, disagree, switch on", True, [], msg(1, "wmNo", ["emp"], "wrOwner"), False, "C-9",
     "remove_from_group"),
    ("C-10 member spoke, disagree, off", False, [msg(0, "emp", ["plain"], "wrMember", 900)],
     msg(1, "wmNo", ["emp"], "wrMember"), False, "C-10", None),
    ("C-10 member spoke, disagree, on", True, [msg(0, "emp", ["plain"], "wrMember", 900)],
     msg(1, "wmNo", ["emp"], "wrMember"), False, "C-10", None),
    ("C-11 member silent, disagree, off", False, [], msg(1, "wmNo", ["emp"], "wrMember"), False, "C-11", None),
    ("C-11 member silent, disagree, on", True, [], msg(1, "wmNo", ["emp"], "wrMember"), False, "C-11", None),
    ("C-12 transferred, disagree, off", False, [], msg(1, "wmNo", ["boss"], "wrTransfer", 600), False, "C-12",
     None),
    ("C-12 transferred, disagree, on", True, [], msg(1, "wmNo", ["boss"], "wrTransfer", 600), False, "C-12",
     "remove_from_group"),
    ("C-0 group without archived employee", False, [], msg(1, "wmA", ["plain"], "wrNone"), False, "C-0", None),
    ("consent record always kept", True, [], msg(1, "wmNo", ["emp"], msgtype="disagree"), True, "C-consent", None),
]


@pytest.mark.parametrize("case,switch,before,judged,keep,rule,event", CASES, ids=[c[0] for c in CASES])
def test_rule_table(case, switch, before, judged, keep, rule, event):
    d, kept = run_policy([*before, judged], policy_for(switch))
    if keep:
        assert kept.get(judged["msgid"]) == rule
    else:
        assert judged["msgid"] not in kept
        assert d.dropped_by_rule.get(rule, 0) >= 1
    events = [msgpack.unpackb(v) for _, v in d.events()]
    if event is None:
        assert events == []
    else:
        assert [(e["kind"], e["rule"], e["customer"]) for e in events] == [(event, rule, judged["from"]
                                                                             if judged["from"].startswith("wm")
                                                                             else judged["tolist"][0])]
        assert events[0]["since"] == T0 + 100
    # the reference agrees on every case
    ref = ConsentReference({**DIRECTORY, "corp": {"service_requires_consent": switch}})
    for m in before:
        ref.judge(m)
    assert ref.judge(judged) == (keep, rule)


def test_consent_change_in_stream_is_judged_at_msgtime():
    p = policy_for(False)
    _, kept = run_policy([msg(1, "emp", ["wmA"], t=10), msg(2, "wmA", ["emp"], t=20, msgtype="disagree"),
                          msg(3, "emp", ["wmA"], t=30), msg(4, "wmA", ["emp"], t=40, msgtype="agree")], p)
    assert kept == {"m1": "C-1", "m2": "C-consent", "m4": "C-consent"}
    # state carries over to the next batch; a message before the change keeps its verdict
    _, kept2 = run_policy([msg(5, "emp", ["wmA"], t=35), msg(6, "emp", ["wmA"], t=50)], p, start=10)
    assert kept2 == {"m6": "C-1"}


def test_seen_names_every_item_in_seq_order():
    """A batch's ``seen`` entries (stored ``S``, dropped by consent ``D``, quarantined ``Q``)
    come in seq order, whatever their fates: the store appends them past the stored seqs."""
    from scrm_fast.storage import seq_key

    fates = {1: b"S", 2: b"D", 0: b"Q"}  # by seq % 3: C-1 kept, C-2 dropped, no key for its version
    items = [(i, f"m{i}", 9 if i % 3 == 0 else 1,
              orjson.dumps(msg(i, "emp", ["wmNo" if i % 3 == 2 else "wmA"], t=1000 + i))) for i in range(1, 13)]
    d = decode_batch(ChatBatch.parse(_core.seal_response({1: PUB, 9: PUB}, items)), KEYS, Cipher.open(),
                     policy=policy_for(False))
    assert (d.stored, d.dropped, d.quarantined) == (4, 4, 4)
    assert d.seen() == [(seq_key(i), fates[i % 3]) for i in range(1, 13)]


def test_batches_decrypted_out_of_order_and_judged_in_order_equal_decode_batch():
    """The ingest decrypts batches ahead (``decrypt_batch``, any order) and judges them in
    arrival order (``judge_batch``): the verdicts are those of ``decode_batch`` one batch
    after another, even when a consent change in the first decides the second."""
    first = [msg(1, "emp", ["wmA"], t=10), msg(2, "wmA", ["emp"], t=20, msgtype="disagree"),
             msg(3, "emp", ["wmA"], t=30)]
    second = [msg(4, "emp", ["wmA"], t=40), msg(5, "wmA", ["emp"], t=45, msgtype="agree"),
              msg(6, "emp", ["wmA"], t=50)]

    def batch(messages, start):
        items = [(start + i, m["msgid"], 1, orjson.dumps(m)) for i, m in enumerate(messages)]
        return ChatBatch.parse(_core.seal_response({1: PUB}, items))

    def shapes(d):
        return (d.records(), d.quarantine(), d.seen(), d.consent_entries(), d.events(), d.kept_by_rule,
                d.dropped_by_rule, d.audit_batch().audits())

    b1, b2 = batch(first, 1), batch(second, 10)
    p = policy_for(False)
    want = [shapes(decode_batch(b, KEYS, Cipher.open(), now_ms=7, policy=p, audit=True)) for b in (b1, b2)]
    assert want[1][5] == {"C-consent": 1, "C-1": 1}, "the first batch's disagree decides the second's m4"

    q = policy_for(False)
    d2 = _core.decrypt_batch(b2, KEYS, Cipher.open(), now_ms=7)  # the later batch first
    d1 = _core.decrypt_batch(b1, KEYS, Cipher.open(), now_ms=7)
    got = [shapes(_core.judge_batch(d, q, True)) for d in (d1, d2)]
    assert got == want
    with pytest.raises(ValueError, match="judged already"):
        _core.judge_batch(d1, q)


# -- property test ---------------------------------------------------------------------
PEOPLE = ["emp", "boss", "plain", "wmA", "wmNo", "wmB", "woC"]
ROOMS = ["", "", "wrOwner", "wrMember", "wrTransfer", "wrNone", "wrUnknown"]


@st.composite
def streams(draw):
    n = draw(st.integers(1, 25))
    out = []
    t = 0
    for i in range(n):
        t += draw(st.integers(0, 200))
        kind = draw(st.sampled_from(["text"] * 6 + ["agree", "disagree"]))
        room = "" if kind != "text" else draw(st.sampled_from(ROOMS))
        sender = draw(st.sampled_from(PEOPLE))
        to = draw(st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3, unique=True))
        out.append(msg(i, sender, [x for x in to if x != sender] or ["emp"], room, t, kind))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return out, cuts, draw(st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_stored_set_equals_reference(stream):
    messages, cuts, switch = stream
    policy = policy_for(switch)
    ref = ConsentReference({**DIRECTORY, "corp": {"service_requires_consent": switch}})
    expected = {m["msgid"]: r for m in messages for k, r in [ref.judge(m)] if k}
    got = {}
    bounds = [0, *cuts, len(messages)]
    for a, b in zip(bounds, bounds[1:], strict=False):  # the stream split into batches
        if a < b:
            got.update(run_policy(messages[a:b], policy, start=a + 1)[1])
    assert got == expected


# -- the simulated enterprise ----------------------------------------------------------
@pytest.mark.parametrize("switch", ["off", "on"])
def test_simulated_enterprise_matches_archivable_truth(tmp_path, switch):
    sim = tmp_path / "sim"
    # (C-12 is rare: 1–5 in 4,000 messages; seed 32 has it under both switches)
    run_scrm("simulate", "--out", str(sim), "--messages", "4000", "--seed", "32", "--consent-switch", switch,
             check=True)
    data = tmp_path / "data"
    proc = run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(data), "--directory",
                    str(sim / "directory.json"), "--json", "--no-progress", str(sim / "batches"), check=True)
    s = orjson.loads(proc.stdout)
    rules = orjson.loads((sim / "expected_rules.json").read_bytes())
    assert s["consent_applied"] is True
    assert s["kept_by_rule"] == rules["kept_by_rule"] and s["dropped_by_rule"] == rules["dropped_by_rule"]
    # every rule row shows up in a 4,000-message enterprise
    seen_rules = set(rules["kept_by_rule"]) | set(rules["dropped_by_rule"])
    want = {"C-0", "C-1", "C-4", "C-5", "C-6", "C-7", "C-10", "C-11", "C-12"}
    want |= {"C-3", "C-9"} if switch == "on" else {"C-2", "C-8"}
    assert want <= seen_rules, want - seen_rules
    assert run_scrm("export", "--data", str(data), check=True).stdout == (sim / "expected.jsonl").read_bytes()
    # the human summary prints the drops per rule
    text = run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(tmp_path / "d2"), "--directory",
                    str(sim / "directory.json"), "--no-progress", str(sim / "batches"), check=True).stdout.decode()
    assert "dropped by consent" in text and "C-6" in text
    # idempotent: dropped messages are remembered and skipped before RSA too
    again = orjson.loads(run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(data), "--json",
                                  "--no-progress", str(sim / "batches"), check=True).stdout)
    assert again["ingested"] == 0 and again["duplicates_skipped"] == 4000 and again["dropped_by_consent"] == 0
    counts = orjson.loads(run_scrm("consent", "rules", "--data", str(data), check=True).stdout)
    assert counts["dropped"] == rules["dropped_by_rule"]
    events = [orjson.loads(x) for x in run_scrm("consent", "events", "--data", str(data), check=True)
              .stdout.splitlines()]
    if switch == "on":
        assert {e["rule"] for e in events} <= {"C-3", "C-9", "C-12"} and events
        assert all({"time", "employee", "customer", "roomid", "rule", "kind"} <= e.keys() for e in events)
        keys = {(e["rule"], e["employee"], e["customer"], e["roomid"], e["since"]) for e in events}
        assert len(keys) == len(events), "one event per situation"
    else:
        assert events == []


def test_no_directory_means_no_policy_and_says_so(small_corpus, tmp_path):
    out = run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"), "--no-progress",
                   str(small_corpus / "batches"), check=True).stdout.decode()
    assert "consent             NOT APPLIED" in out


# -- consent APIs against the fake WeCom on loopback ---------------------------------------
@pytest.fixture
def fake_wecom():
    from scrm_fast.clock import ManualClock
    from scrm_fast.wecom.fake import FakeWeCom
    from scrm_fast.wecom.thread import serving

    fake = FakeWeCom(ManualClock(T0))
    fake.s.secrets["archive-secret"] = "archive"
    with serving(fake) as base:
        yield fake, base


def test_consent_api_refresh_changes_decisions(fake_wecom, tmp_path):
    import asyncio

    from scrm_fast.wecom import WeComClient

    fake, base = fake_wecom
    directory = {**DIRECTORY, "customers": [{"external_userid": f"wm{i:03d}", "follow_users": ["emp"]}
                                            for i in range(150)] + [{"external_userid": "wmA",
                                                                     "follow_users": ["emp", "boss"]}]}
    fake.serve_directory({**directory, "consent": []})
    at = T0 + 5000
    fake.s.consent = [{"userid": u, "external_userid": c["external_userid"], "time": at,
                       "status": "Disagree" if c["external_userid"] == "wmA" else "Default_Agree"}
                      for c in directory["customers"] for u in c["follow_users"]]
    fake.s.consent += [{"roomid": g["roomid"], "external_userid": "wmB", "status": "Agree", "time": T0 + 6000}
                       for g in directory["groups"]]
    for g in directory["groups"]:
        fake.s.group_info[g["roomid"]]["members"].append(("wmB", T0))

    async def run(store):
        async with WeComClient(base, fake.s.corpid, "archive-secret") as client:
            return await refresh_consent(client, directory, store)

    with ArchiveStore(tmp_path / "d") as store:
        res = asyncio.run(run(store))
        assert res["pairs"] == 152 and res["changes"] == 152 + 4
        # 152 pairs → two check_single_agree calls of at most 100, then one per group
        singles = [b for api, b in fake.s.read_log if api == "msgaudit/check_single_agree"]
        assert [len(b["info"]) for b in singles] == [100, 52]
        assert all("exteranalopenid" in i for b in singles for i in b["info"])
        policy = build_policy(directory, store)
        changes = store.consent_changes()
    sources = {c["source"] for c in changes}
    assert "api:single" in sources and any(x.startswith("api:wr") for x in sources)
    assert len(changes) == 152  # wmA twice and wmB in four rooms: same change, kept once
    assert {c["status"] for c in changes if c["external_userid"] == "wmB"} == {"Agree"}  # agree_status
    # wmA disagreed per the API at T0+5s: later one-to-one messages are no longer archived
    _, kept = run_policy([msg(1, "emp", ["wmA"], t=1000), msg(2, "emp", ["wmA"], t=9000)], policy)
    assert kept == {"m1": "C-1"}


def test_consent_refresh_errors_are_clear(fake_wecom, tmp_path):
    fake, base = fake_wecom
    data = tmp_path / "d"
    with ArchiveStore(data) as store:
        store.save_directory(DIRECTORY)
    p = run_scrm("consent", "refresh", "--data", str(data), "--api-base", base + "/cgi-bin", "--access-token", "bad")
    err = p.stderr.decode()
    assert p.returncode != 0 and "42001" in err and "access_token" in err and "Traceback" not in err, err
    p = run_scrm("consent", "refresh", "--data", str(data), "--api-base", "http://127.0.0.1:9", "--access-token", "t")
    err = p.stderr.decode()
    assert p.returncode != 0 and "127.0.0.1:9" in err and "Traceback" not in err, err


def test_batches_finishing_out_of_order_in_a_real_ingest_keep_the_truth(tmp_path, monkeypatch):
    """The pipeline decrypts two batches at once (``DECRYPTING``): here the first
    document's decrypt is held back so later ones finish before it. Judging and
    committing still follow arrival order: the store equals the simulator's truth."""
    import threading
    import time

    import scrm_fast.pipeline as pipeline
    from scrm_fast.directory import load_directory
    from scrm_fast.simulate import simulate
    from scrm_fast.tenant import Tenant

    sim = tmp_path / "sim"
    simulate(sim, 4000, seed=32, doc_items=250, docs_per_file=4, service_requires_consent=True)
    finished: list[bytes] = []  # each batch's lowest seq key, in the order its decrypt ended
    lock = threading.Lock()
    real = pipeline.decrypt_batch

    def observed(batch, *args):
        d = real(batch, *args)
        with lock:
            finished.append(min(batch.seq_keys()))
        return d

    class HeldFirst:
        """A per-batch cipher source (like the SDK worker) that holds the first batch."""

        def __init__(self) -> None:
            self.calls = 0

        def decrypt_batch(self, batch, keys, seen=None):
            with lock:
                self.calls += 1
                first = self.calls == 1
            if first:
                time.sleep(0.5)
            return Cipher.open()

    monkeypatch.setattr(pipeline, "decrypt_batch", observed)
    with Tenant(tmp_path / "data") as tenant:
        tenant.import_directory(load_directory(sim / "directory.json"))
        files = sorted((sim / "batches").glob("*.jsonl"))
        s = tenant.ingest(files, KeyRing.load_dir(sim / "keys"), HeldFirst())
    assert finished != sorted(finished), "a later batch finished first"
    rules = orjson.loads((sim / "expected_rules.json").read_bytes())
    assert s.as_dict()["kept_by_rule"] == rules["kept_by_rule"]
    assert s.as_dict()["dropped_by_rule"] == rules["dropped_by_rule"]
    assert run_scrm("export", "--data", str(tmp_path / "data"), check=True).stdout == \
        (sim / "expected.jsonl").read_bytes()
