"""Name resolution: app id + namespace -> the callee sidecar's address.

``standalone`` reads real run-folder records written for real processes
(this test's own, and children it starts and stops), ``static`` a table in
the configuration, ``kubernetes`` a stub DNS server (dnslib) on a free UDP
port. The loader picks the resolver from ``spec.nameResolution``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from daprlite.components.errors import ComponentError, MetadataError, MissingDriverError
from daprlite.components.nameresolution import runfolder, standalone
from daprlite.components.nameresolution.api import (
    Address,
    AppNotFoundError,
    Resolver,
    ResolveRequest,
    SelfInfo,
)
from daprlite.components.nameresolution.kubernetes import KubernetesResolver
from daprlite.components.nameresolution.loader import open_resolver
from daprlite.components.nameresolution.standalone import StandaloneResolver
from daprlite.components.nameresolution.static import StaticResolver
from daprlite.components.registry import BUILTIN, Registry, UnknownComponentError
from daprlite.config.configuration import NameResolutionSpec
from tests.dnsstub import StubZone, stub_dns


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAPRLITE_HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path


def me(namespace: str = "") -> SelfInfo:
    return SelfInfo(
        app_id="caller",
        namespace=namespace,
        host="127.0.0.1",
        internal_port=1,
        grpc_port=2,
        http_port=3,
    )


def req(app_id: str, namespace: str = "") -> ResolveRequest:
    return ResolveRequest(app_id=app_id, namespace=namespace)


# ---------------------------------------------------------------- standalone


def record(
    app_id: str,
    *,
    pid: int | None = None,
    namespace: str = "",
    internal_port: int = 40002,
    grpc_port: int = 40001,
    host: str = "127.0.0.1",
    started_at: float | None = None,
    folder: Path | None = None,
) -> Path:
    instance = runfolder.Instance(
        app_id=app_id,
        namespace=namespace,
        host=host,
        http_port=40000,
        grpc_port=grpc_port,
        internal_port=internal_port,
        pid=os.getpid() if pid is None else pid,
        started_at=time.time() if started_at is None else started_at,
    )
    return runfolder.register(instance, folder)


@pytest.fixture
def spawn() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start idle child processes (stand-ins for other sidecars); all are stopped at the end."""
    children: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()


