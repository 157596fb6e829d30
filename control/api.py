"""Route metadata: every handler says whether it is public, which permission it needs and
how it is documented; the auth middleware and the OpenAPI document both read it, so the
document always matches the routes."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from aiohttp import web


@dataclass
class Endpoint:
    summary: str
    perm: str | None = None  # None with public=False: any signed-in user
    public: bool = False
    query: dict[str, str | dict] = field(default_factory=dict)  # name -> OpenAPI type or schema
    path: dict[str, dict] = field(default_factory=dict)  # name -> schema (default: string)
    body: dict | None = None  # JSON schema of the request body
    tag: str = "archive"
    content: str = "application/json"  # of the 200 response


def endpoint(summary: str, **kw):
    def wrap(fn):
        fn.__endpoint__ = Endpoint(summary, **kw)
        return fn
    return wrap


def meta(handler) -> Endpoint | None:
    return getattr(handler, "__endpoint__", None)


def json_response(data: object, *, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON answer serialised by orjson (several times faster than the json module on
    the archive's pages), as UTF-8."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


async def read_off_loop(request: web.Request, fn, *args, **kw):
    """Runs an archive read (Rust search, LMDB pages) on the app's read threads."""
    import asyncio
    import functools

    from control.keys import READS

    return await asyncio.get_running_loop().run_in_executor(request.app[READS], functools.partial(fn, *args, **kw))
