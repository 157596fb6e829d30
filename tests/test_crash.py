"""Crash safety: SIGKILL the ingest process at random moments, resume each time; the
final archive equals the ground truth, nothing lost and nothing twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import orjson
from conftest import run_scrm


def test_sigkill_at_random_moments_then_resume(crash_corpus, tmp_path):
    data = tmp_path / "data"
    args = [sys.executable, "-m", "scrm_fast.cli", "ingest", "--keys", str(crash_corpus / "keys"),
            "--data", str(data), "--json", "--no-progress", str(crash_corpus / "batches")]
    rng = random.Random(2024)
    kills = 0
    progress = []
    for _ in range(60):
        if kills >= 22:
            break
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # start-up takes ~0.3 s, a 6,000-message ingest ~2 s more: kill anywhere in there
        time.sleep(rng.uniform(0.05, 1.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            proc.wait()
        if data.exists() and (data / "archive.lmdb").exists():
            stored = len(run_scrm("export", "--data", str(data), check=True).stdout.splitlines())
            progress.append(stored)
    assert kills >= 20, f"only {kills} kills landed"
    final = run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(data), "--json",
                     "--no-progress", str(crash_corpus / "batches"), check=True)
    s = orjson.loads(final.stdout)
    assert s["quarantined"] == 0
    assert s["ingested"] + s["duplicates_skipped"] == 6000
    # the store only ever grew between kills, and the kills interrupted real work
    assert progress == sorted(progress) and len(set(progress)) > 3, progress
    export = run_scrm("export", "--data", str(data), check=True).stdout
    assert export == (crash_corpus / "truth.jsonl").read_bytes()
    assert run_scrm("quarantine", "--data", str(data), check=True).stdout == b""
