"""The injected sidecar starts with exactly the args and env the injector's patch gives it.

No kubelet here, so the test plays its part: it resolves the ``fieldRef``
env vars as the kubelet would, mounts the projected token at a temporary
path, and swaps the pod's fixed ports for free ones (every pod has its own
network namespace; this machine does not). The API server is the stand-in
in ``tests/k8sapi.py`` (through ``KUBECONFIG``); ``daprlite sentry`` runs
against it with the CA the injector was configured to trust (supplied in the
Secret ``daprlite-trust-bundle``), and the patch's ``--sentry-address`` is
swapped for the sentry's local address, as the ports are.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonpatch
import kubernetes_validate
import pytest

from daprlite.injector import InjectorConfig, build_patch
from daprlite.security.ca import create_ca
from tests import k8sapi
from tests.integration.harness import free_port, wait_for
from tests.integration.k8s_fixtures import (
    localize_args,
    outside_env,
    resolve_env,
    start_daprlite,
    supply_ca,
)
from tests.integration.sentry_process import Sentry, start_sentry

NAMESPACE = "shop"
POD_NAME = "orders-6b7c9d8f4-x2x9q"
SERVICE_ACCOUNT = "orders"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": POD_NAME,
        "namespace": NAMESPACE,
        "labels": {"pod-template-hash": "6b7c9d8f4"},
        "annotations": {
            "daprlite.io/enabled": "true",
            "dapr.io/app-port": "8080",
            "daprlite.io/log-level": "debug",
            "daprlite.io/enable-api-logging": "true",
            "daprlite.io/app-max-concurrency": "4",
            "daprlite.io/graceful-shutdown-seconds": "2",
            "daprlite.io/env": "ORDERS_GREETING=hello",
            "daprlite.io/config": "orders-config",
        },
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
    "spec": {
        "serviceAccountName": SERVICE_ACCOUNT,
        "containers": [{"name": "orders", "image": "shop/orders:1"}],
    },
}
# What the kubelet resolves each fieldRef to, for this pod.
FIELD_VALUES = {
    "metadata.namespace": NAMESPACE,
    "metadata.name": POD_NAME,
    "spec.serviceAccountName": SERVICE_ACCOUNT,
    "status.podIP": "127.0.0.1",
}
PROJECTED_TOKEN = "projected-token-for-tests"


@dataclass
class Started:
    proc: subprocess.Popen[str]
    args: list[str]
    patch_args: list[str]
    http_port: int
    output: list[str]
    sentry: Sentry
    container: dict[str, object]  # the patched sidecar container

    @property
    def public_port(self) -> int:
        return int(self.args[self.args.index("--dapr-public-port") + 1])

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class _App(BaseHTTPRequestHandler):
    """The app container: answers anything with 200."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    tmp = tmp_path_factory.mktemp("injected")
    home = tmp / "home"  # no local CA in it: the certificate must come from the sentry
    ca = create_ca("injected sidecar test CA")
    config = InjectorConfig(sidecar_image="daprlite:test", trust_anchors=ca.cert_pem.decode())
    patched = jsonpatch.apply_patch(POD, build_patch(POD, config))
    kubernetes_validate.validate(patched, "1.29", strict=True)
    (sidecar,) = patched["spec"]["initContainers"]
    token_file = tmp / "sentrytoken" / "token"
    token_file.parent.mkdir()
    token_file.write_text(PROJECTED_TOKEN)

    app_port, http_port = free_port(), free_port()
    ports: dict[str, int | str] = {
        "--app-port": app_port,
        "--dapr-http-port": http_port,
        "--dapr-grpc-port": free_port(),
        "--dapr-internal-grpc-port": free_port(),
        "--internal-proxy-port": free_port(),
    }
    app = ThreadingHTTPServer(("127.0.0.1", app_port), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    with k8sapi.running() as api:
        supply_ca(api, ca)  # the CA the injector hands out as trust anchors
        api.put(POD)  # as admitted: the app id is derived from the owner, as the injector did
        api.add_service_account_token(PROJECTED_TOKEN, NAMESPACE, SERVICE_ACCOUNT, POD_NAME)
        sentry = start_sentry(tmp, api.write_kubeconfig(tmp / "sentry-kubeconfig"), "injected")
        ports["--sentry-address"] = sentry.address
        args = localize_args(sidecar["args"], ports)
        api.put(k8sapi.component("orders-state", NAMESPACE, "state.in-memory"))
        api.put(k8sapi.component("elsewhere", "other-namespace", "state.in-memory"))
        api.put(
            {
                "apiVersion": "daprlite.io/v1alpha1",
                "kind": "Configuration",
                "metadata": {"name": "orders-config", "namespace": NAMESPACE},
                "spec": {"features": []},
            }
        )
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig", namespace=NAMESPACE)
        env = {
            **outside_env(),
            "DAPRLITE_HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            **resolve_env(sidecar["env"], FIELD_VALUES, token_file),
        }
        container = start_daprlite(args, env)
        started = Started(
            container.proc, args, sidecar["args"], http_port, container.lines, sentry, sidecar
        )
        try:
            yield started
        finally:
            sentry.stop()
            container.stop()
            app.shutdown()
            app.server_close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def test_sidecar_started_from_the_patch_gets_its_certificate_from_the_sentry(
    injected: Started,
) -> None:
    # Every flag of the patch is passed (only ports, listen addresses and the sentry's
    # address are swapped).
    assert len(injected.args) == len(injected.patch_args)
    assert injected.patch_args[injected.patch_args.index("--sentry-address") + 1] == (
        "daprlite-sentry.daprlite-system.svc:443"
    )

    def identified() -> bool:
        if injected.proc.poll() is not None:
            raise AssertionError("sidecar exited:\n" + "\n".join(injected.output))
        return any("this sidecar is spiffe://" in line for line in injected.output)

    wait_for(identified, 30, "the sidecar to get its workload certificate")
    assert any(
        # The injector's default trust domain: Dapr's "public".
        "this sidecar is spiffe://public/ns/shop/orders" in line
        for line in injected.output
    )
    assert f"to pod {NAMESPACE}/{POD_NAME}" in injected.sentry.output
    assert "CA loaded" in injected.sentry.output  # the supplied CA, not a new one


def test_sidecar_started_from_the_patch_serves_healthz(injected: Started) -> None:
    def healthy() -> bool:
        if injected.proc.poll() is not None:
            raise AssertionError("sidecar exited:\n" + "\n".join(injected.output))
        return _status(f"{injected.http}/v1.0/healthz") == 204

    wait_for(healthy, 30, "/v1.0/healthz to answer 204")
    # /healthz only turns 204 once the sidecar has reached the app on --app-port.
    with urllib.request.urlopen(f"{injected.http}/v1.0/metadata", timeout=5) as resp:
        meta = json.loads(resp.read())
    assert meta["id"] == "orders"
    # Resources come from the API server, from the namespace the NAMESPACE env var names.
    names = {c["name"]: c["type"] for c in meta["components"]}
    assert names.get("orders-state") == "state.in-memory"
    assert "elsewhere" not in names


def test_the_probes_of_the_patch_answer_on_the_health_only_public_port(injected: Started) -> None:
    probes = {
        kind: injected.container[kind]["httpGet"]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert {probe["port"] for probe in probes.values()} == {3501}
    assert injected.patch_args[injected.patch_args.index("--dapr-public-port") + 1] == "3501"
    base = f"http://127.0.0.1:{injected.public_port}"
    for kind, probe in probes.items():

        def answers(path: str = probe["path"]) -> bool:
            if injected.proc.poll() is not None:
                raise AssertionError("sidecar exited:\n" + "\n".join(injected.output))
            return _status(f"{base}{path}") == 204

        wait_for(answers, 30, f"the {kind} ({probe['path']}) on the public port")
    # Health and metadata reads only (as Dapr's public port): no other API is served there.
    assert _status(f"{base}/v1.0/metadata") == 200
    assert _status(f"{base}/v1.0/state/orders-state/k") == 404
