"""Service invocation over the HTTP API: two real sidecars, real apps, plain HTTP calls.

The caller sidecar (no app: the test is the calling app) reaches callee apps
through their own sidecars, found by app id in a shared run folder.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.integration.http import Reply, call
from tests.integration.invoke_system import APP_TOKEN, InvokeSystem


def invoke(
    system: InvokeSystem,
    method: str,
    path: str,
    app: str = "echo",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    return call(method, f"{system.url}/v1.0/invoke/{app}/method/{path}", data=data, headers=headers)


def echoed(reply: Reply) -> dict[str, object]:
    assert reply.status == 200, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("verb", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_verb_reaches_the_app_unchanged(invoke_system: InvokeSystem, verb: str) -> None:
    got = echoed(invoke(invoke_system, verb, "orders/42"))
    assert got["verb"] == verb
    assert got["path"] == "/orders/42"


def test_head_is_forwarded_and_answered_without_a_body(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "HEAD", "orders/42")
    assert reply.status == 200 and reply.body == b""


def test_query_headers_and_body_are_forwarded(invoke_system: InvokeSystem) -> None:
    body = bytes(range(256)) * 4
    got = echoed(
        call(
            "POST",
            f"{invoke_system.url}/v1.0/invoke/echo/method/api/v1/add?a=1&b=two%20words&a=3",
            data=body,
            headers={"Content-Type": "application/x-custom", "X-Trace-Me": "yes"},
        )
    )
    assert got["query"] == "a=1&b=two%20words&a=3"
    assert base64.b64decode(str(got["body"])) == body
    assert got["content_type"] == "application/x-custom"
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert headers["x-trace-me"] == "yes"


def test_callee_sees_caller_identity_and_never_the_callers_secrets(
    invoke_system: InvokeSystem,
) -> None:
    got = echoed(
        invoke(
            invoke_system,
            "GET",
            "whoami",
            headers={
                "dapr-api-token": "caller-secret",
                "dapr-caller-app-id": "spoofed",
                "x-daprlite-caller-app-id": "spoofed-too",
            },
        )
    )
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert headers["dapr-caller-app-id"] == "caller"
    assert headers["dapr-callee-app-id"] == "echo"
    assert headers["dapr-caller-namespace"] == "default"
    # The app token of the callee's sidecar (APP_API_TOKEN), not the caller's API token.
    assert headers["dapr-api-token"] == APP_TOKEN
    assert not any(k.startswith("x-daprlite-") for k in headers)


def test_trace_context_is_continued_across_both_sidecars(invoke_system: InvokeSystem) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = echoed(
        invoke(invoke_system, "GET", "t", headers={"traceparent": parent, "tracestate": "k=v"})
    )
    headers = got["headers"]
    assert isinstance(headers, dict)
    version, trace_id, span, flags = str(headers["traceparent"]).split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert span != "b7ad6b7169203331"  # each sidecar hop is a new span
    assert headers["tracestate"] == "k=v"


def test_a_trace_is_started_when_the_caller_sent_none(invoke_system: InvokeSystem) -> None:
    headers = echoed(invoke(invoke_system, "GET", "t"))["headers"]
    assert isinstance(headers, dict)
    parts = str(headers["traceparent"]).split("-")
    assert len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32


def test_malformed_traceparent_starts_a_new_trace(invoke_system: InvokeSystem) -> None:
    headers = echoed(invoke(invoke_system, "GET", "t", headers={"traceparent": "garbage"}))[
        "headers"
    ]
    assert isinstance(headers, dict)
    assert str(headers["traceparent"]).startswith("00-")


@pytest.mark.parametrize("status", [201, 400, 404, 418, 500, 503])
def test_app_status_headers_and_body_come_back_unchanged(
    invoke_system: InvokeSystem, status: int
) -> None:
    reply = invoke(invoke_system, "GET", f"status/{status}")
    assert reply.status == status
    assert json.loads(reply.body) == {"status": status}
    assert reply.headers["x-app-status"] == "set"


def test_no_content_answer_stays_empty(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "status/204")
    assert reply.status == 204 and reply.body == b""


def test_dapr_app_id_header_on_any_path_invokes_that_app(invoke_system: InvokeSystem) -> None:
    reply = call("POST", f"{invoke_system.url}/orders/7?x=1", headers={"dapr-app-id": "echo"})
    got = echoed(reply)
    assert got["path"] == "/orders/7" and got["query"] == "x=1"


def test_basic_auth_form_of_the_app_id(invoke_system: InvokeSystem) -> None:
    token = base64.b64encode(b"dapr-app-id:echo").decode()
    got = echoed(
        call("GET", f"{invoke_system.url}/items", headers={"Authorization": f"Basic {token}"})
    )
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert got["path"] == "/items" and "authorization" not in headers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a%2F..%2F..%2Fadmin", "/admin"),
        ("public/..%2F..%2Fadmin", "/admin"),
        ("%2e%2e/%2e%2e/admin", "/admin"),
        ("x//y///z/", "/x/y/z"),
        ("./a/./b", "/a/b"),
        ("files/a%2Fb", "/files/a/b"),
        ("caf%C3%A9", "/caf%C3%A9"),
        ("q%3Fnot-a-query", "/q%3Fnot-a-query"),
    ],
)
def test_method_path_is_decoded_and_normalised_once(
    invoke_system: InvokeSystem, raw: str, expected: str
) -> None:
    assert echoed(invoke(invoke_system, "GET", raw))["path"] == expected


def test_malformed_escape_in_the_method_is_refused(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "bad%zzescape")
    assert reply.status == 400
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "method" in body["message"]


def test_unknown_app_id_is_a_clear_error(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "x", app="nobody-runs-this")
    assert reply.status == 500
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "nobody-runs-this" in body["message"] and "couldn't find service" in body["message"]


def test_app_id_with_two_dots_is_refused(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "x", app="a.b.c")
    assert reply.status == 400
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "app id" in body["message"]


def test_oversized_body_is_refused_before_forwarding(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "POST", "big", data=b"x" * (4 * 1024 * 1024 + 1))
    assert reply.status == 413
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_BODY_READ"


def test_body_at_the_limit_is_delivered(invoke_system: InvokeSystem) -> None:
    size = 4 * 1024 * 1024 - 64 * 1024
    got = echoed(invoke(invoke_system, "POST", "big", data=b"y" * size))
    assert len(base64.b64decode(str(got["body"]))) == size


def test_grpc_app_is_reachable_from_an_http_caller(invoke_system: InvokeSystem) -> None:
    reply = invoke(
        invoke_system, "POST", "echo", app="grpcapp", data=b"hi", headers={"X-Custom": "v"}
    )
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["x-app-answer"] == "yes"
    got = reply.json()
    assert isinstance(got, dict)
    assert got["text"] == "hi"
    metadata = got["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["x-custom"] == "v" and metadata["dapr-caller-app-id"] == "caller"


def test_grpc_app_errors_map_to_http_statuses(invoke_system: InvokeSystem) -> None:
    failed = invoke(invoke_system, "GET", "fail", app="grpcapp")
    assert failed.status == 500
    body = failed.json()
    assert isinstance(body, dict)
    assert body["code"] == 2 and "failing on purpose" in body["message"]
    missing = invoke(invoke_system, "GET", "no-such-method", app="grpcapp")
    assert missing.status == 501
    missing_body = missing.json()
    assert isinstance(missing_body, dict)
    assert missing_body["code"] == 12


def test_retry_policy_retries_matching_statuses_until_success(
    invoke_system: InvokeSystem,
) -> None:
    got = echoed(invoke(invoke_system, "GET", "flaky/r1?fail=2", app="retrying"))
    assert got["path"] == "/flaky/r1"
    counter = invoke(invoke_system, "GET", "counter/r1", app="retrying").json()
    assert counter == {"calls": 3}


def test_retry_policy_gives_up_and_returns_the_apps_last_answer(
    invoke_system: InvokeSystem,
) -> None:
    reply = invoke(invoke_system, "GET", "flaky/r2?fail=10", app="retrying")
    assert reply.status == 503 and reply.json() == {"attempt": 4}  # 1 call + 3 retries


def test_statuses_outside_the_retry_matching_are_not_retried(
    invoke_system: InvokeSystem,
) -> None:
    before = invoke(invoke_system, "GET", "counter/status", app="retrying").json()
    assert invoke(invoke_system, "GET", "status/500", app="retrying").status == 500
    after = invoke(invoke_system, "GET", "counter/status", app="retrying").json()
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["calls"] == before["calls"] + 1


def test_without_a_policy_app_errors_are_not_retried(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "flaky/n1?fail=1")
    assert reply.status == 503
    assert invoke(invoke_system, "GET", "counter/n1").json() == {"calls": 1}


def test_timeout_policy_cuts_a_slow_call(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "slow?ms=3000", app="timed")
    assert reply.status == 500
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "timed out" in body["message"]
    # A call inside the timeout is unaffected.
    assert echoed(invoke(invoke_system, "GET", "slow?ms=10", app="timed"))["path"] == "/slow"


def test_open_circuit_breaker_refuses_without_calling_the_app(
    invoke_system: InvokeSystem,
) -> None:
    for _ in range(3):
        assert invoke(invoke_system, "GET", "status/500", app="breaker").status == 500
    refused = invoke(invoke_system, "GET", "status/500", app="breaker")
    assert refused.status == 500
    body = refused.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "circuit breaker" in body["message"]
    # The app saw only the three calls that tripped the breaker.
    callee = invoke_system.callees["breaker"]
    direct = call("GET", f"{callee.http}/v1.0/invoke/breaker/method/counter/status")
    assert direct.json() == {"calls": 3}


def test_an_app_can_invoke_itself(invoke_system: InvokeSystem) -> None:
    callee = invoke_system.callees["echo"]
    got = echoed(call("GET", f"{callee.http}/v1.0/invoke/echo/method/self"))
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert headers["dapr-caller-app-id"] == "echo"


def test_namespaced_app_id_in_the_callers_namespace(invoke_system: InvokeSystem) -> None:
    assert echoed(invoke(invoke_system, "GET", "ns", app="echo.default"))["path"] == "/ns"


def test_app_id_in_another_namespace_is_not_found(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "ns", app="echo.elsewhere")
    assert reply.status == 500
    body = reply.json()
    assert isinstance(body, dict)
    assert "couldn't find service" in body["message"] and "elsewhere" in body["message"]


def test_an_external_url_is_invoked_directly(invoke_system: InvokeSystem) -> None:
    base = f"http%3A%2F%2F127.0.0.1%3A{invoke_system.external_port}"
    got = echoed(invoke(invoke_system, "POST", "orders/1?x=2", app=base, data=b"hi"))
    assert (got["verb"], got["path"], got["query"]) == ("POST", "/orders/1", "x=2")
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert "dapr-caller-app-id" not in headers and "traceparent" in headers


def test_an_http_endpoint_resource_adds_its_base_path_and_headers(
    invoke_system: InvokeSystem,
) -> None:
    got = echoed(invoke(invoke_system, "GET", "v1/items", app="ext-api"))
    assert got["path"] == "/base/v1/items"
    headers = got["headers"]
    assert isinstance(headers, dict)
    assert headers["x-api-key"] == "plain-value" and headers["x-from-env"] == "from-env"


def test_an_unreachable_external_url_is_a_clear_error(invoke_system: InvokeSystem) -> None:
    reply = invoke(invoke_system, "GET", "x", app="http%3A%2F%2F127.0.0.1%3A1")
    assert reply.status == 500
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE" and "cannot be reached" in body["message"]
