"""Invocation while callees come and go: down, crashed and restarting, unhealthy.

Each test starts its own callee next to the shared caller sidecar, so stopping
or killing it affects no other test.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.integration.invoke_system import (
    APPS,
    InvokeSystem,
    start_callee,
    wait_until_reachable,
)


def test_a_callee_that_is_down_gives_a_clear_error(invoke_system: InvokeSystem) -> None:
    callee = start_callee("gone", invoke_system.home, invoke_system.resources).wait_ready()
    try:
        wait_until_reachable(invoke_system, "gone")
    finally:
        callee.stop()
    reply = call("GET", f"{invoke_system.url}/v1.0/invoke/gone/method/x")
    assert reply.status == 500
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "gone" in body["message"]
    # A clean stop removed its run-folder record.
    assert not list((invoke_system.home / "run").glob("gone.*.json"))


def test_a_crashed_callee_leaves_a_stale_record_that_does_not_break_calls(
    invoke_system: InvokeSystem,
) -> None:
    first = start_callee("phoenix", invoke_system.home, invoke_system.resources).wait_ready()
    second = None
    try:
        wait_until_reachable(invoke_system, "phoenix")
        first.kill_hard()  # no clean-up: the record stays behind
        assert list((invoke_system.home / "run").glob(f"phoenix.{first.proc.pid}.json"))
        second = start_callee("phoenix", invoke_system.home, invoke_system.resources)
        second.wait_ready()
        wait_until_reachable(invoke_system, "phoenix")
        reply = call("GET", f"{invoke_system.url}/v1.0/invoke/phoenix/method/after-crash")
        assert reply.status == 200
        body = reply.json()
        assert isinstance(body, dict)
        assert body["path"] == "/after-crash"
    finally:
        first.stop()
        if second is not None:
            second.stop()
    # Readers pruned the dead sidecar's record.
    assert not list((invoke_system.home / "run").glob(f"phoenix.{first.proc.pid}.json"))


def test_a_call_made_while_the_callee_restarts_is_retried_until_it_is_back(
    invoke_system: InvokeSystem,
) -> None:
    first = start_callee("restarter", invoke_system.home, invoke_system.resources).wait_ready()
    holder: dict[str, object] = {}
    try:
        wait_until_reachable(invoke_system, "restarter")
        first.stop()

        def restart() -> None:
            time.sleep(0.3)
            holder["second"] = start_callee(
                "restarter", invoke_system.home, invoke_system.resources
            )

        thread = threading.Thread(target=restart)
        thread.start()
        # Dapr's built-in service retries (3 x 1 s when the callee's sidecar cannot be
        # reached) carry this call over the restart.
        reply = call("POST", f"{invoke_system.url}/v1.0/invoke/restarter/method/during", data=b"x")
        thread.join()
        assert reply.status == 200, reply.body
        body = reply.json()
        assert isinstance(body, dict)
        assert body["path"] == "/during"
    finally:
        first.stop()
        second = holder.get("second")
        if second is not None:
            second.stop()  # type: ignore[attr-defined]


def test_an_unhealthy_app_is_not_invoked_until_it_recovers(
    invoke_system: InvokeSystem, tmp_path: Path
) -> None:
    flag = tmp_path / "unhealthy"
    callee = start_callee(
        "checked",
        invoke_system.home,
        invoke_system.resources,
        extra_args=(
            "--enable-app-health-check",
            "--app-health-check-path",
            "/healthz",
            "--app-health-probe-interval",
            "0.1",
            "--app-health-threshold",
            "2",
        ),
        env={"UNHEALTHY_FILE": str(flag)},
    ).wait_ready()
    url = f"{invoke_system.url}/v1.0/invoke/checked/method/work"
    try:
        meta = call("GET", f"{callee.http}/v1.0/metadata").json()
        assert isinstance(meta, dict)
        assert meta["appConnectionProperties"]["health"] == {
            "healthCheckPath": "/healthz",
            "healthProbeInterval": "100ms",
            "healthProbeTimeout": "500ms",
            "healthThreshold": 2,
        }
        wait_until_reachable(invoke_system, "checked")
        flag.touch()
        wait_for(lambda: call("GET", url).status == 500, 30, "the app marked unhealthy")
        body = call("GET", url).json()
        assert isinstance(body, dict)
        assert "health" in str(body["message"])
        flag.unlink()
        wait_for(lambda: call("GET", url).status == 200, 30, "the app healthy again")
    finally:
        callee.stop()


def _max_in_flight(system: InvokeSystem, app_id: str, key: str) -> int:
    url = f"{system.url}/v1.0/invoke/{app_id}/method/inflight/{key}?ms=300"
    threads = [threading.Thread(target=call, args=("GET", url)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = call("GET", f"{system.url}/v1.0/invoke/{app_id}/method/counter/max-{key}").json()
    assert isinstance(got, dict)
    return int(got["calls"])


def test_app_max_concurrency_bounds_calls_in_flight(invoke_system: InvokeSystem) -> None:
    limited = start_callee(
        "limited",
        invoke_system.home,
        invoke_system.resources,
        extra_args=("--app-max-concurrency", "1"),
    ).wait_ready()
    try:
        wait_until_reachable(invoke_system, "limited")
        assert _max_in_flight(invoke_system, "limited", "k") == 1
    finally:
        limited.stop()
    # The same four calls to an unlimited app do overlap.
    assert _max_in_flight(invoke_system, "echo", "unlimited") > 1


def test_h2c_app_is_spoken_to_over_http2(invoke_system: InvokeSystem) -> None:
    port = free_port()
    callee = SidecarProcess(
        [invoke_system.resources],
        app_id="h2capp",
        home=invoke_system.home,
        extra_args=["--app-port", str(port), "--app-protocol", "h2c"],
        command=[sys.executable, str(APPS / "invoke_h2c_app.py")],
        env={"APP_PORT": str(port), "APP_API_TOKEN": "h2c-token"},
    ).wait_ready()
    try:
        wait_until_reachable(invoke_system, "h2capp")
        reply = call(
            "PUT",
            f"{invoke_system.url}/v1.0/invoke/h2capp/method/items/3?x=1",
            data=b"payload",
            headers={"Content-Type": "text/plain", "X-Custom": "v"},
        )
        assert reply.status == 200 and reply.headers["x-app-answer"] == "yes"
        got = reply.json()
        assert isinstance(got, dict)
        assert got["http_version"] == "2"
        assert (got["verb"], got["path"], got["query"], got["body"]) == (
            "PUT",
            "/items/3",
            "x=1",
            "payload",
        )
        assert got["headers"]["x-custom"] == "v"
        assert got["headers"]["dapr-api-token"] == "h2c-token"
        assert got["headers"]["dapr-caller-app-id"] == "caller"
    finally:
        callee.stop()


def test_a_callee_with_an_api_token_is_still_reachable_from_other_sidecars(
    invoke_system: InvokeSystem,
) -> None:
    import grpc
    from dapr.proto.common.v1 import common_pb2
    from dapr.proto.runtime.v1 import appcallback_pb2_grpc

    callee = start_callee(
        "tokened",
        invoke_system.home,
        invoke_system.resources,
        grpc_app=True,
        env={"DAPR_API_TOKEN": "callee-secret"},
    )
    try:
        callee.wait_ready()
        wait_for(
            lambda: (
                call("GET", f"{invoke_system.url}/v1.0/invoke/tokened/method/echo").status == 200
            ),
            30,
            "the tokened app reachable",
        )
        req = common_pb2.InvokeRequest(method="echo")
        req.data.value = b"through two proxies"
        with grpc.insecure_channel(f"127.0.0.1:{invoke_system.caller.grpc_port}") as channel:
            stub = appcallback_pb2_grpc.AppCallbackStub(channel)
            resp = stub.OnInvoke(req, metadata=(("dapr-app-id", "tokened"),))
        assert b"through two proxies" in resp.data.value
        # The callee's own API still needs its token, and so does proxying to other apps.
        with grpc.insecure_channel(f"127.0.0.1:{callee.grpc_port}") as channel:
            stub = appcallback_pb2_grpc.AppCallbackStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.OnInvoke(req, metadata=(("dapr-app-id", "grpcapp"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert call("GET", f"{callee.http}/v1.0/metadata").status == 401
    finally:
        callee.stop()
