"""``scrm migrate``: encrypts a data directory of the earlier, plaintext format in place.

Steps, each safe to interrupt (a rerun goes on where it stopped, nothing is read
half-and-half in between: the key file says ``migrating`` until the end, and every other
command refuses the directory meanwhile):

1. a key file is made, marked ``migrating``;
2. every value of the content tables is sealed, a few thousand per transaction
   (:meth:`ArchiveStore.reseal`; already sealed values are skipped);
3. ``directory.json`` moves into the store, sealed, and the file is removed;
4. the environment is rewritten without its free pages (:meth:`ArchiveStore.compact`), so
   no replaced plaintext stays readable in the file;
5. the plaintext search index is removed and rebuilt with keyed tokens;
6. the key file's mark is cleared (last: a kill before it runs the steps again).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from scrm_fast import sealing
from scrm_fast.errors import InputError


def migrate(data_dir: str | os.PathLike[str]) -> dict:
    from scrm_fast.directory import load_directory
    from scrm_fast.search import rebuild
    from scrm_fast.storage import ArchiveStore
    from scrm_fast.trail import AccessTrail

    data = Path(data_dir)
    master = sealing.read_master_key()
    kf = sealing.read_key_file(data)
    if kf is None:
        if not (data / "archive.lmdb").exists() and not (data / "archive.lmdb.old").exists():
            raise InputError(f"{data}: no archive here")
        kf = sealing.new_key_file(master)
        kf.migrating = True
        sealing.write_key_file(data, kf)
    elif not kf.migrating:
        sealing.open_keys(data, master, kf)
        return {"migrated": False, "detail": f"{data} is encrypted already"}
    t0 = time.perf_counter()
    with ArchiveStore(data, master_key=master, allow_migrating=True) as store:
        store.exclusive()
        sealed = store.reseal(plaintext=True)
        dfile = data / "directory.json"
        if dfile.exists():
            store.save_directory(load_directory(dfile))
        if (data / "trail.lmdb").exists():
            # the earlier entries are sealed, their unkeyed chain kept as it was (verify accepts
            # it before the first keyed entry); a fresh anchor starts from this head
            trail = AccessTrail(store, anchor=None)
            sealed += trail.reseal(plaintext=True)
            trail.compact()
            trail.close()
        store.compact()
    (data / "directory.json").unlink(missing_ok=True)
    for p in [data / "index", *data.glob("index.unreadable-*")]:
        shutil.rmtree(p, ignore_errors=True)
    with ArchiveStore(data, master_key=master, readonly=True, allow_migrating=True) as store:
        res = rebuild(store)
    # only now: a kill before this line runs the whole migration again (each step is idempotent)
    kf = sealing.read_key_file(data)
    assert kf is not None
    kf.migrating = False
    sealing.write_key_file(data, kf)
    return {"migrated": True, "values_sealed": sealed, "indexed": res["indexed"],
            "elapsed_s": round(time.perf_counter() - t0, 3)}
