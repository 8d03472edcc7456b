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

from daprlite._proto.dapr.proto.common.v1 import common_pb2
from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from daprlite.blocks.invoke.model import APP_GRPC, VERBS, Headers, InvokeRequest, InvokeResponse
from daprlite.channel.errors import AppUnavailableError

_DETAILS_KEY = "grpc-status-details-bin"


def _text_pairs(metadata: object) -> Headers:
    """Text entries of gRPC metadata (binary ``-bin`` entries are left out)."""
    out: list[tuple[str, str]] = []
    for k, v in metadata or ():  # type: ignore[attr-defined]
        if isinstance(v, str) and not k.endswith("-bin"):
            out.append((k, v))
    return tuple(out)


def _details(metadata: object) -> bytes:
    for k, v in metadata or ():  # type: ignore[attr-defined]
        if k == _DETAILS_KEY and isinstance(v, bytes):
            return v
    return b""


def _unreachable(exc: grpc.aio.AioRpcError) -> bool:
    """UNAVAILABLE raised by the channel itself (nothing listening), not by the app."""
    if exc.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    text = f"{exc.details()} {exc.debug_error_string()}".lower()
    return "failed to connect" in text or "connection refused" in text or "socket closed" in text


class GRPCAppChannel:
    def __init__(
        self,
        host: str,
        port: int,
        max_concurrency: int = -1,
        app_token: str | None = None,
        max_message_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.target = f"{host}:{port}"
        self._max_message_size = max_message_size
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._metadata = (("dapr-api-token", app_token),) if app_token else ()
        self._channel: grpc.aio.Channel | None = None
        self._stub: appcallback_pb2_grpc.AppCallbackStub | None = None
        self._health: appcallback_pb2_grpc.AppCallbackHealthCheckStub | None = None

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=[
                ("grpc.max_receive_message_length", self._max_message_size),
                ("grpc.max_send_message_length", self._max_message_size),
            ],
        )
        self._stub = appcallback_pb2_grpc.AppCallbackStub(self._channel)
        self._health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self._channel)

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

    async def invoke(
        self, req: InvokeRequest, metadata: list[tuple[str, str]], client: str = ""
    ) -> InvokeResponse:
        """``AppCallback.OnInvoke``; an app error comes back as a non-OK response.

        ``client`` is unused: the app pipeline is for HTTP apps only.

        Raises :class:`AppUnavailableError` when the app cannot be reached.
        """
        if self._stub is None:
            raise AppUnavailableError("the app channel is closed")
        # Our protos live in a private descriptor pool: fill the Any in place.
        msg = common_pb2.InvokeRequest(method=req.method, content_type=req.content_type)
        msg.data.type_url = req.data_type_url
        msg.data.value = req.body
        if req.verb != "NONE":
            msg.http_extension.verb = VERBS.get(req.verb, VERBS["POST"])  # type: ignore[assignment]
            msg.http_extension.querystring = req.query
        md = list(metadata) + list(self._metadata)
        gate = self._gate or contextlib.nullcontext()
        async with gate:
            call = self._stub.OnInvoke(msg, metadata=md)
            try:
                res = await call
            except grpc.aio.AioRpcError as exc:
                if _unreachable(exc):
                    raise AppUnavailableError(
                        f"the gRPC app at {self.target} cannot be reached: {exc.details()}"
                    ) from exc
                trailing = exc.trailing_metadata()
                return InvokeResponse(
                    app_protocol=APP_GRPC,
                    status=exc.code().value[0],
                    headers=_text_pairs(exc.initial_metadata()),
                    trailers=_text_pairs(trailing),
                    grpc_message=exc.details() or "",
                    grpc_details=_details(trailing),
                )
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
        return InvokeResponse(
            app_protocol=APP_GRPC,
            status=0,
            headers=_text_pairs(initial),
            body=res.data.value,
            content_type=res.content_type,
            data_type_url=res.data.type_url,
            trailers=_text_pairs(trailing),
        )

    async def health_check(self, path: str, timeout: float) -> bool:
        """``AppCallbackHealthCheck.HealthCheck`` (``path`` is for HTTP apps); False on error."""
        if self._health is None:
            return False
        try:
            await self._health.HealthCheck(empty_pb2.Empty(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def list_topic_subscriptions(self) -> list[appcallback_pb2.TopicSubscription]:
        """The app's ``ListTopicSubscriptions``; an app without the RPC subscribes to nothing."""
        assert self._stub is not None
        try:
            res = await self._stub.ListTopicSubscriptions(
                empty_pb2.Empty(), metadata=self._metadata, timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []
            raise
        return list(res.subscriptions)

    async def on_topic_event(
        self, req: appcallback_pb2.TopicEventRequest, metadata: list[tuple[str, str]]
    ) -> appcallback_pb2.TopicEventResponse:
        """Deliver one event; raises grpc.aio.AioRpcError when the app fails."""
        if self._stub is None:
            raise AppUnavailableError("the app channel is closed")
        gate = self._gate or contextlib.nullcontext()
        async with gate:
            return await self._stub.OnTopicEvent(req, metadata=metadata + list(self._metadata))

    async def on_bulk_topic_event(
        self, req: appcallback_pb2.TopicEventBulkRequest, metadata: list[tuple[str, str]]
    ) -> appcallback_pb2.TopicEventBulkResponse:
        """Deliver a batch: ``OnBulkTopicEvent``, else ``AppCallbackAlpha.OnBulkTopicEventAlpha1``.

        Apps built before the stable RPC existed only serve the alpha one, so
        UNIMPLEMENTED from the first is answered by trying the second; errors
        of that one (UNIMPLEMENTED included) are the caller's.
        """
        if self._stub is None or self._channel is None:
            raise AppUnavailableError("the app channel is closed")
        md = metadata + list(self._metadata)
        gate = self._gate or contextlib.nullcontext()
        async with gate:
            try:
                return await self._stub.OnBulkTopicEvent(req, metadata=md)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
            alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(self._channel)
            return await alpha.OnBulkTopicEventAlpha1(req, metadata=md)
