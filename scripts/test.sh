#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine with Python 3.11 (Debian's chromium for the
# browser tests, the Python packages in a venv), then runs ruff and the whole test suite on two pytest-xdist
# workers, one test file per worker at a time (then one torch thread per process: tests/conftest.py). Extra
# arguments go to pytest, e.g. `bash scripts/test.sh -m "not browser"`, or `-n 0` for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get install -y chromium || { $sudo apt-get update && $sudo apt-get install -y chromium; }
fi
python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
.venv/bin/ruff check .
REQUIRE_BROWSER=1 .venv/bin/python -m pytest -n 2 --dist loadfile --durations=25 "$@"
