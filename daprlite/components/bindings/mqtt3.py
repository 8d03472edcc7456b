"""``bindings.mqtt3`` (alias ``bindings.mqtt``): publish to and subscribe to an MQTT topic.

``blocks.bindings`` calls :meth:`MQTTBinding.invoke` for ``create`` (publish
the request data to the component's ``topic``, or to the request's ``topic``
metadata); the runtime's input-binding loop calls :meth:`MQTTBinding.read`,
which subscribes to ``topic`` and hands every message to the app. Each
direction has its own connection through aiomqtt, with the client ids
``{consumerID}-producer`` and ``{consumerID}-consumer`` as in Dapr, so the
two never take over each other's session.

Delivery is at least once. With ``qos: 1`` a message is acknowledged to the
broker only after the app accepted it; until then it is retried in process
with a backoff, and if the binding closes or the connection drops first, the
broker redelivers it on the next connection of the same session
(``cleanSession: false``). A failing app never makes a message disappear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

import aiomqtt
from aiomqtt import MqttError

from daprlite.components.bindings._brokertls import client_tls_context
from daprlite.components.bindings._mqtt import (
    Broker,
    connect,
    disconnect,
    has_wildcard,
    parse_broker_url,
    refused,
)
from daprlite.components.bindings.api import (
    BindingEvent,
    Handler,
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, parse_bool, setting

_log = logging.getLogger("daprlite.component.bindings")

_RETRY_FIRST = 0.5  # seconds before the first redelivery of a message the app refused
_RETRY_MAX = 5.0
_RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt
_RECONNECT_MAX = 5.0
_STABLE = 10.0  # seconds a connection must last for the reconnection backoff to start over
_TIMEOUT = 10.0  # seconds for connect, subscribe and publish round trips
_OPERATIONS = ("create",)


@dataclass(frozen=True, slots=True)
class MQTTSettings:
    """Component metadata of ``bindings.mqtt3``, with Dapr's (case-insensitive) names."""

    url: str = setting(
        required=True,
        doc="Broker address: `tcp://` or `mqtt://` (port 1883), `ssl://` or `mqtts://` (TLS, "
        "port 8883); credentials go in the URL: `tcp://user:password@host:1883`.",
    )
    topic: str = setting(
        required=True,
        doc="Input subscribes to it (wildcards `+`/`#` allowed); output publishes to it "
        "unless the request's metadata `topic` says otherwise.",
    )
    consumerID: str = setting(
        "",
        doc="MQTT client id; `-producer` / `-consumer` is appended for the two connections. "
        "Defaults to the app id. Give each MQTT binding of an app its own.",
    )
    qos: int = setting(1, doc="Quality of service for publishing and subscribing: 0, 1 or 2.")
    retain: bool = setting(False, doc="Publish as retained messages (request metadata overrides).")
    cleanSession: bool = setting(
        False,
        doc="Start every connection with an empty session. Keep false so that messages "
        "published or left unacknowledged while disconnected are delivered afterwards.",
    )
    backOffMaxRetries: int = setting(
        0,
        doc="Retries of a message the app refused before giving up on it for this "
        "connection (it stays unacknowledged and the broker redelivers it on the next "
        "one). 0 or -1 = retry until the app accepts it. Unlike Dapr, where 0 means no "
        "retry, daprlite never gives up by default.",
    )
    caCert: str = setting("", doc="CA certificate (PEM text or file) for ssl:// brokers.")
    clientCert: str = setting("", doc="Client certificate (PEM text or file) for ssl://.")
    clientKey: str = setting("", doc="Private key of clientCert (PEM text or file).")

    def __post_init__(self) -> None:
        self.broker()  # raises on a malformed url
        if self.qos not in (0, 1, 2):
            raise MetadataError("qos", f"expected 0, 1 or 2, got {self.qos}")
        if self.backOffMaxRetries < -1:
            raise MetadataError(
                "backOffMaxRetries", f"expected -1, 0 or more, got {self.backOffMaxRetries}"
            )
        if self.backOffMaxRetries > 0 and (self.qos != 1 or self.cleanSession):
            # Giving up relies on the broker redelivering the unacknowledged
            # message later, which only a QoS 1 persistent session does.
            raise MetadataError(
                "backOffMaxRetries",
                f"a limit of {self.backOffMaxRetries} needs qos 1 and cleanSession false, "
                "otherwise a message given up on would be lost; use 0 to retry until delivered",
            )
        if bool(self.clientCert) != bool(self.clientKey):
            missing = "clientKey" if self.clientCert else "clientCert"
            raise MetadataError(
                missing, "is required when the other of clientCert/clientKey is set"
            )

    def broker(self) -> Broker:
        return parse_broker_url(self.url)


