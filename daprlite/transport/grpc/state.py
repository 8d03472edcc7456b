"""gRPC state RPCs of ``dapr.proto.runtime.v1.Dapr``: proto in, ``StateAPI`` call, proto out."""

from __future__ import annotations

from google.protobuf import empty_pb2

from daprlite._proto.dapr.proto.common.v1 import common_pb2
from daprlite._proto.dapr.proto.runtime.v1 import state_pb2
from daprlite.blocks.state import DeleteItem, SaveItem, StateAPI, TransactionItem
from daprlite.transport.grpc.common import call

_CONCURRENCY = {1: "first-write", 2: "last-write"}
_CONSISTENCY = {1: "eventual", 2: "strong"}


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


class StateRPCs:
    _state: StateAPI

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

        return await call(context, work)

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

        return await call(context, work)

    async def SaveState(self, request, context):
        async def work() -> empty_pb2.Empty:
            items = [_save_item(s) for s in request.states]
            if items:
                await self._state.save(request.store_name, items)
            return empty_pb2.Empty()

        return await call(context, work)

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

        return await call(context, work)

    async def DeleteBulkState(self, request, context):
        async def work() -> empty_pb2.Empty:
            await self._state.delete_bulk(
                request.store_name, [_delete_item(s) for s in request.states]
            )
            return empty_pb2.Empty()

        return await call(context, work)

    async def ExecuteStateTransaction(self, request, context):
        async def work() -> empty_pb2.Empty:
            ops = [
                TransactionItem(op.operationType, _save_item(op.request))
                for op in request.operations
            ]
            await self._state.transact(request.storeName, ops, dict(request.metadata))
            return empty_pb2.Empty()

        return await call(context, work)

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

        return await call(context, work)
