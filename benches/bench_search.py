"""Search latency (page of 20 newest first, with the total) on a small simulated archive:
ours against SQLite FTS5 trigram on the same data. Under `make test` each runs once and
checks its total against a brute-force scan; `make bench` times them. The full comparison
(1M messages, tantivy-py too) is `scrm bench search --data DIR`."""

from __future__ import annotations

import pytest

from scrm_fast._core import fold_search_text
from scrm_fast.bench_search import Ours, Sqlite, _load
from scrm_fast.simulate import simulate
from scrm_fast.storage import ArchiveStore
from tests.conftest import run_scrm

QUERIES = ["的", "微信", "报价单", "发一下报"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-search")
    corpus, data = work / "corpus", work / "data"
    simulate(corpus, 3000, seed=11, doc_items=500)
    run_scrm("ingest", "--keys", str(corpus / "keys"), "--data", str(data), "--no-progress",
             str(corpus / "batches"), check=True)
    store = ArchiveStore(data, readonly=True)
    rows = _load(store, None)
    ours, sqlite = Ours(data, work, store), Sqlite(work)
    ours.build(rows)
    sqlite.build(rows)
    truth = {q: sum(fold_search_text(q) in fold_search_text(t) for *_, t in rows) for q in QUERIES}
    yield ours, sqlite, truth
    store.close()


@pytest.mark.parametrize("q", QUERIES)
def test_ours(benchmark, engines, q):
    ours, _, truth = engines
    total, seqs = benchmark(ours.query, q, None)
    assert total == truth[q] > 0 and len(seqs) == min(20, total)


@pytest.mark.parametrize("q", QUERIES)
def test_sqlite_fts5(benchmark, engines, q):
    _, sqlite, truth = engines
    total, seqs = benchmark(sqlite.query, q, None)
    assert total == truth[q] and len(seqs) == min(20, total)
