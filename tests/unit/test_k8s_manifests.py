"""deploy/kubernetes: what `kubectl apply -k` would install is valid, complete and least-privilege.

The manifests are rendered exactly as a user renders them (``kubectl kustomize``) and every
document is checked against the official Kubernetes OpenAPI schema (``kubernetes_validate``,
strict: unknown fields fail) for the oldest and a recent Kubernetes we support. Custom
resources (the examples, and every Dapr YAML in ``components/`` with only its apiVersion
changed) are checked against our CRDs' own ``openAPIV3Schema``. The webhook's TLS script runs
for real and its certificate serves a real TLS handshake.
"""

from __future__ import annotations

import base64
import copy
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
EXAMPLES = DEPLOY / "examples"
CERT_SCRIPT = ROOT / "scripts" / "k8s-certs.sh"
# Native sidecars (init containers with restartPolicy Always) are on by default from 1.29.
K8S_VERSIONS = ("1.29.0", "1.33.0")
NS = "daprlite-system"
INJECTOR_DNS = "daprlite-sidecar-injector.daprlite-system.svc"
CRD_KINDS = {
    "Component": "components.daprlite.io",
    "Configuration": "configurations.daprlite.io",
    "Resiliency": "resiliencies.daprlite.io",
    "Subscription": "subscriptions.daprlite.io",
}

Doc = dict[str, object]


def _load_all(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def _read_listed_files(folder: Path) -> list[Doc]:
    """Without kubectl: the files kustomization.yaml lists, unrendered (no image tags)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for entry in kustomization["resources"]:
        docs += _load_all((folder / entry).read_text())
    return docs


def _render(folder: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # scripts/test.sh runs on machines that have kubectl; this keeps the schema checks
        # running (on the raw files) where it is missing. The render-only tests skip.
        return _read_listed_files(folder)
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {folder} failed:\n{out.stderr}"
    return _load_all(out.stdout)


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    return _render(DEPLOY)


@pytest.fixture(scope="module")
def examples() -> list[Doc]:
    return _render(EXAMPLES)


def _get(docs: list[Doc], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and _meta(d)["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _meta(doc: Mapping) -> dict:
    meta = doc["metadata"]
    assert isinstance(meta, dict)
    return meta


def _crd_schema(docs: list[Doc], kind: str, version: str) -> dict:
    crd = _get(docs, "CustomResourceDefinition", CRD_KINDS[kind])
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"CRD {CRD_KINDS[kind]} has no version {version}")


def _schema_errors(docs: list[Doc], resource: Mapping) -> list[str]:
    """Validate a custom resource against its CRD version's openAPIV3Schema."""
    group, _, version = str(resource["apiVersion"]).partition("/")
    assert group == "daprlite.io", resource["apiVersion"]
    schema = _crd_schema(docs, str(resource["kind"]), version)
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(resource)
    ]


def _containers(deployment: Mapping) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


# --- rendering and the Kubernetes schema ---------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_manifest_validates_against_the_kubernetes_schema(
    rendered: list[Doc], examples: list[Doc], version: str
) -> None:
    failures = []
    for doc in rendered + examples:
        if str(doc["apiVersion"]).startswith("daprlite.io/"):
            continue  # custom resources: checked against our CRDs below
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']} {_meta(doc)['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_the_control_plane_is_complete(rendered: list[Doc]) -> None:
    got = {(d["kind"], _meta(d)["name"]) for d in rendered}
    expected = {
        ("Namespace", NS),
        *(("CustomResourceDefinition", n) for n in CRD_KINDS.values()),
        *(
            (kind, name)
            for name in ("daprlite-sidecar-injector", "daprlite-sentry")
            for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceAccount")
        ),
        ("Deployment", "daprlite-operator"),
        ("ServiceAccount", "daprlite-operator"),
        ("ClusterRole", "daprlite-operator"),
        ("ClusterRoleBinding", "daprlite-operator"),
        ("ClusterRole", "daprlite-sentry-tokenreview"),
        ("ClusterRoleBinding", "daprlite-sentry-tokenreview"),
        ("Role", "daprlite-sentry"),
        ("RoleBinding", "daprlite-sentry"),
        ("ClusterRole", "daprlite-sidecar"),
        ("MutatingWebhookConfiguration", "daprlite-sidecar-injector"),
    }
    assert got == expected
    for doc in rendered:
        if doc["kind"] in ("Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"):
            assert _meta(doc)["namespace"] == NS, _meta(doc)["name"]


