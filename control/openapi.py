"""The OpenAPI 3.1 document, generated from the application's router and each handler's
:class:`control.api.Endpoint`."""

from __future__ import annotations

import re

from aiohttp import web

from control.api import PATH_MAX, QUERY_MAX, meta

_PROBLEM = {"type": "object", "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}


# what check_params (control.api) lets through as a string: no control character
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _string(schema: dict | None, max_len: int) -> dict:
    """A parameter's schema as :func:`control.api.check_params` applies it: strings (the
    default) without control characters and within their length."""
    schema = dict(schema or {"type": "string"})
    if schema.get("type", "string") == "string" and "enum" not in schema:
        schema["type"] = "string"
        schema.setdefault("maxLength", max_len)
        schema.setdefault("pattern", _NO_CONTROL)
    return schema


def build_openapi(app: web.Application) -> dict:
    paths: dict[str, dict] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if path is None or route.method == "HEAD":
            continue
        m = meta(route.handler)
        if m is None:
            continue
        op: dict = {"summary": m.summary, "tags": [m.tag], "operationId": route.handler.__name__,
                    "responses": {"200": {"description": "OK", "content": {m.content: {"schema": {}}}},
                                  "201": {"description": "created", "content": {m.content: {"schema": {}}}},
                                  "202": {"description": "accepted", "content": {m.content: {"schema": {}}}},
                                  "4XX": {"description": "problem",
                                          "content": {"application/json": {"schema": _PROBLEM}}}}}
        params = [{"name": n, "in": "path", "required": True, "schema": _string(m.path.get(n), PATH_MAX)}
                  for n in re.findall(r"{(\w+)}", path)]
        params += [{"name": n, "in": "query", "required": False,
                    "schema": _string(t if isinstance(t, dict) else {"type": t}, QUERY_MAX)}
                   for n, t in m.query.items()]
        if params:
            op["parameters"] = params
        if m.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": m.body}}}
        elif m.upload is not None:
            op["requestBody"] = {"required": True, "content": {m.upload: {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}
        if m.device:
            op["security"] = [{"device": []}]
        elif not m.public:
            op["security"] = [{"bearer": []}]
        if m.perm:
            op["x-permission"] = m.perm
        if m.trailed:
            op["x-trailed"] = True
        paths.setdefault(path, {})[route.method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "scrm-fast control plane", "version": "1"},
            "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                # a dialer device: "Authorization: Device <token>" (the token given when it was added)
                "device": {"type": "apiKey", "in": "header", "name": "Authorization"}}},
            "paths": dict(sorted(paths.items()))}
