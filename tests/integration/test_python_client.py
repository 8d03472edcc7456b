"""The thin Python client in ``clients/python``: its example runs as an app next to a sidecar."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess

CLIENTS = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_state_client_example_runs_against_a_sidecar(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.sqlite", "client")
    env = {"PYTHONPATH": os.pathsep.join([str(CLIENTS), os.environ.get("PYTHONPATH", "")])}
    sc = SidecarProcess(
        [res],
        "clientdemo",
        tmp_path / "home",
        command=[sys.executable, str(CLIENTS / "example.py"), "statestore"],
        env=env,
    )
    try:
        assert sc.wait_exit(60) == 0, sc.output
    finally:
        sc.stop()
    out = sc.output
    assert "read b'{\"total\": 3}' with etag" in out
    assert "refused as expected" in out
    assert "after delete: b'', etag None" in out
