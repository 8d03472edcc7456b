"""``pubsub.rabbitmq`` beyond the shared suite: settings, TTL, dead letters, routing, properties.

Runs against the RabbitMQ that ``scripts/services.sh rabbitmq`` brings up on
127.0.0.1:5672. Every test uses its own topic; an independent aio-pika
connection looks at (and afterwards deletes) the queues and exchanges.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import pytest

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import Feature, Message, PublishRequest, SubscribeRequest
from daprlite.components.pubsub.rabbitmq import RabbitMQPubSub
from tests.services import RABBITMQ_URL

WAIT = 10.0


class Inbox:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.deliveries = 0

    async def __call__(self, msg: Message) -> None:
        self.deliveries += 1
        if self.fail:
            raise RuntimeError("failing on purpose")
        await self.messages.put(msg)

    async def next(self) -> Message:
        return await asyncio.wait_for(self.messages.get(), WAIT)


class Run:
    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.channel = channel
        self.topic = f"rmq-ps-{self.id}"

    def queue(self, group: str) -> str:
        return f"{group}-{self.topic}"

    async def get(self, queue: str) -> aio_pika.abc.AbstractIncomingMessage | None:
        q = await self.channel.get_queue(queue, ensure=False)
        return await q.get(no_ack=True, fail=False, timeout=WAIT)


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=WAIT)
    try:
        r = Run(await connection.channel())
        yield r
        for group in ("g", "dl", "ttl"):
            for name in (r.queue(group), f"dlq-{r.queue(group)}"):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await (await connection.channel()).queue_delete(name, timeout=WAIT)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await (await connection.channel()).exchange_delete(f"dlx-{r.queue(group)}")
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await (await connection.channel()).exchange_delete(r.topic)
    finally:
        await connection.close()


@asynccontextmanager
async def opened(**props: str) -> AsyncIterator[RabbitMQPubSub]:
    ps = RabbitMQPubSub()
    base = {
        "connectionString": RABBITMQ_URL,
        "deletedWhenUnused": "false",
        "requeueDelay": "50ms",
        "queueExpiresInSeconds": "60",  # queues the fixture misses go away on their own
    }
    await ps.init(
        ComponentMetadata("rmq", "pubsub.rabbitmq", properties={**base, **props}, app_id="app")
    )
    try:
        yield ps
    finally:
        await asyncio.wait_for(ps.close(), WAIT)


async def init_error(**props: str) -> MetadataError:
    with pytest.raises(MetadataError) as info:
        await RabbitMQPubSub().init(ComponentMetadata("rmq", "pubsub.rabbitmq", properties=props))
    return info.value


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({}, "connectionString"),
        ({"connectionString": "http://localhost:5672"}, "connectionString"),
        ({"connectionString": "amqp://localhost:notaport"}, "connectionString"),
        ({"hostname": "localhost", "protocol": "redis"}, "hostname"),
        ({"connectionString": RABBITMQ_URL, "exchangeKind": "broadcast"}, "exchangeKind"),
        ({"connectionString": RABBITMQ_URL, "deliveryMode": "5"}, "deliveryMode"),
        ({"connectionString": RABBITMQ_URL, "prefetchCount": "-1"}, "prefetchCount"),
        ({"connectionString": RABBITMQ_URL, "maxLen": "-3"}, "maxLen"),
        ({"connectionString": RABBITMQ_URL, "concurrency": "many"}, "concurrency"),
        ({"connectionString": RABBITMQ_URL, "heartBeat": "soon"}, "heartBeat"),
        ({"connectionString": RABBITMQ_URL, "clientCert": "cert.pem"}, "clientKey"),
        ({"connectionString": RABBITMQ_URL, "saslExternal": "true"}, "saslExternal"),
        ({"connectionString": RABBITMQ_URL, "durable": "maybe"}, "durable"),
    ],
)
async def test_bad_settings_fail_init_naming_the_key(props: dict[str, str], field: str) -> None:
    error = await init_error(**props)
    assert error.field == field


async def test_a_password_in_the_url_never_appears_in_errors() -> None:
    error = await init_error(connectionString="redis://guest:s3cret@localhost:5672")
    assert "s3cret" not in str(error)


async def test_hostname_username_and_password_build_the_connection(run: Run) -> None:
    async with opened(
        connectionString="", hostname="127.0.0.1:5672", username="guest", password="guest"
    ) as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(run.topic, "g"), inbox)
        await ps.publish(PublishRequest(run.topic, b"hi"))
        assert (await inbox.next()).data == b"hi"
        await sub.close()


async def test_claims_native_message_ttl() -> None:
    assert Feature.MESSAGE_TTL in RabbitMQPubSub().features()


async def test_messages_expire_after_their_ttl_while_the_group_is_away(run: Run) -> None:
    async with opened(ttlInSeconds="1") as ps:
        sub = await ps.subscribe(SubscribeRequest(run.topic, "ttl"), Inbox())
        await sub.close()
        await ps.publish(PublishRequest(run.topic, b"component-ttl"))
        await ps.publish(PublishRequest(run.topic, b"request-ttl", metadata={"ttlInSeconds": "1"}))
        await ps.publish(PublishRequest(run.topic, b"lasting", metadata={"ttlInSeconds": "60"}))
        await asyncio.sleep(1.5)
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(run.topic, "ttl"), inbox)
        # FIFO: had the expired ones survived, they would come before this one.
        assert (await inbox.next()).data == b"lasting"
        assert inbox.messages.empty()
        await sub.close()


async def test_a_bad_request_ttl_names_the_key(run: Run) -> None:
    async with opened() as ps:
        with pytest.raises(MetadataError) as info:
            await ps.publish(PublishRequest(run.topic, b"x", metadata={"ttlInSeconds": "soon"}))
        assert info.value.field == "ttlInSeconds"


async def test_a_failed_message_is_dead_lettered_with_enable_dead_letter(run: Run) -> None:
    async with opened(enableDeadLetter="true") as ps:
        failing = Inbox(fail=True)
        sub = await ps.subscribe(SubscribeRequest(run.topic, "dl"), failing)
        await ps.publish(PublishRequest(run.topic, b"poison", "text/plain", {"k": "v"}))
        dead = None
        async with asyncio.timeout(WAIT):
            while dead is None:
                await asyncio.sleep(0.05)
                dead = await run.get(f"dlq-{run.queue('dl')}")
        assert dead.body == b"poison"
        assert dead.headers.get("k") == "v"
        assert failing.deliveries == 1  # rejected once, not redelivered
        await sub.close()


async def test_requeue_in_failure_redelivers_instead_of_dead_lettering(run: Run) -> None:
    async with opened(enableDeadLetter="true", requeueInFailure="true") as ps:
        first = Inbox(fail=True)
        sub = await ps.subscribe(SubscribeRequest(run.topic, "dl"), first)
        await ps.publish(PublishRequest(run.topic, b"retry-me"))
        async with asyncio.timeout(WAIT):
            while first.deliveries < 3:
                await asyncio.sleep(0.02)
        await sub.close()
        assert await run.get(f"dlq-{run.queue('dl')}") is None
        second = Inbox()
        sub = await ps.subscribe(SubscribeRequest(run.topic, "dl"), second)
        msg = await second.next()
        assert msg.data == b"retry-me"
        assert msg.attempt == 0  # redelivered: a classic queue does not count
        await sub.close()


async def test_without_dead_letter_a_failed_message_comes_back(run: Run) -> None:
    async with opened(requeueInFailure="false") as ps:
        calls: list[Message] = []

        async def flaky(msg: Message) -> None:
            calls.append(msg)
            if len(calls) < 3:
                raise RuntimeError("not yet")

        sub = await ps.subscribe(SubscribeRequest(run.topic, "g"), flaky)
        await ps.publish(PublishRequest(run.topic, b"again"))
        async with asyncio.timeout(WAIT):
            while len(calls) < 3:
                await asyncio.sleep(0.02)
        assert [m.attempt for m in calls] == [1, 0, 0]
        assert len({m.id for m in calls}) == 1 and calls[0].id
        await sub.close()


async def test_topic_exchange_routes_by_routing_key(run: Run) -> None:
    async with opened(exchangeKind="topic") as ps:
        inbox = Inbox()
        sub = await ps.subscribe(
            SubscribeRequest(run.topic, "g", {"routingKey": "orders.*, refunds.#"}), inbox
        )
        for key in ("other.new", "orders.new", "refunds.a.b"):
            await ps.publish(PublishRequest(run.topic, key.encode(), metadata={"routingKey": key}))
        got = {(await inbox.next()).data, (await inbox.next()).data}
        assert got == {b"orders.new", b"refunds.a.b"}
        await asyncio.sleep(0.2)
        assert inbox.messages.empty()
        await sub.close()


async def test_message_properties_reach_the_metadata_when_asked(run: Run) -> None:
    async with opened(publishMessagePropertiesToMetadata="true") as ps:
        inbox = Inbox()
        sub = await ps.subscribe(SubscribeRequest(run.topic, "g"), inbox)
        await ps.publish(PublishRequest(run.topic, b"{}", "application/json", {"a": "1"}))
        msg = await inbox.next()
        assert msg.metadata["a"] == "1"
        assert msg.metadata["messageid"] == msg.id
        assert msg.metadata["contenttype"] == "application/json"
        await sub.close()


@pytest.mark.parametrize(("mode", "overlap"), [("single", False), ("parallel", True)])
async def test_concurrency_single_hands_messages_over_one_at_a_time(
    run: Run, mode: str, overlap: bool
) -> None:
    async with opened(concurrency=mode) as ps:
        active, peak, seen, done = 0, 0, 0, asyncio.Event()

        async def slow(msg: Message) -> None:
            nonlocal active, peak, seen
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            seen += 1
            if seen == 5:
                done.set()

        sub = await ps.subscribe(SubscribeRequest(run.topic, "g"), slow)
        for i in range(5):
            await ps.publish(PublishRequest(run.topic, str(i).encode()))
        await asyncio.wait_for(done.wait(), WAIT)
        assert (peak > 1) is overlap
        await sub.close()
