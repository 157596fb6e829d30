"""``scrm bench ingest``: end-to-end ingest throughput beside two baselines measured in
the same run: the machine's RSA bound (OpenSSL, one thread per core, each with its own key
copy: the most this workload can do) and a pure-Python reference pipeline."""

from __future__ import annotations

import base64
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from scrm_fast import KeyRing
from scrm_fast.pyref import ingest_reference
from scrm_fast.simulate import simulate


def _sample_ciphertexts(batches: Path, n: int = 512) -> tuple[int, list[bytes]]:
    first = sorted(batches.glob("*.jsonl"))[0]
    with first.open("rb") as f:
        items = orjson.loads(f.readline())["chatdata"]
    ver = items[0]["publickey_ver"]
    return ver, [base64.b64decode(i["encrypt_random_key"]) for i in items[:n] if i["publickey_ver"] == ver]


def _corpus_docs(batches: Path, limit: int) -> list[bytes]:
    docs: list[bytes] = []
    count = 0
    for path in sorted(batches.glob("*.jsonl")):
        with path.open("rb") as f:
            for line in f:
                docs.append(line)
                count += len(orjson.loads(line)["chatdata"])
                if count >= limit:
                    return docs
    return docs


def _child_env(data: Path) -> dict[str, str]:
    """The environment of a CLI child: a master key of the bench's own, beside the data
    directory, unless one is set."""
    from scrm_fast.sealing import ENV_MASTER, new_master_key

    env = dict(os.environ)
    if not env.get(ENV_MASTER):
        key = data.parent / "bench-master.key"
        if not key.exists():
            new_master_key(key)
        env[ENV_MASTER] = str(key)
    return env


