"""Streaming subscriptions: the app opens a gRPC stream and receives a topic on it.

``SubscribeTopicEventsAlpha1`` (dapr-api.md 5.11) lands here through the thin
RPC in ``transport/grpc/pubsub.py``. :meth:`StreamingSubscriptions.open`
checks the request, starts a subscription on the component (consumer group:
the component's ``consumerID``, else the app id) and yields a :class:`Stream`.
Each broker message goes through the same :class:`Deliverer` as any other
subscription; its "app call" puts the event on the stream and waits for the
app's ``event_processed`` answer with the same id. An answer that does not come
within the answer timeout counts as RETRY, so a silent client cannot hold a
message forever. Leaving the context (stream ended or cancelled) closes the
component subscription and unregisters it from the metadata API.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from daprlite import errors
from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2
from daprlite.blocks.pubsub.api import PubSubAPI
from daprlite.blocks.pubsub.delivery import Deliverer, Delivery, Status
from daprlite.blocks.pubsub.subscriptions import STREAMING, Subscription
from daprlite.components.pubsub.api import SubscribeRequest
from daprlite.runtime.subscriptions import topic_event_request

log = logging.getLogger("daprlite.pubsub")

# How long the app may take to answer one event before it counts as RETRY.
ANSWER_TIMEOUT = 60.0


class StreamClosedError(Exception):
    """The stream ended while an event was on it; the broker keeps the message.

    Deliberately not a ``ConnectionError``: the Deliverer dead-letters those,
    while an event whose stream went away must simply be redelivered.
    """


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """The ``initial_request`` of a stream."""

    pubsub: str
    topic: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""


class Stream:
    """One open stream: events out, answers in, correlated by event id."""

    def __init__(self, sub: Subscription, answer_timeout: float) -> None:
        self.subscription = sub
        self._answer_timeout = answer_timeout
        self._outgoing: asyncio.Queue[appcallback_pb2.TopicEventRequest | None] = asyncio.Queue()
        # A redelivered event can be in flight twice under one id; answers go oldest first.
        self._pending: dict[str, deque[asyncio.Future[Status]]] = {}
        self._closed = False

    async def deliver(self, d: Delivery) -> Status:
        """The Deliverer's app call: send the event and wait for the app's answer."""
        if self._closed:
            raise StreamClosedError("the stream is closed")
        event = topic_event_request(d)
        fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        waiting = self._pending.setdefault(event.id, deque())
        waiting.append(fut)
        self._outgoing.put_nowait(event)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self._answer_timeout)
        except TimeoutError:
            log.warning(
                "pubsub %s topic %s: no answer for event %s within %gs; retrying it",
                d.subscription.pubsub,
                d.subscription.topic,
                event.id,
                self._answer_timeout,
            )
            return Status.RETRY
        finally:
            if fut in waiting:
                waiting.remove(fut)
            if not waiting and self._pending.get(event.id) is waiting:
                del self._pending[event.id]

    def answer(self, event_id: str, status: Status) -> None:
        """The app's ``event_processed`` for ``event_id``; unknown ids are ignored."""
        waiting = self._pending.get(event_id)
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(status)
                return
        log.debug("answer for unknown or expired event %s ignored", event_id)

    async def next_event(self) -> appcallback_pb2.TopicEventRequest | None:
        """The next event to write to the stream; None once the stream is closed."""
        if self._closed:
            return None  # events still queued were failed by close(): do not send them
        return await self._outgoing.get()

    def close(self) -> None:
        """Stop the stream: waiting deliveries fail, so the broker keeps their messages."""
        if self._closed:
            return
        self._closed = True
        for waiting in self._pending.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(StreamClosedError("the stream closed before the answer"))
        self._outgoing.put_nowait(None)


class StreamingSubscriptions:
    """The open streams of this sidecar, for delivery and for the metadata API."""

    def __init__(
        self, pubsub: PubSubAPI, app_id: str, answer_timeout: float = ANSWER_TIMEOUT
    ) -> None:
        self._pubsub = pubsub
        self._app_id = app_id
        self._answer_timeout = answer_timeout
        self._active: list[Subscription] = []

    def active(self) -> list[Subscription]:
        return list(self._active)

    @asynccontextmanager
    async def open(self, req: StreamRequest) -> AsyncIterator[Stream]:
        """Subscribe for one stream; raises catalogue errors for a bad request."""
        if not req.pubsub:
            raise errors.PUBSUB_EMPTY("initial_request.pubsub_name is required")
        if not req.topic:
            raise errors.TOPIC_NAME_EMPTY(
                f"initial_request.topic is required (pubsub {req.pubsub})"
            )
        live, component = self._pubsub.component(req.pubsub)
        if not self._pubsub.scopes(live).may_subscribe(self._app_id, req.topic):
            raise errors.PUBSUB_FORBIDDEN(
                f"topic {req.topic} is not allowed for app id {self._app_id} "
                f"to subscribe in pubsub {req.pubsub}"
            )
        sub = Subscription(
            pubsub=req.pubsub,
            topic=req.topic,
            default_path="/",
            metadata=dict(req.metadata),
            dead_letter_topic=req.dead_letter_topic,
            kind=STREAMING,
        )
        stream = Stream(sub, self._answer_timeout)
        policy = self._pubsub.resiliency.component_inbound(req.pubsub, "pubsub")
        deliverer = Deliverer(
            sub, stream.deliver, policy, self._pubsub.forward, self._pubsub.metrics
        )
        group = live.property("consumerID") or self._app_id
        broker_md = {k: v for k, v in req.metadata.items() if k.lower() != "rawpayload"}
        handle = await component.subscribe(
            SubscribeRequest(req.topic, group, broker_md), deliverer.handle
        )
        self._active.append(sub)
        log.info("streaming subscription to %s/%s opened", req.pubsub, req.topic)
        try:
            yield stream
        finally:
            self._active.remove(sub)
            stream.close()
            await handle.close()
            log.info("streaming subscription to %s/%s closed", req.pubsub, req.topic)
