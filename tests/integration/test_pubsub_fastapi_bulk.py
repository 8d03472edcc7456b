"""Subscribers built with the SDK's app extensions, and bulk subscribe delivery.

- A FastAPI app using ``dapr.ext.fastapi.DaprApp``: the sidecar reads the
  ``/dapr/subscribe`` the SDK generates and delivers to its routes.
- Bulk subscriptions (declarative, ``bulkSubscribe.enabled``): batches of at
  most ``maxMessagesCount`` go to an HTTP app (``POST`` with the bulk
  envelope) and to a ``dapr.ext.grpc`` app (``OnBulkTopicEvent``, or
  ``OnBulkTopicEventAlpha1`` when the app lacks the stable RPC); every entry's
  status decides that message alone: SUCCESS acks, RETRY or no status
  redelivers, DROP goes to the dead-letter topic.

Each sidecar has its own ``pubsub.sqlite`` broker and publishes to itself; an
inbound retry policy on the component retries a message once before its
failure counts (and sends it to the dead-letter topic).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APPS = Path(__file__).parent / "apps"
JSON = {"Content-Type": "application/json"}

BULK_SUBSCRIPTION = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: {name}
spec:
  pubsubname: pubsub
  topic: {topic}
  routes:
    default: {route}
  deadLetterTopic: poison
  bulkSubscribe:
    enabled: true
    maxMessagesCount: {count}
    maxAwaitDurationMs: 500
"""

# One inbound retry: an entry answered RETRY (or left without a status) is
# delivered again, in a later batch, before it would go to the dead-letter topic.
RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: pubsub-inbound
spec:
  policies:
    retries:
      once: {policy: constant, duration: 50ms, maxRetries: 1}
  targets:
    components:
      pubsub:
        inbound: {retry: once}
