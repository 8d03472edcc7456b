"""``daprlite injector`` as a real process, sent AdmissionReview v1 over HTTPS like the API server.

The serving certificate comes from a CA made here; the client verifies it,
as the API server does with the webhook's ``caBundle``. The certificate files
are then rotated under the running process, which must serve the new one.
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
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.harness import free_port, wait_for

ANNOTATED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "orders-6b7c9d8f4-",
        "namespace": "shop",
        "labels": {"pod-template-hash": "6b7c9d8f4"},
        "annotations": {"daprlite.io/enabled": "true", "dapr.io/app-port": "8080"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "orders-6b7c9d8f4",
                "uid": "0d3c4b5a-1e2f-4a3b-9c8d-7e6f5a4b3c2d",
                "controller": True,
            }
        ],
    },
    "spec": {"containers": [{"name": "orders", "image": "shop/orders:1"}]},
}


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue_server(self) -> tuple[bytes, bytes, int]:
        """A certificate for 127.0.0.1: (cert PEM, key PEM, serial)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "injector")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, serial


def make_ca() -> WebhookCA:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "injector test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return WebhookCA(cert, key)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- the injector process -----------------------------------------------------------------


@dataclass
class Injector:
    proc: subprocess.Popen[bytes]
    port: int
    ca: WebhookCA
    cert_file: Path
    key_file: Path
    client: ssl.SSLContext
    first_serial: int
    anchors_file: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def post(self, body: bytes) -> tuple[int, dict[str, object]]:
        req = urllib.request.Request(
            f"{self.url}/mutate",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=self.client, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def review(self, request: dict[str, object]) -> dict[str, object]:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        status, reply = self.post(json.dumps(body).encode())
        assert status == 200, reply
        assert reply["apiVersion"] == "admission.k8s.io/v1"
        assert reply["kind"] == "AdmissionReview"
        response = reply["response"]
        assert isinstance(response, dict)
        assert response["uid"] == request["uid"]
        return response

    def served_serial(self) -> int:
        """The serial of the certificate a new TLS handshake presents (verified by the CA)."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            self.client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def _healthy(url: str, client: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", context=client, timeout=2) as resp:
            return resp.status == 204
    except OSError:
        return False


@pytest.fixture(scope="module")
def injector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Injector]:
    folder = tmp_path_factory.mktemp("injector")
    ca = make_ca()
    cert_pem, key_pem, serial = ca.issue_server()
    cert_file, key_file, ca_file = folder / "tls.crt", folder / "tls.key", folder / "ca.crt"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    ca_file.write_bytes(ca.pem())
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daprlite",
            "injector",
            "--port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert_file),
            "--tls-key-file",
            str(key_file),
            "--tls-reload-interval",
            "0.2",
            "--sidecar-image",
            "daprlite:test",
            "--trust-anchors-file",
            str(ca_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DAPRLITE_HOME": str(folder / "home")},
    )
    client = ssl.create_default_context(cafile=str(ca_file))
    url = f"https://127.0.0.1:{port}"
    try:
        try:
            wait_for(lambda: proc.poll() is None and _healthy(url, client), 20, "injector /healthz")
        except AssertionError:
            proc.kill()
            out = proc.communicate(timeout=5)[0].decode(errors="replace")
            raise AssertionError(f"injector did not start:\n{out}") from None
        yield Injector(proc, port, ca, cert_file, key_file, client, serial, ca_file)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def pod_request(pod: dict[str, object], operation: str = "CREATE") -> dict[str, object]:
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "namespace": "shop",
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod,
        "oldObject": None,
        "dryRun": False,
    }


# --- tests --------------------------------------------------------------------------------


def test_annotated_pod_comes_back_with_a_patch_that_validates(injector: Injector) -> None:
    response = injector.review(pod_request(ANNOTATED_POD))
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert isinstance(response["patch"], str)
    ops = json.loads(base64.b64decode(response["patch"]))
    result = jsonpatch.apply_patch(ANNOTATED_POD, ops)
    kubernetes_validate.validate(result, "1.29", strict=True)
    (sidecar,) = result["spec"]["initContainers"]
    assert sidecar["name"] == "daprlite"
    assert sidecar["image"] == "daprlite:test"
    assert sidecar["args"][:7] == [
        "sidecar",
        "--mode",
        "kubernetes",
        "--app-id",
        "orders",
        "--app-port",
        "8080",
    ]
    anchors = {e["name"]: e.get("value") for e in sidecar["env"]}["DAPR_TRUST_ANCHORS"]
    assert anchors == injector.ca.pem().decode()
    assert result["metadata"]["annotations"]["daprlite.io/injected"] == "true"


def test_patched_pod_sent_again_is_allowed_without_a_patch(injector: Injector) -> None:
    first = injector.review(pod_request(ANNOTATED_POD))
    once = jsonpatch.apply_patch(ANNOTATED_POD, json.loads(base64.b64decode(first["patch"])))
    again = injector.review(pod_request(once))
    assert again["allowed"] is True
    assert "patch" not in again and "patchType" not in again


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("daprlite.io/app-port", "eighty"),
        ("dapr.io/sidecar-memory-limit", "1GB"),
        ("daprlite.io/app-id", "Orders_Service"),
        ("daprlite.io/env", "NOVALUE"),
    ],
)
def test_malformed_annotation_is_refused_with_its_name(
    injector: Injector, annotation: str, value: str
) -> None:
    pod = json.loads(json.dumps(ANNOTATED_POD))
    pod["metadata"]["annotations"][annotation] = value
    response = injector.review(pod_request(pod))
    assert response["allowed"] is False
    assert "patch" not in response
    status = response["status"]
    assert isinstance(status, dict)
    assert status["code"] == 400
    assert annotation in status["message"]
    if annotation.endswith("/env"):
        assert value not in status["message"]  # env values may be secrets: never echoed
    else:
        assert repr(value) in status["message"]


def test_env_annotation_values_are_not_in_the_refusal(injector: Injector) -> None:
    pod = json.loads(json.dumps(ANNOTATED_POD))
    pod["metadata"]["annotations"]["dapr.io/env"] = "API_TOKEN=tok-1a2b3c4d5e,9LIVES=x"
    response = injector.review(pod_request(pod))
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert message.startswith("dapr.io/env: item 2: expected a variable name"), message
    assert "tok-1a2b3c4d5e" not in json.dumps(response)
    assert "9LIVES" not in message


@pytest.mark.parametrize(
    ("change", "request_kind"),
    [("UPDATE", "Pod"), ("CREATE", "Deployment"), ("DELETE", "Pod")],
)
def test_only_pod_creation_is_patched(injector: Injector, change: str, request_kind: str) -> None:
    request = pod_request(ANNOTATED_POD, operation=change)
    request["kind"] = {"group": "", "version": "v1", "kind": request_kind}
    response = injector.review(request)
    assert response["allowed"] is True
    assert "patch" not in response


def test_pod_without_annotations_is_allowed_unchanged(injector: Injector) -> None:
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    response = injector.review(pod_request(plain))
    assert response == {"uid": response["uid"], "allowed": True}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[" * 200_000,  # nested deeper than the JSON parser follows
        b"\xff\xfe",
        b"[]",
        b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}',
        b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
        b' "request": {"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": 5}}',
    ],
    ids=[
        "empty",
        "text",
        "deep",
        "binary",
        "array",
        "v1beta1",
        "no-request",
        "uid-int",
        "object-int",
    ],
)
def test_body_that_is_not_an_admission_review_gets_400(injector: Injector, body: bytes) -> None:
    status, reply = injector.post(body)
    assert status == 400
    assert reply["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert "AdmissionReview" in str(reply["message"])


def test_rotated_certificate_is_served_without_a_restart(injector: Injector) -> None:
    assert injector.served_serial() == injector.first_serial
    cert_pem, key_pem, serial = injector.ca.issue_server()
    # Half a rotation (a new certificate whose key has not arrived yet) keeps the old pair.
    write_atomically(injector.cert_file, cert_pem)
    time.sleep(0.6)  # three reload checks (--tls-reload-interval 0.2) see the mismatched pair
    assert injector.served_serial() == injector.first_serial
    write_atomically(injector.key_file, key_pem)
    wait_for(lambda: injector.served_serial() == serial, 10, "the rotated certificate")
    # Still the same process, still answering reviews.
    assert injector.proc.poll() is None
    response = injector.review(pod_request(ANNOTATED_POD))
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"


def _injected_anchors(injector: Injector) -> str:
    response = injector.review(pod_request(ANNOTATED_POD))
    ops = json.loads(base64.b64decode(response["patch"]))
    (sidecar,) = jsonpatch.apply_patch(ANNOTATED_POD, ops)["spec"]["initContainers"]
    return str({e["name"]: e.get("value") for e in sidecar["env"]}["DAPR_TRUST_ANCHORS"])


def test_changed_trust_anchors_reach_new_pods_without_a_restart(injector: Injector) -> None:
    original = injector.anchors_file.read_bytes()
    assert _injected_anchors(injector) == original.decode()
    # The CA Secret changes: the bundle now holds the new CA and the old one.
    rotated = make_ca().pem() + original
    try:
        # Something that is not PEM (a half-written update) keeps the current anchors.
        write_atomically(injector.anchors_file, b"not a certificate")
        time.sleep(0.6)  # three checks (--tls-reload-interval 0.2)
        assert _injected_anchors(injector) == original.decode()
        write_atomically(injector.anchors_file, rotated)
        wait_for(
            lambda: _injected_anchors(injector) == rotated.decode(), 10, "the new trust anchors"
        )
        assert injector.proc.poll() is None
    finally:
        write_atomically(injector.anchors_file, original)
        wait_for(
            lambda: _injected_anchors(injector) == original.decode(), 10, "the first anchors back"
        )


def test_mismatched_key_pair_stops_the_injector_with_both_flags_named(tmp_path: Path) -> None:
    ca = make_ca()
    cert_pem, _, _ = ca.issue_server()
    _, other_key, _ = ca.issue_server()
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(other_key)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "daprlite",
            "injector",
            "--port",
            str(free_port()),
            "--tls-cert-file",
            str(tmp_path / "tls.crt"),
            "--tls-key-file",
            str(tmp_path / "tls.key"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert "--tls-cert-file" in run.stderr and "--tls-key-file" in run.stderr
    assert "Traceback" not in run.stderr
