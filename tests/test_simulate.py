from __future__ import annotations

import orjson

from scrm_fast import KNOWN_MSGTYPES
from scrm_fast.simulate import ALL_TYPES, simulate


def test_corpus_shape(small_corpus):
    truth = [orjson.loads(line) for line in (small_corpus / "truth.jsonl").read_bytes().splitlines()]
    assert len(truth) == 3000
    seqs = [m["seq"] for m in truth]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    types = {m.get("msgtype", "switch") for m in truth}
    # every msgtype of spec §4, switch records, and a few types this version does not know
    assert set(KNOWN_MSGTYPES) <= types
    assert {"meeting_notification", "note"} <= types
    assert any(m["action"] == "recall" for m in truth)
    assert any(len(m.get("text", {}).get("content", "")) > 2000 for m in truth), "no very long message"
    assert any(any("\u4e00" <= ch <= "\u9fff" for ch in m.get("text", {}).get("content", "")) for m in truth)
    docs = []
    for path in sorted((small_corpus / "batches").glob("*.jsonl")):
        docs += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(docs) == 12
    assert all(d["errcode"] == 0 and len(d["chatdata"]) <= 1000 for d in docs)
    vers = [it["publickey_ver"] for d in docs for it in d["chatdata"]]
    assert vers == sorted(vers) and set(vers) == {1, 2}, "keys rotate mid-stream"
    assert sorted(p.name for p in (small_corpus / "keys").iterdir()) == ["1.pem", "2.pem"]
    assert b"BEGIN RSA PRIVATE KEY" in (small_corpus / "keys" / "1.pem").read_bytes()
    assert b"BEGIN PRIVATE KEY" in (small_corpus / "keys" / "2.pem").read_bytes()
    d = orjson.loads((small_corpus / "directory.json").read_bytes())
    assert {"corp", "departments", "employees", "customers", "groups", "consent"} <= d.keys()
    assert any(e["status"] == "resigned" for e in d["employees"])


def test_same_seed_same_stream(tmp_path):
    simulate(tmp_path / "a", 400, seed=5)
    simulate(tmp_path / "b", 400, seed=5)
    simulate(tmp_path / "c", 400, seed=6)
    a = (tmp_path / "a" / "truth.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "truth.jsonl").read_bytes()
    assert a != (tmp_path / "c" / "truth.jsonl").read_bytes()
    assert (tmp_path / "a" / "directory.json").read_bytes() == (tmp_path / "b" / "directory.json").read_bytes()


def test_all_types_listed():
    assert set(KNOWN_MSGTYPES) <= set(ALL_TYPES)
