"""Settings of ``pubsub.rabbitmq``: Dapr's metadata names and defaults, checked at init.

Kept apart from ``rabbitmq.py`` so that the component module holds only the
publish and delivery logic. :class:`RabbitMQPubSubSettings` also knows the
broker URL (from ``connectionString`` or ``hostname``/``protocol``/``username``/
``password``) and the queue arguments a subscription declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aio_pika.abc import FieldValue

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import Duration, setting

EXCHANGE_KINDS = ("fanout", "topic", "direct", "headers")
CONCURRENCY = ("parallel", "single")


@dataclass(frozen=True, slots=True)
class RabbitMQPubSubSettings:
    """Component metadata of ``pubsub.rabbitmq``, with Dapr's (case-insensitive) names."""

    connectionString: str = setting(
        "",
        aliases=("host",),
        doc="Broker URL `amqp://user:password@host:5672/vhost` (`amqps://` for TLS); "
        "when empty, the URL is built from hostname, protocol, username and password.",
    )
    protocol: str = setting("amqp", doc="`amqp` or `amqps`, used with hostname.")
    hostname: str = setting("", doc="`host` or `host:port`, used when connectionString is empty.")
    username: str = setting("", doc="User name, used with hostname.")
    password: str = setting("", doc="Password, used with hostname.")
    consumerID: str = setting(
        "", doc="Default consumer group when a subscription names none (the app id otherwise)."
    )
    durable: bool = setting(False, doc="Declare exchanges and queues durable.")
    deletedWhenUnused: bool = setting(
        True,
        doc="Declare exchanges and queues auto-delete: a queue is gone (with its messages) "
        "when its last consumer leaves. Set false to keep messages for a group that is away.",
    )
    autoAck: bool = setting(
        False,
        doc="Ignored: daprlite always acknowledges after the handler returned, so a failing "
        "handler never loses a message.",
    )
    requeueInFailure: bool = setting(
        False,
        doc="With enableDeadLetter: true requeues a message whose handler failed, false "
        "dead-letters it. Without a dead-letter queue a failed message is always requeued.",
    )
    deliveryMode: int = setting(0, doc="2 publishes persistent messages; 0 or 1 transient ones.")
    prefetchCount: int = setting(
        0, doc="Unacknowledged messages a subscription may hold at once; 0 = unlimited."
    )
    maxLen: int = setting(0, doc="Queue length limit (`x-max-length`); 0 = none.")
    maxLenBytes: int = setting(0, doc="Queue size limit in bytes (`x-max-length-bytes`); 0 = none.")
    exchangeKind: str = setting("fanout", doc="Exchange type: fanout, topic, direct or headers.")
    enableDeadLetter: bool = setting(
        False,
        doc="Declare exchange `dlx-{queue}` and queue `dlq-{queue}` and dead-letter there the "
        "messages whose handler failed (unless requeueInFailure) or that expired.",
    )
    publisherConfirm: bool = setting(
        False, doc="Wait for the broker to confirm every published message."
    )
    concurrency: str = setting(
        "parallel", doc="`parallel`: handle messages concurrently; `single`: one at a time."
    )
    reconnectWaitSeconds: Duration = setting(
        Duration(3.0), aliases=("reconnectWait",), doc="Pause between reconnection attempts."
    )
    ttlInSeconds: int | None = setting(
        None,
        doc="Default per-message time to live; publish metadata ttlInSeconds overrides it.",
    )
    heartBeat: Duration = setting(Duration(10.0), doc="AMQP heartbeat interval.")
    clientName: str = setting("", doc="Connection name shown in the RabbitMQ management UI.")
    publishMessagePropertiesToMetadata: bool = setting(
        False,
        doc="Add the AMQP message properties (messageid, correlationid, type, ...) to the "
        "delivered message's metadata.",
    )
    requeueDelay: Duration = setting(
        Duration(0.5),
        doc="daprlite: pause before a message whose handler failed goes back to the queue, "
        "so a failing handler does not spin.",
    )
    queueExpiresInSeconds: int | None = setting(
        None,
        doc="daprlite: the broker deletes a subscription queue unused for this long "
        "(`x-expires`); unset = never.",
    )
    caCert: str = setting("", doc="CA certificate (PEM text or file) for amqps:// brokers.")
    clientCert: str = setting("", doc="Client certificate (PEM text or file) for amqps://.")
    clientKey: str = setting("", doc="Private key of clientCert (PEM text or file).")
    saslExternal: bool = setting(
        False, doc="Authenticate with the TLS client certificate (SASL EXTERNAL)."
    )

    def __post_init__(self) -> None:
        url = self.url()
        parts = urlsplit(url)
        field = "connectionString" if self.connectionString.strip() else "hostname"
        if parts.scheme.lower() not in ("amqp", "amqps") or not parts.hostname:
            # Name the scheme and host only: the rest of the URL may hold a password.
            raise MetadataError(
                field,
                "expected amqp://user:password@host:5672/ (or amqps://), got scheme "
                f"{parts.scheme!r} and host {parts.hostname!r}",
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise MetadataError(field, "has a port that is not a number 1-65535") from None
        self._check_ranges()
        if bool(self.clientCert) != bool(self.clientKey):
            missing = "clientKey" if self.clientCert else "clientCert"
            raise MetadataError(
                missing, "is required when the other of clientCert/clientKey is set"
            )
        if self.saslExternal and not (self.tls() and self.clientCert):
            raise MetadataError("saslExternal", "needs an amqps:// broker and clientCert/clientKey")

    def _check_ranges(self) -> None:
        if self.deliveryMode not in (0, 1, 2):
            raise MetadataError("deliveryMode", f"expected 0, 1 or 2, got {self.deliveryMode}")
        if not 0 <= self.prefetchCount <= 65535:
            raise MetadataError("prefetchCount", f"expected 0 to 65535, got {self.prefetchCount}")
        for name, value in (("maxLen", self.maxLen), ("maxLenBytes", self.maxLenBytes)):
            if value < 0:
                raise MetadataError(name, f"expected 0 (no limit) or more, got {value}")
        if self.exchangeKind.lower() not in EXCHANGE_KINDS:
            raise MetadataError(
                "exchangeKind",
                f"expected one of {', '.join(EXCHANGE_KINDS)}, got {self.exchangeKind!r}",
            )
        if self.concurrency.lower() not in CONCURRENCY:
            raise MetadataError(
                "concurrency", f"expected parallel or single, got {self.concurrency!r}"
            )
        if self.ttlInSeconds is not None and self.ttlInSeconds < 0:
            raise MetadataError("ttlInSeconds", f"expected 0 or more, got {self.ttlInSeconds}")
        if self.queueExpiresInSeconds is not None and self.queueExpiresInSeconds <= 0:
            raise MetadataError(
                "queueExpiresInSeconds", f"expected 1 or more, got {self.queueExpiresInSeconds}"
            )
        for name, seconds in (
            ("reconnectWaitSeconds", self.reconnectWaitSeconds),
            ("heartBeat", self.heartBeat),
        ):
            if seconds <= 0:
                raise MetadataError(name, f"expected a positive duration, got {seconds}")
        if self.requeueDelay < 0:
            raise MetadataError("requeueDelay", f"expected 0 or more, got {self.requeueDelay}")

    def url(self) -> str:
        if self.connectionString.strip():
            return self.connectionString.strip()
        if not self.hostname.strip():
            raise MetadataError("connectionString", "is required (or hostname) but was not given")
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{self.protocol.strip().lower()}://{auth}{self.hostname.strip()}"

    def tls(self) -> bool:
        return urlsplit(self.url()).scheme.lower() == "amqps"

    def address(self) -> str:
        """``host:port/vhost`` for logs and errors: the URL without its credentials."""
        parts = urlsplit(self.url())
        port = parts.port or (5671 if self.tls() else 5672)
        return f"{parts.hostname}:{port}{parts.path or '/'}"

    def queue_arguments(self, queue: str) -> dict[str, FieldValue]:
        args: dict[str, FieldValue] = {}
        if self.maxLen:
            args["x-max-length"] = self.maxLen
        if self.maxLenBytes:
            args["x-max-length-bytes"] = self.maxLenBytes
        if self.enableDeadLetter:
            args["x-dead-letter-exchange"] = f"dlx-{queue}"
        if self.queueExpiresInSeconds:
            args["x-expires"] = self.queueExpiresInSeconds * 1000
        return args
