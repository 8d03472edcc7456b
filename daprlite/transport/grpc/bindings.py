"""gRPC ``InvokeBinding``: bytes pass through raw; response metadata also goes out as headers."""

from __future__ import annotations

from daprlite._proto.dapr.proto.runtime.v1 import binding_pb2
from daprlite.blocks.bindings import BindingsAPI
from daprlite.security.token import HEADER
from daprlite.transport.grpc.common import call
from daprlite.transport.http.common import header_safe


class BindingRPCs:
    _bindings: BindingsAPI

    async def InvokeBinding(self, request, context):
        async def work() -> binding_pb2.InvokeBindingResponse:
            metadata = dict(request.metadata)
            # Dapr merges the call's gRPC metadata in without overriding explicit
            # keys, renaming grpc-* to dapr-grpc-*; the API token never travels on.
            for k, v in context.invocation_metadata() or ():
                if k == HEADER or k.endswith("-bin") or not isinstance(v, str):
                    continue
                name = f"dapr-{k}" if k.startswith("grpc-") else k
                metadata.setdefault(name, v)
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
