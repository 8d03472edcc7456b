"""Metrics: one registry per sidecar, Dapr's names and labels, and ``spec.metric`` parsing."""

from __future__ import annotations

import re

import pytest

from daprlite.cli.flags import options_from
from daprlite.cli.main import _parser
from daprlite.config.configuration import build_configuration
from daprlite.config.resources import Resource, ResourceError
from daprlite.observability.metrics import (
    DEFAULT_LATENCY_BUCKETS_MS,
    Metrics,
    MetricSpec,
    parse_metric_spec,
)

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def types(text: str) -> dict[str, str]:
    return {
        parts[2]: parts[3]
        for parts in (line.split() for line in text.splitlines())
        if parts[:2] == ["#", "TYPE"]
    }


def configuration(spec: dict[str, object], name: str = "c") -> Resource:
    return Resource("Configuration", name, "dapr.io/v1alpha1", spec, "config.yaml")


def test_each_sidecar_has_its_own_registry() -> None:
    first, second = Metrics("first"), Metrics("second")
    first.http_server("GET", "/v1.0/healthz", 204, 1.5)
    text = second.exposition().decode()
    assert "first" not in text
    assert (
        value(
            first.exposition().decode(),
            "dapr_http_server_request_count",
            app_id="first",
            method="GET",
            path="/v1.0/healthz",
            status="204",
        )
        == 1
    )


def test_counters_are_exposed_under_dapr_s_names_without_an_added_total() -> None:
    m = Metrics("shop")
    m.http_server("POST", "/v1.0/state/{store}", 204, 2.0)
    m.http_server("POST", "/v1.0/state/{store}", 204, 3.0)
    m.invocation_sent("orders")
    text = m.exposition().decode()
    kinds = types(text)
    assert kinds["dapr_http_server_request_count"] == "counter"
    assert kinds["dapr_runtime_service_invocation_req_sent_total"] == "counter"
    assert kinds["dapr_http_server_latency"] == "histogram"
    assert "dapr_http_server_request_count_total" not in text
    assert "_created" not in text
    labels = {"app_id": "shop", "method": "POST", "path": "/v1.0/state/{store}", "status": "204"}
    assert value(text, "dapr_http_server_request_count", **labels) == 2
    assert value(text, "dapr_http_server_latency_count", **labels) == 2
    assert value(text, "dapr_http_server_latency_sum", **labels) == 5.0
    assert value(text, "dapr_http_server_latency_bucket", **labels, le="2.0") == 1
    assert value(text, "dapr_http_server_latency_bucket", **labels, le="+Inf") == 2
    assert (
        value(
            text,
            "dapr_runtime_service_invocation_req_sent_total",
            app_id="shop",
            destination_app_id="orders",
        )
        == 1
    )


def test_every_record_function_labels_its_metric_with_the_app_id() -> None:
    m = Metrics("shop", namespace="prod")
    m.grpc_server("dapr.proto.runtime.v1.Dapr/GetState", "NOT_FOUND", 0.4)
    m.http_client("POST", "/orders", "200", 1.0)
    m.invocation_answered("orders", 500, 4.0)
    m.pubsub_egress("pubsub", "orders", True, 0.2)
    m.pubsub_ingress("pubsub", "orders", "retry", 0.2)
    m.component_loaded("state.redis")
    m.component_init_failed("pubsub.redis")
    text = m.exposition().decode()
    assert (
        value(
            text,
            "dapr_grpc_io_server_completed_rpcs",
            app_id="shop",
            grpc_server_method="dapr.proto.runtime.v1.Dapr/GetState",
            grpc_server_status="NOT_FOUND",
        )
        == 1
    )
    # Without increasedCardinality the app channel's paths are not labels.
    assert (
        value(
            text,
            "dapr_http_client_completed_count",
            app_id="shop",
            method="POST",
            path="",
            status="200",
        )
        == 1
    )
    assert (
        value(
            text,
            "dapr_runtime_service_invocation_res_recv_total",
            app_id="shop",
            destination_app_id="orders",
            status="500",
        )
        == 1
    )
    topic = {"app_id": "shop", "component": "pubsub", "namespace": "prod", "topic": "orders"}
    assert value(text, "dapr_component_pubsub_egress_count", **topic, success="true") == 1
    assert value(text, "dapr_component_pubsub_ingress_count", **topic, process_status="retry") == 1
    assert value(text, "dapr_runtime_component_loaded", app_id="shop") == 1
    assert (
        value(text, "dapr_runtime_component_init_total", app_id="shop", component="state.redis")
        == 1
    )
    assert (
        value(
            text,
            "dapr_runtime_component_init_fail_total",
            app_id="shop",
            component="pubsub.redis",
            reason="init",
        )
        == 1
    )
    for (name, labels), _ in samples(text).items():
        assert ("app_id", "shop") in labels, name


