"""The README's main job: the two-app demo system runs to completion on the embedded defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import free_port

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo"


def test_demo_system_runs_state_and_invocation_and_exits(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(DEMO, demo, ignore=shutil.ignore_patterns(".dapr"))
    run_file = demo / "dapr.yaml"
    # The demo's fixed app port, replaced by a free one for the test.
    run_file.write_text(run_file.read_text().replace("7081", str(free_port())))
    env = {**os.environ, "DAPRLITE_HOME": str(tmp_path / "home")}
    daprlite = [sys.executable, "-m", "daprlite"]
    subprocess.run([*daprlite, "init"], env=env, check=True, capture_output=True, timeout=30)
    proc = subprocess.run(
        [*daprlite, "run", "-f", str(run_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "update again with the now-stale etag -> HTTP 409 ERR_STATE_SAVE" in out
    assert '"placed_by": "shop"' in out  # orders saw shop as the caller
    assert "invoke orders: GET /orders/7        -> HTTP 200" in out
    assert "✅  App 'orders' exited successfully" in out
    assert not list((tmp_path / "home" / "run").glob("*.json"))
