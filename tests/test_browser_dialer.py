"""The dialer's console pages in a real browser (Debian's chromium, Playwright): the
incoming-call pop-up appears for the operator the D-9 table names and not for another; the
statistics charts render (Debian's chart.js, served locally) with the figures of the calls
this test reported; every dialer tab opens without a console error."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest

from control.accounts import AccountService
from scrm_fast.storage import ArchiveStore
from tests.conftest import start_serve
from tests.test_browser import (  # noqa: F401 - the browser fixture; pytestmark skips without chromium
    CHROMIUM,
    PASSWORD,
    browser,
    new_page,
    pytestmark,
    shot,
    sign_in,
    wait_until,
)

NOW = 1796090400000  # 2026-12-01 10:00 Asia/Shanghai


def call(base, method, path, doc=None, auth=None):
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def dialer_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-dialer")
    data = root / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("ann", PASSWORD, "regular", employee="ann", department=7)
    acc.create_user("ben", PASSWORD, "regular", employee="ben", department=7)
    acc.close()
    clock = root / "clock"
    clock.write_text(str(NOW))
    os.environ["SCRM_CLOCK"] = f"file:{clock}"
    try:
        proc, base = start_serve(data, "--workers", "2")
    finally:
        del os.environ["SCRM_CLOCK"]
    boss = "Bearer " + call(base, "POST", "/api/v1/auth/login", {"username": "boss", "password": PASSWORD})["token"]
    call(base, "PUT", "/api/v1/dialer/settings", {"licences": 2, "interval_s": 0}, boss)
    devs = [call(base, "POST", "/api/v1/dialer/devices",
                 {"name": f"话机{i}", "department": 7,
                  "sims": [{"number": f"1380000000{i}"}, {"number": f"1381000000{i}"}]}, boss) for i in range(2)]
    seats = [{"employee": "ann", "device": devs[0]["id"], "outbound": True},
             {"employee": "ben", "device": devs[1]["id"], "outbound": True}]
    call(base, "PUT", "/api/v1/dialer/seats", {"seats": seats}, boss)
    numbers = [f"139{n:08d}" for n in range(12)]
    call(base, "POST", "/api/v1/dialer/campaigns", {"name": "回访", "numbers": numbers}, boss)
    reported = {"calls": 0, "connected": 0}
    t = NOW
    for i in range(10):
        dev = devs[i % 2]
        auth = f"Device {dev['token']}"
        got = call(base, "POST", "/api/v1/dialer/next", {}, auth)
        assert "call" in got, got
        talk = [0, 45, 120, 10][i % 4]
        doc = {"call_id": f"c{i}", "reservation": got["call"]["id"], "started_at": t,
               "ended_at": t + (talk + 8) * 1000, "talk_seconds": talk,
               "outcome": "answered" if talk else "no_answer"}
        call(base, "POST", "/api/v1/dialer/calls", doc, auth)
        reported["calls"] += 1
        reported["connected"] += bool(talk)
        t += 200_000
        clock.write_text(str(t))
    ann = "Bearer " + call(base, "POST", "/api/v1/auth/login", {"username": "ann", "password": PASSWORD})["token"]
    contact = {"number": "13912345678", "name": "王先生", "customer": "wm-001"}
    call(base, "POST", "/api/v1/dialer/contacts", contact, ann)
    yield {"base": base, "devs": devs, "reported": reported}
    proc.terminate()
    proc.wait(timeout=30)




def test_popup_for_the_right_operator_only(dialer_server, browser):  # noqa: F811
    base = dialer_server["base"]
    ann, ann_errors = new_page(browser)
    ben, ben_errors = new_page(browser)
    sign_in(ann, base, "ann")
    sign_in(ben, base, "ben")
    time.sleep(1.0)  # both consoles have their event streams open
    dev = dialer_server["devs"][0]  # ann's line
    out = call(base, "POST", "/api/v1/dialer/ringing", {"number": "139 1234 5678"}, f"Device {dev['token']}")
    assert {p["operator"] for p in out["popups"]} >= {"ann"} and "ben" not in {p["operator"] for p in out["popups"]}
    ann.wait_for_selector(".popup", timeout=10_000)
    text = ann.inner_text(".popup")
    assert "王先生" in text and "13912345678" in text and "D-9d" in text
    shot(ann, "20-dialer-popup")
    ben.wait_for_timeout(1500)
    assert ben.locator(".popup").count() == 0
    # a call on ben's line with no record: ben's console pops up (D-9e), ann's does not
    other = dialer_server["devs"][1]
    call(base, "POST", "/api/v1/dialer/ringing", {"number": "13700000000"}, f"Device {other['token']}")
    ben.wait_for_selector(".popup", timeout=10_000)
    assert "无客户档案" in ben.inner_text(".popup") and "D-9e" in ben.inner_text(".popup")
    ann.wait_for_timeout(1000)
    assert ann.locator(".popup").count() == 1
    assert ann_errors == [] and ben_errors == []


def test_statistics_charts_render_with_the_reported_figures(dialer_server, browser):  # noqa: F811
    base = dialer_server["base"]
    page, errors = new_page(browser)
    sign_in(page, base, "boss")
    page.goto(f"{base}/#/dialer?tab=stats&from=2026-12-01&to=2026-12-01&g=day")
    page.wait_for_selector("#kpis")
    kpis = page.inner_text("#kpis")
    rep = dialer_server["reported"]
    assert f"呼叫总数\n{rep['calls']}" in kpis and f"接通\n{rep['connected']}" in kpis
    assert page.evaluate("typeof window.Chart") == "function", "chart.js was not served"
    wait_until(page, "window.Chart.getChart(document.querySelector('#trend')) !== undefined")
    drawn = page.evaluate("""() => { const c = document.querySelector('#rank');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++; return ink; }""")
    assert drawn > 500, "the ranking chart drew nothing"
    assert page.locator("#ranking tr").count() == 3  # header + ann + ben
    shot(page, "21-dialer-stats")
    for tab, sel in (("calls", "#calls tr"), ("devices", "#devices tr"), ("seats", "#seats tr"),
                     ("campaigns", "#campaigns tr"), ("dnc", "#dnc"), ("settings", "#setform")):
        page.goto(f"{base}/#/dialer?tab={tab}")
        page.wait_for_selector(sel)
        shot(page, f"22-dialer-{tab}")
    page.goto(f"{base}/#/dialer?tab=calls&connected=true")
    page.wait_for_selector("#calls")
    assert page.locator("#calls tr").count() == 1 + rep["connected"]
    page.goto(f"{base}/#/dialer?tab=settings")
    page.wait_for_selector("#setform")
    assert "advice" in page.content() and "50–80" in page.inner_text("#setform")
    assert errors == []
