"""Pub/sub end to end: a publishing sidecar and a subscribing sidecar + HTTP app.

The two sidecars are separate processes that share one broker: the embedded
SQLite file (``pubsub.sqlite``, as on a laptop with nothing installed), Redis
Streams, NATS JetStream, RabbitMQ and MQTT, each a real server.
Subscriptions come from the app (``/dapr/subscribe``, v1 and v2 with routing
rules) and from a declarative Subscription file.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.conformance.pubsub.conftest import _properties as broker_properties
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).parent / "apps" / "pubsub_http_app.py"

BROKERS = ["pubsub.sqlite", "pubsub.redis", "pubsub.jetstream", "pubsub.rabbitmq", "pubsub.mqtt3"]


def subscriptions(t: Callable[[str], str]) -> list[dict]:
    return [
        {"pubsubname": "pubsub", "topic": t("orders"), "route": "/orders"},
        {
            "pubsubname": "pubsub",
            "topic": t("routed"),
            "routes": {
                "rules": [
                    {"match": 'event.type == "big"', "path": "/big"},
                    {"match": "event.data.amount > 100", "path": "/large"},
                ],
                "default": "/small",
            },
        },
        {
            "pubsubname": "pubsub",
            "topic": t("fragile"),
            "route": "/fragile",
            "deadLetterTopic": t("poison"),
        },
        {"pubsubname": "pubsub", "topic": t("poison"), "route": "/poison"},
        {
            "pubsubname": "pubsub",
            "topic": t("raw"),
            "route": "/raw",
            "metadata": {"rawPayload": "true"},
        },
    ]


DECLARATIVE = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: audit-sub
spec:
  pubsubname: pubsub
  topic: {topic}
  routes:
    default: /audit
scopes: [subscriber]
"""


