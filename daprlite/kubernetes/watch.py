"""Watching the cluster's Components, and reloading them while the sidecar runs.

After start-up (``--mode kubernetes``), :class:`ObjectWatch` keeps one watch
open on the namespace's Components, from the resourceVersion of the start-up
list. Each stream ends now and then (``timeoutSeconds``, a restarted API
server, a network error); the next one resumes from the last resourceVersion
seen, so no change is missed or applied twice. When the server no longer has
that version (410 Gone, as an HTTP status or as an ``ERROR`` event), the watch
lists again and reconciles against the fresh list before watching from it.

:class:`ComponentReloader` turns the events into changes of the live
components through the processor (``runtime.processor``): a new or changed
Component in scope is initialised and swapped in, a deleted one (or one whose
``scopes`` no longer name this app) is closed. A component that fails to
initialise leaves the old one serving. Components the sidecar holds on to —
a pub/sub with subscriptions, an input binding that is reading, middleware in a
pipeline, name resolution — are not swapped: the log says a restart applies them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi

from daprlite.config.resources import Component, ResourceError
from daprlite.kubernetes.client import api_error_text
from daprlite.kubernetes.resources import COMPONENTS, GROUP, ClusterResources, Kind, component_from

log = logging.getLogger("daprlite.kubernetes")

WATCH_SECONDS = 300  # the server ends each stream after this; the next resumes from there
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0
# A stream that ends normally sooner than this (a proxy answering 200 with an empty body) is
# reopened only after this many seconds, so it cannot become a hot loop.
MIN_STREAM_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED or DELETED
    object: Mapping[str, object]


class _Gone(Exception):
    """The resourceVersion to resume from is older than the server keeps (410)."""


class _WatchFailed(Exception):
    """The watch request was refused, or its stream held something unreadable."""


def _resource_version(obj: Mapping[str, object]) -> str:
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(value) if value else ""


# One watch event can be large (a resource with a big last-applied annotation);
# aiohttp's readline() stops at 128 KiB, so lines are split here, up to this size.
MAX_EVENT_BYTES = 8 * 1024 * 1024


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The stream's newline-terminated lines (the last one may lack its newline)."""
    buffer = b""
    async for chunk in content.iter_any():
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1 :]
            if len(line) > MAX_EVENT_BYTES:
                break
            yield line
        if len(buffer) > MAX_EVENT_BYTES or end > MAX_EVENT_BYTES:
            # Too large to take in: skip it, and let a fresh list bring the current state.
            raise _Gone()
    if buffer:
        yield buffer


class ResumableWatch:
    """List-then-watch of one collection, resumed on resourceVersion; :meth:`_open` says which.

    :class:`ObjectWatch` watches a custom resource kind in one namespace; the
    operator (``daprlite.operator``) subclasses it for workloads in all namespaces.
    """

    def __init__(self, what: str, watch_seconds: int = WATCH_SECONDS) -> None:
        self._watch_seconds = watch_seconds
        self.resource_version = ""
        self.what = what

    async def _open(
        self, resource_version: str, timeout_seconds: int, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """Send one watch request (with bookmarks, content not preloaded); the raw response."""
        raise NotImplementedError

    async def _stream(self) -> AsyncIterator[WatchEvent]:
        """One watch request from :attr:`resource_version`; ends when the server ends it."""
        response = await self._open(
            self.resource_version,
            self._watch_seconds,
            # No total limit; a silent stream longer than the server's own timeout is dead.
            aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._watch_seconds + 30),
        )
        try:
            if response.status == 410:
                raise _Gone()
            if response.status != 200:
                body = await response.read()
                raise _WatchFailed(f"HTTP {response.status}: {_status_message(body)}")
            async for line in _lines(response.content):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    raise _WatchFailed("the watch stream held a line that is not JSON") from None
                event_type, obj = doc.get("type"), doc.get("object")
                if not isinstance(obj, Mapping):
                    raise _WatchFailed(f"watch event {event_type!r} holds no object")
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise _WatchFailed(f"HTTP {obj.get('code')}: {obj.get('message', '')}")
                version = _resource_version(obj)
                if event_type != "BOOKMARK":
                    yield WatchEvent(str(event_type), obj)
                if version:
                    self.resource_version = version
        finally:
            response.close()  # mid-stream: the connection cannot be reused

    async def run(
        self,
        on_event: Callable[[WatchEvent], Awaitable[None]],
        on_relist: Callable[[list[Mapping[str, object]]], Awaitable[None]],
        lister: Callable[[], Awaitable[tuple[list[Mapping[str, object]], str]]],
    ) -> None:
        """Watch forever from :attr:`resource_version` (set it from the start-up list)."""
        delay = _BACKOFF_FIRST
        relist = not self.resource_version
        while True:
            try:
                if relist:
                    objects, self.resource_version = await lister()
                    relist = False
                    await _guarded(on_relist(objects), f"reconciling {self.what}")
                started = asyncio.get_running_loop().time()
                async for event in self._stream():
                    delay = _BACKOFF_FIRST
                    await _guarded(on_event(event), f"applying a {event.type} event")
                delay = _BACKOFF_FIRST
                log.debug("watch of %s ended; resuming from %s", self.what, self.resource_version)
                if asyncio.get_running_loop().time() - started < MIN_STREAM_SECONDS:
                    await asyncio.sleep(MIN_STREAM_SECONDS)
            except _Gone:
                log.info(
                    "watch of %s: resourceVersion %s is gone from the server; listing again",
                    self.what,
                    self.resource_version,
                )
                relist = True
            except Exception as exc:  # refused, unreachable, unreadable: retry with backoff
                log.warning(
                    "watch of %s failed (%s); retrying in %gs",
                    self.what,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)


