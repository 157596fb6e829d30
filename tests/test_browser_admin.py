"""The console's evidence and administration pages in a real browser (issue 14 item 7):
alerts with their escalation chain, the review queue with names and no pre-selected
verdict, users and roles, one's own tokens and password, settings, and the trail."""

from __future__ import annotations

import urllib.request

import orjson

from control.bench_http import login
from tests import test_browser as tb
from tests.test_browser import PASSWORD, new_page, shot, sign_in, wait_until

server = tb.server  # the same fixtures: a server of this module's own, a browser
browser = tb.browser


def _api(base: str, path: str, token: str) -> object:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return orjson.loads(r.read())


def _refused(call) -> int:
    """The HTTP status a call that must fail failed with."""
    try:
        call()
    except urllib.error.HTTPError as e:
        return e.code
    raise AssertionError("it succeeded")


def _name(directory: dict, uid: str) -> str:
    for e in directory["employees"] + directory.get("customers", []):
        if e.get("userid", e.get("external_userid")) == uid:
            return e.get("name") or uid
    return uid


def test_alerts_page_shows_the_chain_and_links_to_the_message(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    token = login(server["base"], "boss", PASSWORD)
    alerts = _api(server["base"], "/api/v1/alerts", token)
    timeouts = [a for a in alerts if a["kind"] == "timeout_reply"]
    assert timeouts and any(a["kind"] == "sensitive_word" for a in alerts)
    page.goto(f"{server['base']}/#/alerts")
    page.wait_for_selector("#alerts tr[data-id]")
    assert page.locator("#alerts tr[data-id]").count() == len(alerts)
    # a level-3 timeout names its whole chain, by name, employee first
    top = max(timeouts, key=lambda a: a["level"])
    row = page.locator(f"#alerts tr[data-id='{top['id']}']")
    chain = " → ".join(_name(server["directory"], u) for u in top["notify"])
    assert row.locator("td.chain").inner_text() == chain
    assert f"{top['level']} 级" in row.inner_text()
    assert _name(server["directory"], top["employee"]) in row.inner_text()
    page.click("#alkind button[data-k=timeout_reply]")
    wait_until(page, f"document.querySelectorAll('#alerts tr[data-id]').length === {len(timeouts)}")
    shot(page, "30-alerts")
    page.locator(f"#alerts tr[data-id='{top['id']}'] a.ctx").click()
    page.wait_for_selector(f"#msgs .msg.hit[data-seq='{top['seq']}']")
    assert errors == []


def test_review_queue_names_parties_filters_and_preselects_nothing(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    token = login(server["base"], "boss", PASSWORD)
    pending = _api(server["base"], "/api/v1/audits?status=pending", token)
    page.goto(f"{server['base']}/#/audits")
    page.wait_for_selector("#audits tr[data-id]")
    first = page.locator("#audits tr[data-id]").first
    a = next(x for x in pending if x["id"] == first.get_attribute("data-id"))
    cells = first.locator("td")
    assert cells.nth(1).inner_text() == _name(server["directory"], a["employee"])
    if a.get("roomid"):
        assert cells.nth(2).inner_text().startswith("群：")
    else:
        assert cells.nth(2).inner_text() == _name(server["directory"], a["customer"])
    # no verdict is chosen for the reviewer, and nothing can be submitted before one is
    assert first.locator("select.verdict").input_value() == ""
    assert first.locator("button.handle").is_disabled()
    page.click("#astatus button[data-k=behaviour]")
    wait_until(page, "location.hash.includes('kind=behaviour') && "
                     "document.querySelector('#astatus button[data-k=behaviour].on')")
    kinds = page.locator("#audits tr[data-id] td:first-child").all_inner_texts()
    assert kinds and all(not k.startswith("敏感词") for k in kinds)
    assert len(kinds) == sum(1 for x in pending if x["kind"] == "behaviour")
    shot(page, "31-review-behaviours")
    row = page.locator("#audits tr[data-id]").first
    rid = row.get_attribute("data-id")
    row.locator("select.verdict").select_option("normal")
    assert not row.locator("button.handle").is_disabled()
    row.locator("button.handle").click()
    page.wait_for_selector(f"tr[data-id='{rid}']", state="detached")
    page.click("#astatus button[data-s=handled]")
    page.wait_for_selector(f"tr[data-id='{rid}']")
    assert "正常" in page.inner_text(f"tr[data-id='{rid}']")
    assert errors == []


def test_users_and_roles(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    page.goto(f"{server['base']}/#/users")
    page.wait_for_selector("#users tr[data-u]")
    # a custom role with function permissions and a data scope
    page.fill("#rform input[name=role]", "reviewer2")
    page.select_option("#rform select[name=scope]", "department")
    for p in ("archive.read", "audit.read", "alerts.read"):
        page.check(f"#rform input[value='{p}']")
    page.click("#rform button[type=submit]")
    page.wait_for_selector("#roles tr[data-r=reviewer2]")
    assert "本部门及下级" in page.inner_text("#roles tr[data-r=reviewer2]")
    # two accounts created, then disabled together
    for name in ("temp-a", "temp-b"):
        page.fill("#uform input[name=username]", name)
        page.fill("#uform input[name=password]", "temporary-pass-1")
        page.select_option("#uform select[name=role]", "reviewer2")
        page.click("#uform button[type=submit]")
        page.wait_for_selector(f"#users tr[data-u='{name}']")
    for name in ("temp-a", "temp-b"):
        page.check(f"#users tr[data-u='{name}'] input.pick")
    page.click("#bulkoff")
    page.wait_for_selector("#notice:has-text('已停用')")
    assert "已停用 2 个用户" in page.inner_text("#notice")
    for name in ("temp-a", "temp-b"):
        assert "已停用" in page.inner_text(f"#users tr[data-u='{name}']")
    shot(page, "32-users-roles")
    token = login(server["base"], "boss", PASSWORD)
    users = {u["username"]: u for u in _api(server["base"], "/api/v1/users", token)}
    assert users["temp-a"]["disabled"] and users["temp-b"]["disabled"] and users["temp-a"]["role"] == "reviewer2"
    assert _refused(lambda: login(server["base"], "temp-a", "temporary-pass-1")) in (401, 403)
    assert errors == []


def test_own_tokens_and_password(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "operator")
    page.click("#account")
    page.wait_for_selector("#tform")
    page.fill("#tform input[name=name]", "report-script")
    page.fill("#tform input[name=ttl_days]", "30")
    page.click("#tform button[type=submit]")
    page.wait_for_selector("#tokenvalue")
    value = page.inner_text("#tokenvalue")
    assert _api(server["base"], "/api/v1/me", value)["username"] == "operator"
    row = page.locator("#tokens tr[data-id]", has_text="report-script")
    row.locator("button.revoke").click()
    page.wait_for_selector("#tokens tr[data-id]:has-text('report-script'):has-text('已吊销')")
    assert _refused(lambda: _api(server["base"], "/api/v1/me", value)) == 401  # revoked
    shot(page, "33-account")
    page.fill("#pwform input[name=old]", PASSWORD)
    page.fill("#pwform input[name=new]", "a-new-password-2")
    page.click("#pwform button[type=submit]")
    page.wait_for_selector("#notice")
    # the session goes on with its new token; the old password no longer signs in
    page.goto(f"{server['base']}/#/archive")
    page.wait_for_selector("#nav:not([hidden])")
    assert login(server["base"], "operator", "a-new-password-2")
    assert _refused(lambda: login(server["base"], "operator", PASSWORD)) in (401, 429)  # the old password
    assert errors == []


def test_settings_and_trail(server, browser):
    page, errors = new_page(browser)
    sign_in(page, server["base"], "boss")
    token = login(server["base"], "boss", PASSWORD)
    for _ in range(110):  # reads of content, each on the trail: more than one page of it
        _api(server["base"], "/api/v1/alerts", token)
    page.goto(f"{server['base']}/#/settings")
    page.wait_for_selector("#thform")
    inputs = page.locator("#thform input[name=t]")
    assert [inputs.nth(i).input_value() for i in range(inputs.count())] == ["5", "30", "60"]
    inputs.nth(0).fill("10")
    page.click("#addlevel")
    page.locator("#thform input[name=t]").nth(3).fill("120")
    page.click("#thform button[type=submit]")
    page.wait_for_selector("#notice")
    assert _api(server["base"], "/api/v1/alerts/thresholds", token)["reply_thresholds_ms"] == \
        [600_000, 1_800_000, 3_600_000, 7_200_000]
    page.uncheck("#bform input[name=red_packet]")
    for _ in range(100):
        if _api(server["base"], "/api/v1/behaviours", token)["red_packet"] is False:
            break
        page.wait_for_timeout(100)
    assert _api(server["base"], "/api/v1/behaviours", token)["red_packet"] is False
    shot(page, "34-settings")
    page.goto(f"{server['base']}/#/trail")
    page.wait_for_selector("#trail tr td")
    indexes = [int(x) for x in page.locator("#trail tr td:nth-child(1)").all_inner_texts()]
    assert len(indexes) == 100 and indexes == sorted(indexes, reverse=True)  # newest first
    page.click("#older")
    wait_until(page, f"document.querySelector('#trail tr:nth-child(2) td')?.textContent === '{indexes[-1] - 1}'")
    older = [int(x) for x in page.locator("#trail tr td:nth-child(1)").all_inner_texts()]
    assert older and older[0] == indexes[-1] - 1
    page.goto(f"{server['base']}/#/trail")
    page.wait_for_selector("#trail tr td")
    actions = page.locator("#trail tr td:nth-child(4)").all_inner_texts()
    assert "behaviours_changed" in actions and "thresholds_changed" in actions
    page.click("#verify")
    page.wait_for_selector("#verdict .ok")
    assert "完整" in page.inner_text("#verdict")
    shot(page, "35-trail")
    # an auditor sees the trail but not the account administration
    page2, errors2 = new_page(browser)
    sign_in(page2, server["base"], "officer")
    assert page2.locator("#nav a[href='#/users']").is_hidden()
    assert page2.locator("#nav a[href='#/trail']").is_visible()
    assert page2.locator("#nav a[href='#/alerts']").is_visible()
    assert errors == [] and errors2 == []
