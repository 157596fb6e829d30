"""Archive search (issue 5): recall equals a brute-force substring scan, filters and
pagination equal a reference computed from the ground truth, the index follows the store
through crashes and rebuilds, and the CLI speaks the documented JSON."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import msgpack
import orjson
import pytest

from scrm_fast.errors import InputError, QuerySyntaxError
from scrm_fast.search import DAY_MS, TYPE_GROUPS, ArchiveSearch, SearchScope, open_index
from scrm_fast.storage import ArchiveStore
from tests.conftest import run_scrm


def fold(s: str) -> str:
    """Case and width folding, written independently of the engine's."""
    out = []
    for c in s:
        o = ord(c)
        if 0xFF01 <= o <= 0xFF5E:
            c = chr(o - 0xFEE0)
        elif o == 0x3000:
            c = " "
        low = c.lower()
        out.append(low if len(low) == 1 else c)
    return "".join(out)


def quote(q: str) -> str:
    return '"' + q.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(scope="module")
def archive(small_corpus, tmp_path_factory):
    data = tmp_path_factory.mktemp("search") / "data"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(small_corpus / "batches"), check=True)
    with ArchiveStore(data, readonly=True) as store:
        records = [msgpack.unpackb(v) for chunk in store.record_value_chunks() for v in chunk]
    truth = {}
    for m in map(orjson.loads, (small_corpus / "truth.jsonl").read_bytes().splitlines()):
        if m["action"] == "switch":  # a switch record: the user is its only party, "time" its time
            m = {**m, "from": m["user"], "tolist": [], "roomid": "", "msgtime": m["time"], "msgtype": "switch"}
        truth[m["seq"]] = m
    return data, records, truth


