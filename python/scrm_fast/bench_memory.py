"""``scrm bench memory``: peak anonymous memory of ``scrm ingest`` at several corpus sizes.

Each round ingests a simulated enterprise (consent on, a word list, the index) into a
fresh data directory with the real CLI in a child process, whose ``RssAnon`` (heap and
other private memory; not the LMDB map or the index files, which are the page cache's)
is sampled every 10 ms. A pipeline whose memory is bounded shows the same peak at every
size; the report gives the median peak of every size and the ratio of the largest to the
smallest."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from scrm_fast.simulate import simulate

# ordinary words and phrases, so that audits and alerts are written as the run goes
WORDS = "保本,稳赚\n返点,回扣 | kickback | 3 | both\n微信,vx\n红包\n转账\n"


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


def peak_anon_of(cmd: list[str], env: dict[str, str], interval_s: float = 0.01) -> tuple[int, int, float, bytes]:
    """Runs ``cmd``; returns (peak RssAnon KiB sampled, VmHWM KiB at the end, seconds,
    stdout). Raises RuntimeError naming the child's error when it fails."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak = hwm = 0
        while p.poll() is None:
            anon = _status_kib(p.pid, "RssAnon:")
            hwm = max(hwm, _status_kib(p.pid, "VmHWM:") or 0)
            if anon is not None:
                peak = max(peak, anon)
            time.sleep(interval_s)
        elapsed = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:4])} failed: {err.read().decode(errors='replace').strip()[-800:]}")
        return peak, hwm, elapsed, out.read()


def _corpus(root: Path, n: int) -> Path:
    c = root / f"n{n}"
    if not (c / "truth.jsonl").exists():
        simulate(c, n, seed=3)
    return c


def bench_memory(sizes: list[int], rounds: int = 5, corpus_dir: str | None = None) -> dict:
    from scrm_fast.bench import _child_env

    sizes = sorted(set(sizes))
    with tempfile.TemporaryDirectory(prefix="scrm-bench-mem-") as tmp:
        root = Path(corpus_dir) if corpus_dir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        corpora = {n: _corpus(root, n) for n in sizes}
        words = Path(tmp) / "words.txt"
        words.write_text(WORDS, encoding="utf-8")
        rows: dict[int, list[dict]] = {n: [] for n in sizes}
        for _ in range(rounds):
            for n in sizes:  # interleaved: the machine's noise hits every size alike
                data = Path(tmp) / "data"
                subprocess.run(["rm", "-rf", str(data)], check=True)
                env = _child_env(data)
                cli = [sys.executable, "-m", "scrm_fast.cli"]
                subprocess.run([*cli, "words", "import", "--data", str(data), str(words)], env=env, check=True,
                               capture_output=True)
                c = corpora[n]
                peak, hwm, elapsed, out = peak_anon_of(
                    [*cli, "ingest", "--keys", str(c / "keys"), "--data", str(data), "--directory",
                     str(c / "directory.json"), "--no-progress", "--json", str(c / "batches")], env)
                s = orjson.loads(out)
                rows[n].append({"peak_rss_anon_mib": round(peak / 1024, 1), "vm_hwm_mib": round(hwm / 1024, 1),
                                "elapsed_s": round(elapsed, 1), "stored": s["ingested"],
                                "decrypted": s["ingested"] + s["dropped_by_consent"]})
    med = {n: statistics.median(x["peak_rss_anon_mib"] for x in rows[n]) for n in sizes}
    return {
        "rounds": rounds,
        "sizes": [{"messages": n, "median_peak_rss_anon_mib": round(med[n], 1),
                   "median_vm_hwm_mib": round(statistics.median(x["vm_hwm_mib"] for x in rows[n]), 1),
                   "per_round": rows[n]} for n in sizes],
        "ratio_largest_to_smallest": round(med[sizes[-1]] / med[sizes[0]], 3) if med[sizes[0]] else None,
    }


def format_memory_report(r: dict) -> str:
    lines = [f"scrm bench memory — peak RssAnon of `scrm ingest`, median of {r['rounds']} rounds"]
    for s in r["sizes"]:
        peaks = ", ".join(f"{x['peak_rss_anon_mib']:.0f}" for x in s["per_round"])
        lines.append(f"  {s['messages']:>10,} messages  {s['median_peak_rss_anon_mib']:>7.1f} MiB   "
                     f"(rounds: {peaks}; VmHWM {s['median_vm_hwm_mib']:.0f} MiB incl. mapped files)")
    lines.append(f"  largest / smallest        {r['ratio_largest_to_smallest']:>7.3f}   (target ≤ 1.3, and < 512 MiB)")
    return "\n".join(lines)

