"""Sensitive words and behaviours (rules A-1 … A-5): evasions, a clean set, a property test
against a brute-force reference, the ingest pipeline, review queue, rescan and alerts."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrm_fast import WordList, normalize_text
from scrm_fast.simulate import _PHRASES
from tests.conftest import run_scrm

WORDS = [(1, "微信", ["vx", "加v", "薇信"], "contact", 2, "employee"),
         (2, "保本", ["保收益", "稳赚"], "finance", 3, "employee"),
         (3, "返点", ["回扣", "好处费"], "kickback", 3, "both")]
ALLOW = ["微信支付"]

EVASIONS = [
    ("加我微信", 1), ("加我ＶＸ", 1), ("加 V 详聊", 1), ("加v", 1), ("微.信", 1), ("微 信", 1), ("微\u200b信", 1),
    ("微\u200d信", 1), ("微😀信", 1), ("微🙏🏻信", 1), ("威信 微信號", 1), ("WeChat 薇 信", 1), ("Ｖ Ｘ", 1),
    ("保 本", 2), ("保-本-哦", 2), ("保收益", 2), ("穩賺不賠", 2), ("⒈保本", 2), ("保\ufeff本", 2),
    ("返點", 3), ("返 点", 3), ("回　扣", 3), ("好处費", 3), ("ＦＡＮ返点", 3),
]


@pytest.fixture(scope="module")
def wl() -> WordList:
    return WordList(WORDS, ALLOW)


@pytest.mark.parametrize("text,entry", EVASIONS)
def test_every_evasion_is_caught(wl, text, entry):
    hits = wl.find_batch([text])[0]
    assert entry in {h[0] for h in hits}, text
    for _entry, word, start, end in hits:
        # the reported span is where the word stands in the original text
        assert normalize_text(text[start:end]) == normalize_text(word)


def test_allow_list_and_senders(wl):
    assert wl.find_batch(["我用微信支付吧"])[0] == []
    assert len(wl.find_batch(["微信支付或者微信转账"])[0]) == 1
    # entries apply to employees by default; "both" also to customers (kickback solicitation)
    hits = wl.find_batch(["加我微信", "有回扣吗"], customers=[True, True])
    assert hits[0] == [] and [h[0] for h in hits[1]] == [3]


def test_clean_set_false_positive_rate(wl):
    clean = [p for p in _PHRASES if not any(normalize_text(w) in normalize_text(p)
                                            for e in WORDS for w in [e[1], *e[2]])]
    rng = random.Random(1)
    texts = ["".join(rng.choice(clean) for _ in range(rng.randint(1, 4))) for _ in range(5000)]
    flagged = sum(1 for h in wl.find_batch(texts) if h)
    rate = flagged / len(texts)
    print(f"false-positive rate on {len(texts)} clean messages: {rate:.4%}")
    assert rate < 0.01


def test_list_errors():
    with pytest.raises(ValueError, match="at most 10"):
        WordList([(1, "x", [f"y{i}" for i in range(11)], "c", 1, "employee")])
    with pytest.raises(ValueError, match="empty after normalization"):
        WordList([(1, "！？", [], "c", 1, "employee")])
    with pytest.raises(ValueError, match="applies_to"):
        WordList([(1, "x", [], "c", 1, "nobody")])


# -- property: agree with a brute-force reference ----------------------------------------
ALPHABET = list("微信保本返点回扣支付加vV．. 　😀") + ["\u200b", "微信支付"]


def reference(text: str, words: list[tuple], allow: list[str]) -> set[tuple[int, str]]:
    """Normalize, then find every occurrence of every word; drop those inside an allowed
    phrase's occurrence."""
    n = normalize_text(text)
    spans = []
    for a in allow:
        na = normalize_text(a)
        spans += [(i, i + len(na)) for i in range(len(n)) if na and n.startswith(na, i)]
    found = set()
    for e in words:
        for w in [e[1], *e[2]]:
            nw = normalize_text(w)
            if nw in {normalize_text(a) for a in allow}:
                continue
            for i in range(len(n)):
                if n.startswith(nw, i) and not any(s <= i and i + len(nw) <= t for s, t in spans):
                    found.add((e[0], w))
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(ALPHABET), max_size=30).map("".join), min_size=1, max_size=20))
def test_matches_equal_brute_force(texts):
    wl = WordList(WORDS, ALLOW)
    got = wl.find_batch(texts)
    for text, hits in zip(texts, got, strict=True):
        assert {(h[0], h[1]) for h in hits} == reference(text, WORDS, ALLOW), text
    # the columnar shape: the same hits, against the same brute force
    import struct

    cols = wl.scan_columns(texts, parallel=False)
    words = wl.words()
    per: dict[int, set] = {}
    for i, entry, w, start, end in struct.iter_unpack("<5I", cols):
        per.setdefault(i, set()).add((entry, words[w]))
        assert 0 <= start < end <= len(texts[i])
    for i, text in enumerate(texts):
        assert per.get(i, set()) == reference(text, WORDS, ALLOW), text


