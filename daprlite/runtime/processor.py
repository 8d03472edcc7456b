"""The component processor: manifests in, live components out.

Start-up steps 3 and 4 (DESIGN.md, Lifecycle): secret stores first, then every
other component, each with its ``secretKeyRef``/``envRef`` values and
placeholders resolved, created through the registry, initialised within its
``initTimeout`` and closed on the sidecar's exit stack. A failure names the
file, the component and the field, and stops start-up unless the component
sets ``ignoreErrors``. While the sidecar runs, :meth:`ComponentProcessor.apply`
and :meth:`ComponentProcessor.remove` swap one component for a changed manifest
(``--mode kubernetes`` watches the cluster's Components): the new instance is
initialised first, and the old one is closed only once the new one is in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from contextlib import AsyncExitStack

from daprlite.components.errors import ComponentError, MetadataError, MissingDriverError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry, UnknownComponentError
from daprlite.components.secretstores.api import SecretStore
from daprlite.config.resources import Component, MetadataItem
from daprlite.observability.metrics import Metrics
from daprlite.runtime.registry import ComponentStore, LiveComponent

log = logging.getLogger("daprlite.runtime")


class ComponentLoadError(Exception):
    """A component could not be loaded; the message names file, component and field."""

    def __init__(self, component: Component, field: str, problem: str) -> None:
        where = f"{component.source}: {component.label}"
        if field:
            where += f": field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.component = component
        self.field = field


def _env_ref(name: str) -> str:
    """An ``envRef`` value; the sidecar's own tokens and DAPR_* settings are never handed out."""
    upper = name.upper()
    if upper == "APP_API_TOKEN" or upper.startswith("DAPR_") or " " in name:
        return ""
    return os.environ.get(name, "")


def _placeholders(value: str, app_id: str, namespace: str) -> str:
    if "{" not in value:
        return value
    out = value.replace("{appID}", app_id)
    out = out.replace("{namespace}", f"{namespace}.{app_id}" if namespace else app_id)
    out = out.replace("{podName}", os.environ.get("POD_NAME", ""))
    while "{uuid}" in out:
        out = out.replace("{uuid}", str(uuid.uuid4()), 1)
    return out


