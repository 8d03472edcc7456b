"""Pub/sub across restarts and rules: a subscriber that was down, TTL, scopes, start-up errors.

Each test starts its own sidecars on a real broker and stops them.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.conformance.pubsub.conftest import _properties as broker_properties
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).parent / "apps" / "pubsub_http_app.py"


def resources_for(root: Path, broker: str, extra: dict[str, str] | None = None) -> Path:
    res = root / "resources"
    res.mkdir(parents=True, exist_ok=True)
    props = {**broker_properties(broker, root, uuid.uuid4().hex[:8]), **(extra or {})}
    (res / "pubsub.yaml").write_text(component_yaml("pubsub", broker, props))
    return res


def subscriber(root: Path, res: Path, topics: list[str], record: Path) -> SidecarProcess:
    port = free_port()
    subs = [{"pubsubname": "pubsub", "topic": t, "route": f"/{t}"} for t in topics]
    return SidecarProcess(
        [res],
        app_id="subscriber",
        home=root / "home",
        extra_args=["--app-port", str(port)],
        command=[sys.executable, str(APP)],
        env={"APP_PORT": str(port), "RECORD_FILE": str(record), "SUBSCRIPTIONS": json.dumps(subs)},
    )


def received(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line)["event"] for line in record.read_text().splitlines() if line]


def publish(sidecar: SidecarProcess, topic: str, data: object, query: str = "") -> int:
    return call(
        "POST",
        f"{sidecar.http}/v1.0/publish/pubsub/{topic}{query}",
        data=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    ).status


@pytest.mark.parametrize("broker", ["pubsub.sqlite", "pubsub.redis", "pubsub.rabbitmq"])
def test_a_subscriber_that_was_down_gets_what_was_published_meanwhile(
    broker: str, tmp_path: Path
) -> None:
    topic = f"down-{uuid.uuid4().hex[:8]}"
    res = resources_for(tmp_path, broker)
    record = tmp_path / "got.jsonl"
    sub = subscriber(tmp_path, res, [topic], record).wait_ready()
    pub = SidecarProcess([res], app_id="publisher", home=tmp_path / "home").wait_ready()
    try:
        wait_for(lambda: f"subscribed to pubsub/{topic}" in sub.output, 20, "subscribed")
        sub.stop()  # its group stays, with nobody reading it
        for i in range(5):
            assert publish(pub, topic, {"i": i}) == 204
        sub = subscriber(tmp_path, res, [topic], record).wait_ready()
        wait_for(lambda: len(received(record)) >= 5, 30, "the five messages")
        assert sorted(e["data"]["i"] for e in received(record)) == [0, 1, 2, 3, 4]
    finally:
        pub.stop()
        sub.stop()


@pytest.mark.parametrize("broker", ["pubsub.sqlite", "pubsub.redis"])
def test_expired_messages_are_not_delivered(broker: str, tmp_path: Path) -> None:
    """sqlite expires natively; redis has no TTL, so the subscriber sidecar checks `expiration`."""
    topic = f"ttl-{uuid.uuid4().hex[:8]}"
    res = resources_for(tmp_path, broker)
    record = tmp_path / "got.jsonl"
    sub = subscriber(tmp_path, res, [topic], record).wait_ready()
    pub = SidecarProcess([res], app_id="publisher", home=tmp_path / "home").wait_ready()
    try:
        wait_for(lambda: f"subscribed to pubsub/{topic}" in sub.output, 20, "subscribed")
        sub.stop()
        assert publish(pub, topic, {"m": "short"}, "?metadata.ttlInSeconds=1") == 204
        assert publish(pub, topic, {"m": "kept"}) == 204
        time.sleep(1.5)
        sub = subscriber(tmp_path, res, [topic], record).wait_ready()
        wait_for(lambda: any(e["data"]["m"] == "kept" for e in received(record)), 30, "kept")
        time.sleep(0.5)
        assert [e["data"]["m"] for e in received(record)] == ["kept"]
        bad = call("POST", f"{pub.http}/v1.0/publish/pubsub/{topic}?metadata.ttlInSeconds=-3")
        assert bad.status == 400 and b"ttlInSeconds" in bad.body
    finally:
        pub.stop()
        sub.stop()


def test_topic_scopes_limit_publishing_and_subscribing(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ok, secret, closed = f"ok-{run}", f"secret-{run}", f"closed-{run}"
    scopes = {
        "allowedTopics": f"{ok},{secret}",
        "protectedTopics": secret,
        "publishingScopes": f"publisher={ok}",
        "subscriptionScopes": f"subscriber={ok}",
    }
    res = resources_for(tmp_path, "pubsub.sqlite", scopes)
    record = tmp_path / "got.jsonl"
    sub = subscriber(tmp_path, res, [ok, secret], record).wait_ready()
    pub = SidecarProcess([res], app_id="publisher", home=tmp_path / "home").wait_ready()
    try:
        wait_for(lambda: f"subscribed to pubsub/{ok}" in sub.output, 20, "subscribed")
        assert f"subscribed to pubsub/{secret}" not in sub.output
        assert "subscriptionScopes forbid it" in sub.output
        assert publish(pub, ok, {"m": 1}) == 204
        denied = call("POST", f"{pub.http}/v1.0/publish/pubsub/{secret}", data=b"{}")
        assert denied.status == 403 and b"ERR_PUBSUB_FORBIDDEN" in denied.body
        outside = call("POST", f"{pub.http}/v1.0/publish/pubsub/{closed}", data=b"{}")
        assert outside.status == 403
        wait_for(lambda: received(record), 20, "the allowed message")
    finally:
        pub.stop()
        sub.stop()


def test_an_invalid_routing_rule_stops_start_up_naming_it(tmp_path: Path) -> None:
    res = resources_for(tmp_path, "pubsub.sqlite")
    (res / "sub.yaml").write_text(
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: broken}\n"
        "spec:\n  pubsubname: pubsub\n  topic: t\n  routes:\n    rules:\n"
        "      - {match: 'event.type == ', path: /x}\n"
    )
    proc = SidecarProcess([res], app_id="x", home=tmp_path / "home")
    try:
        assert proc.wait_exit(30) == 1
        assert "sub.yaml" in proc.output and "broken" in proc.output
        assert "routes.rules[0].match" in proc.output
    finally:
        proc.stop()


def test_a_garbage_answer_counts_as_success_and_is_not_redelivered(tmp_path: Path) -> None:
    topic = f"garbage-{uuid.uuid4().hex[:8]}"
    res = resources_for(tmp_path, "pubsub.sqlite")
    record = tmp_path / "got.jsonl"
    sub = subscriber(tmp_path, res, [topic], record).wait_ready()
    pub = SidecarProcess([res], app_id="publisher", home=tmp_path / "home").wait_ready()
    try:
        wait_for(lambda: f"subscribed to pubsub/{topic}" in sub.output, 20, "subscribed")
        assert publish(pub, topic, {"answer": "garbage"}) == 204
        wait_for(lambda: received(record), 20, "the delivery")
        time.sleep(1.0)  # well past the 50 ms redelivery interval of the test broker
        assert len(received(record)) == 1
    finally:
        pub.stop()
        sub.stop()


def test_a_subscription_that_cannot_start_does_not_keep_the_others_down(tmp_path: Path) -> None:
    import redis

    from tests.services import REDIS_HOST

    run = uuid.uuid4().hex[:8]
    broken, fine = f"notastream-{run}", f"fine-{run}"
    host, _, port = REDIS_HOST.partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    client.set(broken, "a plain string key, so no consumer group can be made on it")
    res = resources_for(tmp_path, "pubsub.redis")
    record = tmp_path / "got.jsonl"
    sub = subscriber(tmp_path, res, [broken, fine], record)
    pub = SidecarProcess([res], app_id="publisher", home=tmp_path / "home")
    try:
        sub.wait_ready()
        pub.wait_ready()
        wait_for(lambda: f"subscribed to pubsub/{fine}" in sub.output, 20, "the good one")
        assert f"subscription to pubsub/{broken} could not start" in sub.output
        assert call("GET", f"{sub.http}/v1.0/healthz").status == 204
        assert publish(pub, fine, {"m": 1}) == 204
        wait_for(lambda: received(record), 20, "the message on the good topic")
    finally:
        pub.stop()
        sub.stop()
        client.delete(broken, fine)
