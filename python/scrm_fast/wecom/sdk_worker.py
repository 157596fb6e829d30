"""The vendor SDK in a supervised worker process (spec ``wecom-archive.md`` §1).

The vendor's ``libWeWorkFinanceSdk_C.so`` aborts the whole process on some inputs, so it
never runs in the sync's, the ingest's or the server's process. :class:`SdkWorker` starts
``python -m scrm_fast.wecom.sdk_worker LIB`` and talks to it over a pipe, one request at a
time: ``Init``/``GetChatData``/``GetMediaData`` through ctypes declarations of the vendor
header, ``DecryptData`` for a whole batch at once in the engine (parallel). When the child
dies, the request is retried in a fresh child; a batch that kills it twice is bisected
until the one item that does is found, and that item alone is quarantined as
``sdk_crash`` (:meth:`SdkWorker.decrypt_batch`).

Frames: request ``u32 length, op byte, payload``; answer ``u32 length, payload``
(little-endian). Payloads are msgpack, except the decrypt request and answer, which are
the engine's own buffers.
"""

from __future__ import annotations

import ctypes as ct
import os
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import msgpack

from scrm_fast.errors import ScrmError

OP_INIT, OP_CHAT, OP_MEDIA, OP_DECRYPT = b"I", b"G", b"M", b"D"
_LEN = struct.Struct("<I")
# A request the child does not answer within its own timeout plus this is taken as a hang.
_GRACE_S = 30.0


class SdkWorkerDied(ScrmError):
    """The SDK's process died (abort, segfault) or hung while answering."""


class SdkWorkerError(ScrmError):
    """The SDK worker cannot be started or keeps dying."""


@dataclass
class MediaChunk:
    rc: int
    data: bytes
    outindex: str
    is_finish: bool


# -- the child ---------------------------------------------------------------------------------

