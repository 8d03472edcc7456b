"""``daprlite sentry`` against the API stand-in, and two sidecars using its certificates.

The stand-in (``tests/k8sapi.py``) holds the pods ``orders-abc`` (app id
``orders``) and ``checkout-xyz`` (``checkout``) in namespace ``shop``, and
accepts one projected token for each. The sentry runs as a real process
(``KUBECONFIG`` points it at the stand-in) on a free port; its CA ends up in
the Secret ``daprlite-system/daprlite-trust-bundle``. Then two sidecars started
as the injector configures them (``--enable-mtls --sentry-address``, trust
anchors and token file in the environment, no local CA at all) invoke each
other over mTLS, and a certificate from another CA is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from daprlite.security.ca import create_ca
from tests import k8sapi
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.integration.invoke_system import start_callee
from tests.integration.sentry_process import SYSTEM_NAMESPACE, Sentry, start_sentry

NAMESPACE = "shop"
TOKENS = {"orders": "orders-projected-token", "checkout": "checkout-projected-token"}
WORKLOAD_TTL_SECONDS = 6


def pod(name: str, app_id: str, service_account: str, enabled: str = "true") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"daprlite.io/enabled": enabled, "daprlite.io/app-id": app_id},
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": app_id, "image": f"shop/{app_id}:1"}],
        },
    }


@dataclass
class Cluster:
    tmp: Path
    api: k8sapi.K8sAPI
    kubeconfig: Path
    sentry: Sentry


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("sentry")
    with k8sapi.running() as api:
        api.put(pod("orders-abc", "orders", "orders"))
        api.put(pod("checkout-xyz", "checkout", "checkout"))
        api.add_service_account_token(TOKENS["orders"], NAMESPACE, "orders", "orders-abc")
        api.add_service_account_token(TOKENS["checkout"], NAMESPACE, "checkout", "checkout-xyz")
        api.add_service_account_token(
            "token-for-another-audience", NAMESPACE, "orders", "orders-abc", audiences=("api",)
        )
        # An authenticator that ignores spec.audiences and reports the token's own.
        api.add_service_account_token(
            "token-reported-for-another-audience",
            NAMESPACE,
            "orders",
            "orders-abc",
            reported_audiences=("https://kubernetes.default.svc",),
        )
        # The pod's spec says service account "orders"; this token is for "intruder".
        api.add_service_account_token(
            "token-of-another-account", NAMESPACE, "intruder", "orders-abc"
        )
        # A long-lived Secret token: authenticated, but bound to no pod.
        api.add_service_account_token("token-of-no-pod", NAMESPACE, "orders", "")
        # A token of a pod that was deleted and re-created under its name (a new uid).
        api.put(pod("orders-replaced", "orders", "orders"))
        api.add_service_account_token(
            "token-of-a-replaced-pod", NAMESPACE, "orders", "orders-replaced"
        )
        api.delete("pods", NAMESPACE, "orders-replaced")
        api.put(pod("orders-replaced", "orders", "orders"))
        # Pods that did not ask for a sidecar, or carry an app id the injector refuses.
        api.put(pod("orders-disabled", "orders", "orders", enabled="false"))
        api.add_service_account_token(
            "token-of-a-disabled-pod", NAMESPACE, "orders", "orders-disabled"
        )
        api.put(pod("orders-upper", "Orders", "orders"))
        api.add_service_account_token(
            "token-of-an-upper-case-pod", NAMESPACE, "orders", "orders-upper"
        )
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig", namespace=SYSTEM_NAMESPACE)
        sentry = start_sentry(tmp, kubeconfig, "first", WORKLOAD_TTL_SECONDS)
        try:
            yield Cluster(tmp, api, kubeconfig, sentry)
        finally:
            sentry.stop()


# -- the CA and its Secret ------------------------------------------------------------------


def _secret_ca(api: k8sapi.K8sAPI) -> bytes:
    secret = api.get("secrets", SYSTEM_NAMESPACE, "daprlite-trust-bundle")
    assert secret is not None, "the sentry did not create its CA Secret"
    data = secret["data"]
    assert isinstance(data, dict) and set(data) == {"ca.crt", "ca.key"}
    return base64.b64decode(data["ca.crt"])


def test_first_start_creates_the_ca_secret(cluster: Cluster) -> None:
    assert _secret_ca(cluster.api) == cluster.sentry.bundle_file.read_bytes()
    assert "CA generated" in cluster.sentry.output
    assert "POST /api/v1/namespaces/daprlite-system/secrets" in cluster.api.requests


def test_a_second_sentry_loads_the_same_ca(cluster: Cluster) -> None:
    # With the flags deploy/kubernetes/sentry/deployment.yaml passes.
    manifest_flags = ("--ca-secret=daprlite-trust-bundle", "--token-audience=daprlite-sentry")
    second = start_sentry(
        cluster.tmp, cluster.kubeconfig, "second", WORKLOAD_TTL_SECONDS, manifest_flags
    )
    try:
        assert second.bundle_file.read_bytes() == cluster.sentry.bundle_file.read_bytes()
        assert "CA loaded" in second.output
        # It serves a certificate from that same CA, for the Service's DNS name.
        with (
            socket.create_connection(("127.0.0.1", second.port), timeout=5) as raw,
            second.context().wrap_socket(
                raw, server_hostname=f"daprlite-sentry.{SYSTEM_NAMESPACE}.svc"
            ),
        ):
            pass
    finally:
        second.stop()


# -- POST /v1/sign ----------------------------------------------------------------------------


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _sign(
    cluster: Cluster, body: object, raw: bytes | None = None
) -> tuple[int, dict[str, object]]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"https://{cluster.sentry.address}/v1/sign",
        data=data,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10, context=cluster.sentry.context()) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _request(app_id: str = "orders", token: str = TOKENS["orders"], **over: str) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return {"csr": _csr(key), "token": token, "namespace": NAMESPACE, "appId": app_id, **over}


def test_sign_issues_a_spiffe_certificate_with_the_dns_name(cluster: Cluster) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    before = dt.datetime.now(dt.UTC)
    status, body = _sign(cluster, {**_request(), "csr": _csr(key)})
    assert status == 200, body
    cert = x509.load_pem_x509_certificate(str(body["certificate"]).encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # No trustDomain in the request: the sentry's default, Dapr's "public".
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/shop/orders"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["orders.shop.daprlite"]
    assert cert.public_key() == key.public_key()
    ca = x509.load_pem_x509_certificate(cluster.sentry.bundle_file.read_bytes())
    assert body["trustAnchors"] == ca.public_bytes(serialization.Encoding.PEM).decode()
    cert.verify_directly_issued_by(ca)
    lifetime = cert.not_valid_after_utc - before
    assert dt.timedelta(0) < lifetime <= dt.timedelta(seconds=WORKLOAD_TTL_SECONDS + 2)
    assert body["expiresAt"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sign_uses_the_trust_domain_the_request_names(cluster: Cluster) -> None:
    status, body = _sign(cluster, _request(trustDomain="shop.example"))
    assert status == 200, body
    cert = x509.load_pem_x509_certificate(str(body["certificate"]).encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://shop.example/ns/shop/orders"
    ]
    assert sans.get_values_for_type(x509.DNSName) == ["orders.shop.daprlite"]


@pytest.mark.parametrize(
    ("request_body", "why"),
    [
        (_request(app_id="checkout"), "app id 'checkout' was asked for"),
        (_request(namespace="payments"), "namespace 'payments' was asked for"),
        (
            _request(token="token-of-another-account"),
            "runs as service account 'orders', the token is for 'intruder'",
        ),
        (_request(token="token-of-no-pod"), "the token is not bound to a pod"),
        (
            _request(token="token-of-a-replaced-pod"),
            "the token's pod shop/orders-replaced has been replaced",
        ),
        (
            _request(token="token-of-a-disabled-pod"),
            "pod shop/orders-disabled does not ask for a sidecar",
        ),
        (
            _request(token="token-of-an-upper-case-pod"),
            "runs app id 'Orders', which is not a valid app id",
        ),
    ],
    ids=[
        "other-app",
        "other-namespace",
        "service-account-mismatch",
        "not-bound-to-a-pod",
        "pod-replaced",
        "pod-not-enabled",
        "pod-app-id-invalid",
    ],
)
def test_a_token_that_does_not_prove_the_pod_and_app_gets_403(
    cluster: Cluster, request_body: dict[str, str], why: str
) -> None:
    status, body = _sign(cluster, request_body)
    assert status == 403
    assert body["errorCode"] == "ERR_SENTRY_FORBIDDEN"
    assert why in str(body["message"])


@pytest.mark.parametrize(
    "token",
    [
        "unknown-to-the-api-server",
        "token-for-another-audience",
        "token-reported-for-another-audience",
    ],
)
def test_an_unauthenticated_token_gets_401(cluster: Cluster, token: str) -> None:
    status, body = _sign(cluster, _request(token=token))
    assert status == 401
    assert body["errorCode"] == "ERR_SENTRY_UNAUTHENTICATED"
    assert "'daprlite-sentry'" in str(body["message"])
    assert token not in json.dumps(body)
    assert token not in cluster.sentry.output


@pytest.mark.parametrize(
    ("raw", "field_named"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"[" * 50_000, "body"),  # nested deeper than the JSON parser follows
        (
            json.dumps(
                {**_request(), "csr": _csr(ec.generate_private_key(ec.SECP521R1()))}
            ).encode(),
            "csr",
        ),
        (json.dumps({**_request(), "csr": ""}).encode(), "csr"),
        (json.dumps({**_request(), "csr": "-----BEGIN GARBAGE-----"}).encode(), "csr"),
        (json.dumps({k: v for k, v in _request().items() if k != "token"}).encode(), "token"),
        (json.dumps({**_request(), "appId": 7}).encode(), "appId"),
        (json.dumps({**_request(), "appId": "orders.shop"}).encode(), "appId"),
        # dns_name() lower-cases: 'Orders' would share the DNS name of 'orders'.
        (json.dumps({**_request(), "appId": "Orders"}).encode(), "appId"),
        (json.dumps({**_request(), "appId": "orders_svc"}).encode(), "appId"),
        (json.dumps({**_request(), "appId": "a" * 55}).encode(), "appId"),
        (json.dumps({**_request(), "trustDomain": "Example.ORG"}).encode(), "trustDomain"),
        (json.dumps({**_request(), "trustDomain": "a/b"}).encode(), "trustDomain"),
        (json.dumps({**_request(), "trustDomain": ""}).encode(), "trustDomain"),
        (json.dumps({**_request(), "trustDomain": 7}).encode(), "trustDomain"),
        (json.dumps({**_request(), "trustDomain": "a" * 256}).encode(), "trustDomain"),
        (json.dumps({**_request(), "namespace": "Shop/../x"}).encode(), "namespace"),
        (
            json.dumps({**_request(), "csr": _csr(rsa.generate_private_key(65537, 2048))}).encode(),
            "csr",
        ),
    ],
)
def test_malformed_sign_requests_get_400_naming_the_field(
    cluster: Cluster, raw: bytes, field_named: str
) -> None:
    status, body = _sign(cluster, None, raw=raw)
    assert status == 400, body
    assert body["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert str(body["message"]).startswith(f"{field_named}:")


def test_a_malformed_trust_domain_flag_stops_the_sentry_naming_it() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "daprlite", "sentry", "--trust-domain", "Cluster.Local"],
        env={k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "DAPR"))},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "--trust-domain: expected lower-case letters" in run.stderr
    assert "'Cluster.Local'" in run.stderr


def test_healthz_and_trust_bundle(cluster: Cluster) -> None:
    ctx = cluster.sentry.context()
    url = f"https://{cluster.sentry.address}/v1/trust-bundle"
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        assert r.read() == cluster.sentry.bundle_file.read_bytes()


# -- two sidecars with certificates from the sentry -----------------------------------------


@dataclass
class Sidecars:
    home: Path
    caller: SidecarProcess
    callee: SidecarProcess

    def internal_port(self, app_id: str) -> int:
        for record in (self.home / "run").glob(f"{app_id}.*.json"):
            return int(json.loads(record.read_text())["internal_port"])
        raise AssertionError(f"no run-folder record for {app_id}")


# Not the sentry's default ("public"): the sidecars get it only because they ask for it.
TRUST_DOMAIN = "shop.example"


def sidecar_env(cluster: Cluster, app_id: str) -> dict[str, str]:
    token_file = cluster.tmp / "tokens" / app_id / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKENS[app_id])
    return {
        "NAMESPACE": NAMESPACE,
        "DAPRLITE_TRUST_DOMAIN": TRUST_DOMAIN,  # as the injector's --trust-domain sets it
        "DAPR_TRUST_ANCHORS": cluster.sentry.bundle_file.read_text(),
        "DAPRLITE_SENTRY_TOKEN_FILE": str(token_file),
    }


MTLS_ARGS = ("--enable-mtls",)


@pytest.fixture(scope="module")
def sidecars(cluster: Cluster) -> Iterator[Sidecars]:
    home = cluster.tmp / "home"  # no `daprlite init`: no local CA to fall back on
    resources = cluster.tmp / "resources"
    resources.mkdir()
    args = (*MTLS_ARGS, "--sentry-address", cluster.sentry.address)
    procs: list[SidecarProcess] = []
    try:
        callee = start_callee(
            "checkout", home, resources, extra_args=args, env=sidecar_env(cluster, "checkout")
        )
        procs.append(callee)
        caller = SidecarProcess(
            [resources], "orders", home, extra_args=args, env=sidecar_env(cluster, "orders")
        )
        procs.append(caller)
        for proc in procs:
            proc.wait_ready()
        wait_for(
            lambda: call("GET", f"{caller.http}/v1.0/invoke/checkout/method/up").status == 200,
            30,
            "the callee's app reachable from the caller",
        )
        yield Sidecars(home, caller, callee)
    finally:
        for proc in procs:
            proc.stop()


def test_sidecars_invoke_each_other_over_mtls_with_sentry_certificates(sidecars: Sidecars) -> None:
    assert "this sidecar is spiffe://shop.example/ns/shop/checkout" in sidecars.callee.output
    assert "this sidecar is spiffe://shop.example/ns/shop/orders" in sidecars.caller.output
    reply = call("POST", f"{sidecars.caller.http}/v1.0/invoke/checkout/method/pay", data=b"{}")
    assert reply.status == 200, reply.body
    echoed = reply.json()
    assert isinstance(echoed, dict) and echoed["path"] == "/pay"
    headers = echoed["headers"]
    assert isinstance(headers, dict) and headers["dapr-caller-app-id"] == "orders"


def test_sidecars_renew_from_the_sentry_and_keep_working(sidecars: Sidecars) -> None:
    def renewed() -> bool:
        return sidecars.callee.output.count("workload certificate for") >= 2

    wait_for(renewed, 3 * WORKLOAD_TTL_SECONDS, "the callee to renew its sentry certificate")
    reply = call("POST", f"{sidecars.caller.http}/v1.0/invoke/checkout/method/again", data=b"{}")
    assert reply.status == 200, reply.body


def _dial_internal(sidecars: Sidecars, cluster: Cluster, cert_pem: bytes, key_pem: bytes) -> str:
    """One raw request to the callee's internal port with this client certificate."""
    ctx = cluster.sentry.context()
    ctx.check_hostname = False
    folder = cluster.tmp / "client"
    folder.mkdir(exist_ok=True)
    (folder / "c.crt").write_bytes(cert_pem)
    (folder / "c.key").write_bytes(key_pem)
    ctx.load_cert_chain(folder / "c.crt", folder / "c.key")
    request = (
        b"POST /v1/invoke/checkout/x HTTP/1.1\r\nHost: checkout\r\n"
        b"x-daprlite-route: POST checkout shop orders shop http\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    port = sidecars.internal_port("checkout")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            sock = ctx.wrap_socket(raw)
            sock.sendall(request)
            data = sock.recv(65536)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            return f"refused: {type(exc).__name__}"
    return data.split(b"\r\n", 1)[0].decode() if data else "refused: closed"


def test_a_certificate_from_another_ca_is_refused(sidecars: Sidecars, cluster: Cluster) -> None:
    forged = create_ca("not the sentry").issue_pem(
        "spiffe://public/ns/shop/orders", dt.timedelta(minutes=5)
    )
    assert _dial_internal(sidecars, cluster, forged.cert_pem, forged.key_pem).startswith("refused")
    # The same request with a certificate the sentry issued gets through the handshake.
    key = ec.generate_private_key(ec.SECP256R1())
    status, body = _sign(cluster, {**_request(), "csr": _csr(key)})
    assert status == 200, body
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    line = _dial_internal(sidecars, cluster, str(body["certificate"]).encode(), key_pem)
    assert line.startswith("HTTP/1.1 200"), line


def test_missing_trust_anchors_token_file_or_refusal_stop_the_sidecar_with_a_clear_error(
    cluster: Cluster,
) -> None:
    home = cluster.tmp / "home-broken"
    base = {k: v for k, v in os.environ.items() if not k.startswith("DAPR")}
    cases = [
        ({}, "DAPR_TRUST_ANCHORS"),
        (
            {"DAPR_TRUST_ANCHORS": cluster.sentry.bundle_file.read_text()},
            "DAPRLITE_SENTRY_TOKEN_FILE",
        ),
        (
            {
                "DAPR_TRUST_ANCHORS": cluster.sentry.bundle_file.read_text(),
                "DAPRLITE_SENTRY_TOKEN_FILE": str(cluster.tmp / "no-such-token"),
            },
            "no such file",
        ),
        # A token of the checkout pod, used by a sidecar that claims to be orders.
        (sidecar_env(cluster, "checkout"), "refused to sign (HTTP 403): ERR_SENTRY_FORBIDDEN"),
    ]
    for env, expected in cases:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "daprlite",
                "sidecar",
                "--app-id",
                "orders",
                "--dapr-http-port",
                str(free_port()),
                "--dapr-grpc-port",
                str(free_port()),
                *MTLS_ARGS,
                "--sentry-address",
                cluster.sentry.address,
            ],
            env={**base, "DAPRLITE_HOME": str(home), "NAMESPACE": NAMESPACE, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode != 0
        assert expected in run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr


def test_sign_requests_are_rate_limited_per_client(cluster: Cluster) -> None:
    """Each /v1/sign costs a TokenReview: a client past its burst gets 429, not another one."""
    limited = start_sentry(
        cluster.tmp,
        cluster.kubeconfig,
        "limited",
        WORKLOAD_TTL_SECONDS,
        ("--sign-rate-limit", "0.1", "--sign-burst", "2"),
    )
    try:
        ctx = limited.context()

        def sign(body: bytes) -> tuple[int, dict[str, object], str]:
            req = urllib.request.Request(
                f"https://{limited.address}/v1/sign", data=body, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                    return r.status, json.loads(r.read()), ""
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read()), err.headers.get("Retry-After", "")

        # Malformed bodies are refused before the limiter: they cost no TokenReview.
        for _ in range(3):
            assert sign(b"{not json")[0] == 400
        reviews = len(cluster.api.requests)
        statuses = [sign(json.dumps(_request()).encode()) for _ in range(3)]
        assert [s for s, _, _ in statuses] == [200, 200, 429]
        _, body, retry_after = statuses[2]
        assert body["errorCode"] == "ERR_RATE_LIMITED" and int(retry_after) >= 1
        tokenreviews = [r for r in cluster.api.requests[reviews:] if "tokenreviews" in r]
        assert len(tokenreviews) == 2
    finally:
        limited.stop()
