"""The gRPC API: ``dapr.proto.runtime.v1.Dapr`` served with grpc.aio.

Each RPC converts the proto message into the same block calls the HTTP
routes make, and converts the result back. Catalogue errors become a gRPC
status with the catalogue code in a ``google.rpc.ErrorInfo`` detail (the
Dapr SDK's ``DaprGrpcError`` decodes it). RPCs of the Dapr service that this
build does not implement are answered UNIMPLEMENTED by grpc itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from daprlite import errors
from daprlite._proto.dapr.proto.common.v1 import common_pb2
from daprlite._proto.dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2, state_pb2
from daprlite.blocks.metadata import MetadataAPI
from daprlite.blocks.state import DeleteItem, SaveItem, StateAPI, TransactionItem

log = logging.getLogger("daprlite.grpc")

T = TypeVar("T")

_CONCURRENCY = {1: "first-write", 2: "last-write"}
_CONSISTENCY = {1: "eventual", 2: "strong"}


def _status_for(exc: errors.APIError) -> grpc.Status:
    code = exc.grpc_status
    status = status_pb2.Status(code=code.value[0], message=exc.message)
    info = error_details_pb2.ErrorInfo(
        reason=exc.entry.reason or exc.code, domain="dapr.io", metadata=exc.metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status.details.append(detail)
    return rpc_status.to_status(status)


async def _call(context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run one block call, translating catalogue errors into a gRPC status."""
    try:
        return await work()
    except errors.APIError as exc:
        await context.abort_with_status(_status_for(exc))
    except Exception:
        log.exception("unexpected error in gRPC call")
        await context.abort_with_status(_status_for(errors.INTERNAL("internal error")))
    raise AssertionError("unreachable: abort raises")


def _save_item(item: common_pb2.StateItem) -> SaveItem:
    return SaveItem(
        key=item.key,
        value=item.value,
        etag=item.etag.value if item.HasField("etag") else None,
        metadata=dict(item.metadata),
        concurrency=_CONCURRENCY.get(item.options.concurrency, ""),
        consistency=_CONSISTENCY.get(item.options.consistency, ""),
        content_type=item.metadata.get("contentType"),
    )


def _delete_item(item: common_pb2.StateItem) -> DeleteItem:
    return DeleteItem(
        key=item.key,
        etag=item.etag.value if item.HasField("etag") else None,
        metadata=dict(item.metadata),
        concurrency=_CONCURRENCY.get(item.options.concurrency, ""),
        consistency=_CONSISTENCY.get(item.options.consistency, ""),
    )


class DaprServicer(dapr_pb2_grpc.DaprServicer):
    def __init__(
        self,
        state: StateAPI,
        metadata: MetadataAPI,
        request_shutdown: Callable[[], None],
    ) -> None:
        self._state = state
        self._metadata = metadata
        self._request_shutdown = request_shutdown

    # -- state ------------------------------------------------------------------------
    async def GetState(self, request, context):
        async def work() -> state_pb2.GetStateResponse:
            got = await self._state.get(
                request.store_name,
                request.key,
                dict(request.metadata),
                _CONSISTENCY.get(request.consistency, ""),
            )
            if got is None:
                return state_pb2.GetStateResponse()
            return state_pb2.GetStateResponse(
                data=got.data, etag=got.etag or "", metadata=dict(got.metadata)
            )

        return await _call(context, work)

    async def GetBulkState(self, request, context):
        async def work() -> state_pb2.GetBulkStateResponse:
            items = await self._state.bulk_get(
                request.store_name, list(request.keys), dict(request.metadata), request.parallelism
            )
            return state_pb2.GetBulkStateResponse(
                items=[
                    state_pb2.BulkStateItem(
                        key=i.key,
                        data=i.data or b"",
                        etag=i.etag or "",
                        error=i.error,
                        metadata=dict(i.metadata),
                    )
                    for i in items
                ]
            )

        return await _call(context, work)

    async def SaveState(self, request, context):
        async def work() -> empty_pb2.Empty:
            items = [_save_item(s) for s in request.states]
            if items:
                await self._state.save(request.store_name, items)
            return empty_pb2.Empty()

        return await _call(context, work)

    async def DeleteState(self, request, context):
        async def work() -> empty_pb2.Empty:
            item = DeleteItem(
                key=request.key,
                etag=request.etag.value if request.HasField("etag") else None,
                metadata=dict(request.metadata),
                concurrency=_CONCURRENCY.get(request.options.concurrency, ""),
                consistency=_CONSISTENCY.get(request.options.consistency, ""),
            )
            await self._state.delete(request.store_name, item)
            return empty_pb2.Empty()

        return await _call(context, work)

    async def DeleteBulkState(self, request, context):
        async def work() -> empty_pb2.Empty:
            await self._state.delete_bulk(
                request.store_name, [_delete_item(s) for s in request.states]
            )
            return empty_pb2.Empty()

        return await _call(context, work)

    async def ExecuteStateTransaction(self, request, context):
        async def work() -> empty_pb2.Empty:
            ops = [
                TransactionItem(op.operationType, _save_item(op.request))
                for op in request.operations
            ]
            await self._state.transact(request.storeName, ops, dict(request.metadata))
            return empty_pb2.Empty()

        return await _call(context, work)

    async def QueryStateAlpha1(self, request, context):
        async def work() -> state_pb2.QueryStateResponse:
            res = await self._state.query(request.store_name, request.query, dict(request.metadata))
            return state_pb2.QueryStateResponse(
                results=[
                    state_pb2.QueryStateItem(
                        key=r.key, data=r.data, etag=r.etag or "", error=r.error
                    )
                    for r in res.results
                ],
                token=res.token,
                metadata=dict(res.metadata),
            )

        return await _call(context, work)

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
            return out

        return await _call(context, work)

    async def SetMetadata(self, request, context):
        async def work() -> empty_pb2.Empty:
            self._metadata.set(request.key, request.value)
            return empty_pb2.Empty()

        return await _call(context, work)

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


def build_server(servicer: DaprServicer, max_message_size: int) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.so_reuseport", 0),
        ]
    )
    dapr_pb2_grpc.add_DaprServicer_to_server(servicer, server)
    return server
