"""``pubsub.sqlite``: the embedded, durable broker that ``daprlite init`` sets up.

It sits behind ``blocks.pubsub`` like every broker and keeps its queue in one
SQLite file that EVERY sidecar on the machine opens, so apps in separate
processes exchange messages through it (DESIGN.md D3). The blocking
``sqlite3`` driver runs on one worker thread per component; the event loop
only awaits it. The schema and the claim/ack SQL live in ``_sqlite_queue``.

Delivery, per subscription: a loop claims up to ``concurrency`` messages for
its consumer group in one ``BEGIN IMMEDIATE`` transaction, so competing
consumers — in this process or another — never take the same message at
once. A handler that returns acknowledges (deletes the claim); one that
raises releases the claim, due again after ``redeliverInterval``; a consumer
that dies keeps its claims only until ``visibilityTimeout``, after which any
consumer of the group takes them (crash recovery). The loop polls every
``pollInterval``, and a publish from this component wakes it at once.

A consumer group that subscribes for the first time starts at the OLDEST
message still in the file, like the stream brokers Dapr uses by default
(Redis Streams): an app that starts after its publisher still receives what
was published meanwhile. Messages leave the file once every group of the
topic has acknowledged them and they are older than ``retention``, or once
their ``ttlInSeconds`` has passed (expired messages are never delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from daprlite.components._sqlite_common import stop_worker
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.pubsub._sqlite_queue import Publication, QueueFile, Row
from daprlite.components.pubsub.api import (
    BulkEntry,
    BulkFailure,
    Feature,
    Handler,
    Message,
    PublishError,
    PublishRequest,
    SubscribeRequest,
)
from daprlite.components.state._sqlite_sql import resolve_target

T = TypeVar("T")
_log = logging.getLogger("daprlite.component.pubsub")
_MAX_TTL = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SQLitePubSubSettings:
    """Settings of ``pubsub.sqlite`` (daprlite's own type; names follow Dapr's habits)."""

    connectionString: str = setting(
        required=True,
        aliases=("url",),
        doc="The queue file: a path (parent folders are created) or a 'file:' URI. "
        "Every sidecar that should exchange messages names the same file.",
    )
    busyTimeout: Duration = setting(
        Duration(5.0),
        doc="How long to wait for another sidecar's write lock on the file.",
    )
    disableWAL: bool = setting(
        False, doc="Use the rollback journal instead of WAL (file systems without shared memory)."
    )
    pollInterval: Duration = setting(
        Duration(0.05),
        doc="How often a subscription looks for messages published by other processes.",
    )
    visibilityTimeout: Duration = setting(
        Duration(30.0),
        doc="How long a delivered, unacknowledged message stays claimed; after that any "
        "consumer of the group receives it again (a crashed or stuck consumer).",
    )
    redeliverInterval: Duration = setting(
        Duration(1.0), doc="Delay before a message whose handler failed is delivered again."
    )
    concurrency: int = setting(10, doc="Handler calls in flight per subscription.")
    retention: Duration = setting(
        Duration(3600.0),
        doc="How long messages stay after every group acknowledged them; a group that "
        "subscribes for the first time receives the ones still kept.",
    )
    cleanupInterval: Duration = setting(
        Duration(60.0),
        doc="How often expired and consumed messages are deleted; 0 or less disables it.",
    )

    def validate(self) -> None:
        """Refuse values the decoder accepts but the broker cannot use."""
        if not self.connectionString.strip() or self.connectionString.strip() == ":memory:":
            raise MetadataError(
                "connectionString",
                "expected a file path or 'file:' URI that every sidecar can open, "
                f"got {self.connectionString!r}",
            )
        for name in ("pollInterval", "visibilityTimeout"):
            if getattr(self, name) <= 0:
                raise MetadataError(name, f"must be above 0, got {getattr(self, name):g}s")
        for name in ("busyTimeout", "redeliverInterval", "retention"):
            if getattr(self, name) < 0:
                raise MetadataError(name, f"must not be negative, got {getattr(self, name):g}s")
        if self.concurrency < 1:
            raise MetadataError("concurrency", f"must be at least 1, got {self.concurrency}")


def _expiry(metadata: Mapping[str, str], now: float) -> float | None:
    """Publish metadata ``ttlInSeconds`` → absolute expiry time (None: never)."""
    raw = metadata.get("ttlInSeconds", "").strip()
    if not raw:
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise MetadataError("ttlInSeconds", f"expected an integer, got {raw!r}") from None
    if not 0 < ttl <= _MAX_TTL:
        raise MetadataError("ttlInSeconds", f"expected 1 to {_MAX_TTL} seconds, got {ttl}")
    return now + ttl


class SQLitePubSub:
    """A durable queue in one SQLite file shared by every sidecar on the machine."""

    def __init__(self) -> None:
        self.settings = SQLitePubSubSettings()
        self._name = ""
        self._file: QueueFile | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._subscriptions: set[SQLiteSubscription] = set()
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(SQLitePubSubSettings, metadata.properties)
        settings.validate()
        self.settings, self._name = settings, metadata.name
        target = resolve_target(settings.connectionString)
        self._file = QueueFile(target, settings.busyTimeout, not settings.disableWAL, metadata.name)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"pubsub.sqlite-{self._name}")
        try:
            journal = await self._run(self._file.open)
        except BaseException:
            await self.close()
            raise
        if settings.cleanupInterval > 0:
            self._cleanup = asyncio.create_task(
                self._cleanup_loop(settings.cleanupInterval), name=f"pubsub.sqlite-{self._name}-gc"
            )
        _log.info("pubsub.sqlite %s: opened %s, journal %s", self._name, target.label, journal)

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.MESSAGE_TTL, Feature.BULK_PUBLISH})

    async def publish(self, req: PublishRequest) -> None:
        now = time.time()
        pub = Publication(
            req.topic, req.data, req.content_type, req.metadata, _expiry(req.metadata, now)
        )
        try:
            await self._run(self._queue().publish, [pub], now)
        except ComponentError as exc:
            raise PublishError(str(exc)) from exc
        self._wake(req.topic)

    async def bulk_publish(
        self, topic: str, entries: Sequence[BulkEntry], metadata: Mapping[str, str]
    ) -> list[BulkFailure]:
        """All entries in one transaction: every one is stored, or every one fails."""
        now = time.time()
        pubs = []
        for e in entries:
            merged = {**metadata, **e.metadata}
            pubs.append(Publication(topic, e.data, e.content_type, merged, _expiry(merged, now)))
        try:
            await self._run(self._queue().publish, pubs, now)
        except ComponentError as exc:
            return [BulkFailure(e.entry_id, str(exc)) for e in entries]
        self._wake(topic)
        return []

    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> SQLiteSubscription:
        group = req.consumer_group
        if not group:
            raise ComponentError(f"pubsub.sqlite {self._name}: a consumer group is required")
        await self._run(self._queue().join, req.topic, group)
        sub = SQLiteSubscription(self, req.topic, group, handler)
        self._subscriptions.add(sub)
        sub.start()
        return sub

    async def close(self) -> None:
        """Stop every subscription and the cleanup, then close the file."""
        for sub in list(self._subscriptions):
            await sub.close()
        cleanup, self._cleanup = self._cleanup, None
        executor, self._executor = self._executor, None
        if self._file is not None:
            await stop_worker(cleanup, executor, self._file.close)

    # -- shared with the subscriptions ---------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the worker thread; driver errors become ComponentError."""
        if self._executor is None:
            raise ComponentError(f"pubsub.sqlite {self._name}: the component is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._call, fn, args
        )

    def _call(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            raise ComponentError(f"pubsub.sqlite {self._name}: {exc}") from exc

    def _queue(self) -> QueueFile:
        if self._file is None:
            raise ComponentError(f"pubsub.sqlite {self._name}: the component is not open")
        return self._file

    def _wake(self, topic: str) -> None:
        for sub in self._subscriptions:
            if sub.topic == topic:
                sub.wake.set()

    def _forget(self, sub: SQLiteSubscription) -> None:
        self._subscriptions.discard(sub)

    async def _cleanup_loop(self, interval: float) -> None:
        while True:
            try:
                removed = await self._run(
                    self._queue().cleanup, self.settings.retention, interval, time.time()
                )
                if removed:
                    _log.info("pubsub.sqlite %s: deleted %d old messages", self._name, removed)
            except ComponentError as exc:  # try again later; delivery itself still works
                _log.warning("pubsub.sqlite %s: cleanup failed: %s", self._name, exc)
            await asyncio.sleep(interval)


class SQLiteSubscription:
    """One subscriber of one topic in one consumer group: a claim loop plus handler tasks."""

    def __init__(self, owner: SQLitePubSub, topic: str, group: str, handler: Handler) -> None:
        self.topic = topic
        self.group = group
        self.wake = asyncio.Event()
        self._owner = owner
        self._handler = handler
        self._id = uuid.uuid4().hex  # marks this subscription's claims in the file
        self._inflight: set[asyncio.Task[None]] = set()
        self._unsettled: set[int] = set()  # claimed here, handler not finished yet
        self._settling: set[asyncio.Future[None]] = set()  # acks and releases under way
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._loop_task = asyncio.create_task(
            self._poll(), name=f"pubsub.sqlite-{self.topic}-{self.group}"
        )

    async def close(self) -> None:
        """Stop claiming; cancel running handlers and hand their messages back at once."""
        if self._closed:
            return
        self._closed = True
        self._owner._forget(self)
        tasks = [t for t in (self._loop_task, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        if self._unsettled:
            with contextlib.suppress(ComponentError):
                await self._owner._run(
                    self._owner._queue().release_many,
                    self.topic,
                    self.group,
                    sorted(self._unsettled),
                    self._id,
                    time.time(),
                )

    async def _poll(self) -> None:
        s = self._owner.settings
        while True:
            # Cleared before looking, so a publish during the look is not missed.
            self.wake.clear()
            more = False
            room = s.concurrency - len(self._inflight)
            if room > 0:
                try:
                    more = await self._claim_into(room)
                except ComponentError as exc:
                    _log.warning("pubsub.sqlite: claiming from %s failed: %s", self.topic, exc)
                    await asyncio.sleep(max(s.pollInterval, 0.5))
                    continue
            if more and len(self._inflight) < s.concurrency:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.pollInterval):
                    await self.wake.wait()

    async def _claim_into(self, room: int) -> bool:
        run, queue, s = self._owner._run, self._owner._queue(), self._owner.settings
        now = time.time()
        if not await run(queue.has_work, self.topic, self.group, now):
            return False
        rows, more = await run(
            queue.claim, self.topic, self.group, self._id, room, now + s.visibilityTimeout, now
        )
        for row in rows:
            task = asyncio.create_task(self._deliver(row), name=f"pubsub.sqlite-msg-{row.seq}")
            self._inflight.add(task)
            self._unsettled.add(row.seq)
            task.add_done_callback(self._done)
        return more

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake.set()  # a slot is free: claim again without waiting for the poll

    async def _deliver(self, row: Row) -> None:
        msg = Message(
            topic=self.topic,
            data=row.data,
            metadata=row.metadata,
            content_type=row.content_type,
            id=str(row.seq),
            attempt=row.attempt,
        )
        queue, s = self._owner._queue(), self._owner.settings
        try:
            await self._handler(msg)
        except Exception as exc:
            self._unsettled.discard(row.seq)
            _log.warning(
                "pubsub.sqlite: handler failed for message %s of %s (attempt %d), "
                "redelivering in %gs: %s",
                row.seq,
                self.topic,
                row.attempt,
                s.redeliverInterval,
                exc,
            )
            at = time.time() + s.redeliverInterval
            with contextlib.suppress(ComponentError):  # else it comes back after the claim ends
                await self._settle(queue.release, row.seq, self._id, at)
            return
        self._unsettled.discard(row.seq)
        try:
            await self._settle(queue.ack, row.seq)
        except ComponentError as exc:
            _log.warning("pubsub.sqlite: ack of message %s failed: %s", row.seq, exc)

    async def _settle(self, fn: Callable[..., None], *args: object) -> None:
        """Ack or release ``fn(topic, group, *args)``; a close() meanwhile waits, not drops it."""
        job = asyncio.ensure_future(self._owner._run(fn, self.topic, self.group, *args))
        self._settling.add(job)
        job.add_done_callback(self._settling.discard)
        await asyncio.shield(job)
