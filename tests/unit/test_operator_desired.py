"""The operator's pure part: a workload in, the headless Service it should have (or none) out."""

from __future__ import annotations

import copy

import pytest

from daprlite.injector.annotations import read_spec
from daprlite.operator import (
    DEPLOYMENT,
    STATEFULSET,
    DesiredService,
    WorkloadError,
    WorkloadKey,
    WorkloadKind,
    desired_service,
    service_patch,
)
from daprlite.operator.desired import is_managed, owner_of, workload_state

NS = "shop"


def workload(
    name: str = "orders",
    annotations: dict[str, str] | None = None,
    match_labels: object = None,
    kind: str = "Deployment",
) -> dict[str, object]:
    labels = {"app": name} if match_labels is None else match_labels
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": "uid-" + name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "orders:1"}]},
            },
        },
    }


def enabled(**extra: str) -> dict[str, str]:
    return {"daprlite.io/enabled": "true", **extra}


def desired(obj: dict[str, object], kind: WorkloadKind = DEPLOYMENT) -> DesiredService:
    out = desired_service(kind, obj)
    assert out is not None
    return out


def test_an_enabled_deployment_gets_a_headless_service_named_after_its_app_id() -> None:
    svc = desired(workload(annotations=enabled(**{"daprlite.io/app-id": "order-svc"})))
    manifest = svc.manifest()
    assert manifest["metadata"] == {
        "name": "order-svc-daprlite",
        "namespace": NS,
        "labels": {
            "app.kubernetes.io/managed-by": "daprlite-operator",
            "daprlite.io/app-id": "order-svc",
        },
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "orders",
                "uid": "uid-orders",
                "controller": True,
            }
        ],
    }
    assert manifest["spec"] == {
        "clusterIP": "None",
        "selector": {"app": "orders"},
        # Only what other pods may reach: the app-facing API (3500, 50001) listens on the
        # pod's loopback, and the health port (3501) is for the kubelet's probes.
        "ports": [
            {"name": "dapr-internal", "port": 50002, "targetPort": 50002, "protocol": "TCP"},
            {"name": "dapr-proxy", "port": 50003, "targetPort": 50003, "protocol": "TCP"},
        ],
        "publishNotReadyAddresses": False,
    }


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"daprlite.io/enabled": "false"}, {"daprlite.io/app-id": "orders"}],
)
def test_a_workload_that_asks_for_no_sidecar_wants_no_service(
    annotations: dict[str, str] | None,
) -> None:
    assert desired_service(DEPLOYMENT, workload(annotations=annotations)) is None


def test_dapr_io_annotations_are_accepted_and_daprlite_io_wins() -> None:
    dapr = desired(workload(annotations={"dapr.io/enabled": "true", "dapr.io/app-id": "legacy"}))
    assert dapr.name == "legacy-daprlite"
    both = workload(annotations={"dapr.io/enabled": "true", "daprlite.io/enabled": "false"})
    assert desired_service(DEPLOYMENT, both) is None


def test_without_an_app_id_the_workload_name_is_used_as_the_injector_does() -> None:
    svc = desired(workload(name="checkout", annotations=enabled()))
    assert (svc.app_id, svc.name) == ("checkout", "checkout-daprlite")
    # The injector sees the Deployment's pods through their ReplicaSet: same id.
    pod = {
        "metadata": {
            "annotations": enabled(),
            "labels": {"app": "checkout", "pod-template-hash": "5d8f7c"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "checkout-5d8f7c", "controller": True}
            ],
        }
    }
    assert read_spec(pod).app_id == svc.app_id


def test_a_statefulset_is_the_owner_of_its_service() -> None:
    svc = desired(workload(name="ledger", annotations=enabled(), kind="StatefulSet"), STATEFULSET)
    assert svc.name == "ledger-daprlite"
    assert svc.owner == WorkloadKey(STATEFULSET, NS, "ledger")
    refs = svc.manifest()["metadata"]["ownerReferences"]  # type: ignore[index]
    assert refs[0]["kind"] == "StatefulSet"


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({"daprlite.io/enabled": "maybe"}, "daprlite.io/enabled"),
        (enabled(**{"daprlite.io/app-id": "Orders_Svc"}), "daprlite.io/app-id"),
        (enabled(**{"dapr.io/app-port": "http"}), "dapr.io/app-port"),
    ],
)
def test_malformed_annotations_raise_an_error_naming_the_annotation(
    annotations: dict[str, str], named: str
) -> None:
    with pytest.raises(WorkloadError, match=f"spec.template.{named}"):
        desired_service(DEPLOYMENT, workload(annotations=annotations))


