"""``pubsub.jetstream``: topics as subjects of NATS JetStream streams, groups as durable consumers.

``blocks.pubsub`` calls :meth:`JetStreamPubSub.publish` with the CloudEvent
bytes of a publish request and :meth:`JetStreamPubSub.subscribe` for each
subscription of the app. A topic is a NATS subject stored by a stream: the
component's ``streamName``, else the stream that already holds the subject,
else one it creates named after the topic. Each consumer group of a topic is
one durable pull consumer, so subscribers of a group compete for its
messages, different groups each get all of them, and a group keeps its
place while no subscriber is connected. A handler that returns acks the
message; one that raises NAKs it (after ``backOff``/``ackWait`` when set), so
the server delivers it again; a subscriber that dies without answering gets
its messages redelivered to the others after ``ackWait``. Nothing is
terminated or dropped by the component.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client, RawCredentials
from nats.js import JetStreamContext, api

from daprlite.components._tls import load_client_cert
from daprlite.components.errors import ComponentError
from daprlite.components.metadata import ComponentMetadata, decode
from daprlite.components.pubsub._jetstream_settings import (
    CONTENT_TYPE_HEADER,
    JetStreamSettings,
    check_header,
    nats_name,
)
from daprlite.components.pubsub._jetstream_subscription import (
    NATS_FAILURES,
    JetStreamSubscription,
)
from daprlite.components.pubsub.api import (
    Feature,
    Handler,
    PublishError,
    PublishRequest,
    SubscribeRequest,
    Subscription,
)

_log = logging.getLogger("daprlite.component.pubsub")

_TIMEOUT = 10.0  # seconds for connecting and for JetStream API requests
_CLOSE_TIMEOUT = 4.0  # seconds for closing the connection


class JetStreamPubSub:
    """Publish with server acknowledgement; deliver through durable pull consumers."""

    def __init__(self) -> None:
        self.settings: JetStreamSettings | None = None
        self._name = ""
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: dict[str, str] = {}  # topic -> stream holding it
        self._stream_lock = asyncio.Lock()
        self._subscriptions: set[JetStreamSubscription] = set()

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(JetStreamSettings, metadata.properties)
        self._name = metadata.name
        tls: ssl.SSLContext | None = None
        if settings.tls_client_cert:
            tls = await asyncio.to_thread(_client_tls, settings)
        if settings.rateLimit or settings.flowControl:
            _log.warning(
                "pubsub %r: rateLimit and flowControl apply to push consumers; "
                "this component pulls, so they are ignored",
                self._name,
            )
        if settings.ackPolicy.lower() != "explicit":
            _log.warning(
                "pubsub %r: ackPolicy %s can lose messages whose handler failed",
                self._name,
                settings.ackPolicy,
            )
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=settings.servers(),
                    name=settings.name,
                    token=settings.token or None,
                    user_credentials=RawCredentials(settings.credentials())
                    if settings.jwt
                    else None,
                    tls=tls,
                    connect_timeout=int(_TIMEOUT),
                    allow_reconnect=True,
                    # Two tries per server so a wrong address fails init quickly;
                    # raised to "forever" below once connected.
                    max_reconnect_attempts=1,
                    reconnect_time_wait=1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                _TIMEOUT * 2,
            )
        except (*NATS_FAILURES, ValueError) as exc:
            # The driver's messages name the server, never the token or seed.
            raise ComponentError(
                f"pubsub {self._name!r}: cannot connect to NATS at {_hosts(settings)}: {exc!r}"
            ) from exc
        # The driver reads its options at each reconnection: a long-running
        # sidecar keeps trying through broker restarts.
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._js = nc.jetstream(
            prefix=settings.apiPrefix or api.DEFAULT_PREFIX,
            domain=settings.domain or None,
            timeout=_TIMEOUT,
        )
        self.settings = settings
        _log.info("pubsub %r: NATS JetStream at %s", self._name, _hosts(settings))

    def features(self) -> frozenset[Feature]:
        return frozenset()

    async def close(self) -> None:
        subscriptions = list(self._subscriptions)
        await asyncio.gather(*(s.close() for s in subscriptions), return_exceptions=True)
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(*NATS_FAILURES):
                await asyncio.wait_for(nc.close(), _CLOSE_TIMEOUT)

    # -- callbacks of the driver -----------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        _log.warning("pubsub %r: NATS connection error: %r", self._name, exc)

    async def _on_disconnected(self) -> None:
        _log.info("pubsub %r: disconnected from NATS; reconnecting", self._name)

    async def _on_reconnected(self) -> None:
        _log.info("pubsub %r: reconnected to NATS", self._name)

    # -- helpers ---------------------------------------------------------------------
    def _context(self) -> tuple[JetStreamSettings, JetStreamContext]:
        if self.settings is None or self._js is None:
            raise ComponentError(f"pubsub {self._name!r} is not initialised or closed")
        return self.settings, self._js

    async def _stream_for(self, topic: str) -> str:
        """The stream holding ``topic``, created (or given the subject) when needed."""
        if topic in self._streams:
            return self._streams[topic]
        s, js = self._context()
        if not topic or any(c in topic for c in " \t\r\n*>") or ".." in topic:
            raise ComponentError(
                f"pubsub {self._name!r}: topic {topic!r} is not a valid NATS subject "
                "(no whitespace or wildcards '*'/'>')"
            )
        async with self._stream_lock:
            try:
                stream = await self._ensure_stream(s, js, topic)
            except nats.js.errors.APIError as exc:
                raise ComponentError(
                    f"pubsub {self._name!r}: cannot set up a stream for topic {topic!r}: "
                    f"{exc.description or exc}"
                ) from exc
            self._streams[topic] = stream
            return stream

    async def _ensure_stream(self, s: JetStreamSettings, js: JetStreamContext, topic: str) -> str:
        holder: str | None = None
        with contextlib.suppress(nats.js.errors.NotFoundError):
            holder = await js.find_stream_name_by_subject(topic)
        if holder is not None and (not s.streamName or holder == s.streamName):
            return holder
        if holder is not None:
            raise ComponentError(
                f"pubsub {self._name!r}: topic {topic!r} is already stored by stream "
                f"{holder!r}, not by streamName {s.streamName!r}"
            )
        name = s.streamName or nats_name(topic)
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                name=name,
                subjects=[topic],
                storage=api.StorageType.MEMORY if s.memoryStorage else api.StorageType.FILE,
                num_replicas=s.replicas,
            )
            _log.info("pubsub %r: created stream %r for topic %r", self._name, name, topic)
            return name
        config = info.config
        config.subjects = [*(config.subjects or []), topic]
        await js.update_stream(config)
        _log.info("pubsub %r: added topic %r to stream %r", self._name, topic, name)
        return name

    # -- publish ---------------------------------------------------------------------
    async def publish(self, req: PublishRequest) -> None:
        _, js = self._context()
        headers: dict[str, str] = {}
        for key, value in req.metadata.items():
            problem = check_header(key, value)
            if problem is not None:
                raise PublishError(f"pubsub {self._name!r}: metadata {key!r} {problem}")
            headers[key] = value
        if req.content_type:
            headers[CONTENT_TYPE_HEADER] = req.content_type
        stream = await self._stream_for(req.topic)
        try:
            await js.publish(
                req.topic, req.data, timeout=_TIMEOUT, stream=stream, headers=headers or None
            )
        except (*NATS_FAILURES, nats.js.errors.Error) as exc:
            raise PublishError(
                f"pubsub {self._name!r}: publish to topic {req.topic!r} failed: {exc!r}"
            ) from exc

    # -- subscribe -------------------------------------------------------------------
    async def subscribe(self, req: SubscribeRequest, handler: Handler) -> Subscription:
        s, js = self._context()
        stream = await self._stream_for(req.topic)
        durable = req.metadata.get("durableName") or s.durableName
        group = req.metadata.get("queueGroupName") or s.queueGroupName or req.consumer_group
        consumer = nats_name(durable) if durable else nats_name(f"{group}_{req.topic}")
        try:
            psub = await js.pull_subscribe(
                req.topic, durable=consumer, stream=stream, config=_consumer_config(s)
            )
        except (*NATS_FAILURES, nats.js.errors.Error) as exc:
            raise ComponentError(
                f"pubsub {self._name!r}: cannot create consumer {consumer!r} on stream "
                f"{stream!r} for topic {req.topic!r}: {exc!r}"
            ) from exc
        sub = JetStreamSubscription(
            self._name, s, req.topic, consumer, psub, handler, self._subscriptions.discard
        )
        self._subscriptions.add(sub)
        sub.start()
        _log.info(
            "pubsub %r: subscribed to %r as consumer %r of stream %r",
            self._name,
            req.topic,
            consumer,
            stream,
        )
        return sub


def _consumer_config(s: JetStreamSettings) -> api.ConsumerConfig:
    delays = s.back_off()
    return api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy(
            {"sequence": "by_start_sequence", "time": "by_start_time"}.get(
                s.deliverPolicy.lower(), s.deliverPolicy.lower()
            )
        ),
        opt_start_seq=s.startSequence,
        opt_start_time=s.start_time(),
        ack_policy=api.AckPolicy(s.ackPolicy.lower()),
        ack_wait=s.ackWait,
        max_deliver=s.maxDeliver,
        # The server requires maxDeliver > len(backoff); without a limit the
        # delays apply to NAKs only (see nak_delay) and ackWait to silence.
        backoff=delays if delays and s.maxDeliver not in (None, -1) else None,
        max_ack_pending=s.maxAckPending,
        num_replicas=s.replicas,
        mem_storage=True if s.memoryStorage else None,
    )


def _client_tls(s: JetStreamSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    load_client_cert(ctx, "tls_client_cert", s.tls_client_cert, "tls_client_key", s.tls_client_key)
    return ctx


def _hosts(s: JetStreamSettings) -> str:
    """Servers for logs and errors, without credentials in their URLs."""
    hosts = []
    for url in s.servers():
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        hosts.append(f"{parts.hostname}:{parts.port or 4222}")
    return ",".join(hosts)
