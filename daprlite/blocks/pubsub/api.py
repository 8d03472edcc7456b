"""The publishing half of the pub/sub block, shared by the HTTP and gRPC transports.

``publish`` checks the component and its topic scopes, reads the request
metadata (``rawPayload``, ``ttlInSeconds``, ``cloudevent.*``), wraps the
payload in a CloudEvent unless it is raw, and hands the bytes to the
component under its outbound resiliency policy. ``bulk_publish`` does the
same per entry and reports the entries that failed. ``forward`` re-publishes
an already-built event as it is (dead-letter topics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daprlite import errors
from daprlite.blocks._resilient import CALL_FAILURES, call_component, failure_reason
from daprlite.blocks.pubsub.cloudevents import (
    CLOUDEVENT_JSON,
    EnvelopeError,
    PublishContext,
    envelope,
)
from daprlite.blocks.pubsub.scopes import TopicScopes
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import parse_bool, parse_duration
from daprlite.components.pubsub.api import (
    BulkEntry,
    BulkPublisher,
    Feature,
    PublishRequest,
    PubSub,
)
from daprlite.observability.metrics import Metrics
from daprlite.observability.tracing import TraceContext
from daprlite.resiliency import Resiliency
from daprlite.runtime.registry import ComponentStore, LiveComponent

log = logging.getLogger("daprlite.pubsub")

_SIDECAR_KEYS = ("rawpayload", "ttlinseconds", "ttl")


@dataclass(frozen=True, slots=True)
class PublishEntry:
    """One event of a bulk publish, as the transports parsed it."""

    entry_id: str
    data: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def _refused(exc: ComponentError) -> bool:
    return isinstance(exc, MetadataError)


def raw_payload(metadata: Mapping[str, str]) -> bool:
    value = next((v for k, v in metadata.items() if k.lower() == "rawpayload"), "")
    if not value:
        return False
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise errors.PUBSUB_REQUEST_METADATA(
            f"metadata rawPayload must be true or false, got {value!r}"
        ) from exc


def ttl_seconds(metadata: Mapping[str, str]) -> int | None:
    """``ttlInSeconds`` (or ``ttl``: seconds or a Go duration) as whole seconds."""
    for key, value in metadata.items():
        low = key.lower()
        if low not in ("ttlinseconds", "ttl") or not value:
            continue
        try:
            seconds = int(value) if value.strip().lstrip("-").isdigit() else parse_duration(value)
        except ValueError as exc:
            raise errors.PUBSUB_REQUEST_METADATA(
                f"metadata {key} must be a whole number of seconds, got {value!r}"
            ) from exc
        if seconds <= 0:
            raise errors.PUBSUB_REQUEST_METADATA(f"metadata {key} must be positive, got {value!r}")
        return int(seconds)
    return None


class PubSubAPI:
    def __init__(
        self,
        components: ComponentStore,
        app_id: str,
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self.app_id = app_id
        self.resiliency = resiliency or Resiliency.build(())
        self.metrics: Metrics | None = None  # set by the sidecar when metrics are on
        # By name, with the live component they were read from: a reloaded one is read anew.
        self._scopes: dict[str, tuple[LiveComponent, TopicScopes]] = {}

    def configured(self) -> bool:
        return bool(self._components.of_category("pubsub"))

    def component(self, name: str) -> tuple[LiveComponent, PubSub]:
        if not name:
            raise errors.PUBSUB_EMPTY("pubsub name is empty")
        if not self._components.of_category("pubsub"):
            raise errors.PUBSUB_NOT_CONFIGURED("no pubsub is configured")
        live = self._components.get("pubsub", name)
        if live is None or not isinstance(live.instance, PubSub):
            raise errors.PUBSUB_NOT_FOUND(f"pubsub {name} not found")
        return live, live.instance

    def scopes(self, live: LiveComponent) -> TopicScopes:
        cached = self._scopes.get(live.name)
        if cached is None or cached[0] is not live:
            cached = self._scopes[live.name] = (live, TopicScopes.from_metadata(live.properties))
        return cached[1]

    def _checked(self, name: str, topic: str) -> tuple[LiveComponent, PubSub]:
        live, pubsub = self.component(name)
        if not topic:
            raise errors.TOPIC_NAME_EMPTY(f"topic is empty in pubsub {name}")
        if not self.scopes(live).may_publish(self.app_id, topic):
            raise errors.PUBSUB_FORBIDDEN(
                f"topic {topic} is not allowed for app id {self.app_id} in pubsub {name}"
            )
        return live, pubsub

    def _message(
        self,
        name: str,
        pubsub: PubSub,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        trace: TraceContext | None,
    ) -> PublishRequest:
        raw = raw_payload(metadata)
        ttl = ttl_seconds(metadata)
        native_ttl = Feature.MESSAGE_TTL in pubsub.features()
        broker_md = {
            k: v
            for k, v in metadata.items()
            if k.lower() not in _SIDECAR_KEYS and not k.lower().startswith("cloudevent.")
        }
        if ttl is not None and native_ttl:
            broker_md["ttlInSeconds"] = str(ttl)
        traceparent = trace.traceparent if trace else ""
        tracestate = trace.state if trace else ""
        if raw:
            if traceparent:
                broker_md.setdefault("traceid", traceparent)
                broker_md.setdefault("tracestate", tracestate)
            return PublishRequest(topic, data, content_type or "text/plain", broker_md)
        ctx = PublishContext(
            pubsub=name,
            topic=topic,
            app_id=self.app_id,
            traceparent=traceparent,
            tracestate=tracestate,
            ttl_seconds=None if native_ttl else ttl,
        )
        try:
            event = envelope(data, content_type, ctx, metadata)
        except EnvelopeError as exc:
            raise errors.PUBSUB_CLOUD_EVENTS_SER(
                f"error when publishing to topic {topic} in pubsub {name}: the body is sent as "
                f"{CLOUDEVENT_JSON} but is not a CloudEvent: {exc}"
            ) from exc
        return PublishRequest(topic, event, CLOUDEVENT_JSON, broker_md)

    async def publish(
        self,
        name: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        trace: TraceContext | None = None,
    ) -> None:
        _live, pubsub = self._checked(name, topic)
        req = self._message(name, pubsub, topic, data, content_type, metadata, trace)
        await self._send(name, pubsub, req)

    async def forward(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Publish ``data`` unchanged (no envelope, no scope check): dead-letter topics."""
        _live, pubsub = self.component(name)
        await self._send(name, pubsub, PublishRequest(topic, data, content_type, metadata))

    async def _send(self, name: str, pubsub: PubSub, req: PublishRequest) -> None:
        policy = self.resiliency.component_outbound(name, "pubsub")
        start, published = time.perf_counter(), False
        try:
            await call_component(policy, lambda: pubsub.publish(req), _refused)
            published = True
        except MetadataError as exc:
            raise errors.PUBSUB_REQUEST_METADATA(
                f"error when publishing to topic {req.topic} in pubsub {name}: {exc}"
            ) from exc
        except CALL_FAILURES as exc:
            raise errors.PUBSUB_PUBLISH_MESSAGE(
                f"error when publishing to topic {req.topic} in pubsub {name}: "
                f"{failure_reason(exc)}"
            ) from exc
        finally:
            if self.metrics is not None:
                elapsed_ms = (time.perf_counter() - start) * 1000
                self.metrics.pubsub_egress(name, req.topic, published, elapsed_ms)

    async def bulk_publish(
        self,
        name: str,
        topic: str,
        entries: Sequence[PublishEntry],
        metadata: Mapping[str, str],
        trace: TraceContext | None = None,
    ) -> list[tuple[str, str]]:
        """Publish every entry; returns ``(entry id, error)`` for those that failed."""
        _live, pubsub = self._checked(name, topic)
        seen: set[str] = set()
        for entry in entries:
            if not entry.entry_id:
                raise errors.PUBSUB_EVENTS_SER("entryId is required for every bulk entry")
            if entry.entry_id in seen:
                raise errors.PUBSUB_EVENTS_SER(f"entryId {entry.entry_id!r} is not unique")
            seen.add(entry.entry_id)
        messages = [
            (
                e.entry_id,
                self._message(
                    name, pubsub, topic, e.data, e.content_type, {**metadata, **e.metadata}, trace
                ),
            )
            for e in entries
        ]
        if isinstance(pubsub, BulkPublisher):
            bulk = [BulkEntry(i, m.data, m.content_type, m.metadata) for i, m in messages]
            policy = self.resiliency.component_outbound(name, "pubsub")
            try:
                failed = await call_component(
                    policy, lambda: pubsub.bulk_publish(topic, bulk, {}), _refused
                )
            except CALL_FAILURES as exc:
                return [(i, failure_reason(exc)) for i, _ in messages]
            return [(f.entry_id, f.error) for f in failed]
        failures: list[tuple[str, str]] = []
        for entry_id, message in messages:
            try:
                await self._send(name, pubsub, message)
            except errors.APIError as exc:
                failures.append((entry_id, exc.message))
        return failures
