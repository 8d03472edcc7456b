"""What the operator wants to exist: one workload in, its headless Service (or none) out.

The first step of every reconciliation (``operator.reconcile``): a Deployment
or StatefulSet, as the API server sends it, goes through
:func:`desired_service`, a pure function that reads the pod template's
annotations exactly as the injector reads a pod's (``injector.annotations``,
with the workload as the pod's owner, so both derive the same app id) and
returns the Service ``<app-id>-daprlite`` that Kubernetes name resolution
(``nameresolution.kubernetes``) looks up. :func:`service_patch` says how an
existing Service differs from it, as a JSON merge patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from daprlite.injector.annotations import InjectionError, is_enabled, read_spec

SERVICE_SUFFIX = "-daprlite"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "daprlite-operator"
APP_ID_LABEL = "daprlite.io/app-id"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# (name, port): the sidecar ports other pods may reach, the same in every pod (see the
# injector's patch). The app-facing HTTP and gRPC APIs (3500, 50001) listen on the pod's
# loopback only, and the kubelet's health port is for probes: neither is published here.
SIDECAR_PORTS: tuple[tuple[str, int], ...] = (
    ("dapr-internal", 50002),
    ("dapr-proxy", 50003),
)


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    """A workload kind the operator watches, and where it lives in the API."""

    kind: str
    plural: str
    api_version: str = "apps/v1"


DEPLOYMENT = WorkloadKind("Deployment", "deployments")
STATEFULSET = WorkloadKind("StatefulSet", "statefulsets")
WORKLOAD_KINDS = (DEPLOYMENT, STATEFULSET)


@dataclass(frozen=True, slots=True)
class WorkloadKey:
    """One workload: ``Deployment team-a/orders``."""

    kind: WorkloadKind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.kind} {self.namespace}/{self.name}"


class WorkloadError(ValueError):
    """A workload the operator cannot make a Service for; the message names the field."""


@dataclass(frozen=True, slots=True)
class DesiredService:
    """The headless Service one enabled workload should have."""

    namespace: str
    name: str
    app_id: str
    selector: tuple[tuple[str, str], ...]
    owner: WorkloadKey
    owner_uid: str

    def owner_reference(self) -> dict[str, object]:
        # No blockOwnerDeletion: setting it needs update rights on the owner's finalizers.
        return {
            "apiVersion": self.owner.kind.api_version,
            "kind": self.owner.kind.kind,
            "name": self.owner.name,
            "uid": self.owner_uid,
            "controller": True,
        }

    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY, APP_ID_LABEL: self.app_id}

    def ports(self) -> list[dict[str, object]]:
        return [
            {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
            for name, port in SIDECAR_PORTS
        ]

    def manifest(self) -> dict[str, object]:
        """The Service to create."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels(),
                "ownerReferences": [self.owner_reference()],
            },
            "spec": {
                "clusterIP": "None",
                "selector": dict(self.selector),
                "ports": self.ports(),
                "publishNotReadyAddresses": False,
            },
        }


