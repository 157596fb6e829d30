"""Accounts, roles and tokens (rules R-1 … R-3), kept in the tenant's ``control.lmdb``.

Roles carry function permissions and a data scope (self / department subtree / all);
seed 004's operator levels map onto them: super → ``admin`` (all), group leader →
``leader`` (department subtree), regular → ``regular`` (self; the sharing permission widens
it to the department subtree). Passwords are argon2id hashes; bearer tokens are random and
stored only as SHA-256 digests, so a copy of the database grants nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lmdb
import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from control.errors import ApiError

ALL_PERMS = frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "words.write", "consent.read",
                       "alerts.read", "admin.users", "ingest.write", "trail.read"})
ROLES: dict[str, tuple[frozenset[str], str]] = {
    "admin": (ALL_PERMS, "all"),
    "auditor": (frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "consent.read",
                           "alerts.read", "trail.read"}), "all"),
    "leader": (frozenset({"archive.read", "audit.read", "audit.handle", "words.read", "consent.read",
                          "alerts.read"}), "department"),
    "regular": (frozenset({"archive.read", "audit.read"}), "self"),
}
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    username: str
    role: str
    employee: str | None = None  # the WeCom userid this operator is
    department: int | None = None
    sharing: bool = False
    disabled: bool = False

    @property
    def perms(self) -> frozenset[str]:
        return ROLES[self.role][0]

    @property
    def scope(self) -> str:
        scope = ROLES[self.role][1]
        return "department" if scope == "self" and self.sharing else scope

    def public(self) -> dict:
        return {"username": self.username, "role": self.role, "employee": self.employee,
                "department": self.department, "sharing": self.sharing, "disabled": self.disabled,
                "scope": self.scope, "permissions": sorted(self.perms)}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AccountService:
    def __init__(self, data_dir: Path, session_ttl_s: int = 43200, max_failures: int = 5,
                 lockout_s: int = 300) -> None:
        path = data_dir / "control.lmdb"
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=1 << 32, max_dbs=4, sync=True)
        self.users = self.env.open_db(b"users")
        self.tokens = self.env.open_db(b"tokens")
        self.session_ttl_s = session_ttl_s
        self.max_failures, self.lockout_s = max_failures, lockout_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.env.close()

    # -- users ----------------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str, employee: str | None = None,
                    department: int | None = None, sharing: bool = False) -> User:
        if role not in ROLES:
            raise ApiError(422, "invalid", f"role must be one of {', '.join(ROLES)}")
        if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").isalnum():
            raise ApiError(422, "invalid", "username: 1-64 letters, digits, - or _")
        if len(password) < 8:
            raise ApiError(422, "invalid", "password: at least 8 characters")
        user = User(username, role, employee, department, sharing)
        rec = {**user.__dict__, "password": _hasher.hash(password)}
        with self.env.begin(write=True, db=self.users) as txn:
            if not txn.put(username.encode(), orjson.dumps(rec), overwrite=False):
                raise ApiError(409, "conflict", f"user {username} exists")
        return user

    def _record(self, username: str) -> dict | None:
        if not username or len(username.encode()) > 64:
            return None
        with self.env.begin(db=self.users) as txn:
            raw = txn.get(username.encode())
        return orjson.loads(raw) if raw else None

    def get_user(self, username: str) -> User | None:
        rec = self._record(username)
        if rec is None:
            return None
        rec.pop("password", None)
        return User(**rec)

    def list_users(self) -> list[User]:
        with self.env.begin(db=self.users) as txn:
            recs = [orjson.loads(v) for _, v in txn.cursor()]
        return [User(**{k: v for k, v in r.items() if k != "password"}) for r in recs]

    def set_disabled(self, usernames: list[str], disabled: bool) -> int:
        """Bulk enable/disable (rule R-3); disabling revokes the users' tokens at once."""
        n = 0
        with self.env.begin(write=True) as txn:
            for name in usernames:
                raw = txn.get(name.encode(), db=self.users)
                if raw is None:
                    raise ApiError(404, "not_found", f"no user {name}")
                rec = orjson.loads(raw)
                rec["disabled"] = disabled
                txn.put(name.encode(), orjson.dumps(rec), db=self.users)
                n += 1
            if disabled:
                cur = txn.cursor(db=self.tokens)
                for k, v in list(cur):
                    t = orjson.loads(v)
                    if t["username"] in usernames and not t["revoked"]:
                        t["revoked"] = True
                        txn.put(k, orjson.dumps(t), db=self.tokens)
        return n

    # -- login and tokens -------------------------------------------------------------------
    def _throttled(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self.lockout_s]
            self._failures[key] = recent
            return len(recent) >= self.max_failures

    def _fail(self, key: str) -> None:
        with self._lock:
            self._failures.setdefault(key, []).append(time.monotonic())

    def login(self, username: str, password: str, peer: str, resigned: set[str] = frozenset()) -> tuple[str, dict]:
        """Checks the password (argon2, slow on purpose: call off the event loop)."""
        key = f"{username}|{peer}"
        if not username or len(username.encode()) > 64 or "\0" in username:
            raise ApiError(401, "unauthorized", "wrong username or password")
        if self._throttled(key):
            raise ApiError(429, "too_many_requests", f"too many failed logins; retry in {self.lockout_s} s")
        rec = self._record(username)
        try:
            ok = rec is not None and _hasher.verify(rec["password"], password)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self._fail(key)
            raise ApiError(401, "unauthorized", "wrong username or password")
        if rec["disabled"] or (rec.get("employee") and rec["employee"] in resigned):
            raise ApiError(403, "forbidden", "account disabled or resigned (rule R-3)")
        return self.issue_token(username, "session", self.session_ttl_s)

    def issue_token(self, username: str, name: str, ttl_s: int | None = None) -> tuple[str, dict]:
        token = "scrm_" + secrets.token_urlsafe(32)
        meta = {"id": secrets.token_hex(8), "username": username, "name": name, "created_at": int(time.time()),
                "expires_at": int(time.time()) + ttl_s if ttl_s else None, "revoked": False}
        with self.env.begin(write=True, db=self.tokens) as txn:
            txn.put(_digest(token), orjson.dumps(meta))
        return token, meta

    def authenticate(self, token: str, resigned: set[str] = frozenset()) -> tuple[User, dict]:
        with self.env.begin(db=self.tokens) as txn:
            raw = txn.get(_digest(token))
        if raw is None:
            raise ApiError(401, "unauthorized", "unknown token")
        meta = orjson.loads(raw)
        if meta["revoked"]:
            raise ApiError(401, "unauthorized", "token revoked")
        if meta["expires_at"] is not None and meta["expires_at"] < time.time():
            raise ApiError(401, "unauthorized", "token expired")
        user = self.get_user(meta["username"])
        if user is None or user.disabled or (user.employee and user.employee in resigned):
            raise ApiError(401, "unauthorized", "account disabled or resigned")
        return user, meta

    def list_tokens(self, username: str | None) -> list[dict]:
        with self.env.begin(db=self.tokens) as txn:
            metas = [orjson.loads(v) for _, v in txn.cursor()]
        return [m for m in metas if username is None or m["username"] == username]

    def revoke(self, token_id: str, by: User) -> dict:
        with self.env.begin(write=True, db=self.tokens) as txn:
            for k, v in txn.cursor():
                meta = orjson.loads(v)
                if meta["id"] == token_id:
                    if meta["username"] != by.username and "admin.users" not in by.perms:
                        raise ApiError(403, "forbidden", "not your token")
                    meta["revoked"] = True
                    txn.put(k, orjson.dumps(meta))
                    return meta
        raise ApiError(404, "not_found", f"no token {token_id}")