def test_label_values_are_escaped() -> None:
    m = Metrics('we"ird\\app')
    m.invocation_sent("line\nbreak")
    text = m.exposition().decode()
    assert r'app_id="we\"ird\\app"' in text
    assert r'destination_app_id="line\nbreak"' in text
    assert len(samples(text)) == 1


def test_spec_options_shape_the_labels_and_buckets() -> None:
    spec = MetricSpec(increased_cardinality=True, exclude_verbs=True, latency_buckets_ms=(5, 50))
    m = Metrics("shop", spec)
    m.http_client("GET", "/orders/7", "200", 10.0)
    text = m.exposition().decode()
    labels = {"app_id": "shop", "method": "", "path": "/orders/7", "status": "200"}
    assert value(text, "dapr_http_client_completed_count", **labels) == 1
    buckets = [
        dict(lbl)["le"]
        for (name, lbl) in samples(text)
        if name == "dapr_http_client_roundtrip_latency_bucket"
    ]
    assert sorted(buckets) == sorted(["5.0", "50.0", "+Inf"])


def test_nothing_recorded_exposes_only_help_and_type_lines() -> None:
    text = Metrics("idle").exposition().decode()
    assert samples(text) == {}
    assert "# TYPE dapr_http_server_request_count counter" in text


def test_spec_metric_and_its_alias_are_read() -> None:
    assert parse_metric_spec(configuration({"tracing": {}})) is None
    assert parse_metric_spec(configuration({"metric": {"enabled": False}})) == MetricSpec(
        enabled=False
    )
    spec = parse_metric_spec(
        configuration(
            {
                "metrics": {
                    "enabled": "true",
                    "http": {"increasedCardinality": True, "excludeVerbs": "true"},
                    "latencyDistributionBuckets": [100, 10, 10],
                }
            }
        )
    )
    assert spec == MetricSpec(
        enabled=True, increased_cardinality=True, exclude_verbs=True, latency_buckets_ms=(10, 100)
    )
    assert MetricSpec().latency_buckets_ms == DEFAULT_LATENCY_BUCKETS_MS


def test_the_configuration_carries_the_last_metric_section() -> None:
    docs = [
        configuration({"metric": {"enabled": False}}, "a"),
        configuration({"tracing": {"samplingRate": "1"}}, "b"),
    ]
    assert build_configuration(docs).metric.enabled is False
    assert build_configuration([]).metric.enabled is True


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"metric": "off"}, "spec.metric"),
        ({"metric": {"enabled": "nope"}}, "spec.metric.enabled"),
        ({"metrics": {"enabled": 0}}, "spec.metrics.enabled"),
        ({"metric": {"http": []}}, "spec.metric.http"),
        ({"metric": {"http": {"excludeVerbs": "y"}}}, "spec.metric.http.excludeVerbs"),
        (
            {"metric": {"latencyDistributionBuckets": [1, -2]}},
            "spec.metric.latencyDistributionBuckets",
        ),
        (
            {"metric": {"latencyDistributionBuckets": "1,2"}},
            "spec.metric.latencyDistributionBuckets",
        ),
    ],
)
def test_a_bad_metric_section_is_refused_naming_the_field(
    section: dict[str, object], field: str
) -> None:
    with pytest.raises(ResourceError) as err:
        build_configuration([configuration(section)])
    assert err.value.field == field
    assert "config.yaml" in str(err.value) and field in str(err.value)


def test_run_picks_a_free_metrics_port_and_sidecar_defaults_to_9090() -> None:
    parser = _parser()
    run = options_from(parser.parse_args(["run", "--app-id", "a"]), "a", [])
    sidecar = options_from(parser.parse_args(["sidecar", "--app-id", "a"]), "a", [])
    assert run.metrics_port == 0 and run.enable_metrics is True
    assert sidecar.metrics_port == 9090 and sidecar.enable_metrics is True
    off = parser.parse_args(["run", "--enable-metrics", "false", "--metrics-port", "9191"])
    opts = options_from(off, "a", [])
    assert opts.enable_metrics is False and opts.metrics_port == 9191
    assert options_from(parser.parse_args(["run", "--enable-metrics"]), "a", []).enable_metrics


def test_a_bad_enable_metrics_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["run", "--enable-metrics", "perhaps"])
    assert exit_info.value.code == 2
    assert "--enable-metrics" in capsys.readouterr().err
