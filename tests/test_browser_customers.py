"""The customers console in a real browser (Debian's chromium, Playwright): an import with
its per-row report, claims that show their refusals with the rule, and a transfer watched
to completion against the fake WeCom (the clock moved past the 24-hour takeover)."""

from __future__ import annotations

import csv
import io
import json
import urllib.request

import pytest

from control.accounts import AccountService
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.fake import DAY_MS, FakeWeCom
from scrm_fast.wecom.thread import environ, serving
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

T0 = 1796090400000


def call(base, method, path, doc=None, token=None):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(base + path, method=method, headers=headers,
                                 data=json.dumps(doc).encode() if doc is not None else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-crm")
    data = root / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("rep", PASSWORD, "regular", employee="rep1")
    acc.close()
    clock_path = root / "clock"
    clock_path.write_text(str(T0))
    fake = FakeWeCom(FileClock(clock_path))
    fake.s.employees.update({"rep1": {"status": "active"}, "rep2": {"status": "active"}})
    fake.s.follows |= {("rep1", "wmAlpha"), ("rep1", "wmBeta")}
    ctx = serving(fake)
    wecom = ctx.__enter__()
    (root / "secret").write_text("contact-secret")
    with environ(SCRM_CLOCK=f"file:{clock_path}", SCRM_WECOM_BASE=wecom, SCRM_WECOM_CORP=fake.s.corpid,
                 SCRM_WECOM_SECRET_FILE=str(root / "secret")):
        proc, base = start_serve(data, "--workers", "2")
    boss = call(base, "POST", "/api/v1/auth/login", {"username": "boss", "password": PASSWORD})["token"]
    pool = call(base, "POST", "/api/v1/pools", {"name": "华南公海", "members": ["rep1"], "admins": ["boss"],
                                                "hold_cap": 3}, boss)
    yield {"base": base, "pool": pool, "clock": clock_path, "fake": fake, "boss": boss, "root": root}
    proc.terminate()
    proc.wait(timeout=30)
    ctx.__exit__(None, None, None)




def test_import_with_report_then_claims_with_refusals(crm, browser):  # noqa: F811
    base, pool = crm["base"], crm["pool"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["客户名称", "手机号", "企业"])
    bad_rows = {}
    for i in range(30):
        if i == 4:
            w.writerow(["", "13900000004", ""])
            bad_rows[i + 2] = "无效"
        elif i == 9:
            w.writerow(["坏号码", "12345", ""])
            bad_rows[i + 2] = "无效"
        elif i == 15:
            w.writerow(["重复", "139 0000 0001", ""])
            bad_rows[i + 2] = "重复"
        else:
            w.writerow([f"客户{i}", f"1390000{i:04d}", "某某公司"])
    sheet = crm["root"] / "leads.csv"
    sheet.write_bytes(buf.getvalue().encode())
    page, errors = new_page(browser)
    sign_in(page, base, "boss")
    page.goto(f"{base}/#/customers?tab=pools&pool={pool['id']}")
    page.wait_for_selector("#importform")
    page.set_input_files("#importform input[type=file]", str(sheet))
    page.click("#importform button")
    page.wait_for_selector("#importsummary")
    assert "导入 27" in page.inner_text("#importsummary")
    shown = {int(tr.get_attribute("data-row")): tr.inner_text()
             for tr in page.locator("#reportrows tr[data-row]").all()}
    assert sorted(shown) == sorted(bad_rows)
    for row, word in bad_rows.items():
        assert word in shown[row]
    with page.expect_download() as dl:
        page.click("#dl")
    assert dl.value.suggested_filename.endswith(".xlsx")
    shot(page, "30-pool-import-report")
    # the member claims five; the holding cap is three: two refusals name P-2
    rep, rep_errors = new_page(browser)
    sign_in(rep, base, "rep")
    rep.goto(f"{base}/#/customers?tab=pools&pool={pool['id']}")
    rep.wait_for_selector("#poolcustomers .pick")
    for box in rep.locator("#poolcustomers .pick").all()[:5]:
        box.check()
    rep.click("#claim")
    rep.wait_for_selector("#refusals")
    assert "已领取 3 位客户" in rep.inner_text("#claimresult")
    rules_shown = [tr.inner_text() for tr in rep.locator("#refusals tr").all()[1:]]
    assert len(rules_shown) == 2 and all("P-2" in r for r in rules_shown)
    shot(rep, "31-pool-claim-refusals")
    rep.goto(f"{base}/#/customers?tab=mine")
    rep.wait_for_selector("#mycustomers")
    assert rep.locator("#mycustomers tr[data-id]").count() == 3
    rep.locator("#mycustomers .back").first.check()  # one goes back to the pool
    rep.click("#giveback")
    rep.wait_for_selector("#givebackresult:has-text('已退回 1 位客户')")
    assert rep.locator("#mycustomers tr[data-id]").count() == 2
    # the admin sets a prospecting seat in bulk
    page.goto(f"{base}/#/customers?tab=seats")
    page.wait_for_selector("#seatform")
    page.fill("#seatform input[name=members]", "rep1 rep2")
    page.fill("#seatform input[name=daily_cap]", "5")
    page.click("#seatform button")
    page.wait_for_selector("#seats tr:has-text('rep2')")
    assert "开启" in page.inner_text("#seats") and "5" in page.inner_text("#seats")
    assert errors == [] and rep_errors == []


def test_transfer_watched_to_completion(crm, browser):  # noqa: F811
    base = crm["base"]
    page, errors = new_page(browser)
    sign_in(page, base, "boss")
    page.goto(f"{base}/#/customers?tab=transfer")
    page.wait_for_selector("#xform")
    for i, ext in enumerate(("wmAlpha", "wmBeta")):  # the SCRM's records of rep1's two WeCom customers
        call(base, "POST", "/api/v1/customers", {"name": f"老客户{i}", "phone": f"1370000100{i}", "owner": "rep1",
                                                 "external_userid": ext}, crm["boss"])
    page.fill("#xform input[name=from]", "rep1")
    page.click("#loadcands")  # the employee's customers and groups, listed for the admin
    wait_until(page, "document.querySelector('#xform textarea[name=customers]').value.includes('wmBeta')")
    assert page.input_value("#xform textarea[name=customers]").split() == ["wmAlpha", "wmBeta"]
    page.fill("#xform input[name=to]", "rep2")
    page.click("#xform button:not([type=button])")
    page.wait_for_selector("#xfercustomers")
    assert page.locator("#xfercustomers tr[data-ext]").count() == 2
    assert all("等待接替" in tr.inner_text() for tr in page.locator("#xfercustomers tr[data-ext]").all())
    page.click("#poll")
    page.wait_for_selector("#xfercustomers")
    assert "等待至" in page.inner_text("#xfercustomers")
    shot(page, "32-transfer-waiting")
    FileClock(crm["clock"]).set(T0 + DAY_MS + 60_000)  # the 24-hour takeover passes
    page.click("#poll")
    wait_until(page, "document.querySelector('#jobstate') && "
                           "document.querySelector('#jobstate').textContent === '已完成'")
    assert all("接替完毕" in tr.inner_text() for tr in page.locator("#xfercustomers tr[data-ext]").all())
    assert ("rep2", "wmAlpha") in crm["fake"].s.follows
    shot(page, "33-transfer-done")
    assert errors == []