def test_examples_are_not_part_of_the_control_plane(rendered: list[Doc]) -> None:
    namespaces = {_meta(d).get("namespace") for d in rendered}
    assert namespaces <= {None, NS}
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert not any("examples" in r for r in kustomization["resources"])


@needs_kubectl
def test_one_image_runs_the_control_plane_and_the_injected_sidecars(rendered: list[Doc]) -> None:
    images = {c["image"] for d in rendered if d["kind"] == "Deployment" for c in _containers(d)}
    assert images == {"daprlite:latest"}
    injector = _containers(_get(rendered, "Deployment", "daprlite-sidecar-injector"))[0]
    env = {e["name"]: e.get("value") for e in injector["env"]}
    assert env["DAPRLITE_SIDECAR_IMAGE"] == injector["image"]
    assert "--sidecar-image=$(DAPRLITE_SIDECAR_IMAGE)" in injector["args"]


@needs_kubectl
def test_an_overlay_that_changes_the_image_changes_the_sidecar_image_too(tmp_path: Path) -> None:
    # kustomize overlays must sit beside what they include: put one inside a copy of deploy/.
    copy_root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_root / "kubernetes")
    overlay = copy_root / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../kubernetes]\n"
        "images:\n  - name: daprlite\n    newName: registry.example/daprlite\n    newTag: '1.2.3'\n"
    )
    docs = _render(overlay)
    injector = _containers(_get(docs, "Deployment", "daprlite-sidecar-injector"))[0]
    env = {e["name"]: e.get("value") for e in injector["env"]}
    assert injector["image"] == "registry.example/daprlite:1.2.3"
    assert env["DAPRLITE_SIDECAR_IMAGE"] == "registry.example/daprlite:1.2.3"


# --- the CRDs -----------------------------------------------------------------------------


def _walk_schema(node: Mapping, path: str) -> Iterator[tuple[str, Mapping]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk_schema(child, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield from _walk_schema(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _walk_schema(node["additionalProperties"], f"{path}.*")


def test_crds_are_structural_and_follow_the_naming_conventions(rendered: list[Doc]) -> None:
    for kind, name in CRD_KINDS.items():
        crd = _get(rendered, "CustomResourceDefinition", name)
        spec = crd["spec"]
        assert spec["group"] == "daprlite.io"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["kind"] == kind
        assert name == f"{spec['names']['plural']}.daprlite.io"
        versions = spec["versions"]
        assert sum(v["storage"] for v in versions) == 1
        for v in versions:
            assert v["served"] is True
            assert any(c["name"] == "Age" for c in v["additionalPrinterColumns"])
            for path, node in _walk_schema(v["schema"]["openAPIV3Schema"], kind):
                # A structural schema types every node, except where unknown content is kept.
                open_node = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
                    "x-kubernetes-int-or-string"
                )
                assert "type" in node or open_node, f"{name} {v['name']}: {path} has no type"
                for word in ("$ref", "definitions", "dependencies", "uniqueItems"):
                    assert word not in node, f"{name}: {path} uses {word} (not structural)"
    subs = _get(rendered, "CustomResourceDefinition", CRD_KINDS["Subscription"])["spec"]
    assert {v["name"]: v["storage"] for v in subs["versions"]} == {
        "v2alpha1": True,
        "v1alpha1": False,
    }
    assert subs["conversion"] == {"strategy": "None"}


def test_component_has_dapr_top_level_auth_and_scopes(rendered: list[Doc]) -> None:
    schema = _crd_schema(rendered, "Component", "v1alpha1")
    assert set(schema["properties"]) >= {"auth", "scopes", "spec", "metadata"}
    assert schema["properties"]["spec"]["required"] == ["type", "version"]
    item = schema["properties"]["spec"]["properties"]["metadata"]["items"]
    assert item["properties"]["value"] == {"x-kubernetes-preserve-unknown-fields": True}


def _component(**spec: object) -> dict:
    return {
        "apiVersion": "daprlite.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "statestore"},
        "spec": {"type": "state.redis", "version": "v1", **spec},
    }


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ({**_component(), "spec": {"type": "state.redis"}}, "version"),
        ({**_component(), "spec": {"version": "v1"}}, "type"),
        (_component(type="State.Redis"), "spec.type"),
        (_component(type="redis"), "spec.type"),
        (_component(metadata=[{"value": "localhost:6379"}]), "spec.metadata.0"),
        (_component(metadata=[{"name": "p", "secretKeyRef": {"key": "k"}}]), "secretKeyRef"),
        (_component(ignoreErrors="yes"), "spec.ignoreErrors"),
        ({**_component(), "auth": {}}, "auth"),
        ({**_component(), "scopes": "orders"}, "scopes"),
        (
            {
                "apiVersion": "daprlite.io/v1alpha1",
                "kind": "Resiliency",
                "metadata": {"name": "r"},
                "spec": {"policies": {"retries": {"r": {"policy": "linear"}}}},
            },
            "spec.policies.retries.r.policy",
        ),
        (
            {
                "apiVersion": "daprlite.io/v1alpha1",
                "kind": "Subscription",
                "metadata": {"name": "s"},
                "spec": {"pubsubname": "pubsub", "topic": "orders"},
            },
            "route",
        ),
        (
            {
                "apiVersion": "daprlite.io/v1alpha1",
                "kind": "Configuration",
                "metadata": {"name": "c"},
                "spec": {"httpPipeline": {"handlers": [{"name": "x", "type": "state.redis"}]}},
            },
            "spec.httpPipeline.handlers.0.type",
        ),
    ],
)
def test_invalid_resources_are_refused_naming_the_field(
    rendered: list[Doc], resource: dict, field: str
) -> None:
    errors = _schema_errors(rendered, resource)
    assert errors, f"accepted: {resource}"
    assert any(field in e for e in errors), errors


