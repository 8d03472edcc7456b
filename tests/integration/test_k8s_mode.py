"""A real sidecar process in ``--mode kubernetes`` against the stand-in API server.

``KUBECONFIG`` points the sidecar at tests/k8sapi.py (HTTPS, bearer token);
``NAMESPACE`` is the pod's namespace. The sidecar loads its Components, its
Configuration (``--config`` names it) and Resiliencies from there, honouring
``scopes``; resolves ``secretKeyRef`` through the implicit ``kubernetes`` secret
store; and follows Component changes in the cluster without a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import SidecarProcess, wait_for
from tests.integration.http import call
from tests.k8sapi import GROUP, K8sAPI, component, running

NS = "shop"
APP = "orders"


@dataclass
class Cluster:
    api: K8sAPI
    sidecar: SidecarProcess
    workdir: Path

    def url(self, path: str) -> str:
        return f"{self.sidecar.http}{path}"

    def component_names(self) -> set[str]:
        meta = call("GET", self.url("/v1.0/metadata")).json()
        assert isinstance(meta, dict)
        return {c["name"] for c in meta["components"]}


def _sqlite(name: str, conn: dict[str, object], **extra: str) -> dict[str, object]:
    items: list[dict[str, object]] = [{"name": "connectionString", **conn}]
    items += [{"name": k, "value": v} for k, v in extra.items()]
    return component(
        name, NS, "state.sqlite", items, scopes=[APP, "inventory"]
    )  # two apps share it


def _custom(kind: str, name: str, spec: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
        **extra,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("k8s-mode")
    with running() as api:
        api.put_secret(NS, "sqlite-conn", {"connectionString": str(work / "first.db")})
        api.put_secret(NS, "denied", {"value": "never shown"})
        api.put(
            _sqlite(
                "statestore", {"secretKeyRef": {"name": "sqlite-conn", "key": "connectionString"}}
            )
        )
        # A second secret store: secretKeyRef without auth.secretStore must still mean
        # "kubernetes", as in Dapr, rather than "which one?".
        api.put(component("envstore", NS, "secretstores.local.env", []))
        api.put(component("elsewhere", NS, "state.in-memory", [], scopes=["billing"]))
        api.put(component("in-other-ns", "billing", "state.in-memory", []))
        api.put(
            _custom(
                "Configuration",
                "appconfig",
                {
                    "secrets": {
                        "scopes": [
                            {
                                "storeName": "kubernetes",
                                "defaultAccess": "allow",
                                "deniedSecrets": ["denied"],
                            }
                        ]
                    }
                },
            )
        )
        retries = {"policies": {"retries": {"quick": {"policy": "constant", "duration": "10ms"}}}}
        api.put(_custom("Resiliency", "mine", retries, scopes=[APP]))
        api.put(_custom("Resiliency", "theirs", retries, scopes=["billing"]))
        kubeconfig = api.write_kubeconfig(work / "kubeconfig", NS)
        sidecar = SidecarProcess(
            [],
            app_id=APP,
            home=work / "home",
            extra_args=["--mode", "kubernetes", "--config", "appconfig"],
            env={"KUBECONFIG": str(kubeconfig), "NAMESPACE": NS},
        )
        try:
            sidecar.wait_ready()
            yield Cluster(api, sidecar, work)
        finally:
            sidecar.stop()


def test_components_in_scope_load_from_the_cluster_with_the_implicit_secret_store(
    cluster: Cluster,
) -> None:
    meta = call("GET", cluster.url("/v1.0/metadata")).json()
    assert isinstance(meta, dict)
    types = {c["name"]: c["type"] for c in meta["components"]}
    assert types["statestore"] == "state.sqlite"
    assert types["kubernetes"] == "secretstores.kubernetes"
    assert types["envstore"] == "secretstores.local.env"
    # Scoped to another app, or in another namespace: not loaded.
    assert "elsewhere" not in types
    assert "in-other-ns" not in types
    assert [r["name"] for r in meta["resiliencies"]] == ["mine"]


def test_secret_key_ref_resolved_from_a_kubernetes_secret_and_state_works(
    cluster: Cluster,
) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    saved = call("POST", cluster.url("/v1.0/state/statestore"), json=[{"key": key, "value": 42}])
    assert saved.status == 204
    got = call("GET", cluster.url(f"/v1.0/state/statestore/{key}"))
    assert (got.status, got.json()) == (200, 42)
    assert (cluster.workdir / "first.db").exists()  # the path came from the Secret


def test_secrets_api_reads_kubernetes_secrets(cluster: Cluster) -> None:
    got = call("GET", cluster.url("/v1.0/secrets/kubernetes/sqlite-conn"))
    assert got.status == 200
    assert got.json() == {"connectionString": str(cluster.workdir / "first.db")}
    missing = call("GET", cluster.url("/v1.0/secrets/kubernetes/no-such-secret"))
    assert missing.status == 500
    body = missing.json()
    assert isinstance(body, dict) and body["errorCode"] == "ERR_SECRET_GET"
    assert "no-such-secret not found" in body["message"]


def test_configuration_named_by_config_comes_from_the_cluster(cluster: Cluster) -> None:
    denied = call("GET", cluster.url("/v1.0/secrets/kubernetes/denied"))
    assert denied.status == 403
    body = denied.json()
    assert isinstance(body, dict) and body["errorCode"] == "ERR_PERMISSION_DENIED"
    bulk = call("GET", cluster.url("/v1.0/secrets/kubernetes/bulk")).json()
    assert isinstance(bulk, dict) and "sqlite-conn" in bulk and "denied" not in bulk


def test_modified_component_is_reloaded_without_a_restart(cluster: Cluster) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    call("POST", cluster.url("/v1.0/state/statestore"), json=[{"key": key, "value": "old"}])
    pid = cluster.sidecar.proc.pid
    second = cluster.workdir / "second.db"
    cluster.api.put(_sqlite("statestore", {"value": str(second)}, keyPrefix="name"))

    def moved() -> bool:
        return call("GET", cluster.url(f"/v1.0/state/statestore/{key}")).status == 204

    wait_for(moved, 10, "the state store to move to second.db")
    assert second.exists()
    assert cluster.sidecar.proc.poll() is None and cluster.sidecar.proc.pid == pid
    saved = call("POST", cluster.url("/v1.0/state/statestore"), json=[{"key": key, "value": "new"}])
    assert saved.status == 204
    assert call("GET", cluster.url(f"/v1.0/state/statestore/{key}")).json() == "new"
    assert "component reloaded: statestore" in cluster.sidecar.output


def test_a_broken_change_keeps_the_loaded_component(cluster: Cluster) -> None:
    cluster.api.put(component("broken-later", NS, "state.in-memory", []))
    wait_for(lambda: "broken-later" in cluster.component_names(), 10, "broken-later to load")
    bad = component("broken-later", NS, "state.sqlite", [{"name": "timeout", "value": "soon"}])
    cluster.api.put(bad)
    wait_for(
        lambda: (
            "Component 'broken-later' from the cluster failed to load; the loaded one stays"
            in cluster.sidecar.output
        ),
        10,
        "the failed reload to be logged",
    )
    meta = call("GET", cluster.url("/v1.0/metadata")).json()
    assert isinstance(meta, dict)
    types = {c["name"]: c["type"] for c in meta["components"]}
    assert types["broken-later"] == "state.in-memory"


def test_component_rescoped_to_this_app_is_loaded(cluster: Cluster) -> None:
    cluster.api.put(component("elsewhere", NS, "state.in-memory", [], scopes=["billing", APP]))
    wait_for(lambda: "elsewhere" in cluster.component_names(), 10, "elsewhere to load")
    saved = call("POST", cluster.url("/v1.0/state/elsewhere"), json=[{"key": "a", "value": 1}])
    assert saved.status == 204


def test_deleted_component_disappears_from_metadata_and_the_api(cluster: Cluster) -> None:
    cluster.api.put(component("short-lived", NS, "state.in-memory", []))
    wait_for(lambda: "short-lived" in cluster.component_names(), 10, "short-lived to load")
    cluster.api.delete("components", NS, "short-lived")
    wait_for(lambda: "short-lived" not in cluster.component_names(), 10, "short-lived to go")
    got = call("GET", cluster.url("/v1.0/state/short-lived/a"))
    assert got.status == 400
    body = got.json()
    assert isinstance(body, dict) and body["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"


def test_changes_made_while_the_watch_history_expired_are_applied_after_a_relist(
    cluster: Cluster,
) -> None:
    cluster.api.put(component("before-outage", NS, "state.in-memory", []))
    wait_for(lambda: "before-outage" in cluster.component_names(), 10, "before-outage to load")
    cluster.api.refuse_watches()
    cluster.api.delete("components", NS, "before-outage")
    cluster.api.put(component("during-outage", NS, "state.in-memory", []))
    cluster.api.compact()  # resuming from the old resourceVersion now answers 410
    cluster.api.refuse_watches(False)
    wait_for(
        lambda: (
            {"during-outage"} <= cluster.component_names()
            and "before-outage" not in cluster.component_names()
        ),
        15,
        "the relist to reconcile",
    )
    assert "is gone from the server; listing again" in cluster.sidecar.output


def test_wrong_namespace_or_token_fails_start_up_with_a_clear_line(tmp_path: Path) -> None:
    with running() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", NS, token="not-the-token")
        sidecar = SidecarProcess(
            [],
            app_id=APP,
            home=tmp_path / "home",
            extra_args=["--mode", "kubernetes"],
            env={"KUBECONFIG": str(kubeconfig), "NAMESPACE": NS},
        )
        try:
            code = sidecar.wait_exit(30)
        finally:
            sidecar.stop()
    assert code != 0
    assert "Failed to start daprlite: cannot list components.daprlite.io in namespace shop: " in (
        sidecar.output
    )
    assert "HTTP 401" in sidecar.output
    assert "not-the-token" not in sidecar.output


def test_kubernetes_mode_without_a_namespace_fails_naming_the_variable(tmp_path: Path) -> None:
    with running() as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", NS)
        sidecar = SidecarProcess(
            [],
            app_id=APP,
            home=tmp_path / "home",
            extra_args=["--mode", "kubernetes"],
            env={"KUBECONFIG": str(kubeconfig), "NAMESPACE": ""},
        )
        try:
            code = sidecar.wait_exit(30)
        finally:
            sidecar.stop()
    assert code != 0
    assert "needs the pod's namespace in the NAMESPACE environment variable" in sidecar.output
