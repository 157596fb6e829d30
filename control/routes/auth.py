"""Sign-in, the current user, and API tokens."""

from __future__ import annotations

import asyncio

from aiohttp import web

from control.api import endpoint, json_response
from control.errors import ApiError, fields, json_body
from control.keys import ACCOUNTS, CONFIG, TOKEN, USER, VIEWS
from control.trail import record

routes = web.RouteTableDef()
_LOGIN = {"type": "object", "required": ["username", "password"], "additionalProperties": False,
          "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}


@routes.post("/api/v1/auth/login")
@endpoint("Sign in; returns a session bearer token", public=True, body=_LOGIN, tag="auth")
async def login(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"username": (str, True), "password": (str, True)})
    resigned = request.app[VIEWS].resigned()
    peer = request.remote or "?"
    # argon2 verification takes tens of milliseconds: off the event loop
    token, meta = await asyncio.to_thread(request.app[ACCOUNTS].login, doc["username"], doc["password"], peer,
                                          resigned)
    user = request.app[ACCOUNTS].get_user(doc["username"])
    return json_response({"token": token, "expires_at": meta["expires_at"], "user": user.public()})


@routes.post("/api/v1/auth/logout")
@endpoint("Revoke the token this request carries", tag="auth")
async def logout(request: web.Request) -> web.Response:
    request.app[ACCOUNTS].revoke(request[TOKEN]["id"], request[USER])
    return json_response({"ok": True})


@routes.get("/api/v1/me")
@endpoint("The signed-in user, permissions and data scope", tag="auth")
async def me(request: web.Request) -> web.Response:
    return json_response(request[USER].public())


@routes.get("/api/v1/tokens")
@endpoint("API tokens (yours; all for admins)", tag="auth")
async def list_tokens(request: web.Request) -> web.Response:
    user = request[USER]
    who = None if "admin.users" in user.perms else user.username
    return json_response(request.app[ACCOUNTS].list_tokens(who))


@routes.post("/api/v1/tokens")
@endpoint("Create an API token for yourself", tag="auth",
          body={"type": "object", "additionalProperties": False,
                "properties": {"name": {"type": "string"},
                               "ttl_days": {"type": "integer", "minimum": 1, "maximum": 3650}}})
async def create_token(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes),
                 {"name": (str, False), "ttl_days": (int, False)})
    ttl = doc.get("ttl_days")
    if ttl is not None and not 1 <= ttl <= 3650:
        raise ApiError(422, "invalid", "ttl_days must be between 1 and 3650")
    name = doc.get("name", "api")
    if not 0 < len(name) <= 64:
        raise ApiError(422, "invalid", "name: 1–64 characters")
    token, meta = request.app[ACCOUNTS].issue_token(request[USER].username, name, ttl * 86400 if ttl else None)
    await record(request, "token_created", meta["id"], {"expires_at": meta["expires_at"]})
    return json_response({"token": token, **meta}, status=201)


@routes.post("/api/v1/me/password")
@endpoint("Change your password (the current one required); your other tokens are revoked", tag="auth",
          body={"type": "object", "required": ["old", "new"], "additionalProperties": False,
                "properties": {"old": {"type": "string"}, "new": {"type": "string", "minLength": 8}}})
async def change_password(request: web.Request) -> web.Response:
    doc = fields(await json_body(request, request.app[CONFIG].max_json_bytes), {"old": (str, True), "new": (str, True)})
    acc, user = request.app[ACCOUNTS], request[USER]
    n = await asyncio.to_thread(acc.change_password, user.username, doc["old"], doc["new"])
    await record(request, "password_changed", user.username, {"tokens_revoked": n})
    token, meta = acc.issue_token(user.username, "session", acc.session_ttl_s)  # this session goes on
    return json_response({"tokens_revoked": n, "token": token, "expires_at": meta["expires_at"]})


@routes.delete("/api/v1/tokens/{token_id}")
@endpoint("Revoke a token", tag="auth")
async def revoke_token(request: web.Request) -> web.Response:
    return json_response(request.app[ACCOUNTS].revoke(request.match_info["token_id"], request[USER]))
