"""The injector's pure core: annotations -> JSON Patch, applied to real pod specs.

Every patch is applied with ``jsonpatch`` (RFC 6902) and the patched pod is
validated against the official Kubernetes OpenAPI schema (strict: no unknown
fields) with ``kubernetes_validate``, for the oldest version with native
sidecars in the schema we support (1.29) and the newest the package ships.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from decimal import Decimal

import jsonpatch
import kubernetes_validate
import pytest

from daprlite.injector import InjectionError, InjectorConfig, build_patch, read_spec
from daprlite.injector.annotations import default_app_id, quantity_value
from daprlite.injector.patch import escape_pointer
from daprlite.injector.server import AdmissionRequest, admit

K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CONFIG = InjectorConfig(
    sidecar_image="registry.example/daprlite:1.2.3",
    trust_domain="example.org",
    trust_anchors="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
)
BASE_ARGS = [
    "--dapr-http-port",
    "3500",
    "--dapr-grpc-port",
    "50001",
    "--dapr-internal-grpc-port",
    "50002",
    "--internal-proxy-port",
    "50003",
    "--dapr-public-port",
    "3501",
    "--dapr-listen-addresses",
    "127.0.0.1",
    "--internal-listen-addresses",
    "0.0.0.0",
    "--metrics-port",
    "9090",
]
MTLS_ARGS = ["--enable-mtls", "--sentry-address", "daprlite-sentry.daprlite-system.svc:443"]


def pod(annotations: Mapping[str, str] | None = None, **spec: object) -> dict[str, object]:
    metadata: dict[str, object] = {"name": "web-1", "namespace": "shop"}
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": "shop/web:1"}], **spec},
    }


def deployment_pod() -> dict[str, object]:
    """A Deployment's pod template as the API server sees the pod on CREATE (no name yet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": "7d9f8b6c5d"},
            "annotations": {
                "daprlite.io/enabled": "true",
                "daprlite.io/app-port": "8080",
                "daprlite.io/sidecar-memory-limit": "256Mi",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "checkout-7d9f8b6c5d",
                    "uid": "2c6f2f3e-4a51-4f0c-9f0e-0a1b2c3d4e5f",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "checkout",
            "containers": [
                {
                    "name": "checkout",
                    "image": "shop/checkout:2.0",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                }
            ],
        },
    }


def job_pod() -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "nightly-report-",
            "namespace": "batch",
            "labels": {"job-name": "nightly-report"},
            "annotations": {"dapr.io/enabled": "true", "dapr.io/log-level": "debug"},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": "nightly-report",
                    "uid": "8a4e9c1b-1f0d-4a7e-b1c2-3d4e5f6a7b8c",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "report", "image": "batch/report:1", "args": ["--all"]}],
        },
    }