def _declare(lib: ct.CDLL) -> None:
    """Exact ``argtypes``/``restype`` of the header's functions (spec §1)."""
    vp, cp, i = ct.c_void_p, ct.c_char_p, ct.c_int
    lib.NewSdk.argtypes, lib.NewSdk.restype = [], vp
    lib.Init.argtypes, lib.Init.restype = [vp, cp, cp], i
    lib.DestroySdk.argtypes, lib.DestroySdk.restype = [vp], None
    lib.GetChatData.argtypes = [vp, ct.c_ulonglong, ct.c_uint, cp, cp, i, vp]
    lib.GetChatData.restype = i
    lib.GetMediaData.argtypes = [vp, cp, cp, cp, cp, i, vp]
    lib.GetMediaData.restype = i
    lib.NewSlice.argtypes, lib.NewSlice.restype = [], vp
    lib.FreeSlice.argtypes, lib.FreeSlice.restype = [vp], None
    lib.GetContentFromSlice.argtypes, lib.GetContentFromSlice.restype = [vp], vp
    lib.GetSliceLen.argtypes, lib.GetSliceLen.restype = [vp], i
    lib.NewMediaData.argtypes, lib.NewMediaData.restype = [], vp
    lib.FreeMediaData.argtypes, lib.FreeMediaData.restype = [vp], None
    for name in ("GetOutIndexBuf", "GetData"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [vp], vp
    for name in ("GetIndexLen", "GetDataLen", "IsMediaDataFinish"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [vp], i


def _read_exact(f, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _opt(s: str | None) -> bytes | None:
    return s.encode() if s else None


class _Child:
    def __init__(self, path: str) -> None:
        from scrm_fast._core import Cipher

        self.lib = ct.CDLL(path)
        _declare(self.lib)
        self.cipher = Cipher.vendor(path)  # DecryptData for whole batches, in the engine
        self.sdk: int | None = None

    def init(self, corpid: str, secret: str) -> list:
        if self.sdk is not None:
            self.lib.DestroySdk(self.sdk)
        self.sdk = self.lib.NewSdk()
        if not self.sdk:
            return [10003]
        return [self.lib.Init(self.sdk, corpid.encode(), secret.encode())]

    def chat(self, seq: int, limit: int, proxy: str | None, passwd: str | None, timeout: int) -> list:
        if self.sdk is None:
            return [10000, b""]
        s = self.lib.NewSlice()
        try:
            rc = self.lib.GetChatData(self.sdk, seq, limit, _opt(proxy), _opt(passwd), timeout, s)
            n = self.lib.GetSliceLen(s) if rc == 0 else 0
            body = ct.string_at(self.lib.GetContentFromSlice(s), n) if n > 0 else b""
            return [rc, body]
        finally:
            self.lib.FreeSlice(s)

    def media(self, indexbuf: str, sdkfileid: str, proxy: str | None, passwd: str | None, timeout: int) -> list:
        if self.sdk is None:
            return [10000, b"", "", False]
        m = self.lib.NewMediaData()
        try:
            rc = self.lib.GetMediaData(self.sdk, indexbuf.encode(), sdkfileid.encode(), _opt(proxy), _opt(passwd),
                                       timeout, m)
            if rc != 0:
                return [rc, b"", "", False]
            # lengths, not NUL bytes, bound every buffer: media is binary
            dn, on = self.lib.GetDataLen(m), self.lib.GetIndexLen(m)
            data = ct.string_at(self.lib.GetData(m), dn) if dn > 0 else b""
            outindex = ct.string_at(self.lib.GetOutIndexBuf(m), on).decode("ascii", "replace") if on > 0 else ""
            return [0, data, outindex, bool(self.lib.IsMediaDataFinish(m))]
        finally:
            self.lib.FreeMediaData(m)

    def decrypt(self, request: bytes) -> bytes:
        from scrm_fast._core import vendor_decrypt_request

        return vendor_decrypt_request(self.cipher, request)


def child_main(path: str) -> int:
    # The protocol owns the original stdout; anything the library prints goes to stderr.
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    try:
        child = _Child(path)
    except Exception as e:  # noqa: BLE001 - told to the parent, which raises it clearly
        hello = msgpack.packb([False, f"{type(e).__name__}: {e}"])
        proto_out.write(_LEN.pack(len(hello)) + hello)
        return 1
    hello = msgpack.packb([True, ""])
    proto_out.write(_LEN.pack(len(hello)) + hello)
    while True:
        head = _read_exact(proto_in, 4)
        if head is None:
            return 0
        (n,) = _LEN.unpack(head)
        frame = _read_exact(proto_in, n)
        if frame is None:
            return 0
        op, payload = frame[:1], frame[1:]
        if op == OP_DECRYPT:
            answer = child.decrypt(payload)
        elif op == OP_INIT:
            answer = msgpack.packb(child.init(*msgpack.unpackb(payload)))
        elif op == OP_CHAT:
            answer = msgpack.packb(child.chat(*msgpack.unpackb(payload)))
        elif op == OP_MEDIA:
            answer = msgpack.packb(child.media(*msgpack.unpackb(payload)))
        else:
            return 2
        proto_out.write(_LEN.pack(len(answer)) + answer)


# -- the parent --------------------------------------------------------------------------------

class SdkWorker:
    """The supervised SDK. Thread-safe: one request at a time. ``kind`` is ``vendor`` so it
    stands where a :class:`scrm_fast.Cipher` does in the pipeline."""

    kind = "vendor"

    def __init__(self, path: str, *, max_restarts: int = 1000) -> None:
        if not os.path.exists(path):
            raise SdkWorkerError(f"vendor SDK {path}: no such file")
        self.path = path
        self.max_restarts = max_restarts
        self.restarts = 0
        self.crashes = 0
        self._init_args: tuple[str, str] | None = None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._start()

    def __repr__(self) -> str:
        return f"SdkWorker({self.path!r})"

    # lifecycle
    def _start(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen([sys.executable, "-m", "scrm_fast.wecom.sdk_worker", self.path],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            ok, why = msgpack.unpackb(self._read(self._proc, _LEN.unpack(self._read(self._proc, 4, 60))[0], 60))
        except SdkWorkerDied as e:
            self._kill()
            raise SdkWorkerError(f"vendor SDK {self.path}: the worker did not start ({e})") from e
        if not ok:
            self._kill()
            raise SdkWorkerError(f"vendor SDK {self.path}: {why}")
        if self._init_args is not None:
            rc = msgpack.unpackb(self._call(OP_INIT, msgpack.packb(list(self._init_args)), 60))[0]
            if rc != 0:
                raise SdkWorkerError(f"Init returned {rc} in a restarted SDK worker")

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise SdkWorkerError(f"the SDK worker died {self.restarts} times; giving up")
        self._start()

    def _kill(self) -> None:
        p = self._proc
        if p is None:
            return
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()
        self._proc = None

    def close(self) -> None:
        with self._lock:
            p = self._proc
            if p is not None and p.poll() is None and p.stdin is not None:
                try:
                    p.stdin.close()  # EOF: the child exits on its own
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()

    def __enter__(self) -> SdkWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # one request
    def _call(self, op: bytes, payload: bytes, timeout_s: float) -> bytes:
        p = self._proc
        if p is None or p.stdin is None or p.stdout is None:
            raise SdkWorkerDied("no SDK worker")
        try:
            p.stdin.write(_LEN.pack(len(payload) + 1) + op + payload)
            p.stdin.flush()
            head = self._read(p, 4, timeout_s)
            return self._read(p, _LEN.unpack(head)[0], timeout_s)
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            raise SdkWorkerDied(self._death(p, str(e))) from e

    def _read(self, p: subprocess.Popen, n: int, timeout_s: float) -> bytes:
        fd = p.stdout.fileno()
        buf = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                p.kill()
                raise SdkWorkerDied(f"the SDK worker did not answer within {timeout_s:.0f} s; killed")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise SdkWorkerDied(self._death(p, "pipe closed"))
            buf += chunk
        return bytes(buf)

    @staticmethod
    def _death(p: subprocess.Popen, why: str) -> str:
        try:
            rc = p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        how = f"signal {-rc}" if rc < 0 else f"exit {rc}"
        return f"the SDK worker died ({how}; {why})"

    def _request(self, op: bytes, payload: bytes, timeout_s: float, retries: int = 1) -> bytes:
        with self._lock:
            for attempt in range(retries + 1):
                try:
                    return self._call(op, payload, timeout_s)
                except SdkWorkerDied:
                    self.crashes += 1
                    self._restart()
                    if attempt == retries:
                        raise
            raise SdkWorkerDied("unreachable")  # the loop returns or raises

    # the SDK's calls
    def init(self, corpid: str, secret: str) -> int:
        with self._lock:
            self._init_args = (corpid, secret)
            return msgpack.unpackb(self._request(OP_INIT, msgpack.packb([corpid, secret]), 60))[0]

    def get_chat_data(self, seq: int, limit: int = 1000, proxy: str | None = None, passwd: str | None = None,
                      timeout_s: int = 10) -> tuple[int, bytes]:
        rc, body = msgpack.unpackb(self._request(OP_CHAT, msgpack.packb([seq, limit, proxy, passwd, timeout_s]),
                                                 timeout_s + _GRACE_S))
        return rc, body

    def get_media_data(self, sdkfileid: str, indexbuf: str = "", proxy: str | None = None,
                       passwd: str | None = None, timeout_s: int = 10) -> MediaChunk:
        rc, data, outindex, finish = msgpack.unpackb(
            self._request(OP_MEDIA, msgpack.packb([indexbuf, sdkfileid, proxy, passwd, timeout_s]),
                          timeout_s + _GRACE_S))
        return MediaChunk(rc, data, outindex, finish)

    def decrypt_batch(self, batch, keys, seen=None):
        """The batch's :class:`scrm_fast.Cipher` (``supplied``): RSA here, ``DecryptData`` in
        the worker; an item the worker dies on twice, alone, is answered ``sdk_crash``."""
        from scrm_fast._core import vendor_prepare

        job = vendor_prepare(batch, keys, seen)
        parts: list[tuple[int, bytes | None]] = []
        with self._lock:
            self._answer(job, 0, len(job), parts, first=True)
        return job.cipher(parts)

    def _answer(self, job, start: int, end: int, parts: list, first: bool) -> None:
        if start >= end:
            return
        for _ in range(2 if (first or end - start == 1) else 1):
            try:
                parts.append((start, self._call(OP_DECRYPT, job.request(start, end), 60 + _GRACE_S)))
                return
            except SdkWorkerDied:
                self.crashes += 1
                self._restart()
        if end - start == 1:
            parts.append((start, None))
            return
        mid = (start + end) // 2
        self._answer(job, start, mid, parts, first=False)
        self._answer(job, mid, end, parts, first=False)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
