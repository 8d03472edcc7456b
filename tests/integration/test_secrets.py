"""Secrets end to end: the API over HTTP and the SDK, scopes, and secretKeyRef at start-up.

The secretKeyRef test runs a private, password-protected redis-server on a
free port (started and stopped by the test), and a state store whose
``redisPassword`` comes from a local file secret store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  secrets:
    scopes:
      - storeName: vault
        defaultAccess: allow
        deniedSecrets: ["admin-password"]
"""


def secret_store(folder: Path, name: str, secrets: dict[str, object]) -> None:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(secrets))
    (folder / f"{name}.yaml").write_text(
        component_yaml(name, "secretstores.local.file", {"secretsFile": str(path)})
    )


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("secrets")
    res = root / "res"
    res.mkdir()
    secret_store(
        res, "vault", {"db-password": "s3cret", "admin-password": "root", "nested": {"a": "1"}}
    )
    (root / "config.yaml").write_text(CONFIG)
    proc = SidecarProcess(
        [res], "secrets", root / "home", extra_args=["--config", str(root / "config.yaml")]
    )
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def test_get_secret_and_bulk(sc: SidecarProcess) -> None:
    r = call("GET", f"{sc.http}/v1.0/secrets/vault/db-password")
    assert r.status == 200 and r.json() == {"db-password": "s3cret"}
    assert call("GET", f"{sc.http}/v1.0/secrets/vault/nested:a").json() == {"nested:a": "1"}
    bulk = call("GET", f"{sc.http}/v1.0/secrets/vault/bulk").json()
    assert bulk["db-password"] == {"db-password": "s3cret"}
    assert "admin-password" not in bulk  # denied keys are left out of bulk reads


def test_denied_secret_is_403(sc: SidecarProcess) -> None:
    r = call("GET", f"{sc.http}/v1.0/secrets/vault/admin-password")
    assert r.status == 403 and r.json()["errorCode"] == "ERR_PERMISSION_DENIED"


def test_unknown_store_and_missing_secret(sc: SidecarProcess) -> None:
    r = call("GET", f"{sc.http}/v1.0/secrets/nosuch/x")
    assert r.status == 401 and r.json()["errorCode"] == "ERR_SECRET_STORE_NOT_FOUND"
    r = call("GET", f"{sc.http}/v1.0/secrets/vault/missing")
    assert r.status == 500 and r.json()["errorCode"] == "ERR_SECRET_GET"


def test_sdk_get_secret_and_bulk_over_grpc(
    sc: SidecarProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sc.http_port)
    with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
        assert client.get_secret("vault", "db-password").secret == {"db-password": "s3cret"}
        bulk = client.get_bulk_secret("vault").secrets
        assert bulk["db-password"] == {"db-password": "s3cret"} and "admin-password" not in bulk
        # The SDK surfaces secret errors as plain grpc.RpcError.
        with pytest.raises(grpc.RpcError) as err:
            client.get_secret("vault", "admin-password")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            client.get_secret("nosuch", "x")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[int]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is installed by scripts/services.sh"
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "pa55-from-vault",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 10, "the private redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _redis_with_secret_password(res: Path, port: int, secret_key: str) -> None:
    (res / "statestore.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata:
              name: statestore
            spec:
              type: state.redis
              version: v1
              metadata:
                - name: redisHost
                  value: 127.0.0.1:{port}
                - name: redisPassword
                  secretKeyRef:
                    name: redis-password
                    key: {secret_key}
            auth:
              secretStore: vault
            """
        )
    )


def test_redis_password_from_secret_key_ref_works(tmp_path: Path, private_redis: int) -> None:
    res = tmp_path / "res"
    res.mkdir()
    secret_store(res, "vault", {"redis-password": "pa55-from-vault"})
    _redis_with_secret_password(res, private_redis, "redis-password")
    sc = SidecarProcess([res], "withsecret", tmp_path / "home")
    try:
        sc.wait_ready()
        base = f"{sc.http}/v1.0/state/statestore"
        assert call("POST", base, json=[{"key": "k", "value": "v"}]).status == 204
        assert call("GET", f"{base}/k").json() == "v"
        assert "pa55-from-vault" not in sc.output
        meta = json.dumps(call("GET", f"{sc.http}/v1.0/metadata").json())
        assert "pa55-from-vault" not in meta
    finally:
        sc.stop()


def test_missing_secret_stops_startup_naming_component_field_and_key(
    tmp_path: Path, private_redis: int
) -> None:
    res = tmp_path / "res"
    res.mkdir()
    secret_store(res, "vault", {"redis-password": "pa55-from-vault"})
    _redis_with_secret_password(res, private_redis, "no-such-key")
    sc = SidecarProcess([res], "nosecret", tmp_path / "home")
    try:
        assert sc.wait_exit(30) == 1
        line = next(x for x in sc.lines if "Failed to start" in x)
        assert "statestore" in line and "secretKeyRef" in line and "no-such-key" in line
        assert "Traceback" not in sc.output
    finally:
        sc.stop()


def test_env_secret_store_through_the_sidecar(tmp_path: Path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    (res / "env.yaml").write_text(
        component_yaml("envsecrets", "secretstores.local.env", {"prefix": "ITEST_SECRET_"})
    )
    sc = SidecarProcess(
        [res],
        "envsecrets",
        tmp_path / "home",
        env={"ITEST_SECRET_API_KEY": "k-123"},
    )
    try:
        sc.wait_ready()
        r = call("GET", f"{sc.http}/v1.0/secrets/envsecrets/API_KEY")
        assert r.status == 200 and r.json() == {"API_KEY": "k-123"}
        assert call("GET", f"{sc.http}/v1.0/secrets/envsecrets/bulk").json() == {
            "API_KEY": {"API_KEY": "k-123"}
        }
    finally:
        sc.stop()


def test_secret_values_stay_out_of_logs_errors_and_metadata(
    tmp_path: Path, private_redis: int
) -> None:
    """Debug logging and API logging on; a wrong password; the values never show."""
    res = tmp_path / "res"
    res.mkdir()
    secret_store(res, "vault", {"redis-password": "wr0ng-pa55-value", "api-key": "k3y-value-xyz"})
    _redis_with_secret_password(res, private_redis, "redis-password")
    args = ["--log-level", "debug", "--enable-api-logging"]
    bad = SidecarProcess([res], "badsecret", tmp_path / "home", extra_args=args)
    try:
        assert bad.wait_exit(30) == 1
        assert any("Failed to start" in x and "statestore" in x for x in bad.lines)
        assert "wr0ng-pa55-value" not in bad.output
    finally:
        bad.stop()
    (res / "statestore.yaml").unlink()
    sc = SidecarProcess([res], "goodsecret", tmp_path / "home", extra_args=args)
    try:
        sc.wait_ready()
        got = call("GET", f"{sc.http}/v1.0/secrets/vault/api-key").json()
        assert got == {"api-key": "k3y-value-xyz"}  # the app gets it...
        meta = json.dumps(call("GET", f"{sc.http}/v1.0/metadata").json())
        assert "k3y-value-xyz" not in meta and "wr0ng-pa55-value" not in meta
        assert "HTTP API Called" in sc.output  # API logging was on
    finally:
        sc.stop()
    # ...and nothing else ever does.
    assert "k3y-value-xyz" not in sc.output and "wr0ng-pa55-value" not in sc.output
