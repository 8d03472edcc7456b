"""Bulk subscribe: many messages of one subscription in one call to the app.

Sits between the pub/sub block's :class:`Deliverer` and the app channel for
subscriptions with ``bulkSubscribe.enabled`` (dapr-api.md 5.7, 5.9, 5.10).
The component still calls the handler once per message, and each message's
fate (ack, retry, dead letter) stays its own. So the batcher *is* the
Deliverer's app call: every message's call adds ``(delivery, future)`` to the
open batch of its path and waits on its future; a batch goes to the app when
it holds ``maxMessagesCount`` entries or ``maxAwaitDurationMs`` after its
first entry, whichever comes first, and the app's per-entry statuses resolve
the futures. Retries under the resiliency policy re-enter a later batch.

A batch can never be bigger than the number of messages the component has
in flight for the subscription at once (its ``concurrency``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import grpc

from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2
from daprlite.blocks.pubsub.delivery import Delivery, Status
from daprlite.blocks.pubsub.subscriptions import Subscription
from daprlite.channel.errors import AppUnavailableError
from daprlite.channel.grpc import GRPCAppChannel
from daprlite.channel.http import HTTPAppChannel

log = logging.getLogger("daprlite.pubsub")

BULK_TYPE = "com.dapr.event.sent.bulk"
_CE_JSON = "application/cloudevents+json"
_STATUSES = {"SUCCESS": Status.SUCCESS, "RETRY": Status.RETRY, "DROP": Status.DROP}
_GRPC_STATUSES = {0: Status.SUCCESS, 1: Status.RETRY, 2: Status.DROP}

# One batch to the app: (path, deliveries) -> one status per delivery, in order.
BulkCall = Callable[[Subscription, str, Sequence[Delivery]], Awaitable[list[Status]]]
ToRequest = Callable[[Delivery], appcallback_pb2.TopicEventRequest]

_Pending = list[tuple[Delivery, "asyncio.Future[Status]"]]


class Batcher:
    """The per-subscription batcher: an ``AppCall`` for :class:`Deliverer`."""

    def __init__(self, sub: Subscription, send: BulkCall) -> None:
        self.sub = sub
        self._send = send
        self._max_count = max(1, sub.bulk_max_count)
        self._max_await = max(0, sub.bulk_max_await_ms) / 1000
        self._open: dict[str, _Pending] = {}  # by path: one bulk request carries one path
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, d: Delivery) -> Status:
        fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        batch = self._open.setdefault(d.path, [])
        batch.append((d, fut))
        if len(batch) >= self._max_count:
            self._flush(d.path)
        elif len(batch) == 1:
            self._timers[d.path] = asyncio.get_running_loop().call_later(
                self._max_await, self._flush, d.path
            )
        # A cancelled wait (the component closing, a resiliency timeout) cancels only
        # this future: the entry is left out of the batch, or its answer ignored.
        return await fut

    def _flush(self, path: str) -> None:
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        batch = self._open.pop(path, [])
        if not batch:
            return
        task = asyncio.create_task(self._deliver(path, batch), name=f"pubsub-bulk {path}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, path: str, batch: _Pending) -> None:
        batch = [(d, fut) for d, fut in batch if not fut.done()]
        if not batch:
            return
        try:
            statuses = await self._send(self.sub, path, [d for d, _ in batch])
        except Exception as exc:  # every entry shares the batch's failure
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), status in zip(batch, statuses, strict=True):
            if not fut.done():
                fut.set_result(status)

    async def close(self) -> None:
        """Send what is still open, then wait for batches in flight."""
        for path in list(self._open):
            self._flush(path)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _entry_ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [str(uuid.uuid4()) for _ in deliveries]


def _raw_bytes(d: Delivery) -> bytes:
    """The broker bytes of a raw-payload delivery (the block wrapped them as data_base64)."""
    value = d.event.get("data_base64")
    return base64.b64decode(value) if isinstance(value, str) else d.body


def _http_event(d: Delivery) -> object:
    if not d.subscription.raw_payload:
        return dict(d.event)
    raw = _raw_bytes(d)
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode()


def _http_content_type(d: Delivery) -> str:
    if not d.subscription.raw_payload:
        return _CE_JSON
    return next(
        (v for k, v in d.metadata.items() if k.lower() == "content-type" and v),
        "application/octet-stream",
    )


def _answered(
    ids: list[str], statuses: dict[str, Status], sub: Subscription, path: str
) -> list[Status]:
    missing = [i for i in ids if i not in statuses]
    if missing:
        log.warning(
            "pubsub %s topic %s: the app gave no status for %d of %d entries at %r; retrying them",
            sub.pubsub,
            sub.topic,
            len(missing),
            len(ids),
            path,
        )
    return [statuses.get(i, Status.RETRY) for i in ids]


class HTTPBulkDelivery:
    """``POST path`` with the bulk envelope; the app answers one status per entry (5.9)."""

    def __init__(self, channel: HTTPAppChannel) -> None:
        self._channel = channel

    async def __call__(
        self, sub: Subscription, path: str, deliveries: Sequence[Delivery]
    ) -> list[Status]:
        ids = _entry_ids(deliveries)
        body = {
            "id": str(uuid.uuid4()),
            "type": BULK_TYPE,
            "topic": sub.topic,
            "pubsubname": sub.pubsub,
            "metadata": {},
            "entries": [
                {
                    "entryId": entry_id,
                    "event": _http_event(d),
                    "metadata": dict(d.metadata),
                    "contentType": _http_content_type(d),
                }
                for entry_id, d in zip(ids, deliveries, strict=True)
            ],
        }
        headers = {"Content-Type": "application/json", "pubsubname": sub.pubsub}
        try:
            res = await self._channel.request(
                "POST", path or "/", json.dumps(body, separators=(",", ":")).encode(), headers
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AppUnavailableError(f"the app cannot be reached: {exc}") from exc
        if res.status == 404:
            log.error("the app has no route %s for topic %s: dropping the batch", path, sub.topic)
            return [Status.DROP] * len(ids)
        if not 200 <= res.status < 300:
            return [Status.RETRY] * len(ids)
        try:
            answer = json.loads(res.body)
        except ValueError:
            answer = None
        raw = answer.get("statuses") if isinstance(answer, dict) else None
        statuses: dict[str, Status] = {}
        for item in raw if isinstance(raw, list) else ():
            if not isinstance(item, dict) or not isinstance(item.get("entryId"), str):
                continue
            status = _STATUSES.get(str(item.get("status")))
            if status is None:
                log.warning("the app answered unknown status %r for an entry", item.get("status"))
                continue  # an entry without a known status is retried
            statuses[item["entryId"]] = status
        return _answered(ids, statuses, sub, path)


class GRPCBulkDelivery:
    """``OnBulkTopicEvent`` (falling back to the alpha RPC) with one entry per message (5.10)."""

    def __init__(self, channel: GRPCAppChannel, to_request: ToRequest) -> None:
        self._channel = channel
        self._to_request = to_request  # the single-event conversion, for the CloudEvent fields

    def _request(
        self, sub: Subscription, path: str, ids: list[str], deliveries: Sequence[Delivery]
    ) -> appcallback_pb2.TopicEventBulkRequest:
        req = appcallback_pb2.TopicEventBulkRequest(
            id=str(uuid.uuid4()),
            topic=sub.topic,
            pubsub_name=sub.pubsub,
            type=BULK_TYPE,
            path=path,
        )
        for entry_id, d in zip(ids, deliveries, strict=True):
            entry = req.entries.add()
            entry.entry_id = entry_id
            entry.metadata.update(dict(d.metadata))
            if d.subscription.raw_payload:
                entry.bytes = _raw_bytes(d)
                entry.content_type = _http_content_type(d)
                continue
            single = self._to_request(d)
            ce = entry.cloud_event
            ce.id = single.id
            ce.source = single.source
            ce.type = single.type
            ce.spec_version = single.spec_version
            ce.data_content_type = single.data_content_type
            ce.data = single.data
            ce.extensions.CopyFrom(single.extensions)
            entry.content_type = single.data_content_type
        return req

    async def __call__(
        self, sub: Subscription, path: str, deliveries: Sequence[Delivery]
    ) -> list[Status]:
        ids = _entry_ids(deliveries)
        req = self._request(sub, path, ids, deliveries)
        try:
            res = await self._channel.on_bulk_topic_event(req, [])
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.error("the app does not handle bulk topic %s: dropping the batch", sub.topic)
                return [Status.DROP] * len(ids)
            return [Status.RETRY] * len(ids)
        statuses = {
            s.entry_id: _GRPC_STATUSES.get(s.status, Status.RETRY)
            for s in res.statuses
            if s.entry_id
        }
        return _answered(ids, statuses, sub, path)


def bulk_call(channel: HTTPAppChannel | GRPCAppChannel, to_request: ToRequest) -> BulkCall:
    """The bulk sender for the app's protocol."""
    if isinstance(channel, GRPCAppChannel):
        return GRPCBulkDelivery(channel, to_request)
    return HTTPBulkDelivery(channel)
