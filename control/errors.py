"""JSON problem documents (``{"error": kind, "detail": …}``) with the right status codes,
and the middleware that turns every failure into one. Never a bare 500 for bad input."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from scrm_fast.errors import InputError, ScrmError

log = logging.getLogger("scrm.control")


class ApiError(Exception):
    def __init__(self, status: int, kind: str, detail: str, headers: dict | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def problem(status: int, kind: str, detail: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": kind, "detail": detail}),
                        content_type="application/json", headers=headers)


_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "too_many_requests"}


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as e:
        return problem(e.status, e.kind, e.detail, headers=e.headers)
    except web.HTTPRequestEntityTooLarge as e:
        return problem(413, "too_large", e.text or "request body too large")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return problem(e.status, _KINDS.get(e.status, "error"), e.reason, headers={
            k: v for k, v in e.headers.items() if k.lower() in ("allow", "retry-after")})
    except InputError as e:
        return problem(422, "invalid", str(e))
    except ScrmError as e:
        return problem(422, "invalid", str(e))
    except Exception:  # noqa: BLE001 - the one place that turns bugs into a clean 500
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "internal", "internal error (logged)")


async def json_body(request: web.Request, limit: int) -> dict:
    """The request's JSON object, or a clear 4xx."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"JSON body over {limit} bytes")
    # however the body arrives (one buffer, or many small pieces with pauses between them,
    # as a client on a real network sends it): read to its end, up to the limit
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise ApiError(413, "too_large", f"JSON body over {limit} bytes")
    raw = bytes(buf)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "bad_json", f"body is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid", "body must be a JSON object")
    return doc


def fields(doc: dict, spec: dict[str, tuple[type, bool]]) -> dict:
    """Checks ``doc`` against ``{name: (type, required)}``: unknown fields, missing required
    ones and wrong types are 422 with the field named."""
    unknown = set(doc) - set(spec)
    if unknown:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(sorted(unknown))}")
    out = {}
    for name, (typ, required) in spec.items():
        if name not in doc:
            if required:
                raise ApiError(422, "invalid", f"missing field '{name}'")
            continue
        value = doc[name]
        if value is None:
            raise ApiError(422, "invalid", f"field '{name}' must be {typ.__name__}, not null")
        if typ is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema: 3.0 is an integer
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            raise ApiError(422, "invalid", f"field '{name}' must be {typ.__name__}")
        out[name] = value
    return out
