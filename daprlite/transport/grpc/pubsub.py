"""gRPC pub/sub: ``PublishEvent``, ``BulkPublishEvent`` (and its Alpha1 alias), and
the streaming subscription ``SubscribeTopicEventsAlpha1``.

Converts the proto messages into the same block calls the HTTP routes make.
Per-entry failures of a bulk publish come back in ``failedEntries`` with an
OK status, as in Dapr; whole-request errors are catalogue errors. The
streaming RPC only moves messages between the gRPC stream and
``runtime/streaming.py``, which owns the subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from daprlite import errors
from daprlite._proto.dapr.proto.runtime.v1 import pubsub_pb2
from daprlite.blocks.pubsub.api import PublishEntry, PubSubAPI
from daprlite.blocks.pubsub.delivery import Status
from daprlite.observability.tracing import continue_trace
from daprlite.runtime.streaming import Stream, StreamingSubscriptions, StreamRequest
from daprlite.transport.grpc.common import call, status_for

log = logging.getLogger("daprlite.grpc")

# TopicEventResponse.status numbers (dapr-api.md 5.10); anything else retries.
_STATUS = {0: Status.SUCCESS, 1: Status.RETRY, 2: Status.DROP}


def _trace(context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
    md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    return continue_trace(md.get("traceparent"), md.get("tracestate"))


class PubSubRPCs:
    _pubsub: PubSubAPI
    _streaming: StreamingSubscriptions

    async def PublishEvent(
        self, request: pubsub_pb2.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            await self._pubsub.publish(
                request.pubsub_name,
                request.topic,
                request.data,
                request.data_content_type,
                dict(request.metadata),
                _trace(context),
            )
            return empty_pb2.Empty()

        return await call(context, work)

    async def BulkPublishEvent(
        self, request: pubsub_pb2.BulkPublishRequest, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        async def work() -> pubsub_pb2.BulkPublishResponse:
            entries = [
                PublishEntry(e.entry_id, e.event, e.content_type, dict(e.metadata))
                for e in request.entries
            ]
            failed = await self._pubsub.bulk_publish(
                request.pubsub_name,
                request.topic,
                entries,
                dict(request.metadata),
                _trace(context),
            )
            out = pubsub_pb2.BulkPublishResponse()
            for entry_id, error in failed:
                out.failedEntries.add(entry_id=entry_id, error=error)
            return out

        return await call(context, work)

    async def BulkPublishEventAlpha1(
        self, request: pubsub_pb2.BulkPublishRequest, context: grpc.aio.ServicerContext
    ) -> pubsub_pb2.BulkPublishResponse:
        return await self.BulkPublishEvent(request, context)

    async def SubscribeTopicEventsAlpha1(
        self,
        requests: AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pubsub_pb2.SubscribeTopicEventsResponseAlpha1]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("subscribe_topic_events_request_type") != (
            "initial_request"
        ):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first message of the stream must be initial_request",
            )
        assert first is not None
        init = first.initial_request
        req = StreamRequest(
            init.pubsub_name, init.topic, dict(init.metadata), init.dead_letter_topic
        )
        try:
            async with self._streaming.open(req) as stream:
                yield pubsub_pb2.SubscribeTopicEventsResponseAlpha1(
                    initial_response=pubsub_pb2.SubscribeTopicEventsResponseInitialAlpha1()
                )
                reader = asyncio.create_task(_read_answers(requests, stream))
                try:
                    while (event := await stream.next_event()) is not None:
                        out = pubsub_pb2.SubscribeTopicEventsResponseAlpha1()
                        out.event_message.CopyFrom(event)
                        yield out
                finally:
                    reader.cancel()
        except errors.APIError as exc:
            await context.abort_with_status(status_for(exc))


async def _read_answers(
    requests: AsyncIterator[pubsub_pb2.SubscribeTopicEventsRequestAlpha1], stream: Stream
) -> None:
    """Hand the app's ``event_processed`` answers to the stream; its end closes the stream."""
    try:
        async for msg in requests:
            if msg.WhichOneof("subscribe_topic_events_request_type") != "event_processed":
                log.warning("streaming subscription: unexpected message ignored")
                continue
            answer = msg.event_processed
            stream.answer(answer.id, _STATUS.get(answer.status.status, Status.RETRY))
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
        log.debug("streaming subscription: reading answers stopped: %s", exc)
    finally:
        stream.close()
