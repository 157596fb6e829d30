"""Media through GetMediaData (the stand-in SDK serving a simulated enterprise's media):
every item fetched and md5-checked, sealed at rest; resumed after kills mid-file; a
corrupted chunk caught; size limits; served over HTTP with the message's scope, each read
on the trail. The oracle is the simulator's own media (``simulated_media``)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from scrm_fast.media import ITEM, PART, TODO, fid_of
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.standin import build_standin, feed_items, simulated_media, write_feed, write_media
from tests.conftest import run_scrm


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return build_standin(tmp_path_factory.mktemp("sdk"))


@pytest.fixture(scope="module")
def feed(small_corpus, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    d = tmp_path_factory.mktemp("media-feed")
    write_feed(d, feed_items(sorted((small_corpus / "batches").glob("*.jsonl"))))
    media = dict(simulated_media(small_corpus / "truth.jsonl"))
    write_media(d, media.items())
    return d, media


def _args(cmd: str, data: Path, corp: Path, standin: Path, *more: str) -> list[str]:
    secret = data.parent / "secret"
    secret.write_text("s")
    keys = ["--keys", str(corp / "keys")] if cmd == "sync" else []
    return [*cmd.split(), "--data", str(data), "--corp", "ww", "--secret-file", str(secret), *keys,
            "--sdk", str(standin), *more]


def _check_all(data: Path, media: dict[str, bytes], skip: set[str] = frozenset()) -> None:
    with ArchiveStore(data, readonly=True) as store:
        with store.app_read() as t:
            assert list(t.scan(TODO)) == [] and list(t.scan(PART)) == []
            for fid, content in media.items():
                if fid in skip:
                    continue
                item = t.get(ITEM, fid_of(store, fid))
                assert item is not None and item["ok"], (fid, item)
                assert item["size"] == len(content) and item["md5"] == hashlib.md5(content).hexdigest()
                got = b"".join(store.media.chunks(store.media.final(item["name"]), item["id"]))
                assert got == content
        assert not any((store.media.root / "partial").iterdir())


@pytest.fixture(scope="module")
def synced(small_corpus, feed, standin, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("media-synced") / "d"
    p = run_scrm(*_args("sync", data, small_corpus, standin, "--once", "--json"),
                 env={"STANDIN_SDK_DATA": str(feed[0])}, check=True)
    s = orjson.loads(p.stdout)
    assert s["media_fetched"] == len(feed[1]) and s["media_failed_by_reason"] == {}
    return data


def test_every_media_item_fetched_checked_and_sealed(synced, feed):
    media = feed[1]
    kinds = {k for k in ("image", "voice", "video", "file", "emotion", "meeting_voice_call", "voip_doc_share")}
    assert len(media) > 300
    _check_all(synced, media)
    # sealed at rest: no 16-byte run of any media content is in the files
    blob = b"".join(p.read_bytes() for p in (synced / "media").rglob("*") if p.is_file())
    for content in list(media.values())[:50]:
        assert content[100:116] not in blob or len(content) < 116
    with ArchiveStore(synced, readonly=True) as store, store.app_read() as t:
        seen = {v["kind"] for _, v in t.scan(ITEM)}
    assert kinds <= seen | {"voip_doc_share", "meeting_voice_call"} and {"image", "voice", "video", "file"} <= seen


def test_kills_mid_file_resume_where_they_stopped(small_corpus, feed, standin, tmp_path):
    data = tmp_path / "d"
    run_scrm(*_args("sync", data, small_corpus, standin, "--once", "--no-media"),
             env={"STANDIN_SDK_DATA": str(feed[0])}, check=True)
    env = {**os.environ, "STANDIN_SDK_DATA": str(feed[0]), "STANDIN_CHUNK": "1024", "STANDIN_MEDIA_DELAY_MS": "2",
           "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "control.cli", *_args("media fetch", data, small_corpus, standin)]
    rng = random.Random(3)
    kills = half_done = 0
    for _ in range(8):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(rng.uniform(0.8, 2.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        with ArchiveStore(data, readonly=True) as store, store.app_read() as t:
            half_done += bool(list(t.scan(PART)))
            done = sum(1 for _ in t.scan(ITEM))
    assert kills >= 6 and half_done >= 3, (kills, half_done)  # kills landed mid-file
    assert 0 < done < len(feed[1])
    env.pop("STANDIN_MEDIA_DELAY_MS")
    p = subprocess.run(args, capture_output=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    s = orjson.loads(p.stdout)
    assert s["resumed"] >= 1 and s["failed_by_reason"] == {}
    _check_all(data, feed[1])


def _synced_without_media(small_corpus, feed, standin, data: Path) -> None:
    run_scrm(*_args("sync", data, small_corpus, standin, "--once", "--no-media"),
             env={"STANDIN_SDK_DATA": str(feed[0])}, check=True)


def test_a_corrupted_chunk_is_caught(small_corpus, feed, standin, tmp_path):
    """One byte of a later chunk flipped on the way (every time): the md5 the message
    states catches it, a second download from the start too, and the item is kept flagged
    ``md5_mismatch``; everything else is fetched."""
    victim = max(feed[1], key=lambda f: len(feed[1][f]))
    assert len(feed[1][victim]) > 3 * 4096
    data = tmp_path / "d"
    _synced_without_media(small_corpus, feed, standin, data)
    p = run_scrm(*_args("media fetch", data, small_corpus, standin), check=True,
                 env={"STANDIN_SDK_DATA": str(feed[0]), "STANDIN_CHUNK": "4096", "STANDIN_CORRUPT_MEDIA": victim})
    s = orjson.loads(p.stdout)
    assert s["failed_by_reason"] == {"md5_mismatch": 1} and s["fetched"] == len(feed[1]) - 1
    with ArchiveStore(data, readonly=True) as store, store.app_read() as t:
        v = t.get(ITEM, fid_of(store, victim))
    assert v["reason"] == "md5_mismatch" and v["md5"] != hashlib.md5(feed[1][victim]).hexdigest()
    _check_all(data, feed[1], skip={victim})


def test_size_limit(small_corpus, feed, standin, tmp_path):
    data = tmp_path / "d"
    _synced_without_media(small_corpus, feed, standin, data)
    limit_mb = 0.05
    p = run_scrm(*_args("media fetch", data, small_corpus, standin, "--max-mb", str(limit_mb)), check=True,
                 env={"STANDIN_SDK_DATA": str(feed[0])})
    s = orjson.loads(p.stdout)
    too_large = {f for f, c in feed[1].items() if len(c) > limit_mb * (1 << 20)}
    assert too_large and s["failed_by_reason"] == {"too_large": len(too_large)}
    with ArchiveStore(data, readonly=True) as store, store.app_read() as t:
        items = {fid: t.get(ITEM, fid_of(store, fid)) for fid in feed[1]}
    assert {f for f, i in items.items() if i.get("reason") == "too_large"} == too_large
    _check_all(data, feed[1], skip=too_large)


async def test_media_over_http_in_scope_and_on_the_trail(synced, feed, aiohttp_client, tmp_path):
    import msgpack

    from control.accounts import AccountService
    from control.app import create_app
    from control.config import ControlConfig

    data = tmp_path / "copy"
    shutil.copytree(synced, data)
    with ArchiveStore(data, readonly=True) as store:
        recs = [msgpack.unpackb(v) for chunk in store.record_value_chunks() for v in chunk]
    img = next(r for r in recs if r["msgtype"] == "image" and not r["roomid"])
    fil = next(r for r in recs if r["msgtype"] == "file")
    raw_img = orjson.loads(img["raw"])
    raw_file = orjson.loads(fil["raw"])
    acc = AccountService(data)
    acc.create_user("boss", "a-long-password-1", "admin")
    members = {img["from"], *img["tolist"]}
    other = next(u for r in recs for u in (r["from"], *r["tolist"])
                 if not u.startswith(("wm", "wo")) and u not in members)
    acc.create_user("op", "a-long-password-2", "regular", employee=other)
    acc.close()
    c = await aiohttp_client(create_app(ControlConfig(data_dir=data)))

    async def login(u, pw):
        r = await c.post("/api/v1/auth/login", json={"username": u, "password": pw})
        return {"Authorization": f"Bearer {(await r.json())['token']}"}

    h = await login("boss", "a-long-password-1")
    r = await c.get(f"/api/v1/messages/{img['seq']}/media", headers=h)
    lst = await r.json()
    assert r.status == 200 and [(i["kind"], i["state"]) for i in lst["items"]] == [("image", "stored")]
    r = await c.get(f"/api/v1/messages/{img['seq']}/media/0", headers=h)
    assert r.status == 200 and r.headers["Content-Type"].startswith("image/")
    assert await r.read() == feed[1][raw_img["image"]["sdkfileid"]]
    r = await c.get(f"/api/v1/messages/{fil['seq']}/media/0", headers=h)
    assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
    assert await r.read() == feed[1][raw_file["file"]["sdkfileid"]]
    voice = next(r for r in recs if r["msgtype"] == "voice")
    amr = feed[1][orjson.loads(voice["raw"])["voice"]["sdkfileid"]]
    r = await c.get(f"/api/v1/messages/{voice['seq']}/media/0", params={"format": "wav"}, headers=h)
    wav = await r.read()
    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
    assert wav[:4] == b"RIFF" and len(wav) == 44 + (len(amr) - 6) // 32 * 320  # 160 samples a frame
    assert (await c.get(f"/api/v1/messages/{img['seq']}/media/0", params={"format": "wav"},
                        headers=h)).status == 400
    assert (await c.get(f"/api/v1/messages/{img['seq']}/media/1", headers=h)).status == 404
    assert (await c.get(f"/api/v1/messages/{img['seq']}/media/+0", headers=h)).status in (400, 404)
    trail = await (await c.get("/api/v1/trail?limit=20", headers=h)).json()
    reads = [e for e in trail["entries"] if e["action"] == "read_media"]
    assert {e["target"] for e in reads} == {f"{img['seq']}/0", f"{fil['seq']}/0", f"{voice['seq']}/0"}
    # outside an operator's scope: as if it did not exist
    h2 = await login("op", "a-long-password-2")
    assert (await c.get(f"/api/v1/messages/{img['seq']}/media/0", headers=h2)).status == 404


def test_queued_entries_are_those_built_from_each_batchs_media(small_corpus, tmp_path):
    """The ingest queues each batch's media with entries built and packed in Rust
    (``media_entries``). The oracle builds them here in Python from every batch's
    ``media()`` tuples (what the queue held before): ``md.todo`` fid → what to fetch (the
    first message in a batch naming a file; a later batch writes it again), ``md.seq``
    20-digit seq → the message's media in order. Both tables must hold exactly those."""
    from scrm_fast import ChatBatch, Cipher, KeyRing, _core
    from scrm_fast.media import SEQ
    from scrm_fast.sources import iter_documents
    from scrm_fast.storage import app_key
    from scrm_fast.tenant import Tenant

    files = sorted((small_corpus / "batches").glob("*.jsonl"))
    keys = KeyRing.load_dir(small_corpus / "keys")
    data = tmp_path / "d"
    with Tenant(data) as t:
        t.ingest(files, keys, Cipher.open())
    want_todo: dict[bytes, dict] = {}
    want_seq: dict[bytes, list] = {}
    with ArchiveStore(data, readonly=True) as store:
        for doc in iter_documents(files):
            decoded = _core.judge_batch(_core.decrypt_batch(ChatBatch.parse(doc.data), keys, Cipher.open(), now_ms=0),
                                        None)
            batch_todo: dict[bytes, dict] = {}
            for seq, msgid, sdkfileid, md5, size, kind, filename in decoded.media():
                fid = store.app_digest("media", sdkfileid)
                batch_todo.setdefault(fid, {"sdkfileid": sdkfileid, "md5": md5, "size": size, "kind": kind,
                                            "filename": filename, "seq": seq, "msgid": msgid})
                want_seq.setdefault(app_key(f"{seq:020d}"), []).append(
                    {"fid": fid, "kind": kind, "filename": filename, "size": size})
            want_todo.update(batch_todo)
        with store.app_read() as t:
            got_todo = dict(t.scan(TODO))
            got_seq = dict(t.scan(SEQ))
    assert len(want_todo) > 50 and len(want_seq) >= len(want_todo)
    assert got_todo == want_todo
    assert got_seq == want_seq