def _wants_output(metadata: ComponentMetadata) -> bool:
    direction = metadata.get("direction").lower()
    return not direction.strip() or "output" in direction


class MQTTBinding:
    """Output ``create`` publishes; input subscribes and acknowledges after the app accepted.

    Messages are delivered to the app one at a time, in the order the broker
    sends them, as Dapr does.
    """

    def __init__(self) -> None:
        self.settings: MQTTSettings | None = None
        self._name = ""
        self._client_id = ""
        self._broker: Broker | None = None
        self._tls: ssl.SSLContext | None = None
        self._producer: aiomqtt.Client | None = None
        self._producer_lock = asyncio.Lock()
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(MQTTSettings, metadata.properties)
        self._name = metadata.name
        self._client_id = settings.consumerID.strip() or metadata.app_id
        if not self._client_id:
            raise MetadataError("consumerID", "is required when the sidecar has no app id")
        broker = settings.broker()
        if broker.tls:
            self._tls = await asyncio.to_thread(
                client_tls_context,
                ca_cert=settings.caCert,
                client_cert=settings.clientCert,
                client_key=settings.clientKey,
            )
        elif settings.caCert or settings.clientCert:
            _log.warning(
                "binding %r: caCert/clientCert are ignored because url is not ssl:// or mqtts://",
                self._name,
            )
        self._broker = broker
        self.settings = settings
        if _wants_output(metadata):
            await self._publisher()  # fail at start-up, not on the first call, if unreachable
        _log.info(
            "binding %r: MQTT broker %s, topic %r, qos %d, client id %r",
            self._name,
            broker,
            settings.topic,
            settings.qos,
            self._client_id,
        )

    def operations(self) -> list[str]:
        return list(_OPERATIONS)

    async def close(self) -> None:
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Cancelling leaves the message being delivered unacknowledged; the
            # broker redelivers it to the next connection of this session.
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await disconnect(producer)

    # -- connections ------------------------------------------------------------------
    def _settings(self) -> MQTTSettings:
        if self.settings is None or self._closed:
            raise ComponentError(f"binding {self._name!r} is not initialised or closed")
        return self.settings

    async def _connect(self, role: str, *, clean_session: bool, manual_ack: bool) -> aiomqtt.Client:
        """A connected client with id ``{consumerID}-{role}``; ComponentError when it fails."""
        broker = self._broker
        assert broker is not None
        return await connect(
            broker,
            f"{self._client_id}-{role}",
            clean_session=clean_session,
            manual_ack=manual_ack,
            tls=self._tls,
            owner=f"binding {self._name!r}",
            timeout=_TIMEOUT,
        )

    async def _publisher(self) -> aiomqtt.Client:
        async with self._producer_lock:
            if self._closed:
                raise ComponentError(f"binding {self._name!r} is closed")
            if self._producer is None:
                # The producer keeps nothing worth resuming, so its session is always clean.
                self._producer = await self._connect(
                    "producer", clean_session=True, manual_ack=False
                )
            return self._producer

    async def _drop_publisher(self, client: aiomqtt.Client) -> None:
        async with self._producer_lock:
            if self._producer is client:
                self._producer = None
        await disconnect(client)

    # -- output -------------------------------------------------------------------------
    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        if req.operation not in _OPERATIONS:
            raise UnsupportedOperationError(
                f"binding {self._name!r} does not support operation {req.operation!r}"
            )
        settings = self._settings()
        topic = req.metadata.get("topic") or settings.topic
        if has_wildcard(topic):
            raise MetadataError(
                "topic", f"cannot publish to {topic!r}: wildcards + and # only match topics"
            )
        retain = settings.retain
        if "retain" in req.metadata:
            try:
                retain = parse_bool(req.metadata["retain"])
            except ValueError as exc:
                raise MetadataError("retain", str(exc)) from None
        # A connection that broke since the last call is replaced once; the
        # retry may publish twice, which at-least-once delivery allows.
        for attempt in (1, 2):
            client = await self._publisher()
            try:
                await client.publish(topic, req.data, qos=settings.qos, retain=retain)
            except MqttError as exc:
                await self._drop_publisher(client)
                if attempt == 2:
                    raise ComponentError(
                        f"binding {self._name!r}: publish to topic {topic!r} failed: {exc}"
                    ) from exc
                _log.info("binding %r: reconnecting the publisher (%s)", self._name, exc)
            else:
                break
        return InvokeResponse()

    # -- input --------------------------------------------------------------------------
    async def read(self, handler: Handler) -> None:
        settings = self._settings()
        if self._consumer is not None:
            raise ComponentError(f"binding {self._name!r}: read was already started")
        # The first subscription happens before read returns, so that start-up
        # fails loudly on a bad broker or topic and no message published after
        # read() returns is missed.
        client = await self._subscribe(settings)
        self._consumer = asyncio.create_task(
            self._consume(client, handler, settings), name=f"mqtt binding {self._name}"
        )

    async def _subscribe(self, settings: MQTTSettings) -> aiomqtt.Client:
        # QoS 2 is not acknowledged by hand: its PUBCOMP is sent after the
        # broker released the message, and paho cannot complete a release it
        # sees again after a reconnect, which would wedge the session. A QoS 2
        # message is therefore retried in process only (it is owned by us once
        # received, as the protocol says).
        client = await self._connect(
            "consumer", clean_session=settings.cleanSession, manual_ack=settings.qos == 1
        )
        try:
            granted = await client.subscribe(settings.topic, qos=settings.qos)
        except MqttError as exc:
            await disconnect(client)
            raise ComponentError(
                f"binding {self._name!r}: subscribe to topic {settings.topic!r} failed: {exc}"
            ) from exc
        if any(refused(code) for code in granted):
            await disconnect(client)
            raise ComponentError(
                f"binding {self._name!r}: the broker refused the subscription to topic "
                f"{settings.topic!r} (check its access rules and the topic filter)"
            )
        return client

    async def _consume(self, client: aiomqtt.Client, handler: Handler, s: MQTTSettings) -> None:
        """Deliver messages until cancelled, reconnecting with a backoff when the broker goes."""
        loop = asyncio.get_running_loop()
        current: aiomqtt.Client | None = client
        wait = _RECONNECT_FIRST
        while True:
            since = loop.time()
            try:
                if current is None:
                    current = await self._subscribe(s)
                    _log.info("binding %r: resubscribed to topic %r", self._name, s.topic)
                async for message in current.messages:
                    await self._deliver(current, message, handler, s)
            except (MqttError, ComponentError) as exc:
                _log.warning(
                    "binding %r: MQTT connection of client %r lost (%s); reconnecting",
                    self._name,
                    f"{self._client_id}-consumer",
                    exc,
                )
            except Exception:  # a bug must not end delivery for good
                _log.exception("binding %r: input loop failed; reconnecting", self._name)
            finally:
                if current is not None:
                    await disconnect(current)
                current = None
            # Only a connection that lasted starts the backoff over: one dropped
            # at once (say, another client took over the same client id) backs off.
            if loop.time() - since > _STABLE:
                wait = _RECONNECT_FIRST
            await asyncio.sleep(wait)
            wait = min(wait * 2, _RECONNECT_MAX)

    async def _deliver(
        self, client: aiomqtt.Client, message: aiomqtt.Message, handler: Handler, s: MQTTSettings
    ) -> None:
        event = BindingEvent(bytes(message.payload), {"topic": message.topic.value})
        wait, failures = _RETRY_FIRST, 0
        while True:
            try:
                await handler(event)
                break
            except Exception as exc:  # DeliveryError, or a bug on the way: never drop
                failures += 1
                if 0 < s.backOffMaxRetries < failures:
                    _log.error(
                        "binding %r: giving up on a message from topic %r after %d attempts; "
                        "it stays unacknowledged and the broker redelivers it on reconnect",
                        self._name,
                        message.topic.value,
                        failures,
                    )
                    return
                _log.warning(
                    "binding %r: the app did not accept a message from topic %r (%s); "
                    "retrying in %.1fs",
                    self._name,
                    message.topic.value,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, _RETRY_MAX)
        if s.qos == 1 and message.qos == 1:
            rc = client._client.ack(message.mid, message.qos)  # see _connect on manual acks
            if rc != 0:
                _log.info(
                    "binding %r: could not acknowledge a delivered message (rc %s); "
                    "the broker will deliver it again",
                    self._name,
                    rc,
                )
