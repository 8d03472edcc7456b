"""``daprlite operator`` as a real process against the API-server stand-in (tests/k8sapi.py).

The operator watches Deployments and StatefulSets over HTTPS and creates,
patches and deletes the headless Services ``<app-id>-daprlite`` in the
stand-in; the tests change workloads with ``put``/``delete`` and poll the
stand-in for the Services. Each test works in its own namespace, so the
module shares one operator.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from daprlite.kubernetes.client import api_client
from daprlite.operator import DEPLOYMENT, OperatorOptions, serve
from daprlite.operator.cluster import Cluster
from tests.integration.harness import free_port, wait_for
from tests.k8sapi import K8sAPI, running

MANAGED = {"app.kubernetes.io/managed-by": "daprlite-operator"}
WAIT = 15.0


@dataclass
class Operator:
    proc: subprocess.Popen[str]
    health_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def healthz(self) -> int:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_operator(kubeconfig: Path) -> Operator:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "DAPR"))},
        "KUBECONFIG": str(kubeconfig),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daprlite",
            "operator",
            "--health-port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--log-level",
            "debug",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    op = Operator(proc, port)

    def read() -> None:
        assert proc.stdout is not None
        op.lines.extend(line.rstrip("\n") for line in proc.stdout)

    threading.Thread(target=read, daemon=True).start()
    return op


def wait_healthy(op: Operator) -> None:
    def healthy() -> bool:
        if op.proc.poll() is not None:
            raise AssertionError(f"operator exited:\n{op.output}")
        return op.healthz() == 200

    wait_for(healthy, 30, "the operator's /healthz to answer 200")


def deployment(
    namespace: str,
    name: str,
    annotations: dict[str, str] | None,
    labels: dict[str, str] | None = None,
    kind: str = "Deployment",
) -> dict[str, object]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": f"{name}:1"}]},
            },
        },
    }


def service(
    namespace: str,
    name: str,
    labels: dict[str, str],
    owner: dict[str, object] | None = None,
) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    }


def enabled(app_id: str = "") -> dict[str, str]:
    out = {"daprlite.io/enabled": "true"}
    if app_id:
        out["daprlite.io/app-id"] = app_id
    return out


def wait_service(api: K8sAPI, namespace: str, name: str) -> dict[str, object]:
    wait_for(
        lambda: api.get("services", namespace, name) is not None,
        WAIT,
        f"Service {namespace}/{name}",
    )
    svc = api.get("services", namespace, name)
    assert svc is not None
    return svc


def wait_gone(api: K8sAPI, namespace: str, name: str) -> None:
    wait_for(
        lambda: api.get("services", namespace, name) is None,
        WAIT,
        f"Service {namespace}/{name} to be deleted",
    )


def uid_of(obj: dict[str, object]) -> str:
    meta = obj["metadata"]
    assert isinstance(meta, dict)
    return str(meta["uid"])


# Seeded before the operator starts: what a previous run (or a crash) could leave behind.
STALE_NS = "leftovers"


@pytest.fixture(scope="module")
def api() -> Iterator[K8sAPI]:
    with running() as server:
        ghost_owner = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "ghost",
            "uid": "0a1b2c3d-0000-4000-8000-000000000000",
            "controller": True,
        }
        server.put(service(STALE_NS, "ghost-daprlite", {**MANAGED}, ghost_owner))
        server.put(service(STALE_NS, "orphan-daprlite", {**MANAGED}))
        server.put(service(STALE_NS, "mine-daprlite", {"app": "mine"}, ghost_owner))
        # A workload whose annotation was removed while no operator ran: only the start-up
        # sweep can tell the operator that it still owns a Service.
        retired = server.put(deployment(STALE_NS, "retired", None))
        retired_owner = {**ghost_owner, "name": "retired", "uid": uid_of(retired)}
        server.put(service(STALE_NS, "retired-daprlite", {**MANAGED}, retired_owner))
        yield server


@pytest.fixture(scope="module")
def operator(api: K8sAPI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kubeconfig = api.write_kubeconfig(tmp_path_factory.mktemp("operator") / "kubeconfig")
    op = start_operator(kubeconfig)
    try:
        wait_healthy(op)
        yield op
    finally:
        op.stop()


def test_annotated_deployment_gets_a_headless_service_with_sidecar_ports_and_owner(
    api: K8sAPI, operator: Operator
) -> None:
    deploy = api.put(deployment("shop", "orders", enabled("order-svc")))
    svc = wait_service(api, "shop", "order-svc-daprlite")
    assert svc["metadata"]["labels"] == {  # type: ignore[index]
        **MANAGED,
        "daprlite.io/app-id": "order-svc",
    }
    assert svc["metadata"]["ownerReferences"] == [  # type: ignore[index]
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "orders",
            "uid": uid_of(deploy),
            "controller": True,
        }
    ]
    spec = svc["spec"]
    assert isinstance(spec, dict)
    assert spec["clusterIP"] == "None"
    assert spec["selector"] == {"app": "orders"}
    assert spec["publishNotReadyAddresses"] is False
    # Only the sidecar-to-sidecar ports: the app-facing API stays inside the pod.
    assert [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in spec["ports"]] == [
        ("dapr-internal", 50002, 50002, "TCP"),
        ("dapr-proxy", 50003, 50003, "TCP"),
    ]
    assert "created Service shop/order-svc-daprlite for Deployment shop/orders" in (operator.output)


def test_without_an_app_id_the_service_is_named_after_the_deployment(
    api: K8sAPI, operator: Operator
) -> None:
    api.put(deployment("plain", "checkout", {"dapr.io/enabled": "true"}))
    svc = wait_service(api, "plain", "checkout-daprlite")
    assert svc["metadata"]["labels"]["daprlite.io/app-id"] == "checkout"  # type: ignore[index]


def test_changing_the_app_id_replaces_the_service_and_a_new_selector_is_patched(
    api: K8sAPI, operator: Operator
) -> None:
    api.put(deployment("rename", "billing", enabled("bill")))
    wait_service(api, "rename", "bill-daprlite")
    api.put(deployment("rename", "billing", enabled("invoices")))
    wait_service(api, "rename", "invoices-daprlite")
    wait_gone(api, "rename", "bill-daprlite")

    labels = {"app": "billing", "track": "canary"}
    api.put(deployment("rename", "billing", enabled("invoices"), labels=labels))
    wait_for(
        lambda: selector_of(api, "rename", "invoices-daprlite") == labels,
        WAIT,
        "the Service's selector to follow the Deployment's",
    )


def selector_of(api: K8sAPI, namespace: str, name: str) -> object:
    svc = api.get("services", namespace, name) or {}
    spec = svc.get("spec")
    return spec.get("selector") if isinstance(spec, dict) else None


def test_removing_the_enabled_annotation_or_the_deployment_removes_the_service(
    api: K8sAPI, operator: Operator
) -> None:
    api.put(deployment("off", "cart", enabled()))
    wait_service(api, "off", "cart-daprlite")
    api.put(deployment("off", "cart", {"daprlite.io/enabled": "false"}))
    wait_gone(api, "off", "cart-daprlite")

    api.put(deployment("off", "wishlist", enabled("wish")))
    wait_service(api, "off", "wish-daprlite")
    api.delete("deployments", "off", "wishlist")
    wait_gone(api, "off", "wish-daprlite")


def test_a_statefulset_gets_its_service_too(api: K8sAPI, operator: Operator) -> None:
    sts = api.put(deployment("data", "ledger", enabled(), kind="StatefulSet"))
    svc = wait_service(api, "data", "ledger-daprlite")
    ref = svc["metadata"]["ownerReferences"][0]  # type: ignore[index]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("StatefulSet", "ledger", uid_of(sts))
    api.delete("statefulsets", "data", "ledger")
    wait_gone(api, "data", "ledger-daprlite")


def test_an_unmanaged_service_of_the_same_name_is_left_alone_and_named_in_a_warning(
    api: K8sAPI, operator: Operator
) -> None:
    theirs = api.put(service("mixed", "search-daprlite", {"app": "search"}))
    api.put(deployment("mixed", "search", enabled()))
    wait_for(
        lambda: "Service mixed/search-daprlite exists without the label" in operator.output,
        WAIT,
        "the warning that names the unmanaged Service",
    )
    api.delete("deployments", "mixed", "search")
    # A managed neighbour is created and removed after it: the operator got past both events.
    api.put(deployment("mixed", "probe", enabled()))
    wait_service(api, "mixed", "probe-daprlite")
    assert api.get("services", "mixed", "search-daprlite") == theirs


def test_stale_managed_services_without_a_workload_are_removed_at_start(
    api: K8sAPI, operator: Operator
) -> None:
    wait_gone(api, STALE_NS, "ghost-daprlite")
    wait_gone(api, STALE_NS, "orphan-daprlite")
    wait_gone(api, STALE_NS, "retired-daprlite")
    assert "Deployment leftovers/retired: it no longer asks for a sidecar" in operator.output
    # Not labelled as the operator's: kept, even though its owner is gone.
    assert api.get("services", STALE_NS, "mine-daprlite") is not None
    assert "Deployment leftovers/ghost no longer exists" in operator.output


def test_malformed_annotations_are_logged_and_skipped(api: K8sAPI, operator: Operator) -> None:
    api.put(deployment("broken", "typo", {"daprlite.io/enabled": "yes please"}))
    wait_for(
        lambda: "Deployment broken/typo: no Service change" in operator.output,
        WAIT,
        "the error naming the workload",
    )
    assert "spec.template.daprlite.io/enabled" in operator.output
    api.put(deployment("broken", "fixed", enabled()))
    wait_service(api, "broken", "fixed-daprlite")
    assert api.get("services", "broken", "typo-daprlite") is None


def test_refused_service_calls_are_retried_until_they_succeed(
    api: K8sAPI, operator: Operator
) -> None:
    api.forbidden_namespaces.add("locked")
    try:
        api.put(deployment("locked", "vault", enabled()))
        wait_for(
            lambda: "reconciling Deployment locked/vault failed" in operator.output,
            WAIT,
            "the failed attempt to be logged",
        )
        assert api.get("services", "locked", "vault-daprlite") is None
    finally:
        api.forbidden_namespaces.discard("locked")
    wait_service(api, "locked", "vault-daprlite")


def test_dropped_and_expired_watches_are_survived(api: K8sAPI, operator: Operator) -> None:
    api.put(deployment("outage", "before", enabled()))
    wait_service(api, "outage", "before-daprlite")
    assert api.drop_watches() >= 2
    api.put(deployment("outage", "after-drop", enabled()))
    wait_service(api, "outage", "after-drop-daprlite")

    # While the watches are refused the workloads change, and the history the operator
    # would resume from is compacted away: it must list again and notice the deletion.
    api.refuse_watches()
    api.delete("deployments", "outage", "before")
    api.put(deployment("outage", "during", enabled()))
    api.compact()
    api.refuse_watches(False)
    wait_service(api, "outage", "during-daprlite")
    wait_gone(api, "outage", "before-daprlite")
    wait_for(lambda: operator.healthz() == 200, WAIT, "/healthz to answer 200 again")


def test_healthz_is_503_until_the_first_list_succeeds(api: K8sAPI, tmp_path: Path) -> None:
    api.forbidden_namespaces.add("")  # RBAC not applied yet: cluster-wide lists are refused
    op = start_operator(api.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        wait_for(lambda: op.healthz() == 503, 30, "/healthz to answer 503")
        wait_for(lambda: "forbidden" in op.output, WAIT, "the refused list to be logged")
        assert op.healthz() == 503
        assert op.proc.poll() is None
    finally:
        api.forbidden_namespaces.discard("")
    try:
        wait_healthy(op)
        body = urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/healthz", timeout=2)
        assert json.loads(body.read()) == {"status": "ok"}
    finally:
        op.stop()
    assert op.proc.returncode == 0, op.output


def test_an_app_id_used_twice_keeps_one_service_and_passes_to_the_survivor(
    api: K8sAPI, operator: Operator
) -> None:
    first = api.put(deployment("twice", "web", enabled("front")))
    svc = wait_service(api, "twice", "front-daprlite")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == uid_of(first)  # type: ignore[index]
    second = api.put(deployment("twice", "web-v2", enabled("front"), kind="StatefulSet"))
    wait_for(
        lambda: "app id 'front' in namespace twice is used by both" in operator.output,
        WAIT,
        "the warning about the shared app id",
    )
    api.delete("deployments", "twice", "web")
    wait_for(
        lambda: owner_uid(api, "twice", "front-daprlite") == uid_of(second),
        WAIT,
        "the Service to pass to the StatefulSet",
    )


def owner_uid(api: K8sAPI, namespace: str, name: str) -> str:
    svc = api.get("services", namespace, name) or {}
    meta = svc.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, dict) else None
    return str(refs[0]["uid"]) if isinstance(refs, list) and refs else ""


def test_updates_of_workloads_without_a_sidecar_cost_no_api_calls(
    api: K8sAPI, operator: Operator
) -> None:
    ns = "quiet"
    names = [f"plain-{i}" for i in range(3)]
    mark = len(api.requests)
    for generation in range(4):  # created, then three status updates each
        for name in names:
            obj = deployment(ns, name, None)
            obj["status"] = {"observedGeneration": generation, "readyReplicas": generation}
            api.put(obj)
    # The worker takes keys in order: once this one's Service exists, the rest were handled.
    api.put(deployment(ns, "barrier", enabled()))
    wait_service(api, ns, "barrier-daprlite")
    calls = [r for r in api.requests[mark:] if f"/namespaces/{ns}/" in r]
    assert calls == [
        f"GET /api/v1/namespaces/{ns}/services/barrier-daprlite",
        f"POST /api/v1/namespaces/{ns}/services",
    ]
    # Nor did they make the operator list Services anywhere.
    assert not [r for r in api.requests[mark:] if r.startswith("GET /api/v1/services")]
    # The start-up lists were paged.
    first_lists = [r for r in api.requests if r.startswith("GET /apis/apps/v1/deployments?")]
    assert "limit=500" in first_lists[0]


def test_workloads_are_listed_in_pages_and_only_their_state_is_kept(tmp_path: Path) -> None:
    async def listed(kubeconfig: Path) -> tuple[list[object], str]:
        client = await api_client(str(kubeconfig))
        try:
            states, version = await Cluster(client, page_size=2).list_workloads(DEPLOYMENT)
            return list(states), version
        finally:
            await client.close()

    with running() as fresh:
        for i in range(5):
            fresh.put(deployment("paged", f"w{i}", enabled() if i % 2 else None))
        first_version = str(fresh.resource_version)
        mark = len(fresh.requests)
        states, version = asyncio.run(listed(fresh.write_kubeconfig(tmp_path / "kubeconfig")))
        pages = fresh.requests[mark:]
    assert version == first_version
    assert [s.key.name for s in states] == [f"w{i}" for i in range(5)]  # type: ignore[attr-defined]
    assert [s.desired is not None for s in states] == [  # type: ignore[attr-defined]
        False,
        True,
        False,
        True,
        False,
    ]
    assert len(pages) == math.ceil(5 / 2)
    assert all(p.startswith("GET /apis/apps/v1/deployments?") and "limit=2" in p for p in pages)
    assert "continue=" not in pages[0]
    assert all("continue=" in p for p in pages[1:])


async def _health_of(session: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, object]]:
    try:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientError:
        return 0, {}


async def _until_health(
    session: aiohttp.ClientSession, port: int, status: int, what: str
) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        code, body = await _health_of(session, port)
        if code == status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {code} {body})")
        await asyncio.sleep(0.05)


async def test_healthz_turns_503_while_watches_keep_failing_and_200_once_they_work(
    tmp_path: Path,
) -> None:
    with running() as fresh:
        fresh.put(deployment("health", "app", enabled()))
        client = await api_client(str(fresh.write_kubeconfig(tmp_path / "kubeconfig")))
        port, stop = free_port(), asyncio.Event()
        options = OperatorOptions(health_port=port, listen_address="127.0.0.1", unhealthy_after=2)
        task = asyncio.create_task(serve(options, client, stop))
        try:
            async with aiohttp.ClientSession() as session:
                await _until_health(session, port, 200, "the first list")
                fresh.refuse_watches()  # an API server restart that does not end quickly
                body = await _until_health(session, port, 503, "/healthz to fail")
                assert body["status"] == "failing"
                assert "deployments and statefulsets failed" in str(body["message"])
                fresh.refuse_watches(False)
                body = await _until_health(session, port, 200, "/healthz to recover")
                assert body == {"status": "ok"}
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await client.close()
