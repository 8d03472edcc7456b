"""Callee side: deliver an invocation to this sidecar's own app.

Used for calls that arrive from another sidecar (the internal listener) and
for an app calling itself. The method path arrives already normalised; the
caller's identity arrives from the caller's sidecar. This module adds the
headers Dapr apps rely on (``dapr-caller-app-id``, ``dapr-caller-namespace``,
``dapr-callee-app-id``, trace context, forwarded-for) and picks the HTTP or
gRPC channel. The app pipeline (``spec.appHttpPipeline``) is not run here but
by the HTTP app channel, on every call to the app; this module tells it who
the caller is (:func:`~daprlite.blocks.middleware.invocation_client`), the
client its handlers key on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from daprlite import errors
from daprlite.blocks.invoke.headers import for_grpc_app, for_http_app
from daprlite.blocks.invoke.model import Caller, InvokeRequest, InvokeResponse
from daprlite.blocks.middleware import invocation_client
from daprlite.channel.errors import AppUnavailableError
from daprlite.observability.tracing import TraceContext


class InvokableChannel(Protocol):
    async def invoke(
        self, req: InvokeRequest, headers: list[tuple[str, str]], client: str = ""
    ) -> InvokeResponse: ...


# The access-control hook: (caller, normalised method, verb) -> allowed?
AccessCheck = Callable[[Caller, str, str], bool]


class LocalApp:
    """This sidecar's app as an invocation target."""

    def __init__(
        self,
        app_id: str,
        namespace: str,
        channel: Callable[[], InvokableChannel | None],
        app_is_grpc: bool,
        access_check: AccessCheck | None = None,
        is_healthy: Callable[[], bool] | None = None,
    ) -> None:
        self._is_healthy = is_healthy
        self.app_id = app_id
        self.namespace = namespace
        self._channel = channel
        self._grpc = app_is_grpc
        self._access_check = access_check

    async def deliver(
        self,
        req: InvokeRequest,
        caller: Caller,
        trace: TraceContext,
        forwarded_for: str = "",
    ) -> InvokeResponse:
        """Call the app; raises APIError for refusals, AppUnavailableError if it is down."""
        channel = self._channel()
        if channel is None:
            raise errors.DIRECT_INVOKE_FAILED(
                f"app {self.app_id!r} has no app channel: its sidecar was started without "
                "--app-port"
            )
        if self._is_healthy is not None and not self._is_healthy():
            raise AppUnavailableError(f"app {self.app_id!r} is failing its health checks")
        if self._access_check is not None and not self._access_check(caller, req.method, req.verb):
            raise errors.DIRECT_INVOKE_FORBIDDEN(
                f"access control policy has denied access to id: {caller.app_id} "
                f"operation: {req.method} verb: {req.verb}"
            )
        extra = [
            ("dapr-caller-app-id", caller.app_id),
            ("dapr-caller-namespace", caller.namespace or "default"),
            ("dapr-callee-app-id", self.app_id),
            *trace.headers().items(),
        ]
        if forwarded_for:
            extra += [
                ("x-forwarded-for", forwarded_for),
                ("forwarded", f"for={forwarded_for};by=daprlite"),
            ]
        if self._grpc:
            return await channel.invoke(req, for_grpc_app(req.headers, req.grpc_origin) + extra)
        if req.verb == "NONE":
            raise errors.DIRECT_INVOKE_BAD_REQUEST(
                "missing HTTP extension field: the callee is an HTTP app, so the request needs "
                "message.http_extension.verb"
            )
        if req.verb == "CONNECT":
            raise errors.DIRECT_INVOKE_BAD_REQUEST(
                f"invalid HTTP verb {req.verb!r} for an app call"
            )
        # The channel runs the app pipeline; a refusal comes back like an app's error answer.
        return await channel.invoke(
            req,
            for_http_app(req.headers, req.grpc_origin) + extra,
            invocation_client(caller, forwarded_for),
        )
