from __future__ import annotations

from pathlib import Path

import pytest

from scrm_fast.simulate import simulate


@pytest.fixture(scope="session")
def bench_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench-corpus")
    simulate(out, 4000, seed=9)
    return out
