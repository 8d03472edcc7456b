#!/usr/bin/env bash
# The main job on a fresh machine: install daprlite, write the embedded default
# components (`daprlite init`), then run a sidecar next to a small demo app that
# uses the state API. Nothing else to install: the state store is a SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh fast
.venv/bin/daprlite init
exec .venv/bin/daprlite run --app-id demo -- .venv/bin/python scripts/demo/app.py
