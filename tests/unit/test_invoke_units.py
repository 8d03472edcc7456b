"""Pure logic of service invocation: targets, method paths, headers, trace context, wire format."""

from __future__ import annotations

import pytest

from daprlite import errors
from daprlite.blocks.invoke.external import load_endpoints
from daprlite.blocks.invoke.headers import for_grpc_app, for_http_app, forwardable
from daprlite.blocks.invoke.model import Caller, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import method_from_raw, method_to_path, split_target
from daprlite.config.configuration import build_configuration
from daprlite.config.resources import Resource, ResourceError
from daprlite.observability.tracing import continue_trace, parse_traceparent
from daprlite.transport.internal import wire


@pytest.mark.parametrize(
    ("raw", "method"),
    [
        ("orders/1", "orders/1"),
        ("a%2F..%2F..%2Fadmin", "admin"),
        ("..%2F..%2F..", ""),
        ("x//y/", "x/y"),
        ("%2e%2e/a", "a"),
        ("a%252Fb", "a%2Fb"),  # decoded exactly once
        ("caf%C3%A9", "café"),
    ],
)
def test_method_is_decoded_once_and_cleaned(raw: str, method: str) -> None:
    assert method_from_raw(raw) == method


@pytest.mark.parametrize("raw", ["bad%zz", "trailing%", "a%2", "ctl%00x", "%ff%fe"])
def test_bad_method_paths_are_the_callers_error(raw: str) -> None:
    with pytest.raises(errors.APIError) as err:
        method_from_raw(raw)
    assert err.value.http_status == 400 and err.value.code == "ERR_DIRECT_INVOKE"
    assert "method" in err.value.message


def test_method_is_written_back_as_a_path_that_keeps_its_meaning() -> None:
    assert method_to_path("a/b c?d") == "/a/b%20c%3Fd"
    assert method_to_path("a%2Fb") == "/a%252Fb"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("orders", ("orders", "ns1")),
        ("orders.prod", ("orders", "prod")),
        ("my_app-2", ("my_app-2", "ns1")),
    ],
)
def test_targets(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target, "ns1") == expected


@pytest.mark.parametrize(
    ("target", "status"), [("", 404), ("a.b.c", 400), ("a b", 400), ("-x", 400)]
)
def test_bad_targets(target: str, status: int) -> None:
    with pytest.raises(errors.APIError) as err:
        split_target(target, "")
    assert err.value.http_status == status


def test_forwardable_drops_hop_by_hop_credentials_and_identity_claims() -> None:
    kept = forwardable(
        [
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "5"),
            ("dapr-api-token", "t"),
            ("dapr-app-id", "b"),
            ("dapr-caller-app-id", "spoof"),
            ("X-Daprlite-Caller-App-Id", "spoof"),
            ("Host", "h"),
            ("Content-Length", "3"),
            ("x-bin", "b"),
            ("trace-bin", "b"),
            ("X-Custom", "v"),
            ("Accept", "a"),
            ("Accept", "b"),
        ]
    )
    assert kept == (("x-custom", "v"), ("accept", "a"), ("accept", "b"))


def test_http_permanent_headers_are_prefixed_for_grpc_apps() -> None:
    md = for_grpc_app((("accept", "x"), ("x-custom", "v"), ("Bad Key", "v")), from_grpc=False)
    assert md == [("dapr-accept", "x"), ("x-custom", "v")]


def test_grpc_pseudo_headers_are_prefixed_for_http_apps() -> None:
    headers = for_http_app(((":authority", "a"), ("grpc-timeout", "1S"), ("x", "v")), True)
    assert headers == [("dapr-authority", "a"), ("dapr-grpc-timeout", "1S"), ("x", "v")]


def test_traceparent_validation() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(good) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01")
    for bad in (
        "",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "zz",
    ):
        assert parse_traceparent(bad) is None


