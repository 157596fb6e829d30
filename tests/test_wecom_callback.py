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
    for k, v in (("SCRM_WECOM_TOKEN", TOKEN), ("SCRM_WECOM_AES_KEY", KEY), ("SCRM_WECOM_CORP", CORP),
                 ("SCRM_WECOM_SECRET_FILE", str(tmp_path / "secret"))):
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
    body, sig = callback.seal_event(TOKEN, KEY, CORP, xml, "1700000000", "42")
    q = {"msg_signature": sig, "timestamp": "1700000000", "nonce": "42"}
    for _ in range(3):  # WeCom tries again when it did not hear back in time: applied once
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
