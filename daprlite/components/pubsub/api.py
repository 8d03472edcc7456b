"""The pub/sub component contract: publish bytes to a topic; deliver a topic's messages.

The pub/sub block builds the CloudEvent, checks scopes and routes deliveries;
a component only moves bytes plus string metadata between publishers and
subscribers. Delivery is at least once:

- :meth:`PubSub.subscribe` starts delivering in the background and returns a
  :class:`Subscription` handle. Each message goes to the handler; when the
  handler returns, the message is acknowledged; when it raises, the message
  stays unacknowledged and the component delivers it again later (after a
  visibility timeout, a NAK delay, a requeue — whatever the broker offers).
  A component never drops a message because a handler failed.
- Subscribers with the same ``consumer_group`` (Dapr's ``consumerID``,
  default the app id) compete: each message goes to one of them. Different
  groups each receive every message (fan-out).
- Messages published while a durable component's group has no active
  subscriber are kept for it (every component but ``pubsub.in-memory``), so
  a subscriber that was down receives them when it comes back — provided its
  group existed before (subscribed at least once) or the broker keeps
  history (stream-based brokers start new groups at the beginning).

Features use Dapr's names; the metadata API reports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from daprlite.components.errors import ComponentError
from daprlite.components.metadata import ComponentMetadata


class Feature(StrEnum):
    MESSAGE_TTL = "MESSAGE_TTL"  # the broker expires messages itself (metadata ttlInSeconds)
    SUBSCRIBE_WILDCARDS = "SUBSCRIBE_WILDCARDS"
    BULK_PUBLISH = "BULK_PUBLISH"  # the component implements BulkPublisher natively


@dataclass(frozen=True, slots=True)
class PublishRequest:
    topic: str
    data: bytes
    content_type: str = ""
    # Request metadata for the broker (ttlInSeconds, routingKey, ...), already
    # without the "metadata." prefix; the component ignores keys it does not know.
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery of one message."""

    topic: str
    data: bytes
    # Broker metadata of the message: publish metadata the broker carried
    # (components that can carry it do), plus component-specific keys.
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = ""
    # The broker's id of the message, for logs and duplicate counting ("" if none).
    id: str = ""
    # 1 on first delivery; higher on redeliveries when the broker counts them (else 0).
    attempt: int = 0


Handler = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    topic: str
    # Competing consumers share a group; defaults to the app id (consumerID).
    consumer_group: str
    # Subscription metadata (e.g. queueName, routingKey), without "metadata.".
    metadata: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Subscription(Protocol):
    async def close(self) -> None:
        """Stop delivering; messages in flight finish or stay unacknowledged."""
        ...


class PublishError(ComponentError):
    """The broker did not accept the message."""


@dataclass(frozen=True, slots=True)
class BulkEntry:
    entry_id: str
    data: bytes
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BulkFailure:
    entry_id: str
    error: str


@runtime_checkable
class PubSub(Protocol):
    async def init(self, metadata: ComponentMetadata) -> None: ...

    def features(self) -> frozenset[Feature]: ...

    async def publish(self, req: PublishRequest) -> None:
        """Hand one message to the broker; raises PublishError when it is not accepted."""
        ...

    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> Subscription:
        """Start delivering ``req.topic`` to ``handler`` in the background (see module doc)."""
        ...

    async def close(self) -> None:
        """Stop every subscription and release connections."""
        ...


@runtime_checkable
class BulkPublisher(Protocol):
    async def bulk_publish(
        self, topic: str, entries: Sequence[BulkEntry], metadata: Mapping[str, str]
    ) -> list[BulkFailure]:
        """Publish many messages at once; returns the entries that failed (empty: all ok)."""
        ...
