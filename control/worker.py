"""One server process of ``scrm serve --workers N`` (started by ``control.workers``): the
configuration comes in ``SCRM_WORKER_CONFIG``, the supervisor's channel in ``SCRM_WORKER_FD``."""

from __future__ import annotations

import os

from control.config import ControlConfig
from control.workers import serve_worker

if __name__ == "__main__":
    from scrm_fast.sealing import private_umask

    private_umask()  # what this worker creates in the data directory is 0600 / 0700
    serve_worker(ControlConfig.from_json(os.environ["SCRM_WORKER_CONFIG"]), int(os.environ["SCRM_WORKER_FD"]))
