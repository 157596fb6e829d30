"""Writing the access trail from a request (rule R-4): the append is a synced LMDB write,
group-committed by the event loop once per turn for every request of that turn; the
request awaits its durability (see ``AccessTrail.append_async``). The receipt of a request's
entry is kept on the request: a route marked as returning content answers with it
(``X-Trail-Entry``), and without one it does not answer at all (``control.app``)."""

from __future__ import annotations

from aiohttp import web

from control.keys import RECEIPT, TRAIL, USER
from scrm_fast.reads import Receipt


async def record(request: web.Request, action: str, target: str, detail: dict | None = None) -> Receipt:
    entry = await request.app[TRAIL].append_async(request[USER].username, action, target, detail)
    receipt = Receipt.of(entry)
    request[RECEIPT] = receipt
    return receipt


async def released(request: web.Request, content, entry: tuple):
    """``content`` (read by one of ``scrm_fast.reads``' functions), once its entry is
    durable on the trail."""
    await record(request, *entry)
    return content
