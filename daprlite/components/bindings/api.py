"""The binding contracts: output bindings (app -> system) and input bindings (system -> app).

A binding component implements :class:`OutputBinding`, :class:`InputBinding`
or both. ``blocks.bindings`` calls output bindings for ``/v1.0/bindings/{name}``;
the runtime's input-binding loop (``runtime.bindings``) calls
:meth:`InputBinding.read` once with a handler that delivers each event to the
app. The handler raises :class:`DeliveryError` when the app failed; the
component then retries the event or leaves it unacknowledged for redelivery,
whichever its source supports — it never drops it silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from daprlite.components.errors import ComponentError
from daprlite.components.metadata import ComponentMetadata


class Capability(StrEnum):
    INPUT_BINDING = "INPUT_BINDING"
    OUTPUT_BINDING = "OUTPUT_BINDING"


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """One output-binding call. ``data`` is the bytes to send (HTTP callers' JSON re-encoded)."""

    operation: str
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    """What the binding returned: ``data`` None means "no body" (HTTP 204)."""

    data: bytes | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class BindingEvent:
    """One event from an input binding, on its way to the app."""

    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


class DeliveryError(ComponentError):
    """The app did not accept an input-binding event; retry or leave it unacknowledged."""


class UnsupportedOperationError(ComponentError):
    """The operation is not one the binding supports; the block lists the supported ones."""


Handler = Callable[[BindingEvent], Awaitable[bytes | None]]


@runtime_checkable
class OutputBinding(Protocol):
    async def init(self, metadata: ComponentMetadata) -> None: ...

    def operations(self) -> Sequence[str]:
        """The operation names ``invoke`` accepts (e.g. create, get, delete)."""
        ...

    async def invoke(self, req: InvokeRequest) -> InvokeResponse: ...

    async def close(self) -> None: ...


@runtime_checkable
class InputBinding(Protocol):
    async def init(self, metadata: ComponentMetadata) -> None: ...

    async def read(self, handler: Handler) -> None:
        """Start delivering events to ``handler`` in the background and return.

        Must keep going until :meth:`close`: a failing handler (DeliveryError)
        means retry / redeliver, never stop or drop.
        """
        ...

    async def close(self) -> None: ...
