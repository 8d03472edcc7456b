"""One conformance suite for every pub/sub component, against its real broker.

What a subscriber of any daprlite pub/sub can rely on: every message
arrives at least once even when the handler fails, groups fan out and
compete, durable brokers keep messages for a group that is away, and
closing stops delivery.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from daprlite.components.pubsub.api import (
    BulkEntry,
    BulkPublisher,
    Feature,
    Message,
    PublishRequest,
    PubSub,
    SubscribeRequest,
)
from daprlite.components.registry import Registry
from tests.conformance.pubsub.conftest import (
    BULK_TYPES,
    DURABLE_TYPES,
    METADATA_TYPES,
    PUBSUB_TYPES,
    PubSubUnderTest,
)

WAIT = 20.0  # seconds any test waits for its messages at most


class Inbox:
    """Collects deliveries; ``fail`` decides per delivery whether the handler raises."""

    def __init__(self, fail: Callable[[Message, int], bool] | None = None) -> None:
        self.fail = fail or (lambda _msg, _n: False)
        self.accepted: list[Message] = []
        self.deliveries = 0
        self.per_payload: collections.Counter[bytes] = collections.Counter()
        self._changed = asyncio.Event()

    async def __call__(self, msg: Message) -> None:
        self.deliveries += 1
        self.per_payload[msg.data] += 1
        if self.fail(msg, self.deliveries):
            raise RuntimeError("failing on purpose")
        self.accepted.append(msg)
        self._changed.set()

    def payloads(self) -> set[bytes]:
        return {m.data for m in self.accepted}

    async def wait_for(self, expected: set[bytes], timeout: float = WAIT) -> None:
        async def done() -> None:
            while not expected <= self.payloads():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(done(), timeout)
        except TimeoutError:
            missing = sorted(expected - self.payloads())[:5]
            raise AssertionError(
                f"{len(expected - self.payloads())} of {len(expected)} messages never "
                f"arrived (e.g. {missing}); {self.deliveries} deliveries"
            ) from None


def payloads(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


async def publish_all(
    pubsub: object, topic: str, items: list[bytes], metadata: dict[str, str] | None = None
) -> None:
    publish: Callable[[PublishRequest], Awaitable[None]] = pubsub.publish  # type: ignore[attr-defined]
    for data in items:
        await publish(PublishRequest(topic, data, "text/plain", metadata or {}))


async def test_published_messages_are_delivered(sut: PubSubUnderTest) -> None:
    topic = sut.topic()
    async with sut.open() as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(topic, "g1"), inbox)
        items = payloads("m", 20)
        await publish_all(ps, topic, items)
        await inbox.wait_for(set(items))
        assert all(m.topic == topic for m in inbox.accepted)
        await sub.close()


async def test_publish_metadata_and_content_type_reach_the_subscriber(
    metadata_sut: PubSubUnderTest,
) -> None:
    sut = metadata_sut
    topic = sut.topic()
    async with sut.open() as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(topic, "g1"), inbox)
        await ps.publish(
            PublishRequest(topic, b"{}", "application/json", {"traceparent": "00-ab-cd-01"})
        )
        await inbox.wait_for({b"{}"})
        msg = inbox.accepted[0]
        assert msg.content_type == "application/json"
        assert msg.metadata.get("traceparent") == "00-ab-cd-01"
        await sub.close()


async def test_every_message_arrives_though_the_handler_fails_often(
    sut: PubSubUnderTest,
) -> None:
    """The handler fails the first two deliveries of each message and every fifth one."""
    topic = sut.topic()
    async with sut.open() as ps:
        seen: collections.Counter[bytes] = collections.Counter()

        def fail(msg: Message, n: int) -> bool:
            seen[msg.data] += 1
            return seen[msg.data] <= 2 or n % 5 == 0

        inbox = Inbox(fail)
        sub = await ps.subscribe(SubscribeRequest(topic, "g1"), inbox)
        items = payloads("f", 20)
        await publish_all(ps, topic, items)
        await inbox.wait_for(set(items), timeout=40)
        assert all(inbox.per_payload[p] >= 3 for p in items)
        await sub.close()


async def test_each_group_receives_every_message(sut: PubSubUnderTest) -> None:
    topic = sut.topic()
    async with sut.open() as a, sut.open() as b:
        first, second = Inbox(), Inbox()
        sub1 = await a.subscribe(SubscribeRequest(topic, "group-a"), first)
        sub2 = await b.subscribe(SubscribeRequest(topic, "group-b"), second)
        items = payloads("fan", 10)
        await publish_all(a, topic, items)
        await first.wait_for(set(items))
        await second.wait_for(set(items))
        await sub1.close()
        await sub2.close()


async def test_consumers_of_one_group_share_the_messages(sut: PubSubUnderTest) -> None:
    topic = sut.topic()
    async with sut.open() as a, sut.open() as b:
        first, second = Inbox(), Inbox()
        sub1 = await a.subscribe(SubscribeRequest(topic, "workers"), first)
        sub2 = await b.subscribe(SubscribeRequest(topic, "workers"), second)
        items = payloads("w", 40)
        await publish_all(a, topic, items)

        async def all_arrived() -> None:
            while not set(items) <= first.payloads() | second.payloads():
                await asyncio.sleep(0.05)

        await asyncio.wait_for(all_arrived(), WAIT)
        total = len(first.accepted) + len(second.accepted)
        # Competing, not fanned out: nowhere near every message twice.
        assert total < 2 * len(items)
        await sub1.close()
        await sub2.close()


async def test_a_group_that_was_away_gets_what_was_published_meanwhile(
    durable_sut: PubSubUnderTest,
) -> None:
    sut = durable_sut
    topic = sut.topic()
    async with sut.open() as ps:
        sub = await ps.subscribe(SubscribeRequest(topic, "away"), Inbox())
        await sub.close()
        items = payloads("away", 10)
        await publish_all(ps, topic, items)
    async with sut.open() as later:
        inbox = Inbox()
        sub = await later.subscribe(SubscribeRequest(topic, "away"), inbox)
        await inbox.wait_for(set(items))
        await sub.close()


async def test_closing_a_subscription_stops_delivery(sut: PubSubUnderTest) -> None:
    topic = sut.topic()
    async with sut.open() as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(topic, "g1"), inbox)
        await publish_all(ps, topic, [b"before"])
        await inbox.wait_for({b"before"})
        await sub.close()
        await publish_all(ps, topic, [b"after"])
        await asyncio.sleep(0.5)
        assert b"after" not in inbox.payloads()


async def test_bulk_publish_delivers_every_entry(bulk_sut: PubSubUnderTest) -> None:
    sut = bulk_sut
    topic = sut.topic()
    async with sut.open() as ps:
        assert isinstance(ps, BulkPublisher)
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(topic, "g1"), inbox)
        items = payloads("bulk", 25)
        failed = await ps.bulk_publish(
            topic, [BulkEntry(str(i), d, "text/plain") for i, d in enumerate(items)], {}
        )
        assert failed == []
        await inbox.wait_for(set(items))
        await sub.close()


def test_every_registered_pubsub_runs_this_suite() -> None:
    registered = {t for t in Registry().known_types() if t.startswith("pubsub.")}
    aliases = {"pubsub.mqtt"}  # the same class as pubsub.mqtt3
    assert registered - aliases <= set(PUBSUB_TYPES)
    assert set(PUBSUB_TYPES) >= DURABLE_TYPES | METADATA_TYPES | BULK_TYPES


def test_claimed_bulk_publishing_matches_the_implementation() -> None:
    for ctype in PUBSUB_TYPES:
        instance = Registry().resolve(ctype)()
        assert isinstance(instance, PubSub), ctype
        bulk = isinstance(instance, BulkPublisher)
        assert bulk == (ctype in BULK_TYPES), ctype
        assert (Feature.BULK_PUBLISH in instance.features()) == bulk, ctype
