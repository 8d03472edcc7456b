"""Invocation through the static and the Kubernetes-DNS resolvers, end to end.

The callee runs with fixed internal and gRPC ports; each caller sidecar has
its own, empty run folder, so the only way it can find the callee is the
resolver its Configuration names: a static table, or DNS answered by a stub
server for ``<app-id>-daprlite.<namespace>.svc.<cluster-domain>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnsstub import stub_dns
from tests.integration.harness import SidecarProcess, free_port
from tests.integration.http import call
from tests.integration.invoke_system import start_callee


@pytest.fixture(scope="module")
def callee(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("resolved")
    (root / "resources").mkdir()
    internal, grpc_port = free_port(), free_port()
    proc = start_callee(
        "resolved",
        root / "home",
        root / "resources",
        extra_args=("--dapr-internal-grpc-port", str(internal), "--dapr-grpc-port", str(grpc_port)),
    )
    proc.internal_port = internal  # type: ignore[attr-defined]
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def internal_port(proc: SidecarProcess) -> int:
    return int(proc.internal_port)  # type: ignore[attr-defined]


def caller_with(config: str, root: Path) -> SidecarProcess:
    (root / "resources").mkdir(parents=True)
    (root / "config.yaml").write_text(config)
    return SidecarProcess(
        [root / "resources"],
        app_id="resolver-caller",
        home=root / "home",
        extra_args=["--config", str(root / "config.yaml")],
    ).wait_ready()


def test_static_table_finds_the_callee(callee: SidecarProcess, tmp_path: Path) -> None:
    config = f"""\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: static}}
spec:
  nameResolution:
    component: static
    configuration:
      apps:
        - {{appId: resolved, host: 127.0.0.1, internalPort: {internal_port(callee)}}}
"""
    caller = caller_with(config, tmp_path)
    try:
        reply = call("GET", f"{caller.http}/v1.0/invoke/resolved/method/static/path")
        assert reply.status == 200, reply.body
        body = reply.json()
        assert isinstance(body, dict)
        assert body["path"] == "/static/path"
        assert body["headers"]["dapr-caller-app-id"] == "resolver-caller"
        missing = call("GET", f"{caller.http}/v1.0/invoke/not-in-table/method/x")
        assert missing.status == 500 and b"not-in-table" in missing.body
    finally:
        caller.stop()


def test_kubernetes_dns_names_find_the_callee(callee: SidecarProcess, tmp_path: Path) -> None:
    with stub_dns() as (zone, nameserver):
        zone.records["resolved-daprlite.default.svc.test.local"] = ["127.0.0.1"]
        config = f"""\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {{name: kube}}
spec:
  nameResolution:
    component: kubernetes
    configuration:
      clusterDomain: test.local
      internalPort: {internal_port(callee)}
      nameservers: ["{nameserver}"]
"""
        caller = caller_with(config, tmp_path)
        try:
            reply = call("POST", f"{caller.http}/v1.0/invoke/resolved/method/kube", data=b"x")
            assert reply.status == 200, reply.body
            body = reply.json()
            assert isinstance(body, dict)
            assert body["path"] == "/kube"
            assert "resolved-daprlite.default.svc.test.local" in zone.asked
            missing = call("GET", f"{caller.http}/v1.0/invoke/ghost/method/x")
            assert missing.status == 500
            assert b"ghost-daprlite.default.svc.test.local" in missing.body
        finally:
            caller.stop()