class ComponentProcessor:
    """Creates and initialises components into a :class:`ComponentStore`."""

    def __init__(
        self,
        registry: Registry,
        store: ComponentStore,
        app_id: str,
        namespace: str = "",
        default_secret_store: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._app_id = app_id
        self._namespace = namespace
        # Resolves secretKeyRef without auth.secretStore when loaded (Kubernetes: "kubernetes").
        self._default_secret_store = default_secret_store
        # The manifest of every component this processor loaded and still owns, in load order.
        self._manifests: dict[tuple[str, str], Component] = {}
        self._closes_on_exit = False
        self._metrics = metrics  # dapr_runtime_component_* counts

    async def load_all(self, components: list[Component], stack: AsyncExitStack) -> None:
        if not self._closes_on_exit:
            # One callback for all: a component swapped later must be closed, not its first one.
            stack.push_async_callback(self.close_all)
            self._closes_on_exit = True
        # Secret stores first so the others can resolve secretKeyRef through them.
        ordered = sorted(components, key=lambda c: c.category != "secretstores")
        for comp in ordered:
            try:
                await self._load(comp)
            except ComponentLoadError as exc:
                if self._metrics is not None:
                    self._metrics.component_init_failed(comp.type)
                if not comp.ignore_errors:
                    raise
                log.warning("component %s skipped (ignoreErrors): %s", comp.name, exc)

    async def _secret(self, comp: Component, item: MetadataItem, index: int) -> str:
        ref = item.secret_key_ref
        assert ref is not None
        field = f"spec.metadata[{index}].secretKeyRef"
        stores = self._store.of_category("secretstores")
        store_name = comp.secret_store
        default = self._default_secret_store
        if not store_name and default and self._store.get("secretstores", default):
            store_name = default
        if store_name:
            live = self._store.get("secretstores", store_name)
            if live is None:
                raise ComponentLoadError(
                    comp, "auth.secretStore", f"secret store {store_name!r} is not loaded"
                )
        elif len(stores) == 1:
            live = stores[0]
        else:
            problem = (
                "no secret store is loaded to resolve it"
                if not stores
                else "several secret stores are loaded; name one in auth.secretStore"
            )
            raise ComponentLoadError(comp, field, problem)
        secret_store = live.instance
        assert isinstance(secret_store, SecretStore)
        try:
            values = await secret_store.get_secret(ref.name, {})
        except ComponentError as exc:
            raise ComponentLoadError(
                comp, field, f"cannot read secret {ref.name!r} from store {live.name!r}: {exc}"
            ) from exc
        if ref.key not in values:
            raise ComponentLoadError(
                comp, field, f"secret {ref.name!r} in store {live.name!r} has no key {ref.key!r}"
            )
        return values[ref.key]

    async def _properties(self, comp: Component) -> dict[str, str]:
        props: dict[str, str] = {}
        for i, item in enumerate(comp.metadata):
            if item.secret_key_ref is not None:
                props[item.name] = await self._secret(comp, item, i)
            elif item.env_ref is not None:
                props[item.name] = _env_ref(item.env_ref)
            else:
                props[item.name] = _placeholders(item.value or "", self._app_id, self._namespace)
        return props

    def _key(self, comp: Component) -> tuple[str, str]:
        return self._registry.category(comp.type), comp.name

    async def _load(self, comp: Component) -> None:
        key = self._key(comp)
        if self._store.get(*key):
            raise ComponentLoadError(comp, "metadata.name", "a component of this name is loaded")
        self._store.add(await self._create(comp))
        self._manifests[key] = comp
        if self._metrics is not None:
            self._metrics.component_loaded(comp.type)
        log.info("component loaded: %s (%s/%s)", comp.name, comp.type, comp.version)

    def manifest(self, category: str, name: str) -> Component | None:
        """The manifest the live component ``category``/``name`` was loaded from, if ours."""
        return self._manifests.get((category, name))

    async def apply(self, comp: Component) -> bool:
        """Load ``comp``, or replace the live component of its name; False if unchanged.

        The new instance is initialised before anything is swapped: on failure
        (:class:`ComponentLoadError`) the old one stays in place and serves on.
        """
        key = self._key(comp)
        if self._manifests.get(key) == comp:
            return False
        live = await self._create(comp)
        old = self._store.get(*key)
        self._store.add(live)
        self._manifests[key] = comp
        if old is None:
            log.info("component loaded: %s (%s/%s)", comp.name, comp.type, comp.version)
        else:
            # Calls already holding the old instance may fail as it closes; new calls see the
            # new one. Stores are not drained first: a reload is an operator's deliberate act.
            await _close_quietly(old.instance)
            log.info("component reloaded: %s (%s/%s)", comp.name, comp.type, comp.version)
        return True

    async def remove(self, category: str, name: str) -> bool:
        """Unload and close the component ``category``/``name``; False if none was loaded."""
        self._manifests.pop((category, name), None)
        old = self._store.remove(category, name)
        if old is None:
            return False
        await _close_quietly(old.instance)
        log.info("component unloaded: %s (%s)", name, old.type)
        return True

    async def close_all(self) -> None:
        """Close every component this processor owns, in reverse load order."""
        for key in reversed(list(self._manifests)):
            del self._manifests[key]
            live = self._store.get(*key)
            if live is not None:
                await _close_quietly(live.instance)

    async def _create(self, comp: Component) -> LiveComponent:
        """A new, initialised instance of ``comp``; not yet in the store."""
        try:
            cls = self._registry.resolve(comp.type, comp.version)
        except (UnknownComponentError, MissingDriverError) as exc:
            raise ComponentLoadError(comp, "spec.type", str(exc)) from exc
        props = await self._properties(comp)
        instance = cls()
        meta = ComponentMetadata(
            name=comp.name,
            type=comp.type,
            version=comp.version,
            properties=props,
            app_id=self._app_id,
            namespace=self._namespace,
        )
        try:
            await asyncio.wait_for(instance.init(meta), timeout=comp.init_timeout)
        except MetadataError as exc:
            await _close_quietly(instance)
            raise ComponentLoadError(comp, f"spec.metadata.{exc.field}", exc.problem) from exc
        except TimeoutError as exc:
            await _close_quietly(instance)
            raise ComponentLoadError(
                comp, "spec.initTimeout", f"init did not finish within {comp.init_timeout:g}s"
            ) from exc
        except (ComponentError, OSError) as exc:
            await _close_quietly(instance)
            raise ComponentLoadError(comp, "", f"init failed: {exc}") from exc
        except asyncio.CancelledError:  # the sidecar stopped during a reload
            await _close_quietly(instance)
            raise
        return LiveComponent(
            name=comp.name,
            type=comp.type,
            version=comp.version,
            category=self._registry.category(comp.type),
            instance=instance,
            properties=props,
        )


async def _close_quietly(instance: object) -> None:
    close = getattr(instance, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception:  # a failing close must not hide the error that got us here
        log.exception("error while closing component")
