"""Accounts, roles and tokens (rules R-1 … R-3), kept in the tenant's store: SCRM tables of
the store API (``acc.users``, ``acc.tokens``, ``acc.roles``, ``acc.fails``), sealed like every
other value. A data directory of the earlier layout (its own ``control.lmdb``) is moved into
them the first time it is opened, and the old file removed.

Roles carry function permissions and a data scope (self / department subtree / all);
seed 004's operator levels map onto them: super → ``admin`` (all), group leader →
``leader`` (department subtree), regular → ``regular`` (self; the sharing permission widens
it to the department subtree). Passwords are argon2id hashes; bearer tokens are random and
stored only as SHA-256 digests, so a copy of the database grants nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from control.errors import ApiError

ALL_PERMS = frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "words.write", "consent.read",
                       "alerts.read", "admin.users", "ingest.write", "trail.read",
                       "dialer.admin", "dialer.call", "dialer.read", "dialer.popup",
                       "customers.read", "customers.write", "customers.admin", "pools.claim",
                       "messaging.send", "messaging.admin", "metrics.read"})
_DIALER_OPERATOR = frozenset({"dialer.call", "dialer.read", "dialer.popup"})
_SALES = frozenset({"customers.read", "customers.write", "pools.claim", "messaging.send"})
ROLES: dict[str, tuple[frozenset[str], str]] = {
    "admin": (ALL_PERMS, "all"),
    "auditor": (frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "consent.read",
                           "alerts.read", "trail.read"}), "all"),
    "leader": (frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "consent.read",
                          "alerts.read"}) | _DIALER_OPERATOR | _SALES, "department"),
    "regular": (frozenset({"archive.read", "audit.read"}) | _DIALER_OPERATOR | _SALES, "self"),
}
SCOPES = ("self", "department", "all")
_hasher = PasswordHasher()
# an unknown user costs the same argon2 work as a known one: no timing tells them apart
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
API_TOKEN_DEFAULT_S = 90 * 86400
# failed sign-ins: each failure past the first few doubles the wait, capped (never a lock-out)
FREE_FAILURES = 3
MAX_DELAY_S = 60.0
FAILURE_WINDOW_S = 900
MAX_THROTTLE_KEYS = 100_000


@dataclass(frozen=True)
class User:
    username: str
    role: str
    employee: str | None = None  # the WeCom userid this operator is
    department: int | None = None
    sharing: bool = False
    disabled: bool = False
    # the role's definition when the account was read (a built-in or a custom role)
    role_perms: frozenset[str] = frozenset()
    role_scope: str = "self"

    @property
    def perms(self) -> frozenset[str]:
        return self.role_perms

    @property
    def scope(self) -> str:
        return "department" if self.role_scope == "self" and self.sharing else self.role_scope

    def public_record(self) -> dict:
        """The stored fields (the role by name: its definition is looked up on every read)."""
        return {"username": self.username, "role": self.role, "employee": self.employee,
                "department": self.department, "sharing": self.sharing, "disabled": self.disabled}

    def public(self) -> dict:
        return {"username": self.username, "role": self.role, "employee": self.employee,
                "department": self.department, "sharing": self.sharing, "disabled": self.disabled,
                "scope": self.scope, "permissions": sorted(self.perms)}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_USERS, _TOKENS, _ROLES, _FAILS = "acc.users", "acc.tokens", "acc.roles", "acc.fails"


def _name_key(name: str) -> bytes | None:
    b = name.encode() if isinstance(name, str) else b""
    return b if 0 < len(b) <= 64 and b"\0" not in b else None


class AccountService:
    """``store``: the server's open :class:`ArchiveStore` (else one is opened on
    ``data_dir`` and closed with the service)."""

    def __init__(self, data_dir: Path, session_ttl_s: int = 43200, api_token_max_s: int = 365 * 86400,
                 clock=time.time, *, store=None) -> None:
        from scrm_fast.storage import ArchiveStore

        self._owns = store is None
        self.store = store if store is not None else ArchiveStore(Path(data_dir))
        self.session_ttl_s = session_ttl_s
        self.api_token_max_s = api_token_max_s
        self._now = clock  # seconds; tests inject theirs
        self._migrate(Path(data_dir))

    def _migrate(self, data_dir: Path) -> None:
        """Moves a ``control.lmdb`` of the earlier layout into the store (one transaction),
        then removes it (a crash between the two leaves a copy that is moved again, the same)."""
        from scrm_fast.storage import read_legacy_tables

        old = data_dir / "control.lmdb"
        if not (old / "data.mdb").exists():
            return
        tables = {b"users": _USERS, b"tokens": _TOKENS, b"roles": _ROLES}
        found = read_legacy_tables(old, list(tables))
        with self.store.app_write() as app:
            for name, pairs in found.items():
                app.put_many(tables[name], [(k, orjson.loads(v)) for k, v in pairs])
        shutil.rmtree(old)

    def close(self) -> None:
        if self._owns:
            self.store.close()

    # -- users ----------------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str, employee: str | None = None,
                    department: int | None = None, sharing: bool = False) -> User:
        if self.role(role) is None:
            raise ApiError(422, "invalid", f"no role {role!r} (see GET /api/v1/roles)")
        if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").isalnum():
            raise ApiError(422, "invalid", "username: 1-64 letters, digits, - or _")
        if len(password) < 8:
            raise ApiError(422, "invalid", "password: at least 8 characters")
        user = self._user({"username": username, "role": role, "employee": employee, "department": department,
                           "sharing": sharing, "disabled": False})
        rec = {**user.public_record(), "password": _hasher.hash(password)}
        with self.store.app_write() as app:
            if app.has(_USERS, username.encode()):
                raise ApiError(409, "conflict", f"user {username} exists")
            app.put(_USERS, username.encode(), rec)
        return user

    def _record(self, username: str) -> dict | None:
        key = _name_key(username)
        if key is None:
            return None
        with self.store.app_read() as app:
            rec = app.get(_USERS, key)
        return rec if isinstance(rec, dict) else None

    def _user(self, rec: dict) -> User:
        fields = {k: rec[k] for k in ("username", "role", "employee", "department", "sharing", "disabled") if k in rec}
        perms, scope = self.role(rec["role"]) or (frozenset(), "self")  # a role that is gone grants nothing
        return User(**fields, role_perms=perms, role_scope=scope)

    def get_user(self, username: str) -> User | None:
        rec = self._record(username)
        return None if rec is None else self._user(rec)

    def list_users(self) -> list[User]:
        with self.store.app_read() as app:
            recs = [v for _, v in app.scan(_USERS)]
        return [self._user(r) for r in recs]

    def update_user(self, username: str, changes: dict) -> User:
        """Changes an account's role, employee, department or sharing permission; takes
        effect on the account's next request (tokens stay, their rights follow the account)."""
        if "role" in changes and self.role(changes["role"]) is None:
            raise ApiError(422, "invalid", f"no role {changes['role']!r} (see GET /api/v1/roles)")
        key = _name_key(username)
        with self.store.app_write() as app:
            rec = app.get(_USERS, key) if key is not None else None
            if not isinstance(rec, dict):
                raise ApiError(404, "not_found", f"no user {username}")
            rec.update(changes)
            app.put(_USERS, key, rec)
        return self._user(rec)

    # -- roles: function permissions and a data scope ------------------------------------
    def role(self, name: str) -> tuple[frozenset[str], str] | None:
        if name in ROLES:
            return ROLES[name]
        key = _name_key(name)
        if key is None:
            return None
        with self.store.app_read() as app:
            d = app.get(_ROLES, key)
        if not isinstance(d, dict):
            return None
        return frozenset(d["permissions"]), d["scope"]

    def list_roles(self) -> list[dict]:
        with self.store.app_read() as app:
            custom = {k.decode(): v for k, v in app.scan(_ROLES)}
        in_use: dict[str, int] = {}
        for u in self.list_users():
            in_use[u.role] = in_use.get(u.role, 0) + 1
        out = [{"role": r, "permissions": sorted(p), "scope": sc, "builtin": True} for r, (p, sc) in ROLES.items()]
        out += [{"role": r, "permissions": sorted(d["permissions"]), "scope": d["scope"], "builtin": False}
                for r, d in sorted(custom.items())]
        for r in out:
            r["scope_with_sharing"] = "department" if r["scope"] == "self" else r["scope"]
            r["users"] = in_use.get(r["role"], 0)
        return out

    @staticmethod
    def _check_role(name: str, permissions: list, scope: str) -> None:
        if not name or len(name) > 32 or not name.replace("_", "").replace("-", "").isalnum() or not name.isascii():
            raise ApiError(422, "invalid", "role: 1-32 letters, digits, - or _")
        if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
            raise ApiError(422, "invalid", "permissions must be a list of permission names (strings)")
        unknown = [p for p in permissions if p not in ALL_PERMS]
        if unknown:
            raise ApiError(422, "invalid", f"unknown permission(s) {unknown}; known: {', '.join(sorted(ALL_PERMS))}")
        if scope not in SCOPES:
            raise ApiError(422, "invalid", f"scope must be one of {', '.join(SCOPES)}")

    def put_role(self, name: str, permissions: list, scope: str, *, create: bool) -> dict:
        """Creates (``create``) or redefines a custom role; built-in roles are fixed."""
        self._check_role(name, permissions, scope)
        if name in ROLES:
            raise ApiError(409, "conflict", f"{name} is a built-in role and cannot be changed")
        doc = {"permissions": sorted(set(permissions)), "scope": scope}
        with self.store.app_write() as app:
            exists = app.has(_ROLES, name.encode())
            if create and exists:
                raise ApiError(409, "conflict", f"role {name} exists")
            if not create and not exists:
                raise ApiError(404, "not_found", f"no custom role {name}")
            app.put(_ROLES, name.encode(), doc)
        return {"role": name, **doc, "builtin": False}

    def delete_role(self, name: str) -> None:
        if name in ROLES:
            raise ApiError(409, "conflict", f"{name} is a built-in role and cannot be deleted")
        users = [u.username for u in self.list_users() if u.role == name]
        if not 0 < len(name.encode()) <= 64:
            raise ApiError(404, "not_found", f"no custom role {name}")
        with self.store.app_write() as app:
            if not app.has(_ROLES, name.encode()):
                raise ApiError(404, "not_found", f"no custom role {name}")
            if users:
                raise ApiError(409, "conflict", f"role {name} is held by {', '.join(sorted(users)[:10])}")
            app.delete(_ROLES, name.encode())

    def set_disabled(self, usernames: list[str], disabled: bool) -> int:
        """Bulk enable/disable (rule R-3); disabling revokes the users' tokens at once."""
        n = 0
        with self.store.app_write() as app:
            for name in usernames:
                key = _name_key(name)
                rec = app.get(_USERS, key) if key is not None else None
                if not isinstance(rec, dict):
                    raise ApiError(404, "not_found", f"no user {name}")
                rec["disabled"] = disabled
                app.put(_USERS, key, rec)
                n += 1
            if disabled:
                self._revoke_where(app, lambda t: t["username"] in usernames)
        return n

    @staticmethod
    def _revoke_where(app, which) -> int:
        n = 0
        for k, t in list(app.scan(_TOKENS)):
            if which(t) and not t["revoked"]:
                t["revoked"] = True
                app.put(_TOKENS, k, t)
                n += 1
        return n

    # -- login and tokens -------------------------------------------------------------------
    @staticmethod
    def _delay(failures: int) -> float:
        return 0.0 if failures < FREE_FAILURES else min(MAX_DELAY_S, 2.0 ** (failures - FREE_FAILURES))

    def _gate(self, keys: list[str]) -> None:
        """One write transaction for every worker process: refuses (429 with the seconds to
        wait) while any key — the account, the peer — is inside its delay, and otherwise takes
        the attempt, so concurrent guesses wait their turn too. The delay doubles with each recent
        failure past the first few and stops at a minute: attackers slow down, the real user
        is never locked out. Old entries are dropped and the table stays bounded."""
        now = self._now()
        with self.store.app_write() as app:
            wait = 0.0
            states = {}
            for k in keys:
                st = app.get(_FAILS, self._fail_key(k))
                if not isinstance(st, dict) or now - st["last"] > FAILURE_WINDOW_S:
                    st = {"n": 0, "next": 0.0, "last": 0.0}
                states[k] = st
                wait = max(wait, st["next"] - now)
            if wait > 0:
                raise ApiError(429, "too_many_requests", f"too many failed sign-ins; retry in {int(wait) + 1} s",
                               headers={"Retry-After": str(int(wait) + 1)})
            for k, st in states.items():  # this attempt holds the door until it is judged
                st["next"] = now + self._delay(st["n"] + 1)
                st.setdefault("last", now)
                app.put(_FAILS, self._fail_key(k), st)
            # bounded: now and then (not on every attempt: it walks the table) old entries go
            if secrets.randbelow(64) == 0 and sum(1 for _ in app.scan(_FAILS, values=False)) > MAX_THROTTLE_KEYS:
                for k, v in list(app.scan(_FAILS)):
                    if now - v.get("last", 0) > FAILURE_WINDOW_S:
                        app.delete(_FAILS, k)

    def _fail_key(self, k: str) -> bytes:
        return self.store.app_digest("signin", k)  # peers' addresses are not kept in keys

    def _judge(self, keys: list[str], ok: bool) -> None:
        now = self._now()
        with self.store.app_write() as app:
            for k in keys:
                fk = self._fail_key(k)
                if ok:
                    if k.startswith("user:"):
                        app.delete(_FAILS, fk)  # the account signed in: its count starts again
                    else:
                        st = app.get(_FAILS, fk)
                        if isinstance(st, dict):
                            st["next"] = now + self._delay(st["n"]) if st["n"] >= FREE_FAILURES else 0.0
                            app.put(_FAILS, fk, st)
                    continue
                st = app.get(_FAILS, fk)
                if not isinstance(st, dict):
                    st = {"n": 0, "next": 0.0, "last": 0.0}
                st["n"] += 1
                st["last"] = now
                st["next"] = now + self._delay(st["n"])
                app.put(_FAILS, fk, st)

    def login(self, username: str, password: str, peer: str, resigned: set[str] = frozenset()) -> tuple[str, dict]:
        """Checks the password (argon2, slow on purpose: call off the event loop). Throttled
        per account and per peer with growing delays (see :meth:`_gate`); an unknown user costs
        the same argon2 work as a known one."""
        if not username or len(username.encode()) > 64 or "\0" in username:
            try:  # the same work as for a real account
                _hasher.verify(_DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                pass
            raise ApiError(401, "unauthorized", "wrong username or password")
        keys = [f"user:{username}", f"peer:{peer}"]
        self._gate(keys)
        rec = self._record(username)
        try:
            ok = _hasher.verify(rec["password"] if rec is not None else _DUMMY_HASH, password) and rec is not None
        except (VerificationError, InvalidHashError):
            ok = False
        self._judge(keys, ok)
        if not ok:
            raise ApiError(401, "unauthorized", "wrong username or password")
        if rec["disabled"] or (rec.get("employee") and rec["employee"] in resigned):
            raise ApiError(403, "forbidden", "account disabled or resigned (rule R-3)")
        return self.issue_token(username, "session", self.session_ttl_s)

    def change_password(self, username: str, old: str | None, new: str, *, by_admin: bool = False) -> int:
        """A new password (the old one required unless an admin resets it); every other token
        of the account is revoked. Returns how many were."""
        if not isinstance(new, str) or len(new) < 8 or len(new) > 1024:
            raise ApiError(422, "invalid", "password: 8 to 1024 characters")
        rec = self._record(username)
        if rec is None:
            raise ApiError(404, "not_found", f"no user {username}")
        if not by_admin:
            try:
                ok = _hasher.verify(rec["password"], old or "")
            except (VerificationError, InvalidHashError):
                ok = False
            if not ok:
                raise ApiError(403, "forbidden", "the current password is not right")
        new_hash = _hasher.hash(new)
        with self.store.app_write() as app:
            cur = app.get(_USERS, username.encode())
            cur["password"] = new_hash
            app.put(_USERS, username.encode(), cur)
            return self._revoke_where(app, lambda t: t["username"] == username)

    def issue_token(self, username: str, name: str, ttl_s: int | None = None) -> tuple[str, dict]:
        """Every token expires: API tokens after 90 days unless asked otherwise, never later
        than the configured maximum."""
        ttl_s = min(API_TOKEN_DEFAULT_S, self.api_token_max_s) if ttl_s is None else ttl_s
        if ttl_s > self.api_token_max_s:
            raise ApiError(422, "invalid", f"a token lives at most {self.api_token_max_s // 86400} days")
        token = "scrm_" + secrets.token_urlsafe(32)
        now = int(self._now())
        meta = {"id": secrets.token_hex(8), "username": username, "name": name, "created_at": now,
                "expires_at": now + ttl_s, "revoked": False}
        with self.store.app_write() as app:
            app.put(_TOKENS, _digest(token), meta)
        return token, meta

    def authenticate(self, token: str, resigned: set[str] = frozenset()) -> tuple[User, dict]:
        with self.store.app_read() as app:
            meta = app.get(_TOKENS, _digest(token))
        if not isinstance(meta, dict):
            raise ApiError(401, "unauthorized", "unknown token")
        if meta["revoked"]:
            raise ApiError(401, "unauthorized", "token revoked")
        if meta["expires_at"] is not None and meta["expires_at"] < self._now():
            raise ApiError(401, "unauthorized", "token expired")
        user = self.get_user(meta["username"])
        if user is None or user.disabled or (user.employee and user.employee in resigned):
            raise ApiError(401, "unauthorized", "account disabled or resigned")
        return user, meta

    def list_tokens(self, username: str | None) -> list[dict]:
        with self.store.app_read() as app:
            metas = [v for _, v in app.scan(_TOKENS)]
        return [m for m in metas if username is None or m["username"] == username]

    def revoke(self, token_id: str, by: User) -> dict:
        with self.store.app_write() as app:
            for k, meta in list(app.scan(_TOKENS)):
                if meta["id"] == token_id:
                    if meta["username"] != by.username and "admin.users" not in by.perms:
                        raise ApiError(403, "forbidden", "not your token")
                    meta["revoked"] = True
                    app.put(_TOKENS, k, meta)
                    return meta
        raise ApiError(404, "not_found", f"no token {token_id}")
