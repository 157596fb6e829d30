"""WeCom callbacks (``wecom-api.md`` §2) against the official test vectors, refusals of
bad signatures, keys and corps, and ``/wecom/callback`` over HTTP: the URL check answered
with the bare plaintext, a ``transfer_fail`` event applied to the waiting transfer at once
and a repeated delivery applied once."""

from __future__ import annotations

import pytest

from control.accounts import AccountService
from control.app import create_app
from control.config import ControlConfig
from scrm_fast.errors import InputError
from scrm_fast.storage import ArchiveStore
from scrm_fast.wecom import callback

TOKEN, KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
ECHO = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
EVENT = ("RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/s"
         "YYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJ"
         "YuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGU"
         "callcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDY"
         "A5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==")


NOW_S = 1409659700


def test_official_vectors():
    assert callback.url_check(TOKEN, KEY, CORP, "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589",
                              "263014780", ECHO) == "1616140317555161061"
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[218]]></AgentID>" \
           f"<Encrypt><![CDATA[{EVENT}]]></Encrypt></xml>".encode()
    ev = callback.open_event(TOKEN, KEY, CORP, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813",
                             "1372623149", body)
    assert ev["Content"] == "hello" and ev["MsgId"] == "4561255354251345929"


@pytest.mark.parametrize("change", ["signature", "key", "corp", "echostr"])
def test_refusals(change):
    sig, key, corp, echo = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", KEY, CORP, ECHO
    if change == "signature":
        sig = "0" * 40
    elif change == "key":
        key = "k" + KEY[1:]
    elif change == "corp":
        corp = "wwsomeoneelse"
    else:
        echo = ECHO[:-8] + "AAAAAAA="
    with pytest.raises(InputError):
        callback.url_check(TOKEN, key, corp, sig, "1409659589", "263014780", echo)


@pytest.fixture
async def client(aiohttp_client, tmp_path, monkeypatch):
    data = tmp_path / "data"
    ArchiveStore(data).close()
    AccountService(data).close()
    clock = tmp_path / "clock"  # the official vectors' time: their timestamps are fresh
    clock.write_text(str(NOW_S * 1000))
    for k, v in (("SCRM_WECOM_TOKEN", TOKEN), ("SCRM_WECOM_AES_KEY", KEY), ("SCRM_WECOM_CORP", CORP),
                 ("SCRM_WECOM_SECRET_FILE", str(tmp_path / "secret")), ("SCRM_CLOCK", f"file:{clock}")):
        monkeypatch.setenv(k, v)
    (tmp_path / "secret").write_text("s")
    return await aiohttp_client(create_app(ControlConfig(data_dir=data)))


async def test_url_check_and_transfer_fail_over_http(client):
    r = await client.get("/wecom/callback", params={"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
                                                    "timestamp": "1409659589", "nonce": "263014780",
                                                    "echostr": ECHO})
    assert r.status == 200 and await r.read() == b"1616140317555161061"  # no quotes, BOM or newline
    r = await client.get("/wecom/callback", params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "2",
                                                    "echostr": ECHO})
    assert r.status == 403
    # a waiting transfer, then WeCom says the customer refused
    from control.customers.routes import TRANSFERS

    tr = client.server.app[TRANSFERS]

    def make(t):
        job = tr.create(t, {"kind": "on_job", "from": "zhangsan", "to": "lisi", "customers": ["wmX1", "wmX2"]}, "t")
        for ext in ("wmX1", "wmX2"):
            job["customers"][ext] = {"state": "waiting", "errcode": 0}
        t.put("cu.xfer", job["id"].encode(), job)
        return job["id"]
    jid = tr.cu.run(make)
    xml = ("<xml><ToUserName>x</ToUserName><Event><![CDATA[change_external_contact]]></Event>"
           "<ChangeType><![CDATA[transfer_fail]]></ChangeType><FailReason><![CDATA[customer_refused]]></FailReason>"
           "<UserID><![CDATA[lisi]]></UserID><ExternalUserID><![CDATA[wmX1]]></ExternalUserID></xml>")
    for nonce in ("42", "43", "44"):  # WeCom tries again when it did not hear back in time: applied once
        body, sig = callback.seal_event(TOKEN, KEY, CORP, xml, str(NOW_S), nonce)
        q = {"msg_signature": sig, "timestamp": str(NOW_S), "nonce": nonce}
        r = await client.post("/wecom/callback", params=q, data=body)
        assert r.status == 200 and await r.text() == "success"
    job = tr.get(jid)
    assert job["customers"]["wmX1"]["state"] == "refused" and job["customers"]["wmX1"]["by"] == "transfer_fail"
    assert job["customers"]["wmX2"]["state"] == "waiting"
    with tr.store.app_read() as t:
        assert sum(1 for _ in t.scan("wc.seen")) == 1
    for bad in (b"<xml><Encrypt>AAAA</Encrypt></xml>", b"not xml", b"<!DOCTYPE x [<!ENTITY a 'b'>]><xml/>"):
        r = await client.post("/wecom/callback", params=q, data=bad)
        assert r.status == 403, bad


