"""Shared fixtures: real simulated corpora and real data directories, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scrm_fast.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def master_key(tmp_path_factory) -> Path:
    """One master key for the whole run, outside every data directory, named by
    ``SCRM_MASTER_KEY_FILE`` (the CLI, the server's workers and the library read it)."""
    from scrm_fast.sealing import ENV_MASTER, new_master_key

    path = tmp_path_factory.mktemp("keys-at-rest") / "master.key"
    new_master_key(path)
    old = os.environ.get(ENV_MASTER)
    os.environ[ENV_MASTER] = str(path)
    yield path
    if old is None:
        os.environ.pop(ENV_MASTER, None)
    else:
        os.environ[ENV_MASTER] = old


def run_scrm(*args: str, check: bool = False, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the real `scrm` CLI in a child process (``env``: more environment)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "control.cli", *args], capture_output=True,
                          timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"scrm {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


from scrm_fast.wecom.thread import free_port  # noqa: E402,F401 - the tests' import of it


def start_serve(data: Path, *args: str, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, str]:
    """Starts the real `scrm serve` for ``data`` on a free loopback port and waits until it
    answers; returns the process and its base URL."""
    from control.bench_http import wait_serving

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "control.cli", "serve", "--data", str(data), "--port", str(port),
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
