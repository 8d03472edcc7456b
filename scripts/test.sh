#!/usr/bin/env bash
# The one test command (README and .ci/run call it): set up everything, then run
# the whole suite against real Redis and PostgreSQL.
#   scripts/test.sh                 # everything
#   scripts/test.sh tests/unit -x   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh dev
bash scripts/services.sh redis postgresql mosquitto rabbitmq nats

echo "== generated code is fresh"
.venv/bin/python scripts/gen_proto.py --check
echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet .
echo "== types"
.venv/bin/mypy daprlite
echo "== tests"
exec .venv/bin/python -m pytest "$@"
