"""The pure core of the injector: (pod, injector config) -> JSON Patch that adds the sidecar.

Second step of an admission request, after ``injector.annotations`` has read
the pod's annotations: :func:`build_patch` returns the RFC 6902 operations
the webhook sends back to the API server. It does no I/O, so every case is a
unit test. The sidecar becomes a native sidecar (an init container with
``restartPolicy: Always``, Kubernetes >= 1.29), which starts before the app
and does not keep a Job's pod alive, or, for older clusters, a regular
container.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from daprlite import __version__
from daprlite.injector.annotations import (
    INJECTED_ANNOTATION,
    TRUST_DOMAIN_MAX,
    InjectionError,
    SidecarSpec,
    annotations_of,
    is_enabled,
    is_valid_trust_domain,
    read_spec,
)
from daprlite.security.acl import DEFAULT_TRUST_DOMAIN

SIDECAR_NAME = "daprlite"
# The app reaches the public APIs on localhost only (they bind to loopback unless the
# sidecar-listen-addresses annotation says otherwise); other pods reach the sidecar only on
# the internal ports, and the kubelet's probes on the public port (health and metadata reads).
HTTP_PORT = 3500
GRPC_PORT = 50001
PUBLIC_PORT = 3501  # GET /v1.0/healthz[/outbound] and /v1.0/metadata: the kubelet's probes
INTERNAL_PORT = 50002
PROXY_PORT = 50003  # mTLS listener for proxied gRPC calls between sidecars
METRICS_PORT = 9090  # Prometheus scrapes, on the pod's IP (Dapr's default)
# Added unless the pod sets any of them itself (then it has its own scrape set-up).
PROMETHEUS_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
API_LISTEN_ADDRESS = "127.0.0.1"
INTERNAL_LISTEN_ADDRESS = "0.0.0.0"
TOKEN_VOLUME = "daprlite-identity-token"
TOKEN_DIR = "/var/run/secrets/daprlite.io/sentrytoken"
TOKEN_AUDIENCE = "daprlite-sentry"
TOKEN_SECONDS = 7200
TMP_VOLUME = "daprlite-tmp"
DEFAULT_SENTRY_ADDRESS = "daprlite-sentry.daprlite-system.svc:443"
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
SIDECAR_UID = 65532  # the non-root user of deploy/docker/Dockerfile


class JsonPatchOp(TypedDict):
    """One RFC 6902 operation; the injector only ever adds."""

    op: str
    path: str
    value: object


@dataclass(frozen=True, slots=True)
class InjectorConfig:
    """The injector's own settings (its flags), the same for every pod it patches."""

    sidecar_image: str = f"daprlite:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    trust_anchors: str = ""  # the CA bundle PEM the sidecars trust; empty: not passed
    sentry_address: str = DEFAULT_SENTRY_ADDRESS
    native_sidecar: bool = True  # False: a regular container (clusters before 1.29)

    def __post_init__(self) -> None:
        if not self.sidecar_image.strip():
            raise ValueError("sidecar_image: expected an image reference, got ''")
        if self.image_pull_policy not in PULL_POLICIES:
            raise ValueError(
                f"image_pull_policy: expected one of {', '.join(PULL_POLICIES)}, "
                f"got {self.image_pull_policy!r}"
            )
        if not is_valid_trust_domain(self.trust_domain):
            raise ValueError(
                "trust_domain: expected lower-case letters, digits, '-' and '.' (at most "
                f"{TRUST_DOMAIN_MAX}) such as 'public', got {self.trust_domain!r}"
            )
        if not self.sentry_address.strip():
            raise ValueError("sentry_address: expected host:port")


