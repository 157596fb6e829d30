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
    # returns archived content (message text, audit or alert records): the handler writes a
    # trail entry before the answer leaves (rule R-4); tested by walking every route
    trailed: bool = False
    # called by a dialer device with its own token (``Authorization: Device …``), not an operator
    device: bool = False
    upload: str | None = None  # the media type of a raw request body (an upload), not JSON


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


# a read that took at most this long last time runs on the event loop next time
INLINE_MAX_S = 0.002


class ReadCosts:
    """How long each kind of archive read took the last time this process ran it, so that
    :func:`read_measured` knows which reads are cheap. Bounded: emptied when full (every read
    is then measured off the loop once more)."""

    def __init__(self, limit: int = 50_000) -> None:
        self._last: dict[object, float] = {}
        self._limit = limit
        self.inline = 0
        self.threaded = 0

    def cheap(self, key: object) -> bool:
        last = self._last.get(key)
        return last is not None and last <= INLINE_MAX_S

    def note(self, key: object, seconds: float) -> None:
        if len(self._last) >= self._limit and key not in self._last:
            self._last.clear()
        self._last[key] = seconds


async def read_measured(request: web.Request, key: object, fn, *args, **kw):
    """Runs an archive read on the event loop when the same read (``key``) took at most
    ``INLINE_MAX_S`` last time, else on the read threads (a first-time read, or one that was
    slow), timing it either way. A repeated search is cheap (the index keeps per-segment
    match counts: ~0.2 ms with its page); handing it to a thread and back cost more than the
    search, and the read threads fighting the loop for the GIL made the tail (measured: p99
    48–51 ms → 32–41 ms at 50 clients with the trail committed on the loop, issue 6's note).
    A read that turns slow (its counts evicted) is timed and goes back to the threads."""
    import asyncio
    import time

    from control.keys import READ_COSTS, READS

    costs = request.app[READ_COSTS]

    def timed():
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            costs.note(key, time.perf_counter() - t0)

    if costs.cheap(key):
        costs.inline += 1
        return timed()
    costs.threaded += 1
    return await asyncio.get_running_loop().run_in_executor(request.app[READS], timed)


async def decide(request: web.Request, fn):
    """Runs ``fn(txn)`` — a decision on the store's SCRM tables — in the process's group
    commit (one atomic transaction each, one synced commit per group); not found and
    conflicts as 404 and 409."""
    import asyncio

    from control.errors import ApiError
    from control.keys import COMMITS
    from scrm_fast.errors import ConflictError, NotFoundError

    try:
        return await asyncio.wrap_future(request.app[COMMITS].submit(fn))
    except NotFoundError as e:
        raise ApiError(404, "not_found", str(e)) from None
    except ConflictError as e:
        raise ApiError(409, "conflict", str(e)) from None


# an undeclared query value, or a string one without maxLength: at most this long
QUERY_MAX = 2000
PATH_MAX = 200


def check_params(request: web.Request, m: Endpoint) -> None:
    """Every path segment and query value of a request, by the schema its endpoint declares
    (the OpenAPI document's), with the one strict parser of its type (``scrm_fast.strict``):
    integers in canonical decimal form and in range, enums exact, strings without control
    characters and within their length and pattern; undeclared query values as strings.
    Nothing out of form reaches a handler, Rust or LMDB: 400 for a number not written as
    one, 422 for a value out of range or a string that cannot be an id."""
    for name, raw in request.match_info.items():
        _check(raw, m.path.get(name) or {"type": "string"}, f"path segment '{name}'", PATH_MAX)
    for name, raw in request.query.items():
        t = m.query.get(name)
        if raw == "" and t is not None:
            continue  # an empty optional value is the default
        schema = (t if isinstance(t, dict) else {"type": t}) if t is not None else {"type": "string"}
        _check(raw, schema, f"query parameter '{name}'", QUERY_MAX)


def _check(raw: str, schema: dict, what: str, max_len: int) -> None:
    import re

    from control.errors import ApiError
    from scrm_fast.errors import InputError
    from scrm_fast.strict import I64_MAX, RangeError, ident, sint, uint

    try:
        if "enum" in schema:
            if raw not in [str(v) for v in schema["enum"]]:
                raise ApiError(422, "invalid", f"{what} must be one of {', '.join(map(str, schema['enum']))}")
            return
        if schema.get("type") == "integer":
            lo, hi = int(schema.get("minimum", -I64_MAX - 1)), int(schema.get("maximum", I64_MAX))
            (uint if lo >= 0 else sint)(raw, what, lo=lo, hi=hi)  # no sign where none can be
            return
        if schema.get("type") == "boolean":
            if raw not in ("true", "false", "1", "0"):
                raise ApiError(400, "bad_request", f"{what} must be true or false")
            return
        try:
            ident(raw, what, int(schema.get("maxLength", max_len)))
        except InputError as e:
            raise ApiError(422, "invalid", str(e)) from None
        if "pattern" in schema and not re.search(schema["pattern"], raw):
            raise ApiError(422, "invalid", f"{what} is not of the expected form")
    except RangeError as e:
        raise ApiError(422, "invalid", str(e)) from None
    except InputError as e:
        raise ApiError(400, "bad_request", str(e)) from None
