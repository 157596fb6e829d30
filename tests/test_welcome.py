"""Welcome messages and channels (rule Q-10) against the fake WeCom: the limits, a channel's
live code made in WeCom, and a customer added through it welcomed by name with the channel's
message and tagged — from the signed ``add_external_contact`` callback, once however often it
is delivered; a customer added without a channel gets the default message."""

from __future__ import annotations

import os

import pytest

from control.accounts import AccountService
from control.app import create_app
from control.config import ControlConfig
from scrm_fast.clock import FileClock
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom import callback
from scrm_fast.wecom.fake import FakeWeCom

PASSWORD = "correct-horse-9"
TOKEN, KEY = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
T0 = 1796090400000


@pytest.fixture
async def env(aiohttp_server, aiohttp_client, tmp_path, monkeypatch):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    clock_path = tmp_path / "clock"
    clock_path.write_text(str(T0))
    fake = FakeWeCom(FileClock(clock_path))
    fake.s.employees["zhang"] = {"status": "active"}
    server = await aiohttp_server(fake.app())
    (tmp_path / "secret").write_text("contact-secret")
    for k, v in {"SCRM_CLOCK": f"file:{clock_path}", "SCRM_WECOM_BASE": str(server.make_url("")).rstrip("/"),
                 "SCRM_WECOM_CORP": fake.s.corpid, "SCRM_WECOM_SECRET_FILE": str(tmp_path / "secret"),
                 "SCRM_WECOM_TOKEN": TOKEN, "SCRM_WECOM_AES_KEY": KEY}.items():
        monkeypatch.setenv(k, v)
    client = await aiohttp_client(create_app(ControlConfig(data_dir=data)))
    r = await client.post("/api/v1/auth/login", json={"username": "boss", "password": PASSWORD})
    return {"c": client, "fake": fake, "h": {"Authorization": f"Bearer {(await r.json())['token']}"}}


async def deliver(c, fake, event: dict):
    xml = "<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in event.items()) + "</xml>"
    ts, nonce = str(T0 // 1000), os.urandom(8).hex()  # fresh, as WeCom signs each try anew
    body, sig = callback.seal_event(TOKEN, KEY, fake.s.corpid, xml, ts, nonce)
    r = await c.post("/wecom/callback", params={"msg_signature": sig, "timestamp": ts, "nonce": nonce},
                     data=body)
    assert r.status == 200 and await r.text() == "success"


async def test_channel_welcome_by_name_tags_once_and_the_default(env):
    c, fake, h = env["c"], env["fake"], env["h"]
    for doc in ({"text": "x" * 501}, {"text": "hi", "remark": "r" * 21},
                {"text": "hi", "image": {"media_id": "m", "size": 3 << 20, "type": "png"}},
                {"text": "hi", "image": {"media_id": "m", "size": 1000, "type": "gif"}}, {"text": ""}):
        r = await c.put("/api/v1/welcome/default", headers=h, json=doc)
        assert r.status == 422, doc
    nick = "%NICKNAME%"
    assert (await c.put("/api/v1/welcome/default", headers=h,
                        json={"text": f"{nick}您好，我是您的专属顾问" + "。" * 480})).status == 200  # 500 without it
    r = await c.post("/api/v1/channels", headers=h, json={
        "name": "门店海报", "employees": ["zhang"], "tags": ["门店客户"],
        "welcome": {"text": f"您好 {nick}，欢迎光临！",
                    "image": {"media_id": "mPoster", "size": 200_000, "type": "jpg"}}})
    ch = await r.json()
    assert r.status == 201 and ch["config_id"] and ch["qr_code"].startswith("https://"), ch
    assert fake.s.contact_ways[ch["config_id"]]["state"] == ch["id"]
    ev = fake.new_contact("zhang", "wmNew1", "王女士", ch["config_id"])
    for _ in range(2):  # WeCom delivers again when it did not hear back: welcomed once
        await deliver(c, fake, ev)
    assert [w["text"] for w in fake.s.welcomes] == ["您好 王女士，欢迎光临！"]
    assert fake.s.welcomes[0]["attachments"] == [{"msgtype": "image", "image": {"media_id": "mPoster"}}]
    assert fake.s.tagged == [("zhang", "wmNew1", ("门店客户",))]
    chans = await (await c.get("/api/v1/channels", headers=h)).json()
    assert chans[0]["added"] == 1
    # a welcome that attaches an article from the library
    r = await c.post("/api/v1/materials", headers=h, json={"kind": "article", "title": "新客指南",
                                                          "url": "https://x.cn/guide"})
    art = await r.json()
    assert r.status == 201
    r = await c.post("/api/v1/channels", headers=h, json={"name": "展会", "employees": ["zhang"], "welcome": {
        "text": "欢迎！", "material": art["id"]}})
    ch2 = await r.json()
    await deliver(c, fake, fake.new_contact("zhang", "wmNew3", "赵总", ch2["config_id"]))
    assert fake.s.welcomes[-1]["attachments"] == [{"msgtype": "link", "link": {"title": "新客指南",
                                                                                "url": "https://x.cn/guide"}}]
    mats = await (await c.get("/api/v1/materials", headers=h)).json()
    assert mats[0]["shares"] == 1
    # added without a channel: the default message
    await deliver(c, fake, fake.new_contact("zhang", "wmNew2", "李先生"))
    assert fake.s.welcomes[-1]["text"].startswith("李先生您好")
    assert len(fake.s.tagged) == 1


async def test_a_slow_wecom_never_makes_the_callback_answer_late(env):
    """WeCom waits 5 s for the callback's answer; the welcome it triggers waits on WeCom's
    own (here: slow) APIs after the answer, and still lands within the code's 20 s."""
    import asyncio
    import time

    c, fake, h = env["c"], env["fake"], env["h"]
    assert (await c.put("/api/v1/welcome/default", headers=h, json={"text": "%NICKNAME%您好"})).status == 200
    fake.s.slow["externalcontact/send_welcome_msg"] = 6.0
    t0 = time.monotonic()
    await deliver(c, fake, fake.new_contact("zhang", "wmSlow", "钱女士"))
    assert time.monotonic() - t0 < 5.0
    assert fake.s.welcomes == []
    for _ in range(200):
        if fake.s.welcomes:
            break
        await asyncio.sleep(0.05)
    assert [w["text"][:3] for w in fake.s.welcomes] == ["钱女士"]