# -- through the pipeline and the CLI ------------------------------------------------------
def test_ingest_review_queue_rescan_alerts(small_corpus, tmp_path):
    data = str(tmp_path / "d")
    words = tmp_path / "words.txt"
    words.write_text("保本,稳赚 | finance | 3\n返点,回扣 | kickback | 3 | both\n+微信支付\n", encoding="utf-8")
    run_scrm("words", "import", "--data", data, str(words), check=True)
    s = orjson.loads(run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", data, "--directory",
                              str(small_corpus / "directory.json"), "--json", "--no-progress",
                              str(small_corpus / "batches"), check=True).stdout)
    audits = orjson.loads(run_scrm("audit", "list", "--data", data, "--json", check=True).stdout)
    assert len(audits) == s["audit_records"] > 0
    assert all({"id", "kind", "msgid", "status"} <= a.keys() for a in audits)
    content = [a for a in audits if a["kind"] == "content"]
    behaviour = [a for a in audits if a["kind"] == "behaviour"]
    assert content and behaviour
    assert {b["behaviour"] for b in behaviour} <= {"push_card", "red_packet"}
    # every content record is a real hit in a stored message, by an allowed sender kind
    expected = {m["msgid"]: m for m in map(orjson.loads, (small_corpus / "expected.jsonl").read_bytes().splitlines())}
    for a in content:
        m = expected[a["msgid"]]
        assert any(normalize_text(w) in normalize_text(a["text"]) for w in a["words"])
        assert a["word"] == "返点" or not m["from"].startswith(("wm", "wo")), "保本 applies to employees only"
    # the ground truth: brute force over the stored messages' text
    wl = WordList([(1, "保本", ["稳赚"], "finance", 3, "employee"), (2, "返点", ["回扣"], "kickback", 3, "both")],
                  ["微信支付"])
    texts = [m.get("text", {}).get("content", "") for m in expected.values()]
    senders = [m.get("from", "").startswith(("wm", "wo")) for m in expected.values()]
    want = {(mid, h[0]) for mid, hs in zip(expected, wl.find_batch(texts, senders), strict=True) for h in hs}
    got = {(a["msgid"], a["entry_id"]) for a in content}
    # (audits also see the text of links, files, chat records…: a superset of the text-only truth)
    assert got >= want
    # counts per entry
    listing = orjson.loads(run_scrm("words", "list", "--data", data, "--json", check=True).stdout)
    by_word = {e["word"]: e for e in listing["entries"]}
    assert by_word["保本"]["triggers"] == sum(1 for a in content if a["word"] == "保本")
    assert by_word["保本"]["last_trigger"] == max(a["msgtime"] for a in content if a["word"] == "保本")

    # review: pending → handled; a handled record is never silently changed
    first = content[0]["id"]
    done = orjson.loads(run_scrm("audit", "handle", "--data", data, first, "--verdict", "abnormal", "--remark",
                                 "承诺保本", "--by", "auditor1", check=True).stdout)
    assert done["status"] == "handled" and done["verdict"] == "abnormal" and done["handled_by"] == "auditor1"
    again = run_scrm("audit", "handle", "--data", data, first, "--verdict", "normal")
    assert again.returncode == 1 and b"already handled" in again.stderr
    handled = orjson.loads(run_scrm("audit", "list", "--data", data, "--status", "handled", "--json",
                                    check=True).stdout)
    assert [h["id"] for h in handled] == [first]
    pending = orjson.loads(run_scrm("audit", "list", "--data", data, "--status", "pending", "--json",
                                    check=True).stdout)
    assert len(pending) == len(audits) - 1

    # evidence: the 10 messages around it, in the same conversation
    ctx = orjson.loads(run_scrm("audit", "list", "--data", data, "--kind", "content", "--context", "--json",
                                check=True).stdout)[0]["context"]
    assert 1 <= len(ctx) <= 21 and content[0]["msgid"] in {c["msgid"] for c in ctx}

    # rescan with the same list adds nothing; with a new entry it adds exactly its hits
    assert orjson.loads(run_scrm("audit", "rescan", "--data", data, check=True).stdout)["added"] == 0
    words.write_text("保本,稳赚\n返点,回扣 | kickback | 3 | both\n微信,vx\n+微信支付\n", encoding="utf-8")
    run_scrm("words", "import", "--data", data, str(words), check=True)
    added = orjson.loads(run_scrm("audit", "rescan", "--data", data, check=True).stdout)["added"]
    after = orjson.loads(run_scrm("audit", "list", "--data", data, "--json", check=True).stdout)
    assert added > 0 and len(after) == len(audits) + added
    assert any(a["word"] == "微信" for a in after)
    # the handled record survived the rescan untouched
    assert next(a for a in after if a["id"] == first)["verdict"] == "abnormal"

    alerts = [a for a in orjson.loads(run_scrm("alerts", "list", "--data", data, "--json", check=True).stdout)
              if a["kind"] == "sensitive_word"]
    assert len(alerts) == sum(1 for a in after if a["kind"] == "content")
    assert all(al["notify"] for al in alerts if al["employee"] != "zhangsan")
    # each alert notifies its employee's leader, that leader's leader, … (rule A-5, at most 5)
    leader = {e["userid"]: e.get("leader")
              for e in orjson.loads((small_corpus / "directory.json").read_bytes())["employees"]}

    def chain(u: str) -> list[str]:
        out, cur = [], leader.get(u)
        while cur and cur != u and cur not in out and len(out) < 5:
            out, cur = [*out, cur], leader.get(cur)
        return out

    assert all(al["notify"] == chain(al["employee"]) for al in alerts)
    assert len({al["employee"] for al in alerts}) > 1


