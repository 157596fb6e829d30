"""The vendor SDK path: (a) the real libWeWorkFinanceSdk_C.so from the pywecomarchive wheel
never sees the inputs that abort it, and its error codes become clear quarantine reasons;
(b) a stand-in .so with the same C ABI, compiled here, decrypts a whole simulated batch
correctly, from several threads at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from scrm_fast import ChatBatch, Cipher, KeyRing, VendorSdkError, decode_batch
from scrm_fast.wecom.standin import build_standin
from tests.conftest import run_scrm

HERE = Path(__file__).parent


def real_sdk() -> Path:
    pw = pytest.importorskip("pywecomarchive")
    p = Path(pw.__file__).parent / "lib" / "linux" / "x86_64" / "libWeWorkFinanceSdk_C.so"
    assert p.exists(), p
    return p


@pytest.fixture(scope="module")
def standin_sdk(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required (scripts/setup.sh installs it)")
    return build_standin(tmp_path_factory.mktemp("sdk"))


def test_standin_decrypts_whole_corpus_via_cli(small_corpus, standin_sdk, tmp_path):
    data = tmp_path / "d"
    proc = run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--cipher", "vendor",
                    "--sdk", str(standin_sdk), "--json", "--no-progress", str(small_corpus / "batches"), check=True)
    s = orjson.loads(proc.stdout)
    assert s["ingested"] == 3000 and s["quarantined"] == 0
    assert run_scrm("export", "--data", str(data), check=True).stdout == (small_corpus / "truth.jsonl").read_bytes()


def test_an_item_that_aborts_the_sdk_costs_one_quarantine_record(small_corpus, standin_sdk, tmp_path):
    """The stand-in aborts its process (SIGABRT) on one chosen message, as the vendor's
    does on some inputs: the ingest goes on, that item alone is quarantined as
    ``sdk_crash`` with its raw ciphertext, and everything else is stored."""
    docs = sorted((small_corpus / "batches").glob("*.jsonl"))
    doc = orjson.loads(docs[1].read_bytes().splitlines()[3])
    poison = doc["chatdata"][117]
    data = tmp_path / "d"
    proc = run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--cipher", "vendor",
                    "--sdk", str(standin_sdk), "--json", "--no-progress", str(small_corpus / "batches"), check=True,
                    env={"STANDIN_ABORT_MSG": poison["encrypt_chat_msg"][:40]})
    s = orjson.loads(proc.stdout)
    assert s["quarantined_by_reason"] == {"sdk_crash": 1} and s["ingested"] == 2999
    q = [orjson.loads(line) for line in run_scrm("quarantine", "--data", str(data), "--with-items",
                                                 check=True).stdout.splitlines()]
    assert [(e["seq"], e["reason"]) for e in q] == [(poison["seq"], "sdk_crash")]
    assert orjson.loads(q[0]["item"]) == poison  # kept raw: it can be re-driven
    truth = (small_corpus / "truth.jsonl").read_bytes().splitlines(keepends=True)
    expected = b"".join(t for t in truth if orjson.loads(t)["msgid"] != poison["msgid"])
    assert len(expected) < len(b"".join(truth))
    assert run_scrm("export", "--data", str(data), check=True).stdout == expected
    # the SDK fixed (here: the fault switched off), the retry recovers it through the worker
    res = orjson.loads(run_scrm("quarantine", "--data", str(data), "--retry", "--keys", str(small_corpus / "keys"),
                                "--cipher", "vendor", "--sdk", str(standin_sdk), check=True).stdout)
    assert res["recovered"] == 1 and res["still_quarantined"] == 0
    assert run_scrm("export", "--data", str(data), check=True).stdout == b"".join(truth)


def test_worker_bisects_to_each_poison_item(small_corpus, standin_sdk, monkeypatch):
    """Two poison items in one batch: each found alone; a worker that dies on a batch
    is restarted fresh every time (nothing else of the batch is lost)."""
    from scrm_fast.wecom.sdk_worker import SdkWorker

    keys = KeyRing.load_dir(small_corpus / "keys")
    doc = sorted((small_corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()[0]
    batch = ChatBatch.parse(doc)
    items = orjson.loads(doc)["chatdata"]
    poison = {items[10]["seq"], items[200]["seq"]}
    prefixes = [items[10]["encrypt_chat_msg"][:32], items[200]["encrypt_chat_msg"][:32]]
    for p in prefixes:  # each shared by no other message of the batch
        assert sum(i["encrypt_chat_msg"].startswith(p) for i in items) == 1
    monkeypatch.setenv("STANDIN_ABORT_MSG", ",".join(prefixes))
    expected = decode_batch(batch, keys, Cipher.open())
    with SdkWorker(str(standin_sdk)) as w:
        d = decode_batch(batch, keys, w.decrypt_batch(batch, keys))
        assert w.crashes >= 4
    assert d.reasons == {"sdk_crash": 2}
    assert {int.from_bytes(k, "big") for k, _ in d.quarantine()} == poison
    assert d.records() == [r for r in expected.records() if int.from_bytes(r[0], "big") not in poison]
    assert len(d.records()) == len(items) - 2


def test_worker_missing_library_is_a_clear_error(tmp_path):
    from scrm_fast.wecom.sdk_worker import SdkWorker, SdkWorkerError

    with pytest.raises(SdkWorkerError, match="nope.so"):
        SdkWorker(str(tmp_path / "nope.so"))
    (tmp_path / "junk.so").write_bytes(b"not an ELF")
    with pytest.raises(SdkWorkerError, match="junk.so"):
        SdkWorker(str(tmp_path / "junk.so"))


def test_standin_from_several_threads(small_corpus, standin_sdk):
    keys = KeyRing.load_dir(small_corpus / "keys")
    vendor = Cipher.vendor(str(standin_sdk))
    assert vendor.kind == "vendor"
    docs = sorted((small_corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()
    batches = [ChatBatch.parse(d) for d in docs]
    expected = [decode_batch(b, keys, Cipher.open()).records() for b in batches]

    def run(i: int) -> list:
        return decode_batch(batches[i % len(batches)], keys, vendor).records()

    # 8 calls from 4 Python threads, each also fanning out on rayon's workers
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    for i, r in enumerate(results):
        assert r == expected[i % len(batches)]
        assert len(r) == 250


def test_standin_errors_become_reasons(small_corpus, standin_sdk):
    keys = KeyRing.load_dir(small_corpus / "keys")
    doc = orjson.loads(sorted((small_corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()[0])
    items = doc["chatdata"][:3]
    items[0]["encrypt_chat_msg"] = "AAAA"  # would abort the real SDK: never passed on
    items[1]["encrypt_chat_msg"] = items[2]["encrypt_chat_msg"]  # right length, wrong key → 10006
    d = decode_batch(ChatBatch.from_items([orjson.dumps(i).decode() for i in items]), keys,
                     Cipher.vendor(str(standin_sdk)))
    assert d.stored == 1
    assert d.reasons == {"bad_base64_msg": 1, "vendor_error": 1}


def test_missing_library_is_a_clear_error(tmp_path):
    with pytest.raises(VendorSdkError, match="nope.so"):
        Cipher.vendor(str(tmp_path / "nope.so"))
    (tmp_path / "junk.so").write_bytes(b"not an ELF")
    with pytest.raises(VendorSdkError, match="junk.so"):
        Cipher.vendor(str(tmp_path / "junk.so"))


def test_real_sdk_rejects_malformed_input_without_dying(small_corpus, tmp_path):
    """In a child process, so that if the vendor library did abort, the test fails instead
    of taking pytest down. The child prints its quarantine reasons and exits normally."""
    sdk = real_sdk()
    doc = orjson.loads(sorted((small_corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()[0])
    items = doc["chatdata"][:4]
    items[0]["encrypt_chat_msg"] = "AAAA"            # aborts the real SDK if passed on (spec §1)
    items[1]["encrypt_chat_msg"] = "QUJD"            # 3 bytes: too short as well
    items[2]["encrypt_chat_msg"] = items[2]["encrypt_chat_msg"][:-4]  # not base64 any more
    # items[3] is well formed: the SDK sees it and answers with its own error code
    (tmp_path / "items.json").write_bytes(orjson.dumps([orjson.dumps(i).decode() for i in items]))
    script = textwrap.dedent(f"""
        import orjson
        from scrm_fast import ChatBatch, Cipher, KeyRing, decode_batch
        items = orjson.loads(open({str(tmp_path / "items.json")!r}, "rb").read())
        keys = KeyRing.load_dir({str(small_corpus / "keys")!r})
        d = decode_batch(ChatBatch.from_items(items), keys, Cipher.vendor({str(sdk)!r}))
        import msgpack
        print(orjson.dumps({{"reasons": d.reasons, "stored": d.stored,
                            "details": [msgpack.unpackb(v)["detail"] for _, v in d.quarantine()]}}).decode())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr.decode()[-500:]}"
    out = orjson.loads(proc.stdout.splitlines()[-1])
    assert out["stored"] == 0
    assert out["reasons"] == {"bad_base64_msg": 3, "vendor_error": 1}
    vendor_detail = [d for d in out["details"] if "DecryptData" in d]
    assert len(vendor_detail) == 1 and "returned 10008 (cannot parse encrypt_key)" in vendor_detail[0]
    assert "not passed to the vendor SDK" in out["details"][0]


def test_real_sdk_via_cli_default_path(small_corpus, tmp_path):
    """`--cipher vendor` without --sdk finds the wheel's library; every item gets the
    vendor's code as its reason and the run still exits 0 with the counts."""
    real_sdk()
    one = tmp_path / "one.jsonl"
    one.write_bytes(sorted((small_corpus / "batches").glob("*.jsonl"))[0].read_bytes().splitlines()[0] + b"\n")
    proc = run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"),
                    "--cipher", "vendor", "--json", "--no-progress", str(one))
    assert proc.returncode == 0, proc.stderr
    s = orjson.loads(proc.stdout)
    assert s["quarantined"] == 250 and s["quarantined_by_reason"] == {"vendor_error": 250}
