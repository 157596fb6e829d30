"""The stand-in SDK: a shared library with the vendor's C ABI (``standin_sdk.c`` beside this
file), built with the system compiler, serving a simulated enterprise through
``GetChatData``/``GetMediaData`` and decrypting with the open scheme. For tests and the
demo only — the real library stays the vendor's.

:func:`write_feed` lays out what it serves (``STANDIN_SDK_DATA``): ``chatdata.txt``, one
``<seq> <item JSON>`` line per chatdata item in seq order, and ``media/<hex of sdkfileid>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import orjson

from scrm_fast.errors import InputError

SOURCE = Path(__file__).with_name("standin_sdk.c")


def build_standin(out_dir: str | os.PathLike[str]) -> Path:
    """Compiles the stand-in into ``out_dir`` (once per source version) and returns its path."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise InputError("the stand-in SDK needs a C compiler (scripts/setup.sh installs gcc)")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = Path(out_dir) / f"libstandin_sdk-{digest}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(SOURCE), "-lcrypto"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise InputError(f"building the stand-in SDK failed: {proc.stderr.strip()[:2000]}")
        os.replace(tmp, out)
    return out


def media_path(feed_dir: str | os.PathLike[str], sdkfileid: str) -> Path:
    return Path(feed_dir) / "media" / sdkfileid.encode().hex()


def feed_items(batch_files: Iterable[Path]) -> Iterable[tuple[int, bytes]]:
    """``(seq, item JSON)`` of every chatdata item of GetChatData documents (JSONL)."""
    for path in batch_files:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    for item in orjson.loads(line)["chatdata"]:
                        yield item["seq"], orjson.dumps(item)


def write_feed(feed_dir: str | os.PathLike[str], items: Iterable[tuple[int, bytes]], *, append: bool = False) -> int:
    """Writes (or appends, for data that "arrives" later) the items the stand-in serves."""
    d = Path(feed_dir)
    (d / "media").mkdir(parents=True, exist_ok=True)
    n = 0
    with open(d / "chatdata.txt", "ab" if append else "wb") as f:
        for seq, raw in items:
            f.write(b"%d %s\n" % (seq, raw))
            n += 1
    return n


def write_media(feed_dir: str | os.PathLike[str], media: Iterable[tuple[str, bytes]]) -> int:
    n = 0
    for sdkfileid, data in media:
        p = media_path(feed_dir, sdkfileid)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        n += 1
    return n


_MEDIA_PAYLOADS = {"image": "image", "voice": "voice", "video": "video", "file": "file", "emotion": "emotion",
                   "meeting_voice_call": "meeting_voice_call", "voip_doc_share": "voip_doc_share"}


def simulated_media(truth: Path) -> Iterable[tuple[str, bytes]]:
    """``(sdkfileid, content)`` of every media item of a simulated archive's messages (its
    ``truth.jsonl``), mixed messages' items included — read here, apart from the engine."""
    from scrm_fast.simulate import media_bytes, media_size, png_request, voice_request

    def one(kind: str, p: dict) -> tuple[str, bytes] | None:
        fid = p.get("sdkfileid")
        if not fid:
            return None
        stated = max(int(p.get(k, 0) or 0) for k in ("filesize", "voice_size", "imagesize"))
        if kind == "image":  # a PNG whose size the message states exactly
            return fid, media_bytes(fid, png_request(stated), "image")
        if kind == "voice":  # AMR-NB frames, likewise
            return fid, media_bytes(fid, voice_request(stated), "voice")
        return fid, media_bytes(fid, media_size(fid, stated))

    with open(truth, "rb") as f:
        for line in f:
            m = orjson.loads(line)
            t = m.get("msgtype")
            payloads = []
            if t in _MEDIA_PAYLOADS:
                payloads.append((t, m.get(_MEDIA_PAYLOADS[t]) or {}))
            elif t == "mixed":
                for it in (m.get("mixed") or {}).get("item", []):
                    if it.get("type") in _MEDIA_PAYLOADS:
                        payloads.append((it["type"], orjson.loads(it["content"])))
            for kind, p in payloads:
                if (got := one(kind, p)) is not None:
                    yield got