def busy_pod() -> dict[str, object]:
    """Init containers, volumes and env of its own; the app already sets DAPR_HTTP_PORT."""
    return pod(
        {"daprlite.io/enabled": "true", "daprlite.io/app-id": "busy"},
        initContainers=[
            {"name": "migrate", "image": "shop/migrate:1"},
            {"name": "warm", "image": "shop/warm:1", "env": [{"name": "X", "value": "1"}]},
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
        containers=[
            {
                "name": "app",
                "image": "shop/web:1",
                "env": [
                    {"name": "DAPR_HTTP_PORT", "value": "9999"},
                    {"name": "MODE", "value": "a"},
                ],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "logger", "image": "shop/logger:1"},
        ],
    )


def patched(source: Mapping[str, object], config: InjectorConfig = CONFIG) -> dict[str, object]:
    """Build the patch, apply it to a copy, validate the result; the source is unchanged."""
    before = copy.deepcopy(source)
    ops = build_patch(source, config)
    assert ops, "expected a non-empty patch"
    assert all(op["op"] == "add" for op in ops)
    result: dict[str, object] = jsonpatch.apply_patch(source, ops)
    assert source == before, "build_patch must not change its input"
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(result, version, strict=True)
    return result


def spec_of(p: Mapping[str, object]) -> dict[str, list[dict[str, object]]]:
    spec = p["spec"]
    assert isinstance(spec, dict)
    return spec


def sidecar_of(p: Mapping[str, object], native: bool = True) -> dict[str, object]:
    found = [c for c in spec_of(p)["initContainers" if native else "containers"]]
    matches = [c for c in found if c["name"] == "daprlite"]
    assert len(matches) == 1
    return matches[0]


def env_map(container: Mapping[str, object]) -> dict[str, object]:
    env = container.get("env") or []
    assert isinstance(env, list)
    out = {}
    for e in env:
        out[e["name"]] = e.get("value", e.get("valueFrom"))
    assert len(out) == len(env), f"duplicate env names in {env}"
    return out


# --- table: annotations -> sidecar args -----------------------------------------------------

ARG_CASES = [
    pytest.param(
        {"daprlite.io/enabled": "true", "daprlite.io/app-id": "cart"},
        ["--app-id", "cart", *BASE_ARGS],
        id="minimal",
    ),
    pytest.param(
        {
            "daprlite.io/enabled": "true",
            "daprlite.io/app-id": "cart",
            "daprlite.io/app-port": "8080",
            "daprlite.io/app-protocol": "grpc",
            "daprlite.io/config": "tracing",
            "daprlite.io/log-level": "debug",
            "daprlite.io/enable-api-logging": "true",
            "daprlite.io/app-max-concurrency": "10",
            "daprlite.io/graceful-shutdown-seconds": "20",
        },
        [
            "--app-id",
            "cart",
            "--app-port",
            "8080",
            "--app-protocol",
            "grpc",
            *BASE_ARGS,
            "--config",
            "tracing",
            "--log-level",
            "debug",
            "--enable-api-logging",
            "--app-max-concurrency",
            "10",
            "--dapr-graceful-shutdown-seconds",
            "20",
        ],
        id="every-annotation",
    ),
    pytest.param(
        {"dapr.io/enabled": "true", "dapr.io/app-id": "legacy", "dapr.io/app-port": "3000"},
        ["--app-id", "legacy", "--app-port", "3000", *BASE_ARGS],
        id="dapr.io-names",
    ),
    pytest.param(
        {
            "dapr.io/enabled": "true",
            "daprlite.io/app-id": "new",
            "dapr.io/app-id": "old",
            "dapr.io/app-port": "1111",
            "daprlite.io/app-port": "2222",
            "dapr.io/enable-api-logging": "true",
            "daprlite.io/enable-api-logging": "false",
        },
        ["--app-id", "new", "--app-port", "2222", *BASE_ARGS],
        id="daprlite.io-wins",
    ),
    pytest.param(
        {
            "dapr.io/enabled": "true",
            "dapr.io/app-id": "open",
            "dapr.io/sidecar-listen-addresses": " 0.0.0.0, ::1 ,",
        },
        [
            "--app-id",
            "open",
            *BASE_ARGS[:11],
            "0.0.0.0,::1",
            *BASE_ARGS[12:],
        ],
        id="sidecar-listen-addresses",
    ),
    pytest.param(
        {"dapr.io/enabled": "true", "dapr.io/app-id": "quiet", "dapr.io/enable-metrics": "false"},
        ["--app-id", "quiet", *BASE_ARGS[:-2], "--enable-metrics", "false"],
        id="metrics-off",
    ),
    pytest.param(
        {"dapr.io/enabled": "true", "dapr.io/app-id": "other", "dapr.io/metrics-port": "9095"},
        ["--app-id", "other", *BASE_ARGS[:-1], "9095"],
        id="metrics-port",
    ),
]


@pytest.mark.parametrize(("annotations", "args"), ARG_CASES)
def test_annotations_become_the_sidecar_args_in_convention_order(
    annotations: dict[str, str], args: list[str]
) -> None:
    sidecar = sidecar_of(patched(pod(annotations)))
    assert sidecar["args"] == ["sidecar", "--mode", "kubernetes", *args, *MTLS_ARGS]


def test_sidecar_is_a_native_sidecar_with_probes_security_and_identity() -> None:
    result = patched(pod({"daprlite.io/enabled": "true", "daprlite.io/app-id": "cart"}))
    sidecar = sidecar_of(result)
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "registry.example/daprlite:1.2.3"
    # The API ports (3500, 50001) are for the app on localhost: not container ports.
    assert sidecar["ports"] == [
        {"name": "dapr-public", "containerPort": 3501, "protocol": "TCP"},
        {"name": "dapr-internal", "containerPort": 50002, "protocol": "TCP"},
        {"name": "dapr-proxy", "containerPort": 50003, "protocol": "TCP"},
        {"name": "dapr-metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    # Every probe goes to the health-only public port, the one that listens on the pod's IP.
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/v1.0/healthz", "port": 3501}
    # The startup probe gates the app's start, so it must not wait for the app itself.
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/v1.0/healthz/outbound", "port": 3501}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/v1.0/healthz/outbound", "port": 3501}
    assert (
        sidecar["livenessProbe"]["failureThreshold"] > sidecar["readinessProbe"]["failureThreshold"]
    )
    assert sidecar["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "resources" not in sidecar
    env = env_map(sidecar)
    assert env["NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["DAPRLITE_SERVICE_ACCOUNT"] == {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}
    assert env["DAPR_HOST_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["DAPRLITE_TRUST_DOMAIN"] == "example.org"
    assert env["DAPR_TRUST_ANCHORS"] == CONFIG.trust_anchors
    token_file = "/var/run/secrets/daprlite.io/sentrytoken/token"
    assert env["DAPRLITE_SENTRY_TOKEN_FILE"] == token_file
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts["daprlite-identity-token"]["mountPath"] + "/token" == token_file
    assert mounts["daprlite-tmp"]["mountPath"] == "/tmp"
    volumes = {v["name"]: v for v in spec_of(result)["volumes"]}
    assert volumes["daprlite-identity-token"]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "daprlite-sentry",
                "expirationSeconds": 7200,
                "path": "token",
            }
        }
    ]
    assert volumes["daprlite-tmp"] == {"name": "daprlite-tmp", "emptyDir": {}}
    assert result["metadata"]["annotations"]["daprlite.io/injected"] == "true"


def test_resources_and_env_annotations_reach_the_sidecar() -> None:
    result = patched(
        pod(
            {
                "daprlite.io/enabled": "true",
                "daprlite.io/app-id": "cart",
                "daprlite.io/sidecar-cpu-request": "100m",
                "daprlite.io/sidecar-cpu-limit": "1.5",
                "dapr.io/sidecar-memory-request": "64Mi",
                "daprlite.io/sidecar-memory-limit": "1e9",
                "daprlite.io/env": "GOMAXPROCS=2, FEATURE=a=b ,",
            }
        )
    )
    sidecar = sidecar_of(result)
    assert sidecar["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "1.5", "memory": "1e9"},
    }
    env = env_map(sidecar)
    assert env["GOMAXPROCS"] == "2"
    assert env["FEATURE"] == "a=b"


def test_app_containers_get_ports_and_app_id_but_init_containers_do_not() -> None:
    result = patched(busy_pod())
    app, logger = spec_of(result)["containers"]
    # The app's own DAPR_HTTP_PORT stays, once; the missing ones are added.
    assert env_map(app) == {
        "DAPR_HTTP_PORT": "9999",
        "MODE": "a",
        "DAPR_GRPC_PORT": "50001",
        "APP_ID": "busy",
    }
    assert env_map(logger) == {
        "DAPR_HTTP_PORT": "3500",
        "DAPR_GRPC_PORT": "50001",
        "APP_ID": "busy",
    }
    init = spec_of(result)["initContainers"]
    assert [c["name"] for c in init] == ["daprlite", "migrate", "warm"]
    assert "env" not in init[1]
    assert env_map(init[2]) == {"X": "1"}
    assert [v["name"] for v in spec_of(result)["volumes"]] == [
        "data",
        "daprlite-identity-token",
        "daprlite-tmp",
    ]


def test_without_native_sidecars_the_sidecar_is_the_last_container() -> None:
    # --no-native-sidecar: the sidecar goes last in containers, init containers are untouched.
    result = patched(busy_pod(), InjectorConfig(native_sidecar=False))
    assert [c["name"] for c in spec_of(result)["containers"]] == ["app", "logger", "daprlite"]
    assert [c["name"] for c in spec_of(result)["initContainers"]] == ["migrate", "warm"]
    sidecar = sidecar_of(result, native=False)
    assert "restartPolicy" not in sidecar
    assert "DAPR_TRUST_ANCHORS" not in env_map(sidecar)  # the injector was given none


def test_deployment_pod_takes_the_deployment_name_as_app_id() -> None:
    result = patched(deployment_pod())
    sidecar = sidecar_of(result)
    assert sidecar["args"][3:5] == ["--app-id", "checkout"]
    assert sidecar["resources"] == {"limits": {"memory": "256Mi"}}
    assert env_map(spec_of(result)["containers"][0])["APP_ID"] == "checkout"


def test_job_pod_gets_a_native_sidecar_so_the_job_can_complete() -> None:
    result = patched(job_pod())
    assert spec_of(result)["restartPolicy"] == "Never"
    sidecar = sidecar_of(result)
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"][3:5] == ["--app-id", "nightly-report"]
    assert "--log-level" in sidecar["args"]
    assert [c["name"] for c in spec_of(result)["containers"]] == ["report"]


@pytest.mark.parametrize(
    ("value", "config_native", "native"),
    [("false", True, False), ("true", False, True), (None, False, False)],
)
def test_native_sidecar_annotation_overrides_the_injector_default(
    value: str | None, config_native: bool, native: bool
) -> None:
    annotations = {"daprlite.io/enabled": "true", "daprlite.io/app-id": "cart"}
    if value is not None:
        annotations["daprlite.io/native-sidecar"] = value
    result = patched(pod(annotations), InjectorConfig(native_sidecar=config_native))
    sidecar = sidecar_of(result, native=native)
    assert ("restartPolicy" in sidecar) is native
    other = "containers" if native else "initContainers"
    assert all(c["name"] != "daprlite" for c in spec_of(result).get(other, []))


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"daprlite.io/enabled": "false"}, {"dapr.io/enabled": "no"}, {"other": "true"}],
)
def test_pod_not_asking_for_a_sidecar_gets_an_empty_patch(
    annotations: dict[str, str] | None,
) -> None:
    source = pod(annotations)
    assert build_patch(source, CONFIG) == []
    kubernetes_validate.validate(source, "1.29", strict=True)


