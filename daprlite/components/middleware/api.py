"""The HTTP middleware contract (``middleware.http.*`` components).

A Configuration names middleware components in ``spec.httpPipeline``
(applied to requests arriving at the Dapr HTTP API) and
``spec.appHttpPipeline`` (applied to every request the sidecar makes to its
own HTTP app: invocations, pub/sub and input-binding deliveries, subscription
discovery; not health probes). Handlers run in the listed order, before the
request goes on. A handler may rewrite the request's headers (for example,
add the validated claims) or refuse the request by raising
:class:`MiddlewareRejection`, whose status and catalogue-style body go back
to the caller unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from daprlite.components.metadata import ComponentMetadata

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MiddlewareRequest:
    verb: str  # upper-case HTTP method
    path: str  # the normalised path the app (or API route) will see, with a leading "/"
    query: str  # without "?"
    headers: Headers  # names lower-case
    client: str  # who is calling: the caller's app id when known, else its address; for a
    # call the sidecar makes to its app on its own behalf (a delivery), its own app id


class MiddlewareRejection(Exception):
    """Stop the request here and answer ``status`` with ``{errorCode, message}``."""

    def __init__(self, status: int, error_code: str, message: str, headers: Headers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.headers = headers


@runtime_checkable
class HttpMiddleware(Protocol):
    async def init(self, metadata: ComponentMetadata) -> None: ...

    async def handle(self, request: MiddlewareRequest) -> MiddlewareRequest:
        """The request to pass on (possibly with changed headers); raises
        MiddlewareRejection to refuse it."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """One ``handlers[]`` entry: the middleware component's name and type."""

    name: str
    type: str
    selector: tuple[tuple[str, str], ...] = field(default=())
