"""A server killed (SIGKILL) between reserving a send's quota and WeCom's answer: after a
restart no quota is lost or spent twice and WeCom holds the send once — reservations are
durable, and a push that may have reached WeCom is found again with get_groupmsg_list_v2
before anything is sent again."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

from control.accounts import AccountService
from control.bench_http import login
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom.fake import FakeWeCom
from scrm_fast.wecom.thread import environ, serving
from tests.conftest import start_serve

PASSWORD = "correct-horse-9"
T0 = 1796090400000


def call(base, method, path, token, doc=None, timeout=30):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(doc).encode() if doc else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait(pred, seconds=20):
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_killed_while_wecom_answers_then_restarted(tmp_path):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    clock_path = tmp_path / "clock"
    clock_path.write_text(str(T0))
    fake = FakeWeCom(FileClock(clock_path))
    fake.s.employees["zhang"] = {"status": "active"}
    fake.s.follows |= {("zhang", "wm1"), ("zhang", "wm2")}
    (tmp_path / "secret").write_text("contact-secret")
    with serving(fake) as wecom, environ(SCRM_CLOCK=f"file:{clock_path}", SCRM_WECOM_BASE=wecom,
                                         SCRM_WECOM_CORP=fake.s.corpid, SCRM_WECOM_SECRET_FILE=str(tmp_path / "secret"),
                                         SCRM_SEND_POLL_S="0.5", SCRM_PUSH_LEASE_S="1"):
        proc = None
        try:
            proc, base = start_serve(data, "--workers", "1")
            token = login(base, "boss", PASSWORD)
            fake.s.answer_delay_s = 5.0  # WeCom creates the template, then answers late
            def doomed():  # its server is killed under it: the connection drops
                try:
                    call(base, "POST", "/api/v1/mass-sends", token, {
                        "kind": "member", "sender": "zhang", "customers": ["wm1", "wm2"], "text": "限时优惠"}, 10)
                except (OSError, urllib.error.URLError):
                    pass
            t = threading.Thread(target=doomed, daemon=True)
            t.start()
            assert _wait(lambda: len(fake.s.templates) == 1, 10)
            proc.send_signal(signal.SIGKILL)  # between WeCom's create and its answer
            proc.wait(10)
            fake.s.answer_delay_s = 0.0
            proc, base = start_serve(data, "--workers", "1")
            token = login(base, "boss", PASSWORD)
            sends = call(base, "GET", "/api/v1/mass-sends", token)[1]
            assert len(sends) == 1
            sid = sends[0]["id"]
            # the scheduler finds the template WeCom holds and adopts it: no second send
            assert _wait(lambda: call(base, "GET", f"/api/v1/mass-sends/{sid}", token)[1]["state"] == "running")
            time.sleep(1.5)
            assert len(fake.s.templates) == 1
            for rid in ("wm1", "wm2"):
                assert call(base, "GET", f"/api/v1/quotas/{rid}", token)[1]["member_today"] == 1
            # the member executes it; WeCom's result settles it
            fake.execute(next(iter(fake.s.templates)))
            st, s = call(base, "POST", f"/api/v1/mass-sends/{sid}/poll", token)
            assert s["state"] == "done" and s["recipient_states"] == {"sent": 2}

            # killed before WeCom heard of it: WeCom unreachable, the send stays reserved, pushed once later
            fake.s.follows |= {("zhang", "wm3")}
            real_add = fake.add_msg_template
            down = {"on": True}

            async def flaky(request):
                from aiohttp import web
                if down["on"]:
                    return web.Response(status=503)
                return await real_add(request)
            fake.add_msg_template = flaky  # the route calls the bound method at request time
            st, s2 = call(base, "POST", "/api/v1/mass-sends", token, {
                "kind": "enterprise", "sender": "zhang", "customers": ["wm3"], "text": "新品"})
            assert st == 201
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            down["on"] = False
            proc, base = start_serve(data, "--workers", "1")
            token = login(base, "boss", PASSWORD)
            assert _wait(lambda: call(base, "GET", f"/api/v1/mass-sends/{s2['id']}", token)[1]["state"] == "running")
            time.sleep(1.5)
            assert sum(1 for tpl in fake.s.templates.values() if "wm3" in tpl["results"]) == 1
            assert call(base, "GET", "/api/v1/quotas/wm3", token)[1]["enterprise_this_month"] == 1
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
