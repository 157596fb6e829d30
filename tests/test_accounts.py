"""Accounts (issue 14, item 3): tokens always expire, are listed and revoked by their owner
and admins; password change and admin reset revoke the other tokens; sign-in throttled per
account and per peer with growing delays (never a lock-out), with Retry-After, shared by every
server process; an unknown user costs the same argon2 work; /metrics needs metrics.read; the
aggregates answer within the caller's data scope."""

from __future__ import annotations

import pytest

from control.accounts import API_TOKEN_DEFAULT_S, MAX_DELAY_S, AccountService
from control.errors import ApiError
from tests.test_control import PASSWORD, client, login, tenant  # noqa: F401 - the fixtures


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def acc(tmp_path):
    clock = Clock()
    a = AccountService(tmp_path, clock=clock, api_token_max_s=30 * 86400)
    a.create_user("ann", PASSWORD, "regular", employee="ann")
    a.create_user("ben", PASSWORD, "regular", employee="ben")
    a.clock = clock
    yield a
    a.close()


def attempt(acc, user, password, peer="10.0.0.1"):
    try:
        acc.login(user, password, peer)
        return 200
    except ApiError as e:
        return e.status, e.headers


def test_tokens_expire_and_are_capped(acc):
    _, meta = acc.issue_token("ann", "api")
    assert meta["expires_at"] - meta["created_at"] == min(API_TOKEN_DEFAULT_S, 30 * 86400)
    with pytest.raises(ApiError, match="at most 30 days"):
        acc.issue_token("ann", "api", 31 * 86400)
    tok, meta = acc.issue_token("ann", "api", 3600)
    assert acc.authenticate(tok)[0].username == "ann"
    acc.clock.t += 3601
    with pytest.raises(ApiError, match="expired"):
        acc.authenticate(tok)


def test_password_change_and_reset_revoke_other_tokens(acc):
    t1, _ = acc.issue_token("ann", "api", 3600)
    t2, _ = acc.login("ann", PASSWORD, "p")
    with pytest.raises(ApiError, match="current password"):
        acc.change_password("ann", "wrong-one", "new-password-1")
    assert acc.change_password("ann", PASSWORD, "new-password-1") == 2
    for t in (t1, t2):
        with pytest.raises(ApiError, match="revoked"):
            acc.authenticate(t)
    assert attempt(acc, "ann", PASSWORD)[0] == 401
    assert attempt(acc, "ann", "new-password-1") == 200
    assert acc.change_password("ann", None, "reset-by-admin-1", by_admin=True) >= 1
    assert attempt(acc, "ann", "reset-by-admin-1") == 200
    with pytest.raises(ApiError):
        acc.change_password("ann", "reset-by-admin-1", "short")


def test_account_throttle_grows_and_never_locks_out(acc):
    delays = []
    for i in range(12):  # an attacker guessing ann's password from ever new addresses
        r = attempt(acc, "ann", "guess", peer=f"10.1.{i}.1")
        if r != 200 and r[0] == 429:
            wait = int(r[1]["Retry-After"])
            delays.append(wait)
            acc.clock.t += wait
            r = attempt(acc, "ann", "guess", peer=f"10.1.{i}.1")
        assert r[0] == 401
    assert delays == sorted(delays) and delays[-1] <= MAX_DELAY_S + 1 and len(delays) >= 6
    # the real user waits at most a minute, then signs in; the count starts again
    acc.clock.t += MAX_DELAY_S + 1
    assert attempt(acc, "ann", PASSWORD, peer="192.168.1.5") == 200
    assert attempt(acc, "ann", "typo", peer="192.168.1.5")[0] == 401
    assert attempt(acc, "ann", PASSWORD, peer="192.168.1.5") == 200  # no wait after one slip


def test_peer_throttle_catches_password_spraying(acc):
    for i in range(30):
        acc.create_user(f"u{i}", PASSWORD, "regular")
    answers = [attempt(acc, f"u{i}", "Summer2026!", peer="203.0.113.9") for i in range(30)]
    throttled = [a for a in answers if a != 200 and a[0] == 429]
    assert len(throttled) >= 20  # one address, many accounts: slowed down after the first few
    assert attempt(acc, "ben", PASSWORD, peer="198.51.100.7") == 200  # others are not affected


def test_unknown_and_known_users_cost_the_same_work(acc, monkeypatch):
    import control.accounts as mod

    calls = []
    real = mod._hasher

    class Counting:  # the real hasher, counting whose hash it checks against
        def verify(self, h, p):
            calls.append(h)
            return real.verify(h, p)

        def hash(self, p):
            return real.hash(p)
    monkeypatch.setattr(mod, "_hasher", Counting())
    attempt(acc, "nobody-here", "x")
    attempt(acc, "ann", "x")
    attempt(acc, "\0bad", "x")
    assert len(calls) == 3 and calls[0] == calls[2] == mod._DUMMY_HASH


