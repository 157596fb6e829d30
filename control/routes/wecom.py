"""WeCom's callbacks at ``/wecom/callback`` (``wecom-api.md`` §2): the URL check (GET) and
events (POST), signed and encrypted; answered fast (WeCom waits 5 s, tries 3 times) and
de-duplicated. Configured by SCRM_WECOM_TOKEN, SCRM_WECOM_AES_KEY and SCRM_WECOM_CORP.
Events handled here: ``change_external_contact`` / ``transfer_fail`` (inheritance: the
customer's transfer is marked refused or at the taker's limit at once, not at the next poll)
and ``add_external_contact`` (the channel's welcome message, Q-10, and its tags);
``msgaudit_notify`` is recorded for the sync to pick up."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os

from aiohttp import web

from control.api import endpoint
from control.errors import ApiError
from scrm_fast import contacts
from scrm_fast.errors import InputError
from scrm_fast.storage import app_key
from scrm_fast.wecom import callback

routes = web.RouteTableDef()
log = logging.getLogger("scrm.wecom")
CONTACTS_WAKE = web.AppKey("contacts_wake", asyncio.Event)


async def contact_loop(app: web.Application) -> None:
    """Applies pending contact changes (any process may; each is applied once): at once
    when this process recorded one, and every few seconds for the others' and a crashed
    process's leftovers."""
    from control.app import STORE
    from control.customers.routes import TRANSFERS

    wake = app[CONTACTS_WAKE]
    while True:
        try:
            await asyncio.wait_for(wake.wait(), 5.0)
        except TimeoutError:
            pass
        wake.clear()
        try:
            while await asyncio.to_thread(contacts.apply_pending, app[STORE], app[TRANSFERS].clock.now_ms()):
                pass
        except Exception:  # noqa: BLE001 - logged; the events stay pending for the next round
            log.exception("applying contact changes failed")


def _config() -> tuple[str, str, str]:
    token, key, corp = (os.environ.get(k, "") for k in ("SCRM_WECOM_TOKEN", "SCRM_WECOM_AES_KEY", "SCRM_WECOM_CORP"))
    if not (token and key and corp):
        raise ApiError(404, "not_found", "WeCom callbacks are not configured")
    return token, key, corp


# A callback's timestamp must be this close to now (seconds), and its nonce is remembered
# at least this long: an old or replayed request is refused (403) before it does anything.
WINDOW_S = 300


def _fresh(request: web.Request, timestamp: str) -> int:
    """The callback's timestamp (s) when within the window of the tenant's clock."""
    from control.customers.routes import TRANSFERS

    now_s = request.app[TRANSFERS].clock.now_ms() // 1000
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise ApiError(403, "forbidden", "timestamp is not a number of seconds")
    if abs(now_s - int(timestamp)) > WINDOW_S:
        raise ApiError(403, "forbidden", f"timestamp is more than {WINDOW_S} s from now: an old or replayed request")
    return int(timestamp)


def _nonce_key(timestamp: int, nonce: str) -> bytes:
    return app_key(f"{timestamp:012d}", hashlib.sha256(nonce.encode()).hexdigest()[:32])


def _q(request: web.Request, name: str, limit: int = 1024) -> str:
    v = request.query.get(name, "")
    if not v or len(v) > limit:
        raise ApiError(400, "bad_request", f"{name} is missing or too long")
    return v


@routes.get("/wecom/callback")
@endpoint("WeCom's URL check: the decrypted echostr", public=True, tag="wecom", content="text/plain")
async def url_check(request: web.Request) -> web.Response:
    token, key, corp = _config()
    try:
        plain = callback.url_check(token, key, corp, _q(request, "msg_signature"), _q(request, "timestamp"),
                                   _q(request, "nonce"), _q(request, "echostr", 4096))
    except InputError as e:
        raise ApiError(403, "forbidden", str(e)) from None
    _fresh(request, _q(request, "timestamp"))
    return web.Response(body=plain.encode(), content_type="text/plain")


@routes.post("/wecom/callback")
@endpoint("WeCom's signed, encrypted events (de-duplicated; transfer_fail applied at once)", public=True,
          tag="wecom", content="text/plain")
async def event(request: web.Request) -> web.Response:
    token, key, corp = _config()
    body = await request.content.read(callback.MAX_BODY + 1)
    try:
        ev = callback.open_event(token, key, corp, _q(request, "msg_signature"), _q(request, "timestamp"),
                                 _q(request, "nonce"), body)
    except InputError as e:
        raise ApiError(403, "forbidden", str(e)) from None
    from control.api import decide
    from control.customers.routes import TRANSFERS

    ts = _fresh(request, _q(request, "timestamp"))
    nonce_key = _nonce_key(ts, _q(request, "nonce"))
    digest = hashlib.sha256(repr(sorted(ev.items())).encode()).digest()[:16]
    tr = request.app[TRANSFERS]

    def apply(t):
        now = tr.clock.now_ms()
        if t.has("wc.nonce", nonce_key):
            return "replayed"
        t.put("wc.nonce", nonce_key, now)
        # nonces older than twice the window can no longer pass the timestamp check
        horizon = app_key(f"{max(0, now // 1000 - 2 * WINDOW_S):012d}")
        for old, _ in list(t.scan("wc.nonce", limit=50, values=False)):
            if old >= horizon:
                break
            t.delete("wc.nonce", old)
        if t.has("wc.seen", digest):  # WeCom sends again (signed anew) when we were slow: once is enough
            return "duplicate"
        t.put("wc.seen", digest, now)
        if contacts.is_contact_change(ev):
            # recorded with the de-duplication; applied off the request path (contact_loop)
            t.put(contacts.PENDING, contacts.pending_key(now, digest), ev)
        if ev.get("Event") == "change_external_contact" and ev.get("ChangeType") == "transfer_fail":
            return tr.transfer_failed(t, ev.get("UserID", ""), ev.get("ExternalUserID", ""), ev.get("FailReason", ""))
        if ev.get("Event") == "change_external_contact" and ev.get("ChangeType") == "add_external_contact":
            return "welcome" if ev.get("WelcomeCode") else "added"
        if contacts.is_contact_change(ev):
            return "pending"
        if ev.get("InfoType") == "msgaudit_notify" or ev.get("Event") == "msgaudit_notify":
            t.put("wc.notify", b"", tr.clock.now_ms())
            return "noted"
        return "ignored"
    outcome = await decide(request, apply)
    log.info("wecom event %s/%s: %s", ev.get("Event"), ev.get("ChangeType"), outcome)
    if outcome == "replayed":
        raise ApiError(403, "forbidden", "this nonce was used already: a replayed request")
    if contacts.is_contact_change(ev):
        request.app[CONTACTS_WAKE].set()
    if outcome == "welcome":
        # WeCom's welcome code is good for 20 s and WeCom waits 5 s for this answer: welcome the
        # customer now, and if WeCom is slow let it finish after answering
        from control.messaging.routes import WELCOME

        task = asyncio.ensure_future(request.app[WELCOME].on_added(
            ev.get("ExternalUserID", ""), ev.get("UserID", ""), ev.get("WelcomeCode", ""), ev.get("State", "")))
        try:
            await asyncio.wait_for(asyncio.shield(task), 3.0)
        except TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - logged; WeCom still gets its answer
            log.exception("welcome message failed")
    return web.Response(text="success", content_type="text/plain")
