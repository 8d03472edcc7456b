"""Where each listener binds: the APIs on ``--dapr-listen-addresses``; sidecar-to-sidecar
traffic and the health-only ``--dapr-public-port`` on ``--internal-listen-addresses``.

This is the layout injected on Kubernetes: the Dapr API on the pod's loopback only,
the internal ports and the probe port on the pod IP. Here 127.0.0.2 plays the pod IP.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import SidecarProcess, free_port
from tests.integration.http import call
from tests.integration.invoke_system import start_callee

POD_IP = "127.0.0.2"


@dataclass
class Pod:
    home: Path
    callee: SidecarProcess
    caller: SidecarProcess
    public_port: int

    def record(self) -> dict[str, object]:
        for path in (self.home / "run").glob("podapp.*.json"):
            return dict(json.loads(path.read_text()))
        raise AssertionError("no run-folder record for podapp")


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    root = tmp_path_factory.mktemp("listen")
    home, resources = root / "home", root / "res"
    resources.mkdir()
    public = free_port()
    callee = start_callee(
        "podapp",
        home,
        resources,
        extra_args=(
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--internal-listen-addresses",
            POD_IP,
            "--dapr-public-port",
            str(public),
        ),
    )
    caller = SidecarProcess([resources], "outside", home)
    try:
        callee.wait_ready()
        caller.wait_ready()
        yield Pod(home, callee, caller, public)
    finally:
        caller.stop()
        callee.stop()


def test_the_api_listens_on_loopback_only(pod: Pod) -> None:
    assert _reachable("127.0.0.1", pod.callee.http_port)
    assert not _reachable(POD_IP, pod.callee.http_port)
    assert not _reachable(POD_IP, pod.callee.grpc_port)


def test_other_sidecars_reach_it_on_the_internal_address(pod: Pod) -> None:
    record = pod.record()
    assert record["host"] == POD_IP
    internal = int(str(record["internal_port"]))
    assert _reachable(POD_IP, internal) and not _reachable("127.0.0.1", internal)
    reply = call("GET", f"{pod.caller.http}/v1.0/invoke/podapp/method/hello")
    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict) and body["path"] == "/hello"


def test_the_public_port_serves_health_and_metadata_reads_only(pod: Pod) -> None:
    base = f"http://{POD_IP}:{pod.public_port}"
    assert not _reachable("127.0.0.1", pod.public_port)
    assert call("GET", f"{base}/v1.0/healthz").status == 204
    assert call("GET", f"{base}/v1.0/healthz/outbound").status == 204
    meta = call("GET", f"{base}/v1.0/metadata")
    assert meta.status == 200
    body = meta.json()
    assert isinstance(body, dict) and body["id"] == "podapp"
    assert call("PUT", f"{base}/v1.0/metadata/k", data=b"v").status == 404
    for path, headers in (
        ("/v1.0/state/statestore/k", {}),
        ("/hello", {"dapr-app-id": "podapp"}),  # no invocation through the probe port
    ):
        reply = call("GET", f"{base}{path}", headers=headers)
        assert reply.status == 404, path
