"""``pubsub.in-memory``: a process-local message bus, for tests and single-process apps.

It sits behind ``blocks.pubsub`` like every broker, but messages never leave
this process: each consumer group of a topic owns an asyncio
queue; a publish puts the message on the queue of every group that exists
(a topic nobody has subscribed to yet drops it, as in Dapr); the group's
subscriptions compete for its queue. A handler that raises puts its message
back on the queue after ``redeliverInterval`` — unlike Dapr's in-memory
broker, which only logs the error — so a message is never dropped while the
process lives. Instances with the same component name in one process share
one bus (as sidecars share a broker), so tests can run several "sidecars" in
one process. Nothing is durable: messages are gone when the process stops or the
last instance of the name closes; a group keeps messages for a subscriber
that is away only while an instance of the name stays open.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, replace

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.pubsub.api import (
    Feature,
    Handler,
    Message,
    PublishRequest,
    SubscribeRequest,
)

_log = logging.getLogger("daprlite.component.pubsub")


@dataclass(frozen=True, slots=True)
class InMemoryPubSubSettings:
    """Settings of ``pubsub.in-memory`` (Dapr's has none; these are daprlite's)."""

    redeliverInterval: Duration = setting(
        Duration(1.0), doc="Delay before a message whose handler failed is delivered again."
    )
    concurrency: int = setting(10, doc="Handler calls in flight per subscription.")

    def validate(self) -> None:
        if self.redeliverInterval < 0:
            raise MetadataError(
                "redeliverInterval", f"must not be negative, got {self.redeliverInterval:g}s"
            )
        if self.concurrency < 1:
            raise MetadataError("concurrency", f"must be at least 1, got {self.concurrency}")


class _Bus:
    """The queues of one component name: topic -> consumer group -> messages not yet handled."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, asyncio.Queue[Message]]] = {}
        self.redeliveries: set[asyncio.TimerHandle] = set()
        self.users = 0

    def redeliver_later(self, queue: asyncio.Queue[Message], msg: Message, delay: float) -> None:
        again = replace(msg, attempt=msg.attempt + 1)

        def put() -> None:
            self.redeliveries.discard(timer)
            queue.put_nowait(again)

        timer = asyncio.get_running_loop().call_later(delay, put)
        self.redeliveries.add(timer)

    def discard(self) -> None:
        for timer in self.redeliveries:
            timer.cancel()
        self.redeliveries.clear()
        self.groups.clear()


# Instances of one component name in one process share a bus, as sidecars on one
# machine share a broker: that is what makes the bus process-local rather than
# instance-local. A bus lives while any instance of its name is open.
_BUSES: dict[str, _Bus] = {}


class InMemoryPubSub:
    """Per-topic, per-group asyncio queues shared by the instances of one name in a process."""

    def __init__(self) -> None:
        self.settings = InMemoryPubSubSettings()
        self._name = ""
        self._bus: _Bus | None = None
        self._subscriptions: set[InMemorySubscription] = set()

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(InMemoryPubSubSettings, metadata.properties)
        settings.validate()
        self.settings, self._name = settings, metadata.name
        self._bus = _BUSES.setdefault(metadata.name, _Bus())
        self._bus.users += 1

    def features(self) -> frozenset[Feature]:
        return frozenset()

    async def publish(self, req: PublishRequest) -> None:
        groups = self._open_bus().groups.get(req.topic, {})
        if not groups:
            _log.debug("pubsub.in-memory %s: no subscriber for %s", self._name, req.topic)
        msg = Message(
            topic=req.topic,
            data=req.data,
            metadata=dict(req.metadata),
            content_type=req.content_type,
            id=uuid.uuid4().hex,
            attempt=1,
        )
        for queue in groups.values():
            queue.put_nowait(msg)

    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> InMemorySubscription:
        if not req.consumer_group:
            raise ComponentError(f"pubsub.in-memory {self._name}: a consumer group is required")
        bus = self._open_bus()
        topic = bus.groups.setdefault(req.topic, {})
        queue = topic.setdefault(req.consumer_group, asyncio.Queue())
        sub = InMemorySubscription(self, bus, queue, handler)
        self._subscriptions.add(sub)
        return sub

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.users -= 1
            if bus.users == 0 and _BUSES.get(self._name) is bus:
                del _BUSES[self._name]
                bus.discard()

    def _open_bus(self) -> _Bus:
        if self._bus is None:
            raise ComponentError(f"pubsub.in-memory {self._name}: the component is not open")
        return self._bus

    def _forget(self, sub: InMemorySubscription) -> None:
        self._subscriptions.discard(sub)


class InMemorySubscription:
    """One subscriber: takes messages from its group's queue, up to ``concurrency`` at once."""

    def __init__(
        self, owner: InMemoryPubSub, bus: _Bus, queue: asyncio.Queue[Message], handler: Handler
    ) -> None:
        self._owner = owner
        self._bus = bus
        self._queue = queue
        self._handler = handler
        self._slots = asyncio.Semaphore(owner.settings.concurrency)
        self._inflight: dict[asyncio.Task[None], Message] = {}
        self._loop_task = asyncio.create_task(self._take(), name="pubsub.in-memory-subscription")

    async def close(self) -> None:
        """Stop taking messages; those whose handler is cancelled go back to the group."""
        self._owner._forget(self)
        unfinished = dict(self._inflight)
        tasks = [self._loop_task, *unfinished]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task, msg in unfinished.items():
            if task.cancelled():  # the handler did not finish: another subscriber takes it
                self._queue.put_nowait(msg)

    async def _take(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                # Cancelling get() while it waits takes nothing off the queue.
                msg = await self._queue.get()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._deliver(msg), name=f"pubsub.in-memory-msg-{msg.id}")
            self._inflight[task] = msg
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._slots.release()

    async def _deliver(self, msg: Message) -> None:
        try:
            await self._handler(msg)
        except Exception as exc:
            delay = self._owner.settings.redeliverInterval
            _log.warning(
                "pubsub.in-memory: handler failed for message %s of %s (attempt %d), "
                "redelivering in %gs: %s",
                msg.id,
                msg.topic,
                msg.attempt,
                delay,
                exc,
            )
            self._bus.redeliver_later(self._queue, msg, delay)
