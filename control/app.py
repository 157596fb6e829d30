"""The application factory: ``create_app(config) -> web.Application``."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from control.accounts import AccountService
from control.api import ReadCosts, check_params, meta
from control.archive import ArchiveViews
from control.config import ControlConfig
from control.customers import routes as customer_routes
from control.customers.service import Customers
from control.customers.transfers import Transfers
from control.errors import ApiError, error_middleware, problem
from control.jobs import IngestJobs
from control.keys import (
    ACCOUNTS,
    COMMITS,
    CONFIG,
    DEVICE,
    DIALER,
    INGEST_JOBS,
    JOBS,
    METRICS,
    READ_COSTS,
    READS,
    RECEIPT,
    STORE,
    TOKEN,
    TRAIL,
    USER,
    VIEWS,
)
from control.messaging import routes as messaging_routes
from control.messaging.moments import Moments
from control.messaging.sends import Sends
from control.messaging.welcome import Welcome
from control.routes import admin, archive, auth, review
from control.routes import meta as meta_routes
from control.routes import wecom as wecom_routes
from dialer import routes as dialer_routes
from dialer.service import Dialer
from scrm_fast import clock as clocks
from scrm_fast.storage import ArchiveStore, GroupCommit
from scrm_fast.trail import AccessTrail

_STATIC = web.AppKey("static_methods", dict)


def _static_table(app: web.Application) -> dict[str, frozenset[str]]:
    """Each fixed API path and the methods its routes take (HEAD with GET)."""
    found: dict[str, set[str]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if "path" in info and info["path"].startswith(("/api/", "/wecom/")):
            found.setdefault(info["path"], set()).add(route.method)
    return {k: frozenset(v | ({"HEAD"} if "GET" in v else set())) for k, v in found.items()}


@web.middleware
async def auth_middleware(request: web.Request, handler):
    """Every route requires a valid bearer token unless its endpoint is marked public, and
    the permission its endpoint names. No security by URL pattern."""
    allowed = request.app[_STATIC].get(request.path)
    if allowed is not None and request.method not in allowed:
        # a fixed path (…/pools/import-template.xlsx) is not also the id of a route beside it
        # (…/pools/{pool_id}): its own methods, or 405 naming them
        raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed here",
                       headers={"Allow": ",".join(sorted(allowed))})
    m = meta(handler)
    if m is None:
        if request.match_info.http_exception is not None:
            raise request.match_info.http_exception  # 404 / 405 from the router
        if request.path.startswith("/api/"):
            # a route without metadata is a bug: refuse rather than serve it unprotected
            return problem(404, "not_found", "no such endpoint")
        return await handler(request)  # static console files
    if len(set(request.query.keys())) != len(request.query):
        raise ApiError(400, "bad_request", "a query parameter is given more than once")
    if m.public:
        check_params(request, m)
        return await handler(request)
    if m.device:
        from dialer.routes import authenticate_device

        request[DEVICE] = authenticate_device(request)
        check_params(request, m)
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise ApiError(401, "unauthorized", "missing bearer token")
    resigned = request.app[VIEWS].resigned()
    user, token = request.app[ACCOUNTS].authenticate(header[7:].strip(), resigned)
    if m.perm and m.perm not in user.perms:
        raise ApiError(403, "forbidden", f"your role lacks the permission {m.perm}")
    check_params(request, m)  # who may not call it learns nothing of its parameters
    request[USER], request[TOKEN] = user, token
    resp = await handler(request)
    receipt = request.get(RECEIPT)
    if m.trailed and resp.status < 300 and receipt is None:
        # archived content without its trail entry is never sent (rule R-4): a bug, refused
        import logging

        logging.getLogger("scrm.control").error("%s %s answered content without a trail entry", request.method,
                                                request.path)
        if not resp.prepared:
            return problem(500, "internal", "internal error (logged)")
    if receipt is not None and not resp.prepared:
        resp.headers["X-Trail-Entry"] = str(receipt.index)
    return resp


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        info = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        m = request.app[METRICS]
        key = (request.method, info, status)
        m["requests"][key] = m["requests"].get(key, 0) + 1
        m["seconds"][(request.method, info)] = m["seconds"].get((request.method, info), 0.0) + time.perf_counter() - t0


async def _resources(app: web.Application):
    cfg = app[CONFIG]
    app[READS] = ThreadPoolExecutor(cfg.read_threads, thread_name_prefix="scrm-read")
    app[READ_COSTS] = ReadCosts()
    store = ArchiveStore(cfg.data_dir)
    app[STORE] = store
    app[VIEWS] = ArchiveViews(store, cfg.data_dir)
    app[ACCOUNTS] = AccountService(cfg.data_dir, cfg.session_ttl_s, cfg.api_token_max_days * 86400, store=store)
    app[TRAIL] = AccessTrail(store)
    app[COMMITS] = GroupCommit(store)
    clock = clocks.from_env()
    app[DIALER] = Dialer(store, clock)
    app[customer_routes.CUSTOMERS] = Customers(store, clock)
    app[customer_routes.TRANSFERS] = Transfers(app[customer_routes.CUSTOMERS], customer_routes.wecom_factory(),
                                               app[ACCOUNTS])
    app[JOBS]["transfers:task"] = asyncio.get_running_loop().create_task(customer_routes.transfer_loop(app))
    app[messaging_routes.SENDS] = Sends(store, clock, customer_routes.wecom_factory())
    app[messaging_routes.MOMENTS] = Moments(store, clock, customer_routes.wecom_factory())
    app[messaging_routes.WELCOME] = Welcome(store, clock, customer_routes.wecom_factory())
    app[JOBS]["sends:task"] = asyncio.get_running_loop().create_task(messaging_routes.send_loop(app))
    app[JOBS]["customers-recycle:task"] = asyncio.get_running_loop().create_task(customer_routes.recycle_loop(app))
    app[wecom_routes.CONTACTS_WAKE] = asyncio.Event()
    app[JOBS]["contacts:task"] = asyncio.get_running_loop().create_task(wecom_routes.contact_loop(app))
    # reservations whose device went silent are released by whichever process sweeps first
    app[JOBS]["dialer-sweep:task"] = asyncio.get_running_loop().create_task(_sweep(app))
    # uploads a crash left unfinished run again (in whichever process takes each first), and
    # a killed ingest's due timeout-reply pass (rule A-6) is finished
    app[INGEST_JOBS] = IngestJobs(store, lambda path, job_id: admin.run_ingest(app, path, job_id), clock)
    app[JOBS]["redrive:task"] = asyncio.get_running_loop().create_task(asyncio.to_thread(_recover, app))
    if app[VIEWS].search.lag():
        # an archive ingested before it had an index, or an ingest that crashed: catch up
        # in the background (searches meanwhile report index_lag)
        app[JOBS]["index-catch-up:task"] = asyncio.get_running_loop().create_task(
            asyncio.to_thread(app[VIEWS].catch_up_index))
    # what start-up loaded lives as long as the app: keep it out of the collector's walks,
    # so a full collection does not pause every request behind it
    import gc

    gc.collect()
    gc.freeze()
    yield
    for name in ("dialer-sweep:task", "customers-recycle:task", "transfers:task", "sends:task", "contacts:task"):
        app[JOBS].pop(name).cancel()
    for key, task in list(app[JOBS].items()):
        if key.endswith(":task"):
            await task
    await asyncio.to_thread(app[INGEST_JOBS].join)
    app[READS].shutdown(wait=True)
    app[COMMITS].close()
    app[TRAIL].close()
    app[ACCOUNTS].close()
    store.close()


def _recover(app: web.Application) -> None:
    import logging

    from scrm_fast.tenant import Tenant

    log = logging.getLogger("scrm.control")
    try:
        if app[CONFIG].keys_dir is not None:
            app[INGEST_JOBS].redrive()
        Tenant(app[CONFIG].data_dir, store=app[STORE]).finish_due_timeouts()
    except Exception as e:  # noqa: BLE001 - logged; the server serves regardless
        log.warning("start-up recovery: %s", e)


async def _sweep(app: web.Application, every_s: float = 5.0) -> None:
    import logging

    dl = app[DIALER]
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.wrap_future(app[COMMITS].submit(dl.release_expired))
        except Exception:  # noqa: BLE001 - a sweep that failed is retried; the server goes on
            logging.getLogger("scrm.dialer").exception("releasing expired reservations failed")


async def _index(request: web.Request) -> web.StreamResponse:
    index = request.app[CONFIG].web_dir / "index.html"
    if not index.exists():
        return web.Response(text="scrm-fast control plane: see /api/v1/openapi.json", content_type="text/plain",
                            charset="utf-8")
    return web.FileResponse(index, headers={"Content-Type": "text/html; charset=utf-8"})


# the console's chart library: Debian's libjs-chart.js (scripts/setup.sh installs it), served
# from this host, never a CDN; without it the statistics page shows its tables only
CHART_JS = Path("/usr/share/javascript/chart.js/chart.min.js")


async def _chart_js(request: web.Request) -> web.StreamResponse:
    if not CHART_JS.is_file():
        return web.Response(status=404, text="chart.js not installed (Debian package libjs-chart.js)",
                            content_type="text/plain", charset="utf-8")
    return web.FileResponse(CHART_JS, headers={"Content-Type": "text/javascript; charset=utf-8",
                                               "Cache-Control": "max-age=86400"})


# the console runs no inline script and loads nothing from elsewhere; no page may frame it
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _utf8(request: web.Request, response: web.StreamResponse) -> None:
    """Console files carry Chinese text: always say charset=utf-8. Every answer carries the
    security headers."""
    ct = response.headers.get("Content-Type", "")
    if (ct.startswith("text/") or "javascript" in ct) and "charset" not in ct:
        response.headers["Content-Type"] = f"{ct}; charset=utf-8"
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)


def create_app(config: ControlConfig) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, error_middleware, auth_middleware],
                          client_max_size=config.max_upload_bytes)
    app[CONFIG] = config
    app[JOBS] = {}
    app[METRICS] = {"requests": {}, "seconds": {}}
    for mod in (meta_routes, auth, archive, review, admin, dialer_routes, customer_routes, messaging_routes,
                wecom_routes):
        app.add_routes(mod.routes)
    app[_STATIC] = _static_table(app)
    app.router.add_get("/", _index)
    app.router.add_get("/vendor/chart.min.js", _chart_js)
    if config.web_dir.is_dir():
        app.router.add_static("/web/", config.web_dir, show_index=False)
    app.on_response_prepare.append(_utf8)
    app.on_startup.append(dialer_routes.on_startup)
    app.on_shutdown.append(dialer_routes.on_shutdown)
    app.cleanup_ctx.append(_resources)
    return app


def serve(config: ControlConfig) -> None:
    """Serves until interrupted: in this process (``workers`` 1) or in ``workers`` child
    processes to which this one hands each accepted connection (see ``control.workers``)."""
    if config.workers <= 1:
        serve_one(config)
    else:
        from control.workers import supervise

        supervise(config)


def serve_one(config: ControlConfig) -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional; asyncio's loop works too
        pass
    web.run_app(create_app(config), host=config.host, port=config.port, print=None, access_log=None)
