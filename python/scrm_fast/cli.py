"""The ``scrm`` command line. Every command has ``--help``; bad input exits non-zero with a
one-line reason on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC
from pathlib import Path

import orjson

from scrm_fast.errors import InputError, ScrmError


def _default_sdk_path() -> str:
    try:
        import pywecomarchive  # the vendor's .so ships inside this wheel
    except ImportError as e:
        raise InputError("--cipher vendor needs --sdk PATH (or the pywecomarchive package installed)") from e
    p = Path(pywecomarchive.__file__).parent / "lib" / "linux" / "x86_64" / "libWeWorkFinanceSdk_C.so"
    if not p.exists():
        raise InputError(f"pywecomarchive has no vendor library at {p}; pass --sdk PATH")
    return str(p)


def make_cipher(kind: str, sdk: str | None):
    """The open scheme, or the vendor SDK in a supervised worker process (it aborts its
    process on some inputs, so it never runs in this one). Close the worker when done."""
    from scrm_fast import Cipher
    from scrm_fast.wecom.sdk_worker import SdkWorker, SdkWorkerError

    if kind == "open":
        if sdk:
            raise InputError("--sdk is only for --cipher vendor")
        return Cipher.open()
    try:
        return SdkWorker(sdk or _default_sdk_path())
    except SdkWorkerError as e:
        raise InputError(str(e)) from e


def _secret(path: str, flag: str) -> str:
    """A secret from its file (never from the command line, where `ps` would show it)."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as e:
        raise InputError(f"{flag} {path}: {e.strerror}") from None
    if not secret:
        raise InputError(f"{flag} {path} is empty")
    return secret


def _closing(cipher) -> None:
    close = getattr(cipher, "close", None)
    if close is not None:
        close()


def _print_json(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2) + b"\n")


def _summary_text(s: dict) -> str:
    lines = [
        f"ingested            {s['ingested']:,}",
        f"duplicates skipped  {s['duplicates_skipped']:,}",
        f"quarantined         {s['quarantined']:,}",
    ]
    for reason, n in s["quarantined_by_reason"].items():
        lines.append(f"  {reason:<18}{n:,}")
    if s["consent_applied"]:
        lines.append(f"dropped by consent  {s['dropped_by_consent']:,}")
        for rule, n in sorted(s["dropped_by_rule"].items(), key=lambda x: _rule_order(x[0])):
            lines.append(f"  {rule:<18}{n:,}")
        kept = ", ".join(f"{r} {n:,}" for r, n in sorted(s["kept_by_rule"].items(), key=lambda x: _rule_order(x[0])))
        lines.append(f"kept by rule        {kept}")
    else:
        lines.append("consent             NOT APPLIED: no directory imported (pass --directory FILE)")
    lines += [
        f"audit records       {s['audit_records']:,} new; timeout-reply alerts {s['timeout_alerts']:,}",
        f"unknown msgtypes    {s['unknown_msgtypes']:,} (stored)",
        f"documents           {s['documents']:,} ({s['rejected_documents']:,} rejected)",
        f"checkpoint          seq {s['checkpoint']}",
        f"elapsed             {s['elapsed_s']:.2f} s ({s['msgs_per_s']:,.0f} msg/s)",
    ]
    return "\n".join(lines)


def _rule_order(rule: str) -> tuple[int, str]:
    tail = rule.rsplit("-", 1)[-1]
    return (int(tail), rule) if tail.isdigit() else (99, rule)


def cmd_simulate(a: argparse.Namespace) -> int:
    from scrm_fast.simulate import simulate

    s = simulate(a.out, a.messages, a.seed, key_versions=a.key_versions,
                 service_requires_consent=a.consent_switch == "on")
    if a.json:
        _print_json(s)
    else:
        print(f"simulated {s['messages']:,} messages in {s['documents']:,} documents ({s['files']} files), "
              f"{s['key_versions']} key versions, {len(s['msgtypes'])} msgtypes, "
              f"{s['archivable']:,} archivable under consent → {s['out']}")
    return 0


def cmd_ingest(a: argparse.Namespace) -> int:
    from scrm_fast import KeyRing
    from scrm_fast.directory import load_directory
    from scrm_fast.pipeline import Progress
    from scrm_fast.sources import expand_inputs
    from scrm_fast.tenant import Tenant

    keys = KeyRing.load_dir(a.keys)
    files = expand_inputs(a.inputs)
    directory = load_directory(a.directory) if a.directory else None
    cipher = make_cipher(a.cipher, a.sdk)
    try:
        with Tenant(a.data) as tenant:
            if directory is not None:
                tenant.import_directory(directory)
            summary = tenant.ingest(files, keys, cipher, progress=Progress(enabled=False if a.no_progress else None),
                                    index_commit_s=float(os.environ.get("SCRM_INDEX_COMMIT_S", "5"))).as_dict()
    finally:
        _closing(cipher)
    if a.json:
        _print_json(summary)
    else:
        print(_summary_text(summary))
    return 0


