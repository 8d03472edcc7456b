"""The output-bindings building block, shared by the HTTP and gRPC transports.

Finds the binding, checks the operation against the ones it supports, adds
trace context to the metadata, calls the component and maps its errors: the
caller's mistakes (unknown binding, missing or unsupported operation, bad
request metadata) are 400s; a failing backend is a 500.
"""

from __future__ import annotations

from collections.abc import Mapping

from daprlite import errors
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.runtime.registry import ComponentStore, LiveComponent


def directions(component: LiveComponent) -> set[str]:
    """The ``direction`` metadata as a set (empty = not restricted)."""
    raw = component.property("direction")
    return {d.strip().lower() for d in raw.split(",") if d.strip()}


class BindingsAPI:
    def __init__(self, components: ComponentStore) -> None:
        self._components = components

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
        try:
            return await binding.invoke(InvokeRequest(operation, data, dict(metadata)))
        except (MetadataError, UnsupportedOperationError) as exc:
            raise errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST(
                f"error invoking output binding {name}: {exc}"
            ) from exc
        except ComponentError as exc:
            entry = errors.INVOKE_OUTPUT_BINDING
            if getattr(exc, "client_error", False):
                entry = errors.INVOKE_OUTPUT_BINDING_BAD_REQUEST
            raise entry(f"error invoking output binding {name}: {exc}") from exc
