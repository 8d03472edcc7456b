"""Two injected pods call each other over mTLS, with no cluster: the kubelet's part played here.

The shop namespace runs two Deployments, ``orders`` (the HTTP echo app) and
``checkout`` (no app: the test plays it). Each pod, as the API server sends
it to the webhook on CREATE, goes through the injector's :func:`build_patch`;
its sidecar is then started with exactly the patched container's args and
env, swapping only what the kubelet and the pod network would decide: the
ports, the pod IP (each pod gets its own loopback address, so both sidecars
use the same port numbers, as pods do), the ``fieldRef`` values, the
projected token and the sentry's address. Around them run the real parts:
``daprlite sentry`` issuing certificates after TokenReview against the API
stand-in (``tests/k8sapi.py``), which also serves the Configurations the
``daprlite.io/config`` annotations name, and a DNS server (``tests/dnsstub.py``)
answering ``<app-id>-daprlite.shop.svc.cluster.local`` as the headless
Services the operator creates would. A third pod, ``stranger``, runs a sidecar
with mTLS switched off, to show that a sidecar without a certificate gets nowhere.
"""

from __future__ import annotations

import copy
import datetime as dt
import socket
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509

from daprlite.injector import InjectorConfig, build_patch
from daprlite.injector.patch import SIDECAR_NAME
from daprlite.security.ca import CertificateAuthority, create_ca
from daprlite.security.mtls import dns_name
from tests import k8sapi
from tests.dnsstub import StubZone, stub_dns
from tests.integration.harness import free_port, wait_for
from tests.integration.http import Reply, call
from tests.integration.invoke_system import HTTP_APP
from tests.integration.k8s_fixtures import (
    Container,
    localize_args,
    outside_env,
    resolve_env,
    start_daprlite,
    supply_ca,
)
from tests.integration.sentry_process import Sentry, start_sentry

NAMESPACE = "shop"
CLUSTER_DOMAIN = "cluster.local"
POD_IPS = {"orders": "127.0.0.2", "checkout": "127.0.0.3", "stranger": "127.0.0.4"}
# The injector's default trust domain is Dapr's, "public": the one an access-control policy
# that names no trustDomain matches.
TRUST_DOMAIN = "public"
CHECKOUT_SPIFFE = f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/checkout"
ORDERS_SPIFFE = f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/orders"


def deployment_pod(app: str, annotations: Mapping[str, str]) -> dict[str, object]:
    """A pod of Deployment ``app`` as the webhook gets it on CREATE (its name not yet generated)."""
    template_hash = uuid.uuid5(uuid.NAMESPACE_DNS, app).hex[:9]
    notes = {"daprlite.io/enabled": "true", "daprlite.io/app-id": app, **annotations}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{app}-{template_hash}-",
            "namespace": NAMESPACE,
            "labels": {"app": app, "pod-template-hash": template_hash},
            "annotations": notes,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{template_hash}",
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, app)),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": app,
            "containers": [{"name": app, "image": f"shop/{app}:1"}],
        },
    }


