"""WeCom's server APIs (spec ``wecom-api.md``): one client package for the whole project
(``client``: tokens cached per secret and refreshed single-flight, 42001/40014 retried once,
40001 never retried, rate limits backed off, every per-item errcode kept) and one fake WeCom
(``fake``: an aiohttp app on loopback that enforces the same limits and error codes, with
an injected clock) that the tests and the demo run the client against.

The client (and aiohttp with it) is imported on first use: a file ingest reaches this package
only for the SDK worker, and importing aiohttp's client costs it a tenth of a second of
start-up (its TLS context loads the system's CA bundle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrm_fast.wecom.client import WeComClient, WeComError

__all__ = ["WeComClient", "WeComError"]


def __getattr__(name: str):
    if name in __all__:
        from scrm_fast.wecom import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
