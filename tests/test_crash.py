"""Crash safety: SIGKILL the ingest process at random moments, resume each time; the
final archive equals the ground truth, nothing lost and nothing twice. Consent is on, so
the persisted consent state (spoken members, consent changes, events) must survive too."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import orjson

from scrm_fast.search import open_index
from scrm_fast.storage import ArchiveStore
from tests.conftest import run_scrm


def test_sigkill_at_random_moments_then_resume(crash_corpus, tmp_path):
    data = tmp_path / "data"
    # index commits at random moments too (the default is every 5 s)
    env = {**os.environ, "SCRM_INDEX_COMMIT_S": "0.05"}
    args = [sys.executable, "-m", "control.cli", "ingest", "--keys", str(crash_corpus / "keys"),
            "--data", str(data), "--directory", str(crash_corpus / "directory.json"), "--json", "--no-progress",
            str(crash_corpus / "batches")]
    rng = random.Random(2024)
    kills = 0
    progress = []
    for _ in range(60):
        if kills >= 22:
            break
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # start-up takes ~0.3 s; each run gets a little further (or dies while starting)
        time.sleep(rng.uniform(0.05, 0.7))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            proc.wait()
        if data.exists() and (data / "archive.lmdb").exists():
            exported = run_scrm("export", "--data", str(data))
            if exported.returncode != 0 and b"no archive here" in exported.stderr:
                continue  # killed before its tables were created (one transaction): nothing yet
            assert exported.returncode == 0, exported.stderr.decode()
            progress.append(len(exported.stdout.splitlines()))
    assert kills >= 20, f"only {kills} kills landed"
    final = run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(data), "--json",
                     "--no-progress", str(crash_corpus / "batches"), check=True)
    s = orjson.loads(final.stdout)
    assert s["quarantined"] == 0
    assert s["ingested"] + s["duplicates_skipped"] + s["dropped_by_consent"] == 12_000
    # the store only ever grew between kills, and the kills interrupted real work
    assert progress == sorted(progress) and len(set(progress)) > 3, progress
    export = run_scrm("export", "--data", str(data), check=True).stdout
    assert export == (crash_corpus / "expected.jsonl").read_bytes()
    # the search index holds every stored message exactly once
    with ArchiveStore(data, readonly=True) as store:
        stored_seqs = list(store.record_seqs())
        assert open_index(store).seqs() == stored_seqs
    # the consent events equal those of one uninterrupted ingest
    clean = tmp_path / "clean"
    run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(clean), "--directory",
             str(crash_corpus / "directory.json"), "--no-progress", str(crash_corpus / "batches"), check=True)
    for what in ("events", "rules"):
        assert run_scrm("consent", what, "--data", str(data), check=True).stdout == \
            run_scrm("consent", what, "--data", str(clean), check=True).stdout
    assert run_scrm("quarantine", "--data", str(data), check=True).stdout == b""
