"""Streaming subscriptions (``SubscribeTopicEventsAlpha1``) with the official SDK.

A publisher sidecar and a "streamer" sidecar share one ``pubsub.sqlite`` file.
The streamer's app (the HTTP test app) also has a programmatic subscription and
a declarative Subscription file, so the metadata API lists all three kinds.
The app-side of the stream is ``DaprClient().subscribe`` (iterator) and
``subscribe_with_handler``, exactly as an application would use them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.conf import settings
from dapr.proto import api_service_v1, api_v1

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).parent / "apps" / "pubsub_http_app.py"

DECLARATIVE = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: declared
spec:
  pubsubname: pubsub
  topic: declared-topic
  routes:
    default: /declared
  deadLetterTopic: declared-dead
scopes: [streamer]
"""


@dataclass
class System:
    publisher: SidecarProcess
    streamer: SidecarProcess

    def publish(self, topic: str, data: dict) -> None:
        url = f"{self.publisher.http}/v1.0/publish/pubsub/{topic}"
        headers = {"Content-Type": "application/json"}
        res = call("POST", url, data=json.dumps(data).encode(), headers=headers)
        assert res.status == 204

    def metadata(self) -> dict:
        res = call("GET", f"{self.streamer.http}/v1.0/metadata")
        assert res.status == 200
        return json.loads(res.body)

    def streaming(self) -> list[dict]:
        return [s for s in self.metadata().get("subscriptions", []) if s["type"] == "STREAMING"]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("pubsub-streaming")
    resources = root / "resources"
    resources.mkdir()
    broker = {"connectionString": str(root / "broker.db"), "redeliverInterval": "200ms"}
    (resources / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.sqlite", broker))
    (resources / "scoped.yaml").write_text(
        component_yaml(
            "scoped",
            "pubsub.sqlite",
            {**broker, "subscriptionScopes": "streamer=allowed"},
        )
    )
    (resources / "declared.yaml").write_text(DECLARATIVE)
    port = free_port()
    programmatic = [
        {
            "pubsubname": "pubsub",
            "topic": "programmatic-topic",
            "routes": {"rules": [{"match": 'event.type == "big"', "path": "/big"}]},
            "metadata": {"priority": "high"},
        }
    ]
    streamer = SidecarProcess(
        [resources],
        app_id="streamer",
        home=root / "home",
        extra_args=["--app-port", str(port)],
        command=[sys.executable, str(APP)],
        env={
            "APP_PORT": str(port),
            "RECORD_FILE": str(root / "deliveries.jsonl"),
            "SUBSCRIPTIONS": json.dumps(programmatic),
        },
    )
    publisher = SidecarProcess([resources], app_id="publisher", home=root / "home")
    try:
        streamer.wait_ready()
        publisher.wait_ready()
        wait_for(
            lambda: "subscribed to pubsub/programmatic-topic" in streamer.output,
            20,
            "the app's subscriptions",
        )
        yield System(publisher, streamer)
    finally:
        publisher.stop()
        streamer.stop()


@pytest.fixture
def client(system: System, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", system.streamer.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", system.streamer.grpc_port)
    with DaprClient(address=f"127.0.0.1:{system.streamer.grpc_port}") as c:
        yield c


def topic(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def data_of(message) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(message.raw_data())


def test_a_streamed_event_arrives_and_success_acknowledges_it(
    system: System, client: DaprClient
) -> None:
    t = topic("orders")
    sub = client.subscribe("pubsub", t)
    try:
        system.publish(t, {"n": 1})
        msg = next(sub)
        assert data_of(msg) == {"n": 1}
        assert (msg.topic(), msg.pubsub_name()) == (t, "pubsub")
        assert (msg.source(), msg.type()) == ("publisher", "com.dapr.event.sent")
        sub.respond_success(msg)
        system.publish(t, {"n": 2})
        # The acknowledged event does not come back: the next one is the second.
        msg2 = next(sub)
        assert data_of(msg2) == {"n": 2}
        sub.respond_success(msg2)
    finally:
        sub.close()


def test_retry_has_the_event_delivered_again(system: System, client: DaprClient) -> None:
    t = topic("retry")
    sub = client.subscribe("pubsub", t)
    try:
        system.publish(t, {"n": "again"})
        first = next(sub)
        sub.respond_retry(first)
        second = next(sub)
        assert second.id() == first.id()
        assert data_of(second) == {"n": "again"}
        sub.respond_success(second)
    finally:
        sub.close()


def test_drop_sends_the_event_to_the_dead_letter_topic(system: System, client: DaprClient) -> None:
    t, dead = topic("fragile"), topic("dead")
    dead_sub = client.subscribe("pubsub", dead)
    sub = client.subscribe("pubsub", t, dead_letter_topic=dead)
    try:
        system.publish(t, {"n": "poison"})
        msg = next(sub)
        sub.respond_drop(msg)
        dead_msg = next(dead_sub)
        assert data_of(dead_msg) == {"n": "poison"}
        assert dead_msg.id() == msg.id()
        dead_sub.respond_success(dead_msg)
    finally:
        sub.close()
        dead_sub.close()


def test_subscribe_with_handler_receives_and_answers(system: System, client: DaprClient) -> None:
    t = topic("handled")
    got: list[dict] = []
    seen = threading.Event()
    attempts: dict[str, int] = {}

    def handler(message) -> TopicEventResponse:  # type: ignore[no-untyped-def]
        attempts[message.id()] = attempts.get(message.id(), 0) + 1
        if attempts[message.id()] == 1:
            return TopicEventResponse("retry")  # the first try fails; the event comes back
        got.append(data_of(message))
        seen.set()
        return TopicEventResponse("success")

    close = client.subscribe_with_handler("pubsub", t, handler)
    try:
        system.publish(t, {"n": "handled"})
        assert seen.wait(20), "the handler never saw the redelivered event"
        assert got == [{"n": "handled"}]
        assert list(attempts.values()) == [2]
    finally:
        close()


def test_closing_the_stream_stops_delivery_and_keeps_later_events(
    system: System, client: DaprClient
) -> None:
    t = topic("closing")
    sub = client.subscribe("pubsub", t)
    wait_for(lambda: any(s["topic"] == t for s in system.streaming()), 10, "the stream listed")
    sub.close()
    # Logged once the component subscription is closed.
    closed = f"streaming subscription to pubsub/{t} closed"
    wait_for(lambda: closed in system.streamer.output, 10, "the component subscription closed")
    assert not any(s["topic"] == t for s in system.streaming())
    # Published while nobody streams: kept by the broker, delivered to the next stream.
    system.publish(t, {"n": "later"})
    time.sleep(0.5)
    again = client.subscribe("pubsub", t)
    try:
        msg = next(again)
        assert data_of(msg) == {"n": "later"}
        again.respond_success(msg)
    finally:
        again.close()


def _init_error(client: DaprClient, pubsub: str, t: str) -> grpc.RpcError:
    with pytest.raises(Exception) as info:
        client.subscribe(pubsub, t)
    cause = info.value.__cause__
    assert isinstance(cause, grpc.RpcError), info.value
    return cause


def test_a_stream_without_a_topic_is_invalid(client: DaprClient) -> None:
    err = _init_error(client, "pubsub", "")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "topic is required" in (err.details() or "")


def test_a_stream_on_an_unknown_pubsub_is_refused(client: DaprClient) -> None:
    err = _init_error(client, "nope", "t")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pubsub nope not found" in (err.details() or "")


def test_subscription_scopes_apply_to_streams(client: DaprClient) -> None:
    err = _init_error(client, "scoped", "forbidden")
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "forbidden" in (err.details() or "")
    allowed = client.subscribe("scoped", "allowed")
    allowed.close()


def test_metadata_lists_declarative_programmatic_and_streaming_subscriptions(
    system: System, client: DaprClient
) -> None:
    t = topic("listed")
    sub = client.subscribe("pubsub", t, metadata={"k": "v"}, dead_letter_topic="listed-dead")
    try:
        wait_for(lambda: any(s["topic"] == t for s in system.streaming()), 10, "the stream")
        subs = {s["topic"]: s for s in system.metadata()["subscriptions"]}
        assert subs["declared-topic"] == {
            "pubsubname": "pubsub",
            "topic": "declared-topic",
            "rules": [{"path": "/declared"}],
            "deadLetterTopic": "declared-dead",
            "type": "DECLARATIVE",
        }
        assert subs["programmatic-topic"] == {
            "pubsubname": "pubsub",
            "topic": "programmatic-topic",
            "metadata": {"priority": "high"},
            "rules": [{"match": 'event.type == "big"', "path": "/big"}],
            "deadLetterTopic": "",
            "type": "PROGRAMMATIC",
        }
        assert subs[t] == {
            "pubsubname": "pubsub",
            "topic": t,
            "metadata": {"k": "v"},
            "rules": [{"path": "/"}],
            "deadLetterTopic": "listed-dead",
            "type": "STREAMING",
        }
        # The same over gRPC, with the type as the enum number.
        with grpc.insecure_channel(f"127.0.0.1:{system.streamer.grpc_port}") as channel:
            stub = api_service_v1.DaprStub(channel)
            res = stub.GetMetadata(api_v1.GetMetadataRequest(), timeout=10)
        grpc_subs = {s.topic: s for s in res.subscriptions}
        assert grpc_subs[t].type == api_v1.STREAMING
        assert grpc_subs[t].dead_letter_topic == "listed-dead"
        assert dict(grpc_subs[t].metadata) == {"k": "v"}
        assert grpc_subs["declared-topic"].type == api_v1.DECLARATIVE
        rules = [(r.match, r.path) for r in grpc_subs["programmatic-topic"].rules.rules]
        assert rules == [('event.type == "big"', "/big")]
        assert grpc_subs["programmatic-topic"].type == api_v1.PROGRAMMATIC
    finally:
        sub.close()
