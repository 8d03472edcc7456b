"""The operator's control loop: workload events in, headless Services created, patched, deleted.

The workload watches (``operator.cluster``) feed :meth:`Reconciler.on_event`
and :meth:`Reconciler.on_relist`, which only update the cached
:class:`~daprlite.operator.desired.WorkloadState` of each workload (never the
whole object) and queue the keys that may need work. One worker
(:meth:`Reconciler.run`) takes keys off the queue and makes the cluster match
the workload's desired Service as it is *now* (level-triggered: ten events
for one workload cost one reconciliation, and a missed event is repaired by
the next). A failed API call puts the key back after a growing delay. After
the first full list of every kind (and after each re-list and resync), a
sweep lists the managed Services: it removes those whose workload is gone —
the garbage collection of a fresh start — and refills the index of which
workload owns which Service, which the worker keeps current with its own
creates and deletes. With that index, a workload that wants no sidecar and
owns no Service costs no API call, however often its status changes.

A Service without the label ``app.kubernetes.io/managed-by: daprlite-operator``
is never changed or deleted, whatever its name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from daprlite.kubernetes.watch import WatchEvent
from daprlite.operator.cluster import APIError, AttemptReport, Cluster, Object
from daprlite.operator.desired import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    WORKLOAD_KINDS,
    DesiredService,
    WorkloadKey,
    WorkloadKind,
    WorkloadState,
    is_headless,
    is_managed,
    owner_of,
    service_patch,
    workload_state,
)

log = logging.getLogger("daprlite.operator")

RETRY_FIRST, RETRY_MAX = 0.5, 30.0
_SWEEP = None  # the queue item that asks for a sweep of every managed Service
QueueItem = WorkloadKey | None
ServiceKey = tuple[str, str]  # (namespace, name)
WatchHandlers = tuple[
    Callable[[WatchEvent], Awaitable[None]],
    Callable[[list[Mapping[str, object]]], Awaitable[None]],
    Callable[[], Awaitable[tuple[list[Mapping[str, object]], str]]],
]


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
        self._workloads: dict[WorkloadKey, WorkloadState] = {}
        self._fresh: dict[WorkloadKind, list[WorkloadState]] = {}  # listed, not applied yet
        # The managed Services known to exist, both ways: Service -> owner, owner -> Services.
        self._owner_of: dict[ServiceKey, WorkloadKey] = {}
        self._owned: dict[WorkloadKey, set[str]] = {}
        self._listed: set[WorkloadKind] = set()
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        self._queued: set[QueueItem] = set()
        self._delays: dict[QueueItem, float] = {}
        self._timers: dict[QueueItem, asyncio.TimerHandle] = {}
        self.ready = asyncio.Event()  # set once every kind was listed

    # -- what the watches call -------------------------------------------------------------
    def handlers(
        self, kind: WorkloadKind, on_attempt: AttemptReport | None = None
    ) -> WatchHandlers:
        """``(on_event, on_relist, lister)`` for the watch of ``kind``.

        The lister keeps only each workload's state, so it hands the watch an empty
        list; ``on_relist`` then applies the states it kept. ``on_attempt`` hears
        whether each list succeeded.
        """

        async def on_event(event: WatchEvent) -> None:
            self.on_event(kind, event)

        async def on_relist(_: list[Mapping[str, object]]) -> None:
            self.on_relist(kind, self._fresh.pop(kind, []))

        async def lister() -> tuple[list[Mapping[str, object]], str]:
            try:
                states, version = await self._cluster.list_workloads(kind)
            except Exception:
                if on_attempt is not None:
                    on_attempt(kind, False)
                raise
            if on_attempt is not None:
                on_attempt(kind, True)
            self._fresh[kind] = states
            return [], version

        return on_event, on_relist, lister

    def on_event(self, kind: WorkloadKind, event: WatchEvent) -> None:
        key = WorkloadKey(kind, _namespace(event.object), _name(event.object))
        if event.type == "DELETED":
            old = self._workloads.pop(key, None)
            if (old is not None and old.desired is not None) or key in self._owned:
                self._enqueue(key)
            return
        state = workload_state(kind, event.object)
        old = self._workloads.get(key)
        self._workloads[key] = state
        if old is not None and (old.desired, old.error) == (state.desired, state.error):
            return  # a status or scale change: the Service stays as it is
        if self._has_work(key):
            self._enqueue(key)

    def on_relist(self, kind: WorkloadKind, states: Iterable[WorkloadState]) -> None:
        fresh = {s.key: s for s in states}
        gone = [k for k in self._workloads if k.kind == kind and k not in fresh]
        for key in gone:  # deleted while no watch was open
            del self._workloads[key]
            self._enqueue(key)
        for key, state in fresh.items():
            old = self._workloads.get(key)
            self._workloads[key] = state
            changed = old is None or old.resource_version != state.resource_version
            if changed and self._has_work(key):
                self._enqueue(key)
        self._listed.add(kind)
        if self._listed >= self._kinds:
            self._enqueue(_SWEEP)
            if not self.ready.is_set():
                log.info("listed %d workloads; reconciling their Services", len(self._workloads))
                self.ready.set()

    def resync(self) -> None:
        """Sweep, and reconcile every workload with a Service (repairs Services changed by hand)."""
        if self._listed >= self._kinds:
            self._enqueue(_SWEEP)
            for key in list(self._workloads):
                if self._has_work(key):
                    self._enqueue(key)

    def _has_work(self, key: WorkloadKey) -> bool:
        """Whether ``key`` wants a Service, is malformed, or owns one (else: nothing to do)."""
        state = self._workloads.get(key)
        wants = state is not None and (state.desired is not None or bool(state.error))
        return wants or key in self._owned

    # -- the index of managed Services -------------------------------------------------------
    def _own(self, owner: WorkloadKey, namespace: str, name: str) -> None:
        self._disown(namespace, name)
        self._owner_of[(namespace, name)] = owner
        self._owned.setdefault(owner, set()).add(name)

    def _disown(self, namespace: str, name: str) -> None:
        owner = self._owner_of.pop((namespace, name), None)
        names = self._owned.get(owner) if owner is not None else None
        if owner is not None and names is not None:
            names.discard(name)
            if not names:
                del self._owned[owner]

    def owned(self) -> dict[WorkloadKey, frozenset[str]]:
        """A copy of the index: each workload and the managed Services it owns."""
        return {k: frozenset(v) for k, v in self._owned.items()}

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
    def _claims(self, key: WorkloadKey, service_name: str) -> bool:
        state = self._workloads.get(key)
        return state is not None and state.wants(service_name)

    async def _reconcile(self, key: WorkloadKey) -> None:
        state = self._workloads.get(key)
        if state is not None and state.error:
            log.error(
                "%s: no Service change (the injector refuses its pods too): %s", key, state.error
            )
            return
        desired = state.desired if state is not None else None
        if desired is None and key not in self._owned:
            return  # nothing wanted and nothing owned: no API call
        owned = sorted(self._owned.get(key, ()))
        for name in owned:
            if desired is not None and name == desired.name:
                continue
            if state is None:
                why = "it is deleted"
            elif desired is None:
                why = "it no longer asks for a sidecar"
            else:
                why = f"its app id is now {desired.app_id!r}"
            await self._delete_owned(key, name, f"{key}: {why}")
        if desired is not None:
            await self._ensure(desired)

    async def _ensure(self, desired: DesiredService) -> None:
        namespace, name = desired.namespace, desired.name
        where = f"{namespace}/{name}"
        existing = await self._cluster.get_service(namespace, name)
        if existing is None:
            await self._cluster.create_service(namespace, desired.manifest())
            self._own(desired.owner, namespace, name)
            log.info("created Service %s for %s (app id %r)", where, desired.owner, desired.app_id)
            return
        if not is_managed(existing):
            self._disown(namespace, name)
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
        if holder is not None and holder != desired.owner and self._claims(holder, name):
            self._own(holder, namespace, name)
            log.warning(
                "app id %r in namespace %s is used by both %s and %s; Service %s stays with %s",
                desired.app_id,
                namespace,
                holder,
                desired.owner,
                where,
                holder,
            )
            return
        if not is_headless(existing):  # a cluster IP cannot be removed in place
            await self._cluster.delete_service(namespace, name)
            self._disown(namespace, name)
            await self._cluster.create_service(namespace, desired.manifest())
            self._own(desired.owner, namespace, name)
            log.info("recreated Service %s as headless for %s", where, desired.owner)
            return
        patch = service_patch(desired, existing)
        if patch is not None:
            await self._cluster.patch_service(namespace, name, patch)
            log.info(
                "updated Service %s for %s (%s)", where, desired.owner, ", ".join(_fields(patch))
            )
        self._own(desired.owner, namespace, name)

    async def _delete_owned(self, key: WorkloadKey, name: str, why: str) -> None:
        """Delete the Service the index says ``key`` owns, after checking that it still does."""
        service = await self._cluster.get_service(key.namespace, name)
        if service is None:
            self._disown(key.namespace, name)
            return
        owner = owner_of(service)
        if not is_managed(service) or owner != key:  # changed meanwhile: no longer ``key``'s
            self._disown(key.namespace, name)
            if is_managed(service) and owner is not None and owner in self._workloads:
                self._own(owner, key.namespace, name)
                self._enqueue(owner)
            return
        await self._delete(service, why)

    async def _delete(self, service: Object, why: str) -> None:
        if not is_managed(service):  # never, whatever the caller thought
            return
        namespace, name = _namespace(service), _name(service)
        if await self._cluster.delete_service(namespace, name):
            log.info("deleted Service %s/%s: %s", namespace, name, why)
        self._disown(namespace, name)
        # Another workload may use the same app id: it can have the name now.
        holder = owner_of(service)
        for key, state in self._workloads.items():
            if key.namespace == namespace and key != holder and state.wants(name):
                self._enqueue(key)

    async def _sweep(self) -> None:
        """Remove managed Services whose workload is gone; index and reconcile the rest."""
        seen: set[ServiceKey] = set()
        for service in await self._cluster.list_managed_services():
            owner = owner_of(service)
            if owner is None:
                await self._delete(service, "it names no Deployment or StatefulSet as its owner")
            elif owner not in self._workloads:
                await self._delete(service, f"{owner} no longer exists")
            else:
                namespace, name = _namespace(service), _name(service)
                self._own(owner, namespace, name)
                seen.add((namespace, name))
                self._enqueue(owner)
        for namespace, name in [k for k in self._owner_of if k not in seen]:
            self._disown(namespace, name)  # deleted by someone else


def _fields(patch: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for section, body in patch.items():
        if isinstance(body, Mapping):
            out.extend(f"{section}.{k}" for k in body)
    return out
