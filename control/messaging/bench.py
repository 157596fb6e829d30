"""``scrm bench messaging``: the check-and-reserve of a 10,000-recipient enterprise send
(target: under 100 ms on this machine) and its preview, beside a baseline measured in the
same run — the same rows read and written through the store without the quota rules."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

T0 = 1796090400000


def bench_messaging(recipients: int = 10_000, rounds: int = 5) -> dict:
    from control.messaging import quota
    from control.messaging.sends import Sends
    from scrm_fast import sealing
    from scrm_fast.clock import ManualClock
    from scrm_fast.storage import ArchiveStore

    root = Path(tempfile.mkdtemp(prefix="scrm-bench-msg-"))
    if not os.environ.get(sealing.ENV_MASTER):
        sealing.new_master_key(root / "master.key")
        os.environ[sealing.ENV_MASTER] = str(root / "master.key")
    store = ArchiveStore(root / "d")
    clock = ManualClock(T0)
    sends = Sends(store, clock)
    base, reserve, preview, create, refuse = [], [], [], [], []
    for r in range(rounds):
        ids = [f"wm{r:02d}{i:07d}" for i in range(recipients)]
        keys = [x.encode() for x in ids]
        with store.app_write() as t:  # baseline: read and write the same rows, no rules
            t0 = time.perf_counter()
            rows = t.get_many("q.b", keys)
            t.put_many("q.b", [(k, {"em": ["2026-12", 1]} if v is None else v) for k, v in zip(keys, rows,
                                                                                              strict=True)])
            base.append(time.perf_counter() - t0)
        doc = {"kind": "enterprise", "sender": "zhang", "customers": ids, "text": "年终回馈"}
        with store.app_read() as t:
            t0 = time.perf_counter()
            p = sends.preview(t, doc, {})
            preview.append(time.perf_counter() - t0)
            assert p["reach"] == recipients
        with store.app_write() as t:
            t0 = time.perf_counter()
            ok, _ = quota.reserve(t, ids, "enterprise", T0, False)
            reserve.append(time.perf_counter() - t0)
            assert len(ok) == recipients
        with store.app_write() as t:  # the whole create: content, recipients, quota, the send stored
            t0 = time.perf_counter()
            s = sends.create(t, {**doc, "customers": [f"wx{r:02d}{i:07d}" for i in range(recipients)]}, {}, "b")
            create.append(time.perf_counter() - t0)
            assert len(s["recipients"]) == recipients
        for _ in range(3):  # up to the monthly four, then every one refused
            with store.app_write() as t:
                quota.reserve(t, ids, "enterprise", T0, False)
        with store.app_write() as t:
            t0 = time.perf_counter()
            ok, refused = quota.reserve(t, ids, "enterprise", T0, False)
            refuse.append(time.perf_counter() - t0)
            assert not ok and len(refused) == recipients
    store.close()
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    return {"recipients": recipients, "rounds": rounds, "baseline_rows_ms": ms(base), "reserve_ms": ms(reserve),
            "reserve_ratio_to_baseline": round(statistics.median(reserve) / statistics.median(base), 2),
            "refuse_all_ms": ms(refuse), "preview_ms": ms(preview), "create_whole_send_ms": ms(create),
            "reserve_per_s": round(recipients / statistics.median(reserve))}