def escape_pointer(token: str) -> str:
    """One JSON Pointer reference token (RFC 6901): ``~`` -> ``~0``, ``/`` -> ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def already_injected(pod: Mapping[str, object]) -> bool:
    """A sidecar is there already (or the marker annotation says the injector has run)."""
    marker = annotations_of(pod).get(INJECTED_ANNOTATION, "")
    if marker.strip().lower() == "true":
        return True
    spec = _object(pod, "spec")
    # Only string names count: a malformed one cannot be the sidecar's (and the API server
    # refuses the pod for it anyway).
    names = {_name(c) for key in ("containers", "initContainers") for c in _list(spec, key)}
    return SIDECAR_NAME in names


def build_patch(pod: Mapping[str, object], config: InjectorConfig) -> list[JsonPatchOp]:
    """The operations that add the sidecar to ``pod``; ``[]`` when nothing is to be done.

    Raises :class:`InjectionError` (naming the annotation) for a malformed annotation.
    """
    if not is_enabled(pod) or already_injected(pod):
        return []
    sidecar_spec = read_spec(pod)
    spec = _object(pod, "spec")
    containers = _list(spec, "containers")
    if not containers:
        raise InjectionError("spec.containers", "[]", "expected at least one container")
    native = (
        sidecar_spec.native_sidecar
        if sidecar_spec.native_sidecar is not None
        else config.native_sidecar
    )
    ops = _app_env_ops(containers, sidecar_spec.app_id)
    ops += _volume_ops(spec)
    sidecar = sidecar_container(sidecar_spec, config, native)
    if not native:
        ops.append(_add("/spec/containers/-", sidecar))
    elif spec.get("initContainers"):
        # First, so that the pod's own init containers can already call their sidecar.
        ops.append(_add("/spec/initContainers/0", sidecar))
    else:
        ops.append(_add("/spec/initContainers", [sidecar]))
    ops += _prometheus_ops(pod, sidecar_spec)
    ops.append(_annotation_op(INJECTED_ANNOTATION, "true"))
    return ops


def _prometheus_ops(pod: Mapping[str, object], spec: SidecarSpec) -> list[JsonPatchOp]:
    """``prometheus.io/*``: where a cluster's Prometheus finds the sidecar's metrics."""
    if not spec.enable_metrics:
        return []
    existing = annotations_of(pod)
    if any(key in existing for key in PROMETHEUS_ANNOTATIONS):
        return []
    port = str(spec.metrics_port or METRICS_PORT)
    values = ("true", port, "/")
    return [_annotation_op(k, v) for k, v in zip(PROMETHEUS_ANNOTATIONS, values, strict=True)]


def sidecar_container(spec: SidecarSpec, config: InjectorConfig, native: bool) -> dict[str, object]:
    """The sidecar container (an init container entry when ``native``)."""
    container: dict[str, object] = {
        "name": SIDECAR_NAME,
        "image": config.sidecar_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": sidecar_args(spec, config),
        "env": _sidecar_env(spec, config),
        "ports": _container_ports(spec),
        # Ready means the sidecar *and* its app are up (``/v1.0/healthz`` waits for the app),
        # so the pod only receives traffic then. Startup and liveness use the sidecar's own
        # health: a native sidecar must start before the app, so a startup probe that waited
        # for the app would never pass, and a slow app must not get its sidecar restarted.
        # All three go to the public port: the kubelet probes the pod's IP, and the API ports
        # listen on loopback only.
        "readinessProbe": _probe("/v1.0/healthz", period=5, failures=3),
        "livenessProbe": _probe("/v1.0/healthz/outbound", period=10, failures=6),
        "startupProbe": _probe("/v1.0/healthz/outbound", period=1, failures=60),
        # The image's user, set here too so that a pod-level runAsUser (even 0) cannot
        # turn the sidecar into root or make runAsNonRoot refuse to start it.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_UID,
            "runAsGroup": SIDECAR_UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    if native:
        container["restartPolicy"] = "Always"
    return container


def _container_ports(spec: SidecarSpec) -> list[dict[str, object]]:
    ports = [
        _port("dapr-public", PUBLIC_PORT),
        _port("dapr-internal", INTERNAL_PORT),
        _port("dapr-proxy", PROXY_PORT),
    ]
    if spec.enable_metrics:
        ports.append(_port("dapr-metrics", spec.metrics_port or METRICS_PORT))
    return ports


def sidecar_args(spec: SidecarSpec, config: InjectorConfig) -> list[str]:
    """``daprlite sidecar ...`` flags, in the shared conventions' order."""
    args = ["sidecar", "--mode", "kubernetes", "--app-id", spec.app_id]
    if spec.app_port is not None:
        args += ["--app-port", str(spec.app_port)]
    if spec.app_protocol is not None:
        args += ["--app-protocol", spec.app_protocol]
    args += [
        "--dapr-http-port",
        str(HTTP_PORT),
        "--dapr-grpc-port",
        str(GRPC_PORT),
        "--dapr-internal-grpc-port",
        str(INTERNAL_PORT),
        "--internal-proxy-port",
        str(PROXY_PORT),
        "--dapr-public-port",
        str(PUBLIC_PORT),
        "--dapr-listen-addresses",
        ",".join(spec.listen_addresses or (API_LISTEN_ADDRESS,)),
        "--internal-listen-addresses",
        INTERNAL_LISTEN_ADDRESS,
    ]
    if spec.enable_metrics:
        args += ["--metrics-port", str(spec.metrics_port or METRICS_PORT)]
    else:
        args += ["--enable-metrics", "false"]
    if spec.config is not None:
        args += ["--config", spec.config]
    if spec.log_level is not None:
        args += ["--log-level", spec.log_level]
    if spec.enable_api_logging:
        args.append("--enable-api-logging")
    if spec.app_max_concurrency is not None:
        args += ["--app-max-concurrency", str(spec.app_max_concurrency)]
    if spec.graceful_shutdown_seconds is not None:
        args += ["--dapr-graceful-shutdown-seconds", str(spec.graceful_shutdown_seconds)]
    args += ["--enable-mtls", "--sentry-address", config.sentry_address]
    return args


def _sidecar_env(spec: SidecarSpec, config: InjectorConfig) -> list[dict[str, object]]:
    env: list[dict[str, object]] = [
        _field_env("NAMESPACE", "metadata.namespace"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("DAPRLITE_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("DAPR_HOST_IP", "status.podIP"),
        {"name": "DAPRLITE_TRUST_DOMAIN", "value": config.trust_domain},
    ]
    if config.trust_anchors:
        env.append({"name": "DAPR_TRUST_ANCHORS", "value": config.trust_anchors})
    env.append({"name": "DAPRLITE_SENTRY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"})
    env += [{"name": name, "value": value} for name, value in spec.env]
    return env


def app_env(app_id: str) -> list[tuple[str, str]]:
    """What every app container learns about its sidecar."""
    return [
        ("DAPR_HTTP_PORT", str(HTTP_PORT)),
        ("DAPR_GRPC_PORT", str(GRPC_PORT)),
        ("APP_ID", app_id),
    ]


def _app_env_ops(containers: Sequence[object], app_id: str) -> list[JsonPatchOp]:
    ops: list[JsonPatchOp] = []
    for i, container in enumerate(containers):
        if not isinstance(container, Mapping):
            raise InjectionError(f"spec.containers[{i}]", str(container)[:80], "expected an object")
        existing = container.get("env")
        if existing is not None and (
            not isinstance(existing, Sequence) or isinstance(existing, str)
        ):
            raise InjectionError(f"spec.containers[{i}].env", str(existing)[:80], "expected a list")
        names = {_name(e) for e in existing or ()}
        missing = [{"name": n, "value": v} for n, v in app_env(app_id) if n not in names]
        if existing is None:
            # A container without ``env``: the array itself has to be created.
            ops.append(_add(f"/spec/containers/{i}/env", missing))
        else:
            ops += [_add(f"/spec/containers/{i}/env/-", var) for var in missing]
    return ops


def _volume_ops(spec: Mapping[str, object]) -> list[JsonPatchOp]:
    volumes = _list(spec, "volumes")
    taken = {_name(v) for v in volumes}
    for name in (TOKEN_VOLUME, TMP_VOLUME):
        if name in taken:
            raise InjectionError("spec.volumes", name, "expected no volume of this name (reserved)")
    new: list[dict[str, object]] = [
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": TOKEN_AUDIENCE,
                            "expirationSeconds": TOKEN_SECONDS,
                            "path": "token",
                        }
                    }
                ]
            },
        },
        {"name": TMP_VOLUME, "emptyDir": {}},
    ]
    if spec.get("volumes") is None:
        return [_add("/spec/volumes", new)]
    return [_add("/spec/volumes/-", v) for v in new]


def _annotation_op(key: str, value: str) -> JsonPatchOp:
    # The pod has an annotations map: it is what asked for the sidecar.
    return _add(f"/metadata/annotations/{escape_pointer(key)}", value)


def _resources(spec: SidecarSpec) -> dict[str, dict[str, str]]:
    r = spec.resources
    out: dict[str, dict[str, str]] = {}
    for section, cpu, memory in (
        ("requests", r.cpu_request, r.memory_request),
        ("limits", r.cpu_limit, r.memory_limit),
    ):
        values = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
        if values:
            out[section] = values
    return out


def _probe(path: str, period: int, failures: int) -> dict[str, object]:
    return {
        "httpGet": {"path": path, "port": PUBLIC_PORT},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _port(name: str, number: int) -> dict[str, object]:
    return {"name": name, "containerPort": number, "protocol": "TCP"}


def _field_env(name: str, field_path: str) -> dict[str, object]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def _name(item: object) -> str | None:
    """``item["name"]`` when ``item`` is an object whose name is a string, else None."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return name if isinstance(name, str) else None


def _add(path: str, value: object) -> JsonPatchOp:
    return {"op": "add", "path": path, "value": value}


def _object(parent: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InjectionError(key, str(value)[:80], "expected an object")
    return value


def _list(spec: Mapping[str, object], key: str) -> Sequence[object]:
    value = spec.get(key)
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InjectionError(f"spec.{key}", str(value)[:80], "expected a list")
    return value
