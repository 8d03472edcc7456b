"""The gRPC app channel: how the sidecar calls an app that serves ``AppCallback``.

One grpc.aio channel per sidecar; ``--app-max-concurrency`` bounds calls in
flight; ``APP_API_TOKEN`` travels as ``dapr-api-token`` metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import grpc
from google.protobuf import empty_pb2

from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc


class GRPCAppChannel:
    def __init__(
        self, host: str, port: int, max_concurrency: int = -1, app_token: str | None = None
    ) -> None:
        self.target = f"{host}:{port}"
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._metadata = (("dapr-api-token", app_token),) if app_token else ()
        self._channel: grpc.aio.Channel | None = None
        self._stub: appcallback_pb2_grpc.AppCallbackStub | None = None

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._stub = appcallback_pb2_grpc.AppCallbackStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    async def list_input_bindings(self) -> list[str]:
        """The bindings the app handles; an app without the RPC handles none."""
        assert self._stub is not None
        try:
            res = await self._stub.ListInputBindings(
                empty_pb2.Empty(), metadata=self._metadata, timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []
            raise
        return list(res.bindings)

    async def on_binding_event(
        self, name: str, data: bytes, metadata: Mapping[str, str]
    ) -> appcallback_pb2.BindingEventResponse:
        """Deliver one input-binding event; raises grpc.aio.AioRpcError when the app fails."""
        if self._stub is None or self._channel is None:
            raise ConnectionError("the app channel is closed")
        req = appcallback_pb2.BindingEventRequest(name=name, data=data, metadata=dict(metadata))
        gate = self._gate or contextlib.nullcontext()
        async with gate:
            return await self._stub.OnBindingEvent(req, metadata=self._metadata)
