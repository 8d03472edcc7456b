"""``pubsub.in-memory`` beyond the shared suite: redelivery, hand-back on close, settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import Message, PublishRequest, SubscribeRequest
from daprlite.components.pubsub.inmemory import InMemoryPubSub


@asynccontextmanager
async def open_bus(name: str = "bus", **props: str) -> AsyncIterator[InMemoryPubSub]:
    bus = InMemoryPubSub()
    await bus.init(ComponentMetadata(name, "pubsub.in-memory", properties=props))
    try:
        yield bus
    finally:
        await bus.close()


async def test_a_failed_message_comes_back_after_the_redeliver_interval() -> None:
    async with open_bus(redeliverInterval="50ms") as bus:
        attempts: list[int] = []
        done = asyncio.Event()

        async def flaky(msg: Message) -> None:
            attempts.append(msg.attempt)
            if len(attempts) < 4:
                raise RuntimeError("not yet")
            done.set()

        await bus.subscribe(SubscribeRequest("t", "g"), flaky)
        await bus.publish(PublishRequest("t", b"x"))
        await asyncio.wait_for(done.wait(), 5)
        assert attempts == [1, 2, 3, 4]


async def test_a_closed_subscriptions_unfinished_message_goes_to_another_subscriber() -> None:
    async with open_bus() as bus:
        started = asyncio.Event()

        async def stuck(msg: Message) -> None:
            started.set()
            await asyncio.sleep(3600)

        first = await bus.subscribe(SubscribeRequest("t", "g"), stuck)
        await bus.publish(PublishRequest("t", b"x"))
        await asyncio.wait_for(started.wait(), 5)
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def keep(msg: Message) -> None:
            got.put_nowait(msg)

        second = await bus.subscribe(SubscribeRequest("t", "g"), keep)
        await first.close()
        msg = await asyncio.wait_for(got.get(), 5)
        assert msg.data == b"x"
        await second.close()


async def test_buses_of_different_component_names_are_separate() -> None:
    async with open_bus("one") as one, open_bus("two") as two:
        got: list[bytes] = []

        async def keep(msg: Message) -> None:
            got.append(msg.data)

        await two.subscribe(SubscribeRequest("t", "g"), keep)
        await one.publish(PublishRequest("t", b"for-one-only"))
        await two.publish(PublishRequest("t", b"for-two"))
        await asyncio.sleep(0.1)
        assert got == [b"for-two"]


async def test_no_more_handler_calls_run_at_once_than_concurrency() -> None:
    async with open_bus(concurrency="3") as bus:
        running, peak = 0, 0
        finished = asyncio.Semaphore(0)

        async def slow(msg: Message) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            finished.release()

        await bus.subscribe(SubscribeRequest("t", "g"), slow)
        for i in range(10):
            await bus.publish(PublishRequest("t", str(i).encode()))
        for _ in range(10):
            await asyncio.wait_for(finished.acquire(), 5)
        assert peak == 3


@pytest.mark.parametrize(
    ("props", "key"),
    [({"redeliverInterval": "soon"}, "redeliverInterval"), ({"concurrency": "0"}, "concurrency")],
)
async def test_bad_settings_are_refused_naming_the_key(props: dict[str, str], key: str) -> None:
    with pytest.raises(MetadataError) as err:
        await InMemoryPubSub().init(ComponentMetadata("bus", "pubsub.in-memory", properties=props))
    assert err.value.field == key