class ObjectWatch(ResumableWatch):
    """List-then-watch of one custom resource kind in one namespace, resumed on resourceVersion."""

    def __init__(
        self,
        client: ApiClient,
        namespace: str,
        kind: Kind,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        super().__init__(f"{kind.plural}.{GROUP} in namespace {namespace}", watch_seconds)
        self._api = CustomObjectsApi(client)
        self._namespace = namespace
        self._kind = kind

    async def _open(
        self, resource_version: str, timeout_seconds: int, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._api.list_namespaced_custom_object(
            GROUP,
            self._kind.version,
            self._namespace,
            self._kind.plural,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=request_timeout,
        )
        return response


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _WatchFailed):
        return str(exc)
    return api_error_text(exc)


def _status_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""


async def _guarded(step: Awaitable[None], what: str) -> None:
    """Run one reconciliation step; a bug in it is logged, and the watch goes on."""
    try:
        await step
    except Exception:
        log.exception("error while %s", what)


class ComponentTarget(Protocol):
    """What the reloader changes: the sidecar's component processor."""

    def manifest(self, category: str, name: str) -> Component | None: ...

    async def apply(self, comp: Component) -> bool: ...

    async def remove(self, category: str, name: str) -> bool: ...


class ComponentReloader:
    """Applies Component watch events to the live components of one sidecar."""

    def __init__(
        self,
        cluster: ClusterResources,
        target: ComponentTarget,
        category_of: Callable[[str], str],
        pinned: Callable[[str, str], str],
        loaded: list[Component],
        from_files: set[str],
    ) -> None:
        """``pinned(category, name)`` says why a live component cannot be swapped, or ''.

        ``loaded`` are the cluster's Components taken at start-up; ``from_files``
        the names ``--resources-path`` declared, which the cluster cannot change.
        """
        self._cluster = cluster
        self._target = target
        self._category_of = category_of
        self._pinned = pinned
        self._declared: dict[str, Component] = {c.name: c for c in loaded}
        self._from_files = from_files
        self.applied = 0  # events that changed a live component (tests and logs read it)

    def _key(self, comp: Component) -> tuple[str, str]:
        return self._category_of(comp.type), comp.name

    async def on_event(self, event: WatchEvent) -> None:
        meta = event.object.get("metadata")
        name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
        if not name:
            return
        if name in self._from_files:
            log.warning(
                "Component %r changed in the cluster (%s) but a --resources-path file declares "
                "it; the file's stays",
                name,
                event.type,
            )
            return
        if event.type == "DELETED":
            await self._withdraw(name, "deleted from the cluster")
            return
        try:
            comp = component_from(event.object, self._cluster.namespace, self._cluster.app_id)
        except ResourceError as exc:
            log.error("Component %r in the cluster is invalid; the loaded one stays: %s", name, exc)
            return
        if comp is None:
            await self._withdraw(name, f"no longer scoped to app {self._cluster.app_id}")
            return
        await self._upsert(comp)

    async def on_relist(self, objects: list[Mapping[str, object]]) -> None:
        names = set()
        for obj in objects:
            event = WatchEvent("MODIFIED", obj)
            meta = obj.get("metadata")
            if isinstance(meta, Mapping):
                names.add(str(meta.get("name", "")))
            await self.on_event(event)
        for name in [n for n in self._declared if n not in names]:
            await self._withdraw(name, "gone from the cluster")

    async def _upsert(self, comp: Component) -> None:
        old = self._declared.get(comp.name)
        if old is not None and self._key(old) != self._key(comp):
            # A new category is a different component: take the old one out first.
            await self._withdraw(comp.name, f"its type changed to {comp.type}")
            old = None
        category, name = self._key(comp)
        live = self._target.manifest(category, name)
        if live == comp:
            self._declared[name] = comp
            return
        if live is not None:
            reason = self._pinned(category, name)
            if reason:
                log.warning(
                    "Component %r changed in the cluster, but %s: restart the sidecar to apply it",
                    name,
                    reason,
                )
                self._declared[name] = comp
                return
        try:
            changed = await self._target.apply(comp)
        except Exception as exc:  # ComponentLoadError, or a component's own failure
            what = "the loaded one stays" if live is not None else "it is not loaded"
            log.error("Component %r from the cluster failed to load; %s: %s", name, what, exc)
            self._declared[name] = comp
            return
        self._declared[name] = comp
        if changed:
            self.applied += 1

    async def _withdraw(self, name: str, why: str) -> None:
        comp = self._declared.pop(name, None)
        if comp is None:
            return
        category, _ = self._key(comp)
        if self._target.manifest(category, name) is None:
            return
        reason = self._pinned(category, name)
        if reason:
            log.warning(
                "Component %r was %s, but %s: it stays loaded until the sidecar restarts",
                name,
                why,
                reason,
            )
            return
        if await self._target.remove(category, name):
            log.info("Component %r unloaded: %s", name, why)
            self.applied += 1


async def watch_components(
    cluster: ClusterResources, reloader: ComponentReloader, resource_version: str
) -> None:
    """The watch task of ``--mode kubernetes``: runs until cancelled."""
    watch = ObjectWatch(cluster.client, cluster.namespace, COMPONENTS)
    watch.resource_version = resource_version

    async def lister() -> tuple[list[Mapping[str, object]], str]:
        return await cluster.list_objects(COMPONENTS)

    await watch.run(reloader.on_event, reloader.on_relist, lister)
