"""The subscriber side of ``pubsub.jetstream``: one pull loop per durable consumer.

:meth:`JetStreamPubSub.subscribe <daprlite.components.pubsub.jetstream.JetStreamPubSub.subscribe>`
creates the consumer and starts one :class:`JetStreamSubscription`, which
pulls messages, hands each to the pub/sub block's handler, and ACKs it when
the handler returns or NAKs it (with the backOff/ackWait delay) when it
raises. Closing stops pulling between two short pull requests, so no
request is left at the server to strand a message until ackWait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from daprlite.components.pubsub._jetstream_settings import (
    CONTENT_TYPE_HEADER,
    JetStreamSettings,
    carried_metadata,
)
from daprlite.components.pubsub.api import Handler, Message

_log = logging.getLogger("daprlite.component.pubsub")

_FETCH_WAIT = 1.0  # seconds one pull request waits; bounds how long closing a subscription takes
_PARALLEL = 64  # messages in flight per subscription with concurrency: parallel
_SETTLE_TIMEOUT = 2.0  # seconds for an ack/nak while closing
NATS_FAILURES = (nats.errors.Error, OSError, asyncio.TimeoutError)


class JetStreamSubscription:
    """One pull loop on one durable consumer; handlers run in tasks so close can stop them."""

    def __init__(
        self,
        component: str,
        settings: JetStreamSettings,
        topic: str,
        consumer: str,
        psub: JetStreamContext.PullSubscription,
        handler: Handler,
        on_close: Callable[[JetStreamSubscription], None],
    ) -> None:
        self._name = component
        self._settings = settings
        self._on_close = on_close
        self._topic = topic
        self._consumer = consumer
        self._psub = psub
        self._handler = handler
        self._limit = 1 if settings.concurrency.lower() == "single" else _PARALLEL
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(
            self._pull_loop(), name=f"jetstream {self._name} {self._consumer}"
        )

    async def close(self) -> None:
        self._on_close(self)
        self._stopping.set()
        loop_task = self._loop_task
        if loop_task is not None:
            # The loop notices between pull requests (at most _FETCH_WAIT away);
            # leaving a request pending would strand a message until ackWait.
            try:
                await asyncio.wait_for(asyncio.shield(loop_task), _FETCH_WAIT + 1.0)
            except (TimeoutError, asyncio.CancelledError):
                loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop_task
        inflight = list(self._inflight)
        for task in inflight:
            task.cancel()  # its message is NAKed, so another subscriber gets it at once
        await asyncio.gather(*inflight, return_exceptions=True)
        with contextlib.suppress(*NATS_FAILURES, nats.js.errors.Error, ValueError):
            await asyncio.wait_for(self._psub.unsubscribe(), _SETTLE_TIMEOUT)

    async def _pull_loop(self) -> None:
        heartbeat = self._settings.heartbeat
        while not self._stopping.is_set():
            room = self._limit - len(self._inflight)
            if room <= 0:
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await self._psub.fetch(
                    room,
                    timeout=_FETCH_WAIT,
                    heartbeat=heartbeat if heartbeat and heartbeat < _FETCH_WAIT / 2 else None,
                )
            except nats.errors.TimeoutError:
                continue  # nothing to deliver in this pull request
            except (*NATS_FAILURES, nats.js.errors.Error) as exc:
                if self._stopping.is_set():
                    break
                _log.warning(
                    "pubsub %r: pulling from consumer %r failed (%r); retrying",
                    self._name,
                    self._consumer,
                    exc,
                )
                await _sleep_unless(self._stopping, _FETCH_WAIT)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._deliver(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if self._limit == 1 and self._inflight:
                # single: strictly one message at a time, in stream order.
                await asyncio.wait(self._inflight)

    async def _deliver(self, msg: Msg) -> None:
        headers = msg.headers or {}
        meta = msg.metadata
        message = Message(
            topic=msg.subject,
            data=msg.data,
            metadata=carried_metadata(headers),
            content_type=headers.get(CONTENT_TYPE_HEADER, ""),
            id=str(meta.sequence.stream),
            attempt=meta.num_delivered,
        )
        try:
            await self._handler(message)
        except asyncio.CancelledError:
            with contextlib.suppress(*NATS_FAILURES, nats.errors.Error):
                await asyncio.wait_for(msg.nak(), _SETTLE_TIMEOUT)
            raise
        except Exception as exc:  # the handler refused it, or a bug on the way: never drop
            delay = self._settings.nak_delay(meta.num_delivered)
            _log.info(
                "pubsub %r: handler failed for message %s of topic %r (attempt %d): %s; "
                "redelivered in %s s",
                self._name,
                message.id,
                self._topic,
                message.attempt,
                exc,
                delay or 0,
            )
            await self._settle(msg.nak(delay=delay))
        else:
            await self._settle(msg.ack())

    async def _settle(self, op: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(op, _SETTLE_TIMEOUT)
        except (*NATS_FAILURES, nats.errors.Error) as exc:
            # Connection gone: unanswered, so the server redelivers after ackWait.
            _log.info(
                "pubsub %r: could not settle a message of %r (%r); the server redelivers it",
                self._name,
                self._topic,
                exc,
            )


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
