"""``daprlite run -f``: three apps from one run file find each other, then ``stop -f`` ends all.

The three apps are small aiohttp servers written into a temporary folder.
``alpha`` answers ``/chain`` by calling ``beta`` and ``gamma`` through its own
sidecar, so one call made through ``gamma``'s sidecar crosses all three
sidecars: gamma → alpha, alpha → beta, alpha → gamma.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path

from daprlite.components.nameresolution.runfolder import pid_alive
from daprlite.testing import component_yaml
from tests.integration.harness import free_port, wait_for
from tests.integration.http import call

APP = textwrap.dedent(
    """
    import os
    import aiohttp
    from aiohttp import web

    ME = os.environ["APP_ID"]
    SIDECAR = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}"

    async def work(request):
        body = await request.text()
        return web.json_response({"me": ME, "got": body, "greeting": os.environ["GREETING"]})

    async def chain(request):
        got = []
        async with aiohttp.ClientSession() as session:
            for target in ("beta", "gamma"):
                url = f"{SIDECAR}/v1.0/invoke/{target}/method/work"
                async with session.post(url, data=f"from {ME}") as reply:
                    got.append({"status": reply.status, "body": await reply.json()})
        return web.json_response({"me": ME, "got": got})

    app = web.Application()
    app.router.add_post("/work", work)
    app.router.add_post("/chain", chain)
    print("ready", ME, os.environ["TEAM"], flush=True)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), print=None)
    """
)


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daprlite", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "DAPRLITE_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )


def listed(home: Path) -> list[dict[str, object]]:
    out = cli("list", "-o", "json", home=home)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def write_project(root: Path) -> Path:
    (root / "resources").mkdir()
    (root / "resources" / "statestore.yaml").write_text(
        component_yaml("statestore", "state.in-memory", {})
    )
    for name in ("alpha", "beta", "gamma"):
        (root / "services" / name).mkdir(parents=True)
        (root / "services" / name / "app.py").write_text(APP)
    run_file = root / "dapr.yaml"
    run_file.write_text(
        textwrap.dedent(
            f"""
            version: 1
            common:
              resourcesPaths: [./resources]
              env: {{GREETING: hello, TEAM: common}}
            apps:
              - appDirPath: ./services/alpha
                appPort: {free_port()}
                command: [{json.dumps(sys.executable)}, app.py]
                env: {{TEAM: red}}
              - appID: beta
                appDirPath: ./services/beta/
                appPort: {free_port()}
                command: [{json.dumps(sys.executable)}, app.py]
              - appDirPath: services/gamma
                appPort: {free_port()}
                command: [{json.dumps(sys.executable)}, app.py]
                appLogDestination: file
                placementHostAddress: localhost:50005
            """
        )
    )
    return run_file


def test_three_apps_from_one_run_file_call_each_other_and_stop_together(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_file = write_project(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-m", "daprlite", "run", "-f", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DAPRLITE_HOME": str(home)},
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(parent.stdout or ()), daemon=True)
    reader.start()
    leaders: set[int] = set()  # the `daprlite run` children, each leading a process group
    apps: set[int] = set()
    stopped = False
    try:
        ids = {"alpha", "beta", "gamma"}

        def all_listed() -> bool:
            assert parent.poll() is None, "".join(lines)
            return {str(e["appId"]) for e in listed(home)} == ids

        wait_for(all_listed, 40, "three sidecars in `daprlite list`")
        entries = {str(e["appId"]): e for e in listed(home)}
        for e in entries.values():
            leaders.add(int(e["cliPid"]))  # type: ignore[call-overload]
            apps.add(int(e["appPid"]))  # type: ignore[call-overload]
            assert e["runTemplatePath"] == str(run_file.resolve())
        assert entries["gamma"]["appDirPath"] == str((tmp_path / "services" / "gamma").resolve())

        def ready(port: object) -> bool:
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/v1.0/healthz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    return r.status == 204
            return False

        for e in entries.values():
            wait_for(lambda e=e: ready(e["httpPort"]), 30, f"{e['appId']} to be ready")

        via_gamma = f"http://127.0.0.1:{entries['gamma']['httpPort']}"
        reply = call("POST", f"{via_gamma}/v1.0/invoke/alpha/method/chain", data=b"go")
        assert reply.status == 200, reply.body
        assert reply.json() == {
            "me": "alpha",
            "got": [
                {"status": 200, "body": {"me": "beta", "got": "from alpha", "greeting": "hello"}},
                {"status": 200, "body": {"me": "gamma", "got": "from alpha", "greeting": "hello"}},
            ],
        }

        stop = cli("stop", "-f", str(run_file), home=home)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert stop.stdout.count("stopped successfully") == 3, stop.stdout
        assert parent.wait(20) == 0, "".join(lines)
        reader.join(5)
        stopped = True
        for pid in leaders | apps:
            wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to be gone")
        assert list((home / "run").glob("*.json")) == []
        assert listed(home) == []
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(20)
            except subprocess.TimeoutExpired:
                parent.kill()
                parent.wait(5)
        if not stopped:  # the test failed early: leave nothing running
            for pid in leaders:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    output = "".join(lines)
    # app env = common env with the app's entries winning, and every line is prefixed
    assert "== APP - alpha == ready alpha red\n" in output
    assert "== APP - beta == ready beta common\n" in output
    assert "== APP - beta == ✅  Exited Dapr successfully\n" in output
    # gamma logs to a file only
    assert "== APP - gamma ==" not in output
    (log,) = (tmp_path / "services" / "gamma" / ".dapr" / "logs").glob("gamma_*.log")
    assert "ready gamma common\n" in log.read_text()
    assert "Exited Dapr successfully" in log.read_text()
    (alpha_log,) = (tmp_path / "services" / "alpha" / ".dapr" / "logs").glob("alpha_*.log")
    assert "ready alpha red\n" in alpha_log.read_text()
    assert "placementHostAddress: not supported by daprlite; ignored" in output
    assert "App 'gamma' exited successfully" in output


SLEEPER = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("sleeping", flush=True)
    time.sleep(55)
    """
)


