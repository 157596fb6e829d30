"""Health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import os

from aiohttp import web

from control.api import endpoint, json_response
from control.keys import METRICS, READ_COSTS, STORE
from control.openapi import build_openapi

routes = web.RouteTableDef()


@routes.get("/api/v1/health")
@endpoint("Liveness, the archive's checkpoint and which server process answered", public=True, tag="meta")
async def health(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return json_response({"status": "ok", "checkpoint": store.checkpoint(), "worker": os.getpid()})


@routes.get("/metrics")
@endpoint("Prometheus metrics (a token with metrics.read)", perm="metrics.read", tag="meta", content="text/plain")
async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    lines = ["# TYPE scrm_http_requests_total counter"]
    for (method, route, status), n in sorted(m["requests"].items()):
        lines.append(f'scrm_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
    lines.append("# TYPE scrm_http_request_seconds_sum counter")
    for (method, route), s in sorted(m["seconds"].items()):
        lines.append(f'scrm_http_request_seconds_sum{{method="{method}",route="{route}"}} {s:.6f}')
    costs = request.app[READ_COSTS]
    lines.append("# TYPE scrm_archive_reads_total counter")
    lines.append(f'scrm_archive_reads_total{{where="event_loop"}} {costs.inline}')
    lines.append(f'scrm_archive_reads_total{{where="read_threads"}} {costs.threaded}')
    counts = request.app[STORE].counts()
    lines.append("# TYPE scrm_archive_records gauge")
    for k, v in counts.items():
        lines.append(f'scrm_archive_records{{table="{k}"}} {v}')
    from control.customers.routes import TRANSFERS
    from scrm_fast.sync import lag

    g = lag(request.app[STORE], request.app[TRANSFERS].clock.now_ms())
    lines.append("# TYPE scrm_sync_checkpoint gauge")
    lines.append(f"scrm_sync_checkpoint {g['checkpoint']}")
    for name, key in (("scrm_archive_lag_seconds", "newest_message_age_s"),
                      ("scrm_sync_checkpoint_age_seconds", "checkpoint_age_s")):
        if g[key] is not None:
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {g[key]}")
    lines.append("# TYPE scrm_sync_running gauge")
    lines.append(f"scrm_sync_running {int(g['running'])}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


@routes.get("/api/v1/openapi.json")
@endpoint("This document", public=True, tag="meta")
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_openapi(request.app))
