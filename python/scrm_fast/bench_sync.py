"""``scrm bench sync``: the live sync against the stand-in SDK (the vendor's C ABI, a
simulated enterprise) beside ``scrm ingest`` of the same data from files, in the same run,
round by round (each a fresh data directory, the order rotated), so the machine's noise
hits all alike:

- ``ingest``: files, the open scheme in the engine (the baseline);
- ``ingest_vendor``: files, ``DecryptData`` in the supervised SDK worker (the process boundary);
- ``sync``: ``scrm sync --once``, GetChatData and ``DecryptData`` through the worker, each
  batch durable before the next call.

Rates are stored-or-judged messages per wall second of the whole command (start-up
included); consent is on (the simulated directory imported first)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from scrm_fast.bench import _child_env
from scrm_fast.simulate import simulate
from scrm_fast.wecom.standin import build_standin, feed_items, write_feed


def _run(args: list[str], env: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "scrm_fast.cli", *args], capture_output=True, env=env, check=False)
    el = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"scrm {args[0]} failed: {p.stderr.decode(errors='replace').strip()[-2000:]}")
    return orjson.loads(p.stdout), el


def bench_sync(messages: int = 50_000, rounds: int = 5, corpus: str | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="scrm-bench-sync-") as tmp:
        t = Path(tmp)
        root = Path(corpus) if corpus else t / "corpus"
        if not (root / "truth.jsonl").exists():
            simulate(root, messages, seed=7)
        files = [str(f) for f in sorted((root / "batches").glob("*.jsonl"))]
        feed = t / "feed"
        n_items = write_feed(feed, feed_items(map(Path, files)))
        sdk = build_standin(t / "sdk")
        (t / "secret").write_text("bench-secret")
        env = _child_env(t / "data")
        env["STANDIN_SDK_DATA"] = str(feed)
        expected = (root / "expected.jsonl").read_bytes()
        rows = []
        correct = True
        for r in range(rounds):
            row = {}
            variants = ["ingest", "ingest_vendor", "sync"]
            for variant in variants[r % 3:] + variants[:r % 3]:  # each goes first in turn
                data = t / f"data-{variant}-{r}"
                common = ["--keys", str(root / "keys"), "--data", str(data)]
                if variant == "sync":
                    subprocess.run([sys.executable, "-m", "scrm_fast.cli", "directory", "import", "--data", str(data),
                                    str(root / "directory.json")], env=env, check=True, capture_output=True)
                    s, el = _run(["sync", *common, "--corp", "wwbench", "--secret-file", str(t / "secret"),
                                  "--sdk", str(sdk), "--once", "--no-media", "--json"], env)
                    judged = s["ingested"] + s["dropped_by_consent"]
                else:
                    vendor = ["--cipher", "vendor", "--sdk", str(sdk)] if variant == "ingest_vendor" else []
                    s, el = _run(["ingest", *common, "--directory", str(root / "directory.json"), *vendor,
                                  "--json", "--no-progress", *files], env)
                    judged = s["ingested"] + s["dropped_by_consent"]
                correct &= judged == n_items and s["quarantined"] == 0
                exported = subprocess.run([sys.executable, "-m", "scrm_fast.cli", "export", "--data", str(data)],
                                          env=env, capture_output=True, check=False).stdout
                correct &= exported == expected
                row[variant] = judged / el
                shutil.rmtree(data)
            rows.append(row)

    def med(k: str) -> float:
        return statistics.median(x[k] for x in rows)

    return {
        "messages": n_items, "rounds": rounds,
        "ingest_msgs_per_s": round(med("ingest"), 1),
        "ingest_vendor_msgs_per_s": round(med("ingest_vendor"), 1),
        "sync_msgs_per_s": round(med("sync"), 1),
        "sync_vs_ingest": round(statistics.median(x["sync"] / x["ingest"] for x in rows), 3),
        "ingest_vendor_vs_ingest": round(statistics.median(x["ingest_vendor"] / x["ingest"] for x in rows), 3),
        "sync_vs_ingest_vendor": round(statistics.median(x["sync"] / x["ingest_vendor"] for x in rows), 3),
        "per_round": [{k: round(v, 1) for k, v in x.items()} for x in rows],
        "correct": bool(correct),
    }


def format_sync_report(r: dict) -> str:
    lines = [f"sync bench: {r['messages']:,} messages, {r['rounds']} rounds (median msg/s, wall time incl. start-up)",
             f"  scrm ingest (files, open scheme)      {r['ingest_msgs_per_s']:>10,.0f}",
             f"  scrm ingest (files, SDK worker)       {r['ingest_vendor_msgs_per_s']:>10,.0f}   "
             f"× {r['ingest_vendor_vs_ingest']:.3f} of ingest",
             f"  scrm sync --once (stand-in SDK)       {r['sync_msgs_per_s']:>10,.0f}   "
             f"× {r['sync_vs_ingest']:.3f} of ingest",
             f"  correct (export = expected, nothing quarantined): {r['correct']}"]
    return "\n".join(lines)
