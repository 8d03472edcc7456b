"""``pubsub.rabbitmq``: topics as RabbitMQ exchanges, consumer groups as queues bound to them.

The pub/sub block calls :meth:`RabbitMQPubSub.publish`, which publishes to the
exchange named after the topic (declared on the way, of kind ``exchangeKind``),
and :meth:`RabbitMQPubSub.subscribe`, which declares the group's queue
``{consumerGroup}-{topic}`` (or the subscription's ``queueName``), binds it to
the exchange and consumes it on a channel of its own. Subscribers of one group
share the queue and so compete; every group has its own queue and so gets
every message.

Delivery is at least once: a message is acknowledged once the handler
returned. When the handler raises, the message goes back to its queue after
``requeueDelay`` (a nack with requeue) and is delivered again; with
``enableDeadLetter`` (and ``requeueInFailure`` false) it is rejected instead
and the broker moves it to the queue ``dlq-{queue}`` through the exchange
``dlx-{queue}`` -- dead-lettered, never dropped. One aio-pika robust connection
carries everything and re-establishes channels, queues and consumers after a
broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid

import aio_pika
from aio_pika import exceptions as amqp
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)

from daprlite.components.bindings._brokertls import client_tls_context
from daprlite.components.errors import ComponentError
from daprlite.components.metadata import ComponentMetadata, decode, int_metadata
from daprlite.components.pubsub._rabbitmq_settings import RabbitMQPubSubSettings
from daprlite.components.pubsub.api import (
    Feature,
    Handler,
    Message,
    PublishError,
    PublishRequest,
    SubscribeRequest,
    Subscription,
)

_log = logging.getLogger("daprlite.component.pubsub")

_TIMEOUT = 10.0  # seconds for connecting, declaring, publishing and cancelling
# Failures of the driver or the connection, as opposed to our own errors.
_AMQP_FAILURES = (amqp.AMQPError, amqp.ChannelInvalidStateError, ConnectionError, TimeoutError)
# AMQP message properties reported with publishMessagePropertiesToMetadata.
_PROPERTIES = {
    "messageid": "message_id",
    "correlationid": "correlation_id",
    "type": "type",
    "replyto": "reply_to",
    "appid": "app_id",
    "userid": "user_id",
    "priority": "priority",
    "expiration": "expiration",
    "contenttype": "content_type",
}


class RabbitMQPubSub:
    """Publish to topic exchanges; deliver each group's queue, acknowledging after the handler."""

    def __init__(self) -> None:
        self.settings: RabbitMQPubSubSettings | None = None
        self._name = ""
        self._default_group = ""
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._publish_lock = asyncio.Lock()
        self._exchanges: dict[str, AbstractExchange] = {}
        self._subscriptions: set[_RabbitMQSubscription] = set()

    async def init(self, metadata: ComponentMetadata) -> None:
        s = decode(RabbitMQPubSubSettings, metadata.properties)
        self._name = metadata.name
        self._default_group = s.consumerID.strip() or metadata.app_id
        if s.autoAck:
            _log.warning(
                "pubsub %r: autoAck is ignored; messages are acknowledged after the handler",
                self._name,
            )
        context: ssl.SSLContext | None = None
        if s.tls():
            context = await asyncio.to_thread(
                client_tls_context,
                ca_cert=s.caCert,
                client_cert=s.clientCert,
                client_key=s.clientKey,
            )
        try:
            self._connection = await aio_pika.connect_robust(
                s.url(),
                ssl_context=context,
                timeout=_TIMEOUT,
                reconnect_interval=float(s.reconnectWaitSeconds),
                client_properties={
                    "connection_name": s.clientName or f"daprlite pubsub {self._name}"
                },
                heartbeat=max(1, round(s.heartBeat)),
                auth="external" if s.saslExternal else "plain",
            )
        except (*_AMQP_FAILURES, OSError) as exc:
            # aio-pika's messages name the failure, never the password.
            raise ComponentError(
                f"pubsub {self._name!r}: cannot connect to RabbitMQ at {s.address()}: {exc}"
            ) from exc
        self.settings = s
        _log.info(
            "pubsub %r: RabbitMQ at %s, %s exchanges, durable %s",
            self._name,
            s.address(),
            s.exchangeKind.lower(),
            s.durable,
        )

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.MESSAGE_TTL})

    async def close(self) -> None:
        subscriptions = list(self._subscriptions)
        self._subscriptions.clear()
        for sub in subscriptions:
            await sub.close()
        connection, self._connection = self._connection, None
        self._publish_channel = None
        self._exchanges.clear()
        if connection is not None:
            with contextlib.suppress(*_AMQP_FAILURES):
                await connection.close()

    def _settings(self) -> tuple[RabbitMQPubSubSettings, AbstractRobustConnection]:
        if self.settings is None or self._connection is None:
            raise ComponentError(f"pubsub {self._name!r} is not initialised or closed")
        return self.settings, self._connection

    async def _declare_exchange(self, channel: AbstractChannel, topic: str) -> AbstractExchange:
        s, _ = self._settings()
        return await channel.declare_exchange(
            topic,
            ExchangeType(s.exchangeKind.lower()),
            durable=s.durable,
            auto_delete=s.deletedWhenUnused,
            timeout=_TIMEOUT,
        )

    # -- publish ------------------------------------------------------------------------
    async def publish(self, req: PublishRequest) -> None:
        s, _ = self._settings()
        ttl = int_metadata(req.metadata, "ttlInSeconds", 0, 2**31 // 1000)
        if ttl is None:
            ttl = s.ttlInSeconds
        message = aio_pika.Message(
            req.data,
            content_type=req.content_type or None,
            # Publish metadata travels as headers, so subscribers see it again.
            headers=dict(req.metadata),
            delivery_mode=DeliveryMode.PERSISTENT
            if s.deliveryMode == 2
            else DeliveryMode.NOT_PERSISTENT,
            expiration=ttl or None,
            message_id=uuid.uuid4().hex,
            priority=int_metadata(req.metadata, "priority", 0, 255),
        )
        routing_key = req.metadata.get("routingKey", "")
        # A channel or exchange that went away since the last call (an
        # auto-deleted exchange closes the channel) is replaced once.
        for attempt in (1, 2):
            try:
                exchange = await self._exchange(req.topic)
                await exchange.publish(message, routing_key, timeout=_TIMEOUT)
                return
            except (*_AMQP_FAILURES, amqp.PublishError) as exc:
                await self._forget_channel()
                if attempt == 2:
                    raise PublishError(
                        f"pubsub {self._name!r}: publish to topic {req.topic!r} failed: {exc}"
                    ) from exc

    async def _exchange(self, topic: str) -> AbstractExchange:
        s, connection = self._settings()
        async with self._publish_lock:
            if self._publish_channel is None or self._publish_channel.is_closed:
                self._exchanges.clear()
                self._publish_channel = await connection.channel(
                    publisher_confirms=s.publisherConfirm
                )
            exchange = self._exchanges.get(topic)
            if exchange is None:
                exchange = await self._declare_exchange(self._publish_channel, topic)
                # An auto-delete exchange may vanish between two publishes, so
                # only a lasting one is remembered; the others are declared each time.
                if not s.deletedWhenUnused:
                    self._exchanges[topic] = exchange
            return exchange

    async def _forget_channel(self) -> None:
        async with self._publish_lock:
            channel, self._publish_channel = self._publish_channel, None
            self._exchanges.clear()
        if channel is not None:
            with contextlib.suppress(*_AMQP_FAILURES):
                await channel.close()

    # -- subscribe ----------------------------------------------------------------------
    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> Subscription:
        s, connection = self._settings()
        group = req.consumer_group or self._default_group
        queue_name = req.metadata.get("queueName") or f"{group}-{req.topic}"
        keys = [k.strip() for k in req.metadata.get("routingKey", "").split(",")]
        channel = await connection.channel()
        sub = _RabbitMQSubscription(self, channel, req.topic, queue_name, handler)
        try:
            if s.prefetchCount:
                await channel.set_qos(prefetch_count=s.prefetchCount, timeout=_TIMEOUT)
            exchange = await self._declare_exchange(channel, req.topic)
            if s.enableDeadLetter:
                await self._declare_dead_letter(channel, queue_name)
            queue = await channel.declare_queue(
                queue_name,
                durable=s.durable,
                auto_delete=s.deletedWhenUnused,
                arguments=s.queue_arguments(queue_name) or None,
                timeout=_TIMEOUT,
            )
            for key in dict.fromkeys(keys):
                await queue.bind(exchange, key, timeout=_TIMEOUT)
            await sub.start(queue)
        except BaseException as exc:
            await sub.close()
            if isinstance(exc, amqp.ChannelPreconditionFailed):
                raise ComponentError(
                    f"pubsub {self._name!r}: queue {queue_name!r} or exchange {req.topic!r} "
                    f"already exists with other settings (durable, deletedWhenUnused, "
                    f"exchangeKind, maxLen, maxLenBytes or enableDeadLetter differ): {exc}"
                ) from exc
            if isinstance(exc, _AMQP_FAILURES):
                raise ComponentError(
                    f"pubsub {self._name!r}: cannot subscribe to topic {req.topic!r} "
                    f"with queue {queue_name!r}: {exc}"
                ) from exc
            raise
        self._subscriptions.add(sub)
        _log.info(
            "pubsub %r: subscribed to topic %r with queue %r", self._name, req.topic, queue_name
        )
        return sub

    async def _declare_dead_letter(self, channel: AbstractChannel, queue: str) -> None:
        s, _ = self._settings()
        dlx = await channel.declare_exchange(
            f"dlx-{queue}", ExchangeType.FANOUT, durable=s.durable, timeout=_TIMEOUT
        )
        # Never auto-deleted: dead letters wait there until someone looks at them.
        dlq = await channel.declare_queue(f"dlq-{queue}", durable=s.durable, timeout=_TIMEOUT)
        await dlq.bind(dlx, "", timeout=_TIMEOUT)

    def _forget(self, sub: _RabbitMQSubscription) -> None:
        self._subscriptions.discard(sub)

    def _message(self, topic: str, message: AbstractIncomingMessage) -> Message:
        s, _ = self._settings()
        metadata = {k: _text(v) for k, v in (message.headers or {}).items()}
        if s.publishMessagePropertiesToMetadata:
            for key, attr in _PROPERTIES.items():
                value = getattr(message, attr, None)
                if value is not None and value != "":
                    metadata[key] = _text(value)
        # Classic queues only say "redelivered"; quorum queues count deliveries.
        count = (message.headers or {}).get("x-delivery-count")
        attempt = 1 if not message.redelivered else 0
        if isinstance(count, int):
            attempt = count + 1
        return Message(
            topic=topic,
            data=message.body,
            metadata=metadata,
            content_type=message.content_type or "",
            id=message.message_id or "",
            attempt=attempt,
        )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class _RabbitMQSubscription:
    """One consumer on its own channel; closing it requeues what it had not acknowledged."""

    def __init__(
        self,
        owner: RabbitMQPubSub,
        channel: AbstractChannel,
        topic: str,
        queue_name: str,
        handler: Handler,
    ) -> None:
        self._owner = owner
        self._channel = channel
        self._topic = topic
        self._queue_name = queue_name
        self._handler = handler
        s, _ = owner._settings()
        self._settings = s
        # concurrency: single hands messages to the handler one at a time.
        self._one_at_a_time = asyncio.Lock() if s.concurrency.lower() == "single" else None
        self._consumer: tuple[AbstractQueue, str] | None = None
        self._deliveries: set[asyncio.Task[object]] = set()
        self._closed = False

    async def start(self, queue: AbstractQueue) -> None:
        tag = await queue.consume(self._on_message, no_ack=False, timeout=_TIMEOUT)
        self._consumer = (queue, tag)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._forget(self)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            queue, tag = consumer
            with contextlib.suppress(*_AMQP_FAILURES):
                await queue.cancel(tag, timeout=_TIMEOUT)
        # Deliveries still in the handler are abandoned unacknowledged; closing
        # the channel hands their messages back to the queue.
        deliveries = list(self._deliveries)
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        with contextlib.suppress(*_AMQP_FAILURES):
            await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._deliveries.add(task)
        try:
            if self._closed:
                return  # left unacknowledged: the channel closes and requeues it
            if self._one_at_a_time is None:
                await self._deliver(message)
            else:
                async with self._one_at_a_time:
                    await self._deliver(message)
        except _AMQP_FAILURES as exc:
            # The channel went away: the broker requeues every unacknowledged
            # message of it, so this one comes back (possibly a second time).
            _log.info(
                "pubsub %r: could not settle a message of queue %r (%s); it is delivered again",
                self._owner._name,
                self._queue_name,
                exc,
            )
        finally:
            self._deliveries.discard(task)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        s = self._settings
        try:
            await self._handler(self._owner._message(self._topic, message))
        except Exception as exc:  # the handler failed, or a bug on the way: never drop
            if s.enableDeadLetter and not s.requeueInFailure:
                _log.warning(
                    "pubsub %r: handler failed on a message of queue %r (%s); "
                    "dead-lettered to dlq-%s",
                    self._owner._name,
                    self._queue_name,
                    exc,
                    self._queue_name,
                )
                await message.reject(requeue=False)
                return
            _log.warning(
                "pubsub %r: handler failed on a message of queue %r (%s); requeued in %.1fs",
                self._owner._name,
                self._queue_name,
                exc,
                s.requeueDelay,
            )
            await asyncio.sleep(s.requeueDelay)
            await message.nack(requeue=True)
        else:
            await message.ack()
