"""Ingest benchmarks: one 1000-message GetChatData document through the Rust batch call,
beside the RSA bound and the pure-Python reference measured in the same run. Each records
whether its answer was right. Run as benchmarks with `make bench`; under `make test` they
run once as correctness tests (--benchmark-disable)."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import orjson

from scrm_fast import ChatBatch, Cipher, KeyRing, decode_batch
from scrm_fast.pyref import ingest_reference

THREADS = os.cpu_count() or 1


def _doc(corpus: Path) -> bytes:
    return sorted((corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()[0]


def test_decode_batch_1000(benchmark, bench_corpus):
    keys = KeyRing.load_dir(bench_corpus / "keys")
    cipher = Cipher.open()
    doc = _doc(bench_corpus)

    def run():
        return decode_batch(ChatBatch.parse(doc), keys, cipher)

    d = benchmark(run)
    benchmark.extra_info["correct"] = d.stored == 1000 and d.quarantined == 0
    benchmark.extra_info["msgs"] = 1000
    assert benchmark.extra_info["correct"]


def test_rsa_bound_1000(benchmark, bench_corpus):
    """The floor for the same 1000 messages: RSA only, one thread per core."""
    keys = KeyRing.load_dir(bench_corpus / "keys")
    items = orjson.loads(_doc(bench_corpus))["chatdata"]
    cts = [base64.b64decode(i["encrypt_random_key"]) for i in items if i["publickey_ver"] == 1]
    ops, el = benchmark(keys.measure_rsa_rate, 1, cts, THREADS, 0.13)
    benchmark.extra_info["rsa_per_s"] = ops / el
    assert ops > 0


def test_python_reference_1000(benchmark, bench_corpus):
    doc = _doc(bench_corpus)

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            return ingest_reference([doc], bench_corpus / "keys", Path(tmp), THREADS)

    stored, failed = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["correct"] = stored == 1000 and failed == 0
    assert benchmark.extra_info["correct"]
