"""The Component watch and reload of ``--mode kubernetes``, against the stand-in API server.

The watch runs against tests/k8sapi.py over HTTPS; the reloader changes a real
component store through the real processor and registry (in-memory and SQLite
state stores, which need no server).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from daprlite.components.errors import ComponentError
from daprlite.components.registry import Registry
from daprlite.components.state.api import GetRequest
from daprlite.components.state.sqlite import SQLiteStateStore
from daprlite.config.resources import Resources
from daprlite.kubernetes.client import api_client
from daprlite.kubernetes.resources import COMPONENTS, ClusterResources
from daprlite.kubernetes.watch import (
    ComponentReloader,
    ObjectWatch,
    ResumableWatch,
    WatchEvent,
    watch_components,
)
from daprlite.runtime.processor import ComponentProcessor
from daprlite.runtime.registry import ComponentStore
from tests.k8sapi import K8sAPI, component, running

NS = "team-w"
APP = "watcher"


@pytest.fixture
def api() -> Iterator[K8sAPI]:
    with running() as server:
        yield server


@pytest.fixture
async def cluster(api: K8sAPI, tmp_path: Path) -> AsyncIterator[ClusterResources]:
    client = await api_client(str(api.write_kubeconfig(tmp_path / "kubeconfig", NS)))
    try:
        yield ClusterResources(client, NS, APP)
    finally:
        await client.close()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _name_of(obj: Mapping[str, object]) -> str:
    meta = obj["metadata"]
    assert isinstance(meta, Mapping)
    return str(meta["name"])


def memory(name: str, scopes: list[str] | None = None, **meta: str) -> dict[str, object]:
    items: list[dict[str, object]] = [{"name": k, "value": v} for k, v in meta.items()]
    return component(name, NS, "state.in-memory", items, scopes=scopes)


# -- the watch itself -------------------------------------------------------------------
async def test_watch_delivers_each_change_once_in_order_and_resumes_after_an_outage(
    api: K8sAPI, cluster: ClusterResources
) -> None:
    seen: list[tuple[str, str, str]] = []

    async def on_event(event: WatchEvent) -> None:
        meta = event.object["metadata"]
        assert isinstance(meta, Mapping)
        seen.append((event.type, str(meta["name"]), str(meta["resourceVersion"])))

    async def nothing(objects: list[Mapping[str, object]]) -> None:
        raise AssertionError("no relist expected")

    _, start = await cluster.list_objects(COMPONENTS)
    watch = ObjectWatch(cluster.client, NS, COMPONENTS)
    watch.resource_version = start
    task = asyncio.create_task(
        watch.run(on_event, nothing, lambda: cluster.list_objects(COMPONENTS))
    )
    try:
        await eventually(lambda: api.open_watches() == 1, "the watch to open")
        api.put(memory("a"))
        api.put(memory("a", keyPrefix="none"))
        await eventually(lambda: len(seen) == 2, "two events")
        # The API server goes away; changes made meanwhile must arrive after it returns.
        api.refuse_watches()
        last = seen[-1][2]
        api.put(memory("b"))
        api.delete("components", NS, "a")
        api.refuse_watches(False)
        await eventually(lambda: len(seen) == 4, "the changes made during the outage")
        assert [(t, n) for t, n, _ in seen] == [
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("ADDED", "b"),
            ("DELETED", "a"),
        ]
        versions = [int(v) for _, _, v in seen]
        assert versions == sorted(versions)
        watches = [r for r in api.requests if "watch=" in r]
        assert f"resourceVersion={start}" in watches[0]
        assert any(f"resourceVersion={last}" in r for r in watches[1:])
        assert watch.resource_version == seen[-1][2]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_too_old_resource_version_lists_again_and_watches_from_the_new_list(
    api: K8sAPI, cluster: ClusterResources
) -> None:
    listed: list[list[str]] = []
    events: list[str] = []

    async def on_event(event: WatchEvent) -> None:
        events.append(f"{event.type} {_name_of(event.object)}")

    async def on_relist(objects: list[Mapping[str, object]]) -> None:
        listed.append(sorted(_name_of(o) for o in objects))

    api.put(memory("a"))
    _, start = await cluster.list_objects(COMPONENTS)
    watch = ObjectWatch(cluster.client, NS, COMPONENTS)
    watch.resource_version = start
    task = asyncio.create_task(
        watch.run(on_event, on_relist, lambda: cluster.list_objects(COMPONENTS))
    )
    try:
        await eventually(lambda: api.open_watches() == 1, "the watch to open")
        api.refuse_watches()
        api.put(memory("b"))
        api.delete("components", NS, "a")
        api.compact()  # the history the watch would resume from is gone: 410
        api.refuse_watches(False)
        await eventually(lambda: listed == [["b"]], "a relist holding only b")
        after_relist = api.resource_version
        await eventually(lambda: api.open_watches() == 1, "a new watch")
        api.put(memory("c"))
        await eventually(lambda: events == ["ADDED c"], "the event after the relist")
        watches = [r for r in api.requests if "watch=" in r]
        assert f"resourceVersion={after_relist}" in watches[-1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_large_events_arrive_and_an_oversized_one_makes_a_fresh_list(
    api: K8sAPI, cluster: ClusterResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond aiohttp's 128 KiB readline limit; past MAX_EVENT_BYTES a list replaces it."""
    import daprlite.kubernetes.watch as watch_module

    events: list[tuple[str, int]] = []
    listed: list[list[str]] = []

    async def on_event(event: WatchEvent) -> None:
        events.append((_name_of(event.object), len(json.dumps(event.object))))

    async def on_relist(objects: list[Mapping[str, object]]) -> None:
        listed.append(sorted(_name_of(o) for o in objects))

    _, start = await cluster.list_objects(COMPONENTS)
    watch = ObjectWatch(cluster.client, NS, COMPONENTS)
    watch.resource_version = start
    task = asyncio.create_task(
        watch.run(on_event, on_relist, lambda: cluster.list_objects(COMPONENTS))
    )
    try:
        await eventually(lambda: api.open_watches() == 1, "the watch to open")
        api.put(memory("big", note="x" * 300_000))
        await eventually(lambda: [n for n, _ in events] == ["big"], "the 300 KB event")
        assert events[0][1] > 300_000
        monkeypatch.setattr(watch_module, "MAX_EVENT_BYTES", 100_000)
        api.put(memory("huge", note="y" * 200_000))
        await eventually(lambda: listed == [["big", "huge"]], "a relist instead of the event")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_refused_watch_is_retried_and_logged_without_the_token(
    api: K8sAPI, cluster: ClusterResources, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "daprlite.kubernetes")
    api.refuse_watches()
    watch = ObjectWatch(cluster.client, NS, COMPONENTS)
    watch.resource_version = str(api.resource_version)

    async def ignore(_: object) -> None:
        return None

    task = asyncio.create_task(watch.run(ignore, ignore, lambda: cluster.list_objects(COMPONENTS)))
    try:
        await eventually(
            lambda: sum("watch=" in r for r in api.requests) >= 2, "a retried watch request"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "HTTP 503: the server is currently unable to handle the request" in caplog.text
    assert api.token not in caplog.text


class _EmptyStreamWatch(ResumableWatch):
    """Watches a proxy that answers every watch with 200 and an empty body."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__("the proxied watch")
        self._session, self._url = session, url
        self.resource_version = "7"

    async def _open(
        self, resource_version: str, timeout_seconds: int, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        return await self._session.get(self._url, timeout=request_timeout)


async def test_a_stream_that_ends_at_once_is_not_reopened_in_a_hot_loop() -> None:
    opened: list[float] = []

    async def empty(request: web.Request) -> web.Response:
        opened.append(asyncio.get_running_loop().time())
        return web.Response(status=200, body=b"")

    app = web.Application()
    app.router.add_get("/watch", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    async def ignore(_: object) -> None:
        return None

    async def never_listed() -> tuple[list[Mapping[str, object]], str]:
        raise AssertionError("an empty stream is not a reason to list again")

    try:
        async with aiohttp.ClientSession() as session:
            watch = _EmptyStreamWatch(session, f"http://127.0.0.1:{port}/watch")
            task = asyncio.create_task(watch.run(ignore, ignore, never_listed))
            await asyncio.sleep(2.5)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
    # Without the pause, thousands of requests; with it, one about every second.
    assert 2 <= len(opened) <= 4, len(opened)
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert all(gap >= 0.9 for gap in gaps), gaps


# -- reloading components ---------------------------------------------------------------
class Sidecarish:
    """A real store and processor, with the reloader wired as --mode kubernetes wires it."""

    def __init__(self, cluster: ClusterResources, held: dict[str, str] | None = None) -> None:
        self.registry = Registry()
        self.store = ComponentStore()
        self.processor = ComponentProcessor(self.registry, self.store, APP, NS)
        self.cluster = cluster
        self.held = held or {}
        self.stack = AsyncExitStack()

    async def start(self, from_files: set[str] | None = None) -> tuple[ComponentReloader, str]:
        resources = Resources()
        version = await self.cluster.load_into(resources, ())
        await self.processor.load_all(resources.components, self.stack)
        reloader = ComponentReloader(
            self.cluster,
            self.processor,
            self.registry.category,
            lambda category, name: self.held.get(name, ""),
            resources.components,
            from_files or set(),
        )
        return reloader, version

    def instance(self, name: str) -> object | None:
        live = self.store.get("state", name)
        return None if live is None else live.instance


@pytest.fixture
async def side(cluster: ClusterResources) -> AsyncIterator[Sidecarish]:
    s = Sidecarish(cluster)
    try:
        yield s
    finally:
        await s.stack.aclose()


async def test_changed_component_is_swapped_and_the_old_instance_closed(
    api: K8sAPI, side: Sidecarish, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    sqlite = [{"name": "connectionString", "value": str(first)}]
    api.put(component("store", NS, "state.sqlite", sqlite))
    reloader, version = await side.start()
    old = side.instance("store")
    assert old is not None and first.exists()
    task = asyncio.create_task(watch_components(side.cluster, reloader, version))
    try:
        api.put(
            component(
                "store", NS, "state.sqlite", [{"name": "connectionString", "value": str(second)}]
            )
        )
        await eventually(lambda: side.instance("store") is not old, "the swap")
        assert second.exists()
        live = side.store.get("state", "store")
        assert live is not None and live.properties["connectionString"] == str(second)
        assert isinstance(old, SQLiteStateStore)
        with pytest.raises(ComponentError, match="the store is closed"):
            await old.get(GetRequest("k"))
        new = side.instance("store")
        assert isinstance(new, SQLiteStateStore)
        assert await new.get(GetRequest("k")) is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_component_that_fails_to_init_leaves_the_old_one_serving(
    api: K8sAPI, side: Sidecarish, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    api.put(
        component(
            "store",
            NS,
            "state.sqlite",
            [{"name": "connectionString", "value": str(tmp_path / "s.db")}],
        )
    )
    reloader, _ = await side.start()
    old = side.instance("store")
    bad = component(
        "store",
        NS,
        "state.sqlite",
        [
            {"name": "connectionString", "value": str(tmp_path / "s.db")},
            {"name": "timeout", "value": "soon"},
        ],
    )
    await reloader.on_event(WatchEvent("MODIFIED", api.put(bad)))
    assert side.instance("store") is old
    assert "'store' from the cluster failed to load; the loaded one stays" in caplog.text
    assert "timeout" in caplog.text
    assert reloader.applied == 0


async def test_invalid_object_is_logged_and_changes_nothing(
    api: K8sAPI, side: Sidecarish, caplog: pytest.LogCaptureFixture
) -> None:
    api.put(memory("store"))
    reloader, _ = await side.start()
    old = side.instance("store")
    broken = memory("store")
    broken["spec"] = {"type": "no-category"}
    await reloader.on_event(WatchEvent("MODIFIED", api.put(broken)))
    assert side.instance("store") is old
    assert "spec.type" in caplog.text


async def test_added_deleted_and_rescoped_components_come_and_go(
    api: K8sAPI, side: Sidecarish
) -> None:
    api.put(memory("mine", scopes=[APP]))
    api.put(memory("theirs", scopes=["someone-else"]))
    reloader, _ = await side.start()
    assert side.instance("mine") is not None and side.instance("theirs") is None

    await reloader.on_event(
        WatchEvent("MODIFIED", api.put(memory("theirs", scopes=["someone-else", APP])))
    )
    assert side.instance("theirs") is not None

    await reloader.on_event(
        WatchEvent("MODIFIED", api.put(memory("mine", scopes=["someone-else"])))
    )
    assert side.instance("mine") is None

    await reloader.on_event(WatchEvent("ADDED", api.put(memory("new"))))
    assert side.instance("new") is not None
    gone = memory("new")
    api.delete("components", NS, "new")
    await reloader.on_event(WatchEvent("DELETED", gone))
    assert side.instance("new") is None
    assert reloader.applied == 4


async def test_an_unchanged_object_is_not_reloaded(api: K8sAPI, side: Sidecarish) -> None:
    api.put(memory("store", keyPrefix="name"))
    reloader, _ = await side.start()
    old = side.instance("store")
    # A relist (or a label change) delivers the same spec again.
    await reloader.on_event(WatchEvent("MODIFIED", api.put(memory("store", keyPrefix="name"))))
    assert side.instance("store") is old
    assert reloader.applied == 0


async def test_relist_unloads_what_disappeared(api: K8sAPI, side: Sidecarish) -> None:
    api.put(memory("keep"))
    api.put(memory("drop"))
    reloader, _ = await side.start()
    api.delete("components", NS, "drop")
    objects, _ = await side.cluster.list_objects(COMPONENTS)
    await reloader.on_relist(objects)
    assert side.instance("keep") is not None
    assert side.instance("drop") is None


async def test_held_component_is_not_swapped_and_the_log_asks_for_a_restart(
    api: K8sAPI, cluster: ClusterResources, caplog: pytest.LogCaptureFixture
) -> None:
    side = Sidecarish(cluster, held={"store": "subscriptions are running on it"})
    try:
        api.put(memory("store"))
        reloader, _ = await side.start()
        old = side.instance("store")
        await reloader.on_event(WatchEvent("MODIFIED", api.put(memory("store", keyPrefix="none"))))
        assert side.instance("store") is old
        assert "subscriptions are running on it: restart the sidecar to apply it" in caplog.text
        gone = memory("store")
        await reloader.on_event(WatchEvent("DELETED", gone))
        assert side.instance("store") is old
        assert "stays loaded until the sidecar restarts" in caplog.text
    finally:
        await side.stack.aclose()


async def test_a_name_declared_in_a_resources_file_is_not_changed_by_the_cluster(
    api: K8sAPI, side: Sidecarish, caplog: pytest.LogCaptureFixture
) -> None:
    api.put(memory("local"))
    reloader, _ = await side.start(from_files={"local"})
    old = side.instance("local")
    await reloader.on_event(WatchEvent("MODIFIED", api.put(memory("local", keyPrefix="none"))))
    await reloader.on_event(WatchEvent("DELETED", memory("local")))
    assert side.instance("local") is old
    assert "a --resources-path file declares it" in caplog.text


async def test_start_up_with_a_file_and_cluster_component_of_one_name_fails_naming_both(
    api: K8sAPI, cluster: ClusterResources
) -> None:
    from daprlite.config.resources import Component, ResourceError

    api.put(memory("statestore"))
    resources = Resources(
        components=[Component("statestore", "state.in-memory", "v1", (), "components/state.yaml")]
    )
    with pytest.raises(
        ResourceError, match=r"components\.daprlite\.io team-w/statestore.*components/state\.yaml"
    ):
        await cluster.load_into(resources, ())


async def test_missing_configuration_fails_start_up_naming_it(cluster: ClusterResources) -> None:
    from daprlite.kubernetes.resources import ClusterError

    with pytest.raises(
        ClusterError, match="Configuration 'appconfig' not found in namespace team-w"
    ):
        await cluster.load_into(Resources(), ("appconfig",))


async def test_start_up_takes_only_this_apps_resources_in_file_shapes(
    api: K8sAPI, cluster: ClusterResources
) -> None:
    def custom(kind: str, version: str, name: str, spec: dict[str, object], scopes: list[str]):
        return {
            "apiVersion": f"daprlite.io/{version}",
            "kind": kind,
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
            "scopes": scopes,
        }

    sub = {"pubsubname": "bus", "topic": "orders", "routes": {"default": "/orders"}}
    api.put(custom("Subscription", "v2alpha1", "mine", sub, [APP]))
    api.put(custom("Subscription", "v2alpha1", "theirs", sub, ["other"]))
    api.put(custom("Resiliency", "v1alpha1", "policy", {"policies": {}}, []))
    api.put(memory("mine", scopes=[APP]))
    api.put(memory("theirs", scopes=["other"]))
    api.put(component("elsewhere", "other-ns", "state.in-memory"))
    resources = Resources()
    await cluster.load_into(resources, ())
    assert [c.name for c in resources.components] == ["mine"]
    assert resources.components[0].source == "components.daprlite.io team-w/mine"
    assert [(s.name, s.api_version) for s in resources.subscriptions] == [
        ("mine", "daprlite.io/v2alpha1")
    ]
    assert [r.name for r in resources.resiliencies] == ["policy"]
    assert resources.configurations == []


async def test_invalid_component_in_scope_stops_start_up_unless_ignore_errors(
    api: K8sAPI, cluster: ClusterResources
) -> None:
    from daprlite.config.resources import ResourceError

    bad = memory("bad")
    bad["spec"] = {"type": "nodot"}
    api.put(bad)
    with pytest.raises(ResourceError, match=r"team-w/bad: Component 'bad': field 'spec.type'"):
        await cluster.load_into(Resources(), ())
    bad["spec"] = {"type": "nodot", "ignoreErrors": True}
    api.put(bad)
    resources = Resources()
    await cluster.load_into(resources, ())
    assert resources.components == []
