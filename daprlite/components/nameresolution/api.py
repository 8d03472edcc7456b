"""The name-resolution contract: ``(app id, namespace)`` -> the callee sidecar's address.

Start-up step 5 (DESIGN.md, Lifecycle). The invocation block asks the
configured resolver for the sidecar of a target app on every call (so a
restarted callee on new ports is found on the next attempt); the resolver
answers with the host and ports of one live instance. Which resolver runs is
chosen by the Configuration's ``spec.nameResolution`` (Dapr's
``{component, version, configuration}``); the default is the standalone run
folder on a laptop and Kubernetes DNS inside a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    app_id: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Address:
    """Where to reach a callee's sidecar.

    ``internal_port`` serves sidecar-to-sidecar invocation; ``grpc_port`` is
    the callee's gRPC API, used for raw gRPC proxying (``dapr-app-id``).
    ``grpc_port`` is 0 when the resolver cannot know it. ``proxy_port`` is the
    callee's mTLS gRPC listener for proxied calls (served only with mTLS; 0:
    unknown or none).
    """

    host: str
    internal_port: int
    grpc_port: int = 0
    proxy_port: int = 0


@dataclass(frozen=True, slots=True)
class SelfInfo:
    """What a resolver may need to know about the sidecar it runs in."""

    app_id: str
    namespace: str
    host: str
    internal_port: int
    grpc_port: int
    http_port: int
    proxy_port: int = 0


class AppNotFoundError(LookupError):
    """No live instance of the app is known to the resolver."""


@runtime_checkable
class Resolver(Protocol):
    async def init(self, configuration: Mapping[str, object], self_info: SelfInfo) -> None:
        """Decode ``spec.nameResolution.configuration``; raise MetadataError naming the key."""
        ...

    async def resolve(self, request: ResolveRequest) -> Address:
        """One live address of the app; raises :class:`AppNotFoundError` when there is none."""
        ...

    def forget(self, request: ResolveRequest) -> None:
        """Drop what is cached about the app: a call to it just failed to connect."""
        ...

    async def close(self) -> None: ...
