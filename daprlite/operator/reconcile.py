"""The operator's control loop: workload events in, headless Services created, patched, deleted.

The workload watches (``operator.cluster``) feed :meth:`Reconciler.on_event`
and :meth:`Reconciler.on_relist`, which only update the cached workloads and
queue their keys. One worker (:meth:`Reconciler.run`) takes keys off the queue
and makes the cluster match :func:`~daprlite.operator.desired.desired_service`
for the workload as it is *now* (level-triggered: ten events for one workload
cost one reconciliation, and a missed event is repaired by the next). A
failed API call puts the key back after a growing delay. After the first full
list of every kind (and after each re-list), a sweep removes managed Services
whose workload is gone — the garbage collection of a fresh start.

A Service without the label ``app.kubernetes.io/managed-by: daprlite-operator``
is never changed or deleted, whatever its name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from daprlite.kubernetes.watch import WatchEvent
from daprlite.operator.cluster import APIError, Cluster, Object
from daprlite.operator.desired import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    WORKLOAD_KINDS,
    DesiredService,
    WorkloadError,
    WorkloadKey,
    WorkloadKind,
    desired_service,
    is_headless,
    is_managed,
    owner_of,
    service_patch,
)

log = logging.getLogger("daprlite.operator")

RETRY_FIRST, RETRY_MAX = 0.5, 30.0
_SWEEP = None  # the queue item that asks for a sweep of every managed Service
QueueItem = WorkloadKey | None


def _meta(obj: Mapping[str, object]) -> Mapping[str, object]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name(obj: Mapping[str, object]) -> str:
    return str(_meta(obj).get("name", ""))


def _namespace(obj: Mapping[str, object]) -> str:
    return str(_meta(obj).get("namespace", ""))


class Reconciler:
    """Keeps one headless Service per enabled workload; see the module docstring."""

    def __init__(self, cluster: Cluster, kinds: Iterable[WorkloadKind] = WORKLOAD_KINDS) -> None:
        self._cluster = cluster
        self._kinds = frozenset(kinds)
        self._workloads: dict[WorkloadKey, Object] = {}
        self._listed: set[WorkloadKind] = set()
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self._queued: set[QueueItem] = set()
        self._delays: dict[QueueItem, float] = {}
        self._timers: dict[QueueItem, asyncio.TimerHandle] = {}
        self.ready = asyncio.Event()  # set once every kind was listed

    # -- what the watches call -------------------------------------------------------------
    def handlers(
        self, kind: WorkloadKind
    ) -> tuple[
        Callable[[WatchEvent], Awaitable[None]],
        Callable[[list[Mapping[str, object]]], Awaitable[None]],
    ]:
        """``(on_event, on_relist)`` for the watch of ``kind``."""

        async def on_event(event: WatchEvent) -> None:
            self.on_event(kind, event)

        async def on_relist(objects: list[Mapping[str, object]]) -> None:
            self.on_relist(kind, objects)

        return on_event, on_relist

    def on_event(self, kind: WorkloadKind, event: WatchEvent) -> None:
        key = WorkloadKey(kind, _namespace(event.object), _name(event.object))
        if event.type == "DELETED":
            self._workloads.pop(key, None)
        else:
            self._workloads[key] = event.object
        self._enqueue(key)

    def on_relist(self, kind: WorkloadKind, objects: list[Mapping[str, object]]) -> None:
        fresh = {WorkloadKey(kind, _namespace(o), _name(o)): o for o in objects}
        gone = [k for k in self._workloads if k.kind == kind and k not in fresh]
        for key in gone:  # deleted while no watch was open
            del self._workloads[key]
        self._workloads.update(fresh)
        for key in [*gone, *fresh]:
            self._enqueue(key)
        self._listed.add(kind)
        if self._listed >= self._kinds:
            self._enqueue(_SWEEP)
            if not self.ready.is_set():
                log.info("listed %d workloads; reconciling their Services", len(self._workloads))
                self.ready.set()

    def resync(self) -> None:
        """Reconcile every known workload and sweep again (repairs Services changed by hand)."""
        if self._listed >= self._kinds:
            for key in list(self._workloads):
                self._enqueue(key)
            self._enqueue(_SWEEP)

    # -- the queue -------------------------------------------------------------------------
    def _enqueue(self, item: QueueItem) -> None:
        timer = self._timers.pop(item, None)
        if timer is not None:
            timer.cancel()
        if item not in self._queued:
            self._queued.add(item)
            self._queue.put_nowait(item)

    def _retry_later(self, item: QueueItem) -> float:
        delay = self._delays.get(item, RETRY_FIRST)
        self._delays[item] = min(delay * 2, RETRY_MAX)
        old = self._timers.pop(item, None)
        if old is not None:
            old.cancel()
        self._timers[item] = asyncio.get_running_loop().call_later(delay, self._enqueue, item)
        return delay

    def idle(self) -> bool:
        """Nothing queued and no retry pending (tests and logs use it)."""
        return not self._queued and not self._timers

    async def run(self) -> None:
        """The worker: reconciles queued keys one at a time until cancelled."""
        try:
            while True:
                item = await self._queue.get()
                self._queued.discard(item)
                what = "sweeping managed Services" if item is None else f"reconciling {item}"
                try:
                    if item is None:
                        await self._sweep()
                    else:
                        await self._reconcile(item)
                except APIError as exc:
                    delay = self._retry_later(item)
                    log.warning("%s failed (%s); retrying in %gs", what, exc, delay)
                except Exception:  # a bug: log it, retry later, keep the loop alive
                    delay = self._retry_later(item)
                    log.exception("error while %s; retrying in %gs", what, delay)
                else:
                    self._delays.pop(item, None)
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    # -- reconciliation --------------------------------------------------------------------
    def _desired(self, key: WorkloadKey) -> DesiredService | None:
        """What ``key`` should have; raises WorkloadError for a malformed workload."""
        workload = self._workloads.get(key)
        return None if workload is None else desired_service(key.kind, workload)

    def _claims(self, key: WorkloadKey, service_name: str) -> bool:
        try:
            desired = self._desired(key)
        except WorkloadError:
            return False
        return desired is not None and desired.name == service_name

    async def _reconcile(self, key: WorkloadKey) -> None:
        try:
            desired = self._desired(key)
        except WorkloadError as exc:
            log.error("%s: no Service change (the injector refuses its pods too): %s", key, exc)
            return
        managed = await self._cluster.list_managed_services(key.namespace)
        for service in managed:
            if owner_of(service) != key:
                continue
            name = _name(service)
            if desired is None and key not in self._workloads:
                why = "it is deleted"
            elif desired is None:
                why = "it no longer asks for a sidecar"
            elif name != desired.name:
                why = f"its app id is now {desired.app_id!r}"
            else:
                continue
            await self._delete(service, f"{key}: {why}")
        if desired is not None:
            await self._ensure(desired)

    async def _ensure(self, desired: DesiredService) -> None:
        where = f"{desired.namespace}/{desired.name}"
        existing = await self._cluster.get_service(desired.namespace, desired.name)
        if existing is None:
            await self._cluster.create_service(desired.namespace, desired.manifest())
            log.info("created Service %s for %s (app id %r)", where, desired.owner, desired.app_id)
            return
        if not is_managed(existing):
            log.warning(
                "Service %s exists without the label %s=%s, so it is not the operator's to "
                "change: app id %r of %s resolves to whatever it selects",
                where,
                MANAGED_BY_LABEL,
                MANAGED_BY,
                desired.app_id,
                desired.owner,
            )
            return
        holder = owner_of(existing)
        if holder is not None and holder != desired.owner and self._claims(holder, desired.name):
            log.warning(
                "app id %r in namespace %s is used by both %s and %s; Service %s stays with %s",
                desired.app_id,
                desired.namespace,
                holder,
                desired.owner,
                where,
                holder,
            )
            return
        if not is_headless(existing):  # a cluster IP cannot be removed in place
            await self._cluster.delete_service(desired.namespace, desired.name)
            await self._cluster.create_service(desired.namespace, desired.manifest())
            log.info("recreated Service %s as headless for %s", where, desired.owner)
            return
        patch = service_patch(desired, existing)
        if patch is not None:
            await self._cluster.patch_service(desired.namespace, desired.name, patch)
            log.info(
                "updated Service %s for %s (%s)", where, desired.owner, ", ".join(_fields(patch))
            )

    async def _delete(self, service: Object, why: str) -> None:
        if not is_managed(service):  # never, whatever the caller thought
            return
        namespace, name = _namespace(service), _name(service)
        if await self._cluster.delete_service(namespace, name):
            log.info("deleted Service %s/%s: %s", namespace, name, why)
        # Another workload may use the same app id: it can have the name now.
        for key in list(self._workloads):
            if key.namespace == namespace and owner_of(service) != key and self._claims(key, name):
                self._enqueue(key)

    async def _sweep(self) -> None:
        """Remove managed Services whose workload is gone; reconcile the owners of the rest."""
        for service in await self._cluster.list_managed_services():
            owner = owner_of(service)
            if owner is None:
                await self._delete(service, "it names no Deployment or StatefulSet as its owner")
            elif owner not in self._workloads:
                await self._delete(service, f"{owner} no longer exists")
            else:
                self._enqueue(owner)


def _fields(patch: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for section, body in patch.items():
        if isinstance(body, Mapping):
            out.extend(f"{section}.{k}" for k in body)
    return out
