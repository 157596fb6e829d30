"""Sensitive-word matching on one core: our matcher (normalization on) against
ahocorasick_rs (no normalization) on the same Chinese chat corpus. Under `make test` it
runs once as a correctness test."""

from __future__ import annotations

import ahocorasick_rs

from scrm_fast import WordList
from scrm_fast.bench import word_corpus


def test_scan_one_core(benchmark):
    texts, words = word_corpus(5000, 10_000)
    wl = WordList(words)
    hits = benchmark(wl.scan, texts, None, False)
    rs = ahocorasick_rs.AhoCorasick([w for e in words for w in [e[1], *e[2]]])
    exact = sum(len(rs.find_matches_as_indexes(t, overlapping=True)) for t in texts)
    benchmark.extra_info["correct"] = len(hits) >= exact > 0
    assert benchmark.extra_info["correct"]


def test_ahocorasick_rs_per_message(benchmark):
    texts, words = word_corpus(5000, 10_000)
    rs = ahocorasick_rs.AhoCorasick([w for e in words for w in [e[1], *e[2]]])
    n = benchmark(lambda: sum(len(rs.find_matches_as_indexes(t, overlapping=True)) for t in texts))
    assert n > 0
