"""Service invocation driven by the official Dapr Python SDK, unmodified.

``invoke_method`` over HTTP (the SDK's default) and over gRPC
(``InvokeService``), to an HTTP app and to a gRPC app built with
``dapr-ext-grpc``; and raw gRPC proxying with the ``dapr-app-id`` metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError
from dapr.conf import settings
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2_grpc

from tests.integration.invoke_system import InvokeSystem


@pytest.fixture
def sdk(invoke_system: InvokeSystem, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", invoke_system.caller.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", invoke_system.caller.grpc_port)
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 10)
    with DaprClient(address=f"127.0.0.1:{invoke_system.caller.grpc_port}") as client:
        yield client


@pytest.fixture
def sdk_grpc(sdk: DaprClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setattr(settings, "DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient(address=f"127.0.0.1:{settings.DAPR_GRPC_PORT}") as client:
        yield client


def test_sdk_http_invoke_of_an_http_app(sdk: DaprClient) -> None:
    resp = sdk.invoke_method(
        "echo",
        "orders/5",
        data=json.dumps({"n": 5}),
        http_verb="POST",
        http_querystring=(("a", "1"),),
        metadata=(("x-tenant", "t1"),),
    )
    got = json.loads(resp.text())
    assert resp.status_code == 200
    assert (got["verb"], got["path"], got["query"]) == ("POST", "/orders/5", "a=1")
    assert got["headers"]["x-tenant"] == "t1"
    assert resp.headers["x-app-answer"] == ["yes"]


def test_sdk_http_invoke_raises_on_app_errors(sdk: DaprClient) -> None:
    with pytest.raises(DaprHttpError) as err:
        sdk.invoke_method("echo", "status/404", http_verb="GET")
    assert err.value.status_code == 404


def test_sdk_http_invoke_of_a_grpc_app(sdk: DaprClient) -> None:
    resp = sdk.invoke_method("grpcapp", "echo", data="hello")
    got = json.loads(resp.text())
    assert got["text"] == "hello"
    assert got["metadata"]["dapr-caller-app-id"] == "caller"


def test_sdk_grpc_invoke_of_a_grpc_app(sdk_grpc: DaprClient) -> None:
    resp = sdk_grpc.invoke_method("grpcapp", "echo", data="over grpc", metadata=(("x-k", "v"),))
    got = json.loads(resp.text())
    assert got["text"] == "over grpc"
    assert got["content_type"] == "application/json; charset=utf-8"
    assert got["metadata"]["x-k"] == "v"
    assert resp.headers["x-app-answer"] == ["yes"]


def test_sdk_grpc_invoke_of_an_http_app_reports_the_http_status(sdk_grpc: DaprClient) -> None:
    resp = sdk_grpc.invoke_method(
        "echo", "orders/9", data="{}", http_verb="PUT", http_querystring=(("q", "x y"),)
    )
    got = json.loads(resp.text())
    assert (got["verb"], got["path"], got["query"]) == ("PUT", "/orders/9", "q=x+y")
    assert resp.headers["dapr-http-status"] == ["200"]


def test_sdk_grpc_invoke_maps_http_errors_to_grpc_codes(sdk_grpc: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sdk_grpc.invoke_method("echo", "status/404", data="", http_verb="GET")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_sdk_grpc_invoke_of_an_http_app_needs_an_http_verb(sdk_grpc: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sdk_grpc.invoke_method("echo", "orders/1", data="{}")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "HTTP extension" in err.value.details()  # type: ignore[attr-defined]


def test_sdk_grpc_invoke_passes_grpc_app_errors_through(sdk_grpc: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sdk_grpc.invoke_method("grpcapp", "fail", data="")
    assert err.value.code() == grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    assert "failing on purpose" in err.value.details()  # type: ignore[attr-defined]


def test_sdk_grpc_invoke_of_an_unknown_app(sdk_grpc: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sdk_grpc.invoke_method("nobody-runs-this", "x", data="")
    assert err.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]


def test_oversized_grpc_request_is_refused(invoke_system: InvokeSystem) -> None:
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2

    with grpc.insecure_channel(
        f"127.0.0.1:{invoke_system.caller.grpc_port}",
        options=[("grpc.max_send_message_length", 16 * 1024 * 1024)],
    ) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        req = invoke_pb2.InvokeServiceRequest(id="echo")
        req.message.method = "big"
        req.message.data.value = b"x" * (4 * 1024 * 1024 + 1)
        with pytest.raises(grpc.RpcError) as err:
            stub.InvokeService(req)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def test_grpc_proxying_reaches_the_target_apps_own_service(invoke_system: InvokeSystem) -> None:
    # The app's "own" service here is AppCallback, called with the SDK's stub:
    # the sidecar does not serve it, so the dapr-app-id metadata routes it.
    with grpc.insecure_channel(f"127.0.0.1:{invoke_system.caller.grpc_port}") as channel:
        stub = appcallback_pb2_grpc.AppCallbackStub(channel)
        req = common_pb2.InvokeRequest(method="echo", content_type="text/plain")
        req.data.value = b"proxied"
        resp, call = stub.OnInvoke.with_call(
            req, metadata=(("dapr-app-id", "grpcapp"), ("x-k", "v"))
        )
        got = json.loads(resp.data.value)
        assert got["text"] == "proxied" and got["metadata"]["x-k"] == "v"
        assert got["metadata"]["dapr-caller-app-id"] == "caller"
        assert ("x-app-answer", "yes") in [(m.key, m.value) for m in call.initial_metadata()]
        with pytest.raises(grpc.RpcError) as err:
            stub.OnInvoke(
                common_pb2.InvokeRequest(method="fail"), metadata=(("dapr-app-id", "grpcapp"),)
            )
        assert err.value.code() == grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as err:
            stub.OnInvoke(common_pb2.InvokeRequest(method="echo"))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