def cmd_sync(a: argparse.Namespace) -> int:
    from scrm_fast import KeyRing
    from scrm_fast.clock import from_env
    from scrm_fast.sync import Sync, SyncConfig, SyncStopped, install_signal_handlers
    from scrm_fast.tenant import Tenant

    keys = KeyRing.load_dir(a.keys)
    secret = _secret(a.secret_file, "--secret-file")
    if a.interval <= 0 or a.backoff <= 0:
        raise InputError("--interval and --backoff must be positive")
    config = SyncConfig(corpid=a.corp, secret=secret, proxy=a.proxy, passwd=a.proxy_password,
                        timeout_s=a.timeout, interval_s=a.interval, once=a.once, backoff_s=a.backoff,
                        max_retries=a.max_retries, media=not a.no_media, directory_every_s=a.directory_every)
    worker = make_cipher("vendor", a.sdk)
    try:
        with Tenant(a.data) as tenant:
            refresh = None
            if a.contacts_secret_file:
                import asyncio

                make_client = _wecom_client(a.api_base, a.corp, a.contacts_secret_file, "--contacts-secret-file")

                async def directory() -> dict:
                    async with make_client() as client:
                        return await tenant.refresh_directory(client, from_env().now_ms())

                def refresh() -> dict:
                    return asyncio.run(directory())
            sync = Sync(tenant, keys, worker, config, clock=from_env(), refresh_directory=refresh)
            install_signal_handlers(sync)
            try:
                summary = sync.run()
            except SyncStopped as e:
                raise InputError(str(e)) from None
    finally:
        _closing(worker)
    if a.json:
        _print_json(summary.as_dict())
    else:
        d = summary.as_dict()
        print(f"synced {d['fetched']:,} items in {d['rounds']} round(s), {d['calls']} GetChatData call(s): "
              f"{d['ingested']:,} stored, {d['duplicates_skipped']:,} already stored, {d['quarantined']:,} "
              f"quarantined {d['quarantined_by_reason']}, checkpoint {d['checkpoint']}")
    return 0


def cmd_media(a: argparse.Namespace) -> int:
    from scrm_fast.media import MediaFetcher
    from scrm_fast.tenant import Tenant
    from scrm_fast.wecom.sdk_worker import SdkWorker, SdkWorkerError

    if a.workers < 1 or a.max_mb <= 0:
        raise InputError("--workers must be ≥ 1 and --max-mb positive")
    secret = _secret(a.secret_file, "--secret-file")
    workers = []
    try:
        for _ in range(a.workers):
            w = SdkWorker(a.sdk or _default_sdk_path())
            workers.append(w)
            rc = w.init(a.corp, secret)
            if rc != 0:
                raise InputError(f"Init returned {rc}: check --corp and the chat-archive secret")
        with Tenant(a.data) as tenant:
            summary = MediaFetcher(tenant.store, workers, max_bytes=int(a.max_mb * (1 << 20)),
                                   timeout_s=a.timeout, proxy=a.proxy, passwd=a.proxy_password).run()
    except SdkWorkerError as e:
        raise InputError(str(e)) from None
    finally:
        for w in workers:
            w.close()
    _print_json(summary.as_dict())
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from scrm_fast import reads
    from scrm_fast.storage import ArchiveStore

    out = open(a.out, "wb") if a.out else sys.stdout.buffer  # noqa: SIM115
    try:
        with ArchiveStore(a.data, readonly=True) as store:
            chunks, _ = reads.export(store, reads.cli_trail(store), str(a.out or "stdout"))
            for chunk in chunks:
                out.write(chunk)
    finally:
        if a.out:
            out.close()
        else:
            out.flush()
    return 0


def cmd_quarantine(a: argparse.Namespace) -> int:
    from scrm_fast import KeyRing
    from scrm_fast.storage import ArchiveStore
    from scrm_fast.tenant import Tenant

    if a.retry:
        if not a.keys:
            raise InputError("--retry needs --keys DIR")
        keys = KeyRing.load_dir(a.keys)
        cipher = make_cipher(a.cipher, a.sdk)
        try:
            with Tenant(a.data) as tenant:
                res = tenant.retry_quarantine(keys, cipher)
        finally:
            _closing(cipher)
        _print_json(res)
        return 0
    with ArchiveStore(a.data, readonly=True) as store:
        entries = store.quarantine_entries()
    for e in entries:
        if not a.with_items:
            e.pop("item", None)
        elif isinstance(e.get("item"), bytes):
            e["item"] = e["item"].decode("utf-8", "replace")
        sys.stdout.buffer.write(orjson.dumps(e) + b"\n")
    if not a.quiet:
        print(f"{len(entries)} quarantined", file=sys.stderr)
    return 0


def _time_arg(v: str | None, end: bool = False) -> int | None:
    """A time bound: milliseconds since the epoch, or an ISO date/datetime (UTC unless it
    carries an offset); a bare date as an upper bound means the end of that day."""
    if v is None:
        return None
    if v.lstrip("-").isdigit():
        return int(v)
    from datetime import datetime, timedelta

    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise InputError(f"{v!r} is neither milliseconds since the epoch nor an ISO date") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if end and len(v) == 10:
        t += timedelta(days=1, milliseconds=-1)
    return int(t.timestamp() * 1000)


