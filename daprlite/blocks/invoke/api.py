"""Caller side of service invocation: find the callee, apply resiliency, call it.

The HTTP route, gRPC ``InvokeService`` and the fallback route all end here
with an :class:`InvokeRequest` whose method is already normalised. Per
attempt the target is resolved afresh (a restarted callee is found on its new
ports), then called through the :class:`RemoteInvoker` (the internal
transport) or, for the app's own id, delivered locally.

Failures and retries (dapr-api.md 3.5 and 10.4):
- a Resiliency policy for ``apps.<id>`` (or a ``Default...`` policy) wraps the
  call: its timeout bounds each attempt, its retries retry failed attempts
  (an app's error answer is a failure that its ``matching`` codes select) and
  its circuit breaker counts them;
- without a retry policy, Dapr's built-in service retries apply: 3 retries,
  1 s apart, only when the callee's sidecar could not be reached;
- when every attempt failed with an app error, the app's last answer is
  returned unchanged; transport failures become 500 ``ERR_DIRECT_INVOKE``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Protocol

from daprlite import errors
from daprlite.blocks.invoke.external import (
    Endpoint,
    ExternalCaller,
    ExternalUnavailableError,
    is_url,
)
from daprlite.blocks.invoke.local import LocalApp
from daprlite.blocks.invoke.model import Caller, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import same_namespace, split_target
from daprlite.channel.errors import AppUnavailableError
from daprlite.components.errors import ComponentError
from daprlite.components.nameresolution.api import (
    Address,
    AppNotFoundError,
    Resolver,
    ResolveRequest,
)
from daprlite.observability.metrics import Metrics
from daprlite.observability.tracing import TraceContext, continue_trace
from daprlite.resiliency import (
    CircuitOpenError,
    CodedFailure,
    Resiliency,
    ResiliencyTimeoutError,
)

log = logging.getLogger("daprlite.invoke")

BUILTIN_SERVICE_RETRIES = "DaprBuiltInServiceRetries"


class CalleeUnavailableError(ConnectionError):
    """The callee's sidecar (or, behind it, the callee app) could not be reached."""


class RemoteInvoker(Protocol):
    """The sidecar-to-sidecar transport, as the block needs it."""

    async def call(
        self,
        address: Address,
        callee: Caller,
        req: InvokeRequest,
        caller: Caller,
        trace: TraceContext,
    ) -> InvokeResponse:
        """Raises CalleeUnavailableError when the callee is unreachable, APIError for refusals."""
        ...


class _AppFailed(CodedFailure):
    """An app's error answer, carried through the retry loop as a failure."""


def _app_failure(resp: InvokeResponse) -> _AppFailed:
    if resp.app_protocol == "grpc":
        return _AppFailed(grpc_code=resp.status, payload=resp)
    return _AppFailed(http_status=resp.status, payload=resp)


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, CalleeUnavailableError | AppNotFoundError | AppUnavailableError)


