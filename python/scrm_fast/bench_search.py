"""``scrm bench search``: our index against SQLite FTS5 (trigram, LIKE for 1–2 characters)
and tantivy-py (default tokenizer) on the same archive, in one run.

For each engine: build rate from storage (docs/s), recall against a brute-force substring
scan (after case/width folding), and latency p50/p99 of a page of 20 newest-first results
with the total count, for random 1-, 2-, 3- and 4-character queries drawn from the archive,
with and without an employee filter. Queries run interleaved (query by query, engines in
rotating order) so machine noise falls on every engine alike.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import msgpack

from scrm_fast._core import ArchiveIndex, fold_search_text
from scrm_fast.search import ArchiveSearch
from scrm_fast.storage import ArchiveStore

PAGE = 20


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else 0.0


def _load(store: ArchiveStore, max_docs: int | None) -> list[tuple[int, int, list[str], str]]:
    rows = []
    for chunk in store.record_value_chunks(20_000):
        for v in chunk:
            r = msgpack.unpackb(v)
            rows.append((r["seq"], r["msgtime"], [r["from"], *r["tolist"]], r["text"]))
        if max_docs and len(rows) >= max_docs:
            return rows[:max_docs]
    return rows


def _queries(rows, per_len: int, rng: random.Random) -> list[str]:
    texts = [t for *_, t in rows if len(t.strip()) >= 4]
    out = []
    for n in (1, 2, 3, 4):
        got = 0
        while got < per_len:
            t = rng.choice(texts)
            at = rng.randrange(len(t) - n + 1)
            q = t[at:at + n]
            if q.strip() == q and "\n" not in q:
                out.append(q)
                got += 1
    return out


class Ours:
    name = "scrm-fast"

    def __init__(self, data: Path, work: Path, store: ArchiveStore) -> None:
        self.path = work / "ours"
        self.store = store
        self.data = data

    def build(self, rows) -> float:
        shutil.rmtree(self.path, ignore_errors=True)
        ix = ArchiveIndex(str(self.path), self.store.token_key)
        t0 = time.perf_counter()
        ix.open_writer(os.cpu_count() or 1, 256)
        n = 0
        for values in self.store.record_value_chunks(20_000):
            if n >= len(rows):
                break
            values = values[: len(rows) - n]
            n += ix.add_stored(values)
        ix.commit(0)
        dt = time.perf_counter() - t0
        ix.close_writer()
        self.search = ArchiveSearch(self.store, ArchiveIndex(str(self.path), self.store.token_key))
        return dt

    def query(self, q: str, employee: str | None) -> tuple[int, list[int]]:
        quoted = '"' + q.replace("\\", "\\\\").replace('"', '\\"') + '"'
        page = self.search.search(quoted, employee=employee, limit=PAGE)
        return page["total"], [it["seq"] for it in page["items"]]


class Sqlite:
    name = "sqlite-fts5-trigram"

    def __init__(self, work: Path) -> None:
        self.path = work / "fts5.sqlite"

    def build(self, rows) -> float:
        if self.path.exists():
            self.path.unlink()
        t0 = time.perf_counter()
        db = sqlite3.connect(self.path)
        db.executescript("""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE msgs(seq INTEGER PRIMARY KEY, msgtime INTEGER, text TEXT);
            CREATE TABLE parties(party TEXT, seq INTEGER);
            CREATE VIRTUAL TABLE fts USING fts5(text, content='msgs', content_rowid='seq', tokenize='trigram');
        """)
        db.executemany("INSERT INTO msgs VALUES (?,?,?)",
                       ((s, t, fold_search_text(x)) for s, t, _, x in rows))
        db.executemany("INSERT INTO parties VALUES (?,?)", ((p, s) for s, _, ps, _ in rows for p in set(ps)))
        db.executescript("""
            INSERT INTO fts(fts) VALUES('rebuild');
            CREATE INDEX parties_i ON parties(party, seq);
            CREATE INDEX msgs_t ON msgs(msgtime);
        """)
        db.commit()
        self.db = db
        return time.perf_counter() - t0

    def query(self, q: str, employee: str | None) -> tuple[int, list[int]]:
        q = fold_search_text(q)
        filt, args = "", []
        if employee:
            filt, args = " AND m.seq IN (SELECT seq FROM parties WHERE party = ?)", [employee]
        if len(q) >= 3:  # the trigram index
            src, qa = "fts JOIN msgs m ON m.seq = fts.rowid WHERE fts MATCH ?", ['"' + q.replace('"', '""') + '"']
        else:  # shorter than a trigram: a scan
            like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            src, qa = "msgs m WHERE m.text LIKE ? ESCAPE '\\'", [f"%{like}%"]
        total = self.db.execute(f"SELECT count(*) FROM {src}{filt}", qa + args).fetchone()[0]
        seqs = [r[0] for r in self.db.execute(
            f"SELECT m.seq FROM {src}{filt} ORDER BY m.msgtime DESC, m.seq DESC LIMIT {PAGE}", qa + args)]
        return total, seqs


class TantivyPy:
    name = "tantivy-py-default"

    def __init__(self, work: Path) -> None:
        self.path = work / "tantivy-py"

    def build(self, rows) -> float:
        import tantivy

        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("text", stored=False)
        sb.add_text_field("party", stored=False, tokenizer_name="raw")
        sb.add_integer_field("msgtime", fast=True, indexed=False)
        sb.add_integer_field("seq", stored=True, indexed=False)
        self.schema = sb.build()
        t0 = time.perf_counter()
        index = tantivy.Index(self.schema, str(self.path))
        w = index.writer(256_000_000, os.cpu_count() or 1)
        for s, t, ps, x in rows:
            w.add_document(tantivy.Document(text=x, party=list(set(ps)), msgtime=t, seq=s))
        w.commit()
        w.wait_merging_threads()
        dt = time.perf_counter() - t0
        index.reload()
        self.index, self.tantivy = index, tantivy
        return dt

    def query(self, q: str, employee: str | None) -> tuple[int, list[int]]:
        tv = self.tantivy
        try:
            query = self.index.parse_query('"' + q.replace('"', " ") + '"', ["text"])
        except ValueError:
            return 0, []
        if employee:
            query = tv.Query.boolean_query([(tv.Occur.Must, query),
                                            (tv.Occur.Must, tv.Query.term_query(self.schema, "party", employee))])
        searcher = self.index.searcher()
        res = searcher.search(query, PAGE, count=True, order_by_field="msgtime")
        return res.count, [searcher.doc(addr)["seq"][0] for _, addr in res.hits]


def bench_search(data: str | os.PathLike[str], work: str | os.PathLike[str] | None = None, per_len: int = 50,
                 peers: tuple[str, ...] = ("sqlite", "tantivy"), max_docs: int | None = None, seed: int = 7) -> dict:
    data = Path(data)
    work = Path(work) if work else data.parent / (data.name + "-bench-search")
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with ArchiveStore(data, readonly=True) as store:
        rows = _load(store, max_docs)
        folded = [fold_search_text(t) for *_, t in rows]
        by_emp: dict[str, int] = {}
        for _, _, ps, _ in rows:
            for p in set(ps):
                if not p.startswith(("wm", "wo")):
                    by_emp[p] = by_emp.get(p, 0) + 1
        employee = max(by_emp, key=by_emp.get)
        emp_docs = [i for i, (_, _, ps, _) in enumerate(rows) if employee in ps]
        engines = [Ours(data, work, store)]
        if "sqlite" in peers:
            engines.append(Sqlite(work))
        if "tantivy" in peers:
            engines.append(TantivyPy(work))
        report: dict = {"docs": len(rows), "queries_per_length": per_len, "employee_filter": employee,
                        "employee_docs": len(emp_docs), "engines": {}}
        for e in engines:
            dt = e.build(rows)
            report["engines"][e.name] = {"build_s": round(dt, 2), "docs_per_s": round(len(rows) / dt, 1)}
        queries = _queries(rows, per_len, rng)
        truth = {}
        for q in queries:
            fq = fold_search_text(q)
            truth[(q, None)] = sum(1 for f in folded if fq in f)
            truth[(q, employee)] = sum(1 for i in emp_docs if fq in folded[i])
        lat: dict[str, dict[str, list[float]]] = {e.name: {} for e in engines}
        recall: dict[str, list[tuple[int, int]]] = {e.name: [] for e in engines}
        for e in engines:  # warm-up: page caches, lazy structures
            for q in queries[:: max(1, len(queries) // 20)]:
                e.query(q, None)
        for i, q in enumerate(queries):
            for filt in (None, employee):
                order = engines[i % len(engines):] + engines[: i % len(engines)]
                for e in order:
                    t0 = time.perf_counter()
                    total, _ = e.query(q, filt)
                    dt = (time.perf_counter() - t0) * 1000
                    key = f"{len(q)}{'+filter' if filt else ''}"
                    lat[e.name].setdefault(key, []).append(dt)
                    lat[e.name].setdefault("all", []).append(dt)
                    recall[e.name].append((min(total, truth[(q, filt)]), truth[(q, filt)]))
        for e in engines:
            got = sum(a for a, _ in recall[e.name])
            want = sum(b for _, b in recall[e.name])
            exact = sum(1 for a, b in recall[e.name] if a == b)
            r = report["engines"][e.name]
            r["recall"] = round(got / want, 4) if want else 1.0
            r["queries_exact"] = f"{exact}/{len(recall[e.name])}"
            r["latency_ms"] = {k: {"p50": round(statistics.median(v), 2), "p99": round(_pct(v, 0.99), 2)}
                               for k, v in sorted(lat[e.name].items())}
        ours = report["engines"]["scrm-fast"]["latency_ms"]["all"]
        for e in engines[1:]:
            theirs = report["engines"][e.name]["latency_ms"]["all"]
            report["engines"][e.name]["p50_vs_ours"] = round(theirs["p50"] / max(ours["p50"], 1e-9), 1)
            report["engines"][e.name]["p99_vs_ours"] = round(theirs["p99"] / max(ours["p99"], 1e-9), 1)
    return report


def format_search_report(r: dict) -> str:
    lines = [f"search bench: {r['docs']:,} messages, {r['queries_per_length']} queries × 4 lengths, "
             f"with/without employee filter ({r['employee_filter']}, {r['employee_docs']:,} messages)"]
    for name, e in r["engines"].items():
        lat = e["latency_ms"]["all"]
        lines.append(f"  {name:<22} build {e['docs_per_s']:>10,.0f} docs/s   recall {e['recall']:.4f} "
                     f"({e['queries_exact']} exact)   p50 {lat['p50']:.2f} ms   p99 {lat['p99']:.2f} ms")
        for k, v in e["latency_ms"].items():
            if k != "all":
                lines.append(f"      {k:<10} p50 {v['p50']:>8.2f}  p99 {v['p99']:>8.2f}")
    return "\n".join(lines)
