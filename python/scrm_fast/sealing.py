"""Keys at rest (rule V-5): the master key outside every data directory, and the data
directory's own keys, stored only wrapped by it.

- **Master key**: a file of 64 hex digits (32 bytes), mode 0600, made by
  ``scrm keys new --out FILE``; commands take ``--master-key FILE`` or
  ``SCRM_MASTER_KEY_FILE``.
- **Key file** ``DATA_DIR/keys.json``: the data keys (id → wrapped), the current one (new
  writes), the index's token key (wrapped, id 0), and the master key's fingerprint (so a
  wrong master key is named as such). Replaced atomically (write, fsync, rename, fsync the
  folder): a crash leaves the old file or the new one, never half of either.
- The AEAD itself is Rust's (``_core.Vault``: AES-256-GCM, values bound to table and key).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from scrm_fast._core import SealError, Vault, random_key, unwrap_key, wrap_key
from scrm_fast.errors import InputError

ENV_MASTER = "SCRM_MASTER_KEY_FILE"
KEY_FILE = "keys.json"
TOKEN_KEY_ID = 0
TRAIL_KEY_ID = 0xFFFFFFFF
FORMAT = 1


def private_umask() -> None:
    """Every file and folder this process creates from now on is 0600 / 0700 (the data
    directory holds customer data). Called once by each command and server process."""
    os.umask(0o077)


def fingerprint(master: bytes) -> str:
    return hashlib.sha256(b"scrm master key fingerprint\0" + master).hexdigest()[:16]


def new_master_key(out: str | os.PathLike[str]) -> str:
    """Writes a new master key to ``out`` (0600, never over an existing file); returns its
    fingerprint. Refused inside a data directory: the key must live apart from the data."""
    p = Path(out)
    for parent in [p.parent, *p.parent.parents]:
        if (parent / "archive.lmdb").exists() or (parent / KEY_FILE).exists():
            raise InputError(f"{p}: inside the data directory {parent}; keep the master key outside it")
    key = random_key(32)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{p}: exists already; a master key is never overwritten") from None
    except OSError as e:
        raise InputError(f"{p}: cannot write the master key: {e.strerror}") from e
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return fingerprint(key)


def master_key_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the master key is read from (``path``, else ``$SCRM_MASTER_KEY_FILE``)."""
    given = path if path is not None else os.environ.get(ENV_MASTER)
    return Path(given) if given else None


def anchor_path(master_path: Path, trail_id: str) -> Path:
    """The trail's anchor (its head, MAC'd) for one data directory: beside the master key,
    outside every data directory (rule R-4)."""
    return master_path.parent / f"{master_path.name}.trail-{trail_id}.anchor"