def _ingest_child(keys: Path, data: Path, files: list[Path], directory: Path) -> dict:
    """The real CLI with consent on (the simulated enterprise's directory), sealing at rest
    with a master key of the bench's own (beside the data directory) unless one is set."""
    proc = subprocess.run([sys.executable, "-m", "scrm_fast.cli", "ingest", "--keys", str(keys),
                           "--data", str(data), "--directory", str(directory), "--json", "--no-progress",
                           *map(str, files)],
                          capture_output=True, check=False, env=_child_env(data))
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed: {proc.stderr.decode(errors='replace').strip()}")
    return orjson.loads(proc.stdout)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rsa_rate(keys: KeyRing, ver: int, cts: list[bytes], threads: int, seconds: float) -> tuple[float, float]:
    """(operations/s, CPU seconds per operation) of the RSA bound."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    ops, el = keys.measure_rsa_rate(ver, cts, threads, seconds)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return ops / el, cpu / max(1, ops)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def bench_ingest(messages: int = 100_000, corpus: str | None = None, seconds: float = 2.0,
                 ref_messages: int = 20_000, threads: int = 2, rounds: int = 5) -> dict:
    """With consent on. Interleaves, round by round, the RSA bound, a slice of the real ingest (the CLI in a
    child process, incremental into one archive) and a slice of the Python reference, so
    the machine's noise hits all three alike; reports per-round ratios and their medians."""
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        root = Path(corpus) if corpus else Path(tmp) / "corpus"
        if not (root / "truth.jsonl").exists():
            simulate(root, messages, seed=7, docs_per_file=max(1, messages // 1000 // (rounds * 2) or 1))
        keys = KeyRing.load_dir(root / "keys")
        ver, cts = _sample_ciphertexts(root / "batches")
        files = sorted((root / "batches").glob("*.jsonl"))
        rounds = max(1, min(rounds, len(files)))
        # contiguous slices in seq order: consent decisions depend on arrival order
        per_round = [files[len(files) * i // rounds: len(files) * (i + 1) // rounds] for i in range(rounds)]
        ref_docs = _corpus_docs(root / "batches", ref_messages)
        ref_slices = [ref_docs[i::rounds] for i in range(rounds)]

        ops1, el1 = keys.measure_rsa_rate(ver, cts, 1, seconds)
        data = Path(tmp) / "data"
        rows = []
        ingested = quarantined = 0
        for r in range(rounds):
            # the bound just before and just after this round's ingest slice, averaged
            before, cpu_before = _rsa_rate(keys, ver, cts, threads, seconds / 2)
            c0 = _child_cpu()
            s = _ingest_child(root / "keys", data, sorted(per_round[r]), root / "directory.json")
            child_cpu = _child_cpu() - c0
            after, cpu_after = _rsa_rate(keys, ver, cts, threads, seconds / 2)
            bound = (before + after) / 2
            rsa_cpu_per_op = (cpu_before + cpu_after) / 2
            ingested += s["ingested"] + s["dropped_by_consent"]
            quarantined += s["quarantined"]
            ref_dir = Path(tmp) / f"ref{r}"
            ref_dir.mkdir()
            t0 = time.perf_counter()
            ref_stored, ref_failed = ingest_reference(ref_slices[r], root / "keys", ref_dir, threads)
            ref_rate = ref_stored / (time.perf_counter() - t0)
            shutil.rmtree(ref_dir)
            decrypted = max(1, s["ingested"] + s["dropped_by_consent"])
            rows.append({"msgs_per_s": s["msgs_per_s"], "rsa_bound": bound, "python_ref": ref_rate,
                         "ref_failed": ref_failed, "cpu_efficiency": rsa_cpu_per_op / (child_cpu / decrypted)})
        peak_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        export_ok = _export_matches(data, root)

    med = _median([x["msgs_per_s"] for x in rows])
    return {
        "messages": ingested,
        "threads": threads,
        "rounds": rounds,
        "msgs_per_s": round(med, 1),
        "rsa_bound_msgs_per_s": round(_median([x["rsa_bound"] for x in rows]), 1),
        "rsa_one_thread_per_s": round(ops1 / el1, 1),
        "python_ref_msgs_per_s": round(_median([x["python_ref"] for x in rows]), 1),
        "python_ref_messages": sum(len(orjson.loads(d)["chatdata"]) for d in ref_docs),
        "ratio_vs_rsa_bound": round(_median([x["msgs_per_s"] / x["rsa_bound"] for x in rows]), 3),
        "ratio_vs_python_ref": round(_median([x["msgs_per_s"] / x["python_ref"] for x in rows]), 3),
        # CPU time per message against CPU time per RSA operation: insensitive to other
        # tenants' load on a shared machine (includes the child's start-up).
        "cpu_efficiency_vs_rsa": round(_median([x["cpu_efficiency"] for x in rows]), 3),
        "per_round": [{k: round(v, 1) if isinstance(v, float) else v for k, v in x.items()} for x in rows],
        "peak_rss_mib": round(peak_rss_kib / 1024, 1),
        "correct": bool(export_ok and quarantined == 0 and all(x["ref_failed"] == 0 for x in rows)),
    }


def _export_matches(data: Path, root: Path) -> bool:
    proc = subprocess.run([sys.executable, "-m", "scrm_fast.cli", "export", "--data", str(data)], env=_child_env(data),
                          capture_output=True, check=False)
    return proc.returncode == 0 and proc.stdout == (root / "expected.jsonl").read_bytes()


def format_report(r: dict) -> str:
    return "\n".join([
        f"ingest, {r['messages']:,} messages, consent on, {r['threads']} threads (correct: {r['correct']})",
        f"  scrm-fast end to end     {r['msgs_per_s']:>10,.0f} msg/s",
        f"  RSA bound (OpenSSL, {r['threads']}t)  {r['rsa_bound_msgs_per_s']:>10,.0f} dec/s"
        f"   (1 thread: {r['rsa_one_thread_per_s']:,.0f})",
        f"  pure-Python reference    {r['python_ref_msgs_per_s']:>10,.0f} msg/s ({r['python_ref_messages']:,} msgs)",
        f"  ratio vs RSA bound       {r['ratio_vs_rsa_bound']:>10.3f}   (target ≥ 0.9)",
        f"  ratio vs Python ref      {r['ratio_vs_python_ref']:>10.3f}   (target ≥ 1.2)",
        f"  CPU efficiency vs RSA    {r['cpu_efficiency_vs_rsa']:>10.3f}   (RSA CPU per op / ingest CPU per msg)",
        f"  ingest peak RSS          {r['peak_rss_mib']:>10,.1f} MiB",
        f"  (medians of {r['rounds']} interleaved rounds; ratios are medians of per-round ratios)",
    ])


# -- sensitive-word matching -------------------------------------------------------------
def word_corpus(messages: int = 50_000, entries: int = 10_000, seed: int = 3) -> tuple[list[str], list[tuple]]:
    """Chinese chat text (the simulator's phrases, emoji, numbers) and a word list of
    ``entries`` entries of 2–4 characters, each with 0–3 related words."""
    import random

    from scrm_fast.simulate import _EMOJI, _PHRASES

    rng = random.Random(seed)
    texts = []
    for _ in range(messages):
        parts = [rng.choice(_PHRASES) for _ in range(rng.choice((1, 1, 2, 3)))]
        if rng.random() < 0.2:
            parts.append(rng.choice(_EMOJI))
        texts.append("".join(parts))
    pool = sorted({c for p in _PHRASES for c in p if "\u4e00" <= c <= "\u9fff"}) + [chr(0x4E00 + i) for i in range(800)]
    seen: set[str] = set()
    words: list[tuple] = []

    def fresh() -> str:
        while True:
            w = "".join(rng.choice(pool) for _ in range(rng.randint(2, 4)))
            if w not in seen:
                seen.add(w)
                return w

    for i in range(entries):
        words.append((i + 1, fresh(), [fresh() for _ in range(rng.randint(0, 3))], "bench", 1, "employee"))
    return texts, words


def hit_heavy_corpus(messages: int = 50_000, entries: int = 10_000, seed: int = 5) -> tuple[list[str], list[tuple]]:
    """Chat text drawn from a real Chinese word-frequency list (jieba's ``dict.txt``, from
    PyPI: 349k words with corpus counts) and a list of ``entries`` ordinary words of it (as
    real lists are: 微信, 转账, 红包 …), so that hits are frequent (about 0.6 a message)."""
    import os
    import random

    import jieba

    rows = []
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as f:
        for line in f:
            w, freq, *_ = line.split()
            rows.append((int(freq), w))
    rows.sort(key=lambda r: (-r[0], r[1]))
    vocab = rows[:60_000]
    rng = random.Random(seed)
    cum, total = [], 0
    for freq, _ in vocab:
        total += freq
        cum.append(total)
    words_only = [w for _, w in vocab]
    texts = ["".join(rng.choices(words_only, cum_weights=cum, k=rng.randint(3, 14))) for _ in range(messages)]
    # listed: multi-character words of middling frequency (the commonest are function words)
    candidates = [w for _, w in rows[2_000:40_000] if 2 <= len(w) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in w)]
    picked = rng.sample(candidates, entries)
    return texts, [(i + 1, w, [], "common", 1, "employee") for i, w in enumerate(picked)]


def _hyperscan_one_buffer(patterns: list[str]):
    """Hyperscan (the ``hyperscan`` PyPI package) over all messages joined in one buffer,
    literal patterns, no normalization; None when it is not installed."""
    try:
        import hyperscan
    except ImportError:
        return None
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[p.encode() for p in patterns], ids=list(range(len(patterns))),
               flags=[0] * len(patterns), literal=True)

    def run(texts: list[str]) -> int:
        n = [0]

        def on_match(_id, _start, _end, _flags, _ctx):
            n[0] += 1
        db.scan("\n".join(texts).encode(), match_event_handler=on_match)
        return n[0]
    return run


def bench_words(messages: int = 50_000, entries: int = 10_000, rounds: int = 3, corpus: str = "simulated") -> dict:
    """MB/s on one core over the same corpus: our matcher with normalization on (one
    batch call, hits as columns) against ahocorasick_rs and pyahocorasick without normalization (one call
    per message, as a per-message API is used). Medians of ``rounds``."""
    import ahocorasick
    import ahocorasick_rs

    from scrm_fast import WordList

    texts, words = (hit_heavy_corpus if corpus == "hit-heavy" else word_corpus)(messages, entries)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    patterns = [w for e in words for w in [e[1], *e[2]]]
    ours = WordList(words)
    rs = ahocorasick_rs.AhoCorasick(patterns)
    py = ahocorasick.Automaton()
    for i, p in enumerate(patterns):
        py.add_word(p, i)
    py.make_automaton()

    def t_ours():
        return len(ours.scan_columns(texts, parallel=False)) // 20  # hits as columns: 5 × u32 each

    def t_rs():
        return sum(len(rs.find_matches_as_indexes(t, overlapping=True)) for t in texts)

    def t_rs_joined():
        return len(rs.find_matches_as_indexes("\n".join(texts), overlapping=True))

    def t_py():
        return sum(sum(1 for _ in py.iter(t)) for t in texts)

    hs = _hyperscan_one_buffer(patterns)
    fns = [("ours", t_ours), ("ahocorasick_rs", t_rs), ("ahocorasick_rs_joined", t_rs_joined), ("pyahocorasick", t_py)]
    if hs is not None:
        fns.append(("hyperscan_joined", lambda: hs(texts)))
    rows: dict[str, list[float]] = {name: [] for name, _ in fns}
    hits: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in fns:
            t0 = time.perf_counter()
            hits[name] = fn()
            rows[name].append(mb / (time.perf_counter() - t0))
    med = {k: round(_median(v), 1) for k, v in rows.items()}
    return {"corpus": corpus, "messages": messages, "entries": entries, "patterns": len(patterns), "mb": round(mb, 2),
            "mb_per_s": med, "hits": hits, "hits_per_message": round(hits["ours"] / max(messages, 1), 2),
            "ratio_vs_ahocorasick_rs": round(med["ours"] / med["ahocorasick_rs"], 2),
            "ratio_vs_hyperscan": round(med["ours"] / med["hyperscan_joined"], 2) if hs is not None else None,
            "ratio_vs_pyahocorasick": round(med["ours"] / med["pyahocorasick"], 2),
            # the raw automata find at least every exact hit ours does (ours also finds evasions)
            "correct": hits["ours"] >= hits["ahocorasick_rs"] == hits["pyahocorasick"]}


def format_words_report(r: dict) -> str:
    m = r["mb_per_s"]
    return "\n".join([
        f"sensitive words ({r['corpus']} corpus): {r['messages']:,} messages ({r['mb']} MB), {r['entries']:,} "
        f"entries ({r['patterns']:,} patterns), {r['hits_per_message']} hits a message, one core "
        f"(correct: {r['correct']})",
        f"  scrm-fast, normalization on   {m['ours']:>8.1f} MB/s   hits {r['hits']['ours']:,}",
        f"  ahocorasick_rs, per message   {m['ahocorasick_rs']:>8.1f} MB/s   hits {r['hits']['ahocorasick_rs']:,}",
        f"  ahocorasick_rs, one haystack  {m['ahocorasick_rs_joined']:>8.1f} MB/s",
        f"  pyahocorasick, per message    {m['pyahocorasick']:>8.1f} MB/s   hits {r['hits']['pyahocorasick']:,}",
        f"  ratio vs ahocorasick_rs       {r['ratio_vs_ahocorasick_rs']:>8.2f}   (target ≥ 2)",
        f"  ratio vs pyahocorasick        {r['ratio_vs_pyahocorasick']:>8.2f}",
        *([f"  hyperscan, one buffer         {m['hyperscan_joined']:>8.1f} MB/s   "
           f"hits {r['hits']['hyperscan_joined']:,}",
           f"  ratio vs hyperscan            {r['ratio_vs_hyperscan']:>8.2f}   (target ≥ 1)"]
          if r.get("ratio_vs_hyperscan") is not None else []),
    ])
