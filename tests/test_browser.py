"""The console in a real browser (Debian's chromium driven by Playwright): two roles walk the
pages; screenshots go to artifacts/screenshots/; any console error fails the walk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from control.accounts import AccountService
from scrm_fast.simulate import simulate
from tests.conftest import ROOT, run_scrm, start_serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and os.environ.get("CI") is None,
                                reason="chromium not installed (scripts/setup.sh installs it)")
SHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "browser-pass-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    sim = root / "sim"
    simulate(sim, 2000, seed=5, doc_items=500)
    data = root / "data"
    words = root / "words.txt"
    words.write_text("保本,稳赚\n返点,回扣 | kickback | 3 | both\n微信,vx\n", encoding="utf-8")
    run_scrm("words", "import", "--data", str(data), str(words), check=True)
    run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(data), "--directory", str(sim / "directory.json"),
             "--no-progress", str(sim / "batches"), check=True)
    import orjson

    directory = orjson.loads((sim / "directory.json").read_bytes())
    employee = next(e for e in directory["employees"] if e["archived"] and e["status"] == "active")
    acc = AccountService(data)
    acc.create_user("officer", PASSWORD, "auditor")
    acc.create_user("boss", PASSWORD, "admin")
    acc.create_user("operator", PASSWORD, "regular", employee=employee["userid"])
    acc.close()
    proc, base = start_serve(data)
    yield {"base": base, "employee": employee, "directory": directory, "data": data}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield b
        b.close()


def new_page(browser, width=1280, height=800):
    page = browser.new_page(viewport={"width": width, "height": height}, locale="zh-CN")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def sign_in(page, base, user):
    page.goto(f"{base}/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Polls a JavaScript expression until it is true. Playwright's wait_for_function evaluates
    its predicate with eval, which the console's Content-Security-Policy (no unsafe-eval) refuses;
    page.evaluate goes through the DevTools protocol and is not affected."""
    import time

    end = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > end:
            raise AssertionError(f"never true: {expression}")
        page.wait_for_timeout(100)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_officer_walks_every_page(server, browser):
    page, errors = new_page(browser)
    page.goto(f"{server['base']}/")
    page.fill("input[name=username]", "officer")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert "登录失败" in page.inner_text("#error")
    shot(page, "01-login-error")
    errors.clear()  # the 401 of the wrong password is the expected failure
    sign_in(page, server["base"], "officer")
    emp = server["employee"]
    page.click(f"#emps [data-u='{emp['userid']}']")
    page.wait_for_selector("#convs [data-c]")
    page.click("#convs [data-c]")
    page.wait_for_selector("#msgs .msg")
    assert page.locator("#msgs .msg").count() > 0
    page.click("#types button[data-k=file]")
    page.wait_for_load_state("networkidle")
    shot(page, "02-archive")
    page.goto(f"{server['base']}/#/audits")
    page.wait_for_selector("table tr[data-id]")
    first = page.locator("table tr[data-id]").first
    audit_id = first.get_attribute("data-id")
    first.locator("select").select_option("abnormal")
    first.locator("input").fill("违规承诺")
    first.locator("button.handle").click()
    page.wait_for_selector(f"tr[data-id='{audit_id}']", state="detached")
    page.click(".tabs button[data-s=handled]")
    page.wait_for_selector(f"tr[data-id='{audit_id}']")
    assert "异常" in page.inner_text(f"tr[data-id='{audit_id}']")
    shot(page, "03-audits-handled")
    page.goto(f"{server['base']}/#/words")
    page.wait_for_selector("text=触发次数")
    assert "保本" in page.inner_text("main")
    shot(page, "04-words")
    page.goto(f"{server['base']}/#/consent")
    page.wait_for_selector("table")
    shot(page, "05-consent")
    assert errors == []


