"""The fake WeCom served from a thread of this process, for `scrm serve` workers and CLI
children (other processes) to call on loopback — tests and the demo; environment
variables for a server started in a block."""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager

from aiohttp import web

from scrm_fast.wecom.fake import FakeWeCom


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def environ(**values: str):
    """These environment variables while the block runs (a server started inside inherits
    them), the earlier values after."""
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def serving(fake: FakeWeCom):
    """Yields the fake's base URL while it serves; stopped and closed after."""
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        loop.close()
