"""The output-bindings building block, shared by the HTTP and gRPC transports.

Finds the binding, checks the operation against the ones it supports, adds
trace context to the metadata, calls the component under its resiliency policy
(``components.<name>.outbound``, see ``blocks/_resilient.py``) and maps its
errors: the caller's mistakes (unknown binding, missing or unsupported
operation, bad request metadata) are 400s and never retried; a failing backend
is a 500, after the policy's retries, and so are a timed-out attempt and an open
circuit breaker.

The runtime's input-binding loop (``runtime/bindings.py``) takes the
sidecar's :class:`Resiliency` from here for its deliveries to the app.
"""

from __future__ import annotations

from collections.abc import Mapping

from daprlite import errors
from daprlite.blocks._resilient import CALL_FAILURES, call_component, failure_reason
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.resiliency import Resiliency
from daprlite.runtime.registry import ComponentStore, LiveComponent


def directions(component: LiveComponent) -> set[str]:
    """The ``direction`` metadata as a set (empty = not restricted)."""
    raw = component.property("direction")
    return {d.strip().lower() for d in raw.split(",") if d.strip()}


def _refused(exc: ComponentError) -> bool:
    """The caller's mistakes, answered 4xx: the same request would fail again."""
    return _client_error(exc) or isinstance(exc, MetadataError | UnsupportedOperationError)


def _client_error(exc: BaseException) -> bool:
    # A component marks errors of the request itself (say, SQL the database rejected).
    return bool(getattr(exc, "client_error", False))


class BindingsAPI:
    def __init__(self, components: ComponentStore, resiliency: Resiliency | None = None) -> None:
        self._components = components
        self.resiliency = resiliency or Resiliency.build(())

    def _binding(self, name: str) -> OutputBinding:
        live = self._components.get("bindings", name)
        if live is None or not isinstance(live.instance, OutputBinding):
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: couldn't find output binding {name}"
            )
        dirs = directions(live)
        if dirs and "output" not in dirs:
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: binding {name} is input-only "
                "(its direction metadata does not include output)"
            )
        return live.instance

    async def invoke(
        self, name: str, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> InvokeResponse:
        binding = self._binding(name)
        if not operation:
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: operation field is missing from request"
            )
        supported = list(binding.operations())
        if operation not in supported:
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: binding {name} does not support "
                f"operation {operation}. supported operations: {', '.join(supported)}"
            )
        req = InvokeRequest(operation, data, dict(metadata))
        policy = self.resiliency.component_outbound(name, "binding")
        try:
            return await call_component(policy, lambda: binding.invoke(req), _refused)
        except (MetadataError, UnsupportedOperationError) as exc:
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: {exc}"
            ) from exc
        except CALL_FAILURES as exc:
            entry = errors.INVOKE_OUTPUT_BINDING
            if _client_error(exc):
                entry = errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST
            raise entry(f"error invoking output binding {name}: {failure_reason(exc)}") from exc
