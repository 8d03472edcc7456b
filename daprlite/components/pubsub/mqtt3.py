"""``pubsub.mqtt3`` (alias ``pubsub.mqtt``): topics as MQTT topics, groups as shared subscriptions.

The pub/sub block calls :meth:`MQTTPubSub.publish`, which publishes the data
to the MQTT topic of the same name over one clean-session connection, and
:meth:`MQTTPubSub.subscribe`, which opens a connection of its own for the
subscription and subscribes to ``$share/{consumerGroup}/{topic}``: members of
one group share the messages, and every group gets all of them.

Delivery is at least once. A QoS 1 message is acknowledged to the broker only
after the handler returned; until then it is retried in process with a backoff
(``backOffInitialInterval`` doubling to ``backOffMaxInterval``), because an
MQTT 3.1.1 broker redelivers an unacknowledged message only on the next
connection. Messages of one subscription reach the handler one at a time, in
order, so a message that keeps failing holds up the ones behind it.

Sessions are persistent (``cleanSession: false``): closing a subscription
disconnects without unsubscribing, and the broker keeps what the group is sent
meanwhile. The client id is ``{consumerID}-{hash of group and topic}-{slot}``;
the slot is the lowest one no other subscription of this process is using, so
the same subscription after a restart resumes the same session, and two
subscribers of one group in one process compete instead of throwing each
other off. Sidecars in different processes need different ``consumerID`` s.

MQTT 3.1.1 carries only the topic and the payload: publish metadata and the
content type do not reach the subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import uuid
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
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, parse_bool, setting
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

_RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt
_RECONNECT_MAX = 5.0
_STABLE = 10.0  # seconds a connection must last for the reconnection backoff to start over
_TIMEOUT = 10.0  # seconds for connect, subscribe and publish round trips


@dataclass(frozen=True, slots=True)
class MQTTPubSubSettings:
    """Component metadata of ``pubsub.mqtt3``, with Dapr's (case-insensitive) names."""

    url: str = setting(
        required=True,
        doc="Broker address: `tcp://` or `mqtt://` (port 1883), `ssl://` or `mqtts://` (TLS, "
        "port 8883); credentials go in the URL: `tcp://user:password@host:1883`.",
    )
    consumerID: str = setting(
        "",
        doc="Base of the MQTT client ids (the app id by default); sidecars in different "
        "processes sharing a broker need different ones.",
    )
    qos: int = setting(1, doc="Quality of service for publishing and subscribing: 0, 1 or 2.")
    retain: bool = setting(False, doc="Publish as retained messages (publish metadata overrides).")
    cleanSession: bool = setting(
        False,
        doc="Start every subscriber connection with an empty session. Keep false so that "
        "messages sent to a group while it is away are delivered when it is back.",
    )
    concurrency: int = setting(
        10,
        doc="daprlite: messages handled at once per subscription. Acknowledgements still go "
        "to the broker in arrival order, as MQTT 3.1.1 requires; handling one at a time lets "
        "a busy broker's per-client queue overflow and drop messages.",
    )
    backOffInitialInterval: Duration = setting(
        Duration(0.5), doc="daprlite: pause before retrying a message whose handler failed."
    )
    backOffMaxInterval: Duration = setting(
        Duration(5.0), doc="daprlite: the longest pause between retries (the pause doubles)."
    )
    caCert: str = setting("", doc="CA certificate (PEM text or file) for ssl:// brokers.")
    clientCert: str = setting("", doc="Client certificate (PEM text or file) for ssl://.")
    clientKey: str = setting("", doc="Private key of clientCert (PEM text or file).")

    def __post_init__(self) -> None:
        parse_broker_url(self.url)  # raises on a malformed url
        if self.qos not in (0, 1, 2):
            raise MetadataError("qos", f"expected 0, 1 or 2, got {self.qos}")
        if self.concurrency < 1:
            raise MetadataError("concurrency", f"expected at least 1, got {self.concurrency}")
        if self.backOffInitialInterval <= 0:
            raise MetadataError(
                "backOffInitialInterval",
                f"expected a positive duration, got {self.backOffInitialInterval}",
            )
        if self.backOffMaxInterval < self.backOffInitialInterval:
            raise MetadataError(
                "backOffMaxInterval",
                f"expected at least backOffInitialInterval, got {self.backOffMaxInterval}",
            )
        if bool(self.clientCert) != bool(self.clientKey):
            missing = "clientKey" if self.clientCert else "clientCert"
            raise MetadataError(
                missing, "is required when the other of clientCert/clientKey is set"
            )


