"""What ``--mode kubernetes`` adds to the sidecar's start-up.

Between start-up steps 1 and 2 it opens an API client (in-cluster, or
``$KUBECONFIG``) for the pod's namespace; in step 2 it adds the namespace's
resources for this app id (:mod:`daprlite.kubernetes.resources`) and, unless a
secret store named ``kubernetes`` is declared, the implicit
``secretstores.kubernetes`` that resolves ``secretKeyRef`` entries naming no
store; after step 4 it starts the Component watch that reloads components
(:mod:`daprlite.kubernetes.watch`). The watch task and the client are closed on
the sidecar's exit stack before the components are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack

from daprlite.config.options import Options
from daprlite.config.resources import Component, Resources
from daprlite.kubernetes.client import KubernetesConfigError, api_client
from daprlite.kubernetes.resources import (
    DEFAULT_SECRET_STORE,
    ClusterResources,
    implicit_secret_store,
)
from daprlite.kubernetes.watch import ComponentReloader, ComponentTarget, watch_components

log = logging.getLogger("daprlite.kubernetes")

# Categories whose live instance no block caches: a swapped one is used from the next call.
_SWAPPABLE = ("state", "secretstores", "bindings", "pubsub")


def held_reason(
    category: str, name: str, subscribed_pubsubs: Iterable[str], reading_bindings: Iterable[str]
) -> str:
    """Why the sidecar cannot swap the live component ``category``/``name``, or ''."""
    if category not in _SWAPPABLE:
        return f"{category} components are wired in at start-up"
    if category == "pubsub" and name in set(subscribed_pubsubs):
        return "subscriptions are running on it"
    if category == "bindings" and name in set(reading_bindings):
        return "it is delivering input events to the app"
    return ""


class KubernetesMode:
    """The API client and the cluster's resources of one sidecar."""

    def __init__(self, cluster: ClusterResources) -> None:
        self.cluster = cluster
        self.default_secret_store = DEFAULT_SECRET_STORE
        self._loaded: list[Component] = []
        self._from_files: set[str] = set()
        self._resource_version = ""

    @classmethod
    async def open(cls, options: Options, stack: AsyncExitStack) -> KubernetesMode:
        if not options.namespace:
            raise KubernetesConfigError(
                "--mode kubernetes needs the pod's namespace in the NAMESPACE environment "
                "variable (the injector sets it from metadata.namespace)"
            )
        client = await api_client()
        stack.push_async_callback(client.close)
        return cls(ClusterResources(client, options.namespace, options.app_id))

    async def load_into(self, resources: Resources, config_names: tuple[str, ...]) -> None:
        """Add the cluster's resources, and the implicit secret store when none is named so."""
        self._from_files = {c.name for c in resources.components}
        before = len(resources.components)
        self._resource_version = await self.cluster.load_into(resources, config_names)
        self._loaded = resources.components[before:]
        declared = any(
            c.category == "secretstores" and c.name == DEFAULT_SECRET_STORE
            for c in resources.components
        )
        if not declared:
            resources.components.append(implicit_secret_store(self.cluster.namespace))

    def start_watch(
        self,
        target: ComponentTarget,
        category_of: Callable[[str], str],
        held: Callable[[str, str], str],
        stack: AsyncExitStack,
    ) -> ComponentReloader:
        """Watch the Components from the start-up list on; the task ends with the stack."""
        reloader = ComponentReloader(
            self.cluster, target, category_of, held, self._loaded, self._from_files
        )
        task = asyncio.create_task(
            watch_components(self.cluster, reloader, self._resource_version),
            name="daprlite-component-watch",
        )

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop)
        log.info(
            "watching Components in namespace %s from resourceVersion %s",
            self.cluster.namespace,
            self._resource_version,
        )
        return reloader
