"""Shared fixtures: real simulated corpora and real data directories, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scrm_fast.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent


def run_scrm(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs the real `scrm` CLI in a child process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "scrm_fast.cli", *args], capture_output=True,
                          timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"scrm {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(data: Path, *args: str, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """Starts the real `scrm serve` for ``data`` on a free loopback port and waits until it
    answers; returns the process and its base URL."""
    from scrm_fast.bench_http import wait_serving

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "scrm_fast.cli", "serve", "--data", str(data), "--port", str(port),
                             *args], stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    wait_serving(base)
    return proc, base


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """3,000 messages in documents of 250 items, two key versions."""
    out = tmp_path_factory.mktemp("corpus-small")
    simulate(out, 3000, seed=11, doc_items=250, docs_per_file=5)
    return out


@pytest.fixture(scope="session")
def crash_corpus(tmp_path_factory) -> Path:
    """12,000 messages in documents of 100 items: many commits to be killed between."""
    out = tmp_path_factory.mktemp("corpus-crash")
    simulate(out, 12_000, seed=23, doc_items=100, docs_per_file=20, service_requires_consent=True)
    return out
