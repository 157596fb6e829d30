"""The access trail (R-4): concurrent appends form one unbroken chain (group commit), and
any change, removal or reordering of a stored entry is detected and named."""

from __future__ import annotations

import asyncio
import struct
import threading

import lmdb
import orjson

from scrm_fast.trail import AccessTrail


def test_concurrent_appends_chain_and_tampering(tmp_path):
    t = AccessTrail(tmp_path)
    threads = [threading.Thread(target=lambda i=i: [t.append(f"user{i}", "read_messages", f"conv{j}")
                                                    for j in range(40)]) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    entries = t.entries()
    assert len(entries) == 320 and [e["index"] for e in entries] == list(range(320))
    assert t.verify() == {"ok": True, "entries": 320, "head": entries[-1]["hash"]}
    t.close()

    def tamper(fn):
        env = lmdb.open(str(tmp_path / "trail.lmdb"), max_dbs=2)
        db = env.open_db(b"trail")
        with env.begin(write=True, db=db) as txn:
            fn(txn)
        env.close()
        tr = AccessTrail(tmp_path, readonly=True)
        try:
            return tr.verify()
        finally:
            tr.close()

    key = struct.pack(">Q", 200)
    original = {}

    def swap_two(txn):
        a, b = txn.get(struct.pack(">Q", 100)), txn.get(struct.pack(">Q", 101))
        original["a"], original["b"] = a, b
        txn.put(struct.pack(">Q", 100), b)
        txn.put(struct.pack(">Q", 101), a)

    r = tamper(swap_two)
    assert not r["ok"] and r["first_broken"] == 100

    def restore_and_delete(txn):
        txn.put(struct.pack(">Q", 100), original["a"])
        txn.put(struct.pack(">Q", 101), original["b"])
        txn.delete(key)

    r = tamper(restore_and_delete)
    assert not r["ok"] and r["first_broken"] == 201 and "removed" in r["why"]

    def edit(txn):
        e = orjson.loads(txn.get(struct.pack(">Q", 50)))
        e["target"] = "elsewhere"
        txn.put(struct.pack(">Q", 50), orjson.dumps(e))

    r = tamper(edit)
    assert not r["ok"] and r["first_broken"] == 50 and "changed" in r["why"]


def test_async_appends_from_an_event_loop_and_threads_share_one_chain(tmp_path):

    t = AccessTrail(tmp_path)
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
    assert t.verify() == {"ok": True, "entries": 200, "head": t.entries()[-1]["hash"]}
    t.close()
    reopened = AccessTrail(tmp_path, readonly=True)
    assert reopened.verify()["entries"] == 200
    reopened.close()


def test_entries_a_loop_appended_are_written_when_the_trail_closes(tmp_path):
    t = AccessTrail(tmp_path)

    async def main() -> asyncio.Future:
        fut = t.append_async("loop", "search", "q")  # its commit is due at the loop's next turn
        t.close()  # closed first, from the loop's own thread
        return await fut

    entry = asyncio.run(main())
    assert entry["index"] == 0
    reopened = AccessTrail(tmp_path, readonly=True)
    assert reopened.verify()["entries"] == 1
    reopened.close()
