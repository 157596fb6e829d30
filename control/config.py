"""The control plane's one typed configuration object (from arguments or environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ControlConfig:
    data_dir: Path
    keys_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # JSON bodies are small; uploads of GetChatData files are not
    max_json_bytes: int = 1 << 20
    max_upload_bytes: int = 256 << 20
    session_ttl_s: int = 12 * 3600
    # API tokens: 90 days unless asked otherwise, never longer than this
    api_token_max_days: int = 365
    web_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent / "web")
    # server processes (control.workers hands them the connections): one Python process keeps one core
    # busy at most (the GIL); archive reads scale with processes
    workers: int = 1
    # threads per worker for archive reads that were slow or are new (the Rust part runs
    # without the GIL); repeated cheap ones run on the loop (control.api.read_measured)
    read_threads: int = 2

    def to_json(self) -> str:
        import json

        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()})

    @staticmethod
    def from_json(doc: str) -> ControlConfig:
        import json

        d = json.loads(doc)
        for k in ("data_dir", "keys_dir", "web_dir"):
            if d.get(k) is not None:
                d[k] = Path(d[k])
        return ControlConfig(**d)

    @staticmethod
    def from_env(data_dir: str | Path, **overrides) -> ControlConfig:
        env = os.environ
        base = {
            "keys_dir": Path(env["SCRM_KEYS"]) if env.get("SCRM_KEYS") else None,
            "host": env.get("SCRM_HOST", "127.0.0.1"),
            "port": int(env.get("SCRM_PORT", "8080")),
            "workers": int(env.get("SCRM_WORKERS", "0")) or min(os.cpu_count() or 1, 8),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return ControlConfig(data_dir=Path(data_dir), **base)
