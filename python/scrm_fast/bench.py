"""``scrm bench ingest``: end-to-end ingest throughput beside two baselines measured in
the same run: the machine's RSA bound (OpenSSL, one thread per core, each with its own key
copy: the most this workload can do) and a pure-Python reference pipeline."""

from __future__ import annotations

import base64
import resource
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


def bench_ingest(messages: int = 100_000, corpus: str | None = None, seconds: float = 3.0,
                 ref_messages: int = 20_000, threads: int = 2) -> dict:
    with tempfile.TemporaryDirectory(prefix="scrm-bench-") as tmp:
        root = Path(corpus) if corpus else Path(tmp) / "corpus"
        if not (root / "truth.jsonl").exists():
            simulate(root, messages, seed=7)
        keys = KeyRing.load_dir(root / "keys")
        ver, cts = _sample_ciphertexts(root / "batches")

        ops1, el1 = keys.measure_rsa_rate(ver, cts, 1, seconds)
        opsn, eln = keys.measure_rsa_rate(ver, cts, threads, seconds)

        # End to end through the CLI, in a child process so its peak RSS is its own.
        data = Path(tmp) / "data"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "scrm_fast.cli", "ingest", "--keys", str(root / "keys"),
                               "--data", str(data), "--json", "--no-progress", str(root / "batches")],
                              capture_output=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"ingest failed: {proc.stderr.decode(errors='replace').strip()}")
        summary = orjson.loads(proc.stdout)
        peak_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        correct = summary["ingested"] == _count_truth(root) and summary["quarantined"] == 0

        docs = _corpus_docs(root / "batches", ref_messages)
        ref_data = Path(tmp) / "ref"
        ref_data.mkdir()
        t0 = time.perf_counter()
        ref_stored, ref_failed = ingest_reference(docs, root / "keys", ref_data, threads)
        ref_el = time.perf_counter() - t0

    msgs_per_s = summary["msgs_per_s"]
    rsa_bound = opsn / eln
    ref_rate = ref_stored / ref_el
    return {
        "messages": summary["ingested"],
        "threads": threads,
        "msgs_per_s": round(msgs_per_s, 1),
        "msgs_per_s_wall_incl_startup": round(summary["ingested"] / wall, 1),
        "rsa_bound_msgs_per_s": round(rsa_bound, 1),
        "rsa_one_thread_per_s": round(ops1 / el1, 1),
        "python_ref_msgs_per_s": round(ref_rate, 1),
        "python_ref_messages": ref_stored,
        "ratio_vs_rsa_bound": round(msgs_per_s / rsa_bound, 3),
        "ratio_vs_python_ref": round(msgs_per_s / ref_rate, 3),
        "peak_rss_mib": round(max(peak_rss_kib, before) / 1024, 1),
        "correct": bool(correct and ref_failed == 0),
    }


def _count_truth(root: Path) -> int:
    with (root / "truth.jsonl").open("rb") as f:
        return sum(1 for _ in f)


def format_report(r: dict) -> str:
    return "\n".join([
        f"ingest, {r['messages']:,} messages, {r['threads']} threads (correct: {r['correct']})",
        f"  scrm-fast end to end     {r['msgs_per_s']:>10,.0f} msg/s",
        f"  RSA bound (OpenSSL, {r['threads']}t)  {r['rsa_bound_msgs_per_s']:>10,.0f} dec/s"
        f"   (1 thread: {r['rsa_one_thread_per_s']:,.0f})",
        f"  pure-Python reference    {r['python_ref_msgs_per_s']:>10,.0f} msg/s ({r['python_ref_messages']:,} msgs)",
        f"  ratio vs RSA bound       {r['ratio_vs_rsa_bound']:>10.3f}   (target ≥ 0.9)",
        f"  ratio vs Python ref      {r['ratio_vs_python_ref']:>10.3f}   (target ≥ 1.2)",
        f"  ingest peak RSS          {r['peak_rss_mib']:>10,.1f} MiB",
    ])