"""


@dataclass
class Subscriber:
    sidecar: SidecarProcess
    record: Path
    alpha_only: bool = False  # the gRPC app answers OnBulkTopicEvent UNIMPLEMENTED

    def lines(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def bulk_publish(self, topic: str, marker: str, answers: list[str]) -> list[str]:
        """Publish one event per answer in one request; returns the ``tag`` of each."""
        tags = [f"{marker}-{i}" for i in range(len(answers))]
        entries = [
            {
                "entryId": tag,
                "event": {"m": marker, "tag": tag, "answer": answer},
                "contentType": "application/json",
            }
            for tag, answer in zip(tags, answers, strict=True)
        ]
        url = f"{self.sidecar.http}/v1.0-alpha1/publish/bulk/pubsub/{topic}"
        assert call("POST", url, json=entries, headers=JSON).status == 204
        return tags


def start(
    root: Path, app: str, app_id: str, subscription: str, grpc: bool, env: dict[str, str]
) -> Subscriber:
    resources = root / "resources"
    resources.mkdir(parents=True)
    (resources / "pubsub.yaml").write_text(
        component_yaml(
            "pubsub",
            "pubsub.sqlite",
            {"connectionString": str(root / "broker.db"), "redeliverInterval": "200ms"},
        )
    )
    (resources / "bulk.yaml").write_text(subscription)
    (resources / "resiliency.yaml").write_text(RESILIENCY)
    record = root / "record.jsonl"
    port = free_port()
    sidecar = SidecarProcess(
        [resources],
        app_id=app_id,
        home=root / "home",
        extra_args=["--app-port", str(port)] + (["--app-protocol", "grpc"] if grpc else []),
        command=[sys.executable, str(APPS / app)],
        env={"APP_PORT": str(port), "RECORD_FILE": str(record), **env},
    )
    try:
        sidecar.wait_ready()
        wait_for(lambda: "subscribed to pubsub/" in sidecar.output, 20, "the subscriptions")
    except BaseException:
        sidecar.stop()
        raise
    return Subscriber(sidecar, record)


@pytest.fixture(scope="module")
def fastapi_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subscriber]:
    root = tmp_path_factory.mktemp("pubsub-fastapi")
    sub = BULK_SUBSCRIPTION.format(name="bulk-sub", topic="bulk", route="/bulk", count=4)
    subscriber = start(root, "pubsub_fastapi_app.py", "fastapi-subscriber", sub, False, {})
    try:
        wait_for(lambda: "subscribed to pubsub/poison" in subscriber.sidecar.output, 20, "poison")
        yield subscriber
    finally:
        subscriber.sidecar.stop()


@pytest.fixture(scope="module", params=["stable", "alpha-only"])
def grpc_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Subscriber]:
    root = tmp_path_factory.mktemp(f"pubsub-grpc-bulk-{request.param}")
    # The route is the topic: the SDK finds a handler by (pubsub, path) = (pubsub, topic).
    sub = BULK_SUBSCRIPTION.format(name="gbulk-sub", topic="gbulk", route="gbulk", count=10)
    env = {"ALPHA_ONLY": "1" if request.param == "alpha-only" else "0"}
    subscriber = start(root, "pubsub_grpc_bulk_app.py", "grpc-bulk-subscriber", sub, True, env)
    subscriber.alpha_only = request.param == "alpha-only"
    try:
        yield subscriber
    finally:
        subscriber.sidecar.stop()


def test_a_fastapi_daprapp_subscriber_receives_events(fastapi_app: Subscriber) -> None:
    marker = uuid.uuid4().hex
    url = f"{fastapi_app.sidecar.http}/v1.0/publish/pubsub/orders"
    assert call("POST", url, json={"m": marker}, headers=JSON).status == 204

    def got() -> list[dict]:
        return [
            e
            for e in fastapi_app.lines()
            if e["kind"] == "event" and e["event"].get("data", {}).get("m") == marker
        ]

    wait_for(lambda: bool(got()), 20, "the event at the SDK's generated route")
    (entry,) = got()
    assert entry["path"] == "/events/pubsub/orders"  # DaprApp's default route
    assert entry["content_type"] == "application/cloudevents+json"
    assert entry["event"]["type"] == "com.dapr.event.sent"
    assert entry["event"]["topic"] == "orders"


def _bulk_entries(app: Subscriber, marker: str) -> list[tuple[dict, dict]]:
    """(request, entry) of every bulk entry that carries ``marker``."""
    out = []
    for line in app.lines():
        if line["kind"] != "bulk":
            continue
        for entry in line["request"]["entries"]:
            if entry["event"]["data"]["m"] == marker:
                out.append((line, entry))
    return out


def test_bulk_delivery_to_an_http_app_honours_each_entrys_status(fastapi_app: Subscriber) -> None:
    marker = uuid.uuid4().hex
    answers = ["SUCCESS", "RETRY", "SUCCESS", "NONE", "DROP", "SUCCESS", "SUCCESS"]
    tags = fastapi_app.bulk_publish("bulk", marker, answers)
    ok, retry, none, drop = tags[0], tags[1], tags[3], tags[4]

    def count(tag: str) -> int:
        return sum(e["event"]["data"]["tag"] == tag for _, e in _bulk_entries(fastapi_app, marker))

    def dead_lettered() -> list[dict]:
        return [
            e["event"]
            for e in fastapi_app.lines()
            if e["kind"] == "event"
            and e["path"] == "/events/pubsub/poison"
            and e["event"]["data"].get("m") == marker
        ]

    wait_for(
        lambda: count(retry) >= 2 and count(none) >= 2 and dead_lettered(),
        20,
        "the redeliveries and the dead letter",
    )
    # Everything answered SUCCESS or DROP was delivered exactly once.
    for tag, answer in zip(tags, answers, strict=True):
        if answer in ("SUCCESS", "DROP"):
            assert count(tag) == 1, (tag, answer)
    assert count(retry) == 2 and count(none) == 2 and count(ok) == 1
    assert [e["data"]["tag"] for e in dead_lettered()] == [drop]

    requests = {id(r): r for r, _ in _bulk_entries(fastapi_app, marker)}.values()
    sizes = [len(r["request"]["entries"]) for r in requests]
    assert max(sizes) > 1, f"no batching: {sizes}"
    assert max(sizes) <= 4  # maxMessagesCount
    for r in requests:
        assert r["content_type"] == "application/json"
        body = r["request"]
        assert body["type"] == "com.dapr.event.sent.bulk"
        assert (body["topic"], body["pubsubname"]) == ("bulk", "pubsub")
        assert body["id"] and isinstance(body["metadata"], dict)
        for entry in body["entries"]:
            assert entry["entryId"] and entry["contentType"] == "application/cloudevents+json"
            assert entry["event"]["type"] == "com.dapr.event.sent"
            assert isinstance(entry["metadata"], dict)


def test_bulk_delivery_to_an_sdk_grpc_app(grpc_app: Subscriber) -> None:
    marker = uuid.uuid4().hex
    answers = ["SUCCESS", "RETRY", "RAISE", "DROP", "SUCCESS"]
    tags = grpc_app.bulk_publish("gbulk", marker, answers)

    def calls(tag: str) -> int:
        return sum(
            isinstance(e.get("data"), dict) and e["data"].get("tag") == tag
            for e in grpc_app.lines()
        )

    wait_for(lambda: calls(tags[1]) >= 2 and calls(tags[2]) >= 2, 20, "the redeliveries")
    wait_for(lambda: all(calls(t) >= 1 for t in tags), 20, "every entry")
    assert [calls(t) for t in tags] == [1, 2, 2, 1, 1]
    rpcs = [e["rpc"].rsplit("/", 1)[1] for e in grpc_app.lines() if "rpc" in e]
    assert "OnTopicEvent" not in rpcs  # a bulk subscription is never delivered one by one
    assert "OnBulkTopicEvent" in rpcs  # always tried first
    assert ("OnBulkTopicEventAlpha1" in rpcs) is grpc_app.alpha_only