# --- idempotency --------------------------------------------------------------------------


@pytest.mark.parametrize("config", [CONFIG, InjectorConfig(native_sidecar=False)])
@pytest.mark.parametrize("make", [deployment_pod, job_pod, busy_pod])
def test_patching_a_patched_pod_again_changes_nothing(
    make: Callable[[], dict[str, object]], config: InjectorConfig
) -> None:
    once = patched(make(), config)
    assert build_patch(once, config) == []
    # Even without the marker (removed by someone), the container name is enough.
    del once["metadata"]["annotations"]["daprlite.io/injected"]
    assert build_patch(once, config) == []


def test_marker_annotation_alone_prevents_injection() -> None:
    source = pod(
        {"daprlite.io/enabled": "true", "daprlite.io/app-id": "a", "daprlite.io/injected": "true"}
    )
    assert build_patch(source, CONFIG) == []


def test_marker_key_is_escaped_in_the_json_pointer() -> None:
    assert escape_pointer("daprlite.io/injected") == "daprlite.io~1injected"
    assert escape_pointer("a~b/c") == "a~0b~1c"
    ops = build_patch(pod({"daprlite.io/enabled": "true", "daprlite.io/app-id": "a"}), CONFIG)
    assert ops[-1]["path"] == "/metadata/annotations/daprlite.io~1injected"