class _Slots:
    """Client ids in use by this process's subscriptions, so that each gets its own."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, prefix: str) -> str:
        slot = 0
        while f"{prefix}-{slot}" in self._taken:
            slot += 1
        client_id = f"{prefix}-{slot}"
        self._taken.add(client_id)
        return client_id

    def release(self, client_id: str) -> None:
        self._taken.discard(client_id)


# Process-wide on purpose: two component instances in one process (two
# sidecars in a test, or two components on one broker) must not take the same
# client id, or the broker keeps disconnecting one for the other.
_SLOTS = _Slots()


class MQTTPubSub:
    """Publish over one connection; each subscription a persistent shared-subscription session."""

    def __init__(self) -> None:
        self.settings: MQTTPubSubSettings | None = None
        self._name = ""
        self._base = ""
        self._broker: Broker | None = None
        self._tls: ssl.SSLContext | None = None
        self._producer: aiomqtt.Client | None = None
        self._producer_lock = asyncio.Lock()
        self._subscriptions: set[_MQTTSubscription] = set()
        self._closed = False

    async def init(self, metadata: ComponentMetadata) -> None:
        s = decode(MQTTPubSubSettings, metadata.properties)
        self._name = metadata.name
        self._base = s.consumerID.strip() or metadata.app_id
        if not self._base:
            raise MetadataError("consumerID", "is required when the sidecar has no app id")
        broker = parse_broker_url(s.url)
        if broker.tls:
            self._tls = await asyncio.to_thread(
                client_tls_context,
                ca_cert=s.caCert,
                client_cert=s.clientCert,
                client_key=s.clientKey,
            )
        elif s.caCert or s.clientCert:
            _log.warning(
                "pubsub %r: caCert/clientCert are ignored because url is not ssl:// or mqtts://",
                self._name,
            )
        self._broker = broker
        self.settings = s
        await self._publisher()  # fail at start-up, not on the first publish, if unreachable
        _log.info("pubsub %r: MQTT broker %s, qos %d", self._name, broker, s.qos)

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.SUBSCRIBE_WILDCARDS})

    async def close(self) -> None:
        self._closed = True
        for sub in list(self._subscriptions):
            await sub.close()
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await disconnect(producer)

    def _settings(self) -> MQTTPubSubSettings:
        if self.settings is None or self._closed:
            raise ComponentError(f"pubsub {self._name!r} is not initialised or closed")
        return self.settings

    async def connect(
        self, client_id: str, *, clean_session: bool, manual_ack: bool
    ) -> aiomqtt.Client:
        """A connected client; ComponentError when the broker cannot be reached."""
        broker = self._broker
        assert broker is not None
        return await connect(
            broker,
            client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
            tls=self._tls,
            owner=f"pubsub {self._name!r}",
            timeout=_TIMEOUT,
        )

    # -- publish ------------------------------------------------------------------------
    async def _publisher(self) -> aiomqtt.Client:
        async with self._producer_lock:
            if self._closed:
                raise ComponentError(f"pubsub {self._name!r} is closed")
            if self._producer is None:
                # Nothing worth resuming: a clean session under a fresh id, so
                # that publishers never take over each other's connection.
                self._producer = await self.connect(
                    f"{self._base}-pub-{uuid.uuid4().hex[:8]}", clean_session=True, manual_ack=False
                )
            return self._producer

    async def publish(self, req: PublishRequest) -> None:
        s = self._settings()
        if has_wildcard(req.topic):
            raise MetadataError(
                "topic", f"cannot publish to {req.topic!r}: wildcards + and # only match topics"
            )
        retain = s.retain
        if "retain" in req.metadata:
            try:
                retain = parse_bool(req.metadata["retain"])
            except ValueError as exc:
                raise MetadataError("retain", str(exc)) from None
        # A connection that broke since the last call is replaced once; the
        # retry may publish twice, which at-least-once delivery allows.
        for attempt in (1, 2):
            try:
                client = await self._publisher()
                await client.publish(req.topic, req.data, qos=s.qos, retain=retain)
                return
            except (MqttError, ComponentError) as exc:
                async with self._producer_lock:
                    broken, self._producer = self._producer, None
                if broken is not None:
                    await disconnect(broken)
                if attempt == 2:
                    raise PublishError(
                        f"pubsub {self._name!r}: publish to topic {req.topic!r} failed: {exc}"
                    ) from exc

    # -- subscribe ----------------------------------------------------------------------
    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> Subscription:
        s = self._settings()
        group = req.consumer_group or self._base
        if "/" in group or "+" in group or "#" in group:
            raise MetadataError("consumerID", f"a consumer group cannot contain / + #: {group!r}")
        digest = hashlib.sha256(f"{group}\0{req.topic}".encode()).hexdigest()[:12]
        client_id = _SLOTS.take(f"{self._base}-{digest}")
        sub = _MQTTSubscription(self, s, client_id, req.topic, f"$share/{group}/{req.topic}")
        try:
            client = await sub.connect()
        except BaseException:
            _SLOTS.release(client_id)
            raise
        sub.start(client, handler)
        self._subscriptions.add(sub)
        _log.info(
            "pubsub %r: subscribed to topic %r for group %r as client %r",
            self._name,
            req.topic,
            group,
            client_id,
        )
        return sub

    def _forget(self, sub: _MQTTSubscription) -> None:
        self._subscriptions.discard(sub)


class _MQTTSubscription:
    """One persistent session subscribed to one shared topic filter; redelivers in process."""

    def __init__(
        self,
        owner: MQTTPubSub,
        settings: MQTTPubSubSettings,
        client_id: str,
        topic: str,
        topic_filter: str,
    ) -> None:
        self._owner = owner
        self._s = settings
        self._client_id = client_id
        self._topic = topic
        self._filter = topic_filter
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def connect(self) -> aiomqtt.Client:
        # QoS 2 is not acknowledged by hand (see bindings.mqtt3): paho cannot
        # complete a release it sees again after a reconnect. Such a message
        # is retried in process only.
        client = await self._owner.connect(
            self._client_id, clean_session=self._s.cleanSession, manual_ack=self._s.qos == 1
        )
        try:
            granted = await client.subscribe(self._filter, qos=self._s.qos)
        except MqttError as exc:
            await disconnect(client)
            raise ComponentError(
                f"pubsub {self._owner._name!r}: subscribe to {self._filter!r} failed: {exc}"
            ) from exc
        if any(refused(code) for code in granted):
            await disconnect(client)
            raise ComponentError(
                f"pubsub {self._owner._name!r}: the broker refused the subscription to "
                f"{self._filter!r} (access rules, or no shared subscriptions?)"
            )
        return client

    def start(self, client: aiomqtt.Client, handler: Handler) -> None:
        self._task = asyncio.create_task(
            self._consume(client, handler), name=f"mqtt pubsub {self._client_id}"
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._forget(self)
        task, self._task = self._task, None
        if task is not None:
            # Cancelling leaves the message in the handler unacknowledged; the
            # broker redelivers it to the next connection of this session. The
            # session keeps its subscription, so the group's messages wait there.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        _SLOTS.release(self._client_id)

    async def _consume(self, client: aiomqtt.Client, handler: Handler) -> None:
        """Deliver until cancelled, reconnecting with a backoff when the broker goes."""
        loop = asyncio.get_running_loop()
        current: aiomqtt.Client | None = client
        wait = _RECONNECT_FIRST
        while True:
            since = loop.time()
            try:
                if current is None:
                    current = await self.connect()
                    _log.info("pubsub %r: resubscribed to %r", self._owner._name, self._filter)
                await self._consume_connection(current, handler)
            except (MqttError, ComponentError) as exc:
                _log.warning(
                    "pubsub %r: MQTT connection of client %r lost (%s); reconnecting",
                    self._owner._name,
                    self._client_id,
                    exc,
                )
            except Exception:  # a bug must not end delivery for good
                _log.exception("pubsub %r: delivery loop failed; reconnecting", self._owner._name)
            finally:
                if current is not None:
                    await disconnect(current)
                current = None
            if loop.time() - since > _STABLE:
                wait = _RECONNECT_FIRST
            await asyncio.sleep(wait)
            wait = min(wait * 2, _RECONNECT_MAX)

    async def _consume_connection(self, client: aiomqtt.Client, handler: Handler) -> None:
        """Handle up to ``concurrency`` messages at once; acknowledge them in arrival order.

        Ending (connection lost, close) cancels what is in flight; those messages
        are unacknowledged, so the broker hands them out again on the session.
        """
        slots = asyncio.Semaphore(self._s.concurrency)
        in_order: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]] = asyncio.Queue()
        acker = asyncio.create_task(self._ack_in_order(client, in_order))
        handling: set[asyncio.Task[None]] = set()
        try:
            async for message in client.messages:
                await slots.acquire()
                task = asyncio.create_task(self._deliver(message, handler))
                handling.add(task)
                task.add_done_callback(handling.discard)
                task.add_done_callback(lambda _t: slots.release())
                in_order.put_nowait((message, task))
                if acker.done():  # the acker only ends on an error: surface it
                    acker.result()
        finally:
            acker.cancel()
            for task in list(handling):
                task.cancel()
            await asyncio.gather(acker, *handling, return_exceptions=True)

    async def _ack_in_order(
        self,
        client: aiomqtt.Client,
        in_order: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Task[None]]],
    ) -> None:
        while True:
            message, handled = await in_order.get()
            await asyncio.shield(handled)  # handlers retry until they succeed
            self._ack(client, message)

    def _ack(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        if self._s.qos == 1 and message.qos == 1:
            rc = client._client.ack(message.mid, message.qos)  # see connect() on manual acks
            if rc != 0:
                _log.info(
                    "pubsub %r: could not acknowledge a message (rc %s); it is delivered again",
                    self._owner._name,
                    rc,
                )

    async def _deliver(self, message: aiomqtt.Message, handler: Handler) -> None:
        msg = Message(topic=message.topic.value, data=bytes(message.payload))
        wait, attempt = float(self._s.backOffInitialInterval), 0
        while True:
            attempt += 1
            try:
                await handler(msg)
                break
            except Exception as exc:  # the handler failed, or a bug on the way: never drop
                _log.warning(
                    "pubsub %r: handler failed on a message of topic %r (attempt %d: %s); "
                    "retrying in %.2fs",
                    self._owner._name,
                    msg.topic,
                    attempt,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, float(self._s.backOffMaxInterval))
