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

from daprlite.blocks.invoke.local import AccessCheck
from daprlite.blocks.invoke.model import Caller
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
        access_check: AccessCheck | None = None,
    ) -> None:
        self._access_check = access_check
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

    async def _check_access(
        self,
        caller_md: list[tuple[str, str]],
        method: str,
        context: grpc.aio.ServicerContext,
    ) -> None:
        if self._access_check is None:
            return
        claimed = dict(caller_md)
        if claimed:
            caller = Caller(
                claimed.get("dapr-caller-app-id", ""), claimed.get("dapr-caller-namespace", "")
            )
        else:
            caller = Caller(self._app_id, self._namespace, verified=True)
        if not self._access_check(caller, method.lstrip("/"), "NONE"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"access control policy has denied access to id: {caller.app_id} "
                f"operation: {method}",
            )

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
            # call from our own app has none, and gets ours). That identity is not
            # proven (this hop is not mTLS), so access control treats it as
            # unverified: only the global default action applies to it.
            await self._check_access(caller, method, context)
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