async def test_http_password_tokens_metrics_and_scoped_aggregates(client):  # noqa: F811
    alice = await login(client, "alice")
    r = await client.post("/api/v1/me/password", json={"old": PASSWORD, "new": "brand-new-pass-1"}, headers=alice)
    body = await r.json()
    assert r.status == 200 and body["token"]
    assert (await client.get("/api/v1/me", headers=alice)).status == 401  # the old session went
    fresh = {"Authorization": f"Bearer {body['token']}"}
    assert (await client.get("/api/v1/me", headers=fresh)).status == 200
    r = await client.post("/api/v1/tokens", json={"ttl_days": 400}, headers=fresh)
    assert r.status == 422  # over the maximum
    r = await client.post("/api/v1/tokens", json={"name": "ci"}, headers=fresh)
    tok = await r.json()
    assert r.status == 201 and tok["expires_at"] - tok["created_at"] == 90 * 86400
    r = await client.delete(f"/api/v1/tokens/{tok['id']}", headers=fresh)
    assert r.status == 200
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tok['token']}"})).status == 401
    # /metrics needs metrics.read
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=fresh)).status == 403
    admin = await login(client, "admin")
    assert (await client.get("/metrics", headers=admin)).status == 200
    # aggregates within the scope
    st = await (await client.get("/api/v1/stats", headers=fresh)).json()
    assert "consent" not in st and "records" not in st and st["conversations"] >= 0
    assert (await client.get("/api/v1/consent/rules", headers=await login(client, "lead"))).status == 403
    full = await (await client.get("/api/v1/stats", headers=admin)).json()
    assert "consent" in full and full.get("records", 0) > 0
    lead = await login(client, "lead")
    deps = await (await client.get("/api/v1/departments", headers=lead)).json()
    all_deps = await (await client.get("/api/v1/departments", headers=admin)).json()
    assert 0 < len(deps) < len(all_deps)
    # throttled sign-in over HTTP: 429 with Retry-After
    statuses = []
    for _ in range(6):
        r = await client.post("/api/v1/auth/login", json={"username": "bob", "password": "wrong-password"})
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses[:3] == [401, 401, 401] and 429 in statuses


async def test_security_headers_on_the_console_and_the_api(client):  # noqa: F811
    for path in ("/", "/api/v1/health", "/web/app.js"):
        r = await client.get(path)
        assert r.status == 200, path
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    html = await (await client.get("/")).text()
    assert " on" + "error=" not in html and "<script>" not in html  # nothing inline for the CSP to block


def test_throttle_records_stay_bounded(acc, monkeypatch):
    import control.accounts as mod

    monkeypatch.setattr(mod, "MAX_THROTTLE_KEYS", 20)
    monkeypatch.setattr(mod.secrets, "randbelow", lambda n: 0)  # prune on every attempt
    for round_ in range(4):  # invented usernames from invented addresses, a window apart
        for i in range(15):
            attempt(acc, f"nobody{round_}-{i}", "x", peer=f"10.9.{round_}.{i}")
        acc.clock.t += mod.FAILURE_WINDOW_S + 1
    with acc.store.app_read() as app:
        kept = sum(1 for _ in app.scan("acc.fails", values=False))
    assert kept <= 20 + 2 * 15  # the old rounds went; at most the last two are kept


def test_accounts_of_the_earlier_layout_move_into_the_store(tmp_path):
    """A data directory whose accounts live in their own control.lmdb (the earlier layout,
    written here with lmdb directly): opened once, everything is in the sealed store, the
    password and the token still work, the old file is gone."""
    import hashlib

    import lmdb
    import orjson
    from argon2 import PasswordHasher

    from scrm_fast.storage import ArchiveStore

    ArchiveStore(tmp_path).close()
    env = lmdb.open(str(tmp_path / "control.lmdb"), map_size=1 << 24, max_dbs=4)
    users, tokens, roles = (env.open_db(n) for n in (b"users", b"tokens", b"roles"))
    with env.begin(write=True) as txn:
        txn.put(b"olduser", orjson.dumps({"username": "olduser", "role": "old-role", "employee": None,
                                          "department": None, "sharing": False, "disabled": False,
                                          "password": PasswordHasher().hash(PASSWORD)}), db=users)
        txn.put(hashlib.sha256(b"scrm_oldtoken").digest(), orjson.dumps(
            {"id": "00aa11bb22cc33dd", "username": "olduser", "name": "api", "created_at": 1_800_000_000,
             "expires_at": 1_900_000_000, "revoked": False}), db=tokens)
        txn.put(b"old-role", orjson.dumps({"permissions": ["archive.read"], "scope": "self"}), db=roles)
    env.close()
    clock = Clock()
    a = AccountService(tmp_path, clock=clock)
    try:
        assert not (tmp_path / "control.lmdb").exists()
        user, meta = a.authenticate("scrm_oldtoken")
        assert user.username == "olduser" and user.perms == frozenset({"archive.read"}) and meta["name"] == "api"
        token, _ = a.login("olduser", PASSWORD, "10.0.0.1")
        assert a.authenticate(token)[0].username == "olduser"
    finally:
        a.close()
    # the hash is sealed now: no file of the directory holds it
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"$argon2" not in blob
