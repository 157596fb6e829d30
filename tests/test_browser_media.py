"""Media in the console (real chromium): an archive synced through the stand-in SDK with
its media; an image shows inline (a real PNG, decoded by the browser), a file downloads
with its bytes, a pending item says so — and every read is on the trail."""

from __future__ import annotations

import orjson
import pytest

from control.accounts import AccountService
from scrm_fast.simulate import simulate
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.standin import build_standin, feed_items, simulated_media, write_feed, write_media
from tests.conftest import run_scrm, start_serve
from tests.test_browser import CHROMIUM, PASSWORD, browser, new_page, shot, sign_in, wait_until  # noqa: F401

pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-media")
    sim = root / "sim"
    simulate(sim, 1500, seed=8)
    feed = root / "feed"
    write_feed(feed, feed_items(sorted((sim / "batches").glob("*.jsonl"))))
    media = dict(simulated_media(sim / "truth.jsonl"))
    write_media(feed, media.items())
    data = root / "data"
    run_scrm("directory", "import", "--data", str(data), str(sim / "directory.json"), check=True)
    (root / "secret").write_text("s")
    run_scrm("sync", "--data", str(data), "--corp", "ww", "--secret-file", str(root / "secret"), "--keys",
             str(sim / "keys"), "--sdk", str(build_standin(root / "sdk")), "--once",
             env={"STANDIN_SDK_DATA": str(feed)}, check=True)
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    import msgpack

    with ArchiveStore(data, readonly=True) as store:
        recs = [msgpack.unpackb(v) for chunk in store.record_value_chunks() for v in chunk]
    proc, base = start_serve(data)
    yield {"base": base, "recs": recs, "media": media, "data": data}
    proc.terminate()
    proc.wait(timeout=30)


def test_image_inline_and_file_download(server, browser):  # noqa: F811 - the fixture
    from urllib.parse import quote

    recs, media = server["recs"], server["media"]
    img = next(r for r in recs if r["msgtype"] == "image")
    fil = next(r for r in recs if r["msgtype"] == "file")
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    page.goto(f"{server['base']}/#/archive?conv={quote(img['conv'])}&seq={img['seq']}")
    sel = f"#msgs [data-seq='{img['seq']}'] img.thumb"
    page.wait_for_selector(sel)
    wait_until(page, f"document.querySelector(\"{sel}\").complete")
    # the browser decoded it: 64 pixels wide, as the simulator drew it
    assert page.evaluate(f"() => document.querySelector(\"{sel}\").naturalWidth") == 64
    shot(page, "30-media-image")
    page.goto(f"{server['base']}/#/archive?conv={quote(fil['conv'])}&seq={fil['seq']}")
    button = page.locator(f"#msgs [data-seq='{fil['seq']}'] button.getmedia").first
    button.wait_for()
    with page.expect_download() as dl:
        button.click()
    path = dl.value.path()
    fid = orjson.loads(fil["raw"])["file"]["sdkfileid"]
    with open(path, "rb") as f:
        assert f.read() == media[fid]
    assert dl.value.suggested_filename == orjson.loads(fil["raw"])["file"]["filename"]
    # a voice message plays: decoded from AMR on the server, its length as many 20 ms frames
    voice = next(r for r in recs if r["msgtype"] == "voice")
    amr = media[orjson.loads(voice["raw"])["voice"]["sdkfileid"]]
    page.goto(f"{server['base']}/#/archive?conv={quote(voice['conv'])}&seq={voice['seq']}")
    page.locator(f"#msgs [data-seq='{voice['seq']}'] button.playvoice").first.click()
    asel = f"#msgs [data-seq='{voice['seq']}'] audio.voice"
    page.wait_for_selector(asel)
    wait_until(page, f"document.querySelector(\"{asel}\").readyState >= 1")
    duration = page.evaluate(f"() => document.querySelector(\"{asel}\").duration")
    assert abs(duration - (len(amr) - 6) // 32 * 0.02) < 0.05, duration
    shot(page, "31-media-voice")
    trail = page.evaluate("""async () => (await (await fetch('/api/v1/trail?limit=50',
        {headers: {Authorization: `Bearer ${sessionStorage.getItem('token')}`}})).json()).entries""")
    reads = {e["target"] for e in trail if e["action"] == "read_media"}
    assert {f"{img['seq']}/0", f"{fil['seq']}/0", f"{voice['seq']}/0"} <= reads
    assert errors == []
    page.close()
