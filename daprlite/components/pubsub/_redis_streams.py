"""The delivery side of ``pubsub.redis``: one consumer of a Redis consumer group.

:class:`StreamSubscription` is what ``RedisStreamsPubSub.subscribe`` returns.
It runs three kinds of task on the component's pooled client:

- a reader: ``XREADGROUP ... >`` with a short BLOCK, so closing never waits
  long, into a local queue of at most ``queueDepth`` entries;
- ``concurrency`` workers: call the handler, then ``XACK``; a handler error
  leaves the entry pending (never lost);
- a re-claimer: every ``redeliverInterval``, ``XPENDING ... IDLE`` finds the
  group's entries unacknowledged for longer than ``processingTimeout`` (a
  failed handler, or a consumer that died) and ``XCLAIM`` takes them over.

The consumer name is the group plus a random suffix, so subscribers in
several processes compete within the group instead of sharing a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from daprlite.components.pubsub.api import Handler, Message

_log = logging.getLogger("daprlite.component.pubsub")

# The key of the entry's metadata JSON that carries the publish content type.
CONTENT_TYPE_KEY = "contentType"

# Deletes the consumer only while it owns no pending entry: atomic, so an
# entry delivered to it at the last moment is never dropped with it.
_FORGET_CONSUMER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""

_MAX_BACKOFF = 5.0

# redis-py's (RESP2, undecoded) shapes of XCLAIM and XREADGROUP replies.
_Entries = list[tuple[bytes | None, dict[bytes, bytes] | None]]
_ReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    queue_depth: int
    concurrency: int
    redeliver_interval: float  # seconds; 0 = never re-claim
    processing_timeout: float  # seconds; 0 = never re-claim
    block: float  # seconds one XREADGROUP waits for new entries


def decode_entry(topic: str, entry_id: str, fields: Mapping[bytes, bytes], attempt: int) -> Message:
    """A Message from stream entry fields (written by us, Dapr, or anyone using ``data``)."""
    metadata: dict[str, str] = {}
    raw = fields.get(b"metadata")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            metadata = {
                str(k): v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()
            }
        else:
            _log.warning(
                "topic %r: entry %s has a metadata field that is not a JSON object", topic, entry_id
            )
    content_type = metadata.pop(CONTENT_TYPE_KEY, "")
    return Message(
        topic=topic,
        data=fields.get(b"data", b""),
        metadata=metadata,
        content_type=content_type,
        id=entry_id,
        attempt=attempt,
    )


class StreamSubscription:
    """One consumer of ``group`` on the stream ``topic``; see the module doc."""

    def __init__(
        self,
        client: Redis,
        *,
        topic: str,
        group: str,
        handler: Handler,
        options: DeliveryOptions,
        what: str,
        on_close: Callable[[StreamSubscription], None],
    ) -> None:
        self._client = client
        self._topic = topic
        self._group = group
        self._consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self._handler = handler
        self._options = options
        self._what = what
        self._on_close = on_close
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        # Entry ids read or claimed and not yet handled: bounds the local queue,
        # and keeps the re-claimer from claiming what a worker here still has.
        self._held: set[str] = set()
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Future[int]] = set()
        # Acks of handlers that finish in the same loop turn go out as one XACK:
        # one command per message was the subscriber's largest cost (bench/RESULTS.md).
        self._ack_batch: tuple[list[str], asyncio.Future[int]] | None = None
        self._closed = False

    @property
    def consumer(self) -> str:
        return self._consumer

    async def start(self) -> None:
        """Create the group if needed, then start reading; returns once the group exists."""
        await self._ensure_group()
        label = f"{self._topic}/{self._consumer}"
        self._tasks.append(asyncio.create_task(self._read(), name=f"redis-read {label}"))
        for i in range(self._options.concurrency):
            self._tasks.append(asyncio.create_task(self._work(), name=f"redis-work{i} {label}"))
        if self._options.redeliver_interval > 0 and self._options.processing_timeout > 0:
            self._tasks.append(asyncio.create_task(self._reclaim(), name=f"redis-reclaim {label}"))
        else:
            _log.warning(
                "%s: topic %r: re-claiming is disabled (redeliverInterval or processingTimeout "
                "is 0); messages whose handler fails stay pending in group %r",
                self._what,
                self._topic,
                self._group,
            )
        _log.info("%s: subscribed to topic %r as %s", self._what, self._topic, self._consumer)

    async def close(self) -> None:
        """Stop reading and handling; what was not acknowledged stays pending for re-claim."""
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        # Cancel until every task has ended: a cancellation that lands inside the
        # driver can be swallowed there (seen with redis-py 8), leaving a task waiting.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.2)
        self._tasks.clear()
        if self._ack_batch is not None:  # handlers that finished in this very loop turn
            self._send_acks()
        if self._acks:  # acks of handled messages still on their way
            await asyncio.wait(set(self._acks))
        try:  # keep the group's consumer list from growing with every restart
            await self._client.eval(_FORGET_CONSUMER, 1, self._topic, self._group, self._consumer)  # type: ignore[misc]
        except RedisError as exc:
            _log.debug("%s: could not remove consumer %s: %s", self._what, self._consumer, exc)

    async def _ensure_group(self) -> None:
        try:
            # From id 0, as in Dapr: a new group also gets what the stream already holds.
            await self._client.xgroup_create(self._topic, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _hold(self, msg: Message) -> None:
        self._held.add(msg.id)
        self._queue.put_nowait(msg)

    async def _read(self) -> None:
        block_ms = max(int(self._options.block * 1000), 1)
        backoff = 0.1
        while not self._closed:
            room = self._options.queue_depth - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                reply = await self._client.xreadgroup(
                    self._group, self._consumer, {self._topic: ">"}, count=room, block=block_ms
                )
            except RedisError as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    # The stream (and its groups) was deleted: start over with a new one.
                    await self._recreate_group(backoff)
                else:
                    _log.warning("%s: reading topic %r failed: %s", self._what, self._topic, exc)
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = 0.1
            for _stream, entries in cast("_ReadReply", reply) or ():
                for entry_id, fields in entries:
                    self._hold(decode_entry(self._topic, _text(entry_id), fields, 1))

    async def _recreate_group(self, backoff: float) -> None:
        try:
            await self._ensure_group()
        except RedisError as exc:
            _log.warning("%s: recreating group %r failed: %s", self._what, self._group, exc)
            await asyncio.sleep(backoff)

    async def _work(self) -> None:
        while not self._closed:
            msg = await self._queue.get()
            try:
                await self._handler(msg)
            except Exception as exc:  # any handler failure means "deliver again later"
                _log.warning(
                    "%s: topic %r: handler failed for message %s (attempt %d); it stays "
                    "pending and is delivered again after processingTimeout: %s",
                    self._what,
                    self._topic,
                    msg.id,
                    msg.attempt,
                    exc,
                )
            else:
                # The handler is done: closing must not cancel the ack and cause a duplicate.
                ack = self._ack_soon(msg.id)
                with contextlib.suppress(RedisError):  # logged by _ack_done
                    await asyncio.shield(ack)
            finally:
                self._held.discard(msg.id)
                self._room.set()

    def _ack_soon(self, entry_id: str) -> asyncio.Future[int]:
        """Queue ``entry_id`` for the XACK sent at the end of this loop turn."""
        if self._ack_batch is None:
            loop = asyncio.get_running_loop()
            self._ack_batch = ([], loop.create_future())
            loop.call_soon(self._send_acks)
        ids, done = self._ack_batch
        ids.append(entry_id)
        return done

    def _send_acks(self) -> None:
        assert self._ack_batch is not None
        ids, done = self._ack_batch
        self._ack_batch = None
        ack = asyncio.ensure_future(self._client.xack(self._topic, self._group, *ids))
        self._acks.add(ack)
        ack.add_done_callback(self._ack_done)

        def settle(sent: asyncio.Future[int]) -> None:
            if done.done():
                return
            if sent.cancelled():
                done.cancel()
            elif sent.exception() is not None:
                done.set_exception(sent.exception())  # type: ignore[arg-type]
            else:
                done.set_result(sent.result())

        ack.add_done_callback(settle)

    def _ack_done(self, ack: asyncio.Future[int]) -> None:
        self._acks.discard(ack)
        if not ack.cancelled() and isinstance(ack.exception(), RedisError):
            # Still pending, so delivered again after processingTimeout: never lost.
            _log.warning("%s: ack on topic %r failed: %s", self._what, self._topic, ack.exception())

    async def _reclaim(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._options.redeliver_interval)
            try:
                await self._reclaim_once()
            except RedisError as exc:
                _log.warning("%s: re-claiming on topic %r failed: %s", self._what, self._topic, exc)

    async def _reclaim_once(self) -> None:
        """Claim the group's entries idle longer than processingTimeout, page by page."""
        min_idle = max(int(self._options.processing_timeout * 1000), 1)
        start = "-"
        while (room := self._options.queue_depth - len(self._held)) > 0:
            pending = await self._client.xpending_range(
                self._topic, self._group, start, "+", room, idle=min_idle
            )
            if not pending:
                return
            ids = [_text(p["message_id"]) for p in pending]
            delivered = {
                entry_id: int(p["times_delivered"])
                for entry_id, p in zip(ids, pending, strict=True)
                if entry_id not in self._held
            }
            if delivered:
                # XCLAIM re-checks the idle time, so two re-claimers never both win an entry;
                # entries trimmed away meanwhile are dropped from the group and not returned.
                claimed = await self._client.xclaim(
                    self._topic, self._group, self._consumer, min_idle, list(delivered)
                )
                for entry_id, fields in cast("_Entries", claimed):
                    if entry_id is None or fields is None:  # trimmed away (older Redis)
                        continue
                    key = _text(entry_id)
                    self._hold(decode_entry(self._topic, key, fields, delivered.get(key, 0) + 1))
            if len(pending) < room:
                return
            start = "(" + ids[-1]