def all_pages(search: ArchiveSearch, query: str, limit: int = 1000, **kw) -> tuple[int, list[int]]:
    seqs, cursor, total = [], None, None
    while True:
        page = search.search(query, cursor=cursor, limit=limit, **kw)
        assert total is None or page["total"] == total
        total = page["total"]
        seqs += [it["seq"] for it in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return total, seqs


def newest_first(recs) -> list[int]:
    return [r["seq"] for r in sorted(recs, key=lambda r: (r["msgtime"], r["seq"]), reverse=True)]


def test_recall_equals_brute_force_for_random_substrings(archive):
    data, records, _ = archive
    folded = [(r, fold(r["text"])) for r in records]
    rng = random.Random(5)
    texts = [r["text"] for r in records if r["text"]]
    alphabet = sorted({c for t in texts for c in t})
    queries = []
    for n in (1, 2, 3, 4):
        for _ in range(60):  # substrings of stored texts: they occur
            t = rng.choice(texts)
            if len(t) >= n:
                at = rng.randrange(len(t) - n + 1)
                queries.append(t[at:at + n])
        for _ in range(25):  # random strings: mostly absent, sometimes present
            queries.append("".join(rng.choice(alphabet) for _ in range(n)))
    phrases = [t[a:a + 9] for t in rng.sample([t for t in texts if " " in t and len(t) > 12], 20)
               for a in [t.index(" ") - 3 if t.index(" ") >= 3 else 0]]
    queries += phrases + ["ＯＫ", "ok", "OK", "Ｉｎｖｏｉｃｅ"]
    with ArchiveStore(data, readonly=True) as store:
        search = ArchiveSearch(store, open_index(store))
        assert search.lag() == 0
        found_some = 0
        for q in queries:
            want = newest_first(r for r, f in folded if fold(q) in f)
            total, got = all_pages(search, quote(q))
            assert (total, got) == (len(want), want), f"query {q!r}"
            found_some += bool(want)
        assert found_some > len(queries) // 2
        # boolean combinations against the same reference
        for q, pred in [
            ("微信 OR 报价", lambda f: "微信" in f or "报价" in f),
            ("微信 -报价", lambda f: "微信" in f and "报价" not in f),
            ("NOT 的", lambda f: "的" not in f),
            ("(您 OR 你) 好", lambda f: ("您" in f or "你" in f) and "好" in f),
        ]:
            want = newest_first(r for r, f in folded if pred(f))
            assert all_pages(search, q) == (len(want), want), q


def test_filters_and_pagination_match_the_ground_truth(archive):
    data, records, truth = archive
    by_seq = {r["seq"]: r for r in records}
    assert set(by_seq) <= set(truth)
    employee = max({m["from"] for m in truth.values() if not m["from"].startswith(("wm", "wo"))},
                   key=lambda u: sum(1 for m in truth.values() if m["from"] == u))
    customer = next(m["from"] for m in truth.values()
                    if m["from"].startswith("wm") and not m["roomid"] and employee in m["tolist"])
    room = next(m["roomid"] for m in truth.values() if m["roomid"])
    newest = max(m["msgtime"] for m in truth.values() if m["seq"] in by_seq)
    times = sorted(m["msgtime"] for m in truth.values())
    since, until = times[len(times) // 4], times[len(times) // 2]

    def parties(m):
        return {m["from"], *m["tolist"]}

    cases = [
        ({"employee": employee}, lambda m: employee in parties(m)),
        ({"customer": customer}, lambda m: customer in parties(m)),
        ({"employee": employee, "customer": customer}, lambda m: {employee, customer} <= parties(m)),
        ({"group": room}, lambda m: m["roomid"] == room),
        ({"days": 7}, lambda m: m["msgtime"] >= newest - 7 * DAY_MS),
        ({"since": since, "until": until}, lambda m: since <= m["msgtime"] <= until),
        ({"employee": employee, "days": 30}, lambda m: employee in parties(m) and m["msgtime"] >= newest - 30 * DAY_MS),
    ] + [({"type_group": g}, lambda m, types=types: m["msgtype"] in types)
         for g, types in TYPE_GROUPS.items() if types]
    with ArchiveStore(data, readonly=True) as store:
        search = ArchiveSearch(store, open_index(store))
        for kw, pred in cases:
            want = newest_first(by_seq[s] for s, m in truth.items() if s in by_seq and pred(m))
            assert want, kw
            for limit in (7, 1000):
                assert all_pages(search, "", limit=limit, **kw) == (len(want), want), (kw, limit)
            # with a text query too
            want_q = [s for s in want if "的" in fold(by_seq[s]["text"])]
            assert all_pages(search, "的", limit=5, **kw) == (len(want_q), want_q), kw
        # data scope: only conversations of one employee (and one group)
        scope = SearchScope(frozenset({employee}), frozenset({room}))
        want = newest_first(r for r in records if employee in parties(truth[r["seq"]]) or r["roomid"] == room)
        assert all_pages(search, "", limit=50, scope=scope) == (len(want), want)
        page = search.search("微信", limit=3)
        it = page["items"][0]
        assert it["msgid"] == by_seq[it["seq"]]["msgid"]
        a, b = it["highlights"][0]
        assert fold(it["snippet"][a:b]) == "微信"
        with pytest.raises(QuerySyntaxError):
            search.search("(微信")
        with pytest.raises(InputError):
            search.search("微信", cursor="nonsense")
        with pytest.raises(InputError):
            search.search("微信", type_group="photos")


def test_cli_search_json_and_errors(archive):
    data, records, _ = archive
    p = run_scrm("search", "--data", str(data), "--limit", "5", "--json", "微信", check=True)
    page = orjson.loads(p.stdout)
    assert set(page) == {"total", "items", "next_cursor"}
    assert len(page["items"]) == 5 and page["total"] == sum("微信" in fold(r["text"]) for r in records)
    assert all({"msgid", "seq", "msgtime", "snippet"} <= set(it) for it in page["items"])
    nxt = orjson.loads(run_scrm("search", "--data", str(data), "--limit", "5", "--cursor", page["next_cursor"],
                                "--json", "微信", check=True).stdout)
    assert nxt["total"] == page["total"]
    assert nxt["items"][0]["msgtime"] <= page["items"][-1]["msgtime"]
    assert not {i["seq"] for i in nxt["items"]} & {i["seq"] for i in page["items"]}
    for bad in (["(微信"], ["--cursor", "zz", "微信"], ["--since", "yesterday", "x"]):
        p = run_scrm("search", "--data", str(data), "--json", *bad)
        assert p.returncode == 1 and len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
    p = run_scrm("search", "--data", str(data.parent / "missing"), "x")
    assert p.returncode == 1 and b"no archive" in p.stderr


def test_index_catches_up_and_reindex_rebuilds(small_corpus, tmp_path):
    import shutil

    data = tmp_path / "data"
    files = sorted((small_corpus / "batches").iterdir())
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             *map(str, files[: len(files) // 2]), check=True)
    shutil.rmtree(data / "index")  # lost (or never built): the next ingest catches up first
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             *map(str, files), check=True)
    with ArchiveStore(data, readonly=True) as store:
        n = store.counts()["records"]
        ix = open_index(store)
        assert ix.num_docs() == n and len(set(ix.seqs())) == n
        before = ArchiveSearch(store, ix).search("好", limit=50)
    res = orjson.loads(run_scrm("reindex", "--data", str(data), "--json", check=True).stdout)
    assert res["indexed"] == n
    with ArchiveStore(data, readonly=True) as store:
        ix = open_index(store)
        assert ix.num_docs() == n
        assert ArchiveSearch(store, ix).search("好", limit=50) == before


def test_searches_run_while_an_ingest_writes(small_corpus, tmp_path):
    data = tmp_path / "data"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(sorted((small_corpus / "batches").iterdir())[0]), check=True)
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "ingest", "--keys", str(small_corpus / "keys"),
                             "--data", str(data), "--no-progress", str(small_corpus / "batches")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**__import__("os").environ, "SCRM_INDEX_COMMIT_S": "0.05"})
    totals = []
    with ArchiveStore(data, readonly=True) as store:
        search = ArchiveSearch(store, open_index(store))
        while proc.poll() is None:
            search.index.reload()
            totals.append(search.search("", limit=1)["total"])
            time.sleep(0.02)
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        search.index.reload()
        totals.append(search.search("", limit=1)["total"])
        assert totals == sorted(totals) and totals[-1] == store.counts()["records"]
        assert len(set(totals)) >= 3, totals  # searches saw the index grow


def test_an_unreadable_index_is_replaced_by_ingest_and_refused_by_search(small_corpus, tmp_path):
    data = tmp_path / "data"
    files = sorted((small_corpus / "batches").iterdir())
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress", str(files[0]),
             check=True)
    (data / "index" / "meta.json").write_text("{not json", encoding="utf-8")  # damaged
    p = run_scrm("search", "--data", str(data), "--json", "的")
    assert p.returncode == 1 and b"reindex" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             *map(str, files), check=True)
    # rebuilt in place; the unreadable one is not kept (it may be the earlier plaintext layout)
    assert not list(data.glob("index.unreadable-*"))
    with ArchiveStore(data, readonly=True) as store:
        assert open_index(store).num_docs() == store.counts()["records"]