def stop(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()  # reaped: the pid no longer exists


async def standalone_resolver(
    configuration: Mapping[str, object] | None = None, namespace: str = ""
) -> StandaloneResolver:
    resolver = StandaloneResolver()
    await resolver.init(configuration or {}, me(namespace))
    return resolver


async def test_standalone_resolves_a_live_record_to_its_host_and_ports() -> None:
    record("orders", internal_port=41002, grpc_port=41001)
    resolver = await standalone_resolver()
    assert await resolver.resolve(req("orders")) == Address("127.0.0.1", 41002, 41001)


async def test_standalone_dials_a_wildcard_listener_on_loopback() -> None:
    record("orders", host="0.0.0.0")
    resolver = await standalone_resolver()
    assert (await resolver.resolve(req("orders"))).host == "127.0.0.1"


async def test_standalone_prunes_the_record_of_a_dead_process_and_reports_not_found(
    spawn: Callable[[], subprocess.Popen[bytes]], home: Path
) -> None:
    child = spawn()
    path = record("orders", pid=child.pid)
    stop(child)
    resolver = await standalone_resolver()
    with pytest.raises(AppNotFoundError) as info:
        await resolver.resolve(req("orders"))
    message = str(info.value)
    assert "'orders'" in message and "'default'" in message
    assert "no running sidecar is registered in" in message and str(home / "run") in message
    assert not path.exists()


async def test_standalone_treats_a_record_older_than_its_process_as_a_reused_pid() -> None:
    started = runfolder.process_start_time(os.getpid())
    assert started is not None, "the test needs /proc to know when a process started"
    path = record("orders", started_at=started - 3600)  # written by an earlier owner of the pid
    resolver = await standalone_resolver()
    with pytest.raises(AppNotFoundError):
        await resolver.resolve(req("orders"))
    assert not path.exists()


async def test_standalone_takes_live_instances_of_one_app_in_turn(
    spawn: Callable[[], subprocess.Popen[bytes]],
) -> None:
    for port in (41002, 42002, 43002):
        record("orders", pid=spawn().pid, internal_port=port)
    resolver = await standalone_resolver()
    ports = [(await resolver.resolve(req("orders"))).internal_port for _ in range(6)]
    assert sorted(ports[:3]) == [41002, 42002, 43002]
    assert ports[3:] == ports[:3]


async def test_standalone_empty_and_default_namespaces_are_the_same() -> None:
    record("orders", namespace="", internal_port=41002)
    record("billing", namespace="default", internal_port=42002)
    resolver = await standalone_resolver()
    assert (await resolver.resolve(req("orders", "default"))).internal_port == 41002
    assert (await resolver.resolve(req("billing", ""))).internal_port == 42002


async def test_standalone_finds_apps_in_the_requested_or_else_the_callers_namespace() -> None:
    record("orders", namespace="prod", internal_port=41002)
    in_default = await standalone_resolver()
    with pytest.raises(AppNotFoundError, match="'prod2'"):
        await in_default.resolve(req("orders", "prod2"))
    with pytest.raises(AppNotFoundError, match="'default'"):
        await in_default.resolve(req("orders"))
    assert (await in_default.resolve(req("orders", "prod"))).internal_port == 41002
    in_prod = await standalone_resolver(namespace="prod")
    assert (await in_prod.resolve(req("orders"))).internal_port == 41002


async def test_standalone_sees_a_newly_started_app_on_the_next_call() -> None:
    resolver = await standalone_resolver()
    record("orders", internal_port=41002)
    assert (await resolver.resolve(req("orders"))).internal_port == 41002
    record("billing", internal_port=42002)
    assert (await resolver.resolve(req("billing"))).internal_port == 42002


async def test_standalone_never_hands_out_a_dead_instance_and_finds_its_restart(
    spawn: Callable[[], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listings are trusted for a long time here, so only the liveness check can save us.
    monkeypatch.setattr(standalone, "RESCAN_AFTER", 3600.0)
    first = spawn()
    old = record("orders", pid=first.pid, internal_port=41002)
    resolver = await standalone_resolver()
    assert (await resolver.resolve(req("orders"))).internal_port == 41002
    stop(first)
    restarted = spawn()
    # The folder's mtime may not move when two writes fall in one clock tick: pretend so.
    before = os.stat(old.parent)
    record("orders", pid=restarted.pid, internal_port=45002)
    os.utime(old.parent, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (await resolver.resolve(req("orders"))).internal_port == 45002
    assert not old.exists()


async def test_standalone_caches_the_listing_until_forget_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(standalone, "RESCAN_AFTER", 3600.0)
    path = record("orders", internal_port=41002)
    resolver = await standalone_resolver()
    assert (await resolver.resolve(req("orders"))).internal_port == 41002
    # Rewritten in place, so the folder's mtime stays: the cached listing still answers.
    path.write_text(path.read_text().replace("41002", "45002"))
    assert (await resolver.resolve(req("orders"))).internal_port == 41002
    resolver.forget(req("orders"))
    assert (await resolver.resolve(req("orders"))).internal_port == 45002


async def test_standalone_reads_the_configured_folder(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    record("orders", folder=runfolder.default_folder(), internal_port=41002)
    record("orders", folder=other, internal_port=42002)
    resolver = await standalone_resolver({"Folder": str(other)})
    assert resolver.folder == other
    assert (await resolver.resolve(req("orders"))).internal_port == 42002
    with pytest.raises(AppNotFoundError, match=str(other)):
        await resolver.resolve(req("billing"))


@pytest.mark.parametrize(
    ("configuration", "field"),
    [({"folders": "/tmp"}, "folders"), ({"folder": ["a", "b"]}, "folder")],
)
async def test_standalone_rejects_bad_configuration_naming_the_key(
    configuration: Mapping[str, object], field: str
) -> None:
    with pytest.raises(MetadataError) as info:
        await standalone_resolver(configuration)
    assert info.value.field == field


# ---------------------------------------------------------------- static


async def static_resolver(
    apps: list[object], namespace: str = "", **extra: object
) -> StaticResolver:
    resolver = StaticResolver()
    await resolver.init({"apps": apps, **extra}, me(namespace))
    return resolver


async def test_static_resolves_rows_and_takes_several_rows_of_an_app_in_turn() -> None:
    resolver = await static_resolver(
        [
            {"appId": "orders", "host": "10.0.0.5", "internalPort": 50002, "grpcPort": 50001},
            {"appId": "orders", "host": "10.0.0.6", "internalPort": "50002"},
            {"appId": "billing", "host": "billing.internal", "internalPort": 6000},
        ]
    )
    picks = [await resolver.resolve(req("orders")) for _ in range(4)]
    assert picks == [
        Address("10.0.0.5", 50002, 50001),
        Address("10.0.0.6", 50002, 0),
        Address("10.0.0.5", 50002, 50001),
        Address("10.0.0.6", 50002, 0),
    ]
    assert await resolver.resolve(req("billing")) == Address("billing.internal", 6000, 0)


async def test_static_namespaces_default_to_default_and_to_the_callers() -> None:
    apps: list[object] = [
        {"appId": "orders", "host": "10.0.0.5", "internalPort": 1},
        {"appId": "orders", "namespace": "prod", "host": "10.0.1.5", "internalPort": 1},
    ]
    in_default = await static_resolver(apps)
    assert (await in_default.resolve(req("orders"))).host == "10.0.0.5"
    assert (await in_default.resolve(req("orders", "default"))).host == "10.0.0.5"
    assert (await in_default.resolve(req("orders", "prod"))).host == "10.0.1.5"
    in_prod = await static_resolver(apps, namespace="prod")
    assert (await in_prod.resolve(req("orders"))).host == "10.0.1.5"
    with pytest.raises(AppNotFoundError, match=r"'orders' in namespace 'test'.*static"):
        await in_prod.resolve(req("orders", "test"))


async def test_static_accepts_an_ipv6_host_in_brackets() -> None:
    resolver = await static_resolver([{"appId": "a", "host": "[::1]", "internalPort": 1}])
    assert (await resolver.resolve(req("a"))).host == "::1"


@pytest.mark.parametrize(
    ("configuration", "field", "words"),
    [
        ({}, "apps", "required"),
        ({"apps": []}, "apps", "required"),
        ({"apps": "orders"}, "apps", "required"),
        ({"apps": ["orders"]}, "apps[0]", "table"),
        ({"apps": [{"host": "h", "internalPort": 1}]}, "apps[0].appId", "required"),
        ({"apps": [{"appId": "a", "internalPort": 1}]}, "apps[0].host", "required"),
        ({"apps": [{"appId": "a", "host": "h"}]}, "apps[0].internalPort", "required"),
        (
            {"apps": [{"appId": "a", "host": "h", "internalPort": 1}, {"appId": "b"}]},
            "apps[1].host",
            "required",
        ),
        (
            {"apps": [{"appId": "a", "host": "h", "internalPort": "x"}]},
            "apps[0].internalPort",
            "integer",
        ),
        (
            {"apps": [{"appId": "a", "host": "h", "internalPort": 70000}]},
            "apps[0].internalPort",
            "between 1 and 65535",
        ),
        (
            {"apps": [{"appId": "a", "host": "h", "internalPort": 1, "grpcPort": -1}]},
            "apps[0].grpcPort",
            "between 0 and 65535",
        ),
        (
            {"apps": [{"appId": "a", "host": "h:50002", "internalPort": 1}]},
            "apps[0].host",
            "without a port",
        ),
        (
            {"apps": [{"appId": "a", "host": "http://h", "internalPort": 1}]},
            "apps[0].host",
            "host name or IP",
        ),
        ({"apps": [{"appId": "a.b", "host": "h", "internalPort": 1}]}, "apps[0].appId", "dots"),
        ({"apps": [{"appId": "a", "host": "h", "port": 1}]}, "apps[0].port", "not a known key"),
        ({"apps": [{"appId": "a", "host": ["h"], "internalPort": 1}]}, "apps[0].host", "single"),
        (
            {
                "apps": [
                    {"appId": "a", "host": "h", "internalPort": 1},
                    {"appId": "a", "namespace": "default", "host": "h", "internalPort": 1},
                ]
            },
            "apps[1]",
            "repeats apps[0]",
        ),
        ({"apps": [{"appId": "a", "host": "h", "internalPort": 1}], "ttl": 5}, "ttl", "known"),
    ],
)
async def test_static_rejects_bad_tables_naming_the_field(
    configuration: Mapping[str, object], field: str, words: str
) -> None:
    with pytest.raises(MetadataError) as info:
        await StaticResolver().init(configuration, me())
    assert info.value.field == field
    assert words in info.value.problem


# ---------------------------------------------------------------- kubernetes


async def kube_resolver(
    configuration: Mapping[str, object], namespace: str = ""
) -> KubernetesResolver:
    resolver = KubernetesResolver()
    await resolver.init(configuration, me(namespace))
    return resolver


async def test_kubernetes_resolves_the_sidecar_service_through_given_nameservers(
    dns: tuple[StubZone, str],
) -> None:
    zone, server = dns
    zone.records["orders-daprlite.prod.svc.cluster.local"] = ["10.1.2.3"]
    resolver = await kube_resolver({"nameservers": [server]})
    try:
        assert await resolver.resolve(req("orders", "prod")) == Address(
            "10.1.2.3", 50002, 50001, 50003
        )
    finally:
        await resolver.close()
    assert zone.asked == ["orders-daprlite.prod.svc.cluster.local"]


async def test_kubernetes_nxdomain_is_app_not_found_naming_the_dns_name(
    dns: tuple[StubZone, str],
) -> None:
    zone, server = dns
    resolver = await kube_resolver({"nameservers": [server]})
    try:
        with pytest.raises(AppNotFoundError, match=r"nope-daprlite\.default\.svc\.cluster\.local"):
            await resolver.resolve(req("nope"))
    finally:
        await resolver.close()
    assert zone.asked == ["nope-daprlite.default.svc.cluster.local"]  # the stub, not the system


async def test_kubernetes_server_failure_is_an_error_but_not_app_not_found(
    dns: tuple[StubZone, str],
) -> None:
    zone, server = dns
    zone.broken.add("orders-daprlite.default.svc.cluster.local")
    resolver = await kube_resolver({"nameservers": [server]})
    try:
        with pytest.raises(ComponentError, match=r"orders-daprlite\.default\.svc") as info:
            await resolver.resolve(req("orders"))
        assert not isinstance(info.value, AppNotFoundError)
    finally:
        await resolver.close()


async def test_kubernetes_namespace_is_the_requests_else_the_sidecars_else_default(
    dns: tuple[StubZone, str],
) -> None:
    zone, server = dns
    zone.records["orders-daprlite.default.svc.cluster.local"] = ["10.0.0.1"]
    zone.records["orders-daprlite.team.svc.cluster.local"] = ["10.0.0.2"]
    zone.records["orders-daprlite.prod.svc.cluster.local"] = ["10.0.0.3"]
    anywhere = await kube_resolver({"nameservers": [server]})
    in_team = await kube_resolver({"nameservers": [server]}, namespace="team")
    try:
        assert (await anywhere.resolve(req("orders"))).host == "10.0.0.1"
        assert (await in_team.resolve(req("orders"))).host == "10.0.0.2"
        assert (await in_team.resolve(req("orders", "prod"))).host == "10.0.0.3"
    finally:
        await anywhere.close()
        await in_team.close()


async def test_kubernetes_honours_cluster_domain_and_ports(dns: tuple[StubZone, str]) -> None:
    zone, server = dns
    zone.records["orders-daprlite.default.svc.corp.example"] = ["10.9.9.9"]
    resolver = await kube_resolver(
        {
            "clusterDomain": "Corp.Example.",
            "internalPort": 6002,
            "grpcPort": "6001",
            "proxyPort": 6003,
            "nameservers": server,
        }
    )
    try:
        assert await resolver.resolve(req("Orders")) == Address("10.9.9.9", 6002, 6001, 6003)
    finally:
        await resolver.close()


async def test_kubernetes_falls_back_to_aaaa_and_spreads_over_several_addresses(
    dns: tuple[StubZone, str],
) -> None:
    zone, server = dns
    zone.records["v6-daprlite.default.svc.cluster.local"] = ["fd00::1"]
    zone.records["many-daprlite.default.svc.cluster.local"] = ["10.0.0.1", "10.0.0.2"]
    resolver = await kube_resolver({"nameservers": [server]})
    try:
        assert (await resolver.resolve(req("v6"))).host == "fd00::1"
        hosts = [(await resolver.resolve(req("many"))).host for _ in range(4)]
        assert sorted(hosts) == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]
        assert hosts[0] != hosts[1]
    finally:
        await resolver.close()


async def test_kubernetes_without_nameservers_uses_the_system_resolver_and_names_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The system resolver needs no aiodns; ".invalid" never exists (RFC 6761).
    monkeypatch.setitem(sys.modules, "aiodns", None)
    resolver = await kube_resolver({"clusterDomain": "invalid"})
    with pytest.raises((AppNotFoundError, ComponentError)) as info:
        await resolver.resolve(req("orders"))
    assert "orders-daprlite.default.svc.invalid" in str(info.value)
    await resolver.close()


async def test_kubernetes_app_id_that_cannot_be_a_dns_label_is_not_found() -> None:
    resolver = await kube_resolver({})
    with pytest.raises(AppNotFoundError, match="'my_app'"):
        await resolver.resolve(req("my_app"))


async def test_kubernetes_nameservers_without_aiodns_is_a_missing_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiodns", None)
    with pytest.raises(MissingDriverError, match=r"daprlite\[kubernetes\]"):
        await kube_resolver({"nameservers": ["10.96.0.10"]})


@pytest.mark.parametrize(
    ("configuration", "field"),
    [
        ({"nameservers": ["10.0.0.10", "dns.local"]}, "nameservers[1]"),
        ({"nameservers": ["10.0.0.10:99999"]}, "nameservers[0]"),
        ({"nameservers": [53]}, "nameservers"),
        ({"clusterDomain": "bad_domain"}, "clusterDomain"),
        ({"internalPort": 0}, "internalPort"),
        ({"template": "{{.ID}}"}, "template"),
    ],
)
async def test_kubernetes_rejects_bad_configuration_naming_the_key(
    configuration: Mapping[str, object], field: str
) -> None:
    with pytest.raises(MetadataError) as info:
        await kube_resolver(configuration)
    assert info.value.field == field


async def test_kubernetes_accepts_nameservers_with_and_without_ports() -> None:
    resolver = await kube_resolver({"nameservers": "10.96.0.10, 10.96.0.11:5353,[fd00::a]:53"})
    try:
        assert resolver.nameservers == ["10.96.0.10:53", "10.96.0.11:5353", "[fd00::a]:53"]
    finally:
        await resolver.close()


# ---------------------------------------------------------------- loader


async def opened(spec: NameResolutionSpec | None, registry: Registry | None = None) -> Resolver:
    """The resolver ``spec`` opens, already closed again."""
    resolver = await open_resolver(spec, me(), registry)
    await resolver.close()
    return resolver


async def test_loader_default_is_standalone_on_the_run_folder(home: Path) -> None:
    resolver = await opened(None)
    assert isinstance(resolver, StandaloneResolver)
    assert resolver.folder == home / "run"
    assert isinstance(await opened(NameResolutionSpec(component="")), StandaloneResolver)


async def test_loader_default_is_kubernetes_inside_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert isinstance(await opened(None), KubernetesResolver)


async def test_loader_serves_mdns_with_the_standalone_resolver_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="daprlite.nameresolution"):
        resolver = await opened(NameResolutionSpec(component="mdns"))
    assert isinstance(resolver, StandaloneResolver)
    assert any(
        "'mdns'" in r.getMessage() and "run folder" in r.getMessage() for r in caplog.records
    )


async def test_loader_builds_the_named_component_with_its_configuration() -> None:
    apps = [{"appId": "orders", "host": "10.0.0.5", "internalPort": 50002}]
    resolver = await open_resolver(
        NameResolutionSpec(component="Static", version="v1", configuration={"apps": apps}), me()
    )
    assert isinstance(resolver, StaticResolver)
    assert await resolver.resolve(req("orders")) == Address("10.0.0.5", 50002, 0)
    await resolver.close()


async def test_loader_unknown_component_names_the_field_and_the_known_names() -> None:
    with pytest.raises(UnknownComponentError) as info:
        await opened(NameResolutionSpec(component="consul"))
    message = str(info.value)
    assert "spec.nameResolution.component" in message and "'consul'" in message
    assert "kubernetes, mdns, standalone, static" in message


async def test_loader_unknown_version_names_the_field() -> None:
    with pytest.raises(UnknownComponentError, match=r"spec\.nameResolution\.version.*'v2'"):
        await opened(NameResolutionSpec(component="static", version="v2"))


async def test_loader_configuration_errors_name_the_full_path() -> None:
    apps = [{"appId": "orders", "host": "h", "internalPort": "many"}]
    with pytest.raises(MetadataError) as info:
        await opened(NameResolutionSpec(component="static", configuration={"apps": apps}))
    assert info.value.field == "spec.nameResolution.configuration.apps[0].internalPort"


async def test_loader_resolves_classes_through_the_given_registry() -> None:
    table = {("nameresolution.fixed", "v1"): BUILTIN[("nameresolution.static", "v1")]}
    with pytest.raises(UnknownComponentError, match=r"known components: fixed$"):
        await opened(NameResolutionSpec(component="static"), registry=Registry(table))
    apps = [{"appId": "orders", "host": "h", "internalPort": 1}]
    spec = NameResolutionSpec(component="fixed", configuration={"apps": apps})
    assert isinstance(await opened(spec, registry=Registry(table)), StaticResolver)


@pytest.fixture
def dns() -> Iterator[tuple[StubZone, str]]:
    with stub_dns() as served:
        yield served