def test_an_app_that_fails_to_start_leaves_the_others_running_until_ctrl_c(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    (home / "components").mkdir(parents=True)  # the default resources folder
    for name in ("ok", "broken"):
        (tmp_path / name).mkdir()
    (tmp_path / "ok" / "app.py").write_text(SLEEPER)
    (tmp_path / "dapr.yaml").write_text(
        textwrap.dedent(
            f"""
            version: 1
            apps:
              - appDirPath: ok
                command: [{json.dumps(sys.executable)}, app.py]
              - appDirPath: broken
                command: [./no-such-program]
            """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, "-m", "daprlite", "run", "-f", str(tmp_path / "dapr.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DAPRLITE_HOME": str(home)},
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(parent.stdout or ()), daemon=True)
    reader.start()
    leader = 0
    try:
        wait_for(lambda: "App 'broken' exited with code 1\n" in "".join(lines), 30, "broken")
        wait_for(lambda: "== APP - ok == sleeping\n" in "".join(lines), 30, "ok to start")
        (entry,) = listed(home)
        leader, app_pid = int(entry["cliPid"]), int(entry["appPid"])  # type: ignore[call-overload]
        assert entry["appId"] == "ok" and parent.poll() is None

        parent.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal would
        assert parent.wait(20) == 1, "".join(lines)  # one app failed
        reader.join(5)
        for pid in (leader, app_pid):
            wait_for(lambda pid=pid: not pid_alive(pid), 5, f"pid {pid} to be gone")
        assert list((home / "run").glob("*.json")) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
            if leader:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(leader, signal.SIGKILL)
    output = "".join(lines)
    assert "== APP - broken == ❌  Failed to start the app command" in output
    assert "== APP - ok == ✅  Exited App successfully\n" in output
    assert "App 'ok' exited successfully" in output
