"""A sidecar killed without warning loses nothing it acknowledged.

``state.sqlite`` is the laptop default: every 204 the API returned must
survive a ``kill -9`` of the sidecar and be readable by the next sidecar on
the same file, etags included, and a second app on the same file keeps working.
"""

from __future__ import annotations

import signal
from pathlib import Path

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess
from tests.integration.http import call


def test_acknowledged_writes_survive_kill_9_and_restart(tmp_path: Path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    db = tmp_path / "state.db"
    (res / "statestore.yaml").write_text(
        component_yaml("statestore", "state.sqlite", {"connectionString": str(db)})
    )
    first = SidecarProcess([res], "orders", tmp_path / "home")
    etags: dict[str, str] = {}
    try:
        first.wait_ready()
        base = f"{first.http}/v1.0/state/statestore"
        for i in range(50):
            assert call("POST", base, json=[{"key": f"o{i}", "value": {"n": i}}]).status == 204
            etags[f"o{i}"] = call("GET", f"{base}/o{i}").headers["ETag"]
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.stop()

    second = SidecarProcess([res], "orders", tmp_path / "home")
    other = SidecarProcess([res], "billing", tmp_path / "home")
    try:
        second.wait_ready()
        other.wait_ready()
        base = f"{second.http}/v1.0/state/statestore"
        for i in range(50):
            r = call("GET", f"{base}/o{i}")
            assert r.status == 200 and r.json() == {"n": i}
            assert r.headers["ETag"] == etags[f"o{i}"]
        # the old etags still guard writes after the restart
        stale = call("POST", base, json=[{"key": "o1", "value": 0, "etag": etags["o0"]}])
        assert stale.status == 409
        fresh = call("POST", base, json=[{"key": "o1", "value": 0, "etag": etags["o1"]}])
        assert fresh.status == 204
        # another app on the same file works alongside, in its own key space
        obase = f"{other.http}/v1.0/state/statestore"
        assert call("POST", obase, json=[{"key": "o1", "value": "billing"}]).status == 204
        assert call("GET", f"{base}/o1").json() == 0
    finally:
        second.stop()
        other.stop()