def test_regular_operator_is_limited(server, browser):
    page, errors = new_page(browser, 390, 844)  # phone width
    sign_in(page, server["base"], "operator")
    assert page.locator("#nav a[href='#/words']").is_hidden()
    emps = page.locator("#emps [data-u]")
    emps.first.wait_for()
    assert [emps.nth(i).get_attribute("data-u") for i in range(emps.count())] == [server["employee"]["userid"]]
    shot(page, "06-operator-phone")
    # search at phone width: only the operator's own conversations come back
    page.click("#nav a[href='#/search']")
    page.fill("#sform input[name=q]", "的")
    page.click("#sform button[type=submit]")
    page.wait_for_selector("#results .result, #results p")
    me = server["employee"]["userid"]
    convs = [page.locator("#results .result").nth(i).get_attribute("data-conv")
             for i in range(page.locator("#results .result").count())]
    assert convs and all(me in c or c.startswith("g:") for c in convs)
    shot(page, "12-operator-search-phone")
    assert errors == []
    # another employee's conversation, asked for directly: a readable error, no data
    other = next(e["userid"] for e in server["directory"]["employees"]
                 if e["userid"] != server["employee"]["userid"])
    status = page.evaluate("""async (conv) => {
        const r = await fetch(`/api/v1/conversations/${encodeURIComponent(conv)}/messages`,
            {headers: {Authorization: `Bearer ${sessionStorage.getItem('token')}`}});
        return r.status; }""", f"p:{other}|wmX")
    assert status == 404
    # the browser logs the deliberate 404 itself; nothing else
    assert all("404" in e for e in errors) and len(errors) <= 1


def test_search_finds_a_known_message_and_opens_it_in_context(server, browser):
    import msgpack

    from scrm_fast.storage import ArchiveStore

    with ArchiveStore(server["data"], readonly=True) as store:
        recs = [msgpack.unpackb(v) for chunk in store.record_value_chunks() for v in chunk]
    known = max((r for r in recs if r["msgtype"] == "text" and len(r["text"]) >= 8 and not r["roomid"]),
                key=lambda r: (r["msgtime"], r["seq"]))
    q = next(known["text"][i:i + 4] for i in range(len(known["text"]) - 3)
             if not any(c in known["text"][i:i + 4] for c in ' "()-\n'))
    page, errors = new_page(browser)
    sign_in(page, server["base"], "officer")
    page.click("#nav a[href='#/search']")
    page.wait_for_selector("#sform")
    page.fill("#sform input[name=q]", q)
    page.click("#sform button[type=submit]")
    page.wait_for_selector("#results .result")
    first = page.locator("#results .result").first
    # the newest message containing the text comes first, with the text marked
    assert first.get_attribute("data-seq") == str(known["seq"])
    assert q.lower() in first.locator("mark").first.inner_text().lower()
    assert "共" in page.inner_text("#stotal")
    shot(page, "07-search")
    first.locator("a").click()
    page.wait_for_selector("#msgs .msg.hit")
    assert page.locator("#msgs .msg.hit").get_attribute("data-seq") == str(known["seq"])
    shot(page, "08-search-context")
    # infinite scroll: a common character has many pages; scrolling loads more
    page.click("#nav a[href='#/search']")
    page.wait_for_selector("#sform")
    page.fill("#sform input[name=q]", "的")
    page.click("#sform button[type=submit]")
    page.wait_for_selector("#results .result")
    total = int("".join(c for c in page.inner_text("#stotal").split("条")[0] if c.isdigit()))
    assert total > 40
    page.locator("#sentinel").scroll_into_view_if_needed()
    wait_until(page, "document.querySelectorAll('#results .result').length > 20")
    # the archive lists (V-1, V-3, V-4)
    page.click("#nav a[href='#/catalog']")
    page.wait_for_selector("text=存档客户数")
    with ArchiveStore(server["data"], readonly=True) as store:
        cp = store.checkpoint()
    assert f"检查点 {cp}" in page.inner_text("#syncinfo") and "同步未运行" in page.inner_text("#syncinfo")
    rows_all = page.locator("main table tr").count()
    dept = page.locator("#cform select[name=department] option").last.get_attribute("value")  # a leaf
    page.select_option("#cform select[name=department]", dept)
    page.click("#cform button[type=submit]")
    wait_until(page, f"document.querySelectorAll('main table tr').length < {rows_all}")
    shot(page, "09-catalog-filtered")
    page.click(".tabs button[data-t=customers]")
    page.wait_for_selector("text=最后会话时间")
    shot(page, "10-catalog-customers")
    assert errors == []


def test_admin_edits_the_word_list(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    page.click("#nav a[href='#/words']")
    page.wait_for_selector("#wform")
    rows = page.locator("main table tr").count()
    page.fill("#wform input[name=word]", "测试敏感词")
    page.fill("#wform input[name=related]", "测验词，考试词")
    page.click("#wform button[type=submit]")
    wait_until(page, f"document.querySelectorAll('main table tr').length === {rows + 1}")
    row = page.locator("main table tr", has_text="测试敏感词")
    assert "测验词、考试词" in row.inner_text()
    shot(page, "11-words-edited")
    row.locator("button.del").click()
    wait_until(page, f"document.querySelectorAll('main table tr').length === {rows}")
    assert "测试敏感词" not in page.inner_text("main")
    assert errors == []
