"""``scrm serve`` with several worker processes.

One Python process keeps at most one core busy (the GIL), so the service runs ``workers``
processes. The supervisor (this module's ``supervise``, the process ``scrm serve`` starts)
owns the listening socket: it accepts each connection and hands it to the worker holding
the fewest open connections, over a Unix SEQPACKET socket (SCM_RIGHTS). Workers report
each connection they close, so the counts stay true; keep-alive clients are spread evenly,
which the kernel's SO_REUSEPORT hashing does not do (50 connections split 29/21 in a
measurement, and the fuller worker set the tail latency). Only connection set-up passes
through the supervisor; requests go straight to the worker.

The supervisor starts a worker again when it dies and stops the service when workers keep
dying (exit status of the last one). SIGTERM or SIGINT stops accepting, stops each worker
(graceful: aiohttp's cleanup runs) and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from aiohttp import web

from control.config import ControlConfig

log = logging.getLogger("scrm.control")


@dataclass
class _Worker:
    proc: subprocess.Popen
    chan: socket.socket
    conns: int = 0
    alive: bool = True


def supervise(config: ControlConfig) -> None:
    try:
        lsock = socket.create_server((config.host, config.port), backlog=2048)
    except OSError as e:
        raise SystemExit(f"scrm serve: cannot listen on {config.host}:{config.port}: {e.strerror or e}") from None
    lsock.setblocking(False)
    env = {**os.environ, "SCRM_WORKER_CONFIG": config.to_json()}
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)

    def start(i: int) -> _Worker:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = subprocess.Popen([sys.executable, "-m", "control.worker"], pass_fds=[theirs.fileno()],
                                env={**env, "SCRM_WORKER_ID": str(i), "SCRM_WORKER_FD": str(theirs.fileno())})
        theirs.close()
        mine.setblocking(False)
        sel.register(mine, selectors.EVENT_READ, i)
        return _Worker(proc, mine)

    workers = {i: start(i) for i in range(config.workers)}
    stopping = False

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deaths: list[float] = []
    status = 0

    def dispatch(conn: socket.socket) -> None:
        try:
            for w in sorted((w for w in workers.values() if w.alive), key=lambda w: w.conns):
                try:
                    socket.send_fds(w.chan, [b"c"], [conn.fileno()])
                except (BlockingIOError, InterruptedError):
                    continue  # this worker is not reading: the next one
                except OSError:
                    w.alive = False
                    continue
                w.conns += 1
                return
            log.warning("no worker could take a connection: closed")
        finally:
            conn.close()  # the worker holds its own descriptor now

    try:
        while not stopping:
            for key, _ in sel.select(0.2):
                if key.data is None:
                    while True:
                        try:
                            conn, _addr = lsock.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as e:  # e.g. out of descriptors: keep serving the others
                            log.warning("accept failed: %s", e)
                            break
                        dispatch(conn)
                    continue
                w = workers[key.data]
                while True:
                    try:
                        msg = w.chan.recv(64)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        msg = b""
                    if not msg:  # the worker is gone
                        w.alive = False
                        sel.unregister(w.chan)
                        break
                    w.conns = max(0, w.conns - msg.count(b"-"))
            for i, w in list(workers.items()):
                rc = w.proc.poll()
                if rc is None or stopping:
                    continue
                w.alive = False
                if w.chan.fileno() != -1:
                    try:
                        sel.unregister(w.chan)
                    except KeyError:  # already gone: its channel reported the end first
                        pass
                    w.chan.close()
                now = time.monotonic()
                deaths = [t for t in deaths if t > now - 60] + [now]
                if len(deaths) > 2 * config.workers:
                    print(f"scrm serve: workers keep exiting (last status {rc}); stopping", file=sys.stderr,
                          flush=True)
                    status = rc or 1
                    stopping = True
                    break
                log.warning("server worker %d exited with %d: starting it again", i, rc)
                workers[i] = start(i)
    finally:
        sel.close()
        lsock.close()
        for w in workers.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in workers.values():
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            if w.chan.fileno() != -1:
                w.chan.close()
    if status:
        raise SystemExit(status)


def serve_worker(config: ControlConfig, chan_fd: int) -> None:
    """A worker: serves the connections the supervisor hands over until told to stop or
    the supervisor is gone."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # uvloop is optional; asyncio's loop works too
        pass
    asyncio.run(_worker_main(config, chan_fd))


async def _worker_main(config: ControlConfig, chan_fd: int) -> None:
    from control.app import create_app

    loop = asyncio.get_running_loop()
    chan = socket.socket(fileno=chan_fd)
    chan.setblocking(False)
    # no access log: nothing configures logging for it (it printed nothing), and each request
    # still paid for the call; reads of content are in the access trail, counts in /metrics
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    server = runner.server
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pending: set[asyncio.Task] = set()

    lost = server.connection_lost  # aiohttp's server hears of every connection that ends

    def connection_lost(handler, exc: BaseException | None) -> None:
        try:
            lost(handler, exc)
        finally:
            try:
                chan.send(b"-")  # one connection fewer here
            except OSError:
                pass

    server.connection_lost = connection_lost

    def settled(task: asyncio.Task) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a handed-over connection failed: %s", task.exception())

    def readable() -> None:
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(chan, 64, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:  # the supervisor is gone: stop
                stop.set()
                loop.remove_reader(chan.fileno())
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(server, sock))
                pending.add(task)
                task.add_done_callback(settled)

    loop.add_reader(chan.fileno(), readable)
    try:
        await stop.wait()
    finally:
        if chan.fileno() != -1:
            loop.remove_reader(chan.fileno())
        await runner.cleanup()
        chan.close()
