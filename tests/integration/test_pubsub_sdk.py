"""Pub/sub with the official SDK on both ends: DaprClient publishes over gRPC, a
``dapr-ext-grpc`` App subscribes (``ListTopicSubscriptions`` / ``OnTopicEvent``)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.conf import settings

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for

APP = Path(__file__).parent / "apps" / "pubsub_grpc_app.py"


@pytest.fixture(scope="module")
def sidecars(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SidecarProcess, SidecarProcess, Path]]:
    root = tmp_path_factory.mktemp("pubsub-sdk")
    resources = root / "resources"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(
        component_yaml(
            "pubsub",
            "pubsub.sqlite",
            {"connectionString": str(root / "broker.db"), "redeliverInterval": "200ms"},
        )
    )
    record = root / "events.jsonl"
    port = free_port()
    subscriber = SidecarProcess(
        [resources],
        app_id="grpc-subscriber",
        home=root / "home",
        extra_args=["--app-port", str(port), "--app-protocol", "grpc"],
        command=[sys.executable, str(APP)],
        env={"APP_PORT": str(port), "RECORD_FILE": str(record)},
    )
    publisher = SidecarProcess([resources], app_id="sdk-publisher", home=root / "home")
    try:
        subscriber.wait_ready()
        publisher.wait_ready()
        wait_for(lambda: "subscribed to pubsub/routed" in subscriber.output, 20, "subscriptions")
        yield publisher, subscriber, record
    finally:
        publisher.stop()
        subscriber.stop()


@pytest.fixture
def client(sidecars, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:  # type: ignore[no-untyped-def]
    publisher = sidecars[0]
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", publisher.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", publisher.grpc_port)
    with DaprClient(address=f"127.0.0.1:{publisher.grpc_port}") as c:
        yield c


def events(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def test_sdk_publish_reaches_an_sdk_grpc_app(sidecars, client: DaprClient) -> None:  # type: ignore[no-untyped-def]
    record = sidecars[2]
    marker = uuid.uuid4().hex
    client.publish_event(
        "pubsub", "orders", json.dumps({"m": marker}), data_content_type="application/json"
    )
    wait_for(lambda: any(marker in e["data"] for e in events(record)), 20, "the event")
    got = next(e for e in events(record) if marker in e["data"])
    assert got["topic"] == "orders" and got["type"] == "com.dapr.event.sent"


def test_a_retry_from_the_app_is_redelivered(sidecars, client: DaprClient) -> None:  # type: ignore[no-untyped-def]
    record = sidecars[2]
    marker = uuid.uuid4().hex
    client.publish_event(
        "pubsub",
        "orders",
        json.dumps({"m": marker, "fail": True}),
        data_content_type="application/json",
    )
    wait_for(lambda: sum(marker in e["data"] for e in events(record)) >= 2, 20, "the redelivery")


def test_routing_rules_of_an_sdk_app(sidecars, client: DaprClient) -> None:  # type: ignore[no-untyped-def]
    record = sidecars[2]
    marker = uuid.uuid4().hex
    client.publish_event(
        "pubsub",
        "routed",
        json.dumps({"m": marker}),
        data_content_type="application/json",
        publish_metadata={"cloudevent.type": "big"},
    )
    wait_for(lambda: any(marker in e["data"] for e in events(record)), 20, "the routed event")
    got = next(e for e in events(record) if marker in e["data"])
    assert got["path"] == "big" and got["type"] == "big"


def test_sdk_bulk_publish(sidecars, client: DaprClient) -> None:  # type: ignore[no-untyped-def]
    record = sidecars[2]
    marker = uuid.uuid4().hex
    res = client.publish_events(
        "pubsub",
        "orders",
        [json.dumps({"m": marker, "i": i}) for i in range(5)],
        data_content_type="application/json",
    )
    assert res.failed_entries == []
    wait_for(lambda: sum(marker in e["data"] for e in events(record)) >= 5, 20, "five events")


def test_sdk_publish_to_an_unknown_pubsub_is_an_error(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as err:
        client.publish_event("nope", "orders", "x")
    assert err.value.error_code() == "DAPR_PUBSUB_NOT_FOUND"  # the ErrorInfo reason, as Dapr
