"""Prometheus metrics of a real sidecar, scraped from its ``--metrics-port``.

One ``daprlite run`` process with an HTTP subscriber app (state.in-memory and
pubsub.in-memory) serves the API calls of the tests: HTTP state calls, a
service invocation of its own app, a publish delivered to the app, and gRPC
calls with the official SDK. Each test scrapes before and after and checks
the difference, with Dapr's metric and label names. The metrics port listens
on the internal listen address (127.0.0.2 here, standing for the pod's IP),
not where the API does. Turned off by flag or by ``spec.metric.enabled``,
nothing listens on it.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.conf import settings

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).parent / "apps" / "pubsub_http_app.py"
APP_ID = "metered"
POD_IP = "127.0.0.2"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int, host: str = POD_IP, path: str = "/") -> Samples:
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[(m.group(1), frozenset(_LABEL.findall(m.group(2) or "")))] = float(m.group(3))
    return out


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset({"app_id": APP_ID, **labels}.items())), 0.0)


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@dataclass
class Metered:
    sidecar: SidecarProcess
    metrics_port: int
    record: Path

    def scrape(self) -> Samples:
        return scrape(self.metrics_port)


def resources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "statestore.yaml").write_text(component_yaml("statestore", "state.in-memory", {}))
    (folder / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory", {}))
    return folder


@pytest.fixture
def sdk_settings(metered: Metered, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK waits for the sidecar's health on its configured HTTP port first."""
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", metered.sidecar.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", metered.sidecar.grpc_port)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    root = tmp_path_factory.mktemp("metrics")
    record = root / "deliveries.jsonl"
    record.touch()
    metrics_port, app_port = free_port(), free_port()
    subscriptions = [{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]
    sidecar = SidecarProcess(
        [resources(root / "resources")],
        app_id=APP_ID,
        home=root / "home",
        extra_args=[
            "--app-port",
            str(app_port),
            "--metrics-port",
            str(metrics_port),
            "--internal-listen-addresses",
            POD_IP,
        ],
        command=[sys.executable, str(APP)],
        env={"SUBSCRIPTIONS": json.dumps(subscriptions), "RECORD_FILE": str(record)},
    )
    try:
        sidecar.wait_ready()
        wait_for(lambda: call("GET", f"{sidecar.http}/v1.0/healthz").status == 204, 20, "the app")
        yield Metered(sidecar, metrics_port, record)
    finally:
        sidecar.stop()


def test_http_api_calls_are_counted_by_route_and_status(metered: Metered) -> None:
    api = metered.sidecar.http
    before = metered.scrape()
    for i in range(3):
        assert (
            call("POST", f"{api}/v1.0/state/statestore", json=[{"key": f"k{i}", "value": i}]).status
            == 204
        )
    assert call("GET", f"{api}/v1.0/state/nostore/k0").status == 400
    after = metered.scrape()
    saved = {"method": "POST", "path": "/v1.0/state/{store}", "status": "204"}
    name = "dapr_http_server_request_count"
    assert get(after, name, **saved) - get(before, name, **saved) == 3
    count = "dapr_http_server_latency_count"
    assert get(after, count, **saved) - get(before, count, **saved) == 3
    inf = "dapr_http_server_latency_bucket"
    assert get(after, inf, **saved, le="+Inf") - get(before, inf, **saved, le="+Inf") == 3
    assert get(after, "dapr_http_server_latency_sum", **saved) > get(
        before, "dapr_http_server_latency_sum", **saved
    )
    # The route pattern, not the key or the store as called: bounded label values.
    refused = {"method": "GET", "path": "/v1.0/state/{store}/{key}", "status": "400"}
    assert get(after, name, **refused) - get(before, name, **refused) == 1
    assert not [
        labels
        for (n, labels) in after
        if n == name and ("path", "/v1.0/state/nostore/k0") in labels
    ]


def test_an_invocation_counts_the_request_the_answer_and_the_app_call(metered: Metered) -> None:
    before = metered.scrape()
    url = f"{metered.sidecar.http}/v1.0/invoke/{APP_ID}/method/hello"
    assert call("POST", url, json={"hi": 1}).status == 200
    after = metered.scrape()

    def delta(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("dapr_runtime_service_invocation_req_sent_total", destination_app_id=APP_ID) == 1
    answered = {"destination_app_id": APP_ID, "status": "200"}
    assert delta("dapr_runtime_service_invocation_res_recv_total", **answered) == 1
    assert delta("dapr_runtime_service_invocation_res_recv_latency_ms_count", **answered) == 1
    app_call = {"method": "POST", "path": "", "status": "200"}
    assert delta("dapr_http_client_completed_count", **app_call) >= 1
    assert delta("dapr_http_client_roundtrip_latency_count", **app_call) >= 1
    invoked = {"method": "POST", "path": "/v1.0/invoke/{tail}", "status": "200"}
    assert delta("dapr_http_server_request_count", **invoked) == 1


def test_a_publish_and_its_delivery_to_the_app_are_counted(metered: Metered) -> None:
    before = metered.scrape()
    url = f"{metered.sidecar.http}/v1.0/publish/pubsub/orders"
    assert call("POST", url, json={"order": 1}).status == 204
    assert (
        call("POST", f"{metered.sidecar.http}/v1.0/publish/nopubsub/orders", json={}).status == 404
    )
    topic = {"component": "pubsub", "namespace": "", "topic": "orders"}
    ingress = "dapr_component_pubsub_ingress_count"

    def delivered() -> bool:
        now = metered.scrape()
        return (
            get(now, ingress, **topic, process_status="success")
            - get(before, ingress, **topic, process_status="success")
            == 1
        )

    wait_for(delivered, 10, "the delivery to be counted")
    after = metered.scrape()
    egress = "dapr_component_pubsub_egress_count"
    assert (
        get(after, egress, **topic, success="true") - get(before, egress, **topic, success="true")
        == 1
    )
    latency = "dapr_component_pubsub_ingress_latencies_count"
    assert get(after, latency, **topic, process_status="success") >= 1
    # A publish to an unknown component never reaches a component: no egress count for it.
    assert not [k for k in after if k[0] == egress and ("component", "nopubsub") in k[1]]
    lines = metered.record.read_text().splitlines()
    assert any(json.loads(line)["path"] == "/orders" for line in lines)


@pytest.mark.usefixtures("sdk_settings")
def test_grpc_calls_are_counted_with_method_and_status(metered: Metered) -> None:
    before = metered.scrape()
    with DaprClient(address=f"127.0.0.1:{metered.sidecar.grpc_port}") as client:
        client.save_state("statestore", "grpc-key", "v")
        assert client.get_state("statestore", "grpc-key").data == b"v"
        with pytest.raises(DaprGrpcError) as err:
            client.get_state("nostore", "k")
    after = metered.scrape()
    refused = err.value.code()
    assert isinstance(refused, grpc.StatusCode)

    def delta(method: str, status: str) -> float:
        labels = {
            "grpc_server_method": f"dapr.proto.runtime.v1.Dapr/{method}",
            "grpc_server_status": status,
        }
        name = "dapr_grpc_io_server_completed_rpcs"
        return get(after, name, **labels) - get(before, name, **labels)

    assert delta("SaveState", "OK") == 1
    assert delta("GetState", "OK") == 1
    assert delta("GetState", refused.name) == 1
    latency = {
        "grpc_server_method": "dapr.proto.runtime.v1.Dapr/SaveState",
        "grpc_server_status": "OK",
    }
    assert get(after, "dapr_grpc_io_server_server_latency_count", **latency) >= 1


def test_components_loaded_are_counted_and_metrics_also_answer_on_slash_metrics(
    metered: Metered,
) -> None:
    samples = scrape(metered.metrics_port, path="/metrics")
    assert get(samples, "dapr_runtime_component_loaded") == 2
    for kind in ("state.in-memory", "pubsub.in-memory"):
        assert get(samples, "dapr_runtime_component_init_total", component=kind) == 1


def test_metrics_listen_on_the_internal_address_only(metered: Metered) -> None:
    assert listening(POD_IP, metered.metrics_port)
    assert not listening("127.0.0.1", metered.metrics_port)
    assert f"metrics on port {metered.metrics_port}" in metered.sidecar.output


def test_run_gives_the_app_the_free_metrics_port_it_picked(tmp_path: Path) -> None:
    printer = "import os; print('METRICS_PORT=' + os.environ.get('DAPR_METRICS_PORT', 'none'))"
    sidecar = SidecarProcess(
        [resources(tmp_path / "resources")],
        app_id="printer",
        home=tmp_path / "home",
        command=[sys.executable, "-c", printer],
    )
    try:
        sidecar.wait_exit(30)
    finally:
        sidecar.stop()
    exported = re.search(r"METRICS_PORT=(\d+)", sidecar.output)
    assert exported, sidecar.output
    assert f"metrics on port {exported.group(1)}" in sidecar.output


@pytest.mark.parametrize("how", ["flag", "configuration"])
def test_metrics_turned_off_open_no_port(tmp_path: Path, how: str) -> None:
    port = free_port()
    args = ["--metrics-port", str(port)]
    if how == "flag":
        args += ["--enable-metrics", "false"]
    else:
        config = tmp_path / "config.yaml"
        config.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: quiet\n"
            "spec:\n  metric:\n    enabled: false\n"
        )
        args += ["--config", str(config)]
    sidecar = SidecarProcess(
        [resources(tmp_path / "resources")], app_id="quiet", home=tmp_path / "home", extra_args=args
    )
    try:
        sidecar.wait_ready()
        assert call("GET", f"{sidecar.http}/v1.0/healthz/outbound").status == 204
        assert not listening("127.0.0.1", port)
        assert "metrics off" in sidecar.output
    finally:
        sidecar.stop()
