"""Writing the access trail from a request (rule R-4): the append is a synced LMDB write,
done by the trail's writer thread (group commit); the request awaits its durability
without holding a worker thread."""

from __future__ import annotations

from aiohttp import web

from control.keys import TRAIL, USER


async def record(request: web.Request, action: str, target: str, detail: dict | None = None) -> None:
    await request.app[TRAIL].append_async(request[USER].username, action, target, detail)
