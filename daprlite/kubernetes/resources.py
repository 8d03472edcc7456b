"""Resources from the cluster: start-up step 2 in ``--mode kubernetes``.

The sidecar lists the ``daprlite.io`` custom resources of its namespace —
Components, Resiliencies and Subscriptions, plus the Configuration that
``--config`` names — keeps those whose ``scopes`` include its app id, and turns
each into the same models the YAML loader produces
(:mod:`daprlite.config.resources`), so the rest of start-up does not know where
they came from. Folders given with ``--resources-path`` still add to them. The
Component list's resourceVersion is where the watch (:mod:`daprlite.kubernetes.watch`)
starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from daprlite.config.resources import (
    Component,
    Resource,
    ResourceError,
    Resources,
    parse_component,
    parse_resource,
)
from daprlite.kubernetes.client import api_error_text

log = logging.getLogger("daprlite.kubernetes")

GROUP = "daprlite.io"
# The name Kubernetes mode gives its implicit secret store, and the store that resolves
# secretKeyRef entries that name none (auth.secretStore).
DEFAULT_SECRET_STORE = "kubernetes"
REQUEST_TIMEOUT = 30.0  # seconds for one list or get
R = TypeVar("R", Component, Resource)


@dataclass(frozen=True, slots=True)
class Kind:
    """Where one custom resource kind lives in the API."""

    kind: str
    plural: str
    version: str

    def source(self, namespace: str, name: str) -> str:
        """How errors and logs name one object: ``components.daprlite.io team-a/statestore``."""
        return f"{self.plural}.{GROUP} {namespace}/{name}"


COMPONENTS = Kind("Component", "components", "v1alpha1")
CONFIGURATIONS = Kind("Configuration", "configurations", "v1alpha1")
RESILIENCIES = Kind("Resiliency", "resiliencies", "v1alpha1")
SUBSCRIPTIONS = Kind("Subscription", "subscriptions", "v2alpha1")


class ClusterError(Exception):
    """The API server refused or failed a request; the message names the resource."""


def _name(obj: Mapping[str, object]) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else "?"


def in_scope(obj: Mapping[str, object], app_id: str) -> bool:
    """No ``scopes``, or scopes naming ``app_id`` (malformed ones are the parser's to report)."""
    scopes = obj.get("scopes")
    return not isinstance(scopes, list) or not scopes or app_id in scopes


def component_from(obj: Mapping[str, object], namespace: str, app_id: str) -> Component | None:
    """The Component model of a cluster object, or None when it is scoped to other apps.

    Raises :class:`ResourceError` for an invalid object in scope; the caller
    decides (start-up: stop unless ``ignoreErrors``; a watch: log and keep the old).
    """
    if not in_scope(obj, app_id):
        return None  # another app's: not even validated, as its sidecars will do that
    return parse_component(obj, COMPONENTS.source(namespace, _name(obj)))


def implicit_secret_store(namespace: str) -> Component:
    """The ``kubernetes`` secret store Kubernetes mode adds unless one of that name exists."""
    return Component(
        name=DEFAULT_SECRET_STORE,
        type="secretstores.kubernetes",
        version="v1",
        metadata=(),
        source="--mode kubernetes (the implicit secret store)",
        namespace=namespace,
    )


class ClusterResources:
    """Reads this app's resources from its namespace through one API client."""

    def __init__(self, client: ApiClient, namespace: str, app_id: str) -> None:
        self.client = client
        self.namespace = namespace
        self.app_id = app_id
        self._api = CustomObjectsApi(client)

    async def list_objects(self, kind: Kind) -> tuple[list[Mapping[str, object]], str]:
        """Every object of ``kind`` in the namespace, and the list's resourceVersion."""
        try:
            doc = await self._api.list_namespaced_custom_object(
                GROUP,
                kind.version,
                self.namespace,
                kind.plural,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            raise ClusterError(
                f"cannot list {kind.plural}.{GROUP} in namespace {self.namespace}: "
                f"{api_error_text(exc)}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API to list {kind.plural}.{GROUP}: "
                f"{api_error_text(exc)}"
            ) from None
        items = doc.get("items") if isinstance(doc, Mapping) else None
        meta = doc.get("metadata") if isinstance(doc, Mapping) else None
        version = meta.get("resourceVersion", "") if isinstance(meta, Mapping) else ""
        objects = [i for i in items or () if isinstance(i, Mapping)]
        return objects, str(version or "")

    async def get(self, kind: Kind, name: str) -> Mapping[str, object]:
        try:
            doc = await self._api.get_namespaced_custom_object(
                GROUP,
                kind.version,
                self.namespace,
                kind.plural,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ClusterError(
                    f"{kind.kind} {name!r} not found in namespace {self.namespace} "
                    f"({kind.plural}.{GROUP})"
                ) from None
            raise ClusterError(
                f"cannot get {kind.kind} {name!r} in namespace {self.namespace}: "
                f"{api_error_text(exc)}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API to get {kind.kind} {name!r}: "
                f"{api_error_text(exc)}"
            ) from None
        if not isinstance(doc, Mapping):
            raise ClusterError(f"{kind.kind} {name!r}: the API server answered no object")
        return doc

    def _components(self, objects: list[Mapping[str, object]]) -> list[Component]:
        out = []
        for obj in objects:
            try:
                comp = component_from(obj, self.namespace, self.app_id)
            except ResourceError:
                spec = obj.get("spec")
                ignore = isinstance(spec, Mapping) and str(spec.get("ignoreErrors")) in (
                    "True",
                    "true",
                )
                if not ignore:
                    raise
                log.warning(
                    "ignoring invalid %s (ignoreErrors is set)",
                    COMPONENTS.source(self.namespace, _name(obj)),
                )
                continue
            if comp is not None:
                out.append(comp)
        return out

    def _others(self, kind: Kind, objects: list[Mapping[str, object]]) -> list[Resource]:
        return [
            parse_resource(kind.kind, obj, kind.source(self.namespace, _name(obj)))
            for obj in objects
            if in_scope(obj, self.app_id)
        ]

    async def load_into(self, into: Resources, config_names: tuple[str, ...]) -> str:
        """Add this app's cluster resources to ``into``; the Components' resourceVersion.

        A name that a ``--resources-path`` file already declares is an error
        naming both places, as two files declaring it would be.
        """
        component_objects, version = await self.list_objects(COMPONENTS)
        components = self._components(component_objects)
        resiliencies = self._others(RESILIENCIES, (await self.list_objects(RESILIENCIES))[0])
        subscriptions = self._others(SUBSCRIPTIONS, (await self.list_objects(SUBSCRIPTIONS))[0])
        configurations = [
            parse_resource(
                CONFIGURATIONS.kind,
                await self.get(CONFIGURATIONS, name),
                CONFIGURATIONS.source(self.namespace, name),
            )
            for name in config_names
        ]
        _add(into.components, components)
        _add(into.resiliencies, resiliencies)
        _add(into.subscriptions, subscriptions)
        into.configurations.extend(configurations)
        log.info(
            "loaded from namespace %s: %d components, %d resiliencies, %d subscriptions%s",
            self.namespace,
            len(components),
            len(resiliencies),
            len(subscriptions),
            f", configuration {', '.join(config_names)}" if config_names else "",
        )
        return version


def _add(existing: list[R], new: list[R]) -> None:
    seen = {item.name: item.source for item in existing}
    for item in new:
        if item.name in seen:
            kind = getattr(item, "kind", "Component")
            raise ResourceError(
                item.source,
                f"{kind} {item.name!r}",
                "metadata.name",
                f"duplicate name; already defined in {seen[item.name]}",
            )
    existing.extend(new)