def configuration(name: str, ports: Mapping[str, int], nameserver: str) -> dict[str, object]:
    """The cluster Configuration a pod's ``daprlite.io/config`` names: DNS resolution, and for
    orders, who may call what."""
    spec: dict[str, object] = {
        "nameResolution": {
            "component": "kubernetes",
            "configuration": {
                "nameservers": [nameserver],
                "clusterDomain": CLUSTER_DOMAIN,
                "internalPort": ports["--dapr-internal-grpc-port"],
                "grpcPort": ports["--dapr-grpc-port"],
                "proxyPort": ports["--internal-proxy-port"],
            },
        }
    }
    if name == "orders-config":
        spec["accessControl"] = {
            "defaultAction": "deny",
            "policies": [
                {
                    "appId": "checkout",
                    "namespace": NAMESPACE,
                    # No trustDomain: Dapr's default, "public", the injector's too.
                    "defaultAction": "deny",
                    "operations": [{"name": "/orders/*", "httpVerb": ["GET"], "action": "allow"}],
                }
            ],
        }
    return {
        "apiVersion": "daprlite.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def same_free_ports(count: int, hosts: list[str]) -> list[int]:
    """``count`` distinct ports that each of ``hosts`` can bind (as every pod's 3500 can)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port in ports:
            continue
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        ports.append(port)
    return ports


def without_mtls(args: list[str]) -> list[str]:
    """The args with the certificate flags (``--enable-mtls``, ``--sentry-address X``) off."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--sentry-address":
            i += 2
            continue
        if args[i] != "--enable-mtls":
            out.append(args[i])
        i += 1
    return [*out, "--enable-mtls", "false"]


@dataclass
class Pod:
    name: str
    ip: str
    patch_args: list[str]
    args: list[str]
    sidecar: Container

    def url(self, http_port: int) -> str:
        return f"http://{self.ip}:{http_port}"


@dataclass
class Cluster:
    ca: CertificateAuthority
    sentry: Sentry
    zone: StubZone
    http_port: int
    internal_port: int
    public_port: int
    pods: dict[str, Pod] = field(default_factory=dict)

    def invoke(self, source: str, verb: str, method: str) -> Reply:
        url = f"{self.pods[source].url(self.http_port)}/v1.0/invoke/orders/method/{method}"
        return call(verb, url, data=b"{}" if verb != "GET" else None)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("k8s-scenario")
    ca = create_ca("shop cluster CA")
    injector = InjectorConfig(sidecar_image="daprlite:test", trust_anchors=ca.cert_pem.decode())
    http_port, grpc_port, internal_port, proxy_port, public_port = same_free_ports(
        5, list(POD_IPS.values())
    )
    # Every pod's sidecar has the same ports, as in a cluster; the resolver knows them.
    ports = {
        "--dapr-http-port": http_port,
        "--dapr-grpc-port": grpc_port,
        "--dapr-internal-grpc-port": internal_port,
        "--internal-proxy-port": proxy_port,
        "--dapr-public-port": public_port,
    }
    with ExitStack() as stack:
        api = stack.enter_context(k8sapi.running())
        zone, nameserver = stack.enter_context(stub_dns())
        supply_ca(api, ca)
        sentry = start_sentry(tmp, api.write_kubeconfig(tmp / "sentry-kubeconfig"), "shop")
        stack.callback(sentry.stop)
        for name in ("orders-config", "checkout-config"):
            api.put(configuration(name, ports, nameserver))
        for app_id, ip in POD_IPS.items():
            # What the headless Service <app-id>-daprlite answers: the pod's IP.
            zone.records[f"{app_id}-daprlite.{NAMESPACE}.svc.{CLUSTER_DOMAIN}"] = [ip]
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig", namespace=NAMESPACE)
        app_port = free_port()
        app = subprocess.Popen(
            HTTP_APP, env={**outside_env(), "APP_PORT": str(app_port)}, stdin=subprocess.DEVNULL
        )
        stack.callback(_stop_process, app)
        world = Cluster(ca, sentry, zone, http_port, internal_port, public_port)
        annotations = {
            "orders": {"daprlite.io/app-port": "8080", "daprlite.io/config": "orders-config"},
            "checkout": {"daprlite.io/config": "checkout-config"},
            "stranger": {"daprlite.io/config": "checkout-config"},
        }
        for name, ip in POD_IPS.items():
            pod = deployment_pod(name, annotations[name])
            patched = jsonpatch.apply_patch(pod, build_patch(pod, injector))
            kubernetes_validate.validate(patched, "1.29", strict=True)
            (sidecar,) = [c for c in patched["spec"]["initContainers"] if c["name"] == SIDECAR_NAME]
            # Admitted: the API server gives the pod its name, then the kubelet starts it.
            admitted = copy.deepcopy(patched)
            pod_name = admitted["metadata"]["generateName"] + uuid.uuid4().hex[:5]
            admitted["metadata"]["name"] = pod_name
            api.put(admitted)
            token = f"projected-token-of-{pod_name}"
            api.add_service_account_token(token, NAMESPACE, name, pod_name)
            token_file = tmp / name / "sentrytoken" / "token"
            token_file.parent.mkdir(parents=True)
            token_file.write_text(token)
            swaps: dict[str, int | str] = {
                **ports,
                "--app-port": app_port,
                "--sentry-address": sentry.address,
            }
            # The pod's loopback and its IP are one address here: both listen flags get it.
            args = localize_args(sidecar["args"], swaps, pod_ip=ip)
            if name == "stranger":
                args = without_mtls(args)
            field_values = {
                "metadata.namespace": NAMESPACE,
                "metadata.name": pod_name,
                "spec.serviceAccountName": name,
                "status.podIP": ip,
            }
            env = {
                **outside_env(),
                "DAPRLITE_HOME": str(tmp / name / "home"),
                "KUBECONFIG": str(kubeconfig),
                **resolve_env(sidecar["env"], field_values, token_file),
            }
            container = start_daprlite(args, env)
            stack.callback(container.stop)
            world.pods[name] = Pod(pod_name, ip, sidecar["args"], args, container)
        for pod_ in world.pods.values():

            def healthy(p: Pod = pod_) -> bool:
                p.sidecar.check_running()
                try:
                    return call("GET", f"{p.url(http_port)}/v1.0/healthz").status == 204
                except OSError:  # not listening yet
                    return False

            wait_for(healthy, 30, f"the {pod_.name} sidecar's /v1.0/healthz")
        yield world


# -- through the sidecars ------------------------------------------------------------------


def test_sidecars_run_the_patch_args_with_only_kubelet_values_swapped(cluster: Cluster) -> None:
    for name in ("orders", "checkout"):
        pod = cluster.pods[name]
        assert len(pod.args) == len(pod.patch_args)
        changed = {
            flag
            for i, flag in enumerate(pod.patch_args[:-1])
            if flag.startswith("--") and pod.args[i + 1] != pod.patch_args[i + 1]
        }
        assert changed <= {
            "--app-port",
            "--dapr-http-port",
            "--dapr-grpc-port",
            "--dapr-internal-grpc-port",
            "--internal-proxy-port",
            "--dapr-public-port",
            "--metrics-port",
            "--dapr-listen-addresses",
            "--internal-listen-addresses",
            "--sentry-address",
        }
        assert {"--dapr-listen-addresses", "--internal-listen-addresses"} <= changed
        assert pod.ip in pod.args
        # In the cluster: the APIs on the pod's loopback, what other pods reach on its IP.
        patch = dict(zip(pod.patch_args[:-1], pod.patch_args[1:], strict=True))
        assert patch["--dapr-listen-addresses"] == "127.0.0.1"
        assert patch["--internal-listen-addresses"] == "0.0.0.0"
        assert patch["--dapr-public-port"] == "3501"
        assert "--enable-mtls" in pod.args


def test_the_kubelet_probes_reach_every_sidecar_on_its_public_port(cluster: Cluster) -> None:
    for pod in cluster.pods.values():
        base = pod.url(cluster.public_port)
        assert call("GET", f"{base}/v1.0/healthz").status == 204
        assert call("GET", f"{base}/v1.0/healthz/outbound").status == 204
        # Health only: invoking through the public port gets nothing.
        assert call("GET", f"{base}/v1.0/invoke/orders/method/orders/1").status == 404


def test_checkout_reaches_orders_by_kubernetes_dns_over_mtls(cluster: Cluster) -> None:
    reply = cluster.invoke("checkout", "GET", "orders/1")
    assert reply.status == 200, reply.body
    echoed = reply.json()
    assert isinstance(echoed, dict)
    assert echoed["verb"] == "GET" and echoed["path"] == "/orders/1"
    assert echoed["headers"]["dapr-caller-app-id"] == "checkout"
    assert f"orders-daprlite.{NAMESPACE}.svc.{CLUSTER_DOMAIN}" in cluster.zone.asked


def test_identities_are_the_sentrys_certificates_for_the_pods(cluster: Cluster) -> None:
    for name, spiffe in (("orders", ORDERS_SPIFFE), ("checkout", CHECKOUT_SPIFFE)):
        pod = cluster.pods[name]
        assert f"this sidecar is {spiffe}" in pod.sidecar.output
        assert f"to pod {NAMESPACE}/{pod.name}" in cluster.sentry.output
    # What orders serves on its internal port: issued by the cluster CA, for orders.
    ctx = _client_context(cluster.ca, *_issued(cluster.ca, CHECKOUT_SPIFFE))
    ctx.check_hostname = True
    server_name = dns_name("orders", NAMESPACE)
    with (
        socket.create_connection((POD_IPS["orders"], cluster.internal_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    served = x509.load_der_x509_certificate(der)
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ORDERS_SPIFFE in sans.get_values_for_type(x509.UniformResourceIdentifier)
    assert served.issuer == x509.load_pem_x509_certificate(cluster.ca.cert_pem).subject


@pytest.mark.parametrize(
    ("verb", "method"), [("POST", "orders/1"), ("GET", "orders/1/items"), ("GET", "admin")]
)
def test_orders_access_control_refuses_what_checkout_may_not_do(
    cluster: Cluster, verb: str, method: str
) -> None:
    reply = cluster.invoke("checkout", verb, method)
    assert reply.status == 403, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    # The caller named in the denial is the identity of checkout's certificate.
    assert "access control policy has denied access to id: checkout" in str(body["message"])


def test_a_sidecar_without_a_certificate_gets_nowhere(cluster: Cluster) -> None:
    stranger = cluster.pods["stranger"]
    assert "mTLS between sidecars is off" in stranger.sidecar.output
    reply = cluster.invoke("stranger", "GET", "orders/1")
    assert reply.status == 500, reply.body
    body = reply.json()
    assert isinstance(body, dict)
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    # Found by DNS, then turned away at the TLS port before any request was read.
    assert f"the sidecar of 'orders' at {POD_IPS['orders']}:" in str(body["message"])
    assert "cannot be reached" in str(body["message"])


# -- orders' internal port, dialled by hand -------------------------------------------------

ROUTE = f"GET orders {NAMESPACE} checkout {NAMESPACE} http"


def _issued(ca: CertificateAuthority, spiffe: str) -> tuple[bytes, bytes]:
    issued = ca.issue_pem(spiffe, dt.timedelta(minutes=5))
    return issued.cert_pem, issued.key_pem


def _client_context(
    trusted: CertificateAuthority, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=trusted.cert_pem.decode())
    ctx.check_hostname = False
    if cert_pem is not None and key_pem is not None:
        # load_cert_chain takes files only: a private temporary folder for the pair.
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            (folder / "c.crt").write_bytes(cert_pem)
            (folder / "c.key").write_bytes(key_pem)
            ctx.load_cert_chain(folder / "c.crt", folder / "c.key")
    return ctx


def _post(cluster: Cluster, ctx: ssl.SSLContext | None) -> str:
    """One invocation on orders' internal port: the response head, or why it was refused."""
    request = (
        f"POST /v1/invoke/orders/1 HTTP/1.1\r\nHost: orders\r\nx-daprlite-route: {ROUTE}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((POD_IPS["orders"], cluster.internal_port), timeout=10) as raw:
        try:
            sock = ctx.wrap_socket(raw) if ctx is not None else raw
            sock.sendall(request)
            data = sock.recv(65536)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            return f"refused: {type(exc).__name__}"
    return data.split(b"\r\n\r\n", 1)[0].decode().lower() if data else "refused: closed"


def test_a_forged_certificate_is_refused_on_orders_internal_port(cluster: Cluster) -> None:
    """Another CA's certificate with checkout's SPIFFE ID: the TLS handshake fails."""
    forger = create_ca("not the cluster CA")
    forged = _post(cluster, _client_context(cluster.ca, *_issued(forger, CHECKOUT_SPIFFE)))
    assert forged.startswith("refused"), forged
    # The same request with the cluster CA's certificate for checkout is delivered.
    genuine = _post(cluster, _client_context(cluster.ca, *_issued(cluster.ca, CHECKOUT_SPIFFE)))
    assert genuine.startswith("http/1.1 200"), genuine
    assert "x-daprlite-status: 200" in genuine and "x-daprlite-error" not in genuine


def test_no_certificate_is_refused_on_orders_internal_port(cluster: Cluster) -> None:
    assert _post(cluster, None).startswith("refused")  # plain HTTP on the TLS port
    assert _post(cluster, _client_context(cluster.ca)).startswith("refused")
