"""Durable ingest jobs: GetChatData uploads that survive a crash.

An upload is written to ``DATA/uploads/<id>.part`` and fsynced, renamed to
``<id>.jsonl`` (the directory fsynced), and journaled as a job in the store's ``jobs``
table (a synced transaction) — only then is it answered 202. Whoever runs a job holds an
flock on its file, so any server process may pick it up and no two run it: the process
that took the upload starts it, and every server process re-drives unfinished jobs when it
starts (a job whose runner died holds no lock). The ingest itself is idempotent by seq and
waits for the data directory's ``ingest`` lease. A finished job's file is removed; a
failed one keeps it and says why.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from scrm_fast.clock import SystemClock
from scrm_fast.sealing import fsync_dir
from scrm_fast.storage import ArchiveStore, app_key

log = logging.getLogger("scrm.control")

JOB_ID = re.compile(r"^[0-9a-f]{16}$")
_TABLE = "jobs"
UNFINISHED = ("queued", "running")


class UploadTooLarge(Exception):
    pass


class IngestJobs:
    """The jobs of one data directory, as one server process sees them. ``ingest(path,
    job_id)`` runs the ingest of one file and returns its summary (a dict)."""

    def __init__(self, store: ArchiveStore, ingest, clock=None) -> None:
        self.store = store
        self.dir = store.data_dir / "uploads"
        self._ingest = ingest
        self.clock = clock or SystemClock()
        self._threads: list[threading.Thread] = []

    # -- the journal ----------------------------------------------------------------------
    def get(self, job_id: str) -> dict | None:
        if not JOB_ID.match(job_id):
            return None
        with self.store.app_read() as app:
            job = app.get(_TABLE, app_key(job_id))
        return job if isinstance(job, dict) else None

    def _update(self, job_id: str, **changes: object) -> dict:
        with self.store.app_write() as app:
            job = app.get(_TABLE, app_key(job_id))
            assert isinstance(job, dict), job_id
            job.update(changes)
            app.put(_TABLE, app_key(job_id), job)
        return job

    def unfinished(self) -> list[dict]:
        with self.store.app_read() as app:
            return [j for _, j in app.scan(_TABLE) if isinstance(j, dict) and j.get("status") in UNFINISHED]

    def path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.jsonl"

    # -- taking an upload -----------------------------------------------------------------
    async def receive(self, chunks, max_bytes: int, by: str) -> dict | None:
        """Writes the upload from ``chunks`` (an async iterator of bytes) durably and
        journals its job; None for an empty upload; :class:`UploadTooLarge` past
        ``max_bytes`` (nothing kept)."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        job_id = secrets.token_hex(8)
        part = self.dir / f"{job_id}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a receiving upload is not swept by a starting server
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge
                os.write(fd, chunk)  # into the page cache; one fsync at the end
            if size == 0:
                raise _Empty
            job = {"id": job_id, "status": "queued", "bytes": size, "by": by, "attempts": 0,
                   "created_at": self.clock.now_ms()}
            await asyncio.to_thread(self._persist, fd, part, job)
            return job
        except _Empty:
            part.unlink(missing_ok=True)
            return None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def _persist(self, fd: int, part: Path, job: dict) -> None:
        os.fsync(fd)
        os.replace(part, self.path(job["id"]))
        fsync_dir(self.dir)
        with self.store.app_write() as app:  # a synced transaction: the job is journaled
            app.put(_TABLE, app_key(job["id"]), job)

    # -- running ----------------------------------------------------------------------------
    def start(self, job_id: str) -> None:
        """Runs the job on a thread of this process unless another process runs it."""
        t = threading.Thread(target=self.run, args=(job_id,), name=f"scrm-job-{job_id}", daemon=False)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def run(self, job_id: str) -> dict | None:
        """Runs one job to its end, holding its file's lock; returns the job (None when
        another process holds it, or it is finished)."""
        path = self.path(job_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            job = self.get(job_id)
            if job is not None and job.get("status") in UNFINISHED:
                self._update(job_id, status="failed", error="its uploaded file is gone",
                             finished_at=self.clock.now_ms())
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None  # another process runs it
                raise
            job = self.get(job_id)  # read under the lock: a job finished meanwhile is not run again
            if job is None or job.get("status") not in UNFINISHED:
                return None
            job = self._update(job_id, status="running", attempts=int(job.get("attempts", 0)) + 1,
                               started_at=self.clock.now_ms(), pid=os.getpid())
            try:
                summary = self._ingest(path, job_id)
            except Exception as e:  # noqa: BLE001 - reported on the job, the file kept
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.warning("ingest job %s failed: %s", job_id, first)
                return self._update(job_id, status="failed", error=first, kept=f"uploads/{path.name}",
                                    finished_at=self.clock.now_ms())
            job = self._update(job_id, status="done", summary=summary, finished_at=self.clock.now_ms())
            path.unlink(missing_ok=True)
            return job
        finally:
            os.close(fd)

    def redrive(self) -> int:
        """Starts every unfinished job no process runs (a crash left it), and sweeps
        upload files that never became a job; returns how many were started."""
        self._sweep()
        jobs = self.unfinished()
        for job in jobs:
            self.start(job["id"])
        return len(jobs)

    def _sweep(self) -> None:
        if not self.dir.exists():
            return
        for p in self.dir.iterdir():
            if p.suffix not in (".part", ".jsonl"):
                continue
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # being received or run
                if p.suffix == ".part" or self.get(p.stem) is None:
                    p.unlink(missing_ok=True)  # never answered 202: the client sends it again
            finally:
                os.close(fd)

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)


class _Empty(Exception):
    pass
