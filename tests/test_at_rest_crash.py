"""SIGKILL during re-encryption and during the migration of a plaintext data directory:
every rerun goes on, nothing is lost, and in the end nothing is readable at rest.

The plaintext directory of the earlier format is made here with raw LMDB (the layout the
earlier version wrote: unsealed values, word statistics keyed by the word, the directory as
``directory.json``, a plaintext index); the final export is checked against the
simulator's own plaintext stream."""

from __future__ import annotations

import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import msgpack
import orjson

from scrm_fast.storage import _SEALED_META, _TABLES, SEALED_TABLES, ArchiveStore
from tests.conftest import run_scrm
from tests.test_at_rest import _fragments, _leaks, _texts


def _killed_runs(args: list[str], rng: random.Random, tries: int = 12) -> int:
    """Runs ``scrm ARGS`` killed at a random moment until one run finishes; returns kills."""
    kills = 0
    for _ in range(tries):
        p = subprocess.Popen([sys.executable, "-m", "control.cli", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.15, 1.2))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.communicate()
            kills += 1
            continue
        _, err = p.communicate()
        assert p.returncode == 0, err.decode()
        return kills
    p = subprocess.run([sys.executable, "-m", "control.cli", *args], capture_output=True, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return kills


def test_reencryption_killed_at_random_loses_nothing(crash_corpus, tmp_path):
    data = tmp_path / "data"
    run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(data), "--no-progress",
             str(crash_corpus / "batches"), check=True)
    truth = (crash_corpus / "truth.jsonl").read_bytes()
    kills = _killed_runs(["keys", "rotate", "--data", str(data), "--reencrypt"], random.Random(3))
    assert run_scrm("export", "--data", str(data), check=True).stdout == truth
    st = orjson.loads(run_scrm("keys", "status", "--data", str(data), check=True).stdout)
    assert st["keys"] == [st["current"]] and set(st["values_by_key"]) == {str(st["current"])}
    assert kills >= 1 or st["current"] == 2


def _legacy_copy(sealed: Path, dest: Path, directory: dict, plain_terms: list[bytes]) -> None:
    """``sealed`` rewritten as the earlier, plaintext format at ``dest``."""
    dest.mkdir()
    store = ArchiveStore(sealed, readonly=True)
    env = lmdb.open(str(dest / "archive.lmdb"), map_size=1 << 34, max_dbs=len(_TABLES) + 4)
    with store.env.begin() as src, env.begin(write=True) as out:
        for name in _TABLES:
            db = env.open_db(name, txn=out)
            for k, v in src.cursor(db=store._db[name]):
                if name in SEALED_TABLES or (name == b"meta" and k in _SEALED_META):
                    v = store.vault.open(name, k, v)
                if name == b"wordstats":  # the earlier layout: word → (count, last)
                    word, count, last = msgpack.unpackb(v)
                    k, v = word.encode(), struct.pack(">Qq", count, last)
                if name == b"meta" and k == b"directory":
                    continue
                out.put(k, v, db=db)
    env.close()
    store.close()
    (dest / "directory.json").write_bytes(orjson.dumps(directory))
    (dest / "index").mkdir()
    # stands for the earlier plaintext index: the migration must not keep it
    (dest / "index" / "terms.plain").write_bytes(b"\n".join(plain_terms))


def test_migration_of_a_plaintext_directory_killed_at_random(crash_corpus, tmp_path):
    sealed, legacy = tmp_path / "sealed", tmp_path / "legacy"
    words = tmp_path / "words.txt"
    words.write_text("保本,稳赚\n微信\n", encoding="utf-8")
    run_scrm("words", "import", "--data", str(sealed), str(words), check=True)
    run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(sealed), "--no-progress",
             str(crash_corpus / "batches"), check=True)
    directory = orjson.loads((crash_corpus / "directory.json").read_bytes())
    fragments = _fragments(_texts(crash_corpus))
    _legacy_copy(sealed, legacy, directory, sorted(fragments)[:200])
    assert _leaks(legacy, fragments)  # the fixture is plaintext indeed
    # refused, with the remedy, and untouched, until migrated
    p = run_scrm("search", "--data", str(legacy), "保本")
    assert p.returncode == 1 and b"scrm migrate" in p.stderr and not (legacy / "keys.json").exists()
    words_before = orjson.loads(run_scrm("words", "list", "--data", str(sealed), "--json", check=True).stdout)
    _killed_runs(["migrate", "--data", str(legacy)], random.Random(5))
    assert run_scrm("export", "--data", str(legacy), check=True).stdout == (crash_corpus / "truth.jsonl").read_bytes()
    assert _leaks(legacy, fragments) == []
    assert not (legacy / "directory.json").exists()
    # what the earlier format kept is all there: word statistics, audits, the index
    assert orjson.loads(run_scrm("words", "list", "--data", str(legacy), "--json", check=True).stdout) == words_before
    a = orjson.loads(run_scrm("audit", "list", "--data", str(legacy), "--json", check=True).stdout)
    b = orjson.loads(run_scrm("audit", "list", "--data", str(sealed), "--json", check=True).stdout)
    assert a == b and a
    q = lambda d: orjson.loads(run_scrm("search", "--data", str(d), "--json", "的", check=True).stdout)  # noqa: E731
    assert q(legacy)["total"] == q(sealed)["total"] > 0
    again = orjson.loads(run_scrm("migrate", "--data", str(legacy), check=True).stdout)
    assert again["migrated"] is False
