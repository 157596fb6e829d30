"""Writing the access trail from a request (rule R-4): the append is a synced LMDB write,
group-committed by the event loop once per turn for every request of that turn; the
request awaits its durability (see ``AccessTrail.append_async``)."""

from __future__ import annotations

from aiohttp import web

from control.keys import TRAIL, USER


async def record(request: web.Request, action: str, target: str, detail: dict | None = None) -> None:
    await request.app[TRAIL].append_async(request[USER].username, action, target, detail)
