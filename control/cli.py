"""The control plane's commands of ``scrm``: ``serve``, ``users``, ``bench http`` and the
serving end of ``demo``. The ``scrm`` entry point is :func:`main`: the library's commands
(``scrm_fast.cli``) plus these, so the library never imports the control plane."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scrm_fast.cli import _print_json
from scrm_fast.cli import main as library_main
from scrm_fast.errors import InputError

DEMO_PASSWORD = "demo-pass-123"


def _open_data_dir(data: str | Path) -> None:
    """Opens the data directory's store once, so a wrong or missing master key, or a
    plaintext directory, is one clear line before any server process starts."""
    from scrm_fast.storage import ArchiveStore

    ArchiveStore(data).close()


def cmd_serve(a: argparse.Namespace) -> int:
    from control.app import serve
    from control.config import ControlConfig

    _open_data_dir(a.data)
    cfg = ControlConfig.from_env(a.data, host=a.host, port=a.port, keys_dir=Path(a.keys) if a.keys else None,
                                 workers=a.workers)
    _ensure_admin(cfg.data_dir)
    print(f"serving the console and /api/v1 on http://{cfg.host}:{cfg.port}/ (data: {cfg.data_dir})", flush=True)
    serve(cfg)
    return 0


def _ensure_admin(data_dir: Path) -> None:
    """A fresh tenant gets an admin account with a random password, printed once."""
    import secrets

    from control.accounts import AccountService

    accounts = AccountService(data_dir)
    try:
        if not accounts.list_users():
            password = secrets.token_urlsafe(12)
            accounts.create_user("admin", password, "admin")
            print(f"created user admin with password {password} (shown once)", file=sys.stderr)
    finally:
        accounts.close()


def cmd_users(a: argparse.Namespace) -> int:
    from control.accounts import AccountService
    from control.errors import ApiError

    accounts = AccountService(Path(a.data))
    try:
        if a.users_cmd == "add":
            password = a.password or os.environ.get("SCRM_PASSWORD") or sys.stdin.readline().strip()
            try:
                user = accounts.create_user(a.username, password, a.role, a.employee, a.department, a.sharing)
            except ApiError as e:
                raise InputError(e.detail) from e
            from scrm_fast.reads import cli_trail

            cli_trail(accounts.store)("user_created", user.username, {"role": user.role})
            _print_json(user.public())
        else:
            _print_json([u.public() for u in accounts.list_users()])
    finally:
        accounts.close()
    return 0


def serve_demo(a: argparse.Namespace, data: Path, keys_dir: Path) -> int:
    from control.accounts import AccountService
    from control.app import serve
    from control.config import ControlConfig
    from scrm_fast.storage import ArchiveStore

    with ArchiveStore(data, readonly=True) as store:
        directory = store.directory() or {}
    accounts = AccountService(data)
    try:
        have = {u.username for u in accounts.list_users()}
        if "admin" not in have:
            accounts.create_user("admin", DEMO_PASSWORD, "admin")
        if "operator" not in have:
            first = directory["employees"][1]["userid"]
            accounts.create_user("operator", DEMO_PASSWORD, "regular", employee=first)
    finally:
        accounts.close()
    cfg = ControlConfig.from_env(data, port=a.port, keys_dir=keys_dir)
    print(f"console: http://{cfg.host}:{cfg.port}/  (admin / {DEMO_PASSWORD}; operator / {DEMO_PASSWORD})",
          flush=True)
    serve(cfg)
    return 0


def cmd_bench_http(a: argparse.Namespace) -> int:
    from control.bench_http import bench_http

    if a.rounds < 1:
        raise InputError("--rounds must be ≥ 1")
    _print_json(bench_http(a.data, a.clients, a.seconds, a.port, what=a.what, pool=a.pool, rounds=a.rounds))
    return 0


def cmd_bench_dialer(a: argparse.Namespace) -> int:
    from dialer.bench import bench_dialer

    _print_json(bench_dialer(a.devices, a.seconds, a.workers, a.port, a.rounds))
    return 0


def cmd_dialer_simulate(a: argparse.Namespace) -> int:
    from dialer.simulate import play_against, simulate_week

    if a.url:
        import asyncio

        if not (a.user and a.clock_file):
            raise SystemExit("scrm dialer simulate --url: --user, --clock-file (the file the server's "
                             "SCRM_CLOCK=file:… reads) and the password ($SCRM_PASSWORD) are needed")
        password = os.environ.get("SCRM_PASSWORD") or sys.stdin.readline().strip()
        _print_json(asyncio.run(play_against(a.url.rstrip("/"), a.user, password, a.clock_file, devices=a.devices,
                                             sims=a.sims, days=a.days, numbers=a.numbers, seed=a.seed)))
        return 0
    if not a.data:
        raise SystemExit("scrm dialer simulate: --data DIR (or --url of a running server)")
    _print_json(simulate_week(a.data, devices=a.devices, sims=a.sims, days=a.days, numbers=a.numbers, seed=a.seed,
                              workers=a.workers, start_day=a.start))
    return 0


def cmd_bench_pools(a: argparse.Namespace) -> int:
    from control.customers.bench import bench_pools

    _print_json(bench_pools(a.clients, a.seconds, a.rounds, a.workers, a.recycle_customers))
    return 0


def cmd_bench_messaging(a: argparse.Namespace) -> int:
    from control.messaging.bench import bench_messaging

    _print_json(bench_messaging(a.recipients, a.rounds))
    return 0


def add_commands(sub, bench_sub) -> None:
    """Adds the control plane's commands to the ``scrm`` parser."""
    s = sub.add_parser("serve", help="serve the console and the HTTP API (/api/v1)")
    s.add_argument("--data", required=True, help="the tenant's data directory")
    s.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, env SCRM_HOST)")
    s.add_argument("--port", type=int, default=None, help="port (default 8080, env SCRM_PORT)")
    s.add_argument("--keys", help="key directory, for uploads through POST /api/v1/ingest")
    s.add_argument("--workers", type=int, default=None,
                   help="server processes behind one port (default: one per core, at most 8; env SCRM_WORKERS)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("users", help="operator accounts of the control plane")
    usub = s.add_subparsers(dest="users_cmd", required=True, metavar="WHAT")
    u = usub.add_parser("add", help="create an account (password from --password, $SCRM_PASSWORD or stdin)")
    u.add_argument("--data", required=True)
    u.add_argument("--username", required=True)
    u.add_argument("--role", required=True, choices=["admin", "auditor", "leader", "regular"])
    u.add_argument("--employee", help="the WeCom userid this operator is (data scope 'self')")
    u.add_argument("--department", type=int, help="department id (data scope 'department')")
    u.add_argument("--sharing", action="store_true", help="sharing permission: widens 'self' to the department")
    u.add_argument("--password")
    u.set_defaults(func=cmd_users)
    u = usub.add_parser("list", help="accounts")
    u.add_argument("--data", required=True)
    u.set_defaults(func=cmd_users)

    s = sub.add_parser("dialer", help="the dialer (rules D-1 … D-12)")
    dsub = s.add_subparsers(dest="dialer_cmd", required=True, metavar="WHAT")
    d = dsub.add_parser("simulate", help="a simulated fleet of phones plays days of calls against `scrm serve` of "
                                         "DATA (an injected clock: a week runs in about a minute)")
    d.add_argument("--data", help="the tenant's data directory (created if missing; a server is started on it)")
    d.add_argument("--url", help="play against this running server instead (started with SCRM_CLOCK=file:F)")
    d.add_argument("--user", help="with --url: an account with dialer.admin (password from $SCRM_PASSWORD or stdin)")
    d.add_argument("--clock-file", help="with --url: the file the server reads its time from")
    d.add_argument("--devices", type=int, default=20)
    d.add_argument("--sims", type=int, default=3, help="SIM slots per device")
    d.add_argument("--days", type=int, default=7)
    d.add_argument("--numbers", type=int, default=8000, help="numbers in the two campaigns")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--workers", type=int, default=2, help="server processes")
    d.add_argument("--start", help="first day YYYY-MM-DD (default: DAYS days ago)")
    d.set_defaults(func=cmd_dialer_simulate)

    sub.choices["demo"].set_defaults(serve_demo=serve_demo)

    b = bench_sub.add_parser("http", help="archive reads over HTTP under concurrent clients (loopback, bounded)")
    b.add_argument("--data", required=True, help="an ingested data directory")
    b.add_argument("--clients", type=int, default=50)
    b.add_argument("--seconds", type=float, default=30.0)
    b.add_argument("--port", type=int, default=18765)
    b.add_argument("--what", choices=["messages", "search"], default="messages",
                   help="conversation pages (default) or archive search with random 1–4 character queries")
    b.add_argument("--pool", type=int, default=400,
                   help="distinct search queries sent round robin (default 400; the index keeps per-segment "
                        "counts, so a larger pool measures more first-time queries)")
    b.add_argument("--rounds", type=int, default=1,
                   help="runs, each against a fresh server; with more than one, the medians too (default 1)")
    b.set_defaults(func=cmd_bench_http)

    b = bench_sub.add_parser("dialer", help="dialer decisions per second under concurrent devices, against "
                                            "`scrm serve` with worker processes (a throw-away tenant)")
    b.add_argument("--devices", type=int, default=50)
    b.add_argument("--seconds", type=float, default=10.0, help="per round")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--port", type=int, default=18766)
    b.set_defaults(func=cmd_bench_dialer)

    b = bench_sub.add_parser("pools", help="pool claims per second under concurrent members (scrm serve with "
                                           "worker processes), a 5,000-row import, the recycling pass")
    b.add_argument("--clients", type=int, default=50)
    b.add_argument("--seconds", type=float, default=10.0, help="per round")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--recycle-customers", type=int, default=200_000, help="held customers for the recycling pass")
    b.set_defaults(func=cmd_bench_pools)

    b = bench_sub.add_parser("messaging", help="the quota check-and-reserve of a large enterprise send, its preview")
    b.add_argument("--recipients", type=int, default=10_000)
    b.add_argument("--rounds", type=int, default=5)
    b.set_defaults(func=cmd_bench_messaging)


def main(argv: list[str] | None = None) -> int:
    return library_main(argv, extensions=(add_commands,))


if __name__ == "__main__":
    sys.exit(main())
