"""Writing the access trail from a request (rule R-4): the append is a synced LMDB write,
so it runs off the event loop."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control.keys import TRAIL, USER


async def record(request: web.Request, action: str, target: str, detail: dict | None = None) -> None:
    await asyncio.to_thread(request.app[TRAIL].append, request[USER].username, action, target, detail)