class InvokeAPI:
    def __init__(
        self,
        me: Caller,
        local: LocalApp,
        remote: RemoteInvoker | None = None,
        resolver: Resolver | None = None,
        resiliency: Resiliency | None = None,
        sampling_rate: float = 0.0,
    ) -> None:
        self.me = me
        self.local = local
        self.remote = remote
        self.resolver = resolver
        self.resiliency = resiliency or Resiliency.build(())
        self.sampling_rate = sampling_rate
        self.endpoints: dict[str, Endpoint] = {}
        self.external: ExternalCaller | None = None
        self.metrics: Metrics | None = None  # set by the sidecar when metrics are on

    def trace_for(self, traceparent: str | None, tracestate: str | None) -> TraceContext:
        """This hop's trace context; a new trace is sampled at the configured rate."""
        sample = self.sampling_rate > 0 and random.random() < self.sampling_rate
        return continue_trace(traceparent, tracestate, sample)

    async def invoke(self, target: str, req: InvokeRequest, trace: TraceContext) -> InvokeResponse:
        if is_url(target) or target in self.endpoints:
            return await self._invoke_external(target, req, trace)
        app_id, namespace = split_target(target, self.me.namespace)
        is_self = app_id == self.me.app_id and same_namespace(namespace, self.me.namespace)

        async def attempt() -> InvokeResponse:
            start, metrics = time.perf_counter(), self.metrics
            if metrics is not None:
                metrics.invocation_sent(app_id)
            if is_self:
                resp = await self.local.deliver(req, self.me, trace)
            else:
                resp = await self._call_remote(app_id, namespace, req, trace)
            if metrics is not None:
                metrics.invocation_answered(
                    app_id, resp.status, (time.perf_counter() - start) * 1000
                )
            if resp.failed:
                raise _app_failure(resp)
            return resp

        policy = self.resiliency.app(app_id)
        try:
            if policy.has_retries or self.resiliency.has_app_target(app_id):
                # A policy of the user's replaces Dapr's built-in service retries.
                return await policy.execute(attempt, retriable=_not_refusal)
            builtin = self.resiliency.builtin(BUILTIN_SERVICE_RETRIES)
            return await policy.execute(
                lambda: builtin.execute(attempt, retriable=_unavailable), retriable=_never
            )
        except _AppFailed as exc:
            assert isinstance(exc.payload, InvokeResponse)
            return exc.payload
        except errors.APIError:
            raise
        except CircuitOpenError as exc:
            raise _failed(target, f"circuit breaker is open: {exc}") from exc
        except (ResiliencyTimeoutError, TimeoutError) as exc:
            seconds = policy.timeout
            why = f"timed out after {seconds:g}s" if seconds else "timed out"
            raise _failed(target, why) from exc
        except AppNotFoundError as exc:
            raise _failed(target, f"couldn't find service: {exc}") from exc
        except ComponentError as exc:  # the resolver's backend (e.g. DNS) failed
            raise _failed(target, f"name resolution failed: {exc}") from exc
        except (CalleeUnavailableError, AppUnavailableError) as exc:
            raise _failed(target, str(exc)) from exc

    async def _invoke_external(
        self, target: str, req: InvokeRequest, trace: TraceContext
    ) -> InvokeResponse:
        """A URL or an HTTPEndpoint: no sidecar on the other side, so no built-in retries."""
        endpoint = self.endpoints.get(target)
        base = endpoint.base_url if endpoint else target
        extra = endpoint.headers if endpoint else ()
        external = self.external
        if external is None:
            raise errors.DIRECT_INVOKE_FAILED("external invocation is not set up in this sidecar")

        async def attempt() -> InvokeResponse:
            resp = await external.call(base, extra, req, trace)
            if resp.failed:
                raise _app_failure(resp)
            return resp

        policy = self.resiliency.app(target)
        try:
            return await policy.execute(attempt, retriable=_not_refusal)
        except _AppFailed as exc:
            assert isinstance(exc.payload, InvokeResponse)
            return exc.payload
        except CircuitOpenError as exc:
            raise _failed(target, f"circuit breaker is open: {exc}") from exc
        except (ResiliencyTimeoutError, TimeoutError) as exc:
            raise _failed(target, "timed out") from exc
        except ExternalUnavailableError as exc:
            raise _failed(target, str(exc)) from exc

    async def _call_remote(
        self, app_id: str, namespace: str, req: InvokeRequest, trace: TraceContext
    ) -> InvokeResponse:
        if self.remote is None or self.resolver is None:
            raise errors.DIRECT_INVOKE_FAILED("service invocation is not set up in this sidecar")
        request = ResolveRequest(app_id, namespace)
        address = await self.resolver.resolve(request)
        try:
            return await self.remote.call(address, Caller(app_id, namespace), req, self.me, trace)
        except CalleeUnavailableError:
            self.resolver.forget(request)
            raise


def _not_refusal(exc: BaseException) -> bool:
    return not isinstance(exc, errors.APIError)


def _never(exc: BaseException) -> bool:
    return False


def _failed(target: str, why: str) -> errors.APIError:
    return errors.DIRECT_INVOKE_FAILED(f"failed to invoke, id: {target}, err: {why}")