def test_continued_trace_keeps_id_and_flags_with_a_new_span() -> None:
    ctx = continue_trace("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "a=b")
    assert ctx.trace_id == "0af7651916cd43dd8448eb211c80319c" and ctx.flags == "01"
    assert ctx.span_id != "b7ad6b7169203331" and ctx.state == "a=b" and ctx.sampled
    new = continue_trace(None, sample_new=True)
    assert new.sampled and len(new.trace_id) == 32 and parse_traceparent(new.traceparent)


def test_wire_round_trip_keeps_every_field() -> None:
    req = InvokeRequest(
        method="a/b c",
        verb="PATCH",
        query="x=1&y=%20",
        headers=(("x-a", "1"), ("x-a", "2")),
        body=b"\x00body",
        content_type="application/x-protobuf",
        data_type_url="type.googleapis.com/x.Y",
        grpc_origin=True,
    )
    headers = wire.request_headers(req, Caller("callee", "prod"), Caller("caller", "dev"))
    back, callee, caller = wire.parse_request(wire.request_path(req.method), headers, req.body)
    assert back == req and callee == Caller("callee", "prod") and caller == Caller("caller", "dev")
    resp = InvokeResponse(
        app_protocol="grpc",
        status=5,
        headers=(("x-h", "v"),),
        body=b"b",
        content_type="text/plain",
        trailers=(("x-t", "a=b;c"),),
        grpc_message="not found: ü",
        grpc_details=b"\x08\x05",
    )
    assert wire.parse_response(wire.response_headers(resp), resp.body) == resp


def _config(spec: dict[str, object]) -> Resource:
    return Resource("Configuration", "c", "dapr.io/v1alpha1", spec, "config.yaml")


def test_tracing_sampling_rate_is_read_and_validated() -> None:
    assert (
        build_configuration([_config({"tracing": {"samplingRate": "1"}})]).tracing_sampling_rate
        == 1.0
    )
    assert build_configuration([]).tracing_sampling_rate == 0.0
    with pytest.raises(ResourceError) as err:
        build_configuration([_config({"tracing": {"samplingRate": "often"}})])
    assert "spec.tracing.samplingRate" in str(err.value)


def _endpoint(spec: dict[str, object]) -> Resource:
    return Resource("HTTPEndpoint", "ext", "dapr.io/v1alpha1", spec, "endpoint.yaml")


async def test_http_endpoints_resolve_header_values() -> None:
    async def secret(store: str, name: str) -> dict[str, str]:
        assert (store, name) == ("vault", "api")
        return {"token": "s3cret"}

    res = _endpoint(
        {
            "baseUrl": "https://api.example.com/v2/",
            "auth": {"secretStore": "vault"},
            "headers": [
                {"name": "x-a", "value": "1"},
                {"name": "x-b", "secretKeyRef": {"name": "api", "key": "token"}},
            ],
        }
    )
    endpoints = await load_endpoints([res], secret)
    assert endpoints["ext"].base_url == "https://api.example.com/v2"
    assert endpoints["ext"].headers == (("x-a", "1"), ("x-b", "s3cret"))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.baseUrl"),
        ({"baseUrl": "ftp://x"}, "spec.baseUrl"),
        ({"baseUrl": "http://x", "headers": {"a": 1}}, "spec.headers"),
        ({"baseUrl": "http://x", "headers": [{"value": "v"}]}, "spec.headers[0].name"),
        ({"baseUrl": "http://x", "headers": [{"name": "a"}]}, "spec.headers[0]"),
        (
            {"baseUrl": "http://x", "headers": [{"name": "a", "secretKeyRef": {"name": "n"}}]},
            "spec.headers[0].secretKeyRef",
        ),
    ],
)
async def test_bad_http_endpoints_name_the_field(spec: dict[str, object], field: str) -> None:
    async def secret(store: str, name: str) -> dict[str, str]:
        raise LookupError("no such secret")

    with pytest.raises(ResourceError) as err:
        await load_endpoints([_endpoint(spec)], secret)
    assert err.value.field == field
