"""A pure-Python reference pipeline doing the same stages as the Rust core, for the
benchmark's baseline: cryptography (RSA PKCS#1 v1.5 + AES-256-CBC), orjson and py-lmdb,
with a thread pool across the cores. Per-message Python by design: it is the yardstick,
not a product path."""

from __future__ import annotations

import base64
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lmdb
import orjson


def _load_keys(keys_dir: Path) -> dict[int, object]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return {int(p.stem): load_pem_private_key(p.read_bytes(), password=None) for p in keys_dir.glob("*.pem")}


def ingest_reference(docs: list[bytes], keys_dir: Path, data_dir: Path, threads: int) -> tuple[int, int]:
    """Ingests ``docs`` into a fresh LMDB under ``data_dir``. Returns (stored, failed)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    keys = _load_keys(keys_dir)
    pkcs1 = PKCS1v15()
    env = lmdb.open(str(data_dir), map_size=1 << 36, max_dbs=4)
    records = env.open_db(b"records")
    seen = env.open_db(b"seen")

    def one(item: dict) -> tuple[bytes, bytes] | None:
        try:
            rk = keys[item["publickey_ver"]].decrypt(base64.b64decode(item["encrypt_random_key"]), pkcs1)
            dec = Cipher(algorithms.AES(rk), modes.CBC(rk[:16])).decryptor()
            padded = dec.update(base64.b64decode(item["encrypt_chat_msg"])) + dec.finalize()
            unpad = padding.PKCS7(128).unpadder()
            plain = unpad.update(padded) + unpad.finalize()
            msg = orjson.loads(plain)
            rec = {"seq": item["seq"], "msgid": msg["msgid"], "msgtype": msg.get("msgtype", "switch"),
                   "from": msg.get("from", ""), "msgtime": msg.get("msgtime", 0), "raw": plain.decode()}
            return struct.pack(">Q", item["seq"]), orjson.dumps(rec)
        except Exception:  # noqa: BLE001 - the reference only counts failures
            return None

    stored = failed = 0
    with ThreadPoolExecutor(threads) as pool:
        for doc in docs:
            items = orjson.loads(doc)["chatdata"]
            with env.begin(db=seen) as txn:
                items = [it for it in items if txn.get(struct.pack(">Q", it["seq"])) is None]
            out = list(pool.map(one, items, chunksize=max(1, len(items) // (threads * 4))))
            good = [o for o in out if o is not None]
            failed += len(out) - len(good)
            with env.begin(write=True) as txn:
                txn.cursor(db=records).putmulti(good)
                txn.cursor(db=seen).putmulti([(k, b"S") for k, _ in good])
            stored += len(good)
    env.close()
    return stored, failed
