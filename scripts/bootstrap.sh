#!/usr/bin/env bash
# Create .venv (if missing) and install daprlite into it with the given extras.
# Usage: scripts/bootstrap.sh [extras]      e.g. scripts/bootstrap.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-fast}"

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "bootstrap: daprlite needs Python 3.11 or newer on PATH" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.daprlite-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing daprlite[$extras] into .venv (log: .venv/install.log)"
  if ! { .venv/bin/python -m pip install --upgrade pip &&
         .venv/bin/python -m pip install -e ".[$extras]"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "bootstrap: pip install failed; the full log is .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
