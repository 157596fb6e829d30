"""Route metadata: every handler says whether it is public, which permission it needs and
how it is documented; the auth middleware and the OpenAPI document both read it, so the
document always matches the routes."""

from __future__ import annotations

from dataclasses import dataclass, field


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