def _post_params(xml: str, timestamp: int, nonce: str) -> tuple[bytes, dict]:
    body, sig = callback.seal_event(TOKEN, KEY, CORP, xml, str(timestamp), nonce)
    return body, {"msg_signature": sig, "timestamp": str(timestamp), "nonce": nonce}


async def test_official_vectors_over_http_and_replays_refused(client):
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[218]]></AgentID>" \
           f"<Encrypt><![CDATA[{EVENT}]]></Encrypt></xml>".encode()
    q = {"msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6", "timestamp": "1409659813",
         "nonce": "1372623149"}
    r = await client.post("/wecom/callback", params=q, data=body)
    assert r.status == 200 and await r.text() == "success"
    # the same request again (a captured one replayed): refused, as is any reuse of its nonce
    r = await client.post("/wecom/callback", params=q, data=body)
    assert r.status == 403 and "nonce" in (await r.json())["detail"]
    xml = "<xml><Event>msgaudit_notify</Event></xml>"
    b2, q2 = _post_params(xml, 1409659813, "1372623149")
    assert (await client.post("/wecom/callback", params=q2, data=b2)).status == 403
    # a forged signature; timestamps outside the 5-minute window (old, or from the future)
    b3, q3 = _post_params(xml, NOW_S, "n1")
    assert (await client.post("/wecom/callback", params={**q3, "msg_signature": "f" * 40}, data=b3)).status == 403
    for ts in (NOW_S - 301, NOW_S + 301, 0):
        b4, q4 = _post_params(xml, ts, f"n-{ts}")
        r = await client.post("/wecom/callback", params=q4, data=b4)
        assert r.status == 403 and "timestamp" in (await r.json())["detail"], ts
    b5, q5 = _post_params(xml, NOW_S - 299, "n-ok")
    assert (await client.post("/wecom/callback", params=q5, data=b5)).status == 200
    r = await client.get("/wecom/callback", params={"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
                                                    "timestamp": "1409659589", "nonce": "263014780",
                                                    "echostr": ECHO})
    assert r.status == 200


async def test_contact_changes_update_directory_audit_and_consent(client):
    import asyncio

    from control.app import STORE
    from scrm_fast.audit import list_audits

    store = client.server.app[STORE]
    store.save_directory({"corp": {"corpid": CORP}, "employees": [{"userid": "zhang"}, {"userid": "li"}],
                          "customers": [{"external_userid": "wmOld", "name": "老客户", "follow_users": ["zhang"]}]})

    def ev(change: str, user: str, ext: str, **more: str) -> str:
        extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in more.items())
        return (f"<xml><Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType>"
                f"<UserID><![CDATA[{user}]]></UserID><ExternalUserID><![CDATA[{ext}]]></ExternalUserID>"
                f"<CreateTime>{NOW_S}</CreateTime>{extra}</xml>")

    events = [ev("add_external_contact", "li", "wmNew"), ev("add_external_contact", "li", "wmOld"),
              ev("del_external_contact", "zhang", "wmOld"),
              ev("del_external_contact", "li", "wmNew", Source="DELETE_BY_TRANSFER"),
              ev("del_follow_user", "li", "wmOld"), ev("msg_audit_approved", "zhang", "wmAgreed")]
    for i, xml in enumerate(events):
        body, q = _post_params(xml, NOW_S, f"c{i}")
        r = await client.post("/wecom/callback", params=q, data=body)
        assert r.status == 200 and await r.text() == "success"
    for _ in range(100):  # applied off the request path
        with store.app_read() as t:
            if not list(t.scan("wc.pending")):
                break
        await asyncio.sleep(0.05)
    d = store.directory()
    follows = {c["external_userid"]: c["follow_users"] for c in d["customers"]}
    assert follows == {"wmOld": [], "wmNew": []}
    a4 = [a for a in list_audits(store) if a.get("behaviour") == "delete_customer"]
    assert [(a["employee"], a["customer"]) for a in a4] == [("zhang", "wmOld")]  # not the transfer's removal
    agreed = [c for c in store.consent_changes() if c["external_userid"] == "wmAgreed"]
    assert [(c["status"], c["source"], c["time"]) for c in agreed] == [("Agree", "callback", NOW_S * 1000)]