def _mapping(obj: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def desired_service(kind: WorkloadKind, workload: Mapping[str, object]) -> DesiredService | None:
    """The Service ``workload`` should have, or None when its pods ask for no sidecar.

    Raises :class:`WorkloadError` naming the annotation or field that keeps the
    operator from deriving one (the injector refuses such pods too).
    """
    meta = _mapping(workload, "metadata")
    name, namespace = _str(meta, "name"), _str(meta, "namespace")
    spec = _mapping(workload, "spec")
    template_meta = _mapping(_mapping(spec, "template"), "metadata")
    # The pod as the injector will see it: the template's annotations and the workload as
    # its owner (a Deployment's pods belong to a ReplicaSet the injector maps back to it).
    pod: dict[str, object] = {
        "metadata": {
            "annotations": template_meta.get("annotations"),
            "ownerReferences": [{"kind": kind.kind, "name": name, "controller": True}],
        }
    }
    try:
        if not is_enabled(pod):
            return None
        app_id = read_spec(pod).app_id
    except InjectionError as exc:
        raise WorkloadError(f"spec.template.{exc}") from None
    raw_labels = _mapping(spec, "selector").get("matchLabels")
    if (
        not isinstance(raw_labels, Mapping)
        or not raw_labels
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw_labels.items())
    ):
        raise WorkloadError(
            f"spec.selector.matchLabels: expected a non-empty map of strings (a Service "
            f"selects pods by labels only), got {raw_labels!r}"
        )
    return DesiredService(
        namespace=namespace,
        name=app_id + SERVICE_SUFFIX,
        app_id=app_id,
        selector=tuple(sorted((str(k), str(v)) for k, v in raw_labels.items())),
        owner=WorkloadKey(kind, namespace, name),
        owner_uid=_str(meta, "uid"),
    )


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What the operator keeps of one workload: not the object, only what reconciling needs."""

    key: WorkloadKey
    desired: DesiredService | None  # None: no sidecar wanted, or ``error`` says why none
    error: str  # why no Service can be derived ('' when the workload is well-formed)
    resource_version: str

    def wants(self, service_name: str) -> bool:
        return self.desired is not None and self.desired.name == service_name


def workload_state(kind: WorkloadKind, workload: Mapping[str, object]) -> WorkloadState:
    """:func:`desired_service` of ``workload``, with its key and resourceVersion."""
    meta = _mapping(workload, "metadata")
    key = WorkloadKey(kind, _str(meta, "namespace"), _str(meta, "name"))
    version = _str(meta, "resourceVersion")
    try:
        return WorkloadState(key, desired_service(kind, workload), "", version)
    except WorkloadError as exc:
        return WorkloadState(key, None, str(exc), version)


def is_managed(service: Mapping[str, object]) -> bool:
    """Whether the operator made ``service`` (and so may change or delete it)."""
    labels = _mapping(_mapping(service, "metadata"), "labels")
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def owner_of(service: Mapping[str, object]) -> WorkloadKey | None:
    """The watched workload a Service's ownerReferences name, if any."""
    meta = _mapping(service, "metadata")
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if not isinstance(ref, Mapping):
            continue
        for kind in WORKLOAD_KINDS:
            if ref.get("kind") == kind.kind and ref.get("apiVersion") == kind.api_version:
                name = ref.get("name")
                if isinstance(name, str) and name:
                    return WorkloadKey(kind, _str(meta, "namespace"), name)
    return None


def _ports_of(spec: Mapping[str, object]) -> list[tuple[str, int, object, str]]:
    raw = spec.get("ports")
    out = []
    for port in raw if isinstance(raw, list) else ():
        if isinstance(port, Mapping):
            number = port.get("port")
            out.append(
                (
                    _str(port, "name"),
                    number if isinstance(number, int) else -1,
                    port.get("targetPort", number),
                    _str(port, "protocol") or "TCP",
                )
            )
    return out


def service_patch(
    desired: DesiredService, existing: Mapping[str, object]
) -> dict[str, object] | None:
    """A JSON merge patch that turns ``existing`` into ``desired``; None when it already is.

    Only the fields the operator owns are compared: what the API server fills in
    (cluster IPs, ip families, session affinity) and other labels are left alone.
    """
    meta = _mapping(existing, "metadata")
    spec = _mapping(existing, "spec")
    meta_patch: dict[str, object] = {}
    spec_patch: dict[str, object] = {}
    labels = _mapping(meta, "labels")
    wanted_labels = desired.labels()
    if any(labels.get(k) != v for k, v in wanted_labels.items()):
        meta_patch["labels"] = wanted_labels
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list) or refs != [desired.owner_reference()]:
        meta_patch["ownerReferences"] = [desired.owner_reference()]
    selector = dict(_mapping(spec, "selector"))
    wanted_selector = dict(desired.selector)
    if selector != wanted_selector:
        # A merge patch merges maps: labels no longer wanted are removed with null.
        removed: dict[str, object] = {k: None for k in selector if k not in wanted_selector}
        spec_patch["selector"] = {**removed, **wanted_selector}
    wanted_ports = [
        (str(p["name"]), p["port"], p["targetPort"], str(p["protocol"])) for p in desired.ports()
    ]
    if _ports_of(spec) != wanted_ports:
        spec_patch["ports"] = desired.ports()
    if spec.get("publishNotReadyAddresses", False) is not False:
        spec_patch["publishNotReadyAddresses"] = False
    patch: dict[str, object] = {}
    if meta_patch:
        patch["metadata"] = meta_patch
    if spec_patch:
        patch["spec"] = spec_patch
    return patch or None


def is_headless(service: Mapping[str, object]) -> bool:
    """Whether ``service`` has no cluster IP (which cannot be changed in place)."""
    return _mapping(service, "spec").get("clusterIP") == "None"
