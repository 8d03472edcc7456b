"""``daprlite run`` / ``init`` as a newcomer uses them: real processes, real app commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess
from tests.integration.http import call

APP = textwrap.dedent(
    """
    import json, os, sys, urllib.request
    port = os.environ["DAPR_HTTP_PORT"]
    base = f"http://127.0.0.1:{port}/v1.0/state/statestore"
    body = json.dumps([{"key": "greeting", "value": "hi"}]).encode()
    req = urllib.request.Request(base, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    value = urllib.request.urlopen(base + "/greeting").read().decode()
    print("APP", os.environ["APP_ID"], os.environ["DAPR_GRPC_PORT"] != "", value, flush=True)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)


def cli(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daprlite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DAPRLITE_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )


def test_version_prints_version(tmp_path: Path) -> None:
    out = cli("--version", home=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("daprlite ")


def test_run_without_init_tells_user_to_init(tmp_path: Path) -> None:
    out = cli("run", "--app-id", "x", "--", sys.executable, "-c", "pass", home=tmp_path / "h")
    assert out.returncode == 1
    assert "daprlite init" in out.stdout


def test_init_then_run_app_uses_sqlite_default_and_passes_exit_code(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init = cli("init", home=home)
    assert init.returncode == 0, init.stdout
    manifest = (home / "components" / "statestore.yaml").read_text()
    assert "state.sqlite" in manifest
    assert "secretstores.local.env" in (home / "components" / "secretstore.yaml").read_text()
    assert "pubsub.sqlite" in (home / "components" / "pubsub.yaml").read_text()
    (tmp_path / "app.py").write_text(APP)
    out = cli(
        "run", "--app-id", "newbie", "--", sys.executable, str(tmp_path / "app.py"), "3", home=home
    )
    assert out.returncode == 3, out.stdout + out.stderr
    assert "You're up and running!" in out.stdout
    # the app's own line passes through without any prefix
    assert '\nAPP newbie True "hi"\n' in f"\n{out.stdout}"
    assert "exited with error code" in out.stdout and "Exited Dapr successfully" in out.stdout
    assert (home / "data" / "state.db").exists()
    assert "Traceback" not in out.stdout + out.stderr


def test_successful_app_reports_exit(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    (tmp_path / "app.py").write_text(APP)
    out = cli(
        "run",
        "--app-id",
        "ok",
        "-d",
        str(res),
        "--",
        sys.executable,
        str(tmp_path / "app.py"),
        home=tmp_path / "h",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Exited App successfully" in out.stdout


def test_invalid_manifest_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    (res / "bad.yaml").write_text("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [\n")
    out = cli(
        "run",
        "--app-id",
        "x",
        "-d",
        str(res),
        "--",
        sys.executable,
        "-c",
        "pass",
        home=tmp_path / "h",
    )
    assert out.returncode == 1
    assert "bad.yaml" in out.stdout and "invalid YAML" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_two_runs_without_port_flags_coexist(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    a = SidecarProcess([res], "alpha", tmp_path / "h")
    b = SidecarProcess([res], "beta", tmp_path / "h")
    try:
        a.wait_ready()
        b.wait_ready()
        assert a.http_port != b.http_port and a.grpc_port != b.grpc_port
        assert 3500 not in (a.http_port, b.http_port)
        assert call("GET", f"{a.http}/v1.0/metadata").json()["id"] == "alpha"
        assert call("GET", f"{b.http}/v1.0/metadata").json()["id"] == "beta"
    finally:
        a.stop()
        b.stop()


def test_sigterm_is_forwarded_to_the_app(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    app = tmp_path / "wait.py"
    app.write_text(
        "import signal, sys, time\n"
        "def bye(*a):\n"
        "    print('APP got SIGTERM', flush=True)\n"
        "    sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('APP waiting', flush=True)\n"
        "time.sleep(60)\n"
    )
    sc = SidecarProcess([res], "sig", tmp_path / "h", command=[sys.executable, str(app)])
    try:
        sc.wait_ready()
        deadline = time.monotonic() + 20
        while "APP waiting" not in sc.output and time.monotonic() < deadline:
            time.sleep(0.05)
        sc.proc.send_signal(signal.SIGTERM)
        assert sc.wait_exit(20) == 7
        assert "APP got SIGTERM" in sc.output
        assert "Exited Dapr successfully" in sc.output
    finally:
        sc.stop()


def test_shutdown_api_stops_sidecar_and_app(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    sc = SidecarProcess(
        [res], "down", tmp_path / "h", command=[sys.executable, "-c", "import time; time.sleep(60)"]
    )
    try:
        sc.wait_ready()
        assert call("POST", f"{sc.http}/v1.0/shutdown").status == 204
        sc.wait_exit(20)
        assert "Exited Dapr successfully" in sc.output
    finally:
        sc.stop()


def test_healthz_waits_for_app_port(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    app = tmp_path / "serve.py"
    app.write_text(
        "import os, socket, time\n"
        "time.sleep(1.0)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['APP_PORT']))); s.listen()\n"
        "time.sleep(60)\n"
    )
    with socket_port() as port:
        pass
    sc = SidecarProcess(
        [res],
        "web",
        tmp_path / "h",
        extra_args=["--app-port", str(port)],
        command=[sys.executable, str(app)],
    )
    try:
        sc.wait_ready()
        assert call("GET", f"{sc.http}/v1.0/healthz").status == 500
        deadline = time.monotonic() + 20
        while call("GET", f"{sc.http}/v1.0/healthz").status != 204:
            assert time.monotonic() < deadline, sc.output
            time.sleep(0.1)
        assert call("GET", f"{sc.http}/v1.0/healthz?appid=web").status == 204
        assert call("GET", f"{sc.http}/v1.0/healthz?appid=other").status == 500
        meta = call("GET", f"{sc.http}/v1.0/metadata").json()
        assert meta["appConnectionProperties"]["port"] == port
        assert meta["extended"]["appPID"]
    finally:
        sc.stop()


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.s.close()


def test_log_as_json_and_api_logging(tmp_path: Path) -> None:
    import json

    res = write_store(tmp_path / "res", "state.in-memory", "x")
    sc = SidecarProcess(
        [res], "jsonlogs", tmp_path / "h", extra_args=["--log-as-json", "--enable-api-logging"]
    )
    try:
        sc.wait_ready()
        call("GET", f"{sc.http}/v1.0/state/statestore/k")
    finally:
        sc.stop()
    logs = [json.loads(x) for x in sc.lines if x.startswith("{")]
    assert logs and all(entry["app_id"] == "jsonlogs" for entry in logs)
    assert any(
        "HTTP API Called" in e["msg"] and "/v1.0/state/statestore/k" in e["msg"] for e in logs
    )


def test_sdk_shutdown_over_grpc_stops_the_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.clients import DaprClient
    from dapr.conf import settings

    res = write_store(tmp_path / "res", "state.in-memory", "x")
    sc = SidecarProcess([res], "grpcdown", tmp_path / "h")
    try:
        sc.wait_ready()
        monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sc.http_port)
        with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
            client.shutdown()
        assert sc.wait_exit(20) == 0
        assert "Exited Dapr successfully" in sc.output
    finally:
        sc.stop()


def test_app_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    res = write_store(tmp_path / "res", "state.in-memory", "x")
    app = tmp_path / "stubborn.py"
    app.write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('APP stubborn', flush=True)\n"
        "time.sleep(60)\n"
    )
    sc = SidecarProcess(
        [res],
        "stubborn",
        tmp_path / "h",
        extra_args=["--dapr-graceful-shutdown-seconds", "1"],
        command=[sys.executable, str(app)],
    )
    try:
        sc.wait_ready()
        deadline = time.monotonic() + 20
        while "APP stubborn" not in sc.output and time.monotonic() < deadline:
            time.sleep(0.05)
        sc.proc.send_signal(signal.SIGTERM)
        code = sc.wait_exit(20)
        assert code == 128 + signal.SIGKILL
        assert "grace period" in sc.output and "Exited Dapr successfully" in sc.output
    finally:
        sc.stop()
