"""gRPC metadata and shutdown RPCs of ``dapr.proto.runtime.v1.Dapr``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from google.protobuf import empty_pb2

from daprlite._proto.dapr.proto.runtime.v1 import metadata_pb2
from daprlite.blocks.metadata import MetadataAPI, go_duration
from daprlite.transport.grpc.common import call

log = logging.getLogger("daprlite.grpc")


class MetadataRPCs:
    _metadata: MetadataAPI
    _request_shutdown: Callable[[], None]

    # -- metadata and shutdown ------------------------------------------------------------
    async def GetMetadata(self, request, context):
        async def work() -> metadata_pb2.GetMetadataResponse:
            snap = self._metadata.snapshot()
            out = metadata_pb2.GetMetadataResponse(
                id=snap.id,
                runtime_version=snap.runtime_version,
                extended_metadata=dict(snap.extended),
                enabled_features=list(snap.enabled_features),
                registered_components=[
                    metadata_pb2.RegisteredComponents(
                        name=c.name, type=c.type, version=c.version, capabilities=c.capabilities
                    )
                    for c in snap.components
                ],
                resiliencies=[metadata_pb2.MetadataResiliency(name=n) for n in snap.resiliencies],
                actor_runtime=metadata_pb2.ActorRuntime(
                    runtime_status=metadata_pb2.ActorRuntime.DISABLED
                ),
            )
            for sub in snap.subscriptions:
                entry = out.subscriptions.add(
                    pubsub_name=sub.pubsub,
                    topic=sub.topic,
                    metadata=dict(sub.metadata),
                    dead_letter_topic=sub.dead_letter_topic,
                    type=metadata_pb2.PubsubSubscriptionType.Value(sub.type),
                )
                for match, path in sub.rules:
                    entry.rules.rules.add(match=match, path=path)
            if snap.app_connection is not None:
                ac = snap.app_connection
                out.app_connection_properties.CopyFrom(
                    metadata_pb2.AppConnectionProperties(
                        port=ac.port,
                        protocol=ac.protocol,
                        channel_address=ac.channel_address,
                        max_concurrency=ac.max_concurrency,
                    )
                )
                if ac.health is not None:
                    health = out.app_connection_properties.health
                    health.health_check_path = ac.health.path
                    health.health_probe_interval = go_duration(ac.health.interval)
                    health.health_probe_timeout = go_duration(ac.health.timeout)
                    health.health_threshold = ac.health.threshold
            return out

        return await call(context, work)

    async def SetMetadata(self, request, context):
        async def work() -> empty_pb2.Empty:
            self._metadata.set(request.key, request.value)
            return empty_pb2.Empty()

        return await call(context, work)

    async def Shutdown(self, request, context):
        forced = any(
            k == "dapr-force-shutdown" and v.lower() == "true"
            for k, v in context.invocation_metadata() or ()
        )
        if forced:
            log.warning("forced shutdown requested through the API")
            os._exit(1)
        self._request_shutdown()
        return empty_pb2.Empty()
