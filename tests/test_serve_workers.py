"""`scrm serve` with several worker processes on one port: every worker answers with the
same data, accounts and trail; a job started by one is polled through any; the load
generator of `scrm bench http` counts what the server answered; SIGTERM stops all."""

from __future__ import annotations

import os
import signal
import time
import urllib.parse
import urllib.request

import orjson
import pytest

from control.accounts import AccountService
from control.bench_http import login
from scrm_fast._core import http_load
from scrm_fast.simulate import simulate
from tests.conftest import run_scrm, start_serve

PASSWORD = "correct-horse-9"


def _get(base: str, path: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # a new connection each time
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    sim = root / "sim"
    simulate(sim, 1500, seed=8, doc_items=500)
    data = root / "data"
    run_scrm("ingest", "--keys", str(sim / "keys"), "--data", str(data), "--directory", str(sim / "directory.json"),
             "--no-progress", str(sim / "batches"), check=True)
    acc = AccountService(data)
    acc.create_user("boss", PASSWORD, "admin")
    acc.close()
    err = (root / "serve.err").open("wb")
    proc, base = start_serve(data, "--workers", "2", "--keys", str(sim / "keys"), stderr=err)
    port = int(base.rsplit(":", 1)[1])
    token = login(base, "boss", PASSWORD)
    yield {"base": base, "port": port, "token": token, "data": data, "proc": proc, "sim": sim,
           "err": root / "serve.err"}
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    err.close()


def test_both_workers_answer_with_the_same_session(served):
    import http.client

    # a connection held open counts against its worker, so the next one goes to the other
    # (one request at a time may all land on one worker when its closes are reported first)
    held = http.client.HTTPConnection("127.0.0.1", served["port"], timeout=30)
    held.request("GET", "/api/v1/health")
    first = orjson.loads(held.getresponse().read())["worker"]
    pids = {first}
    try:
        for _ in range(40):
            status, body = _get(served["base"], "/api/v1/health")
            assert status == 200
            pids.add(body["worker"])
            if len(pids) == 2:
                break
    finally:
        held.close()
    assert len(pids) == 2, "connections should reach both workers"
    # the session made through one worker is valid in the other (shared LMDB)
    for _ in range(10):
        status, me = _get(served["base"], "/api/v1/me", served["token"])
        assert status == 200 and me["username"] == "boss"


def test_load_generator_counts_answers_and_the_trail_chains_across_workers(served):
    _, convs = _get(served["base"], "/api/v1/conversations", served["token"])
    targets = [f"/api/v1/conversations/{urllib.parse.quote(c['conv'], safe='')}/messages?limit=5" for c in convs[:20]]
    targets += ["/api/v1/search?" + urllib.parse.urlencode({"q": q}) for q in ("的", "我们", "客户", "\"(")]
    res = http_load("127.0.0.1", served["port"], targets, [("Authorization", f"Bearer {served['token']}")],
                    clients=6, seconds=60.0, max_requests=300)
    assert res["errors"] == []
    assert len(res["latencies_ms"]) == 300
    # the unbalanced quote is a 422 query error; everything else answers 200
    assert set(res["statuses"]) <= {200, 422} and res["statuses"][200] >= 250, res["statuses"]
    wrong = http_load("127.0.0.1", served["port"], targets[:2], [("Authorization", "Bearer forged")],
                      clients=2, seconds=60.0, max_requests=10)
    assert wrong["statuses"] == {401: 10}
    # both processes appended to one hash chain, which verifies
    out = run_scrm("trail", "verify", "--data", str(served["data"]), check=True)
    verdict = orjson.loads(out.stdout)
    assert verdict["ok"] is True and verdict["entries"] >= res["statuses"][200], verdict


def test_a_job_is_polled_through_any_worker(served):
    body = b"".join(p.read_bytes() for p in sorted((served["sim"] / "batches").glob("*.jsonl")))
    req = urllib.request.Request(f"{served['base']}/api/v1/ingest", method="POST", data=body,
                                 headers={"Authorization": f"Bearer {served['token']}"})
    job = orjson.loads(urllib.request.urlopen(req, timeout=60).read())
    seen = set()
    for _ in range(300):
        status, job = _get(served["base"], f"/api/v1/jobs/{job['id']}", served["token"])
        assert status == 200, job  # never "no such job" from the other worker
        seen.add(_get(served["base"], "/api/v1/health")[1]["worker"])
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert job["summary"]["duplicates_skipped"] == 1500  # the same corpus again: nothing new, nothing lost
    assert _get(served["base"], "/api/v1/jobs/0123456789abcdef", served["token"])[0] == 404
    assert _get(served["base"], "/api/v1/jobs/..%2f..%2fusers", served["token"])[0] in (404, 422)


def test_sigterm_stops_every_worker(served):
    proc = served["proc"]
    _, h = _get(served["base"], "/api/v1/health")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, served["err"].read_text(errors="replace")[-2000:]
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(h["worker"], 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{served['base']}/api/v1/health", timeout=2).read()


def test_tree_cpu_counts_a_process_and_its_descendants():
    """The server CPU of `scrm bench http`: a child that starts a grandchild burning CPU;
    the grandchild's seconds (measured by itself) are counted in the child's tree."""
    import subprocess
    import sys
    import time

    from control.bench_http import tree_cpu_s

    burn = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
            "print(time.process_time(), flush=True)\ntime.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                               f"subprocess.run([sys.executable, '-c', {burn!r}])"], stdout=subprocess.PIPE)
    try:
        burnt = float(parent.stdout.readline())  # the grandchild's own CPU seconds, now asleep
        time.sleep(0.05)
        got = tree_cpu_s(parent.pid)
        assert burnt >= 0.6
        assert burnt - 0.05 <= got <= burnt + 1.0, (got, burnt)
        assert tree_cpu_s(2 ** 22 + 7) == 0.0  # no such process: nothing
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()
        parent.stdout.close()
