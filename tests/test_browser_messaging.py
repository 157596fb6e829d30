"""Mass messaging in a real browser (Debian's chromium, Playwright): compose a send, see the
refusals with their rules in the preview, and watch the task move to done when the member
executes it in (the fake) WeCom."""

from __future__ import annotations

import pytest

from control.accounts import AccountService
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.fake import FakeWeCom
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-msg")
    data = root / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    clock = root / "clock"
    clock.write_text(str(T0))
    fake = FakeWeCom(FileClock(clock))
    fake.s.employees["rep1"] = {"status": "active"}
    fake.s.follows |= {("rep1", "wmA"), ("rep1", "wmB")}
    (root / "secret").write_text("contact-secret")
    with serving(fake) as wecom:
        with environ(SCRM_CLOCK=f"file:{clock}", SCRM_WECOM_BASE=wecom, SCRM_WECOM_CORP=fake.s.corpid,
                     SCRM_WECOM_SECRET_FILE=str(root / "secret")):
            proc, base = start_serve(data, "--workers", "2")
        yield {"base": base, "fake": fake}
        proc.terminate()
        proc.wait(30)




def test_compose_see_refusals_watch_the_task(site, browser):  # noqa: F811
    base, fake = site["base"], site["fake"]
    page, errors = new_page(browser)
    sign_in(page, base, "boss")
    page.goto(f"{base}/#/messaging")
    page.wait_for_selector("#sendform")
    page.fill("#sendform input[name=sender]", "rep1")
    page.fill("#sendform textarea[name=customers]", "wmA\nwmB\nwmC")
    page.fill("#sendform textarea[name=text]", "双十二专享：满 300 减 50")
    page.click("#previewbtn")
    page.wait_for_selector("#reach")
    assert "将送达 3 位" in page.inner_text("#reach")
    page.click("#sendform button:not([type=button])")
    page.wait_for_selector("#sendstate")
    assert page.inner_text("#sendstate") == "进行中"
    table = page.inner_text("#sendrecipients")
    assert "wmC" in table and "无法发送" in table  # not rep1's customer: WeCom's fail_list
    shot(page, "40-send-running")
    # the same customers again today: the preview names Q-1 for those already reached
    page.goto(f"{base}/#/messaging")
    page.wait_for_selector("#sendform")
    page.fill("#sendform input[name=sender]", "rep1")
    page.fill("#sendform textarea[name=customers]", "wmA\nwmB\nwmC")
    page.fill("#sendform textarea[name=text]", "再发一次")
    page.click("#previewbtn")
    page.wait_for_selector("#previewrefusals")
    rows = [tr.inner_text() for tr in page.locator("#previewrefusals tr").all()[1:]]
    assert len(rows) == 2 and all("Q-1" in r for r in rows) and "将送达 1 位" in page.inner_text("#reach")
    shot(page, "41-send-preview-refusals")
    # the member executes the first send in WeCom: the task moves to done
    page.goto(f"{base}/#/messaging")
    page.wait_for_selector("#sendlist a")
    page.click("#sendlist a")
    page.wait_for_selector("#sendstate")
    fake.execute(next(iter(fake.s.templates)))
    page.click("#poll")
    wait_until(page, "document.querySelector('#sendstate') && "
                           "document.querySelector('#sendstate').textContent === '已完成'")
    assert page.inner_text("#sendrecipients").count("已送达") == 2
    shot(page, "42-send-done")
    assert errors == []


def test_moments_invites_channels_materials_pages(site, browser):  # noqa: F811
    import json
    import urllib.request

    base = site["base"]

    def call(method, path, doc, token):
        req = urllib.request.Request(base + path, method=method, data=json.dumps(doc).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    boss = call("POST", "/api/v1/auth/login", {"username": "boss", "password": PASSWORD}, "")["token"]
    call("PUT", "/api/v1/customers/settings", {"tags": ["VIP"]}, boss)
    for i, ext in enumerate(("wmA", "wmB")):
        call("POST", "/api/v1/customers", {"name": f"客户{i}", "phone": f"1380000200{i}", "owner": "rep1",
                                           "external_userid": ext, "tags": ["VIP"]}, boss)
    page, errors = new_page(browser)
    sign_in(page, base, "boss")
    page.goto(f"{base}/#/messaging?tab=materials")
    page.wait_for_selector("#materialform")
    page.fill("#materialform input[name=title]", "年终盘点")
    page.fill("#materialform input[name=url]", "https://example.cn/a")
    page.click("#materialform button")
    wait_until(page, "document.querySelector('#materials') && "
                           "document.querySelector('#materials').textContent.includes('年终盘点')")
    page.goto(f"{base}/#/messaging?tab=channels")
    page.wait_for_selector("#channelform")
    page.fill("#channelform input[name=name]", "门店海报")
    page.fill("#channelform input[name=employees]", "rep1")
    page.fill("#channelform textarea[name=welcome]", "您好 %NICKNAME%，欢迎光临")
    page.click("#channelform button")
    page.wait_for_selector("#channels a[href^='https://']")  # the live code WeCom made
    shot(page, "43-channels")
    page.goto(f"{base}/#/messaging?tab=moments")
    page.wait_for_selector("#momentform")
    page.fill("#momentform input[name=senders]", "rep1")
    page.fill("#momentform textarea[name=text]", "新品上市")
    page.click("#momentform button")
    page.wait_for_selector("#momentreach")
    assert "可见客户 2 位" in page.inner_text("#momentreach")
    page.click("#momentform button")  # again today: Q-7 refuses both
    page.wait_for_selector("#momentrefusals")
    assert page.inner_text("#momentrefusals").count("Q-7") == 2
    page.goto(f"{base}/#/messaging?tab=invites")
    page.wait_for_selector("#inviteform")
    page.fill("#inviteform input[name=title]", "VIP 专属群")
    page.fill("#inviteform input[name=tags]", "VIP")
    page.fill("#inviteform textarea[name=groups]", "wrG1 qrMedia1")
    page.click("#inviteform button")
    page.wait_for_selector("#invitegroups")
    assert "wrG1" in page.inner_text("#invitegroups")
    shot(page, "44-tag-invite")
    assert errors == []
