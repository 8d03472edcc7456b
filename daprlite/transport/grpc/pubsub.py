"""gRPC publishing: ``PublishEvent`` and ``BulkPublishEvent`` (and its Alpha1 alias).

Converts the proto messages into the same block calls the HTTP routes make.
Per-entry failures of a bulk publish come back in ``failedEntries`` with an
OK status, as in Dapr; whole-request errors are catalogue errors.
"""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from daprlite._proto.dapr.proto.runtime.v1 import pubsub_pb2
from daprlite.blocks.pubsub.api import PublishEntry, PubSubAPI
from daprlite.observability.tracing import continue_trace
from daprlite.transport.grpc.common import call


def _trace(context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
    md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    return continue_trace(md.get("traceparent"), md.get("tracestate"))


class PubSubRPCs:
    _pubsub: PubSubAPI

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
