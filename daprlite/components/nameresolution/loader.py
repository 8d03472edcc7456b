"""Choosing and starting the sidecar's name resolver (start-up step 5).

The lifecycle calls :func:`open_resolver` with the Configuration's
``spec.nameResolution`` once the other components are up, enters the
resolver's ``close`` on its exit stack, and hands the resolver to the
invocation block. Without a ``spec.nameResolution`` (or with an empty
``component``) the resolver is ``kubernetes`` inside a cluster and
``standalone`` elsewhere. Classes come from the component registry
(``nameresolution.<component>``), so third parties can add resolvers through
the ``daprlite.components`` entry points.
"""

from __future__ import annotations

import logging
import os

from daprlite.components.errors import MetadataError
from daprlite.components.nameresolution.api import Resolver, SelfInfo
from daprlite.components.registry import Registry, UnknownComponentError
from daprlite.config.configuration import NameResolutionSpec

_log = logging.getLogger("daprlite.nameresolution")

KIND = "nameresolution."


def default_component() -> str:
    """``kubernetes`` inside a pod (the API server's env var is set), else ``standalone``."""
    return "kubernetes" if os.environ.get("KUBERNETES_SERVICE_HOST") else "standalone"


def known_components(registry: Registry) -> list[str]:
    return sorted(t.removeprefix(KIND) for t in registry.known_types() if t.startswith(KIND))


async def open_resolver(
    spec: NameResolutionSpec | None,
    self_info: SelfInfo,
    registry: Registry | None = None,
) -> Resolver:
    """Build and initialise the resolver that ``spec`` names; the caller closes it."""
    registry = registry or Registry()
    component = (spec.component.strip().lower() if spec else "") or default_component()
    version = spec.version if spec else ""
    configuration = spec.configuration if spec else {}
    known = known_components(registry)
    if component not in known:
        raise UnknownComponentError(
            f"spec.nameResolution.component: unknown name resolution component "
            f"{component!r}; known components: {', '.join(known)}"
        )
    if component == "mdns":
        _log.info(
            "name resolution: 'mdns' is served by the standalone resolver, which reads the "
            "run folder of this machine instead of multicast DNS"
        )
    try:
        cls = registry.resolve(KIND + component, version)
    except UnknownComponentError as exc:
        raise UnknownComponentError(f"spec.nameResolution.version: {exc}") from exc
    resolver = cls()
    if not isinstance(resolver, Resolver):
        raise UnknownComponentError(
            f"spec.nameResolution.component: {cls.__module__}.{cls.__qualname__}, registered "
            f"as {KIND}{component}, is not a name resolver (it lacks init, resolve or close)"
        )
    try:
        await resolver.init(configuration, self_info)
    except MetadataError as exc:
        await resolver.close()
        raise MetadataError(f"spec.nameResolution.configuration.{exc.field}", exc.problem) from exc
    except BaseException:
        await resolver.close()
        raise
    return resolver