# --- app id -------------------------------------------------------------------------------


def _meta_pod(**metadata: object) -> dict[str, object]:
    return {"metadata": metadata, "spec": {"containers": [{"name": "a", "image": "i"}]}}


@pytest.mark.parametrize(
    ("metadata", "app_id"),
    [
        (
            {
                "generateName": "web-5c9d-",
                "labels": {"pod-template-hash": "5c9d"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5c9d", "controller": True}],
            },
            "web",
        ),
        (
            {"name": "db-0", "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]},
            "db",
        ),
        (
            {
                "ownerReferences": [
                    {"kind": "Other", "name": "not-me"},
                    {"kind": "DaemonSet", "name": "agent", "controller": True},
                ]
            },
            "agent",
        ),
        # A ReplicaSet of its own (no template hash label) keeps its name.
        ({"ownerReferences": [{"kind": "ReplicaSet", "name": "solo"}]}, "solo"),
        ({"generateName": "batch-"}, "batch"),
        ({"name": "lonely"}, "lonely"),
    ],
)
def test_default_app_id_is_the_owner_name(metadata: dict[str, object], app_id: str) -> None:
    assert default_app_id(_meta_pod(**metadata)) == app_id


def test_derived_app_id_that_is_not_a_dns_label_names_the_app_id_annotation() -> None:
    source = pod({"daprlite.io/enabled": "true"})
    source["metadata"]["name"] = "Web.Front"
    with pytest.raises(InjectionError) as err:
        build_patch(source, CONFIG)
    assert err.value.field == "daprlite.io/app-id"
    assert "Web.Front" in str(err.value)


# --- malformed annotations ----------------------------------------------------------------

BAD = [
    ("enabled", "maybe"),
    ("app-id", "Cart"),
    ("app-id", "cart_service"),
    ("app-id", "-cart"),
    ("app-id", "a" * 55),
    ("app-port", "http"),
    ("app-port", "0"),
    ("app-port", "70000"),
    ("app-protocol", "ftp"),
    ("config", "My Config"),
    ("log-level", "verbose"),
    ("enable-api-logging", "sometimes"),
    ("app-max-concurrency", "0"),
    ("app-max-concurrency", "many"),
    ("sidecar-cpu-request", "1 cpu"),
    ("sidecar-cpu-limit", "-1"),
    ("sidecar-memory-request", "12MB"),
    ("sidecar-memory-limit", "1.2.3Gi"),
    ("sidecar-memory-limit", "Mi"),
    ("env", "NOEQUALS"),
    ("env", "1BAD=x"),
    ("env", "A=1,A=2"),
    ("env", "NAMESPACE=other"),
    ("sidecar-listen-addresses", "localhost"),
    ("sidecar-listen-addresses", "0.0.0.0,10.0.0.300"),
    ("sidecar-listen-addresses", " , "),
    ("graceful-shutdown-seconds", "-5"),
    ("graceful-shutdown-seconds", "5s"),
    ("enable-metrics", "perhaps"),
    ("metrics-port", "0"),
]


@pytest.mark.parametrize("prefix", ["daprlite.io/", "dapr.io/"])
@pytest.mark.parametrize(("name", "value"), BAD)
def test_malformed_annotation_is_refused_naming_it(prefix: str, name: str, value: str) -> None:
    annotations = {prefix + "enabled": "true", prefix + "app-id": "cart", prefix + name: value}
    with pytest.raises(InjectionError) as err:
        build_patch(pod(annotations), CONFIG)
    assert err.value.field == prefix + name
    assert prefix + name in str(err.value)
    if name == "env":
        # Never echoed: the other pairs of the annotation are often tokens.
        assert err.value.value is None
        assert value not in str(err.value)
    else:
        assert err.value.value == value


def test_a_bad_env_item_names_its_position_or_variable_but_no_value() -> None:
    secret, other = "tok-9f8e7d6c5b4a", "pa55w0rd-xyz"
    cases = {
        f"TOKEN={secret},PASSWORD={other},BROKEN": "item 3 has no '='",
        # A value with a comma in it: the piece after the comma is no pair, and no name.
        f"TOKEN={secret},{other}": "item 2 has no '='",
        f"TOKEN={secret},bad name={other}": "item 2: expected a variable name",
        f"TOKEN={secret},DAPR_TRUST_ANCHORS={other}": "DAPR_TRUST_ANCHORS is set by the injector",
        f"TOKEN={secret},TOKEN={other}": "TOKEN is repeated",
    }
    for value, expected in cases.items():
        annotations = {"daprlite.io/enabled": "true", "daprlite.io/app-id": "a"}
        annotations["daprlite.io/env"] = value
        with pytest.raises(InjectionError) as err:
            build_patch(pod(annotations), CONFIG)
        message = str(err.value)
        assert message.startswith("daprlite.io/env: "), message
        assert expected in message, message
        assert secret not in message and other not in message, message
        # What the webhook answers (and logs) is that same message.
        response = admit(_review(pod(annotations)), CONFIG)
        assert response["allowed"] is False
        assert secret not in json.dumps(response) and other not in json.dumps(response)


def test_native_sidecar_annotation_must_be_boolean() -> None:
    annotations = {
        "daprlite.io/enabled": "true",
        "daprlite.io/app-id": "a",
        "daprlite.io/native-sidecar": "auto",
    }
    with pytest.raises(InjectionError, match=r"daprlite\.io/native-sidecar"):
        build_patch(pod(annotations), CONFIG)


def test_request_above_limit_names_the_request_annotation() -> None:
    annotations = {
        "daprlite.io/enabled": "true",
        "daprlite.io/app-id": "a",
        "daprlite.io/sidecar-memory-request": "1Gi",
        "dapr.io/sidecar-memory-limit": "512Mi",
    }
    with pytest.raises(InjectionError) as err:
        build_patch(pod(annotations), CONFIG)
    assert err.value.field == "daprlite.io/sidecar-memory-request"
    assert "dapr.io/sidecar-memory-limit" in str(err.value)


def _review(source: Mapping[str, object]) -> AdmissionRequest:
    return AdmissionRequest("uid-1", "Pod", "CREATE", "shop", "", source)


MALFORMED_NAMES = [
    pytest.param({"containers": [{"name": ["x"], "image": "i"}]}, id="container-name-list"),
    pytest.param(
        {"initContainers": [{"name": {"a": 1}, "image": "i"}]}, id="init-container-name-map"
    ),
    pytest.param(
        {"containers": [{"name": "app", "image": "i", "env": [{"name": {}}]}]},
        id="env-name-map",
    ),
    pytest.param(
        {"containers": [{"name": "app", "image": "i", "env": [{"name": ["APP_ID"]}, 7]}]},
        id="env-name-list",
    ),
    pytest.param({"volumes": [{"name": [1], "emptyDir": {}}]}, id="volume-name-list"),
    pytest.param({"volumes": [{"name": None}, "x"]}, id="volume-not-an-object"),
]


@pytest.mark.parametrize("spec", MALFORMED_NAMES)
def test_names_that_are_not_strings_are_ignored_not_a_server_error(
    spec: dict[str, object],
) -> None:
    source = pod({"daprlite.io/enabled": "true", "daprlite.io/app-id": "a"}, **spec)
    # Only string names count: a malformed one is neither the sidecar, nor a taken env or
    # volume name. (The API server then refuses the pod for it, naming the field.)
    response = admit(_review(source), CONFIG)
    assert response["allowed"] is True
    ops = json.loads(base64.b64decode(str(response["patch"])))
    result = jsonpatch.apply_patch(source, ops)
    assert any(c["name"] == "daprlite" for c in spec_of(result)["initContainers"])
    names = [v["name"] for v in spec_of(result)["volumes"] if isinstance(v, dict)]
    assert names[-2:] == ["daprlite-identity-token", "daprlite-tmp"]
    app_env = env_map_loose(spec_of(result)["containers"][0])
    assert app_env["APP_ID"] == "a"


def env_map_loose(container: Mapping[str, object]) -> dict[str, object]:
    env = container.get("env") or []
    assert isinstance(env, list)
    return {
        e["name"]: e.get("value")
        for e in env
        if isinstance(e, dict) and isinstance(e.get("name"), str)
    }


def test_a_non_string_annotation_is_refused_by_key_without_the_other_values() -> None:
    source = pod({"daprlite.io/enabled": "true", "daprlite.io/env": "TOKEN=tok-77aa88bb"})
    source["metadata"]["annotations"]["daprlite.io/app-port"] = 8080
    response = admit(_review(source), CONFIG)
    assert response["allowed"] is False
    message = str(response["status"]["message"])
    assert message == "metadata.annotations['daprlite.io/app-port']: expected a string value"
    assert "tok-77aa88bb" not in json.dumps(response)


def test_an_env_that_is_a_string_is_refused_naming_it() -> None:
    source = pod(
        {"daprlite.io/enabled": "true", "daprlite.io/app-id": "a"},
        containers=[{"name": "app", "image": "i", "env": "A=1"}],
    )
    response = admit(_review(source), CONFIG)
    assert response["allowed"] is False
    assert str(response["status"]["message"]).startswith("spec.containers[0].env: expected a list")


def test_the_default_trust_domain_is_dapr_s_public_and_a_bad_one_is_refused() -> None:
    assert InjectorConfig().trust_domain == "public"
    sidecar = sidecar_of(patched(pod({"daprlite.io/enabled": "true"}), InjectorConfig()))
    assert env_map(sidecar)["DAPRLITE_TRUST_DOMAIN"] == "public"
    for bad in ("", "Cluster.Local", "-x", "a/b", "a" * 256):
        with pytest.raises(ValueError, match="trust_domain"):
            InjectorConfig(trust_domain=bad)


def test_a_volume_with_a_reserved_name_is_refused() -> None:
    source = pod(
        {"daprlite.io/enabled": "true", "daprlite.io/app-id": "a"},
        volumes=[{"name": "daprlite-tmp", "emptyDir": {}}],
    )
    with pytest.raises(InjectionError, match="daprlite-tmp"):
        build_patch(source, CONFIG)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1.5", Decimal("1.5")),
        ("64Mi", Decimal(64 * 2**20)),
        ("1e3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("+.5k", Decimal(500)),
        ("2Ki", Decimal(2048)),
    ],
)
def test_quantities_parse_like_kubernetes(text: str, value: Decimal) -> None:
    assert quantity_value(text) == value


def test_spec_defaults_leave_flags_to_the_sidecar() -> None:
    spec = read_spec(pod({"daprlite.io/enabled": "true"}))
    assert spec.app_id == "web-1"
    assert spec.app_port is None and spec.log_level is None and spec.config is None
    assert spec.env == () and spec.native_sidecar is None


# --- metrics ------------------------------------------------------------------------------


def test_prometheus_is_told_where_the_sidecar_metrics_are() -> None:
    result = patched(pod({"daprlite.io/enabled": "true", "daprlite.io/app-id": "cart"}))
    annotations = result["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/"


def test_a_metrics_port_annotation_moves_the_port_and_the_scrape_annotation() -> None:
    result = patched(pod({"dapr.io/enabled": "true", "dapr.io/metrics-port": "9095"}))
    sidecar = sidecar_of(result)
    assert {"name": "dapr-metrics", "containerPort": 9095, "protocol": "TCP"} in sidecar["ports"]
    assert result["metadata"]["annotations"]["prometheus.io/port"] == "9095"


def test_a_pod_with_its_own_prometheus_annotations_keeps_them() -> None:
    source = pod(
        {
            "daprlite.io/enabled": "true",
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080",
        }
    )
    annotations = patched(source)["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8080"
    assert "prometheus.io/path" not in annotations


@pytest.mark.parametrize("prefix", ["daprlite.io/", "dapr.io/"])
def test_metrics_turned_off_leave_no_port_and_no_scrape_annotations(prefix: str) -> None:
    result = patched(pod({prefix + "enabled": "true", prefix + "enable-metrics": "false"}))
    sidecar = sidecar_of(result)
    assert "dapr-metrics" not in [p["name"] for p in sidecar["ports"]]
    assert sidecar["args"][-5:-3] == ["--enable-metrics", "false"]
    assert "--metrics-port" not in sidecar["args"]
    assert not [k for k in result["metadata"]["annotations"] if k.startswith("prometheus.io/")]
