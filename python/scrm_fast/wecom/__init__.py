"""WeCom's server APIs (spec ``wecom-api.md``): one client package for the whole project
(``client``: tokens cached per secret and refreshed single-flight, 42001/40014 retried once,
40001 never retried, rate limits backed off, every per-item errcode kept) and one fake WeCom
(``fake``: an aiohttp app on loopback that enforces the same limits and error codes, with
an injected clock) that the tests and the demo run the client against."""

from scrm_fast.wecom.client import WeComClient, WeComError

__all__ = ["WeComClient", "WeComError"]
