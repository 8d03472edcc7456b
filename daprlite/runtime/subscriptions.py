"""Start-up step 8 for pub/sub: find the app's subscriptions and start delivering.

Subscriptions come from the declarative resources and from the app itself
(``GET /dapr/subscribe`` for HTTP apps, ``ListTopicSubscriptions`` for gRPC
apps). Each one allowed by its component's subscription scopes is started
on the component with a :class:`Deliverer` as the handler; the returned
handles are closed on shutdown, before the components themselves.
This module also holds the two app-facing halves of delivery: the HTTP
POST with Dapr's answer semantics, and the gRPC ``OnTopicEvent`` call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Mapping
from contextlib import AsyncExitStack

import aiohttp
import grpc
from google.protobuf import struct_pb2

from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2
from daprlite.blocks.pubsub.api import PubSubAPI
from daprlite.blocks.pubsub.cloudevents import CLOUDEVENT_JSON, is_json
from daprlite.blocks.pubsub.delivery import Deliverer, Delivery, Status
from daprlite.blocks.pubsub.subscriptions import (
    PROGRAMMATIC,
    Subscription,
    SubscriptionError,
    from_http_app,
    from_mapping,
)
from daprlite.channel.errors import AppUnavailableError
from daprlite.channel.grpc import GRPCAppChannel
from daprlite.channel.http import HTTPAppChannel
from daprlite.components.pubsub.api import SubscribeRequest
from daprlite.errors import APIError
from daprlite.resiliency import Resiliency
from daprlite.runtime.bulk_delivery import Batcher, bulk_call

log = logging.getLogger("daprlite.pubsub")

# How long the app may take to list its subscriptions (an app that accepts
# connections but never answers must not keep the sidecar from becoming ready).
DISCOVERY_TIMEOUT = 5.0

_SAFE = re.compile(r"^[\x20-\x7e\t]*$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# CloudEvent attributes that have their own TopicEventRequest field.
_CORE = {"id", "source", "type", "specversion", "datacontenttype", "data", "data_base64"}


class HTTPDelivery:
    """POST the CloudEvent to the route; read Dapr's status answer (dapr-api.md 5.9)."""

    def __init__(self, channel: HTTPAppChannel) -> None:
        self._channel = channel

    async def __call__(self, d: Delivery) -> Status:
        headers = {k: v for k, v in d.metadata.items() if _TOKEN.match(k) and _SAFE.match(v)}
        headers["Content-Type"] = CLOUDEVENT_JSON
        headers["pubsubname"] = d.subscription.pubsub
        for key in ("traceparent", "tracestate"):
            value = d.event.get(key)
            if isinstance(value, str) and value and _SAFE.match(value):
                headers[key] = value
        try:
            res = await self._channel.request("POST", d.path or "/", d.body, headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AppUnavailableError(f"the app cannot be reached: {exc}") from exc
        if res.status == 404:
            log.error(
                "the app has no route %s for topic %s: dropping", d.path, d.subscription.topic
            )
            return Status.DROP
        if not 200 <= res.status < 300:
            return Status.RETRY
        try:
            answer = json.loads(res.body) if res.body.strip() else None
        except ValueError:
            return Status.SUCCESS
        status = answer.get("status") if isinstance(answer, dict) else None
        if status in (None, "", "SUCCESS"):
            return Status.SUCCESS
        if status == "DROP":
            return Status.DROP
        if status != "RETRY":
            log.warning("the app answered unknown status %r for an event; retrying it", status)
        return Status.RETRY


def topic_event_request(d: Delivery) -> appcallback_pb2.TopicEventRequest:
    """The CloudEvent as ``TopicEventRequest`` (dapr-api.md 5.10)."""
    event = d.event
    content_type = str(event.get("datacontenttype") or "")
    if isinstance(event.get("data_base64"), str):
        data = base64.b64decode(str(event["data_base64"]))
    elif "data" not in event:
        data = b""
    elif isinstance(event["data"], str) and not is_json(content_type):
        data = str(event["data"]).encode()
    else:
        data = json.dumps(event["data"], separators=(",", ":")).encode()
    req = appcallback_pb2.TopicEventRequest(
        id=str(event.get("id", "")),
        source=str(event.get("source", "")),
        type=str(event.get("type", "")),
        spec_version=str(event.get("specversion", "")),
        data_content_type=content_type,
        topic=d.subscription.topic,
        data=data,
        pubsub_name=d.subscription.pubsub,
        path=d.path,
    )
    extensions = struct_pb2.Struct()
    extensions.update({k: v for k, v in event.items() if k not in _CORE})
    req.extensions.MergeFromString(extensions.SerializeToString())
    return req


class GRPCDelivery:
    def __init__(self, channel: GRPCAppChannel) -> None:
        self._channel = channel

    async def __call__(self, d: Delivery) -> Status:
        metadata = [
            (k.lower(), v)
            for k, v in d.metadata.items()
            if re.match(r"^[0-9a-z_.-]+$", k.lower()) and _SAFE.match(v)
        ]
        for key in ("traceparent", "tracestate"):
            value = d.event.get(key)
            if isinstance(value, str) and value and _SAFE.match(value):
                metadata.append((key, value))
        try:
            res = await self._channel.on_topic_event(topic_event_request(d), metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.error("the app does not handle topic %s: dropping", d.subscription.topic)
                return Status.DROP
            return Status.RETRY
        return {0: Status.SUCCESS, 1: Status.RETRY, 2: Status.DROP}.get(res.status, Status.RETRY)


def from_grpc_app(subs: list[appcallback_pb2.TopicSubscription]) -> list[Subscription]:
    """A gRPC app's ``ListTopicSubscriptions`` in the model's terms.

    A subscription without routes gets one rule with an empty path: gRPC apps
    dispatch on (pubsub, topic, path), and "" is the default path (5.10).
    """
    out = []
    for i, s in enumerate(subs):
        rules = [{"match": r.match, "path": r.path} for r in s.routes.rules]
        if not rules and not s.routes.default:
            rules = [{"match": "", "path": ""}]
        raw = {
            "pubsubname": s.pubsub_name,
            "topic": s.topic,
            "routes": {"rules": rules, "default": s.routes.default},
            "metadata": dict(s.metadata),
            "deadLetterTopic": s.dead_letter_topic,
            "bulkSubscribe": {
                "enabled": s.bulk_subscribe.enabled,
                "maxMessagesCount": s.bulk_subscribe.max_messages_count,
                "maxAwaitDurationMs": s.bulk_subscribe.max_await_duration_ms,
            },
        }
        sub = from_mapping(raw, f"ListTopicSubscriptions[{i}]", PROGRAMMATIC)
        if sub is not None:
            out.append(sub)
    return out


async def discover(
    channel: HTTPAppChannel | GRPCAppChannel | None, app_id: str
) -> list[Subscription]:
    """The app's programmatic subscriptions; errors are logged and mean none."""
    if channel is None:
        return []
    try:
        if isinstance(channel, GRPCAppChannel):
            return from_grpc_app(
                await asyncio.wait_for(channel.list_topic_subscriptions(), DISCOVERY_TIMEOUT)
            )
        res = await channel.request(
            "GET", "dapr/subscribe", headers={"dapr-app-id": app_id}, timeout=DISCOVERY_TIMEOUT
        )
        if res.status == 404:
            return []
        if res.status != 200:
            log.error("GET /dapr/subscribe answered %d; no programmatic subscriptions", res.status)
            return []
        return from_http_app(json.loads(res.body))
    except (SubscriptionError, ValueError) as exc:
        log.error("the app's subscriptions are invalid, none started: %s", exc)
    except (aiohttp.ClientError, grpc.aio.AioRpcError, OSError, TimeoutError) as exc:
        log.error("asking the app for its subscriptions failed: %s", exc)
    return []


async def start_subscriptions(
    declared: list[Subscription],
    channel: HTTPAppChannel | GRPCAppChannel | None,
    pubsub: PubSubAPI,
    resiliency: Resiliency,
    app_id: str,
    stack: AsyncExitStack,
) -> list[Subscription]:
    """Start every allowed subscription; returns those started."""
    if channel is None:
        if declared:
            log.info("no app port: %d declared subscriptions stay stopped", len(declared))
        return []
    if not pubsub.configured():
        return []  # as Dapr: the app is not asked for subscriptions without a pubsub
    subs = list(declared) + await discover(channel, app_id)
    call_app = (
        GRPCDelivery(channel) if isinstance(channel, GRPCAppChannel) else HTTPDelivery(channel)
    )
    started: list[Subscription] = []
    seen: set[tuple[str, str]] = set()
    for sub in subs:
        key = (sub.pubsub, sub.topic)
        if key in seen:
            log.warning("duplicate subscription to %s/%s ignored", *key)
            continue
        seen.add(key)
        try:
            live, component = pubsub.component(sub.pubsub)
        except APIError as exc:
            log.error("subscription to topic %s not started: %s", sub.topic, exc.message)
            continue
        if not pubsub.scopes(live).may_subscribe(app_id, sub.topic):
            log.warning("subscription to %s/%s not started: subscriptionScopes forbid it", *key)
            continue
        policy = resiliency.component_inbound(sub.pubsub, "pubsub")
        if sub.bulk:
            batcher = Batcher(sub, bulk_call(channel, topic_event_request))
            stack.push_async_callback(batcher.close)  # after the component handle closes
            deliverer = Deliverer(sub, batcher, policy, pubsub.forward, pubsub.metrics)
        else:
            deliverer = Deliverer(sub, call_app, policy, pubsub.forward, pubsub.metrics)
        group = live.property("consumerID") or app_id
        try:
            handle = await component.subscribe(
                SubscribeRequest(sub.topic, group, _broker_metadata(sub.metadata)),
                deliverer.handle,
            )
        except Exception as exc:  # one broken subscription must not keep the others down
            log.error("subscription to %s/%s could not start: %s", sub.pubsub, sub.topic, exc)
            continue
        stack.push_async_callback(handle.close)
        started.append(sub)
        log.info("subscribed to %s/%s (%s)", sub.pubsub, sub.topic, sub.kind.lower())
    return started


def _broker_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k.lower() != "rawpayload"}
