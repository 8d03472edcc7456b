"""The bulk-subscribe batcher and the ``bulkSubscribe`` fields of a subscription."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from daprlite.blocks.pubsub.delivery import Delivery, Status
from daprlite.blocks.pubsub.subscriptions import (
    PROGRAMMATIC,
    Subscription,
    SubscriptionError,
    from_mapping,
)
from daprlite.runtime.bulk_delivery import Batcher


class App:
    """Answers each entry after its event's ``answer``; records every batch."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.fail = fail

    async def __call__(
        self, sub: Subscription, path: str, deliveries: Sequence[Delivery]
    ) -> list[Status]:
        self.batches.append((path, [str(d.event["id"]) for d in deliveries]))
        if self.fail is not None:
            raise self.fail
        return [Status(str(d.event.get("answer", "SUCCESS"))) for d in deliveries]


def sub(count: int = 3, await_ms: int = 50) -> Subscription:
    return Subscription("pubsub", "t", bulk=True, bulk_max_count=count, bulk_max_await_ms=await_ms)


def delivery(s: Subscription, i: int, answer: str = "SUCCESS", path: str = "/p") -> Delivery:
    return Delivery(s, path, {"id": str(i), "answer": answer}, b"{}", {})


async def test_a_full_batch_goes_at_once_and_each_entry_gets_its_own_status() -> None:
    s, app = sub(count=3, await_ms=60_000), App()
    batcher = Batcher(s, app)
    answers = ["SUCCESS", "RETRY", "DROP"]
    got = await asyncio.wait_for(
        asyncio.gather(*(batcher(delivery(s, i, a)) for i, a in enumerate(answers))), 5
    )
    assert got == [Status.SUCCESS, Status.RETRY, Status.DROP]
    assert app.batches == [("/p", ["0", "1", "2"])]


async def test_a_partial_batch_goes_after_the_await_duration() -> None:
    s, app = sub(count=100, await_ms=50), App()
    batcher = Batcher(s, app)
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await asyncio.gather(batcher(delivery(s, 1)), batcher(delivery(s, 2)))
    assert got == [Status.SUCCESS, Status.SUCCESS]
    assert loop.time() - start >= 0.045
    assert app.batches == [("/p", ["1", "2"])]


async def test_batches_are_per_path() -> None:
    s, app = sub(count=100, await_ms=20), App()
    batcher = Batcher(s, app)
    await asyncio.gather(
        batcher(delivery(s, 1, path="/a")),
        batcher(delivery(s, 2, path="/b")),
        batcher(delivery(s, 3, path="/a")),
    )
    assert sorted(app.batches) == [("/a", ["1", "3"]), ("/b", ["2"])]


async def test_a_failed_batch_fails_every_entry() -> None:
    s, app = sub(count=2), App(fail=ConnectionError("down"))
    batcher = Batcher(s, app)
    results = await asyncio.gather(
        batcher(delivery(s, 1)), batcher(delivery(s, 2)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_cancelled_wait_leaves_its_entry_out_of_the_batch() -> None:
    s, app = sub(count=100, await_ms=50), App()
    batcher = Batcher(s, app)
    gone = asyncio.create_task(batcher(delivery(s, 1)))
    kept = asyncio.create_task(batcher(delivery(s, 2)))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept is Status.SUCCESS
    assert app.batches == [("/p", ["2"])]


async def test_close_sends_the_open_batch() -> None:
    s, app = sub(count=100, await_ms=60_000), App()
    batcher = Batcher(s, app)
    waiting = asyncio.create_task(batcher(delivery(s, 1)))
    await asyncio.sleep(0)
    await batcher.close()
    assert await waiting is Status.SUCCESS


def test_bulk_subscribe_fields_and_defaults() -> None:
    base = {"pubsubname": "p", "topic": "t", "route": "/r"}
    plain = from_mapping(base, "s", PROGRAMMATIC)
    assert plain is not None and not plain.bulk
    assert (plain.bulk_max_count, plain.bulk_max_await_ms) == (100, 1000)
    raw = {**base, "bulkSubscribe": {"enabled": True, "maxMessagesCount": "5"}}
    bulk = from_mapping(raw, "s", PROGRAMMATIC)
    assert bulk is not None and bulk.bulk
    assert (bulk.bulk_max_count, bulk.bulk_max_await_ms) == (5, 1000)
    off = from_mapping({**base, "bulkSubscribe": {"enabled": "false"}}, "s", PROGRAMMATIC)
    assert off is not None and not off.bulk
    with pytest.raises(SubscriptionError, match="maxAwaitDurationMs"):
        from_mapping({**base, "bulkSubscribe": {"maxAwaitDurationMs": -1}}, "s", PROGRAMMATIC)
