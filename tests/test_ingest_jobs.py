"""Durable ingest (issue 14 item 6): upload jobs that survive killing the server, one ingest
at a time by the data directory's lease, timeout-reply alerts (A-6) that survive a kill
between the last commit and the pass, and a quarantine retry that runs the whole pipeline."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from control.accounts import AccountService
from control.bench_http import login, wait_serving
from scrm_fast.search import open_index
from scrm_fast.storage import ArchiveStore
from tests.conftest import free_port, run_scrm

PASSWORD = "correct-horse-9"
WORDS = "微信,转账 | payment | 3\n红包 | money | 2\n"
# `scrm` whose A-6 pass is replaced by an immediate exit: a kill at exactly that moment
KILLED_BEFORE_A6 = ("import os, sys\nimport scrm_fast.audit as a\n"
                    "a.recompute_due_timeouts = lambda *x, **k: os._exit(9)\n"
                    "from control.cli import main\nsys.exit(main(sys.argv[1:]))\n")


def _timeouts(data: Path) -> list[tuple]:
    rows = orjson.loads(run_scrm("alerts", "list", "--data", str(data), "--json", check=True).stdout)
    return sorted((r["id"], r["conv"], r["customer"], tuple(r["notify"]), r["answered_at"], r["delay_ms"])
                  for r in rows if r["kind"] == "timeout_reply")


def _audits(data: Path) -> list[tuple]:
    rows = orjson.loads(run_scrm("audit", "list", "--data", str(data), "--json", check=True).stdout)
    return sorted((r["id"], tuple(r.get("words") or ())) for r in rows)


def _ingest_args(corpus: Path, data: Path, keys: Path | None = None) -> list[str]:
    return ["ingest", "--keys", str(keys or corpus / "keys"), "--data", str(data), "--directory",
            str(corpus / "directory.json"), "--json", "--no-progress", str(corpus / "batches")]


@pytest.fixture(scope="module")
def clean(small_corpus, tmp_path_factory) -> Path:
    """The small corpus ingested in one uninterrupted run, with a word list."""
    data = tmp_path_factory.mktemp("clean") / "data"
    _words(data)
    run_scrm(*_ingest_args(small_corpus, data), check=True)
    return data


def _words(data: Path) -> None:
    ArchiveStore(data).close()
    f = data.parent / "words.txt"
    f.write_text(WORDS, encoding="utf-8")
    run_scrm("words", "import", "--data", str(data), str(f), check=True)


def test_a_kill_before_the_timeout_pass_loses_no_alert(small_corpus, clean, tmp_path):
    want = _timeouts(clean)
    assert len(want) > 20  # the corpus has unanswered customers: the oracle is not empty
    for recover in ("ingest", "serve"):
        data = tmp_path / recover / "data"
        _words(data)
        p = subprocess.run([sys.executable, "-c", KILLED_BEFORE_A6, *_ingest_args(small_corpus, data)],
                           capture_output=True, timeout=600)
        assert p.returncode == 9, p.stderr.decode()
        # every batch is committed, no timeout alert was computed
        assert run_scrm("export", "--data", str(data), check=True).stdout == \
            run_scrm("export", "--data", str(clean), check=True).stdout
        assert _timeouts(data) == []
        if recover == "ingest":  # the next run (every message a duplicate) does the due pass
            s = orjson.loads(run_scrm(*_ingest_args(small_corpus, data), check=True).stdout)
            assert s["ingested"] == 0 and s["timeout_alerts"] == len(want)
        else:  # or a server starting on the data directory
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(data),
                                     "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_serving(f"http://127.0.0.1:{port}")
                for _ in range(300):
                    if _timeouts(data):
                        break
                    time.sleep(0.1)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        assert _timeouts(data) == want
        assert _audits(data) == _audits(clean)


def test_a_quarantine_retry_runs_the_whole_pipeline(small_corpus, clean, tmp_path):
    keys1 = tmp_path / "keys1"
    keys1.mkdir()
    shutil.copy(small_corpus / "keys" / "1.pem", keys1 / "1.pem")
    data = tmp_path / "data"
    _words(data)
    s = orjson.loads(run_scrm(*_ingest_args(small_corpus, data, keys1), check=True).stdout)
    assert s["quarantined"] > 1000
    assert len(_audits(data)) < len(_audits(clean))
    res = orjson.loads(run_scrm("quarantine", "--data", str(data), "--retry", "--keys", str(small_corpus / "keys"),
                                check=True).stdout)
    assert res["recovered"] + res["dropped_by_consent"] == s["quarantined"] and res["still_quarantined"] == 0
    assert res["audit_records"] > 0
    # audits, alerts (sensitive words and A-6) and the index equal those of the clean run
    assert _audits(data) == _audits(clean)
    assert _timeouts(data) == _timeouts(clean)
    rows = orjson.loads(run_scrm("alerts", "list", "--data", str(data), "--json", check=True).stdout)
    clean_rows = orjson.loads(run_scrm("alerts", "list", "--data", str(clean), "--json", check=True).stdout)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in clean_rows)
    with ArchiveStore(data, readonly=True) as store:
        assert open_index(store).seqs() == list(store.record_seqs())


def _held(path: Path) -> bool:
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_one_ingest_at_a_time(crash_corpus, tmp_path):
    data = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-m", "control.cli", "ingest", "--keys", str(crash_corpus / "keys"),
                              "--data", str(data), "--json", "--no-progress", str(crash_corpus / "batches")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(600):
        if _held(data / "ingest.lease") or first.poll() is not None:
            break
        time.sleep(0.01)
    second = run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(data), "--no-progress",
                      str(crash_corpus / "batches"))
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err.decode()
    msg = second.stderr.decode()
    assert second.returncode != 0 and "another ingest is running" in msg and f"pid {first.pid}" in msg, msg
    assert "Traceback" not in msg
    s = orjson.loads(out)
    assert s["ingested"] == 12_000
    # the lease went with the first process: a third run goes ahead
    assert orjson.loads(run_scrm("ingest", "--keys", str(crash_corpus / "keys"), "--data", str(data), "--json",
                                 "--no-progress", str(crash_corpus / "batches"), check=True).stdout
                        )["duplicates_skipped"] == 12_000


def _serve(data: Path, keys: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(data), "--port", str(port),
                             "--workers", "2", "--keys", str(keys)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_serving(f"http://127.0.0.1:{port}")
    return proc


def _call(base: str, path: str, token: str, data: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


def test_an_upload_job_survives_killing_the_server(crash_corpus, tmp_path):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(data, crash_corpus / "keys", port)
    body = b"".join(p.read_bytes() for p in sorted((crash_corpus / "batches").glob("*.jsonl")))
    try:
        token = login(base, "boss", PASSWORD)
        status, job = _call(base, "/api/v1/ingest", token, body)
        assert status == 202 and job["status"] == "queued", job
        # the upload is on disk, sealed nowhere but ours (0600), before the answer came
        kept = data / "uploads" / f"{job['id']}.jsonl"
        assert kept.read_bytes() == body and kept.stat().st_mode & 0o777 == 0o600
        with ArchiveStore(data, readonly=True) as store:
            for _ in range(30_000):  # kill every server process once the job has stored part of it
                stored = store.record_count()
                if stored > 0:
                    break
                time.sleep(0.001)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert 0 < stored < 12_000, stored
    assert _call_after_restart(data, crash_corpus, port, job["id"]) is not None


def _call_after_restart(data: Path, corpus: Path, port: int, job_id: str) -> dict:
    base = f"http://127.0.0.1:{port}"
    proc = _serve(data, corpus / "keys", port)
    try:
        token = login(base, "boss", PASSWORD)
        for _ in range(1200):
            status, job = _call(base, f"/api/v1/jobs/{job_id}", token)
            assert status == 200, job
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert job["status"] == "done" and job["attempts"] == 2, job
        s = job["summary"]
        assert s["ingested"] + s["duplicates_skipped"] == 12_000 and s["ingested"] > 0 and s["quarantined"] == 0
        assert not (data / "uploads" / f"{job_id}.jsonl").exists()
        # a job that fails keeps its file and says why
        status, bad = _call(base, "/api/v1/ingest", token, b"plain text\nnot a response\nat all\n")
        assert status == 202
        for _ in range(300):
            bad = _call(base, f"/api/v1/jobs/{bad['id']}", token)[1]
            if bad["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert bad["status"] == "failed" and "not GetChatData responses" in bad["error"], bad
        assert (data / bad["kept"]).read_bytes() == b"plain text\nnot a response\nat all\n"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    # each message exactly once: the export is the corpus' ground truth (no directory: no consent)
    assert run_scrm("export", "--data", str(data), check=True).stdout == (corpus / "truth.jsonl").read_bytes()
    with ArchiveStore(data, readonly=True) as store:
        assert open_index(store).seqs() == list(store.record_seqs())
    return job


@pytest.mark.parametrize("remembered", [None, 3])
def test_an_ingest_marks_every_conversation_it_adds_to_due(small_corpus, tmp_path, monkeypatch, remembered):
    """Rule A-6's crash safety: before the run's pass, the due marks name every one-to-one
    conversation the committed batches added to (a conversation marked by an earlier batch
    is not marked again; with a memory of 3, marks are written again past it). Oracle: the
    store's own list of conversations."""
    from scrm_fast import KeyRing, audit, pipeline
    from scrm_fast.directory import load_directory
    from scrm_fast.tenant import Tenant

    if remembered is not None:
        monkeypatch.setattr(pipeline, "MARKED_AT_MOST", remembered)
    monkeypatch.setattr(audit, "recompute_due_timeouts", lambda *a, **k: 0)  # the run's pass: not run
    with Tenant(tmp_path / "data") as t:
        t.import_directory(load_directory(small_corpus / "directory.json"))
        files = sorted((small_corpus / "batches").glob("*.jsonl"))
        s = t.ingest(files, KeyRing.load_dir(small_corpus / "keys"))
        assert s.ingested > 0 and s.documents > 3  # several batches: later ones add to earlier convs
        want = {c.conv for c in t.store.conversation_summaries() if c.conv.startswith("p:")}
        assert len(want) > 10
        assert audit.timeouts_due(t.store) == len(want)
