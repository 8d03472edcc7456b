"""Delivering one broker message to the app, and deciding its fate.

For each message of a subscription the component calls :meth:`Deliverer.handle`:
1. the message becomes a CloudEvent (raw-payload subscriptions wrap the bytes);
2. an expired event (``expiration`` in the past) is not delivered;
3. the routing rules pick the path; no match and no default means "drop";
4. the app gets the event (HTTP POST or gRPC ``OnTopicEvent``) under the
   component's inbound resiliency policy; it answers SUCCESS, RETRY or DROP;
5. SUCCESS acks. DROP, an expired or unroutable event, and a RETRY whose
   retries ran out go to the dead-letter topic when the subscription has one,
   and are then acked. Without a dead-letter topic a DROP is acked with a
   warning (the app chose it), while RETRY and failures raise, so the
   component keeps the message for redelivery: nothing is lost silently.
   An app that cannot be reached at all (crashed, restarting) never sends an
   event to the dead-letter topic: the broker keeps it for redelivery.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from daprlite.blocks.pubsub.cloudevents import (
    CLOUDEVENT_JSON,
    DEFAULT_SOURCE,
    DEFAULT_TYPE,
    expired,
)
from daprlite.blocks.pubsub.subscriptions import Subscription
from daprlite.components.pubsub.api import Message
from daprlite.observability.metrics import Metrics
from daprlite.resiliency import CircuitOpenError, Policy, ResiliencyTimeoutError

log = logging.getLogger("daprlite.pubsub")


class Status(Enum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class RetryDelivery(Exception):
    """The app asked for the event again, or could not be reached."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the app channel needs to hand one event to the app."""

    subscription: Subscription
    path: str
    event: Mapping[str, object]
    body: bytes  # the CloudEvent JSON as the app receives it
    metadata: Mapping[str, str]  # broker metadata of the message


AppCall = Callable[[Delivery], Awaitable[Status]]
Forward = Callable[[str, str, bytes, str, Mapping[str, str]], Awaitable[None]]


class UndecodableEventError(ValueError):
    """A message of a CloudEvent subscription is not a JSON CloudEvent."""


def to_event(msg: Message, sub: Subscription) -> tuple[dict[str, object], bytes]:
    """The CloudEvent of a message, and the JSON bytes the app receives."""
    if sub.raw_payload:
        event: dict[str, object] = {
            "id": msg.id or str(uuid.uuid4()),
            "specversion": "1.0",
            "datacontenttype": "application/octet-stream",
            "source": DEFAULT_SOURCE,
            "type": DEFAULT_TYPE,
            "topic": msg.topic,
            "pubsubname": sub.pubsub,
            "data_base64": base64.b64encode(msg.data).decode(),
        }
        for key in ("traceid", "traceparent", "tracestate"):
            if key in msg.metadata:
                event[key] = msg.metadata[key]
        return event, json.dumps(event, separators=(",", ":")).encode()
    try:
        event = json.loads(msg.data)
    except ValueError as exc:
        raise UndecodableEventError(f"the message is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise UndecodableEventError("the message is not a JSON object")
    return event, msg.data


class Deliverer:
    """The handler of one subscription (see the module docstring)."""

    def __init__(
        self,
        sub: Subscription,
        call_app: AppCall,
        policy: Policy,
        forward: Forward,
        metrics: Metrics | None = None,
    ) -> None:
        self.sub = sub
        self._call_app = call_app
        self._policy = policy
        self._forward = forward
        self._metrics = metrics  # dapr_component_pubsub_ingress_*, one count per attempt

    async def handle(self, msg: Message) -> None:
        sub = self.sub
        try:
            event, body = to_event(msg, sub)
        except UndecodableEventError as exc:
            await self._dead_letter(msg.data, msg, f"undecodable: {exc}", keep_if_no_dlq=True)
            return
        if expired(event):
            await self._dead_letter(body, msg, "expired", keep_if_no_dlq=False)
            return
        path = sub.path_for(event)
        if path is None:
            await self._dead_letter(body, msg, "no routing rule matched", keep_if_no_dlq=False)
            return
        delivery = Delivery(sub, path, event, body, msg.metadata)

        async def attempt() -> Status:
            start, status = time.perf_counter(), Status.RETRY  # what a failed call counts as
            try:
                status = await self._call_app(delivery)
            finally:
                if self._metrics is not None:
                    elapsed_ms = (time.perf_counter() - start) * 1000
                    self._metrics.pubsub_ingress(
                        sub.pubsub, sub.topic, status.value.lower(), elapsed_ms
                    )
            if status is Status.RETRY:
                raise RetryDelivery(f"the app asked to retry event {event.get('id')}")
            return status

        try:
            status = await self._policy.execute(attempt)
        except ConnectionError as exc:
            # The app could not be reached (it crashed, is restarting, or the sidecar
            # is stopping): not the event's fault, so it is never dead-lettered for
            # it; the broker keeps it and hands it out again.
            raise RetryDelivery(
                f"pubsub {sub.pubsub} topic {sub.topic}: event {msg.id} not delivered, the "
                f"app is unreachable: {exc}"
            ) from exc
        except (RetryDelivery, ResiliencyTimeoutError, CircuitOpenError) as exc:
            await self._dead_letter(body, msg, f"not delivered: {exc}", keep_if_no_dlq=True)
            return
        if status is Status.DROP:
            await self._dead_letter(body, msg, "the app dropped it", keep_if_no_dlq=False)

    async def _dead_letter(self, body: bytes, msg: Message, why: str, keep_if_no_dlq: bool) -> None:
        sub = self.sub
        if sub.dead_letter_topic:
            log.warning(
                "pubsub %s topic %s: event %s %s; sending it to dead-letter topic %s",
                sub.pubsub,
                sub.topic,
                msg.id,
                why,
                sub.dead_letter_topic,
            )
            await self._forward(sub.pubsub, sub.dead_letter_topic, body, CLOUDEVENT_JSON, {})
            return
        if keep_if_no_dlq:
            # Raising leaves the message with the broker for redelivery.
            raise RetryDelivery(f"pubsub {sub.pubsub} topic {sub.topic}: event {msg.id} {why}")
        log.warning(
            "pubsub %s topic %s: event %s %s; dropped (no dead-letter topic)",
            sub.pubsub,
            sub.topic,
            msg.id,
            why,
        )
