"""The access trail (R-4) as evidence: concurrent appends form one unbroken keyed chain
(group commit), and every tamper case is detected and named — a changed, removed or
reordered entry (the chain), a truncated tail, a whole-directory rollback and a deleted
trail (the anchor beside the master key) — while an untouched trail verifies."""

from __future__ import annotations

import asyncio
import shutil
import struct
import threading
from pathlib import Path

import lmdb
import orjson
import pytest

from scrm_fast.sealing import ENV_MASTER, new_master_key
from scrm_fast.storage import ArchiveStore
from scrm_fast.trail import AccessTrail, TrailTamperedError
from tests.conftest import run_scrm


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A data directory with its own master key file (so its anchor is this test's)."""
    key = tmp_path / "keys" / "master.key"
    key.parent.mkdir()
    new_master_key(key)
    monkeypatch.setenv(ENV_MASTER, str(key))
    d = tmp_path / "data"
    ArchiveStore(d).close()
    return d


def _trail(data: Path, readonly: bool = False) -> tuple[ArchiveStore, AccessTrail]:
    store = ArchiveStore(data, readonly=readonly)
    return store, AccessTrail(store, readonly=readonly)


def _verify(data: Path) -> dict:
    store, t = _trail(data, readonly=True)
    try:
        return t.verify()
    finally:
        t.close()
        store.close()


def _raw(data: Path, fn) -> None:
    env = lmdb.open(str(data / "trail.lmdb"), max_dbs=2)
    db = env.open_db(b"trail")
    with env.begin(write=True, db=db) as txn:
        fn(txn)
    env.close()


def _fill(data: Path, n: int, who: str = "user") -> list[dict]:
    store, t = _trail(data)
    out = [t.append(who, "read_messages", f"conv{j}") for j in range(n)]
    t.close()
    store.close()
    return out


def test_concurrent_appends_chain_and_verify_untouched(data):
    store, t = _trail(data)
    threads = [threading.Thread(target=lambda i=i: [t.append(f"user{i}", "read_messages", f"conv{j}")
                                                    for j in range(40)]) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    entries = t.entries()
    assert len(entries) == 320 and [e["index"] for e in entries] == list(range(320))
    assert t.verify() == {"ok": True, "entries": 320, "head": entries[-1]["mac"], "anchored": True}
    assert [e["index"] for e in t.entries(limit=5, newest_first=True)] == [319, 318, 317, 316, 315]
    assert [e["index"] for e in t.entries(limit=3, before=100, newest_first=True)] == [99, 98, 97]
    t.close()
    store.close()
    # sealed at rest: no entry's text is in the file
    raw = (data / "trail.lmdb" / "data.mdb").read_bytes()
    assert b"read_messages" not in raw and b"conv17" not in raw
    assert run_scrm("trail", "verify", "--data", str(data), check=True).returncode == 0


def test_changed_removed_and_reordered_entries_are_named(data):
    _fill(data, 60)
    k = lambda i: struct.pack(">Q", i)  # noqa: E731
    saved = {}

    def swap(txn):
        saved[10], saved[11] = txn.get(k(10)), txn.get(k(11))
        txn.put(k(10), saved[11])
        txn.put(k(11), saved[10])

    _raw(data, swap)
    r = _verify(data)
    assert not r["ok"] and r["first_broken"] == 10
    _raw(data, lambda txn: (txn.put(k(10), saved[10]), txn.put(k(11), saved[11])))
    assert _verify(data)["ok"]

    def flip(txn):
        v = bytearray(txn.get(k(20)))
        v[-3] ^= 1
        txn.put(k(20), bytes(v))

    _raw(data, flip)
    r = _verify(data)
    assert not r["ok"] and r["first_broken"] == 20 and "changed" in r["why"]
    p = run_scrm("trail", "verify", "--data", str(data))
    assert p.returncode == 3 and orjson.loads(p.stdout)["first_broken"] == 20


def test_a_removed_entry_in_the_middle_is_named(data):
    _fill(data, 30)
    _raw(data, lambda txn: txn.delete(struct.pack(">Q", 12)))
    r = _verify(data)
    assert not r["ok"] and r["first_broken"] == 13 and "removed" in r["why"]


def test_a_truncated_tail_is_detected_by_the_anchor(data):
    _fill(data, 30)
    # the chain alone cannot see this: the first 25 entries are a perfect chain
    _raw(data, lambda txn: [txn.delete(struct.pack(">Q", i)) for i in range(25, 30)])
    r = _verify(data)
    assert not r["ok"] and "truncated" in r["why"] and "30" in r["why"]
    with pytest.raises(TrailTamperedError, match="truncated"):  # nor does a server append to it
        _trail(data)


def test_a_rollback_of_the_whole_data_directory_is_detected(data, tmp_path):
    _fill(data, 10)
    copy = tmp_path / "older-copy"
    shutil.copytree(data, copy)
    _fill(data, 10, who="later")
    shutil.rmtree(data)
    shutil.copytree(copy, data)  # the directory as it was, every file consistent
    r = _verify(data)
    assert not r["ok"] and "rolled back" in r["why"]
    p = run_scrm("trail", "verify", "--data", str(data))
    assert p.returncode == 3
    with pytest.raises(TrailTamperedError):
        _trail(data)


def test_a_rollback_then_new_entries_is_detected(data, tmp_path):
    _fill(data, 10)
    copy = tmp_path / "older-copy"
    shutil.copytree(data, copy)
    _fill(data, 5, who="later")
    anchor_after = list((tmp_path / "keys").glob("*.anchor"))[0].read_bytes()
    shutil.rmtree(data)
    shutil.copytree(copy, data)
    # someone appends to the old copy with the keys, but writes no anchor (a different one)
    store = ArchiveStore(data)
    t = AccessTrail(store, anchor=tmp_path / "elsewhere.anchor")
    for j in range(8):
        t.append("intruder", "read_messages", f"x{j}")
    t.close()
    store.close()
    assert list((tmp_path / "keys").glob("*.anchor"))[0].read_bytes() == anchor_after
    r = _verify(data)
    assert not r["ok"] and "rolled back" in r["why"]


def test_a_deleted_trail_is_detected(data):
    _fill(data, 5)
    shutil.rmtree(data / "trail.lmdb")
    r = _verify(data)
    assert not r["ok"] and "deleted" in r["why"]
    assert run_scrm("trail", "verify", "--data", str(data)).returncode == 3


def test_a_forged_anchor_is_refused(data, tmp_path):
    _fill(data, 5)
    anchor = list((tmp_path / "keys").glob("*.anchor"))[0]
    raw = anchor.read_bytes()
    slots = [raw[i:i + 256] for i in range(0, len(raw), 256)]
    assert len(slots) == 2  # two slots written in turn
    forged = []
    for slot in slots:
        a = orjson.loads(slot)
        a["entries"] = 2  # to hide a truncation, one would have to forge the anchor's MAC
        forged.append(orjson.dumps(a).ljust(255) + b"\n")
    anchor.write_bytes(b"".join(forged))
    r = _verify(data)
    assert not r["ok"] and "anchor" in r["why"]


def test_async_appends_from_an_event_loop_and_threads_share_one_chain(data):
    store, t = _trail(data)
    sync_done = []

    async def main() -> list[dict]:
        th = threading.Thread(target=lambda: sync_done.extend(t.append("sync", "search", str(j)) for j in range(50)))
        th.start()
        got = await asyncio.gather(*(t.append_async("loop", "search", str(j), {"j": j}) for j in range(150)))
        await asyncio.to_thread(th.join)
        return got

    got = asyncio.run(main())
    # each future resolves to its own durable entry
    assert [e["detail"]["j"] for e in got] == list(range(150))
    assert len({e["index"] for e in got + sync_done}) == 200
    assert t.verify() == {"ok": True, "entries": 200, "head": t.entries()[-1]["mac"], "anchored": True}
    t.close()
    store.close()
    assert _verify(data)["entries"] == 200


def test_entries_a_loop_appended_are_written_when_the_trail_closes(data):
    store, t = _trail(data)

    async def main() -> asyncio.Future:
        fut = t.append_async("loop", "search", "q")  # its commit is due at the loop's next turn
        t.close()  # closed first, from the loop's own thread
        return await fut

    entry = asyncio.run(main())
    store.close()
    assert entry["index"] == 0
    assert _verify(data)["entries"] == 1


def test_every_cli_command_that_prints_content_is_trailed(small_corpus, tmp_path):
    data = tmp_path / "d"
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(small_corpus / "batches"), check=True)
    commands = {"search": ["search", "--data", str(data), "的"], "export": ["export", "--data", str(data)],
                "read_audits": ["audit", "list", "--data", str(data)],
                "read_audit_context": ["audit", "list", "--data", str(data), "--context"],
                "read_alerts": ["alerts", "list", "--data", str(data)]}
    for action, args in commands.items():
        run_scrm(*args, check=True)
        store, t = _trail(data, readonly=True)
        last = t.entries(limit=1, newest_first=True)
        t.close()
        store.close()
        assert last and last[0]["action"] == action and last[0]["user"].startswith("cli:"), (action, last)
    assert orjson.loads(run_scrm("trail", "verify", "--data", str(data), check=True).stdout)["entries"] == 5


def test_settings_changed_from_the_cli_are_on_the_trail(tmp_path):
    """Rule R-4 for settings: the word list, the behaviour switches, the timeout levels and a
    new account, changed from the command line, each leave an entry naming what changed."""
    data = tmp_path / "d"
    ArchiveStore(data).close()
    words = tmp_path / "w.txt"
    words.write_text("保本,稳赚\n", encoding="utf-8")
    run_scrm("words", "import", "--data", str(data), str(words), check=True)
    run_scrm("audit", "behaviours", "--data", str(data), "--set", "red_packet=off", check=True)
    run_scrm("alerts", "thresholds", "--data", str(data), "--set", "10m,1h", check=True)
    run_scrm("users", "add", "--data", str(data), "--role", "auditor", "--password", "long-enough-1",
             "--username", "eve", check=True)
    with ArchiveStore(data, readonly=True) as store:
        t = AccessTrail(store, readonly=True)
        entries = {e["action"]: e for e in t.entries()}
        t.close()
    assert entries["words_replaced"]["detail"]["entries"] == 1
    assert entries["behaviours_changed"]["detail"]["red_packet"] is False
    assert entries["thresholds_changed"]["detail"]["reply_thresholds_ms"] == [600_000, 3_600_000]
    assert entries["user_created"]["target"] == "eve" and entries["user_created"]["detail"]["role"] == "auditor"
    assert all(e["user"].startswith("cli:") for e in entries.values())
