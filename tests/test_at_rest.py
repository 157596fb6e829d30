"""Encryption at rest (rule V-5): no stored text is readable from any file of a data
directory, the files are private, keys rotate and rewrap, a wrong key changes nothing.

Oracles: the simulator's plaintext stream (``truth.jsonl``) for what was stored, a scan of
raw file bytes written here (not the store's own readers), and ``truth.jsonl`` (byte-equal to an export) for the
export after rotation."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import ahocorasick_rs
import orjson
import pytest

from tests.conftest import run_scrm

WORDS = "保本,稳赚 | 承诺收益 | 3 | employee\n微信,加v | 私下联系 | 2 | both\n"


def _texts(corpus: Path) -> list[str]:
    out = []
    for line in (corpus / "truth.jsonl").read_bytes().splitlines():
        m = orjson.loads(line)
        t = m.get("text")
        if isinstance(t, dict) and t.get("content"):
            out.append(t["content"])
    return out


def _fragments(texts: list[str], width: int = 4) -> set[bytes]:
    """Every window of ``width`` characters of the texts holding at least two CJK
    characters (12+ bytes of UTF-8: never by chance in ciphertext, never an id)."""
    out = set()
    for t in texts:
        for i in range(len(t) - width + 1):
            w = t[i:i + width]
            if sum("\u4e00" <= c <= "\u9fff" for c in w) >= 2:
                out.add(w.encode())
    return out


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _leaks(root: Path, fragments: set[bytes]) -> list[tuple[str, bytes]]:
    ac = ahocorasick_rs.BytesAhoCorasick(sorted(fragments))
    found = []
    for p in _files(root):
        data = p.read_bytes()
        for _, start, end in ac.find_matches_as_indexes(data)[:3]:
            found.append((str(p.relative_to(root)), data[start:end]))
    return found


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(root)}


@pytest.fixture(scope="module")
def sealed(small_corpus, tmp_path_factory):
    """A data directory with words, consent, audits, alerts and the index, as a user makes it."""
    root = tmp_path_factory.mktemp("at-rest")
    data = root / "data"
    words = root / "words.txt"
    words.write_text(WORDS, encoding="utf-8")
    run_scrm("directory", "import", "--data", str(data), str(small_corpus / "directory.json"), check=True)
    run_scrm("words", "import", "--data", str(data), str(words), check=True)
    run_scrm("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress",
             str(small_corpus / "batches"), check=True)
    run_scrm("search", "--data", str(data), "保本", check=True)  # a read leaves the store as it was
    return data


def test_no_stored_text_is_readable_from_any_file(sealed, small_corpus):
    texts = _texts(small_corpus)
    fragments = _fragments(texts)
    assert len(fragments) > 1000
    # the scan finds what it looks for: the simulator's own plaintext holds them all
    assert _leaks(small_corpus, set(list(fragments)[:50]))
    # something was stored, audited and indexed
    audits = orjson.loads(run_scrm("audit", "list", "--data", str(sealed), "--json", check=True).stdout)
    assert audits and any(a["text"] for a in audits)
    assert _leaks(sealed, fragments) == []
    # nor a listed word, nor a directory name
    directory = orjson.loads((small_corpus / "directory.json").read_bytes())
    names = {c["name"].encode() for c in directory["customers"] if len(c.get("name", "")) >= 2}
    names |= {"稳赚".encode(), "承诺收益".encode()}
    assert _leaks(sealed, names) == []


def test_files_and_folders_are_private(sealed):
    for p in [sealed, *sealed.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def test_search_still_equals_a_brute_force_scan(sealed, small_corpus):
    stored = {orjson.loads(line)["seq"]: orjson.loads(line) for line in
              run_scrm("export", "--data", str(sealed), check=True).stdout.splitlines()}
    by_seq = {}
    for line in (small_corpus / "truth.jsonl").read_bytes().splitlines():
        m = orjson.loads(line)
        if m["seq"] in stored and isinstance(m.get("text"), dict):
            by_seq[m["seq"]] = m["text"]["content"].lower()
    for q in ("保本", "的", "客户", "微信", "好的"):
        want = {s for s, t in by_seq.items() if q in t}
        page = orjson.loads(run_scrm("search", "--data", str(sealed), "--json", "--limit", "1000", q,
                                     check=True).stdout)
        got = {it["seq"] for it in page["items"] if stored[it["seq"]].get("msgtype") == "text"}
        assert got == want, q


def test_a_missing_or_wrong_master_key_is_one_line_and_changes_nothing(sealed, small_corpus, tmp_path):
    before = _snapshot(sealed)
    other = tmp_path / "other.key"
    run_scrm("keys", "new", "--out", str(other), check=True)
    ingest = ["ingest", "--keys", str(small_corpus / "keys"), str(small_corpus / "batches")]
    for args in (["search", "保本"], ["export"], ["audit", "list"], ingest):
        cmd = args[:2] if args[0] == "audit" else args[:1]
        p = run_scrm(*cmd, "--data", str(sealed), "--master-key", str(other), *args[len(cmd):])
        assert p.returncode != 0
        err = p.stderr.decode().strip()
        assert len(err.splitlines()) == 1 and "master key" in err, err
    env_less = {k: v for k, v in os.environ.items() if k != "SCRM_MASTER_KEY_FILE"}
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "control.cli", "search", "--data", str(sealed), "x"],
                       capture_output=True, env=env_less, check=False)
    assert p.returncode != 0 and "SCRM_MASTER_KEY_FILE" in p.stderr.decode()
    # a new data directory is not even created without the right key
    p = subprocess.run([sys.executable, "-m", "control.cli", "directory", "import", "--data",
                        str(tmp_path / "new"), str(tmp_path / "none.json")], capture_output=True, env=env_less,
                       check=False)
    assert p.returncode != 0 and not (tmp_path / "new").exists()
    assert _snapshot(sealed) == before


def test_master_key_files_are_never_overwritten_nor_kept_inside_data(sealed, tmp_path):
    key = tmp_path / "m.key"
    run_scrm("keys", "new", "--out", str(key), check=True)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    first = key.read_bytes()
    assert run_scrm("keys", "new", "--out", str(key)).returncode == 1 and key.read_bytes() == first
    p = run_scrm("keys", "new", "--out", str(sealed / "m.key"))
    assert p.returncode == 1 and not (sealed / "m.key").exists()


def _status(data: Path, *extra: str) -> dict:
    return orjson.loads(run_scrm("keys", "status", "--data", str(data), *extra, check=True).stdout)


def test_rotation_reencryption_and_rewrap(small_corpus, tmp_path):
    data = tmp_path / "data"
    files = sorted((small_corpus / "batches").iterdir())
    half = len(files) // 2
    ingest = ("ingest", "--keys", str(small_corpus / "keys"), "--data", str(data), "--no-progress")
    run_scrm(*ingest, *map(str, files[:half]), check=True)
    assert _status(data)["current"] == 1
    run_scrm("keys", "rotate", "--data", str(data), check=True)
    run_scrm(*ingest, *map(str, files), check=True)
    st = _status(data)
    # new writes under key 2, old ones still under key 1, and everything reads
    assert st["current"] == 2 and st["keys"] == [1, 2]
    assert st["values_by_key"]["1"] > 0 and st["values_by_key"]["2"] > 0
    expected = (small_corpus / "truth.jsonl").read_bytes()  # everything kept: no directory
    assert run_scrm("export", "--data", str(data), check=True).stdout == expected
    # refused while another process has the store open (it would lose that process's writes)
    from scrm_fast.storage import ArchiveStore

    with ArchiveStore(data, readonly=True):
        p = run_scrm("keys", "rotate", "--data", str(data), "--reencrypt")
        assert p.returncode == 1 and b"open in another process" in p.stderr
        assert _status(data)["current"] == 2  # nothing changed
    run_scrm("keys", "rotate", "--data", str(data), "--reencrypt", check=True)
    st = _status(data)
    assert st["current"] == 3 and st["keys"] == [3] and set(st["values_by_key"]) == {"3"}
    # the retired keys are gone from the key file, yet everything still opens
    assert set(orjson.loads((data / "keys.json").read_bytes())["keys"]) == {"3"}
    assert run_scrm("export", "--data", str(data), check=True).stdout == expected
    # rewrap: the new master key opens everything, the old one nothing
    new = tmp_path / "new.key"
    run_scrm("keys", "new", "--out", str(new), check=True)
    run_scrm("keys", "rewrap", "--data", str(data), "--new-master-key", str(new), check=True)
    assert run_scrm("export", "--data", str(data), "--master-key", str(new), check=True).stdout == expected
    p = run_scrm("export", "--data", str(data))
    assert p.returncode == 1 and b"master key" in p.stderr
    page = orjson.loads(run_scrm("search", "--data", str(data), "--master-key", str(new), "--json", "的",
                                 check=True).stdout)
    assert page["total"] > 0


def test_batch_digests_and_digested_puts_equal_the_per_value_path(tmp_path):
    """``app_digests`` / ``put_digested`` (one Rust call a batch, used by the ingest's A-6 marks
    and media queue) write exactly the keys and values of the per-value Python path:
    ``hashlib``'s keyed BLAKE2b and ``put_many`` of msgpack strings."""
    from scrm_fast.storage import ArchiveStore

    values = ["p:wm0001|zhang", "p:wo_x|李雷", "", "x" * 300, "😀" * 40]
    with ArchiveStore(tmp_path / "d") as store:
        want = [hashlib.blake2b(b"conv\0" + v.encode(), key=store.token_key, digest_size=16,
                                person=b"scrm-app-keys").digest() for v in values]
        assert store.app_digests("conv", values) == want == [store.app_digest("conv", v) for v in values]
        assert store.app_digests("media", values[:1]) != want[:1]
        with store.app_write() as app:
            app.put_digested("fast", "conv", values)
            app.put_many("slow", [(d, v) for d, v in zip(want, values, strict=True)])
        with store.app_read() as app:
            fast, slow = list(app.scan("fast")), list(app.scan("slow"))
    assert fast == slow and sorted(v for _, v in fast) == sorted(values) and len(fast) == len(values)


def test_a_forked_process_never_reuses_its_parents_nonces():
    """GCM nonces come from a per-thread counter (a random start): a forked child, which
    inherits the parent's memory, must draw its own (``scrm serve`` forks its workers).
    Oracle: the nonce bytes of the sealed values themselves (offset 5, 12 bytes)."""
    from scrm_fast._core import Vault

    v = Vault({1: bytes(range(32))}, 1)
    first = v.seal(b"t", b"k", b"x")  # the parent's sequence exists before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: 1,000 nonces to the pipe, then exit without cleanup
        try:
            os.write(w, b"".join(v.seal(b"t", b"k", b"x")[5:17] for _ in range(1000)))
        finally:
            os._exit(0)
    os.close(w)
    child = b""
    while chunk := os.read(r, 1 << 16):
        child += chunk
    os.close(r)
    os.waitpid(pid, 0)
    parent = [v.seal(b"t", b"k", b"x")[5:17] for _ in range(1000)]
    kids = {child[i:i + 12] for i in range(0, len(child), 12)}
    assert len(kids) == 1000 and len(set(parent)) == 1000
    assert not kids & (set(parent) | {first[5:17]})
    # and every value still opens
    assert v.open(b"t", b"k", first) == b"x"
