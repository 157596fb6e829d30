"""One server process of ``scrm serve --workers N`` (started by ``control.app.serve``): the
configuration comes in ``SCRM_WORKER_CONFIG``; the port is shared with the other workers."""

from __future__ import annotations

import os

from control.app import serve_one
from control.config import ControlConfig

if __name__ == "__main__":
    serve_one(ControlConfig.from_json(os.environ["SCRM_WORKER_CONFIG"]), reuse_port=True)
