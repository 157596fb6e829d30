#!/usr/bin/env bash
# Sets up everything the two README commands need on a fresh machine: Debian packages,
# a venv with the Python dependencies, and the Rust extension built into it.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(libssl-dev pkg-config gcc chromium fonts-wqy-zenhei fonts-noto-color-emoji libjs-chart.js libopencore-amrnb0)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.deps-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check \
    "maturin>=1.5,<2" "lmdb>=1.4" "msgpack>=1.0" "orjson>=3.9" \
    "pytest>=8" "pytest-benchmark>=4" "hypothesis>=6" "cryptography>=42" "ruff>=0.5" \
    "pywecomarchive==0.1.0" "ahocorasick-rs>=0.22" "pyahocorasick>=2.0" "tantivy>=0.22" \
    "aiohttp>=3.9" "uvloop>=0.19" "argon2-cffi>=23" "pytest-aiohttp>=1.0" "playwright>=1.40" "openpyxl>=3.1" \
    "schemathesis>=4.0" "hyperscan>=0.7" "jieba>=0.42"
  echo "$want" > "$stamp"
fi

# control/ and dialer/ live at the top of the repository: make them importable in the venv
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD" > "$site/scrm_repo.pth"

# One release build serves tests, the demo and benchmarks (cargo is incremental).
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} \
  .venv/bin/maturin develop --release -q 2>&1 | grep -vE '^(📦|🔗|🐍|⚠️|📡|🛠|✏️|💻|📖)' || true
.venv/bin/python -c "import scrm_fast._core" || { echo "setup: the extension did not build" >&2; exit 1; }