def read_master_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """The master key from ``path``, else from ``$SCRM_MASTER_KEY_FILE``."""
    given = path if path is not None else os.environ.get(ENV_MASTER)
    if not given:
        raise InputError(f"no master key: pass --master-key FILE or set {ENV_MASTER} "
                         "(make one with `scrm keys new --out FILE`, outside the data directory)")
    p = Path(given)
    try:
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise InputError(f"master key {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"master key {p}: cannot read: {e}") from e
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InputError(f"master key {p}: not a master key (64 hex digits expected)")
    return key


@dataclass
class KeyFile:
    """What ``keys.json`` holds (wrapped keys only)."""

    master: str
    current: int
    keys: dict[int, bytes]
    token: bytes
    migrating: bool = False
    trail: bytes = b""
    trail_id: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return orjson.dumps({"format": FORMAT, "master": self.master, "current": self.current,
                             "keys": {str(k): b64(v) for k, v in sorted(self.keys.items())},
                             "token": b64(self.token), "trail": b64(self.trail), "trail_id": self.trail_id,
                             "migrating": self.migrating, **self.extra},
                            option=orjson.OPT_INDENT_2)

    @staticmethod
    def parse(path: Path, raw: bytes) -> KeyFile:
        try:
            d = orjson.loads(raw)
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, this version reads {FORMAT}")
            keys = {int(k): base64.b64decode(v, validate=True) for k, v in d["keys"].items()}
            return KeyFile(master=str(d["master"]), current=int(d["current"]), keys=keys,
                           token=base64.b64decode(d["token"], validate=True), migrating=bool(d.get("migrating")),
                           trail=base64.b64decode(d.get("trail", ""), validate=True),
                           trail_id=str(d.get("trail_id", "")))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as e:
            raise InputError(f"{path}: not a key file this version reads: {e}") from None


def key_file_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / KEY_FILE


def read_key_file(data_dir: str | os.PathLike[str]) -> KeyFile | None:
    p = key_file_path(data_dir)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from e
    return KeyFile.parse(p, raw)


def write_key_file(data_dir: str | os.PathLike[str], kf: KeyFile) -> None:
    """Replaces ``keys.json`` atomically and durably."""
    p = key_file_path(data_dir)
    tmp = p.with_name(KEY_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(kf.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    fsync_dir(p.parent)


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key_file(master: bytes) -> KeyFile:
    kf = KeyFile(master=fingerprint(master), current=1, keys={1: wrap_key(master, 1, random_key(32))},
                 token=wrap_key(master, TOKEN_KEY_ID, random_key(32)))
    add_trail_key(kf, master)
    return kf


def add_trail_key(kf: KeyFile, master: bytes) -> None:
    """The access trail's MAC key (wrapped like the data keys, so a rewrap keeps the
    evidence verifiable) and the trail's id (names its anchor)."""
    kf.trail = wrap_key(master, TRAIL_KEY_ID, random_key(32))
    kf.trail_id = random_key(8).hex()


@dataclass
class Keys:
    """A data directory's keys, opened: the vault (data keys) and the index's token key."""

    vault: Vault
    token_key: bytes
    file: KeyFile
    trail_key: bytes = b""


def open_keys(data_dir: str | os.PathLike[str], master: bytes, kf: KeyFile) -> Keys:
    """Unwraps every key of ``kf``; a wrong master key is one clear error."""
    if kf.master != fingerprint(master):
        raise InputError(f"{Path(data_dir)}: the master key given (fingerprint {fingerprint(master)}) is not this "
                         f"data directory's (fingerprint {kf.master})")
    try:
        plain = {i: unwrap_key(master, i, w) for i, w in kf.keys.items()}
        token = unwrap_key(master, TOKEN_KEY_ID, kf.token)
        trail = unwrap_key(master, TRAIL_KEY_ID, kf.trail) if kf.trail else b""
    except SealError as e:
        raise InputError(f"{key_file_path(data_dir)}: {e}") from None
    return Keys(Vault(plain, kf.current), token, kf, trail)


def rotate(data_dir: str | os.PathLike[str], master: bytes) -> int:
    """Adds a new data key and makes it current (new writes use it; old values still open).
    Returns its id. One atomic key-file replacement: a crash leaves the old or the new."""
    kf = read_key_file(data_dir)
    if kf is None:
        raise InputError(f"{data_dir}: no key file (not a data directory of this format)")
    open_keys(data_dir, master, kf)  # the right master key, or stop here
    new_id = max(kf.keys) + 1
    kf.keys[new_id] = wrap_key(master, new_id, random_key(32))
    kf.current = new_id
    write_key_file(data_dir, kf)
    return new_id


def rewrap(data_dir: str | os.PathLike[str], master: bytes, new_master: bytes, old_path: Path | None = None,
           new_path: Path | None = None) -> int:
    """Wraps every key of the data directory under ``new_master`` instead of ``master``
    (one atomic replacement); the trail's anchor moves beside the new master key file.
    Returns how many keys were rewrapped."""
    kf = read_key_file(data_dir)
    if kf is None:
        raise InputError(f"{data_dir}: no key file (not a data directory of this format)")
    keys = open_keys(data_dir, master, kf)
    plain = {i: unwrap_key(master, i, w) for i, w in kf.keys.items()}
    kf.keys = {i: wrap_key(new_master, i, k) for i, k in plain.items()}
    kf.token = wrap_key(new_master, TOKEN_KEY_ID, keys.token_key)
    if keys.trail_key:
        kf.trail = wrap_key(new_master, TRAIL_KEY_ID, keys.trail_key)
    kf.master = fingerprint(new_master)
    if old_path is not None and new_path is not None and kf.trail_id:
        old_anchor, new_anchor = anchor_path(old_path, kf.trail_id), anchor_path(new_path, kf.trail_id)
        if old_anchor.exists() and old_anchor != new_anchor:
            new_anchor.write_bytes(old_anchor.read_bytes())  # the anchor's MAC is the trail key's: unchanged
            os.chmod(new_anchor, 0o600)
    write_key_file(data_dir, kf)
    return len(plain) + 1


def retire(data_dir: str | os.PathLike[str], master: bytes, ids: set[int]) -> None:
    """Drops data keys no stored value uses any more (the caller has checked)."""
    kf = read_key_file(data_dir)
    assert kf is not None
    open_keys(data_dir, master, kf)
    ids.discard(kf.current)
    for i in ids:
        kf.keys.pop(i, None)
    write_key_file(data_dir, kf)
