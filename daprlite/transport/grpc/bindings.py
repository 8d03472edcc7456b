"""gRPC ``InvokeBinding``: bytes pass through raw; response metadata also goes out as headers."""

from __future__ import annotations

from daprlite._proto.dapr.proto.runtime.v1 import binding_pb2
from daprlite.blocks.bindings import BindingsAPI
from daprlite.transport.grpc.common import call
from daprlite.transport.http.common import header_safe

TRACE_KEYS = ("traceparent", "tracestate", "baggage")


class BindingRPCs:
    _bindings: BindingsAPI

    async def InvokeBinding(self, request, context):
        async def work() -> binding_pb2.InvokeBindingResponse:
            metadata = dict(request.metadata)
            for k, v in context.invocation_metadata() or ():
                if k in TRACE_KEYS and k not in metadata:
                    metadata[k] = v
            res = await self._bindings.invoke(
                request.name, request.operation, request.data, metadata
            )
            if res.metadata:
                await context.send_initial_metadata(
                    [(f"metadata.{k}".lower(), v) for k, v in header_safe(res.metadata).items()]
                )
            return binding_pb2.InvokeBindingResponse(
                data=res.data or b"", metadata=dict(res.metadata)
            )

        return await call(context, work)