def test_a_workload_name_too_long_for_a_service_name_is_refused() -> None:
    with pytest.raises(WorkloadError, match="at most 54 characters"):
        desired_service(DEPLOYMENT, workload(name="a" * 60, annotations=enabled()))


@pytest.mark.parametrize("labels", [{}, "app=orders", {"app": 3}])
def test_a_selector_without_match_labels_is_refused(labels: object) -> None:
    with pytest.raises(WorkloadError, match=r"spec\.selector\.matchLabels"):
        desired_service(DEPLOYMENT, workload(annotations=enabled(), match_labels=labels))


def _as_created(svc: DesiredService) -> dict[str, object]:
    """The Service as the API server stores it: with its defaults and other labels."""
    obj = copy.deepcopy(svc.manifest())
    obj["metadata"]["labels"]["team"] = "payments"  # type: ignore[index]
    spec = obj["spec"]
    assert isinstance(spec, dict)
    spec.update(
        {
            "type": "ClusterIP",
            "clusterIPs": ["None"],
            "ipFamilies": ["IPv4"],
            "sessionAffinity": "None",
        }
    )
    return obj


def test_a_service_as_the_server_stored_it_needs_no_patch() -> None:
    svc = desired(workload(annotations=enabled()))
    assert service_patch(svc, _as_created(svc)) is None


def test_a_changed_selector_is_patched_with_the_old_labels_removed() -> None:
    old = desired(workload(annotations=enabled(), match_labels={"app": "orders", "tier": "v1"}))
    new = desired(workload(annotations=enabled(), match_labels={"app": "orders", "track": "b"}))
    assert service_patch(new, _as_created(old)) == {
        "spec": {"selector": {"tier": None, "app": "orders", "track": "b"}}
    }


def test_wrong_ports_labels_and_owner_are_patched() -> None:
    svc = desired(workload(annotations=enabled()))
    existing = _as_created(svc)
    existing["spec"]["ports"] = [{"name": "http", "port": 80}]  # type: ignore[index]
    existing["spec"]["publishNotReadyAddresses"] = True  # type: ignore[index]
    existing["metadata"]["labels"]["daprlite.io/app-id"] = "other"  # type: ignore[index]
    existing["metadata"]["ownerReferences"][0]["uid"] = "uid-of-an-older-orders"  # type: ignore[index]
    patch = service_patch(svc, existing)
    assert patch is not None
    assert patch["spec"] == {"ports": svc.ports(), "publishNotReadyAddresses": False}
    assert patch["metadata"] == {
        "labels": svc.labels(),
        "ownerReferences": [svc.owner_reference()],
    }


def test_owner_and_management_are_read_back_from_a_service() -> None:
    svc = desired(workload(annotations=enabled()))
    manifest = svc.manifest()
    assert is_managed(manifest)
    assert owner_of(manifest) == svc.owner
    unmanaged = {"metadata": {"name": "orders-daprlite", "labels": {"app": "orders"}}}
    assert not is_managed(unmanaged)
    assert owner_of(unmanaged) is None
    replica_owned = {
        "metadata": {
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x"}]
        }
    }
    assert owner_of(replica_owned) is None


def test_a_service_that_still_publishes_the_sidecar_api_ports_is_patched_down_to_two() -> None:
    svc = desired(workload(annotations=enabled()))
    existing = _as_created(svc)
    existing["spec"]["ports"] = [  # type: ignore[index]
        {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
        for name, port in (
            ("dapr-http", 3500),
            ("dapr-grpc", 50001),
            ("dapr-internal", 50002),
            ("dapr-proxy", 50003),
        )
    ]
    patch = service_patch(svc, existing)
    assert patch == {
        "spec": {
            "ports": [
                {"name": "dapr-internal", "port": 50002, "targetPort": 50002, "protocol": "TCP"},
                {"name": "dapr-proxy", "port": 50003, "targetPort": 50003, "protocol": "TCP"},
            ]
        }
    }


def test_the_kept_state_of_a_workload_holds_its_service_version_or_error() -> None:
    obj = workload(annotations=enabled())
    obj["metadata"]["resourceVersion"] = "42"  # type: ignore[index]
    state = workload_state(DEPLOYMENT, obj)
    assert state.key == WorkloadKey(DEPLOYMENT, NS, "orders")
    assert (state.desired, state.error, state.resource_version) == (desired(obj), "", "42")
    assert state.wants("orders-daprlite") and not state.wants("other-daprlite")

    off = workload_state(DEPLOYMENT, workload(annotations=None))
    assert (off.desired, off.error) == (None, "")
    assert not off.wants("orders-daprlite")

    broken = workload_state(DEPLOYMENT, workload(annotations={"daprlite.io/enabled": "maybe"}))
    assert broken.desired is None
    assert "spec.template.daprlite.io/enabled" in broken.error
