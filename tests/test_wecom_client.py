"""The one WeCom client against the fake WeCom: one token fetch however many calls wait,
a fresh token once after 40014 or 42001 (one refresh under 50 concurrent calls), 45009
backed off and the call completed, a wrong secret never retried."""

from __future__ import annotations

import asyncio

import pytest

from scrm_fast.clock import ManualClock
from scrm_fast.wecom import WeComClient, WeComError
from scrm_fast.wecom.fake import FakeWeCom

T0 = 1_800_000_000_000
DOC = {"corp": {"corpid": "wwclient"}, "departments": [{"id": 1, "name": "总部", "parent": 0}],
       "employees": [{"userid": "zhang", "name": "张", "department": 1, "archived": True, "status": "active"}]}


@pytest.fixture
async def env(aiohttp_server):
    fake = FakeWeCom(ManualClock(T0))
    fake.serve_directory(DOC)
    server = await aiohttp_server(fake.app())
    client = WeComClient(str(server.make_url("")).rstrip("/"), fake.s.corpid, "contact-secret", max_backoff_s=0.05)
    yield fake, client
    await client.close()


@pytest.mark.parametrize("code", [40014, 42001])
async def test_one_refresh_under_50_concurrent_calls(env, code):
    fake, client = env
    got = await asyncio.gather(*(client.departments() for _ in range(50)))
    assert all(g[0]["name"] == "总部" for g in got)
    assert client.token_fetches == 1 == fake.s.calls.count("gettoken")
    fake.invalidate_tokens(code)  # WeCom dropped the token early (40014) or it expired (42001)
    got = await asyncio.gather(*(client.departments() for _ in range(50)))
    assert len(got) == 50 and all(g for g in got)
    assert client.token_fetches == 2 == fake.s.calls.count("gettoken")


async def test_rate_limit_backs_off_then_completes(env):
    fake, client = env
    fake.s.limited["department/list"] = 3
    t0 = asyncio.get_running_loop().time()
    assert (await client.departments())[0]["id"] == 1
    assert fake.s.limited["department/list"] == 0
    assert asyncio.get_running_loop().time() - t0 >= 0.05  # it waited between tries
    fake.s.limited["department/list"] = 10  # beyond the tries: a clear error, not a loop
    with pytest.raises(WeComError, match="45009"):
        await client.departments()


async def test_wrong_secret_is_not_retried(env):
    fake, _ = env
    bad = WeComClient(env[1].base, fake.s.corpid, "wrong")
    errs = await asyncio.gather(*(bad.departments() for _ in range(5)), return_exceptions=True)
    await bad.close()
    assert all(isinstance(e, WeComError) and e.errcode == 40001 for e in errs), errs
    assert fake.s.calls.count("gettoken") <= 5
