"""With DAPR_API_TOKEN set, every API call needs it; only GET of the exact health paths is open."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings

from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess
from tests.integration.http import call


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("token")
    res = write_store(root / "res", "state.in-memory", "x")
    proc = SidecarProcess([res], "guarded", root / "home", env={"DAPR_API_TOKEN": "s3cret-token"})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_http_calls_need_the_token(sc: SidecarProcess) -> None:
    r = call("GET", f"{sc.http}/v1.0/metadata")
    assert r.status == 401 and r.body == b"invalid api token"
    r = call("GET", f"{sc.http}/v1.0/metadata", headers={"dapr-api-token": "wrong"})
    assert r.status == 401
    r = call("GET", f"{sc.http}/v1.0/metadata", headers={"dapr-api-token": "s3cret-token"})
    assert r.status == 200
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert r.status == 401


def test_only_exact_health_paths_are_open(sc: SidecarProcess) -> None:
    assert call("GET", f"{sc.http}/v1.0/healthz").status == 204
    assert call("GET", f"{sc.http}/v1.0/healthz/outbound").status == 204
    # CVE-2023-37918: a query string or a path containing /healthz is not a health probe
    assert call("GET", f"{sc.http}/v1.0/healthz?x=/v1.0/metadata").status == 401
    assert call("GET", f"{sc.http}/v1.0/metadata/v1.0/healthz").status == 401
    assert call("POST", f"{sc.http}/v1.0/healthz").status == 401


def test_grpc_calls_need_the_token(sc: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", sc.http_port)
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
    with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
        with pytest.raises(grpc.RpcError) as err:
            client.get_state("statestore", "k")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "missing api token in request metadata"
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", "not-the-token")
    with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
        with pytest.raises(grpc.RpcError) as err:
            client.get_state("statestore", "k")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "authentication error: api token mismatch"
    monkeypatch.setattr(settings, "DAPR_API_TOKEN", "s3cret-token")
    with DaprClient(address=f"127.0.0.1:{sc.grpc_port}") as client:
        client.save_state("statestore", "k", "v")
        assert client.get_state("statestore", "k").data == b"v"
