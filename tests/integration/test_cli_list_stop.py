"""``daprlite list`` and ``daprlite stop --app-id`` against a real ``daprlite run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from daprlite.components.nameresolution.runfolder import pid_alive
from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess, wait_for
from tests.integration.http import call

APP = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("APP waiting", flush=True)
    time.sleep(55)
    """
)


def cli(*args: str, home: Path, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daprlite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DAPRLITE_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )


def listed(home: Path) -> list[dict[str, object]]:
    out = cli("list", "-o", "json", home=home)
    assert out.returncode == 0, out.stdout + out.stderr
    entries = json.loads(out.stdout)
    assert isinstance(entries, list)
    return entries


def start(tmp_path: Path, app_id: str) -> SidecarProcess:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    (tmp_path / "app.py").write_text(APP)
    sc = SidecarProcess(
        [res], app_id, tmp_path / "home", command=[sys.executable, str(tmp_path / "app.py")]
    )
    sc.wait_ready()
    wait_for(lambda: "APP waiting" in sc.output, 20, "the app to start")
    return sc


def test_list_says_so_when_nothing_runs(tmp_path: Path) -> None:
    out = cli("list", home=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "No daprlite sidecars are running."
    assert listed(tmp_path) == []


def test_list_shows_a_running_sidecar_and_stop_by_app_id_ends_it_and_its_app(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    sc = start(tmp_path, "lister")
    try:
        (entry,) = listed(home)
        meta = call("GET", f"{sc.http}/v1.0/metadata").json()
        assert isinstance(meta, dict)
        app_pid = int(meta["extended"]["appPID"])
        assert entry["appId"] == "lister"
        assert (entry["httpPort"], entry["grpcPort"]) == (sc.http_port, sc.grpc_port)
        assert entry["cliPid"] == sc.proc.pid and entry["appPid"] == app_pid
        assert str(entry["command"]).endswith("app.py") and entry["runTemplatePath"] == ""
        assert entry["appDirPath"] == os.getcwd()

        table = cli("list", home=home).stdout.splitlines()
        assert table[0].split()[:3] == ["APP", "ID", "HTTP"]
        row = table[1].split()
        assert row[:4] == ["lister", str(sc.http_port), str(sc.grpc_port), str(sc.proc.pid)]
        assert row[4].endswith("s") and row[-1].endswith("app.py")

        # An unknown id stops nothing and says so.
        miss = cli("stop", "--app-id", "nosuch", home=home)
        assert miss.returncode == 1 and "No running daprlite sidecar matches" in miss.stdout
        assert sc.proc.poll() is None

        out = cli("stop", "--app-id", "lister", home=home)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "stopped successfully" in out.stdout and "killed" not in out.stdout
        # stop returns once the process is gone: its exit code is already there.
        assert sc.proc.poll() == 0, sc.output
        assert not pid_alive(app_pid)
        sc.wait_exit(5)
        assert "Exited App successfully" in sc.output and "Exited Dapr successfully" in sc.output
        assert list((home / "run").glob("*.json")) == []
        assert listed(home) == []
    finally:
        sc.stop()


def test_stop_kills_a_sidecar_that_does_not_exit_and_its_app(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sc = start(tmp_path, "stuck")
    try:
        app_pid = int(listed(home)[0]["appPid"])  # type: ignore[call-overload]
        sc.proc.send_signal(signal.SIGSTOP)  # SIGTERM stays pending: it cannot exit
        out = cli("stop", "-a", "stuck", home=home)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "did not exit within 10s; killed it" in out.stdout
        assert sc.wait_exit(5) == -signal.SIGKILL
        wait_for(lambda: not pid_alive(app_pid), 5, "the app to be killed")
        assert listed(home) == []  # the killed sidecar's record is pruned
        assert list((home / "run").glob("*.json")) == []
    finally:
        if sc.proc.poll() is None:
            sc.proc.send_signal(signal.SIGCONT)
        sc.stop()


def test_stop_needs_an_app_id_or_a_run_file(tmp_path: Path) -> None:
    out = cli("stop", home=tmp_path)
    assert out.returncode == 2 and "--app-id" in out.stderr
    missing = cli("stop", "-f", str(tmp_path), home=tmp_path)
    assert missing.returncode == 1 and "no such run file" in missing.stdout
