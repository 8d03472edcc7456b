"""Configuration ``spec.api``: excluded APIs are not served, over HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings

from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess
from tests.integration.http import call

CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: apis
spec:
  api:
    allowed:
      - {name: state, version: v1.0, protocol: http}
      - {name: metadata, version: v1, protocol: http}
      - {name: state, version: v1, protocol: grpc}
      - {name: secrets, version: v1, protocol: grpc}
    denied:
      - {name: secrets, version: v1, protocol: grpc}
"""


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("apilists")
    res = write_store(root / "res", "state.in-memory", "x")
    config = root / "config.yaml"
    config.write_text(CONFIG)
    proc = SidecarProcess([res], "limited", root / "home", extra_args=["--config", str(config)])
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_allowed_http_apis_work(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert r.status == 204
    assert call("GET", f"{sc.http}/v1.0/state/statestore/k").body == b"1"
    assert call("GET", f"{sc.http}/v1.0/metadata").status == 200
    assert call("GET", f"{sc.http}/v1.0/healthz").status == 204  # always open


def test_excluded_http_apis_fall_through_to_the_fallback(sc: SidecarProcess) -> None:
    for method, path in (
        ("POST", "/v1.0/publish/pubsub/topic"),
        ("GET", "/v1.0/secrets/store/key"),
        ("POST", "/v1.0/bindings/b"),
        ("GET", "/v1.0/invoke/other/method/x"),
        ("POST", "/v1.0-alpha1/state/statestore/query"),  # v1alpha1 was not allowed
    ):
        r = call(method, f"{sc.http}{path}", data=b"{}")
        assert r.status == 404, path
        body = r.json()
        assert isinstance(body, dict) and body["errorCode"] == "ERR_DIRECT_INVOKE", path


def test_grpc_methods_follow_the_lists(sc: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sc.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
        client.save_state("statestore", "g", "v")
        assert client.get_state("statestore", "g").data == b"v"
        for blocked in (
            lambda: client.get_secret("store", "key"),  # denied beats allowed
            lambda: client.publish_event("pubsub", "topic", b"{}"),  # not allowed
            lambda: client.get_metadata(),  # allowed over HTTP only
        ):
            with pytest.raises(grpc.RpcError) as err:
                blocked()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "spec.api" in str(err.value.details())
