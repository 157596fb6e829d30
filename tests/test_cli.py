"""CLI contract: --help everywhere; bad arguments exit non-zero with a one-line reason."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import run_scrm


@pytest.mark.parametrize("cmd", [[], ["simulate"], ["ingest"], ["export"], ["quarantine"], ["demo"],
                                 ["bench"], ["bench", "ingest"]])
def test_help(cmd):
    proc = run_scrm(*cmd, "--help")
    assert proc.returncode == 0
    assert b"usage: scrm" in proc.stdout


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, proc.stderr.decode()
    return lines[0]


def test_missing_key_dir(tmp_path, small_corpus):
    msg = one_line_error(run_scrm("ingest", "--keys", str(tmp_path / "nope"), "--data", str(tmp_path / "d"),
                                  str(small_corpus / "batches")))
    assert "nope" in msg


def test_unreadable_key(tmp_path, small_corpus):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "4.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    msg = one_line_error(run_scrm("ingest", "--keys", str(tmp_path / "k"), "--data", str(tmp_path / "d"),
                                  str(small_corpus / "batches")))
    assert "4.pem" in msg and "not a PEM private key" in msg


def test_empty_key_dir(tmp_path, small_corpus):
    (tmp_path / "k").mkdir()
    msg = one_line_error(run_scrm("ingest", "--keys", str(tmp_path / "k"), "--data", str(tmp_path / "d"),
                                  str(small_corpus / "batches")))
    assert "no <publickey_ver>.pem" in msg


def test_missing_input(tmp_path, small_corpus):
    msg = one_line_error(run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"),
                                  str(tmp_path / "missing.jsonl")))
    assert "missing.jsonl" in msg and "no such input" in msg


def test_bad_directory_file(tmp_path, small_corpus):
    (tmp_path / "dir.json").write_text('{"corp": {"name": "x"}}')
    msg = one_line_error(run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"),
                                  "--directory", str(tmp_path / "dir.json"), str(small_corpus / "batches")))
    assert "missing required key 'corpid'" in msg


def test_export_without_archive(tmp_path):
    msg = one_line_error(run_scrm("export", "--data", str(tmp_path / "empty")))
    assert "no archive here" in msg


def test_bad_arguments_exit_2():
    proc = run_scrm("ingest", "--cipher", "rot13")
    assert proc.returncode == 2 and b"invalid choice" in proc.stderr


def test_sdk_only_with_vendor(tmp_path, small_corpus):
    msg = one_line_error(run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(tmp_path / "d"),
                                  "--sdk", "/x.so", str(small_corpus / "batches")))
    assert "--sdk is only for --cipher vendor" in msg


def test_bench_ingest_json_keys(tmp_path):
    """`scrm bench ingest --json` prints the figures under their stable keys, and the run's
    own correctness check passed."""
    import orjson

    proc = run_scrm("bench", "ingest", "--messages", "1500", "--ref-messages", "300", "--rounds", "1",
                    "--rsa-seconds", "0.2", "--json", check=True)
    r = orjson.loads(proc.stdout)
    for key in ("msgs_per_s", "rsa_bound_msgs_per_s", "python_ref_msgs_per_s", "ratio_vs_rsa_bound",
                "ratio_vs_python_ref", "cpu_efficiency_vs_rsa", "peak_rss_mib"):
        assert r[key] > 0, key
    assert r["correct"] is True and r["messages"] == 1500


def test_memory_sampler_sees_what_a_child_holds():
    """The sampler of `scrm bench memory` against a child that holds a known amount of
    private memory (written, so resident) for a while, and one that holds almost none."""
    import os
    import sys

    from scrm_fast.bench_memory import peak_anon_of

    hold = ("import time; b = bytearray(96 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "time.sleep(0.3); print('ok')")
    env = dict(os.environ)
    big, _, _, out = peak_anon_of([sys.executable, "-c", hold], env)
    small, _, _, _ = peak_anon_of([sys.executable, "-c", "import time; time.sleep(0.3)"], env)
    assert out.strip() == b"ok"
    assert big >= 96 << 10  # KiB
    assert small < 48 << 10 and big - small >= 90 << 10
    with pytest.raises(RuntimeError, match="boom"):
        peak_anon_of([sys.executable, "-c", "import sys; sys.exit('boom')"], env)


def test_bench_memory_json_keys(tmp_path):
    import orjson

    proc = run_scrm("bench", "memory", "--sizes", "600,300", "--rounds", "1", "--corpus-dir", str(tmp_path / "c"),
                    "--json", check=True)
    r = orjson.loads(proc.stdout)
    assert [s["messages"] for s in r["sizes"]] == [300, 600]
    for s in r["sizes"]:
        (row,) = s["per_round"]
        assert row["peak_rss_anon_mib"] > 10 and row["decrypted"] == s["messages"]
    assert r["ratio_largest_to_smallest"] > 0
    assert "memory" in run_scrm("bench", "--help").stdout.decode()
    assert "--sizes" in one_line_error(run_scrm("bench", "memory", "--sizes", "x"))


def test_a_reader_of_a_directory_whose_tables_are_not_created_yet_gets_a_clear_error(tmp_path):
    """A reader that opens a data directory while its first writer is creating it (the
    archive file exists, its tables are not committed yet — they come in one transaction)
    is told so, not handed LMDB's NotFoundError."""
    import lmdb

    from scrm_fast.errors import InputError
    from scrm_fast.storage import ArchiveStore

    d = tmp_path / "d"
    ArchiveStore(d).close()  # the key file, as a first writer leaves it
    shutil.rmtree(d / "archive.lmdb")
    lmdb.open(str(d / "archive.lmdb"), max_dbs=20).close()  # the file, no table yet
    with pytest.raises(InputError, match="no archive here yet"):
        ArchiveStore(d, readonly=True)
    assert "no archive here yet" in one_line_error(run_scrm("export", "--data", str(d)))
    with ArchiveStore(d) as store:  # the writer creates them all
        assert store.checkpoint() == 0
    with ArchiveStore(d, readonly=True) as store:
        assert store.checkpoint() == 0
    # a directory of an earlier layout, lacking a later table, is named as such
    env = lmdb.open(str(d / "archive.lmdb"), max_dbs=20)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"wordstats", txn=txn), delete=True)
    env.close()
    with pytest.raises(InputError, match="earlier version .*no wordstats table"):
        ArchiveStore(d, readonly=True)
    with ArchiveStore(d) as store:  # opened for writing once: added
        assert store.checkpoint() == 0
    with ArchiveStore(d, readonly=True) as store:
        assert store.checkpoint() == 0


def test_the_library_never_imports_the_server_and_a_file_ingest_loads_no_http_stack(tmp_path, small_corpus):
    """Layers one way: no module of `scrm_fast` imports `control`; and `scrm ingest` of files
    (through the library's CLI, as the benchmark runs it) loads neither the server nor aiohttp,
    whose client the WeCom package imports only when a command talks to WeCom."""
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, scrm_fast\n"
        "for m in pkgutil.walk_packages(scrm_fast.__path__, 'scrm_fast.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'control'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert proc.stdout.decode().strip() == "[]"

    code = (
        "import sys\n"
        "from scrm_fast.cli import main\n"
        f"rc = main(['ingest', '--keys', {str(small_corpus / 'keys')!r}, '--data', {str(tmp_path / 'd')!r},\n"
        f"           '--directory', {str(small_corpus / 'directory.json')!r}, '--json', '--no-progress',\n"
        f"           {str(small_corpus / 'batches')!r}])\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] in ('control', 'aiohttp'))\n"
        "print(rc, loaded, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert proc.stderr.decode().strip().splitlines()[-1] == "0 []", proc.stderr.decode()
    assert b'"ingested": ' in proc.stdout
