"""``pubsub.redis``: pub/sub on Redis Streams, through redis-py asyncio.

The pub/sub block calls :meth:`RedisStreamsPubSub.publish` for
``POST /v1.0/publish/{pubsub}/{topic}`` (and gRPC ``PublishEvent``) and
:meth:`RedisStreamsPubSub.subscribe` once per topic the app subscribes to.
Storage is Dapr's: one stream per topic (the key is the topic name), one
entry per message with the field ``data`` (the bytes) and, when there is
request metadata or a content type, the field ``metadata`` (a JSON object of
strings; the content type travels in it under ``contentType``). Consumer
groups are Redis consumer groups; the delivery loop, acknowledgement and
re-claiming live in :mod:`daprlite.components.pubsub._redis_streams`.
The connection metadata and the pooled client are the other Redis
components' (:mod:`daprlite.components._redis_common`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from daprlite.components._redis_common import RedisConnectionSettings, connect
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.pubsub._redis_streams import (
    CONTENT_TYPE_KEY,
    DeliveryOptions,
    StreamSubscription,
)
from daprlite.components.pubsub.api import (
    BulkEntry,
    BulkFailure,
    Feature,
    Handler,
    PublishError,
    PublishRequest,
    SubscribeRequest,
    Subscription,
)

_log = logging.getLogger("daprlite.component.pubsub")


@dataclass(frozen=True, slots=True)
class RedisPubSubSettings(RedisConnectionSettings):
    """Component metadata of ``pubsub.redis``, with Dapr's (case-insensitive) names.

    The connection fields (``redisHost``, ``redisPassword``, ``enableTLS``,
    timeouts, pool, ...) are shared with the other Redis components, in
    :class:`~daprlite.components._redis_common.RedisConnectionSettings`.
    """

    consumerID: str = setting(
        "",
        doc="Consumer group used when a subscription names none; the app id by default.",
    )
    redeliverInterval: Duration = setting(
        Duration(60.0),
        doc="How often unacknowledged entries are looked for and re-claimed; 0 disables "
        "re-claiming (failed messages then stay pending in the group).",
    )
    processingTimeout: Duration = setting(
        Duration(15.0),
        doc="How long an entry stays unacknowledged (handler failed, or its consumer died) "
        "before it is re-claimed and delivered again; 0 disables re-claiming.",
    )
    queueDepth: int = setting(
        100, doc="Entries a subscription holds locally (read but not yet handled) at most."
    )
    concurrency: int = setting(10, doc="Handlers running at once per subscription.")
    maxLenApprox: int = setting(
        0, doc="Trim each stream to about this many entries on publish (XADD MAXLEN ~); 0 = no."
    )
    streamTTL: Duration = setting(
        Duration(0.0),
        doc="Trim entries older than this on publish (XADD MINID ~); 0 = no. Cannot be "
        "combined with maxLenApprox.",
    )

    def __post_init__(self) -> None:
        RedisConnectionSettings.__post_init__(self)  # no zero-argument super() with slots
        for name in ("redeliverInterval", "processingTimeout", "streamTTL"):
            value = getattr(self, name)
            if value < 0:
                raise MetadataError(name, f"expected a duration of 0 or more, got {value}s")
        for name in ("queueDepth", "concurrency"):
            value = getattr(self, name)
            if value < 1:
                raise MetadataError(name, f"expected at least 1, got {value}")
        if self.maxLenApprox < 0:
            raise MetadataError(
                "maxLenApprox", f"expected 0 (no limit) or more, got {self.maxLenApprox}"
            )
        if self.maxLenApprox and self.streamTTL:
            raise MetadataError(
                "streamTTL", "cannot be combined with maxLenApprox; set only one of them"
            )


def encode_entry(
    data: bytes, content_type: str, metadata: Mapping[str, str]
) -> dict[FieldT, EncodableT]:
    """The stream entry fields of one message: ``data`` and, if any, ``metadata`` JSON."""
    fields: dict[FieldT, EncodableT] = {"data": data}
    carried = dict(metadata)
    if content_type:
        carried[CONTENT_TYPE_KEY] = content_type
    if carried:
        fields["metadata"] = json.dumps(carried, separators=(",", ":")).encode()
    return fields


class RedisStreamsPubSub:
    """One stream per topic, consumer groups, re-claiming of what was never acknowledged.

    A handler error leaves the entry unacknowledged (Dapr's contrib acks it):
    it is delivered again once it has been idle for ``processingTimeout``,
    checked every ``redeliverInterval``, by whichever subscriber of the group
    looks first — which also recovers the entries of a consumer that died.
    Needs Redis 6.2 or newer (XPENDING IDLE).
    """

    def __init__(self) -> None:
        self.settings: RedisPubSubSettings | None = None
        self._name = ""
        self._default_group = ""
        self._client: Redis | None = None
        self._subscriptions: set[StreamSubscription] = set()

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(RedisPubSubSettings, metadata.properties)
        self._name = metadata.name
        self._default_group = settings.consumerID.strip() or metadata.app_id
        self._client, _ = await connect(settings, what=f"pubsub {self._name!r}", log=_log)
        self.settings = settings

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.BULK_PUBLISH})

    async def publish(self, req: PublishRequest) -> None:
        client = self._redis()
        try:
            fields = encode_entry(req.data, req.content_type, req.metadata)
            maxlen, minid = self._trim()
            await client.xadd(req.topic, fields, maxlen=maxlen, minid=minid, approximate=True)
        except RedisError as exc:
            raise PublishError(
                f"pubsub {self._name!r}: publish to topic {req.topic!r} failed: {exc}"
            ) from exc

    async def bulk_publish(
        self, topic: str, entries: Sequence[BulkEntry], metadata: Mapping[str, str]
    ) -> list[BulkFailure]:
        """All entries in one pipeline (one round trip); each XADD succeeds or fails alone."""
        client = self._redis()
        maxlen, minid = self._trim()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    fields = encode_entry(
                        entry.data, entry.content_type, {**metadata, **entry.metadata}
                    )
                    pipe.xadd(topic, fields, maxlen=maxlen, minid=minid, approximate=True)
                results = await pipe.execute(raise_on_error=False)
        except RedisError as exc:  # the connection failed: nothing is known to be stored
            return [BulkFailure(e.entry_id, str(exc)) for e in entries]
        return [
            BulkFailure(entry.entry_id, str(result))
            for entry, result in zip(entries, results, strict=True)
            if isinstance(result, Exception)
        ]

    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> Subscription:
        settings = self._settings()
        group = req.consumer_group or self._default_group
        if not group:
            raise MetadataError(
                "consumerID",
                "is required when the subscription has no group and there is no app id",
            )
        options = DeliveryOptions(
            queue_depth=settings.queueDepth,
            concurrency=settings.concurrency,
            redeliver_interval=settings.redeliverInterval,
            processing_timeout=settings.processingTimeout,
            block=_block_seconds(settings),
        )
        sub = StreamSubscription(
            self._redis(),
            topic=req.topic,
            group=group,
            handler=handler,
            options=options,
            what=f"pubsub {self._name!r}",
            on_close=self._subscriptions.discard,
        )
        try:
            await sub.start()
        except RedisError as exc:
            raise ComponentError(
                f"pubsub {self._name!r}: subscribing to topic {req.topic!r} (group {group!r}) "
                f"failed: {exc}"
            ) from exc
        self._subscriptions.add(sub)
        return sub

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()  # closes the pool too (Redis.from_pool)

    def _trim(self) -> tuple[int | None, str | None]:
        """XADD's ``(maxlen, minid)``, both approximate (~): maxLenApprox, or now - streamTTL.

        Approximate trimming only drops whole stream nodes (about 100 entries
        each), which is cheap; a stream may keep a little more than asked.
        """
        settings = self._settings()
        if settings.maxLenApprox:
            return settings.maxLenApprox, None
        if settings.streamTTL:
            oldest_ms = int((time.time() - settings.streamTTL) * 1000)
            return None, f"{max(oldest_ms, 0)}-0"
        return None, None

    def _settings(self) -> RedisPubSubSettings:
        if self.settings is None:
            raise ComponentError(f"pubsub {self._name!r} is not initialised")
        return self.settings

    def _redis(self) -> Redis:
        if self._client is None:
            raise ComponentError(f"pubsub {self._name!r} is not initialised or closed")
        return self._client


def _block_seconds(settings: RedisConnectionSettings) -> float:
    """How long one XREADGROUP waits: 1s, and always well inside the socket read timeout."""
    socket_timeout = settings.socket_timeout()
    return 1.0 if socket_timeout is None else min(1.0, socket_timeout / 2)
