"""gRPC proxying: any call carrying ``dapr-app-id`` metadata for a service we do not serve.

dapr-api.md 3.7. The app uses its own protos; the sidecar forwards the raw
frames (bytes in, bytes out, any cardinality handled as a stream) to the
target: its own app when the id is its own, otherwise the callee's sidecar,
whose proxy then forwards to that app. Headers and trailers travel back; an
error status passes through unchanged.

With mTLS the hop between sidecars goes to the callee's proxy listener
(``internal=True``: a separate gRPC server that requires a client certificate
from the trust anchors and serves only calls for its own app). The caller's
identity there is the SPIFFE ID of that certificate, so access-control
policies apply to it. Without mTLS the hop goes to the callee's public gRPC
port, and the identity the caller's sidecar wrote counts as unverified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from cryptography import x509

from daprlite.blocks.invoke.local import AccessCheck
from daprlite.blocks.invoke.model import Caller
from daprlite.blocks.invoke.paths import same_namespace, split_target
from daprlite.components.nameresolution.api import AppNotFoundError, Resolver, ResolveRequest
from daprlite.errors import APIError
from daprlite.security.acl import Identity
from daprlite.security.mtls import WorkloadIdentity, dns_name, parse_spiffe_id

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
        identity: WorkloadIdentity | None = None,
        internal: bool = False,
    ) -> None:
        self._access_check = access_check
        self._identity = identity  # with it, hops to other sidecars are mTLS
        self._internal = internal  # this handler serves the mTLS proxy listener
        self._app_id = app_id
        self._namespace = namespace
        self._own_app_target = own_app_target
        self._resolver = resolver
        self._max = max_message_size
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._retired: set[grpc.aio.Channel] = set()
        self._closing: set[asyncio.Task[None]] = set()

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

    def _channel(self, address: str, server_name: str = "") -> grpc.aio.Channel:
        """A pooled channel; with mTLS, one per certificate (rotation makes a new one)."""
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", self._max),
            ("grpc.max_send_message_length", self._max),
        ]
        cert = self._identity.current if self._identity is not None else None
        key = (address, server_name)
        channel = self._channels.get(key)
        if channel is not None and getattr(channel, "_daprlite_cert", None) is cert:
            return channel
        if channel is not None:
            self._retire(channel)
        if self._identity is not None and cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self._identity.trust_bundle_pem,
                private_key=cert.key_pem,
                certificate_chain=cert.cert_pem,
            )
            options.append(("grpc.ssl_target_name_override", server_name))
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(address, options=options)
        channel._daprlite_cert = cert  # type: ignore[attr-defined]
        self._channels[key] = channel
        return channel

    def _retire(self, channel: grpc.aio.Channel) -> None:
        """Close a channel of an old certificate once its calls have had time to finish."""
        self._retired.add(channel)

        async def later() -> None:
            await asyncio.sleep(60)
            self._retired.discard(channel)
            await channel.close()

        task = asyncio.get_running_loop().create_task(later())
        # The loop keeps only a weak reference to tasks: hold it until it is done.
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        for channel in [*self._channels.values(), *self._retired]:
            await channel.close()
        self._channels.clear()
        self._retired.clear()

    async def _address(
        self, target: str, context: grpc.aio.ServicerContext
    ) -> tuple[str, bool, str]:
        """Where to send the call, whether that is our own app, and the TLS name to expect."""
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
            return own, True, ""
        if self._internal:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this sidecar serves app {self._app_id!r}; it does not forward to {target!r}",
            )
        resolver = self._resolver()
        if resolver is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "name resolution is not ready")
        assert resolver is not None
        try:
            address = await resolver.resolve(ResolveRequest(app_id, namespace))
        except AppNotFoundError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"couldn't find service: {exc}")
        port = address.proxy_port if self._identity is not None else address.grpc_port
        if not port:
            kind = "mTLS proxy port" if self._identity is not None else "gRPC port"
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the {kind} of app {app_id!r} is not known"
            )
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"{host}:{port}", False, dns_name(app_id, namespace)

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

    async def _check_access_verified(
        self, peer: Identity, method: str, context: grpc.aio.ServicerContext
    ) -> None:
        if self._access_check is None:
            return
        caller = Caller(peer.app_id, peer.namespace, peer.trust_domain, verified=True)
        if not self._access_check(caller, method.lstrip("/"), "NONE"):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"access control policy has denied access to id: {peer.app_id} operation: {method}",
            )

    async def _proxy(
        self,
        target: str,
        method: str,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bytes]:
        address, local, server_name = await self._address(target, context)
        incoming = list(context.invocation_metadata() or ())
        md = [
            (k, v)
            for k, v in incoming
            if k not in _DROP and not k.startswith(":") and k not in ("user-agent", "te")
        ]
        caller = [
            (k, v) for k, v in incoming if k in ("dapr-caller-app-id", "dapr-caller-namespace")
        ]
        if local and self._internal:
            # The mTLS last hop: the caller is whoever its certificate names.
            peer = _peer(context)
            if peer is None:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the caller's certificate carries no SPIFFE ID",
                )
            assert peer is not None
            caller = [
                ("dapr-caller-app-id", peer.app_id),
                ("dapr-caller-namespace", peer.namespace),
            ]
            await self._check_access_verified(peer, method, context)
            md = [(k, v) for k, v in md if k != "dapr-app-id"] + caller
        elif local:
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
        call = self._channel(address, server_name).stream_stream(method)(requests, metadata=md)
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


def _peer(context: grpc.aio.ServicerContext) -> Identity | None:
    """The SPIFFE identity in the verified client certificate of this call."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if len(pems) != 1:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    return parse_spiffe_id(uris[0]) if len(uris) == 1 else None
