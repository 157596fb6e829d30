"""No poison pill: a structural fuzzer of the decrypted messages and of the chatdata
envelope, sealed with the open scheme and ingested by the real CLI. Every item is stored
or quarantined (or, without a usable seq, rejected) with a reason; nothing fails its batch;
every item the fuzzer left alone is stored exactly as the simulator wrote it.

``FUZZ_ITEMS`` sets the count (CI: a bounded one; the note's figure: 100,000)."""

from __future__ import annotations

import copy
import json
import os
import random

import orjson

from scrm_fast import _core
from tests.conftest import run_scrm

ODD = [None, True, 0, -1, 2**70, 1.5, [], {}, [1, "x"], {"a": {"b": [None]}}, "", "x" * 5000, "😀" * 1000,
       "a\x00b", "<script>", "\u202e", "wm" + "9" * 600]


def odd(rng: random.Random):
    """One odd value, a fresh copy (values are nested into each other by later mutations)."""
    return copy.deepcopy(rng.choice(ODD))


def _mutate(rng: random.Random, msg: dict) -> bytes:
    for _ in range(rng.randint(1, 3)):
        keys = list(msg)
        roll = rng.random()
        if roll < 0.25 and keys:
            msg.pop(rng.choice(keys))
        elif roll < 0.6 and keys:
            msg[rng.choice(keys)] = odd(rng)
        elif roll < 0.7:
            msg["tolist"] = [rng.choice(["a", "wm" + "x" * rng.randint(1, 900), "😀" * 300]) for _ in range(50)]
        elif roll < 0.8:
            t = msg.get("msgtype")
            payload = msg.get(t) if isinstance(t, str) else None
            if isinstance(payload, dict) and payload:
                payload[rng.choice(list(payload))] = odd(rng)
        elif roll < 0.85:
            deep: list = []
            for _ in range(rng.choice([10, 200, 1000])):
                deep = [deep]
            msg["deep"] = deep
        elif roll < 0.9:
            msg["msgid"] = "__SURROGATE__"
        else:
            msg[rng.choice(["extra", "msgtype", "action"])] = odd(rng)
    try:
        raw = orjson.dumps(msg)
    except (TypeError, orjson.JSONEncodeError):  # too deep or an int too big for JSON here
        raw = b'{"msgid":"m","msgtype":"text","text":{"content":' + b"[" * 3000 + b"]" * 3000 + b"}}"
    if rng.random() < 0.05:
        raw = rng.choice([b"\xff\xfe not utf-8", b"", b"null", b"[1,2]", raw[: len(raw) // 2]])
    return raw.replace(b'"__SURROGATE__"', b'"\\ud800x"')  # a lone surrogate, as text


def test_fuzzed_items_are_stored_or_quarantined(small_corpus, tmp_path):
    n = int(os.environ.get("FUZZ_ITEMS", "6000"))
    rng = random.Random(1234)
    truth = (small_corpus / "truth.jsonl").read_bytes().splitlines()
    pem = (small_corpus / "keys" / "1.pem").read_bytes()
    publics = {1: _core.public_key_of(pem)}
    out = tmp_path / "fuzz.jsonl"
    untouched: dict[int, bytes] = {}
    mutated_envelopes = 0
    with open(out, "wb") as f:
        for start in range(0, n, 500):
            items = []
            for seq in range(start + 1, min(n, start + 500) + 1):
                msg = orjson.loads(truth[rng.randrange(len(truth))])  # a fresh copy to mutate
                msg.pop("seq")
                msg["msgid"] = f"fz{seq}"
                if rng.random() < 0.5:
                    raw = orjson.dumps(msg)
                    untouched[seq] = b'{"seq":%d,' % seq + raw[1:]
                else:
                    raw = _mutate(rng, msg)
                items.append((seq, f"fz{seq}", 1, raw))
            doc = orjson.loads(_core.seal_response(publics, items))
            for item in doc["chatdata"]:  # the envelope, fuzzed too (never an untouched one)
                if item["seq"] in untouched or rng.random() > 0.1:
                    continue
                mutated_envelopes += 1
                k = rng.choice(["seq", "publickey_ver", "encrypt_random_key", "encrypt_chat_msg", "msgid"])
                item[k] = odd(rng)
            f.write(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
    p = run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"), "--json",
                 "--no-progress", str(out), timeout=1800)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    s = orjson.loads(p.stdout)
    assert s["items"] == n and s["rejected_documents"] == 0
    # each item once: stored, or quarantined/rejected with a reason (no seq → rejected by content)
    assert s["ingested"] + s["quarantined"] + s["duplicates_skipped"] == n, s
    assert sum(s["quarantined_by_reason"].values()) == s["quarantined"]
    assert s["quarantined"] > n // 10 and mutated_envelopes > 0
    exported = run_scrm("export", "--data", str(tmp_path / "d"), check=True).stdout.splitlines()
    stored = {orjson.loads(x)["seq"]: x for x in exported}
    for seq, line in untouched.items():  # what the fuzzer left alone is stored exactly
        assert stored.get(seq) == line, seq
    assert len(stored) == s["ingested"]
    print(f"fuzz: {n} items, {len(untouched)} untouched, {s['ingested']} stored, {s['quarantined']} quarantined "
          f"{s['quarantined_by_reason']}, {s['duplicates_skipped']} duplicate seqs")