def cmd_search(a: argparse.Namespace) -> int:
    from scrm_fast import reads
    from scrm_fast.search import TIME_RANGES
    from scrm_fast.tenant import Tenant

    with Tenant(a.data, readonly=True) as tenant:
        page, _, lag = reads.search(tenant, reads.cli_trail(tenant.store), a.query, employee=a.employee,
                                    customer=a.customer, group=a.group, conv=a.conv, type_group=a.type,
                                    days=TIME_RANGES[a.days] if a.days else None, since=_time_arg(a.since),
                                    until=_time_arg(a.until, end=True), cursor=a.cursor, limit=a.limit)
    if lag:
        print(f"scrm search: warning: the index lacks {lag:,} stored messages (an ingest is running, or run "
              f"`scrm reindex --data {a.data}`)", file=sys.stderr)
    if a.json:
        _print_json({"total": page["total"], "items": [
            {k: it[k] for k in ("msgid", "seq", "msgtime", "snippet", "highlights", "msgtype", "from", "conv")}
            for it in page["items"]], "next_cursor": page["next_cursor"]})
        return 0
    from datetime import datetime

    print(f"{page['total']:,} messages match")
    for it in page["items"]:
        when = datetime.fromtimestamp(it["msgtime"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        print(f"  {when}  seq {it['seq']:<8} {it['from']:<12} {it['snippet']}")
    if page["next_cursor"]:
        print(f"next page: --cursor {page['next_cursor']}")
    return 0


def cmd_reindex(a: argparse.Namespace) -> int:
    from scrm_fast.search import reindex

    res = reindex(a.data, threads=a.threads, heap_mb=a.heap_mb)
    if a.json:
        _print_json(res)
    else:
        print(f"indexed {res['indexed']:,} messages in {res['build_s']:.2f} s ({res['docs_per_s']:,.0f} docs/s), "
              f"merged into {res['segments']} segments in {res['merge_s']:.2f} s")
    return 0


DEMO_WORDS = [
    (1, "保本", ["保收益", "稳赚", "零风险"], "承诺收益", 3, "employee"),
    (2, "返点", ["回扣", "好处费"], "商业贿赂", 3, "both"),
    (3, "微信", ["vx", "加v", "薇信"], "私下联系", 2, "employee"),
    (4, "私下", ["私聊", "线下交易"], "私下交易", 2, "employee"),
]


def _demo_sync(root: Path, sim: Path, tenant, keys) -> None:
    """The real path of a deployment, against stand-ins: the directory from a fake WeCom's
    contact APIs, then ``scrm sync`` through the supervised SDK worker and a stand-in SDK
    (the vendor's C ABI) that serves the simulated enterprise."""
    import asyncio

    from scrm_fast.clock import SystemClock
    from scrm_fast.sync import Sync, SyncConfig
    from scrm_fast.wecom import WeComClient
    from scrm_fast.wecom.fake import FakeWeCom
    from scrm_fast.wecom.sdk_worker import SdkWorker
    from scrm_fast.wecom.standin import build_standin, feed_items, simulated_media, write_feed, write_media
    from scrm_fast.wecom.thread import serving

    sdk = build_standin(root / "sdk")
    feed = root / "wecom-feed"
    fed = feed / "chatdata.txt"
    if not fed.exists() or fed.stat().st_mtime < (sim / "truth.jsonl").stat().st_mtime:
        write_feed(feed, feed_items(sorted((sim / "batches").glob("*.jsonl"))))
        write_media(feed, simulated_media(sim / "truth.jsonl"))
    os.environ["STANDIN_SDK_DATA"] = str(feed.resolve())
    fake = FakeWeCom(SystemClock())
    fake.serve_directory(tenant.directory())
    with serving(fake) as base:
        async def directory() -> dict:
            async with WeComClient(base, fake.s.corpid, "contact-secret") as client:
                return await tenant.refresh_directory(client, SystemClock().now_ms())

        d = asyncio.run(directory())
        print(f"directory from the fake WeCom at {base}: {len(d['employees'])} employees, "
              f"{len(d['customers'])} customers, {len(d['groups'])} groups")
    with SdkWorker(str(sdk)) as worker:
        print(f"syncing from the stand-in SDK {sdk.name} (supervised worker) …")
        s = Sync(tenant, keys, worker, SyncConfig(corpid=fake.s.corpid, secret="archive-secret", once=True)).run()
    d = s.as_dict()
    print(f"synced {d['fetched']:,} items in {d['calls']} GetChatData calls: {d['ingested']:,} stored, "
          f"{d['dropped_by_consent']:,} not archived by consent, {d['duplicates_skipped']:,} already stored, "
          f"{d['quarantined']:,} quarantined, checkpoint {d['checkpoint']}; {d['media_fetched']:,} media files "
          f"fetched{(' (not: ' + str(d['media_failed_by_reason']) + ')') if d['media_failed_by_reason'] else ''}")


def cmd_demo(a: argparse.Namespace) -> int:
    from scrm_fast import KeyRing
    from scrm_fast.directory import load_directory
    from scrm_fast.pipeline import Progress
    from scrm_fast.sealing import ENV_MASTER, new_master_key
    from scrm_fast.simulate import simulate
    from scrm_fast.sources import expand_inputs
    from scrm_fast.tenant import Tenant

    root = Path(a.dir)
    sim = root / "sim"
    if not (sim / "truth.jsonl").exists() or a.fresh:
        print(f"simulating {a.messages:,} messages into {sim} …")
        simulate(sim, a.messages, a.seed)
    data = root / "archive"
    if not os.environ.get(ENV_MASTER):
        # beside the data directory, never inside it
        key = root / "master.key"
        if not key.exists():
            new_master_key(key)
        os.environ[ENV_MASTER] = str(key.resolve())
        print(f"master key: {key} (outside the data directory {data}; keep it apart from backups of it)")
    with Tenant(data) as tenant:
        from scrm_fast.audit import import_words, stored_words

        if not stored_words(tenant.store)[0]:  # a sample list so the demo shows the review queue
            import_words(tenant.store, DEMO_WORDS, ["微信支付"])
        tenant.import_directory(load_directory(sim / "directory.json"))
        keys = KeyRing.load_dir(sim / "keys")
        if a.from_files:
            summary = tenant.ingest(expand_inputs([sim / "batches"]), keys, progress=Progress()).as_dict()
            print(_summary_text(summary))
        else:
            _demo_sync(root, sim, tenant, keys)
        counts = tenant.store.counts()
    print(f"archive: {counts['records']:,} records, {counts['quarantine']:,} quarantined in {data}")
    if a.no_serve:
        return 0
    serve_demo = getattr(a, "serve_demo", None)
    if serve_demo is None:
        raise InputError("serving the console needs the control package (run `scrm demo`, or pass --no-serve)")
    return serve_demo(a, data, sim / "keys")


def cmd_consent(a: argparse.Namespace) -> int:
    from scrm_fast.storage import ArchiveStore

    if a.consent == "refresh":
        import asyncio

        import aiohttp

        from scrm_fast.consent import refresh_consent
        from scrm_fast.wecom import WeComClient, WeComError

        async def run(store, directory) -> dict:
            async with WeComClient(a.api_base, directory.get("corp", {}).get("corpid", ""), "",
                                   access_token=a.access_token) as client:
                return await refresh_consent(client, directory, store)

        with ArchiveStore(a.data) as store:
            directory = store.directory()
            if directory is None:
                raise InputError(f"{a.data}: no directory imported; run `scrm directory import` first")
            try:
                _print_json(asyncio.run(run(store, directory)))
            except WeComError as e:
                raise InputError(str(e)) from None
            except (OSError, aiohttp.ClientError) as e:
                raise InputError(f"{a.api_base}: {e}") from None
        return 0
    with ArchiveStore(a.data, readonly=True) as store:
        if a.consent == "events":
            for e in store.enforcement_events():
                sys.stdout.buffer.write(orjson.dumps(e) + b"\n")
        elif a.consent == "changes":
            for c in store.consent_changes():
                sys.stdout.buffer.write(orjson.dumps(c) + b"\n")
        else:
            _print_json(store.rule_counts())
    return 0


def _wecom_client(api_base: str | None, corp: str | None, secret_file: str | None, flag: str = "--secret-file"):
    """A factory of WeCom clients for the contact APIs, from the arguments or the environment."""
    from scrm_fast.wecom.client import client_factory

    make = client_factory(api_base, corp, secret_file, flag)
    if make is None:
        raise InputError(f"needs --corp and {flag} (the customer-contact secret), or SCRM_WECOM_CORP and "
                         "SCRM_WECOM_SECRET_FILE")
    return make


def cmd_directory(a: argparse.Namespace) -> int:
    from scrm_fast.directory import load_directory
    from scrm_fast.tenant import Tenant

    if a.directory_cmd == "sync":
        import asyncio

        import aiohttp

        from scrm_fast.clock import from_env
        from scrm_fast.wecom import WeComError

        async def run(tenant) -> dict:
            async with _wecom_client(a.api_base, a.corp, a.secret_file)() as client:
                return await tenant.refresh_directory(client, from_env().now_ms())

        with Tenant(a.data) as tenant:
            try:
                doc = asyncio.run(run(tenant))
            except WeComError as e:
                raise InputError(str(e)) from None
            except (OSError, aiohttp.ClientError, TimeoutError) as e:
                raise InputError(f"WeCom is not reachable: {e}") from None
    else:
        doc = load_directory(a.file)
        with Tenant(a.data) as tenant:
            tenant.import_directory(doc)
    print(f"directory: {len(doc.get('employees', []))} employees, {len(doc.get('customers', []))} customers, "
          f"{len(doc.get('groups', []))} groups, {len(doc.get('consent', []))} consent results → {a.data} (sealed)")
    return 0


def cmd_words(a: argparse.Namespace) -> int:
    from scrm_fast.audit import import_words, parse_word_file, stored_words, word_stats
    from scrm_fast.storage import ArchiveStore

    if a.words_cmd == "import":
        entries, allow = parse_word_file(a.file)
        from scrm_fast.reads import cli_trail

        with ArchiveStore(a.data) as store:
            n = import_words(store, entries, allow)
            cli_trail(store)("words_replaced", "words", {"entries": n, "allow": len(allow)})
        print(f"word list: {n} entries, {len(allow)} allowed phrases (run `scrm audit rescan` to apply it "
              f"to messages already stored)")
        return 0
    with ArchiveStore(a.data, readonly=True) as store:
        entries, allow = stored_words(store)
        stats = word_stats(store)
    rows = [{"id": e[0], "word": e[1], "related": e[2], "category": e[3], "severity": e[4], "applies_to": e[5],
             "triggers": stats.get(e[1], (0, 0))[0], "last_trigger": stats.get(e[1], (0, None))[1]}
            for e in entries]
    if a.json:
        _print_json({"entries": rows, "allow": allow})
    else:
        for r in rows:
            print(f"{r['id']:>4} {r['word']}  [{','.join(r['related'])}]  {r['category']}/{r['severity']}/"
                  f"{r['applies_to']}  triggers {r['triggers']}")
        for p in allow:
            print(f"   + {p}")
    return 0


def cmd_audit(a: argparse.Namespace) -> int:
    from scrm_fast import audit
    from scrm_fast.storage import ArchiveStore

    if a.audit_cmd == "list":
        from scrm_fast import reads

        with ArchiveStore(a.data, readonly=True) as store:
            rows, _ = reads.audits(store, reads.cli_trail(store), a.kind, a.status, a.context)
        if a.json:
            _print_json(rows)
        else:
            for r in rows:
                what = ",".join(r["words"]) if r["kind"] == "content" else r["behaviour"]
                print(f"{r['id']:<22} {r['kind']:<9} {r['status']:<8} {r['employee']:<12} {what}")
        return 0
    with ArchiveStore(a.data) as store:
        if a.audit_cmd == "handle":
            _print_json(audit.handle_audit(store, a.id, a.verdict, a.remark, a.by))
        elif a.audit_cmd == "rescan":
            _print_json(audit.rescan(store, store.directory()))
        elif a.audit_cmd == "events":
            total, added = audit.import_contact_events(store, a.file)
            print(f"{total} contact events, {added} new behaviour records")
        else:  # behaviours
            cur = audit.behaviour_switches(store)
            for item in a.set or []:
                name, _, val = item.partition("=")
                if val not in ("on", "off"):
                    raise InputError(f"--set {item}: expected NAME=on or NAME=off")
                cur = audit.set_behaviour(store, name, val == "on")
            if a.set:
                from scrm_fast.reads import cli_trail

                cli_trail(store)("behaviours_changed", "behaviours", dict(cur))
            _print_json(cur)
    return 0


def cmd_alerts(a: argparse.Namespace) -> int:
    from scrm_fast import audit
    from scrm_fast.storage import ArchiveStore

    if a.alerts_cmd == "thresholds":
        with ArchiveStore(a.data) as store:
            if a.set:
                from scrm_fast.reads import cli_trail

                out = audit.set_reply_thresholds(store, [audit.parse_duration_ms(x) for x in a.set.split(",")])
                cli_trail(store)("thresholds_changed", "reply_thresholds", {"reply_thresholds_ms": out})
                with store.lease("ingest", "scrm alerts thresholds", wait=True):
                    audit.recompute_due_timeouts(store, store.directory())
            _print_json({"reply_thresholds_ms": audit.reply_thresholds(store)})
        return 0
    if a.alerts_cmd == "rescan":
        with ArchiveStore(a.data) as store, store.lease("ingest", "scrm alerts rescan"):
            n = audit.recompute_timeouts(store, store.directory())
        _print_json({"timeout_alerts": n})
        return 0

    from scrm_fast import reads

    with ArchiveStore(a.data, readonly=True) as store:
        rows, _ = reads.alerts(store, reads.cli_trail(store))
    if a.json:
        _print_json(rows)
    else:
        for r in rows:
            what = ",".join(r["words"]) if r["kind"] == "sensitive_word" else f"unanswered {r['delay_ms'] // 60000} min"
            print(f"{r['id']:<28} {r['employee']:<12} {what}  notify: {' → '.join(r['notify'])}")
    return 0


def cmd_trail(a: argparse.Namespace) -> int:
    from scrm_fast.storage import ArchiveStore
    from scrm_fast.trail import AccessTrail

    with ArchiveStore(a.data, readonly=True) as store:
        trail = AccessTrail(store, readonly=True)
        try:
            if not trail.log.exists and trail.anchor is not None and not trail.anchor.exists():
                raise InputError(f"{a.data}: no access trail here")
            res = trail.verify()
        finally:
            trail.close()
    _print_json(res)
    return 0 if res["ok"] else 3


def _report(a: argparse.Namespace, report: dict, text) -> int:
    if a.json:
        _print_json(report)
    else:
        print(text(report))
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from scrm_fast.bench import bench_ingest, bench_words, format_report, format_words_report

    if a.bench == "search":
        from scrm_fast.bench_search import bench_search, format_search_report

        peers = tuple(x for x in a.peers.split(",") if x)
        return _report(a, bench_search(a.data, a.work, a.queries, peers, a.max_docs), format_search_report)
    if a.bench == "sync":
        from scrm_fast.bench_sync import bench_sync, format_sync_report

        return _report(a, bench_sync(a.messages, a.rounds, a.corpus), format_sync_report)
    if a.bench == "words":
        return _report(a, bench_words(a.messages, a.entries, a.rounds, a.corpus), format_words_report)
    if a.bench == "memory":
        from scrm_fast.bench_memory import bench_memory, format_memory_report

        try:
            sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--sizes: comma-separated message counts, not {a.sizes!r}") from None
        if not sizes or min(sizes) <= 0 or a.rounds <= 0:
            raise InputError("--sizes needs positive message counts and --rounds a positive number")
        return _report(a, bench_memory(sizes, a.rounds, a.corpus_dir), format_memory_report)
    return _report(a, bench_ingest(messages=a.messages, corpus=a.corpus, seconds=a.rsa_seconds,
                                   ref_messages=a.ref_messages, threads=a.threads, rounds=a.rounds), format_report)


def build_parser(extensions=()) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scrm", description="WeCom chat-archive processor (scrm-fast)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="write a simulated enterprise: keys, GetChatData batches, directory, truth")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--messages", type=int, default=10_000, help="number of messages (default 10000)")
    s.add_argument("--seed", type=int, default=1, help="random seed (same seed → same plaintext stream)")
    s.add_argument("--key-versions", type=int, default=2, help="RSA key versions, rotated mid-stream (default 2)")
    s.add_argument("--consent-switch", choices=["on", "off"], default="off",
                   help="the enterprise switch 'service requires consent' (default off)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_simulate)

    def cipher_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--cipher", choices=["open", "vendor"], default="open",
                       help="symmetric layer: the open scheme (default) or the vendor SDK's DecryptData")
        q.add_argument("--sdk", help="path of libWeWorkFinanceSdk_C.so for --cipher vendor "
                                     "(default: the one in the pywecomarchive package)")

    s = sub.add_parser("ingest", help="decrypt, parse and store GetChatData files")
    s.add_argument("--keys", required=True, help="directory of <publickey_ver>.pem private keys")
    s.add_argument("--data", required=True, help="the tenant's data directory")
    s.add_argument("--directory", help="directory.json to import with the data (spec §6)")
    cipher_args(s)
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL/JSON files or directories of them")
    s.set_defaults(func=cmd_ingest)

    def sdk_args(q: argparse.ArgumentParser) -> None:
        """What every command that talks to WeCom through the vendor SDK takes."""
        q.add_argument("--data", required=True, help="the tenant's data directory")
        q.add_argument("--corp", required=True, help="the enterprise's corpid")
        q.add_argument("--secret-file", required=True, help="file holding the chat-archive secret")
        q.add_argument("--sdk", help="path of libWeWorkFinanceSdk_C.so (default: the one in the pywecomarchive "
                                     "package)")
        q.add_argument("--proxy", help="proxy URL for the SDK's connections")
        q.add_argument("--proxy-password", help="the proxy's user:password")

    s = sub.add_parser("sync", help="pull the chat archive from WeCom continuously (GetChatData through the "
                                    "supervised vendor SDK), each batch durable before the next")
    sdk_args(s)
    s.add_argument("--keys", required=True, help="directory of <publickey_ver>.pem private keys")
    s.add_argument("--timeout", type=int, default=10, help="seconds per GetChatData call (default 10)")
    s.add_argument("--once", action="store_true", help="one round (until a short batch), then exit")
    s.add_argument("--interval", type=float, default=30.0,
                   help="seconds between rounds without a msgaudit_notify wake-up (default 30)")
    s.add_argument("--backoff", type=float, default=1.0,
                   help="first wait after a network or system error, doubled each time up to 60 s, "
                        "with jitter (default 1)")
    s.add_argument("--contacts-secret-file", help="the customer-contact secret: refresh the directory (members, "
                                                  "customers, groups, consent answers) from WeCom's APIs")
    s.add_argument("--api-base", help="WeCom's API base (default $SCRM_WECOM_BASE or https://qyapi.weixin.qq.com)")
    s.add_argument("--directory-every", type=float, default=3600.0,
                   help="seconds between directory refreshes, before a round (default 3600)")
    s.add_argument("--no-media", action="store_true", help="do not fetch media after each round "
                                                           "(`scrm media fetch` does it later)")
    s.add_argument("--max-retries", type=int, default=5,
                   help="with --once: errors in a row before giving up (default 5; without --once: forever)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_sync)

    s = sub.add_parser("media", help="fetch the archive's media (GetMediaData in chunks through the supervised SDK)")
    msub = s.add_subparsers(dest="media_cmd", required=True, metavar="WHAT")
    m = msub.add_parser("fetch", help="every pending image, voice, video, file … of stored messages: chunked, "
                                      "sealed, md5-checked, resumable")
    sdk_args(m)
    m.add_argument("--timeout", type=int, default=30, help="seconds per GetMediaData call (default 30)")
    m.add_argument("--workers", type=int, default=2, help="downloads at a time, each its own SDK process (default 2)")
    m.add_argument("--max-mb", type=float, default=100, help="larger media is recorded as too_large (default 100)")
    m.set_defaults(func=cmd_media)

    s = sub.add_parser("export", help="every stored message as JSONL (decrypted JSON plus seq), in seq order")
    s.add_argument("--data", required=True, help="the tenant's data directory")
    s.add_argument("--out", help="output file (default stdout)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("quarantine", help="list quarantined items with reasons, or re-drive them")
    s.add_argument("--data", required=True, help="the tenant's data directory")
    s.add_argument("--retry", action="store_true", help="decrypt the quarantined items again (needs --keys)")
    s.add_argument("--keys", help="key directory for --retry")
    cipher_args(s)
    s.add_argument("--with-items", action="store_true", help="include the raw chatdata items")
    s.add_argument("--quiet", action="store_true", help="no count on stderr")
    s.set_defaults(func=cmd_quarantine)

    s = sub.add_parser("consent", help="consent decisions: enforcement events, changes, rule counts, API refresh")
    csub = s.add_subparsers(dest="consent", required=True, metavar="WHAT")
    for name, text in (("events", "enforcement events (C-3 block chat, C-9/C-12 remove from group) as JSONL"),
                       ("changes", "every known consent change as JSONL"),
                       ("rules", "messages kept and dropped per consent rule id, as JSON")):
        c = csub.add_parser(name, help=text)
        c.add_argument("--data", required=True, help="the tenant's data directory")
        c.set_defaults(func=cmd_consent)
    c = csub.add_parser("refresh", help="ask msgaudit/check_single_agree and check_room_agree, store the answers")
    c.add_argument("--data", required=True, help="the tenant's data directory")
    c.add_argument("--api-base", required=True, help="base URL of the WeCom API (e.g. https://qyapi.weixin.qq.com/cgi-bin)")
    c.add_argument("--access-token", required=True, help="access_token for the API")
    c.set_defaults(func=cmd_consent)

    s = sub.add_parser("words", help="the sensitive-word list (rule A-1)")
    wsub = s.add_subparsers(dest="words_cmd", required=True, metavar="WHAT")
    w = wsub.add_parser("import", help="replace the list: one entry a line, word,related1,…[ | category | severity "
                                       "| employee/customer/both]; +phrase lines are the allow list")
    w.add_argument("--data", required=True, help="the tenant's data directory")
    w.add_argument("file", help="word list file (UTF-8)")
    w.set_defaults(func=cmd_words)
    w = wsub.add_parser("list", help="the list with trigger counts and last trigger time")
    w.add_argument("--data", required=True, help="the tenant's data directory")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_words)

    s = sub.add_parser("audit", help="review queues: content and behaviour audit records (rules A-2 … A-4)")
    asub = s.add_subparsers(dest="audit_cmd", required=True, metavar="WHAT")
    x = asub.add_parser("list", help="audit records")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("--kind", choices=["content", "behaviour"])
    x.add_argument("--status", choices=["pending", "handled"])
    x.add_argument("--context", action="store_true", help="with the 10 messages before and after each")
    x.add_argument("--json", action="store_true", help="a JSON array")
    x.set_defaults(func=cmd_audit)
    x = asub.add_parser("handle", help="set the verdict of a pending record")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("id", help="audit record id (c-SEQ-ENTRY, b-SEQ, e-HEX)")
    x.add_argument("--verdict", required=True, choices=["abnormal", "normal", "ignore"])
    x.add_argument("--remark", default=None)
    x.add_argument("--by", default=os.environ.get("USER", "cli"), help="who handles it (default $USER)")
    x.set_defaults(func=cmd_audit)
    x = asub.add_parser("rescan", help="re-match the whole archive from storage; add only missing records")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.set_defaults(func=cmd_audit)
    x = asub.add_parser("behaviours", help="show or switch sensitive behaviours (push_card, red_packet, "
                                           "delete_customer)")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("--set", action="append", metavar="NAME=on|off")
    x.set_defaults(func=cmd_audit)
    x = asub.add_parser("events", help="import contact events (JSONL; del_external_contact = deleted customer)")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("file", help="JSONL of change_external_contact events")
    x.set_defaults(func=cmd_audit)

    s = sub.add_parser("alerts", help="alerts: sensitive-word hits (A-5) and unanswered customers (A-6)")
    asub = s.add_subparsers(dest="alerts_cmd", required=True, metavar="WHAT")
    x = asub.add_parser("list", help="alerts with the leader chain to notify")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_alerts)
    x = asub.add_parser("rescan", help="recompute every timeout-reply alert (rule A-6) from storage")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.set_defaults(func=cmd_alerts)
    x = asub.add_parser("thresholds", help="show or set the timeout-reply levels (default 5m,30m,1h)")
    x.add_argument("--data", required=True, help="the tenant's data directory")
    x.add_argument("--set", help="comma-separated durations, increasing, e.g. 5m,30m,1h")
    x.set_defaults(func=cmd_alerts)

    s = sub.add_parser("search", help="search the archive (substring semantics, CJK-exact; rules V-2, V-5)",
                       description="QUERY: terms that must all occur as substrings (case and width folded); "
                                   "OR between alternatives, NOT or a leading - to exclude, (parentheses), "
                                   '"quoted text" for a substring with spaces. An empty QUERY lists every message '
                                   "the filters allow. Newest first.")
    s.add_argument("--data", required=True, help="data directory")
    s.add_argument("query", nargs="?", default="", metavar="QUERY")
    s.add_argument("--limit", type=int, default=20, help="page size (1–1000, default 20)")
    s.add_argument("--cursor", help="next_cursor of the previous page")
    s.add_argument("--employee", help="only messages this employee (userid) sent or received")
    s.add_argument("--customer", help="only messages this customer (external_userid) sent or received")
    s.add_argument("--group", help="only messages of this group chat (roomid)")
    s.add_argument("--conv", help="only this conversation (p:a|b, g:roomid)")
    s.add_argument("--type", default="all", choices=["all", "image_video", "file", "link", "voice_call", "voice"],
                   help="message-type group (rule V-2)")
    s.add_argument("--days", choices=["all", "7", "30", "90"],
                   help="the last N days before the newest stored message")
    s.add_argument("--since", help="from this time (ms since the epoch or ISO date/datetime, UTC)")
    s.add_argument("--until", help="up to this time (inclusive; a bare date means its whole day)")
    s.add_argument("--json", action="store_true",
                   help='print {"total", "items": [{"msgid", "seq", "msgtime", "snippet", …}], "next_cursor"}')
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("reindex", help="rebuild the search index from storage (no decryption)")
    s.add_argument("--data", required=True, help="data directory")
    s.add_argument("--threads", type=int, default=None, help="indexing threads (default: every core)")
    s.add_argument("--heap-mb", type=int, default=256, help="indexing buffer size (default 256)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_reindex)

    s = sub.add_parser("trail", help="the access trail (rule R-4)")
    tsub = s.add_subparsers(dest="trail_cmd", required=True, metavar="WHAT")
    t = tsub.add_parser("verify", help="check the hash chain; exit 3 and name the first broken entry")
    t.add_argument("--data", required=True)
    t.set_defaults(func=cmd_trail)

    s = sub.add_parser("directory", help="the directory file (spec §6)")
    dsub = s.add_subparsers(dest="directory_cmd", required=True, metavar="WHAT")
    d = dsub.add_parser("import", help="validate a directory.json and keep it in the data directory")
    d.add_argument("--data", required=True, help="the tenant's data directory")
    d.add_argument("file", help="directory.json")
    d.set_defaults(func=cmd_directory)
    d = dsub.add_parser("sync", help="build the directory from WeCom's contact and chat-archive APIs "
                                     "(members, archiving, customers, groups, consent) and keep it")
    d.add_argument("--data", required=True, help="the tenant's data directory")
    d.add_argument("--corp", help="corpid (default $SCRM_WECOM_CORP)")
    d.add_argument("--secret-file", help="the customer-contact secret (default $SCRM_WECOM_SECRET_FILE)")
    d.add_argument("--api-base", help="WeCom's API base (default $SCRM_WECOM_BASE or https://qyapi.weixin.qq.com)")
    d.set_defaults(func=cmd_directory)

    s = sub.add_parser("demo", help="the main job: simulate an enterprise, ingest it, serve the console")
    s.add_argument("--dir", default="demo-data", help="working directory (default ./demo-data)")
    s.add_argument("--messages", type=int, default=20_000, help="messages to simulate (default 20000)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--fresh", action="store_true", help="simulate again even if a corpus exists")
    s.add_argument("--no-serve", action="store_true", help="stop after the ingest summary")
    s.add_argument("--from-files", action="store_true",
                   help="ingest the simulated GetChatData files instead of syncing through the stand-in SDK")
    s.add_argument("--port", type=int, default=None, help="console port (default 8080)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("bench", help="benchmarks with same-run baselines")
    bsub = s.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bsub.add_parser("ingest", help="end-to-end ingest vs the RSA bound and a pure-Python reference")
    b.add_argument("--messages", type=int, default=100_000, help="corpus size (default 100000)")
    b.add_argument("--corpus", help="reuse a simulated corpus directory (simulated if missing)")
    b.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (default 5)")
    b.add_argument("--rsa-seconds", type=float, default=2.0, help="duration of the RSA-bound measurement")
    b.add_argument("--ref-messages", type=int, default=20_000,
                   help="messages the pure-Python reference ingests (its rate is per message)")
    b.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(func=cmd_bench)
    b = bsub.add_parser("search", help="search: build rate, recall and latency vs SQLite FTS5 and tantivy-py")
    b.add_argument("--data", required=True, help="an ingested data directory (read only)")
    b.add_argument("--work", help="where to build the indexes (default: DATA-bench-search beside it)")
    b.add_argument("--queries", type=int, default=50, help="random queries per length 1–4 (default 50)")
    b.add_argument("--peers", default="sqlite,tantivy", help="comma list of sqlite, tantivy (default both)")
    b.add_argument("--max-docs", type=int, default=None, help="use only the first N stored messages")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    b = bsub.add_parser("sync", help="scrm sync against the stand-in SDK vs scrm ingest of the same data from files")
    b.add_argument("--messages", type=int, default=50_000, help="corpus size (default 50000)")
    b.add_argument("--rounds", type=int, default=5, help="rounds, each variant a fresh data directory (default 5)")
    b.add_argument("--corpus", help="reuse a simulated corpus directory (simulated if missing)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    b = bsub.add_parser("words", help="sensitive-word matching vs ahocorasick_rs, pyahocorasick and Hyperscan "
                                      "(one core)")
    b.add_argument("--corpus", choices=["simulated", "hit-heavy"], default="simulated",
                   help="the simulator's phrases, or text from a real word-frequency list (jieba's) with a "
                        "list of ordinary words: frequent hits")
    b.add_argument("--messages", type=int, default=50_000)
    b.add_argument("--entries", type=int, default=10_000)
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    b = bsub.add_parser("memory", help="peak anonymous memory of scrm ingest at several corpus sizes (flat in N?)")
    b.add_argument("--sizes", default="100000,1000000", help="comma list of corpus sizes (default 100000,1000000)")
    b.add_argument("--rounds", type=int, default=5, help="rounds per size, interleaved (default 5)")
    b.add_argument("--corpus-dir", help="keep the simulated corpora here (n<SIZE>/), reused when present")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    s = sub.add_parser("keys", help="keys at rest: the master key, data key rotation, master key rewrap")
    ksub = s.add_subparsers(dest="keys_cmd", required=True, metavar="WHAT")
    k = ksub.add_parser("new", help="write a new master key (mode 0600) to FILE, outside every data directory")
    k.add_argument("--out", required=True, help="the key file to create (never overwritten)")
    k.set_defaults(func=cmd_keys)
    k = ksub.add_parser("rotate", help="a new data key for new writes (old values stay readable)")
    k.add_argument("--data", required=True, help="the tenant's data directory")
    k.add_argument("--reencrypt", action="store_true",
                   help="also seal every stored value again under the new key, compact, and retire the old keys "
                        "(no server may have the data directory open)")
    k.set_defaults(func=cmd_keys)
    k = ksub.add_parser("rewrap", help="wrap the data directory's keys under a new master key")
    k.add_argument("--data", required=True, help="the tenant's data directory")
    k.add_argument("--new-master-key", required=True, help="the new master key file (`scrm keys new`)")
    k.set_defaults(func=cmd_keys)
    k = ksub.add_parser("status", help="data keys, the current one, and how many stored values each seals")
    k.add_argument("--data", required=True, help="the tenant's data directory")
    k.set_defaults(func=cmd_keys)

    s = sub.add_parser("migrate", help="encrypt a plaintext data directory of the earlier format in place "
                                       "(resumable; no server may have it open)")
    s.add_argument("--data", required=True, help="the tenant's data directory")
    s.set_defaults(func=cmd_migrate)

    for extend in extensions:
        extend(sub, bsub)
    _master_key_options(p)
    return p


def _master_key_options(parser: argparse.ArgumentParser) -> None:
    """Every command that opens a data directory (``--data``) takes ``--master-key FILE``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _master_key_options(child)
    if any("--data" in a.option_strings for a in parser._actions) and \
            not any("--master-key" in a.option_strings for a in parser._actions):
        parser.add_argument("--master-key", metavar="FILE",
                            help="the master key file (default: $SCRM_MASTER_KEY_FILE)")


def cmd_keys(a: argparse.Namespace) -> int:
    from scrm_fast import sealing

    if a.keys_cmd == "new":
        fp = sealing.new_master_key(a.out)
        print(f"master key written to {a.out} (fingerprint {fp}); keep it outside every data directory")
        return 0
    master = sealing.read_master_key()
    if a.keys_cmd == "rewrap":
        new = sealing.read_master_key(a.new_master_key)
        n = sealing.rewrap(a.data, master, new, sealing.master_key_path(), Path(a.new_master_key))
        print(f"{n} keys of {a.data} now wrapped under {a.new_master_key} (fingerprint {sealing.fingerprint(new)}); "
              f"the old master key opens nothing here any more")
        return 0
    from scrm_fast.storage import ArchiveStore
    from scrm_fast.trail import AccessTrail

    if a.keys_cmd == "status":
        with ArchiveStore(a.data, readonly=True) as store:
            by_key = store.sealed_key_ids()
            trail = AccessTrail(store, readonly=True)
            for k, v in trail.key_ids().items():
                by_key[k] = by_key.get(k, 0) + v
            trail.close()
            _print_json({"current": store.vault.current, "keys": sorted(store.keys.file.keys),
                         "values_by_key": {str(k): v for k, v in sorted(by_key.items())}})
        return 0
    if a.reencrypt:
        with ArchiveStore(a.data) as probe:
            probe.exclusive()  # before anything changes: refused while a server has it open
    new_id = sealing.rotate(a.data, master)
    print(f"data key {new_id} is current for new writes")
    if a.reencrypt:
        with ArchiveStore(a.data) as store:
            store.exclusive()
            trail = AccessTrail(store)
            n = store.reseal() + trail.reseal()
            left = {k for k in [*store.sealed_key_ids(), *trail.key_ids()] if k != store.vault.current}
            if left:
                raise InputError(f"values still under keys {sorted(left)} after re-encryption; nothing retired")
            old = set(store.keys.file.keys) - {store.vault.current}
            trail.compact()  # old-key ciphertext out of the free pages too
            trail.close()
            store.compact()
        sealing.retire(a.data, master, old)
        print(f"{n:,} values sealed again under key {new_id}; compacted; retired keys {sorted(old) or 'none'}")
    return 0


def cmd_migrate(a: argparse.Namespace) -> int:
    from scrm_fast.migrate import migrate

    _print_json(migrate(a.data))
    return 0


def main(argv: list[str] | None = None, extensions=()) -> int:
    from scrm_fast.sealing import ENV_MASTER, private_umask

    parser = build_parser(extensions)
    args = parser.parse_args(argv)
    private_umask()
    if getattr(args, "master_key", None):
        # one way in for the library and for child processes (server workers)
        os.environ[ENV_MASTER] = str(Path(args.master_key).resolve())
    try:
        return args.func(args)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ScrmError, OSError, ValueError) as e:
        print(f"scrm {args.command}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"scrm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
