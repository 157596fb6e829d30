"""`scrm sync` against the stand-in SDK (the vendor's C ABI, serving a simulated
enterprise): nothing lost or twice under faults and SIGKILLs, the aborting item contained,
each SDK return code handled on purpose, SIGTERM after the batch in hand, the call limit,
key versions not installed, wake-ups by msgaudit_notify."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from scrm_fast.errors import InputError
from scrm_fast.search import open_index
from scrm_fast.simulate import simulate
from scrm_fast.storage import ArchiveStore
from scrm_fast.sync import CallLimiter
from scrm_fast.wecom.standin import build_standin, feed_items, write_feed
from tests.conftest import run_scrm


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required (scripts/setup.sh installs it)")
    return build_standin(tmp_path_factory.mktemp("sdk"))


@pytest.fixture(scope="module")
def big_feed(tmp_path_factory) -> Path:
    """100,000 simulated messages (two key versions) laid out for the stand-in."""
    out = tmp_path_factory.mktemp("sync-100k")
    simulate(out / "corp", 100_000, seed=19)
    write_feed(out / "feed", feed_items(sorted((out / "corp" / "batches").glob("*.jsonl"))))
    return out


def _items(feed: Path) -> list[tuple[int, dict]]:
    lines = (feed / "chatdata.txt").read_bytes().splitlines()
    return [(int(seq), orjson.loads(raw)) for seq, raw in (line.split(b" ", 1) for line in lines)]


def _sync_args(data: Path, corp: Path, standin: Path, *more: str) -> list[str]:
    secret = data.parent / "secret"
    secret.write_text("the-archive-secret\n")
    return ["sync", "--data", str(data), "--corp", "wwstandin", "--secret-file", str(secret),
            "--keys", str(corp / "keys"), "--sdk", str(standin), "--backoff", "0.05", "--no-media", *more]


def test_100k_synced_through_faults_and_sigkills(big_feed, standin, tmp_path):
    corp, feed = big_feed / "corp", big_feed / "feed"
    items = _items(feed)
    poison = items[41_234][1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STANDIN_SDK_DATA": str(feed), "STANDIN_FAIL_EVERY": "7",
           "STANDIN_ABORT_MSG": poison["encrypt_chat_msg"][:40], "SCRM_INDEX_COMMIT_S": "0.2"}
    data = tmp_path / "data"
    args = [sys.executable, "-m", "control.cli", *_sync_args(data, corp, standin, "--json")]
    rng = random.Random(77)
    kills, progress = 0, []
    for _ in range(60):
        if kills >= 22:
            break
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.4, 2.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        if (data / "archive.lmdb").exists():
            try:
                with ArchiveStore(data, readonly=True) as store:
                    progress.append(store.checkpoint())
            except InputError:  # killed before its tables were created (one transaction)
                pass
    assert kills >= 20, f"only {kills} kills landed"
    assert progress == sorted(progress) and len(set(progress)) > 5, progress
    assert progress[-1] < items[-1][0], "the kills must interrupt the sync, not follow it"
    final = subprocess.run([*args, "--once"], capture_output=True, env=env, timeout=600)
    assert final.returncode == 0, final.stderr.decode()
    s = orjson.loads(final.stdout)
    assert s["checkpoint"] == items[-1][0]
    # everything stored exactly once, but the item that aborts the SDK, kept raw
    truth = (corp / "truth.jsonl").read_bytes().splitlines(keepends=True)
    expected = b"".join(t for t in truth if orjson.loads(t)["msgid"] != poison["msgid"])
    assert len(truth) == 100_000
    assert run_scrm("export", "--data", str(data), check=True).stdout == expected
    q = [orjson.loads(line) for line in
         run_scrm("quarantine", "--data", str(data), "--with-items", check=True).stdout.splitlines()]
    assert [(e["seq"], e["reason"]) for e in q] == [(poison["seq"], "sdk_crash")]
    assert orjson.loads(q[0]["item"]) == poison
    with ArchiveStore(data, readonly=True) as store:
        assert open_index(store).seqs() == list(store.record_seqs())
        with store.app_read() as t:  # every fetched answer was committed, then let go
            assert list(t.scan("sync.raw")) == []


def test_return_codes_stop_with_what_to_do(small_corpus, standin, tmp_path):
    feed = tmp_path / "feed"
    write_feed(feed, feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    base = {"STANDIN_SDK_DATA": str(feed), "STANDIN_FAIL_EVERY": "1"}
    cases = {"10009": "trusted IPs", "10011": "certificate", "10010": "expired", "10000": "bad parameter"}
    for code, words in cases.items():
        p = run_scrm(*_sync_args(tmp_path / f"d{code}", small_corpus, standin, "--once"),
                     env={**base, "STANDIN_FAIL_CODE": code})
        assert p.returncode != 0
        err = p.stderr.decode()
        assert f"returned {code}" in err and words in err and "Traceback" not in err, err
    # transient codes: retried with backoff, then given up on in --once mode, clearly
    p = run_scrm(*_sync_args(tmp_path / "d10001", small_corpus, standin, "--once", "--max-retries", "3"),
                 env={**base, "STANDIN_FAIL_CODE": "10001"})
    err = p.stderr.decode()
    assert p.returncode != 0 and "kept failing" in err and "4 times" in err and err.count("retrying in") == 3, err
    assert "Traceback" not in err


def test_real_vendor_sdk_offline_is_a_clear_error(small_corpus, tmp_path):
    pw = pytest.importorskip("pywecomarchive")
    sdk = Path(pw.__file__).parent / "lib" / "linux" / "x86_64" / "libWeWorkFinanceSdk_C.so"
    p = run_scrm(*_sync_args(tmp_path / "d", small_corpus, sdk, "--once", "--max-retries", "1", "--timeout", "2"),
                 timeout=300)
    err = p.stderr.decode()
    assert p.returncode != 0 and "10001" in err and "network" in err and "Traceback" not in err, err


def test_sigterm_stops_after_the_batch_in_hand(big_feed, standin, tmp_path):
    corp, feed = big_feed / "corp", big_feed / "feed"
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STANDIN_SDK_DATA": str(feed)}
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", *_sync_args(data, corp, standin, "--json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(3.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    s = orjson.loads(out)
    assert s["stopped_by"] == "signal" and 0 < s["ingested"] < 100_000
    # what was fetched is exactly what is stored: every seq up to the checkpoint, nothing after
    items = _items(feed)
    upto = [seq for seq, _ in items if seq <= s["checkpoint"]]
    with ArchiveStore(data, readonly=True) as store:
        assert list(store.record_seqs()) == upto
        assert s["fetched"] == len(upto)


def test_missing_key_version_stays_quarantined_until_installed(small_corpus, standin, tmp_path):
    feed = tmp_path / "feed"
    write_feed(feed, feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    only_v1 = tmp_path / "keys-v1"
    only_v1.mkdir()
    shutil.copy(small_corpus / "keys" / "1.pem", only_v1 / "1.pem")
    data = tmp_path / "d"
    args = _sync_args(data, small_corpus, standin, "--once", "--json")
    args[args.index("--keys") + 1] = str(only_v1)
    p = run_scrm(*args, env={"STANDIN_SDK_DATA": str(feed)}, check=True)
    s = orjson.loads(p.stdout)
    n_v2 = sum(1 for _, i in _items(feed) if i["publickey_ver"] == 2)
    assert n_v2 > 0 and s["quarantined_by_reason"] == {"unknown_key_version": n_v2}
    assert f"{n_v2} message(s) need private key version 2" in p.stderr.decode()
    assert s["checkpoint"] == _items(feed)[-1][0]  # the checkpoint moved on: the raw items are kept
    res = orjson.loads(run_scrm("quarantine", "--data", str(data), "--retry", "--keys", str(small_corpus / "keys"),
                                check=True).stdout)
    assert res["recovered"] == n_v2
    assert run_scrm("export", "--data", str(data), check=True).stdout == (small_corpus / "truth.jsonl").read_bytes()


def test_msgaudit_notify_wakes_the_sync(small_corpus, standin, tmp_path):
    """New data arrives at WeCom; the server records the callback; the waiting sync asks at
    once instead of at its (here: 10-minute) interval."""
    items = list(feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    feed = tmp_path / "feed"
    write_feed(feed, items[:1200])
    data = tmp_path / "d"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STANDIN_SDK_DATA": str(feed)}
    proc = subprocess.Popen([sys.executable, "-m", "control.cli",
                             *_sync_args(data, small_corpus, standin, "--interval", "600", "--json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        def checkpoint() -> int:
            if not (data / "archive.lmdb").exists():
                return 0
            try:
                with ArchiveStore(data, readonly=True) as store:
                    return store.checkpoint()
            except InputError:  # the sync is creating it
                return 0

        deadline = time.monotonic() + 60
        while checkpoint() != items[1199][0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert checkpoint() == items[1199][0]
        write_feed(feed, items[1200:], append=True)
        time.sleep(1.0)
        assert checkpoint() == items[1199][0]  # asleep: nothing asked yet
        # WeCom pushes msgaudit_notify to the server's callback; the server records it
        import asyncio

        from scrm_fast.clock import SystemClock
        from scrm_fast.wecom.fake import FakeWeCom
        from tests.conftest import start_serve
        from tests.test_wecom_callback import KEY, TOKEN

        fake = FakeWeCom(SystemClock())
        fake.s.corpid = "wwstandin"
        os.environ.update({"SCRM_WECOM_TOKEN": TOKEN, "SCRM_WECOM_AES_KEY": KEY, "SCRM_WECOM_CORP": "wwstandin"})
        try:
            serve, base = start_serve(data, "--workers", "1")
        finally:
            for k in ("SCRM_WECOM_TOKEN", "SCRM_WECOM_AES_KEY", "SCRM_WECOM_CORP"):
                os.environ.pop(k)
        try:
            status = asyncio.run(fake.push(f"{base}/wecom/callback", TOKEN, KEY,
                                           {"ToUserName": "wwstandin", "FromUserName": "sys", "MsgType": "event",
                                            "Event": "msgaudit_notify", "AgentID": "2000004"}))
            assert status == 200
        finally:
            serve.terminate()
            serve.wait(timeout=30)
        deadline = time.monotonic() + 30
        while checkpoint() != items[-1][0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert checkpoint() == items[-1][0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert orjson.loads(out)["rounds"] == 2
    assert run_scrm("export", "--data", str(data), check=True).stdout == (small_corpus / "truth.jsonl").read_bytes()


def test_call_limiter_never_exceeds_600_a_minute():
    """Random bursts on a fake clock: in no 60-second window more than 600 calls, and a
    caller waits only when the window is full."""
    rng = random.Random(5)
    now = [0.0]

    def sleep(s: float) -> None:
        assert s > 0
        now[0] += s

    lim = CallLimiter(now=lambda: now[0], sleep=sleep)
    times: list[float] = []
    for _ in range(5000):
        now[0] += rng.choice([0.0, 0.0, 0.001, 0.05, 0.2, 3.0])
        before = now[0]
        lim.acquire()
        times.append(now[0])
        if now[0] > before:  # it waited: the window before this call was full
            assert sum(1 for t in times[:-1] if t > before - 60) >= 600
    j = 0
    for i, t in enumerate(times):  # brute force over every window ending at a call
        while times[j] <= t - 60:
            j += 1
        assert i - j + 1 <= 600


async def test_lag_in_metrics_and_stats(small_corpus, standin, tmp_path, aiohttp_client, monkeypatch):
    from control.accounts import AccountService
    from control.app import create_app
    from control.config import ControlConfig

    feed = tmp_path / "feed"
    write_feed(feed, feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    data = tmp_path / "d"
    clock = tmp_path / "clock"
    clock.write_text("1800000000000")
    env = {"STANDIN_SDK_DATA": str(feed), "SCRM_CLOCK": f"file:{clock}"}
    run_scrm(*_sync_args(data, small_corpus, standin, "--once"), env=env, check=True)
    acc = AccountService(data)
    acc.create_user("boss", "a-long-password-1", "admin")
    acc.close()
    with ArchiveStore(data, readonly=True) as store:
        cp, newest = store.checkpoint(), store.stream_time()
    monkeypatch.setenv("SCRM_CLOCK", f"file:{clock}")
    clock.write_text("1800000090000")  # 90 s after the sync confirmed the checkpoint
    c = await aiohttp_client(create_app(ControlConfig(data_dir=data)))
    r = await c.post("/api/v1/auth/login", json={"username": "boss", "password": "a-long-password-1"})
    h = {"Authorization": f"Bearer {(await r.json())['token']}"}
    text = await (await c.get("/metrics", headers=h)).text()
    assert f"scrm_sync_checkpoint {cp}\n" in text and "scrm_sync_checkpoint_age_seconds 90.0\n" in text
    assert f"scrm_archive_lag_seconds {round((1800000090000 - newest) / 1000, 1)}\n" in text
    assert "scrm_sync_running 0\n" in text
    st = await (await c.get("/api/v1/stats", headers=h)).json()
    assert st["sync"]["checkpoint"] == cp and st["sync"]["checkpoint_age_s"] == 90.0


def test_demo_syncs_through_the_stand_ins(tmp_path):
    """The main job's path: directory from the fake WeCom, archive from the stand-in SDK
    through the supervised worker; what it stores is what the simulator says consent allows."""
    env = {k: v for k, v in os.environ.items() if k != "SCRM_MASTER_KEY_FILE"}
    p = subprocess.run([sys.executable, "-m", "control.cli", "demo", "--dir", str(tmp_path / "demo"), "--messages",
                        "2000", "--no-serve"], capture_output=True, env=env, timeout=600)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr.decode()
    assert "directory from the fake WeCom" in out and "synced 2,000 items" in out, out
    env["SCRM_MASTER_KEY_FILE"] = str(tmp_path / "demo" / "master.key")
    exported = subprocess.run([sys.executable, "-m", "control.cli", "export", "--data",
                               str(tmp_path / "demo" / "archive")], capture_output=True, env=env, check=True).stdout
    assert exported == (tmp_path / "demo" / "sim" / "expected.jsonl").read_bytes()
