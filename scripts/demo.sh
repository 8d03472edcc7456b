#!/usr/bin/env bash
# The main job on a fresh machine: install daprlite, write the embedded default
# components (`daprlite init`), then run the two-app demo system (each app with
# its own sidecar: state and service invocation). Nothing else to install.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh fast
.venv/bin/daprlite init
exec .venv/bin/daprlite run -f scripts/demo/dapr.yaml
