"""Timeout-reply alerts (rule A-6): levels, escalation, batch boundaries and out-of-order
arrival give the alerts of the complete stream."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    assert len(alerts()) == 1  # applied at once: every conversation was due with the new levels
    assert orjson.loads(run_scrm("alerts", "rescan", "--data", data, check=True).stdout)["timeout_alerts"] == 1
    bad = run_scrm("alerts", "thresholds", "--data", data, "--set", "1h,5m")
    assert bad.returncode == 1 and b"increasing" in bad.stderr


def _brute_timeouts(msgs: list[tuple[int, str, str, int]], thresholds: list[int]) -> set[tuple]:
    """Rule A-6 by hand, written apart from the engine: per one-to-one conversation in
    (time, seq) order, the first customer message after the employee's last reply waits
    until the employee's next message (or the newest message of the whole stream)."""
    now = max(t for _, _, _, t in msgs)
    by_conv: dict[str, list[tuple[int, int, bool]]] = {}
    for seq, sender, to, t in msgs:
        customer = sender if sender.startswith("wm") else to
        by_conv.setdefault(customer, []).append((t, seq, sender == customer))
    out = set()
    for customer, ms in by_conv.items():
        wait = None
        ends = []
        for t, seq, from_customer in sorted(ms):
            if from_customer and wait is None:
                wait = (seq, t)
            elif not from_customer and wait is not None:
                ends.append((*wait, t, True))
                wait = None
        if wait is not None:
            ends.append((*wait, now, False))
        for seq, since, until, answered in ends:
            for level, th in enumerate(thresholds, 1):
                if until - since > th:
                    out.add((customer, seq, level, until if answered else None, until - since))
    return out


_runs = iter(range(10**6))


def _keys() -> tuple[Path, dict]:
    pem = _core.generate_private_key(2048)
    d = Path(tempfile.mkdtemp(prefix="a6-keys-"))
    (d / "1.pem").write_bytes(pem)
    return d, {1: _core.public_key_of(pem)}


_KEYS = _keys()


def test_a_timeline_holds_its_conversation_only(tmp_path):
    """``timelines`` reads each conversation's own entries up to their end: a customer whose
    id extends another's (``wmA``, ``wmA2``, ``wmAB``) is read apart from it, and a
    conversation with no entries reads as none."""
    from scrm_fast import KeyRing
    from scrm_fast.storage import key_seq
    from scrm_fast.tenant import Tenant

    keys, pub = _KEYS
    customers = ["wmA", "wmA2", "wmAB", "wmB"]
    msgs = [text(seq, *((c, "emp") if seq % 3 else ("emp", c)), seq) for seq, c in
            ((seq, customers[seq * 7 % len(customers)]) for seq in range(1, 41))]
    expected = {c: sorted(seq for seq, (_, _, _, m) in zip(range(1, 41), msgs, strict=True)
                          if c in orjson.loads(m)["tolist"] + [orjson.loads(m)["from"]]) for c in customers}
    f = tmp_path / "all.jsonl"
    f.write_bytes(_core.seal_response(pub, msgs) + b"\n")
    with Tenant(tmp_path / "d") as tenant:
        tenant.import_directory(DIRECTORY)
        tenant.ingest([f], KeyRing.load_dir(keys))
        store = tenant.store
        for c in customers:
            done, entries = store.timelines([f"p:emp|{c}"])
            assert done == [f"p:emp|{c}"]
            assert [key_seq(k[-8:]) for k, _ in entries] == expected[c], c
        convs = [f"p:emp|{c}" for c in customers]
        done, entries = store.timelines(["p:emp|wm", *convs, "p:emp|wmC"])
        assert done == ["p:emp|wm", *convs, "p:emp|wmC"]
        assert [key_seq(k[-8:]) for k, _ in entries] == [s for c in customers for s in expected[c]]
        # bounded: stops after the conversation that reached the bound
        done, entries = store.timelines(convs, max_entries=1)
        assert done == convs[:1] and len(entries) == len(expected["wmA"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_timeouts_of_any_split_into_runs_equal_the_whole_stream(tmp_path, data):
    """However the stream is cut into ingest runs and in whatever order the pieces arrive,
    the stored alerts equal rule A-6 applied to the complete stream (a customer left
    waiting in one run escalates when a later run moves the stream's time on)."""
    from scrm_fast import KeyRing
    from scrm_fast.audit import DEFAULT_REPLY_THRESHOLDS_MS
    from scrm_fast.tenant import Tenant

    n = data.draw(st.integers(2, 18))
    minutes, msgs = 0, []
    for seq in range(1, n + 1):
        minutes += data.draw(st.sampled_from([0, 1, 3, 8, 20, 45, 70]))
        # one customer's id a prefix of another's: a conversation's timeline and alerts are
        # read and replaced up to its own keys' end, never into its neighbour's
        customer = data.draw(st.sampled_from(["wmA", "wmA2", "wmB"]))
        sender, to = (customer, "emp") if data.draw(st.booleans()) else ("emp", customer)
        msgs.append((seq, sender, to, T0 + minutes * MIN))
    order = data.draw(st.permutations(msgs))
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=3)))
    runs = [order[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    root = tmp_path / str(next(_runs))
    root.mkdir()
    keys, pub = _KEYS
    from scrm_fast import audit

    # the pass in transactions of a few entries each (its bound, cut small) gives the same
    bound = audit.TIMEOUT_PASS_ENTRIES
    audit.TIMEOUT_PASS_ENTRIES = data.draw(st.sampled_from([1, 3, 50_000]))
    try:
        with Tenant(root / "d") as tenant:
            tenant.import_directory(DIRECTORY)
            for i, run in enumerate(runs):
                f = root / f"{i}.jsonl"
                f.write_bytes(_core.seal_response(pub, sorted(text(s, a, b, (t - T0) // MIN) for s, a, b, t in run))
                              + b"\n")
                tenant.ingest([f], KeyRing.load_dir(keys))
            got = {(r["customer"], r["seq"], r["level"], r["answered_at"], r["delay_ms"])
                   for r in tenant.store.alerts() if r["kind"] == "timeout_reply"}
    finally:
        audit.TIMEOUT_PASS_ENTRIES = bound
    assert got == _brute_timeouts(msgs, list(DEFAULT_REPLY_THRESHOLDS_MS)), runs
