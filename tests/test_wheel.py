"""The distribution is the product: the wheel maturin builds, installed alone in a fresh
venv, serves the console and the API (no checkout on the path, no dev dependencies)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

from tests.conftest import ROOT, free_port


def _wheel(out: Path) -> Path:
    maturin = Path(sys.executable).parent / "maturin"
    subprocess.run([str(maturin), "build", "--release", "-q", "-o", str(out)], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_BUILD_JOBS": os.environ.get("CARGO_BUILD_JOBS", "2")},
                   stdout=subprocess.DEVNULL)
    (wheel,) = out.glob("scrm_fast-*.whl")
    return wheel


def test_the_wheel_alone_serves_the_console_and_the_api(tmp_path):
    wheel = _wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    for must in ("scrm_fast/__init__.py", "scrm_fast/wecom/standin_sdk.c", "scrm_fast/wecom/thread.py",
                 "control/app.py", "control/cli.py", "dialer/service.py", "web/index.html",
                 "web/app.js"):
        assert any(n == must for n in names), must
    assert any(n.startswith("scrm_fast/_core") for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    key = tmp_path / "master.key"
    subprocess.run([str(venv / "bin" / "scrm"), "keys", "new", "--out", str(key)], check=True, env=env,
                   cwd=tmp_path, stdout=subprocess.DEVNULL)
    port = free_port()
    # run from a folder without the checkout: only the installed wheel can answer
    proc = subprocess.Popen([str(venv / "bin" / "scrm"), "serve", "--data", str(tmp_path / "data"), "--port",
                             str(port), "--workers", "2", "--master-key", str(key)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/api/v1/health", timeout=2) as r:
                    health = r.read()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "the installed server did not answer"
                time.sleep(0.3)
        assert b"ok" in health
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            page = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/html") and "charset=utf-8" in r.headers["Content-Type"]
        assert "<html" in page.lower()
        with urllib.request.urlopen(base + "/api/v1/openapi.json", timeout=5) as r:
            assert b"/api/v1/search" in r.read()
        # the installed modules are the wheel's, not the checkout's
        code = "import control, scrm_fast; print(control.__file__, scrm_fast.__file__)"
        where = subprocess.run([str(py), "-c", code],
                               env=env, cwd=tmp_path, capture_output=True, check=True).stdout.decode()
        assert str(ROOT) not in where and str(venv) in where
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
