"""``bindings.rabbitmq``: send messages to, and receive them from, one RabbitMQ queue.

``blocks.bindings`` calls :meth:`RabbitMQBinding.invoke` for ``create``, which
publishes the request data to ``queueName`` through the default exchange and
waits for the broker's confirmation. The runtime's input-binding loop calls
:meth:`RabbitMQBinding.read`, which consumes the queue with manual
acknowledgements: a message is acknowledged once the app accepted it, and
handed back to the queue (``nack`` with requeue, after a short pause so a
failing app is not hammered) when it did not, so it is delivered again and
never dropped. One aio-pika robust connection carries both directions; it
reconnects on its own after a broker restart, declaring the queue again and
resuming the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
from aio_pika import exceptions as amqp
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
    FieldValue,
)

from daprlite.components.bindings._brokertls import client_tls_context
from daprlite.components.bindings.api import (
    BindingEvent,
    Handler,
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, int_metadata, setting

_log = logging.getLogger("daprlite.component.bindings")

_OPERATIONS = ("create",)
_TIMEOUT = 10.0  # seconds for connecting, declaring, publishing and cancelling
_REQUEUE_PAUSE = 0.5  # seconds between a refused delivery and handing the message back
# Failures of the driver or the connection, as opposed to our own errors.
_AMQP_FAILURES = (amqp.AMQPError, amqp.ChannelInvalidStateError, ConnectionError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RabbitMQSettings:
    """Component metadata of ``bindings.rabbitmq``, with Dapr's (case-insensitive) names."""

    host: str = setting(
        required=True,
        aliases=("connectionString",),
        doc="Broker URL: `amqp://user:password@host:5672/vhost`, or `amqps://` for TLS.",
    )
    queueName: str = setting(required=True, doc="The queue to publish to and consume from.")
    durable: bool = setting(
        False,
        doc="Declare the queue durable and publish persistent messages, so both survive "
        "a broker restart.",
    )
    deleteWhenUnused: bool = setting(
        False, doc="Declare the queue auto-delete: gone when its last consumer leaves."
    )
    ttlInSeconds: int | None = setting(
        None, doc="Queue-wide message time to live (`x-message-ttl`); unset = no expiry."
    )
    prefetchCount: int = setting(
        0, doc="Unacknowledged messages the consumer may hold at once; 0 = unlimited."
    )
    exclusive: bool = setting(
        False, doc="Declare the queue exclusive to this connection (deleted when it closes)."
    )
    maxPriority: int | None = setting(
        None, doc="Make the queue a priority queue with priorities 0..maxPriority (1-255)."
    )
    contentType: str = setting(
        "text/plain", doc="Content type of published messages (request metadata overrides)."
    )
    reconnectWaitInSeconds: float = setting(
        5.0, doc="Pause between reconnection attempts after the connection was lost."
    )
    caCert: str = setting("", doc="CA certificate (PEM text or file) for amqps:// brokers.")
    clientCert: str = setting("", doc="Client certificate (PEM text or file) for amqps://.")
    clientKey: str = setting("", doc="Private key of clientCert (PEM text or file).")

    def __post_init__(self) -> None:
        parts = urlsplit(self.host.strip())
        if parts.scheme.lower() not in ("amqp", "amqps") or not parts.hostname:
            # Name the scheme and host only: the rest of the URL may hold a password.
            raise MetadataError(
                "host",
                "expected a URL such as amqp://user:password@host:5672/ (or amqps://), "
                f"got one with scheme {parts.scheme!r} and host {parts.hostname!r}",
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise MetadataError("host", "has a port that is not a number 1-65535") from None
        if self.ttlInSeconds is not None and self.ttlInSeconds < 0:
            raise MetadataError(
                "ttlInSeconds", f"expected 0 or more seconds, got {self.ttlInSeconds}"
            )
        if not 0 <= self.prefetchCount <= 65535:
            raise MetadataError("prefetchCount", f"expected 0 to 65535, got {self.prefetchCount}")
        if self.maxPriority is not None and not 1 <= self.maxPriority <= 255:
            raise MetadataError("maxPriority", f"expected 1 to 255, got {self.maxPriority}")
        if self.reconnectWaitInSeconds <= 0:
            raise MetadataError(
                "reconnectWaitInSeconds",
                f"expected a positive number of seconds, got {self.reconnectWaitInSeconds}",
            )
        if bool(self.clientCert) != bool(self.clientKey):
            missing = "clientKey" if self.clientCert else "clientCert"
            raise MetadataError(
                missing, "is required when the other of clientCert/clientKey is set"
            )

    def tls(self) -> bool:
        return urlsplit(self.host.strip()).scheme.lower() == "amqps"

    def address(self) -> str:
        """``host:port/vhost`` for logs and errors: the URL without its credentials."""
        parts = urlsplit(self.host.strip())
        port = parts.port or (5671 if self.tls() else 5672)
        return f"{parts.hostname}:{port}{parts.path or '/'}"

    def queue_arguments(self) -> dict[str, FieldValue]:
        args: dict[str, FieldValue] = {}
        if self.ttlInSeconds is not None:
            args["x-message-ttl"] = self.ttlInSeconds * 1000
        if self.maxPriority is not None:
            args["x-max-priority"] = self.maxPriority
        return args


class RabbitMQBinding:
    """Output ``create`` publishes with confirms; input acks after the app accepted."""

    def __init__(self) -> None:
        self.settings: RabbitMQSettings | None = None
        self._name = ""
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consumer: tuple[AbstractQueue, str] | None = None
        self._deliveries: set[asyncio.Task[object]] = set()

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(RabbitMQSettings, metadata.properties)
        self._name = metadata.name
        context: ssl.SSLContext | None = None
        if settings.tls():
            context = await asyncio.to_thread(
                client_tls_context,
                ca_cert=settings.caCert,
                client_cert=settings.clientCert,
                client_key=settings.clientKey,
            )
        elif settings.caCert or settings.clientCert:
            _log.warning(
                "binding %r: caCert/clientCert are ignored because host is not an amqps:// URL",
                self._name,
            )
        try:
            connection = await aio_pika.connect_robust(
                settings.host.strip(),
                ssl_context=context,
                timeout=_TIMEOUT,
                reconnect_interval=settings.reconnectWaitInSeconds,
                client_properties={"connection_name": f"daprlite binding {self._name}"},
            )
        except (*_AMQP_FAILURES, OSError) as exc:
            # aio-pika's messages name the failure, never the password.
            raise ComponentError(
                f"binding {self._name!r}: cannot connect to RabbitMQ at {settings.address()}: {exc}"
            ) from exc
        self._connection = connection
        self.settings = settings
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._publish_channel = channel
            await self._declare(channel, settings)
        except BaseException:
            await self.close()
            raise
        _log.info(
            "binding %r: RabbitMQ at %s, queue %r (durable %s)",
            self._name,
            settings.address(),
            settings.queueName,
            settings.durable,
        )

    def operations(self) -> list[str]:
        return list(_OPERATIONS)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        consumer, self._consumer = self._consumer, None
        self._publish_channel = None
        if consumer is not None:
            queue, tag = consumer
            with contextlib.suppress(*_AMQP_FAILURES):
                await queue.cancel(tag, timeout=_TIMEOUT)
        # Deliveries still waiting on the app are abandoned unacknowledged; the
        # broker puts their messages back in the queue when the channel closes.
        deliveries = list(self._deliveries)
        for task in deliveries:
            task.cancel()
        await asyncio.gather(*deliveries, return_exceptions=True)
        if connection is not None:
            with contextlib.suppress(*_AMQP_FAILURES):
                await connection.close()

    # -- helpers ------------------------------------------------------------------------
    def _settings(self) -> RabbitMQSettings:
        if self.settings is None or self._connection is None:
            raise ComponentError(f"binding {self._name!r} is not initialised or closed")
        return self.settings

    async def _declare(self, channel: AbstractChannel, s: RabbitMQSettings) -> AbstractQueue:
        try:
            return await channel.declare_queue(
                s.queueName,
                durable=s.durable,
                exclusive=s.exclusive,
                auto_delete=s.deleteWhenUnused,
                arguments=s.queue_arguments() or None,
                timeout=_TIMEOUT,
            )
        except amqp.ChannelPreconditionFailed as exc:
            raise ComponentError(
                f"binding {self._name!r}: queue {s.queueName!r} already exists with other "
                f"settings (durable, deleteWhenUnused, exclusive, ttlInSeconds or maxPriority "
                f"differ): {exc}"
            ) from exc
        except _AMQP_FAILURES as exc:
            raise ComponentError(
                f"binding {self._name!r}: cannot declare queue {s.queueName!r}: {exc}"
            ) from exc

    # -- output -------------------------------------------------------------------------
    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        if req.operation not in _OPERATIONS:
            raise UnsupportedOperationError(
                f"binding {self._name!r} does not support operation {req.operation!r}"
            )
        s = self._settings()
        ttl = int_metadata(req.metadata, "ttlInSeconds", 0, 2**31 // 1000)
        priority = int_metadata(req.metadata, "priority", 0, 255)
        message = aio_pika.Message(
            req.data,
            content_type=req.metadata.get("contentType") or s.contentType,
            delivery_mode=DeliveryMode.PERSISTENT if s.durable else DeliveryMode.NOT_PERSISTENT,
            expiration=ttl,
            priority=priority,
        )
        channel = self._publish_channel
        assert channel is not None
        try:
            try:
                await self._publish(channel, message, s)
            except amqp.PublishError:
                # Unroutable: the queue was deleted (deleteWhenUnused, or by an
                # operator) since we declared it. Declare it again, once.
                await self._declare(channel, s)
                await self._publish(channel, message, s)
        except _AMQP_FAILURES as exc:
            raise ComponentError(
                f"binding {self._name!r}: publish to queue {s.queueName!r} failed: {exc}"
            ) from exc
        return InvokeResponse()

    async def _publish(
        self, channel: AbstractChannel, message: aio_pika.Message, s: RabbitMQSettings
    ) -> None:
        # mandatory + publisher confirms: returns once the broker has the
        # message in the queue (on disk, for persistent messages in a durable
        # one); the channel's on_return_raises turns "no such queue" into
        # PublishError instead of a silent drop.
        await channel.default_exchange.publish(
            message, routing_key=s.queueName, mandatory=True, timeout=_TIMEOUT
        )

    # -- input --------------------------------------------------------------------------
    async def read(self, handler: Handler) -> None:
        s = self._settings()
        connection = self._connection
        assert connection is not None
        if self._consumer is not None:
            raise ComponentError(f"binding {self._name!r}: read was already started")

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._deliver(message, handler)

        try:
            channel = await connection.channel()
            if s.prefetchCount:
                await channel.set_qos(prefetch_count=s.prefetchCount, timeout=_TIMEOUT)
            queue = await self._declare(channel, s)
            tag = await queue.consume(on_message, no_ack=False, timeout=_TIMEOUT)
        except _AMQP_FAILURES as exc:
            raise ComponentError(
                f"binding {self._name!r}: cannot consume queue {s.queueName!r}: {exc}"
            ) from exc
        self._consumer = (queue, tag)

    async def _deliver(self, message: AbstractIncomingMessage, handler: Handler) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._deliveries.add(task)
        try:
            try:
                await handler(BindingEvent(message.body))
            except Exception as exc:  # DeliveryError, or a bug on the way: never drop
                _log.warning(
                    "binding %r: the app did not accept a message from queue %r (%s); "
                    "it goes back to the queue",
                    self._name,
                    message.routing_key,
                    exc,
                )
                await asyncio.sleep(_REQUEUE_PAUSE)
                await message.nack(requeue=True)
            else:
                await message.ack()
        except _AMQP_FAILURES as exc:
            # The channel went away: the broker requeues every unacknowledged
            # message of it, so this one comes back (possibly a second time).
            _log.info(
                "binding %r: could not settle a message (%s); the broker redelivers it",
                self._name,
                exc,
            )
        finally:
            self._deliveries.discard(task)