def test_behaviour_switches_and_delete_events(small_corpus, tmp_path):
    data = str(tmp_path / "d")
    run_scrm("audit", "behaviours", "--data", data, "--set", "red_packet=off", check=True)
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", data, "--no-progress",
             str(small_corpus / "batches"), check=True)
    kinds = {a["behaviour"] for a in orjson.loads(run_scrm("audit", "list", "--data", data, "--kind", "behaviour",
                                                           "--json", check=True).stdout)}
    assert kinds == {"push_card"}
    ev = tmp_path / "events.jsonl"
    ev.write_text('{"event":"del_external_contact","userid":"lisi","external_userid":"wmX","time":1700000000000}\n'
                  '{"event":"del_follow_user","userid":"lisi","external_userid":"wmY","time":1700000000001}\n')
    out = run_scrm("audit", "events", "--data", data, str(ev), check=True).stdout.decode()
    assert "2 contact events, 1 new" in out
    assert "0 new" in run_scrm("audit", "events", "--data", data, str(ev), check=True).stdout.decode()
    deleted = [a for a in orjson.loads(run_scrm("audit", "list", "--data", data, "--json", check=True).stdout)
               if a["behaviour"] == "delete_customer"]
    assert [(d["employee"], d["customer"]) for d in deleted] == [("lisi", "wmX")]
    bad = run_scrm("audit", "behaviours", "--data", data, "--set", "teleport=on")
    assert bad.returncode == 1 and b"unknown behaviour" in bad.stderr


def test_word_file_errors(tmp_path):
    f = tmp_path / "w.txt"
    f.write_text("a," + ",".join(f"r{i}" for i in range(11)) + "\n", encoding="utf-8")
    r = run_scrm("words", "import", "--data", str(tmp_path / "d"), str(f))
    assert r.returncode == 1 and b"at most 10" in r.stderr and b"w.txt:1" in r.stderr
