"""``pubsub.mqtt3`` beyond the shared suite: settings, in-process retries, sessions, no metadata.

Runs against the Mosquitto that ``scripts/services.sh mosquitto`` brings up
on 127.0.0.1:1883. Every test uses its own topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import Feature, Message, PublishRequest, SubscribeRequest
from daprlite.components.pubsub.mqtt3 import MQTTPubSub
from daprlite.components.registry import Registry
from tests.services import MQTT_URL

WAIT = 10.0


def topic() -> str:
    return f"mqtt-ps/{uuid.uuid4().hex[:10]}"


class Inbox:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.deliveries: list[Message] = []
        self.accepted: asyncio.Queue[Message] = asyncio.Queue()

    async def __call__(self, msg: Message) -> None:
        self.deliveries.append(msg)
        if len(self.deliveries) <= self.failures:
            raise RuntimeError("failing on purpose")
        await self.accepted.put(msg)

    async def next(self) -> Message:
        return await asyncio.wait_for(self.accepted.get(), WAIT)


@asynccontextmanager
async def opened(**props: str) -> AsyncIterator[MQTTPubSub]:
    ps = MQTTPubSub()
    base = {"url": MQTT_URL, "backOffInitialInterval": "50ms", "backOffMaxInterval": "200ms"}
    await ps.init(
        ComponentMetadata("mqtt", "pubsub.mqtt3", properties={**base, **props}, app_id="mqtt-test")
    )
    try:
        yield ps
    finally:
        await asyncio.wait_for(ps.close(), WAIT)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({}, "url"),
        ({"url": "http://localhost:1883"}, "url"),
        ({"url": "tcp://localhost:port"}, "url"),
        ({"url": MQTT_URL, "qos": "3"}, "qos"),
        ({"url": MQTT_URL, "concurrency": "0"}, "concurrency"),
        ({"url": MQTT_URL, "retain": "sometimes"}, "retain"),
        ({"url": MQTT_URL, "backOffInitialInterval": "0s"}, "backOffInitialInterval"),
        (
            {"url": MQTT_URL, "backOffInitialInterval": "2s", "backOffMaxInterval": "1s"},
            "backOffMaxInterval",
        ),
        ({"url": MQTT_URL, "clientCert": "cert.pem"}, "clientKey"),
    ],
)
async def test_bad_settings_fail_init_naming_the_key(props: dict[str, str], field: str) -> None:
    with pytest.raises(MetadataError) as info:
        await MQTTPubSub().init(ComponentMetadata("mqtt", "pubsub.mqtt3", properties=props))
    assert info.value.field == field


def test_mqtt_is_an_alias_of_mqtt3() -> None:
    assert Registry().resolve("pubsub.mqtt") is Registry().resolve("pubsub.mqtt3") is MQTTPubSub


async def test_publishing_to_a_wildcard_topic_names_the_key() -> None:
    async with opened() as ps:
        with pytest.raises(MetadataError) as info:
            await ps.publish(PublishRequest("a/+/b", b"x"))
        assert info.value.field == "topic"


async def test_wildcard_subscriptions_receive_matching_topics() -> None:
    base = topic()
    async with opened() as ps:
        assert Feature.SUBSCRIBE_WILDCARDS in ps.features()
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(f"{base}/+", "g"), inbox)
        await ps.publish(PublishRequest(f"{base}/x", b"1"))
        msg = await inbox.next()
        assert (msg.topic, msg.data) == (f"{base}/x", b"1")
        await sub.close()


async def test_metadata_and_content_type_do_not_travel_over_mqtt3() -> None:
    t = topic()
    async with opened() as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(t, "g"), inbox)
        await ps.publish(PublishRequest(t, b"{}", "application/json", {"traceparent": "00"}))
        msg = await inbox.next()
        assert (msg.data, dict(msg.metadata), msg.content_type) == (b"{}", {}, "")
        await sub.close()


async def test_a_failing_handler_is_retried_in_process_and_acked_after_success() -> None:
    t = topic()
    async with opened(consumerID="retry-app") as ps:
        inbox = Inbox(failures=3)
        sub = await ps.subscribe(SubscribeRequest(t, "g"), inbox)
        await ps.publish(PublishRequest(t, b"stubborn"))
        assert (await inbox.next()).data == b"stubborn"
        assert [m.data for m in inbox.deliveries] == [b"stubborn"] * 4
        await sub.close()
    # Acknowledged once accepted: the group's session does not get it again.
    async with opened(consumerID="retry-app") as ps:
        again = Inbox()
        sub = await ps.subscribe(SubscribeRequest(t, "g"), again)
        await ps.publish(PublishRequest(t, b"next"))
        assert (await again.next()).data == b"next"
        assert [m.data for m in again.deliveries] == [b"next"]
        await sub.close()


async def test_a_message_left_unaccepted_at_close_comes_back_to_the_group() -> None:
    t = topic()
    async with opened(consumerID="away-app") as ps:
        refusing = Inbox(failures=10**6)
        sub = await ps.subscribe(SubscribeRequest(t, "g"), refusing)
        await ps.publish(PublishRequest(t, b"unfinished"))
        async with asyncio.timeout(WAIT):
            while len(refusing.deliveries) < 2:
                await asyncio.sleep(0.02)
        await sub.close()
    async with opened(consumerID="away-app") as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(t, "g"), inbox)
        assert (await inbox.next()).data == b"unfinished"
        await sub.close()


async def test_subscribers_of_one_group_in_one_process_use_distinct_sessions() -> None:
    t = topic()
    async with opened(consumerID="twin") as a, opened(consumerID="twin") as b:
        first, second = Inbox(), Inbox()
        sub1 = await a.subscribe(SubscribeRequest(t, "g"), first)
        sub2 = await b.subscribe(SubscribeRequest(t, "g"), second)
        for i in range(20):
            await a.publish(PublishRequest(t, str(i).encode()))
        got: set[bytes] = set()
        async with asyncio.timeout(WAIT):
            while len(got) < 20:
                await asyncio.sleep(0.05)
                for inbox in (first, second):
                    while not inbox.accepted.empty():
                        got.add(inbox.accepted.get_nowait().data)
        # Both stayed connected and shared the work (no take-over loop).
        assert first.deliveries and second.deliveries
        assert len(first.deliveries) + len(second.deliveries) == 20
        await sub1.close()
        await sub2.close()


async def test_messages_are_handled_concurrently_and_all_acknowledged_once() -> None:
    """A slow handler no longer holds up the queue; every message is still acked exactly once."""
    t = topic()
    in_flight = peak = 0
    done: list[bytes] = []

    async def slow(msg: Message) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        done.append(msg.data)

    items = [f"m{i}".encode() for i in range(8)]
    async with opened(consumerID="busy-app", concurrency="4") as ps:
        sub = await ps.subscribe(SubscribeRequest(t, "g"), slow)
        for data in items:
            await ps.publish(PublishRequest(t, data))
        async with asyncio.timeout(WAIT):
            while len(done) < len(items):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the last acknowledgements go out
        await sub.close()
    assert sorted(done) == sorted(items) and 1 < peak <= 4
    # Every message was acknowledged: the group's session has nothing left to replay.
    async with opened(consumerID="busy-app") as ps:
        again = Inbox()
        sub = await ps.subscribe(SubscribeRequest(t, "g"), again)
        await ps.publish(PublishRequest(t, b"after"))
        assert (await again.next()).data == b"after"
        await asyncio.sleep(0.3)
        assert [m.data for m in again.deliveries] == [b"after"]
        await sub.close()