@dataclass
class System:
    publisher: SidecarProcess
    subscriber: SidecarProcess
    record: Path
    run: str

    def t(self, name: str) -> str:
        return f"it-{self.run}-{name}"

    def publish(
        self, topic: str, body: bytes, content_type: str = "application/json", query: str = ""
    ) -> int:
        url = f"{self.publisher.http}/v1.0/publish/pubsub/{self.t(topic)}{query}"
        return call("POST", url, data=body, headers={"Content-Type": content_type}).status

    def deliveries(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def wait(self, predicate, what: str, timeout: float = 20) -> list[dict]:  # type: ignore[no-untyped-def]
        wait_for(lambda: predicate(self.deliveries()), timeout, what)
        return self.deliveries()


@pytest.fixture(scope="module", params=BROKERS)
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    broker: str = request.param
    run = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp(broker.replace(".", "-"))
    resources = root / "resources"
    resources.mkdir()
    properties = broker_properties(broker, root, run)
    (resources / "pubsub.yaml").write_text(component_yaml("pubsub", broker, properties))
    record = root / "deliveries.jsonl"
    system_ = System(None, None, record, run)  # type: ignore[arg-type]
    (resources / "audit.yaml").write_text(DECLARATIVE.format(topic=system_.t("audit")))
    port = free_port()
    subscriber = SidecarProcess(
        [resources],
        app_id="subscriber",
        home=root / "home",
        extra_args=["--app-port", str(port)],
        command=[sys.executable, str(APP)],
        env={
            "APP_PORT": str(port),
            "RECORD_FILE": str(record),
            "SUBSCRIPTIONS": json.dumps(subscriptions(system_.t)),
        },
    )
    publisher = SidecarProcess([resources], app_id="publisher", home=root / "home")
    system_.publisher, system_.subscriber = publisher, subscriber
    try:
        subscriber.wait_ready()
        publisher.wait_ready()
        wait_for(
            lambda: f"subscribed to pubsub/{system_.t('audit')}" in subscriber.output,
            20,
            "subscriptions",
        )
        yield system_
    finally:
        publisher.stop()
        subscriber.stop()


def by_id(deliveries: list[dict], marker: str) -> list[dict]:
    return [d for d in deliveries if marker in json.dumps(d["event"])]


def test_a_published_event_reaches_the_subscriber_as_a_cloudevent(system: System) -> None:
    marker = uuid.uuid4().hex
    assert system.publish("orders", json.dumps({"marker": marker, "n": 1}).encode()) == 204
    got = by_id(system.wait(lambda d: by_id(d, marker), "the order event"), marker)[0]
    event = got["event"]
    assert got["path"] == "/orders"
    assert got["headers"]["Content-Type"] == "application/cloudevents+json"
    assert got["headers"]["pubsubname"] == "pubsub"
    assert event["data"] == {"marker": marker, "n": 1}
    assert (event["topic"], event["pubsubname"], event["source"]) == (
        system.t("orders"),
        "pubsub",
        "publisher",
    )
    assert (event["specversion"], event["type"]) == ("1.0", "com.dapr.event.sent")


def test_routing_rules_pick_the_path(system: System) -> None:
    marker = uuid.uuid4().hex
    ce = {
        "specversion": "1.0",
        "id": marker + "-big",
        "source": "t",
        "type": "big",
        "data": {"m": marker},
    }
    system.publish("routed", json.dumps(ce).encode(), "application/cloudevents+json")
    system.publish("routed", json.dumps({"m": marker, "amount": 500}).encode())
    system.publish("routed", json.dumps({"m": marker, "amount": 5}).encode())
    got = system.wait(lambda d: len(by_id(d, marker)) >= 3, "three routed events")
    paths = sorted(d["path"] for d in by_id(got, marker))
    assert paths == ["/big", "/large", "/small"]


def test_retry_answers_are_redelivered_until_success(system: System) -> None:
    marker = uuid.uuid4().hex
    system.publish("orders", json.dumps({"m": marker, "answer": "RETRY", "times": 2}).encode())
    system.wait(lambda d: len(by_id(d, marker)) >= 3, "two retries then success")


def test_drop_goes_to_the_dead_letter_topic(system: System) -> None:
    marker = uuid.uuid4().hex
    system.publish("fragile", json.dumps({"m": marker, "answer": "DROP"}).encode())
    got = system.wait(
        lambda d: any(x["path"] == "/poison" for x in by_id(d, marker)), "the dead letter"
    )
    poison = next(d for d in by_id(got, marker) if d["path"] == "/poison")
    assert poison["event"]["data"]["m"] == marker


def test_a_raw_payload_subscription_gets_the_bytes_wrapped(system: System) -> None:
    assert (
        system.publish(
            "raw", b"\x00raw-bytes", "application/octet-stream", "?metadata.rawPayload=true"
        )
        == 204
    )
    got = system.wait(lambda d: any(x["path"] == "/raw" for x in d), "the raw event")
    event = next(d for d in got if d["path"] == "/raw")["event"]

    assert base64.b64decode(event["data_base64"]) == b"\x00raw-bytes"


def test_declarative_subscriptions_are_delivered(system: System) -> None:
    marker = uuid.uuid4().hex
    system.publish("audit", json.dumps({"m": marker}).encode())
    got = system.wait(lambda d: by_id(d, marker), "the audit event")
    assert by_id(got, marker)[0]["path"] == "/audit"


def test_publish_errors(system: System) -> None:
    base = f"{system.publisher.http}/v1.0/publish"
    unknown = call("POST", f"{base}/nope/t", data=b"x")
    assert unknown.status == 404 and b"ERR_PUBSUB_NOT_FOUND" in unknown.body
    bad_raw = call("POST", f"{base}/pubsub/t?metadata.rawPayload=maybe", data=b"x")
    assert bad_raw.status == 400 and b"rawPayload" in bad_raw.body
    not_ce = call(
        "POST",
        f"{base}/pubsub/t",
        data=b"[1]",
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert not_ce.status == 400 and b"ERR_PUBSUB_CLOUD_EVENTS_SER" in not_ce.body
    bulk = call("POST", f"{base}/bulk/pubsub/t", data=b'[{"event": 1}]')
    assert bulk.status == 400 and b"entryId" in bulk.body
