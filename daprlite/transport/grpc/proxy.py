"""gRPC proxying: any call carrying ``dapr-app-id`` metadata for a service we do not serve.

dapr-api.md 3.7. The app uses its own protos; the sidecar forwards the raw
frames (bytes in, bytes out, any cardinality handled as a stream) to the
target: its own app when the id is its own, otherwise the callee's sidecar,
whose proxy then forwards to that app. Headers and trailers travel back; an
error status passes through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import grpc

from daprlite.blocks.invoke.paths import same_namespace, split_target
from daprlite.components.nameresolution.api import AppNotFoundError, Resolver, ResolveRequest
from daprlite.errors import APIError

log = logging.getLogger("daprlite.grpc.proxy")

_DROP = frozenset({"dapr-api-token", "dapr-caller-app-id", "dapr-caller-namespace"})


class ProxyHandler(grpc.GenericRpcHandler):
    """Serves methods no registered service claims, when they name a target app."""

    def __init__(
        self,
        app_id: str,
        namespace: str,
        own_app_target: Callable[[], str | None],
        resolver: Callable[[], Resolver | None],
        max_message_size: int,
    ) -> None:
        self._app_id = app_id
        self._namespace = namespace
        self._own_app_target = own_app_target
        self._resolver = resolver
        self._max = max_message_size
        self._channels: dict[str, grpc.aio.Channel] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        md = dict(handler_call_details.invocation_metadata or ())
        target = md.get("dapr-app-id")
        if not isinstance(target, str) or not target:
            return None
        method = handler_call_details.method

        # grpc.aio recognises streaming handlers by being async generator functions.
        async def forward(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for message in self._proxy(target, method, requests, context):
                yield message

        return grpc.stream_stream_rpc_method_handler(forward)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", self._max),
                    ("grpc.max_send_message_length", self._max),
                ],
            )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _address(self, target: str, context: grpc.aio.ServicerContext) -> tuple[str, bool]:
        try:
            app_id, namespace = split_target(target, self._namespace)
        except APIError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        if app_id == self._app_id and same_namespace(namespace, self._namespace):
            own = self._own_app_target()
            if own is None:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"app {app_id!r} has no gRPC app channel (its sidecar needs "
                    "--app-protocol grpc and --app-port)",
                )
            assert own is not None
            return own, True
        resolver = self._resolver()
        if resolver is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "name resolution is not ready")
        assert resolver is not None
        try:
            address = await resolver.resolve(ResolveRequest(app_id, namespace))
        except AppNotFoundError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"couldn't find service: {exc}")
        if not address.grpc_port:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the gRPC port of app {app_id!r} is not known"
            )
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"{host}:{address.grpc_port}", False

    async def _proxy(
        self,
        target: str,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        address, local = await self._address(target, context)
        incoming = list(context.invocation_metadata() or ())
        md = [
            (k, v)
            for k, v in incoming
            if k not in _DROP and not k.startswith(":") and k not in ("user-agent", "te")
        ]
        caller = [
            (k, v) for k, v in incoming if k in ("dapr-caller-app-id", "dapr-caller-namespace")
        ]
        if local:
            # The last hop: keep the identity the caller's sidecar wrote (a direct
            # call from our own app has none, and gets ours). Until mTLS, anyone who
            # can reach this port can claim an identity, as on the internal port.
            md = [(k, v) for k, v in md if k != "dapr-app-id"]
            md += caller or [
                ("dapr-caller-app-id", self._app_id),
                ("dapr-caller-namespace", self._namespace or "default"),
            ]
        else:
            md += [
                ("dapr-caller-app-id", self._app_id),
                ("dapr-caller-namespace", self._namespace or "default"),
            ]
        call = self._channel(address).stream_stream(method)(requests, metadata=md)
        try:
            initial = await call.initial_metadata()
            if initial:
                await context.send_initial_metadata(list(initial))
            async for message in call:
                yield message
            trailing = await call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
        except grpc.aio.AioRpcError as exc:
            await context.abort(
                exc.code(), exc.details() or "", tuple(exc.trailing_metadata() or ())
            )
