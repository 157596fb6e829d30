"""Timeout-reply alerts (rule A-6): levels, escalation, batch boundaries and out-of-order
arrival give the alerts of the complete stream."""

from __future__ import annotations

import orjson

from scrm_fast import _core
from tests.conftest import run_scrm

T0 = 1_700_000_000_000
MIN = 60_000
DIRECTORY = {"corp": {"corpid": "ww1"},
             "employees": [{"userid": "emp", "archived": True, "leader": "boss"},
                           {"userid": "boss", "archived": True, "leader": "risk"},
                           {"userid": "risk", "archived": True}]}


def text(seq: int, sender: str, to: str, minute: int) -> tuple[int, str, int, bytes]:
    m = {"msgid": f"m{seq}", "action": "send", "from": sender, "tolist": [to], "roomid": "",
         "msgtime": T0 + minute * MIN, "msgtype": "text", "text": {"content": f"消息{seq}"}}
    return (seq, f"m{seq}", 1, orjson.dumps(m))


def test_timeouts_across_batches_and_late_arrival(tmp_path):
    pem = _core.generate_private_key(2048)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "1.pem").write_bytes(pem)
    pub = {1: _core.public_key_of(pem)}
    (tmp_path / "directory.json").write_bytes(orjson.dumps(DIRECTORY))
    doc1 = [text(1, "wmA", "emp", 0), text(2, "wmB", "emp", 1), text(3, "emp", "wmB", 40),
            text(5, "wmA", "emp", 100)]
    doc2 = [text(4, "emp", "wmA", 3)]  # arrives later, but answered customer A within 3 minutes
    (tmp_path / "a.jsonl").write_bytes(_core.seal_response(pub, doc1) + b"\n")
    (tmp_path / "b.jsonl").write_bytes(_core.seal_response(pub, doc2) + b"\n")
    data = str(tmp_path / "d")

    def alerts() -> list[tuple]:
        rows = orjson.loads(run_scrm("alerts", "list", "--data", data, "--json", check=True).stdout)
        return sorted((r["customer"], r["seq"], r["level"], r["answered_at"] is not None, tuple(r["notify"]))
                      for r in rows if r["kind"] == "timeout_reply")

    run_scrm("ingest", "--keys", str(keys), "--data", data, "--directory", str(tmp_path / "directory.json"),
             "--no-progress", str(tmp_path / "a.jsonl"), check=True)
    # customer A has waited 100 minutes so far: all three levels, escalating up the chain
    assert alerts() == [("wmA", 1, 1, False, ("emp",)), ("wmA", 1, 2, False, ("emp", "boss")),
                        ("wmA", 1, 3, False, ("emp", "boss", "risk")),
                        ("wmB", 2, 1, True, ("emp",)), ("wmB", 2, 2, True, ("emp", "boss"))]
    run_scrm("ingest", "--keys", str(keys), "--data", data, "--no-progress", str(tmp_path / "b.jsonl"), check=True)
    # the late reply shows A was answered in 3 minutes: A's alerts are gone, B's stay
    final = alerts()
    assert final == [("wmB", 2, 1, True, ("emp",)), ("wmB", 2, 2, True, ("emp", "boss"))]

    # the same stream in one go, in order, gives the same alerts
    (tmp_path / "all.jsonl").write_bytes(_core.seal_response(pub, sorted(doc1 + doc2)) + b"\n")
    data2 = str(tmp_path / "d2")
    run_scrm("ingest", "--keys", str(keys), "--data", data2, "--directory", str(tmp_path / "directory.json"),
             "--no-progress", str(tmp_path / "all.jsonl"), check=True)
    rows = orjson.loads(run_scrm("alerts", "list", "--data", data2, "--json", check=True).stdout)
    assert sorted((r["customer"], r["seq"], r["level"]) for r in rows) == [(c, s, lv) for c, s, lv, *_ in final]

    # thresholds are configurable; a rescan recomputes with them
    out = orjson.loads(run_scrm("alerts", "thresholds", "--data", data, "--set", "10m,2h", check=True).stdout)
    assert out["reply_thresholds_ms"] == [10 * MIN, 120 * MIN]
    assert orjson.loads(run_scrm("alerts", "rescan", "--data", data, check=True).stdout)["timeout_alerts"] == 1
    bad = run_scrm("alerts", "thresholds", "--data", data, "--set", "1h,5m")
    assert bad.returncode == 1 and b"increasing" in bad.stderr
