"""MQTT and RabbitMQ bindings through real sidecars into real apps.

The app's sidecar publishes through the binding's output side; the same
binding's input side delivers each message to the app. The HTTP app refuses
the first deliveries and still receives every message; the gRPC app is built
with the official SDK's ``dapr.ext.grpc``.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.services import MQTT_URL, RABBITMQ_URL

APPS = Path(__file__).parent / "apps"


def records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def broker_component(kind: str, run: str) -> tuple[str, dict[str, str]]:
    if kind == "mqtt":
        return "bindings.mqtt3", {
            "url": MQTT_URL,
            "topic": f"daprlite/it/{run}",
            "consumerID": f"it-{run}",
            "qos": "1",
        }
    return "bindings.rabbitmq", {
        "host": RABBITMQ_URL,
        "queueName": f"it-{run}",
        "durable": "false",
        "deleteWhenUnused": "true",
    }


@pytest.mark.parametrize("kind", ["mqtt", "rabbitmq"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_messages_published_through_the_sidecar_reach_the_app(
    tmp_path: Path, kind: str, protocol: str
) -> None:
    run = uuid.uuid4().hex[:10]
    ctype, meta = broker_component(kind, run)
    res = tmp_path / "res"
    res.mkdir()
    (res / "broker.yaml").write_text(component_yaml("events", ctype, meta))
    record = tmp_path / "events.jsonl"
    port = free_port()
    app = "binding_http_app.py" if protocol == "http" else "binding_grpc_app.py"
    sc = SidecarProcess(
        [res],
        f"broker-{protocol}",
        tmp_path / "home",
        extra_args=["--app-port", str(port), "--app-protocol", protocol],
        command=[sys.executable, str(APPS / app)],
        env={
            "APP_PORT": str(port),
            "RECORD_FILE": str(record),
            "ROUTES": "events",
            "BINDINGS": "events",
            "FAIL_FIRST": "2",
            "PYTHONWARNINGS": "ignore",
        },
    )
    try:
        sc.wait_ready()
        wait_for(lambda: call("GET", f"{sc.http}/v1.0/healthz").status == 204, 20, "ready")
        for i in range(5):
            r = call(
                "POST",
                f"{sc.http}/v1.0/bindings/events",
                json={"operation": "create", "data": {"n": i}},
            )
            assert r.status in (200, 204), r.body
        wait_for(
            lambda: len({json.loads(str(x["body"]))["n"] for x in records(record)}) == 5,
            30,
            f"all 5 messages at the {protocol} app:\n{sc.output}",
        )
    finally:
        sc.stop()
