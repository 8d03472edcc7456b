"""Bindings end to end: real sidecars, real apps, real backends.

Output bindings are driven over plain HTTP and with the official SDK's
``invoke_binding`` (gRPC). Input bindings deliver to an HTTP app and to a gRPC
app built with the SDK's ``dapr.ext.grpc``; a failing app sees the event again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.services import POSTGRES_DSN, REDIS_HOST

APPS = Path(__file__).parent / "apps"


def app_sidecar(
    res: Path, app_id: str, tmp_path: Path, app: str, env: dict[str, str], protocol: str = "http"
) -> SidecarProcess:
    """A sidecar on ``res`` running the test app ``apps/<app>`` on a free port."""
    port = free_port()
    return SidecarProcess(
        [res],
        app_id,
        tmp_path / "home",
        extra_args=["--app-port", str(port), "--app-protocol", protocol],
        command=[sys.executable, str(APPS / app)],
        env={"APP_PORT": str(port), **env},
    )


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    """One sidecar with the output bindings: localstorage, redis, postgresql."""
    root = tmp_path_factory.mktemp("outputs")
    res = root / "res"
    res.mkdir()
    (res / "files.yaml").write_text(
        component_yaml("files", "bindings.localstorage", {"rootPath": str(root / "files")})
    )
    (res / "cache.yaml").write_text(
        component_yaml("cache", "bindings.redis", {"redisHost": REDIS_HOST})
    )
    (res / "db.yaml").write_text(
        component_yaml("db", "bindings.postgresql", {"connectionString": POSTGRES_DSN})
    )
    sc = SidecarProcess([res], "outputs", root / "home")
    try:
        yield sc.wait_ready()
    finally:
        sc.stop()


def binding(sc: SidecarProcess, name: str, body: object):
    return call("POST", f"{sc.http}/v1.0/bindings/{name}", json=body)


def test_localstorage_create_get_list_delete(outputs: SidecarProcess) -> None:
    name = f"dir-{uuid.uuid4().hex[:6]}/note.txt"
    r = binding(
        outputs, "files", {"operation": "create", "data": "hello", "metadata": {"fileName": name}}
    )
    assert r.status == 200 and r.json() == {"fileName": name}
    r = binding(outputs, "files", {"operation": "get", "metadata": {"fileName": name}})
    assert r.status == 200 and r.body == b"hello"
    r = binding(
        outputs, "files", {"operation": "list", "metadata": {"fileName": name.split("/")[0]}}
    )
    assert r.status == 200 and any(p.endswith("note.txt") for p in r.json())
    r = binding(outputs, "files", {"operation": "delete", "metadata": {"fileName": name}})
    assert r.status == 204


def test_localstorage_path_traversal_is_400(outputs: SidecarProcess) -> None:
    for evil in ("../escape.txt", "/etc/passwd", "a/../../escape.txt"):
        r = binding(outputs, "files", {"operation": "get", "metadata": {"fileName": evil}})
        assert r.status == 400, (evil, r.body)
        assert r.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
        assert "fileName" in r.json()["message"]


def test_unknown_binding_and_bad_operations_are_400(outputs: SidecarProcess) -> None:
    r = binding(outputs, "nosuch", {"operation": "create"})
    assert r.status == 400 and "couldn't find output binding" in r.json()["message"]
    r = binding(outputs, "files", {"operation": "explode"})
    assert r.status == 400
    assert "supported operations" in r.json()["message"] and "create" in r.json()["message"]
    r = binding(outputs, "files", {"data": 1})
    assert r.status == 400 and "operation" in r.json()["message"]
    r = call("POST", f"{outputs.http}/v1.0/bindings/files", data=b"{not json")
    assert r.status == 400 and r.json()["errorCode"] == "ERR_MALFORMED_REQUEST"


def test_postgresql_exec_and_query_with_parameters(outputs: SidecarProcess) -> None:
    table = f"b_{uuid.uuid4().hex[:8]}"
    ok = binding(
        outputs,
        "db",
        {"operation": "exec", "metadata": {"sql": f"CREATE TABLE {table} (id int, name text)"}},
    )
    assert ok.status in (200, 204), ok.body
    try:
        evil = "x'); DROP TABLE " + table + "; --"
        r = binding(
            outputs,
            "db",
            {
                "operation": "exec",
                "metadata": {
                    "sql": f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)",
                    "params": json.dumps([1, "ada", 2, evil]),
                },
            },
        )
        assert r.headers["metadata.rows-affected"] == "2"
        r = binding(
            outputs,
            "db",
            {
                "operation": "query",
                "metadata": {
                    "sql": f"SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id",
                    "params": "[1]",
                },
            },
        )
        assert r.status == 200 and r.json() == [[1, "ada"], [2, evil]]
        r = binding(outputs, "db", {"operation": "query", "metadata": {"sql": "SELEC nonsense"}})
        assert r.status == 400, r.body
        r = binding(
            outputs, "db", {"operation": "query", "metadata": {"sql": "SELECT 1", "params": "{"}}
        )
        assert r.status == 400 and "params" in r.json()["message"]
    finally:
        binding(outputs, "db", {"operation": "exec", "metadata": {"sql": f"DROP TABLE {table}"}})


def test_sdk_invoke_binding_over_grpc(
    outputs: SidecarProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", outputs.http_port)
    key = f"b-{uuid.uuid4().hex[:8]}"
    with DaprClient(address=f"127.0.0.1:{outputs.grpc_port}") as client:
        client.invoke_binding("cache", "create", "cached-value", {"key": key, "ttlInSeconds": "60"})
        got = client.invoke_binding("cache", "get", "", {"key": key})
        assert got.data == b"cached-value"
        client.invoke_binding("cache", "delete", "", {"key": key})
        assert client.invoke_binding("cache", "get", "", {"key": key}).data == b""
        # The SDK surfaces binding errors as plain grpc.RpcError.
        with pytest.raises(grpc.RpcError) as err:
            client.invoke_binding("cache", "get", "", {})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'key'" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.invoke_binding("nosuch", "create", "x")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_reports_binding_directions(outputs: SidecarProcess) -> None:
    comps = {
        c["name"]: c for c in call("GET", f"{outputs.http}/v1.0/metadata").json()["components"]
    }
    assert comps["files"]["capabilities"] == ["OUTPUT_BINDING"]


def _cron_resources(root: Path, name: str, **extra: str) -> Path:
    res = root / "res"
    res.mkdir(parents=True)
    meta = {"schedule": "@every 1s", **extra}
    (res / "cron.yaml").write_text(component_yaml(name, "bindings.cron", meta))
    return res


def test_cron_triggers_http_app_and_failing_app_sees_the_event_again(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    sc = app_sidecar(
        _cron_resources(tmp_path, "tick"),
        "cronhttp",
        tmp_path,
        "binding_http_app.py",
        {
            "RECORD_FILE": str(record),
            "ROUTES": "tick",
            "FAIL_FIRST": "2",
        },
    )
    try:
        sc.wait_ready()
        wait_for(lambda: len(records(record)) >= 2, 15, "two cron events at the HTTP app")
        first = records(record)[0]
        assert first["attempt"] == 3  # two refused deliveries, then accepted
        assert first["headers"]["timezone"] and first["headers"]["readtimeutc"]
    finally:
        sc.stop()


def test_cron_triggers_grpc_app_built_with_the_sdk(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    sc = app_sidecar(
        _cron_resources(tmp_path, "tick"),
        "crongrpc",
        tmp_path,
        "binding_grpc_app.py",
        {
            "RECORD_FILE": str(record),
            "BINDINGS": "tick",
            "FAIL_FIRST": "1",
            "PYTHONWARNINGS": "ignore",
        },
        protocol="grpc",
    )
    try:
        sc.wait_ready()
        wait_for(lambda: len(records(record)) >= 2, 15, "two cron events at the gRPC app")
        first = records(record)[0]
        assert first["attempt"] == 2 and first["metadata"]["readTimeUTC"]
    finally:
        sc.stop()


def test_http_app_without_the_route_gets_no_events(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    sc = app_sidecar(
        _cron_resources(tmp_path, "tick"),
        "noroute",
        tmp_path,
        "binding_http_app.py",
        {"RECORD_FILE": str(record), "ROUTES": "other"},
    )
    try:
        sc.wait_ready()
        wait_for(lambda: "input binding tick" in sc.output, 15, "the probe result in the log")
        assert "not started" in sc.output
        assert records(record) == []
    finally:
        sc.stop()


def test_http_output_binding_calls_a_real_server(tmp_path: Path) -> None:
    record = tmp_path / "calls.jsonl"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(APPS / "binding_http_app.py")],
        env={**os.environ, "APP_PORT": str(port), "RECORD_FILE": str(record), "ROUTES": "orders"},
    )
    res = tmp_path / "res"
    res.mkdir()
    (res / "api.yaml").write_text(
        component_yaml("api", "bindings.http", {"url": f"http://127.0.0.1:{port}"})
    )
    sc = SidecarProcess([res], "httpout", tmp_path / "home")
    try:
        sc.wait_ready()
        body = {
            "operation": "post",
            "data": {"id": 7},
            "metadata": {"path": "/orders", "X-Team": "a"},
        }
        wait_for(lambda: binding(sc, "api", body).status == 200, 15, "the HTTP server to answer")
        got = records(record)[-1]
        assert json.loads(got["body"]) == {"id": 7} and got["headers"]["x-team"] == "a"
        r = binding(sc, "api", {**body, "metadata": {"path": "/missing"}})
        assert r.status == 500 and "404" in r.json()["message"]
    finally:
        sc.stop()
        server.terminate()
        server.wait(10)


def test_direction_input_skips_the_probe_and_route_metadata_is_honoured(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    res = _cron_resources(tmp_path, "tick", direction="input", route="/jobs")
    sc = app_sidecar(
        res,
        "direction",
        tmp_path,
        "binding_http_app.py",
        {
            "RECORD_FILE": str(record),
            "ROUTES": "jobs",
            "NO_OPTIONS": "1",
        },
    )
    try:
        sc.wait_ready()
        wait_for(lambda: len(records(record)) >= 1, 15, "a cron event on /jobs")
        assert records(record)[0]["route"] == "jobs"
    finally:
        sc.stop()


def test_direction_output_never_reads(tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    res = _cron_resources(tmp_path, "tick", direction="output")
    sc = app_sidecar(
        res,
        "outonly",
        tmp_path,
        "binding_http_app.py",
        {"RECORD_FILE": str(record), "ROUTES": "tick"},
    )
    try:
        sc.wait_ready()
        wait_for(lambda: call("GET", f"{sc.http}/v1.0/healthz").status == 204, 15, "ready")
        time.sleep(2.5)
        assert records(record) == []
    finally:
        sc.stop()


def test_grpc_app_response_forwards_data_to_output_bindings(tmp_path: Path) -> None:
    res = _cron_resources(tmp_path, "tick")
    files = tmp_path / "files"
    (res / "files.yaml").write_text(
        component_yaml("files", "bindings.localstorage", {"rootPath": str(files)})
    )
    sc = app_sidecar(
        res,
        "forward",
        tmp_path,
        "binding_forward_app.py",
        {"BINDING": "tick", "TO": "files", "PYTHONWARNINGS": "ignore"},
        protocol="grpc",
    )
    try:
        sc.wait_ready()
        wait_for(lambda: files.is_dir() and any(files.iterdir()), 15, "a forwarded file")
        written = next(files.iterdir()).read_bytes()
        assert written == b'{"forwarded":true}'
    finally:
        sc.stop()