def test_open_parts_keep_what_daprlite_does_not_know(rendered: list[Doc]) -> None:
    config = {
        "apiVersion": "daprlite.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "c"},
        "spec": {
            "tracing": {"samplingRate": "1", "otel": {"endpointAddress": "x:4317", "new": 1}},
            "futureSection": {"anything": [1, 2]},
            "nameResolution": {"component": "kubernetes", "configuration": {"a": {"b": 1}}},
        },
    }
    assert _schema_errors(rendered, config) == []
    schema = _crd_schema(rendered, "Configuration", "v1alpha1")
    assert schema["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    structured = _component(metadata=[{"name": "m", "value": {"nested": [1]}}, {"name": "n"}])
    assert _schema_errors(rendered, structured) == []


@pytest.mark.parametrize(
    "subscription",
    [
        {
            "apiVersion": "daprlite.io/v2alpha1",
            "kind": "Subscription",
            "metadata": {"name": "order-sub"},
            "spec": {
                "pubsubname": "pubsub",
                "topic": "orders",
                "routes": {
                    "rules": [{"match": 'event.type == "big"', "path": "/big"}],
                    "default": "/orders",
                },
                "metadata": {"rawPayload": "false"},
                "deadLetterTopic": "poison",
                "bulkSubscribe": {
                    "enabled": False,
                    "maxMessagesCount": 100,
                    "maxAwaitDurationMs": 1000,
                },
            },
            "scopes": ["app1", "app2"],
        },
        {
            "apiVersion": "daprlite.io/v1alpha1",
            "kind": "Subscription",
            "metadata": {"name": "order-sub"},
            "spec": {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
        },
    ],
    ids=["v2alpha1", "v1alpha1"],
)
def test_dapr_subscriptions_of_both_versions_apply(rendered: list[Doc], subscription: dict) -> None:
    assert _schema_errors(rendered, subscription) == []


DAPR_EXAMPLES = sorted((ROOT / "components").glob("*.yaml"))


@pytest.mark.parametrize("path", DAPR_EXAMPLES, ids=lambda p: p.name)
def test_a_dapr_example_applies_with_only_its_api_version_changed(
    rendered: list[Doc], path: Path
) -> None:
    docs = _load_all(path.read_text())
    assert docs, path
    for doc in docs:
        group, _, version = str(doc["apiVersion"]).partition("/")
        assert group == "dapr.io", f"{path.name}: {doc['apiVersion']}"
        if doc["kind"] not in CRD_KINDS:
            # HTTPEndpoint: daprlite reads it from files only; no CRD (yet).
            assert doc["kind"] == "HTTPEndpoint", f"{path.name}: no CRD for {doc['kind']}"
            continue
        moved = copy.deepcopy(doc)
        moved["apiVersion"] = f"daprlite.io/{version}"
        assert _schema_errors(rendered, moved) == [], path.name


def test_the_example_custom_resources_validate_against_the_crds(
    rendered: list[Doc], examples: list[Doc]
) -> None:
    custom = [d for d in examples if str(d["apiVersion"]).startswith("daprlite.io/")]
    assert {d["kind"] for d in custom} == {"Component", "Configuration"}
    for doc in custom:
        assert _schema_errors(rendered, doc) == [], _meta(doc)["name"]
    store = _get(examples, "Component", "statestore")
    assert store["spec"]["type"] == "state.redis"
    password = next(m for m in store["spec"]["metadata"] if m["name"] == "redisPassword")
    secret = _get(examples, "Secret", password["secretKeyRef"]["name"])
    assert password["secretKeyRef"]["key"] in secret["stringData"]


def test_example_apps_are_annotated_and_their_sidecars_may_read_resources(
    examples: list[Doc],
) -> None:
    binding = _get(examples, "RoleBinding", "daprlite-sidecar")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "daprlite-sidecar",
    }
    bound = {s["name"] for s in binding["subjects"]}
    for app in ("orders", "checkout"):
        pod = _get(examples, "Deployment", app)["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["daprlite.io/enabled"] == "true"
        assert annotations["daprlite.io/app-id"] == app
        assert annotations["daprlite.io/config"] == "appconfig"
        assert pod["spec"]["serviceAccountName"] in bound
    orders = _get(examples, "Deployment", "orders")
    port = int(orders["spec"]["template"]["metadata"]["annotations"]["daprlite.io/app-port"])
    assert port in {p["containerPort"] for p in _containers(orders)[0]["ports"]}
    labels = orders["spec"]["template"]["metadata"]["labels"]
    assert _get(examples, "Service", "orders")["spec"]["selector"] == labels


# --- least privilege ----------------------------------------------------------------------


def _rules(docs: list[Doc]) -> Iterator[tuple[str, str, dict]]:
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            for rule in d.get("rules") or []:
                yield str(d["kind"]), str(_meta(d)["name"]), rule


def test_no_wildcards_and_no_escalation_verbs_anywhere(rendered: list[Doc]) -> None:
    rules = list(_rules(rendered))
    assert rules
    for kind, name, rule in rules:
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            assert "*" not in (rule.get(field) or []), f"{kind} {name}: * in {field}"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), name
        assert "nonResourceURLs" not in rule, name


def test_secret_access_is_narrow(rendered: list[Doc]) -> None:
    by_role: dict[tuple[str, str], list[dict]] = {}
    for kind, name, rule in _rules(rendered):
        if "secrets" in rule.get("resources", []):
            by_role.setdefault((kind, name), []).append(rule)
    assert set(by_role) == {("Role", "daprlite-sentry"), ("ClusterRole", "daprlite-sidecar")}
    # Sentry: only its CA Secret, only in the control-plane namespace.
    sentry_role = _get(rendered, "Role", "daprlite-sentry")
    assert _meta(sentry_role)["namespace"] == NS
    for rule in by_role[("Role", "daprlite-sentry")]:
        if rule.get("resourceNames"):
            assert rule["resourceNames"] == ["daprlite-trust-bundle"]
            assert rule["verbs"] == ["get"]  # read once at start; never updated
        else:
            assert rule["verbs"] == ["create"]  # create cannot be limited by name
    # Sidecars: get by name only (list would return every Secret's values).
    assert [r["verbs"] for r in by_role[("ClusterRole", "daprlite-sidecar")]] == [["get"]]
    # The sidecar role is only ever bound per namespace, by the user: never cluster-wide here.
    for d in rendered:
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert d["roleRef"]["name"] != "daprlite-sidecar", _meta(d)["name"]


def test_each_component_gets_only_what_it_needs(rendered: list[Doc]) -> None:
    def granted(role_kind: str, role_name: str) -> set[tuple[str, str, str]]:
        role = _get(rendered, role_kind, role_name)
        return {
            (group, resource, verb)
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    assert granted("ClusterRole", "daprlite-sentry-tokenreview") == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("", "pods", "get"),
    }
    # The operator: exactly the calls daprlite/operator/cluster.py makes, nothing more.
    assert granted("ClusterRole", "daprlite-operator") == {
        *{("apps", r, v) for r in ("deployments", "statefulsets") for v in ("list", "watch")},
        *{("", "services", v) for v in ("get", "list", "create", "patch", "delete")},
    }
    # The injector needs no API access: no binding names its account, and it mounts no token.
    subjects = {
        s["name"]
        for d in rendered
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in d["subjects"]
    }
    assert subjects == {"daprlite-operator", "daprlite-sentry"}
    injector = _get(rendered, "Deployment", "daprlite-sidecar-injector")
    assert injector["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert (
        _get(rendered, "ServiceAccount", "daprlite-sidecar-injector")[
            "automountServiceAccountToken"
        ]
        is False
    )


# --- workloads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "replicas", "port"),
    [
        ("daprlite-sidecar-injector", 2, 4000),
        ("daprlite-sentry", 2, 8443),
        ("daprlite-operator", 1, 8080),
    ],
)
def test_control_plane_pods_are_hardened_probed_and_bounded(
    rendered: list[Doc], name: str, replicas: int, port: int
) -> None:
    deployment = _get(rendered, "Deployment", name)
    assert deployment["spec"]["replicas"] == replicas
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["command"] == ["daprlite"]
    assert container["args"][0] == name.removeprefix("daprlite-").removeprefix("sidecar-")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in ports.values()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe
    # /tmp is the only writable place (DAPRLITE_HOME in the image).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
    if replicas > 1:
        anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        pdb = _get(rendered, "PodDisruptionBudget", name)
        assert pdb["spec"]["minAvailable"] == 1
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize(
    ("name", "target_port"), [("daprlite-sidecar-injector", 4000), ("daprlite-sentry", 8443)]
)
def test_services_reach_their_pods_on_443(rendered: list[Doc], name: str, target_port: int) -> None:
    service = _get(rendered, "Service", name)
    pod = _get(rendered, "Deployment", name)["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    named = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert named[port["targetPort"]] == target_port


def test_injector_configuration_matches_the_conventions(rendered: list[Doc]) -> None:
    (container,) = _containers(_get(rendered, "Deployment", "daprlite-sidecar-injector"))
    args = container["args"]
    assert "--port=4000" in args
    assert "--sentry-address=daprlite-sentry.daprlite-system.svc:443" in args
    # Dapr's default trust domain, so that access-control policies naming none match.
    assert "--trust-domain=public" in args
    (sentry,) = _containers(_get(rendered, "Deployment", "daprlite-sentry"))
    assert "--trust-domain=public" in sentry["args"]
    volumes = {
        v["name"]: v
        for v in _get(rendered, "Deployment", "daprlite-sidecar-injector")["spec"]["template"][
            "spec"
        ]["volumes"]
    }
    assert volumes["tls"]["secret"]["secretName"] == "daprlite-sidecar-injector-tls"
    # Only the public CA certificate of sentry's Secret is mounted, never its key.
    bundle = volumes["trust-bundle"]["secret"]
    assert bundle["secretName"] == "daprlite-trust-bundle"
    assert bundle["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_the_injector_command_line_is_the_one_daprlite_accepts(rendered: list[Doc]) -> None:
    from daprlite.cli.main import _parser

    (container,) = _containers(_get(rendered, "Deployment", "daprlite-sidecar-injector"))
    env = {e["name"]: e["value"] for e in container["env"]}
    # The kubelet expands $(VAR) in args from the container's env.
    args = [
        a.replace("$(DAPRLITE_SIDECAR_IMAGE)", env["DAPRLITE_SIDECAR_IMAGE"])
        for a in args_of(container)
    ]
    parsed = _parser().parse_args(args)
    assert parsed.command == "injector"
    assert parsed.port == 4000
    assert parsed.sidecar_image == container["image"]
    assert parsed.sidecar_image_pull_policy == "IfNotPresent"
    assert str(parsed.tls_cert_file).startswith("/var/run/secrets/daprlite.io/tls/")
    assert str(parsed.trust_anchors_file) == "/var/run/secrets/daprlite.io/trust-bundle/ca.crt"


@pytest.mark.parametrize(
    ("deployment", "command"),
    [("daprlite-sentry", "sentry"), ("daprlite-operator", "operator")],
)
def test_the_control_plane_command_lines_are_ones_daprlite_accepts(
    rendered: list[Doc], deployment: str, command: str
) -> None:
    from daprlite.cli.main import _parser

    (container,) = _containers(_get(rendered, "Deployment", deployment))
    parsed = _parser().parse_args(args_of(container))
    assert parsed.command == command
    # The probes the manifest declares go to the port the command serves health on.
    probe_port = container["readinessProbe"]["httpGet"]["port"]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    served = getattr(parsed, "health_port", None) or getattr(parsed, "port", None)
    assert ports.get(probe_port, probe_port) == served


def args_of(container: Mapping) -> list[str]:
    return [*container["command"][1:], *container["args"]]


def test_webhook_only_sees_pod_creation_outside_the_system_namespaces(
    rendered: list[Doc],
) -> None:
    config = _get(rendered, "MutatingWebhookConfiguration", "daprlite-sidecar-injector")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["clientConfig"]["service"] == {
        "name": "daprlite-sidecar-injector",
        "namespace": NS,
        "path": "/mutate",
        "port": 443,
    }
    (rule,) = hook["rules"]
    assert (rule["resources"], rule["operations"], rule["apiGroups"]) == (
        ["pods"],
        ["CREATE"],
        [""],
    )
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name"
    assert expr["operator"] == "NotIn"
    assert set(expr["values"]) == {"kube-system", NS}


# --- webhook TLS (scripts/k8s-certs.sh) ---------------------------------------------------


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CERT_SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = tmp_path_factory.mktemp("certs")
    result = _run_script("--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_cert_script_writes_a_server_certificate_for_the_webhook_service(certs: Path) -> None:
    assert sorted(p.name for p in certs.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (certs / "tls.key").stat().st_mode & 0o077 == 0
    ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((certs / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert INJECTOR_DNS in sans.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_an_api_server_trusting_the_ca_bundle_completes_a_handshake(certs: Path) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        served: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                served.append(tls.recv(16))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=INJECTOR_DNS) as tls,
        ):
            tls.sendall(b"ping")
        thread.join(timeout=10)
    assert served == [b"ping"]


def test_a_client_checking_another_name_refuses_the_certificate(certs: Path) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with pytest.raises(ssl.SSLError):
                server_ctx.wrap_socket(conn, server_side=True).recv(1)
            conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            client_ctx.wrap_socket(raw, server_hostname="daprlite-sentry.daprlite-system.svc")
        thread.join(timeout=10)


@needs_kubectl
def test_cert_script_dry_run_prints_a_valid_secret_and_the_ca_bundle_patch(
    rendered: list[Doc],
) -> None:
    result = _run_script("--dry-run")
    assert result.returncode == 0, result.stderr
    (secret,) = _load_all(result.stdout)
    assert (secret["kind"], _meta(secret)["name"], _meta(secret)["namespace"]) == (
        "Secret",
        "daprlite-sidecar-injector-tls",
        NS,
    )
    assert secret["type"] == "kubernetes.io/tls"
    _meta(secret).pop("creationTimestamp", None)  # null in kubectl's dry-run output
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(secret, version, strict=True)
    patch_line = next(line for line in result.stdout.splitlines() if line.startswith("# [{"))
    (op,) = yaml.safe_load(patch_line.removeprefix("# "))
    assert (op["op"], op["path"]) == ("add", "/webhooks/0/clientConfig/caBundle")
    assert op["value"] == secret["data"]["ca.crt"]
    config = copy.deepcopy(
        _get(rendered, "MutatingWebhookConfiguration", "daprlite-sidecar-injector")
    )
    config["webhooks"][0]["clientConfig"]["caBundle"] = op["value"]
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(config, version, strict=True)
    ca = x509.load_pem_x509_certificate(base64.b64decode(op["value"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "soon"), "--days"),
        (("--days", "0"), "--days"),
        (("--namespace",), "--namespace"),
        (("--bogus",), "--bogus"),
    ],
)
def test_cert_script_refuses_bad_arguments_naming_them(args: tuple[str, ...], message: str) -> None:
    result = _run_script(*args)
    assert result.returncode != 0
    assert message in result.stderr
