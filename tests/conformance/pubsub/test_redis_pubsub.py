"""``pubsub.redis`` beyond the shared suite: stream format, re-claiming, trimming, failures.

Runs against the shared Redis of ``tests/services.py``; every test uses its own
random topic names and deletes its streams afterwards. A second, plain client
looks at the streams as another program (or a crashed sidecar) would. The one
test that needs Redis to go away starts a private redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import (
    Message,
    PublishError,
    PublishRequest,
    PubSub,
    SubscribeRequest,
)
from daprlite.components.pubsub.redis import RedisPubSubSettings, RedisStreamsPubSub
from daprlite.components.registry import Registry
from tests.services import REDIS_HOST

FAST = {"processingTimeout": "300ms", "redeliverInterval": "100ms"}


def _meta(**props: str) -> ComponentMetadata:
    return ComponentMetadata(
        name="events", type="pubsub.redis", properties=props, app_id="orders-app"
    )


@pytest.fixture
async def direct() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(f"redis://{REDIS_HOST}")
    yield client
    await client.aclose()


@pytest.fixture
async def topic(direct: aioredis.Redis) -> AsyncIterator[str]:
    name = f"pubsub-test-{uuid.uuid4().hex[:12]}"
    yield name
    await direct.delete(name)


@asynccontextmanager
async def opened(**props: str) -> AsyncIterator[RedisStreamsPubSub]:
    pubsub = RedisStreamsPubSub()
    await pubsub.init(_meta(redisHost=REDIS_HOST, **props))
    try:
        yield pubsub
    finally:
        await pubsub.close()


class Received:
    def __init__(self, fail_first: int = 0) -> None:
        self.messages: list[Message] = []
        self.fail_first = fail_first
        self.calls = 0
        self.arrived = asyncio.Event()

    async def __call__(self, msg: Message) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("failing on purpose")
        self.messages.append(msg)
        self.arrived.set()

    async def wait(self, count: int, timeout: float = 10.0) -> None:
        async def enough() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


# -- contract and settings -----------------------------------------------------------


def test_registered_type_resolves_to_the_component() -> None:
    cls = Registry().resolve("pubsub.redis")
    assert cls is RedisStreamsPubSub
    assert isinstance(cls(), PubSub)


def test_defaults_are_daprs() -> None:
    s = RedisPubSubSettings(redisHost="h:1")
    assert (s.redeliverInterval, s.processingTimeout) == (60.0, 15.0)
    assert (s.queueDepth, s.concurrency, s.maxLenApprox, s.streamTTL) == (100, 10, 0, 0.0)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({}, "redisHost"),
        ({"redisHost": "a:1,b:2"}, "redisHost"),
        ({"redisHost": REDIS_HOST, "processingTimeout": "soon"}, "processingTimeout"),
        ({"redisHost": REDIS_HOST, "redeliverInterval": "-1s"}, "redeliverInterval"),
        ({"redisHost": REDIS_HOST, "queueDepth": "0"}, "queueDepth"),
        ({"redisHost": REDIS_HOST, "concurrency": "none"}, "concurrency"),
        ({"redisHost": REDIS_HOST, "maxLenApprox": "-5"}, "maxLenApprox"),
        ({"redisHost": REDIS_HOST, "maxLenApprox": "1000", "streamTTL": "1h"}, "streamTTL"),
    ],
)
async def test_bad_settings_are_refused_naming_the_key(props: dict[str, str], field: str) -> None:
    with pytest.raises(MetadataError) as err:
        await RedisStreamsPubSub().init(_meta(**props))
    assert err.value.field == field


async def test_init_fails_clearly_when_nothing_listens() -> None:
    with pytest.raises(ComponentError, match=r"127\.0\.0\.1:\d+"):
        await RedisStreamsPubSub().init(_meta(redisHost=f"127.0.0.1:{_free_port()}"))


# -- the stream format -----------------------------------------------------------------


async def test_publish_writes_data_and_metadata_json_to_the_topic_stream(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened() as pubsub:
        await pubsub.publish(PublishRequest(topic, b"plain"))
        await pubsub.publish(PublishRequest(topic, b"{}", "application/json", {"k": "v"}))
    (_, first), (_, second) = await direct.xrange(topic)
    assert first == {b"data": b"plain"}
    assert second[b"data"] == b"{}"
    assert json.loads(second[b"metadata"]) == {"k": "v", "contentType": "application/json"}


async def test_entries_written_by_other_programs_are_delivered(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened() as pubsub:
        received = Received()
        sub = await pubsub.subscribe(SubscribeRequest(topic, "g"), received)
        await direct.xadd(topic, {"data": b"only-data"})
        await direct.xadd(topic, {"data": b"bad-meta", "metadata": b"not json"})
        await received.wait(2)
        await sub.close()
    assert [(m.data, dict(m.metadata), m.content_type) for m in received.messages] == [
        (b"only-data", {}, ""),
        (b"bad-meta", {}, ""),
    ]
    assert all(m.attempt == 1 and m.id for m in received.messages)


async def test_a_new_group_starts_at_the_beginning_of_the_stream(topic: str) -> None:
    async with opened() as pubsub:
        await pubsub.publish(PublishRequest(topic, b"early"))
        received = Received()
        sub = await pubsub.subscribe(SubscribeRequest(topic, "late-group"), received)
        await received.wait(1)
        await sub.close()
    assert received.messages[0].data == b"early"


async def test_the_group_defaults_to_consumer_id_then_the_app_id(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened(consumerID="billing") as pubsub:
        sub = await pubsub.subscribe(SubscribeRequest(topic, ""), Received())
        await sub.close()
    async with opened() as pubsub:
        sub = await pubsub.subscribe(SubscribeRequest(topic, ""), Received())
        await sub.close()
    groups = {g["name"] for g in await direct.xinfo_groups(topic)}
    assert groups == {b"billing", b"orders-app"}


async def test_subscribing_to_a_key_that_is_not_a_stream_fails_naming_the_topic(
    direct: aioredis.Redis, topic: str
) -> None:
    await direct.set(topic, "a plain string")
    async with opened() as pubsub:
        with pytest.raises(ComponentError, match=f"topic {topic!r}"):
            await pubsub.subscribe(SubscribeRequest(topic, "g"), Received())


# -- acknowledgement and re-claiming -----------------------------------------------------


async def test_failed_message_stays_pending_then_is_redelivered_with_its_attempt(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened(**FAST) as pubsub:
        received = Received(fail_first=1)
        sub = await pubsub.subscribe(SubscribeRequest(topic, "g"), received)
        await pubsub.publish(PublishRequest(topic, b"x"))
        while received.calls < 1:
            await asyncio.sleep(0.01)
        assert (await direct.xpending(topic, "g"))["pending"] == 1  # not acked
        await received.wait(1)
        await sub.close()
        assert received.messages[0].attempt == 2
        assert (await direct.xpending(topic, "g"))["pending"] == 0  # acked once handled


async def test_pending_entries_of_a_crashed_consumer_are_reclaimed(
    direct: aioredis.Redis, topic: str
) -> None:
    # Another sidecar of the group read three entries and died without acking them.
    await direct.xgroup_create(topic, "g", id="0", mkstream=True)
    for i in range(3):
        await direct.xadd(topic, {"data": f"lost-{i}".encode()})
    read = await direct.xreadgroup("g", "crashed", {topic: ">"}, count=10)
    assert len(read[0][1]) == 3
    async with opened(**FAST) as pubsub:
        received = Received()
        started = time.monotonic()
        sub = await pubsub.subscribe(SubscribeRequest(topic, "g"), received)
        await received.wait(3)
        waited = time.monotonic() - started
        await sub.close()
    assert sorted(m.data for m in received.messages) == [b"lost-0", b"lost-1", b"lost-2"]
    assert all(m.attempt == 2 for m in received.messages)
    assert waited < 5
    assert (await direct.xpending(topic, "g"))["pending"] == 0


async def test_entries_are_not_reclaimed_before_processing_timeout(
    direct: aioredis.Redis, topic: str
) -> None:
    await direct.xgroup_create(topic, "g", id="0", mkstream=True)
    await direct.xadd(topic, {"data": b"busy"})
    await direct.xreadgroup("g", "slow-but-alive", {topic: ">"}, count=1)
    async with opened(processingTimeout="30s", redeliverInterval="50ms") as pubsub:
        received = Received()
        sub = await pubsub.subscribe(SubscribeRequest(topic, "g"), received)
        await asyncio.sleep(0.5)
        await sub.close()
    assert received.messages == []


async def test_closing_removes_the_consumer_only_when_it_owns_nothing_pending(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened(processingTimeout="0") as pubsub:
        clean = await pubsub.subscribe(SubscribeRequest(topic, "g"), Received())
        failing = Received(fail_first=100)
        dirty = await pubsub.subscribe(SubscribeRequest(topic, "g2"), failing)
        await pubsub.publish(PublishRequest(topic, b"x"))
        while failing.calls < 1:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await clean.close()
        await dirty.close()
        assert time.monotonic() - started < 1.0  # a blocked XREADGROUP does not delay it
    consumers = {
        group: [c["name"] for c in await direct.xinfo_consumers(topic, group)]
        for group in ("g", "g2")
    }
    assert consumers["g"] == []
    assert len(consumers["g2"]) == 1 and consumers["g2"][0].startswith(b"g2-")


# -- trimming ------------------------------------------------------------------------


async def test_max_len_approx_trims_the_stream_on_publish(
    direct: aioredis.Redis, topic: str
) -> None:
    async with opened(maxLenApprox="10") as pubsub:
        for i in range(400):
            await pubsub.publish(PublishRequest(topic, str(i).encode()))
    length = await direct.xlen(topic)
    # Approximate trimming drops whole nodes of about 100 entries.
    assert 10 <= length <= 110


async def test_stream_ttl_trims_old_entries_on_publish(direct: aioredis.Redis, topic: str) -> None:
    async with opened(streamTTL="300ms") as pubsub:
        for i in range(250):
            await pubsub.publish(PublishRequest(topic, str(i).encode()))
        await asyncio.sleep(0.4)
        await pubsub.publish(PublishRequest(topic, b"new"))
    length = await direct.xlen(topic)
    assert length < 100  # the two full nodes of expired entries are gone
    (_, last), *_ = await direct.xrevrange(topic, count=1)
    assert last[b"data"] == b"new"


# -- the broker going away ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/services.sh redis)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_publish_to_a_redis_that_went_away_raises_publish_error(
    private_redis: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = private_redis
    pubsub = RedisStreamsPubSub()
    await pubsub.init(_meta(redisHost=f"127.0.0.1:{port}", redisMaxRetries="1"))
    try:
        await pubsub.publish(PublishRequest("t", b"ok"))
        proc.terminate()
        proc.wait(10)
        with pytest.raises(PublishError, match="topic 't'"):
            await pubsub.publish(PublishRequest("t", b"lost"))
    finally:
        await pubsub.close()
