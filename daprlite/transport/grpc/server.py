"""The gRPC API: ``dapr.proto.runtime.v1.Dapr`` served with grpc.aio.

The servicer is assembled from one mixin per block (state, bindings, secrets,
metadata); each RPC converts the proto message into the same block call the
HTTP routes make. RPCs of the Dapr service that this build does not
implement are answered UNIMPLEMENTED by grpc itself.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable

import grpc

from daprlite._proto.dapr.proto.runtime.v1 import dapr_pb2_grpc
from daprlite._proto.daprlite.runtime.v1 import auth_pb2_grpc
from daprlite.blocks.bindings import BindingsAPI
from daprlite.blocks.invoke.api import InvokeAPI
from daprlite.blocks.metadata import MetadataAPI
from daprlite.blocks.pubsub.api import PubSubAPI
from daprlite.blocks.secrets import SecretsAPI
from daprlite.blocks.state import StateAPI
from daprlite.observability.metrics import Metrics
from daprlite.runtime.streaming import StreamingSubscriptions
from daprlite.security.apilists import APILists
from daprlite.security.token import HEADER, token_matches
from daprlite.transport.grpc.auth import AuthServicer
from daprlite.transport.grpc.bindings import BindingRPCs
from daprlite.transport.grpc.invoke import InvokeRPCs
from daprlite.transport.grpc.metadata import MetadataRPCs
from daprlite.transport.grpc.pubsub import PubSubRPCs
from daprlite.transport.grpc.secrets import SecretRPCs
from daprlite.transport.grpc.state import StateRPCs


class DaprServicer(
    InvokeRPCs,
    PubSubRPCs,
    StateRPCs,
    BindingRPCs,
    SecretRPCs,
    MetadataRPCs,
    dapr_pb2_grpc.DaprServicer,
):
    def __init__(
        self,
        state: StateAPI,
        bindings: BindingsAPI,
        secrets: SecretsAPI,
        metadata: MetadataAPI,
        request_shutdown: Callable[[], None],
        invoke: InvokeAPI,
        pubsub: PubSubAPI,
        streaming: StreamingSubscriptions | None = None,
    ) -> None:
        self._invoke = invoke
        self._pubsub = pubsub
        self._streaming = streaming or StreamingSubscriptions(pubsub, pubsub.app_id)
        self._state = state
        self._bindings = bindings
        self._secrets = secrets
        self._metadata = metadata
        self._request_shutdown = request_shutdown


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for every call without the right ``dapr-api-token`` metadata.

    One exception: a proxied call (a method of no Dapr service) whose
    ``dapr-app-id`` is this sidecar's own app is the last hop of gRPC
    proxying, sent by the caller's sidecar, which cannot know this sidecar's
    token. It reaches only the app's own gRPC service, as Dapr's internal port
    does; the caller's sidecar already checked the caller's token.
    """

    def __init__(self, expected: str, own_app_id: str = "") -> None:
        self._expected = expected
        self._own_app_id = own_app_id
        self._missing = _refusal(
            grpc.StatusCode.UNAUTHENTICATED, "missing api token in request metadata"
        )
        self._mismatch = _refusal(
            grpc.StatusCode.UNAUTHENTICATED, "authentication error: api token mismatch"
        )

    async def intercept_service(self, continuation, handler_call_details):
        md = dict(handler_call_details.invocation_metadata or ())
        if (
            self._own_app_id
            and md.get("dapr-app-id") == self._own_app_id
            and not handler_call_details.method.startswith(_API_SERVICES)
        ):
            return await continuation(handler_call_details)
        given = md.get(HEADER)
        if not isinstance(given, str):
            return self._missing
        if not token_matches(self._expected, given):
            return self._mismatch
        return await continuation(handler_call_details)


class APIListInterceptor(grpc.aio.ServerInterceptor):
    """PERMISSION_DENIED for methods that the Configuration's ``spec.api`` lists exclude."""

    def __init__(self, lists: APILists) -> None:
        self._lists = lists

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        md = dict(handler_call_details.invocation_metadata or ())
        proxied = "dapr-app-id" in md and not method.startswith(_API_SERVICES)
        if not self._lists.allows_grpc_method(method, proxied):
            return _refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"access to method {method} is not allowed by the Configuration's spec.api lists",
            )
        return await continuation(handler_call_details)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """``dapr_grpc_io_server_*``: every call counted when it completes, with its final status.

    Outermost, so calls the token or API-list checks refuse are counted too.
    The handler's behaviour is wrapped in the same shape (a coroutine, or an
    async generator for streamed responses, as grpc.aio tells them apart), so
    streaming RPCs and the proxy's generic handler work unchanged.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.lstrip("/")
        if handler.unary_unary is not None:
            wrap, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
        elif handler.unary_stream is not None:
            wrap, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
        elif handler.stream_unary is not None:
            wrap, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
        else:
            wrap, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
        return wrap(
            self._measured(method, behavior),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _measured(self, method: str, behavior: Callable[..., object]) -> Callable[..., object]:
        record = self._metrics.grpc_server

        def done(context: grpc.aio.ServicerContext, start: float, failed: str) -> None:
            code = context.code()
            status = failed or (code.name if isinstance(code, grpc.StatusCode) else "OK")
            record(method, status, (time.perf_counter() - start) * 1000)

        if inspect.isasyncgenfunction(behavior):

            async def streamed(
                request: object, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[object]:
                start, failed = time.perf_counter(), ""
                try:
                    async for item in behavior(request, context):  # type: ignore[attr-defined]
                        yield item
                except BaseException as exc:
                    failed = _failure_status(exc)
                    raise
                finally:
                    done(context, start, failed)

            return streamed

        async def unary(request: object, context: grpc.aio.ServicerContext) -> object:
            start, failed = time.perf_counter(), ""
            try:
                return await behavior(request, context)  # type: ignore[misc]
            except BaseException as exc:
                failed = _failure_status(exc)
                raise
            finally:
                done(context, start, failed)

        return unary


def _failure_status(exc: BaseException) -> str:
    """The status an exception ends a call with ('' when the context holds it: an abort)."""
    if isinstance(exc, grpc.aio.AbortError):
        return ""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"


# Methods of these services are the sidecar's own API, never a proxied call to the app.
_API_SERVICES = ("/dapr.proto.runtime.v1.Dapr/", "/daprlite.runtime.v1.")


def _refusal(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


def build_server(
    servicer: DaprServicer,
    max_message_size: int,
    api_token: str | None = None,
    proxy: grpc.GenericRpcHandler | None = None,
    own_app_id: str = "",
    api_lists: APILists | None = None,
    auth: AuthServicer | None = None,
    metrics: Metrics | None = None,
) -> grpc.aio.Server:
    # The token is checked first: a caller without it learns nothing about the lists.
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))  # outermost: refusals count too
    if api_token:
        interceptors.append(TokenInterceptor(api_token, own_app_id))
    if api_lists is not None and api_lists.active:
        interceptors.append(APIListInterceptor(api_lists))
    server = grpc.aio.server(
        interceptors=interceptors or None,
        options=[
            ("grpc.max_receive_message_length", max_message_size),
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.so_reuseport", 0),
        ],
    )
    dapr_pb2_grpc.add_DaprServicer_to_server(servicer, server)
    if auth is not None:
        auth_pb2_grpc.add_AuthServicer_to_server(auth, server)
    if proxy is not None:
        # Consulted only for methods no registered service claims (gRPC proxying).
        server.add_generic_rpc_handlers((proxy,))
    return server
