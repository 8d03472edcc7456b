"""The Kubernetes example's app code (deploy/kubernetes/examples/apps) works against real sidecars.

No cluster runs here, so the two example apps run under ``daprlite run`` exactly as the pods
run them (``python /app/<app>.py``, with the ``DAPR_HTTP_PORT`` the injector would give):
checkout invokes orders through its sidecar every two seconds, orders saves each order
through its own sidecar's state API. Only the state store differs from the cluster
(in-memory instead of Redis; the Redis component itself is checked against the CRD schema
in tests/unit/test_k8s_manifests.py).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for

APPS = Path(__file__).parents[2] / "deploy" / "kubernetes" / "examples" / "apps"


def _call(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarProcess, ...]]:
    home = tmp_path_factory.mktemp("home")
    resources = tmp_path_factory.mktemp("resources")
    (resources / "statestore.yaml").write_text(
        component_yaml("statestore", "state.in-memory", scopes=["orders"])
    )
    app_port = free_port()
    orders = SidecarProcess(
        [resources],
        "orders",
        home,
        extra_args=["--app-port", str(app_port)],
        command=[sys.executable, str(APPS / "orders.py")],
        env={"APP_PORT": str(app_port)},
    )
    checkout = None
    try:
        orders.wait_ready()
        checkout = SidecarProcess(
            [resources], "checkout", home, command=[sys.executable, str(APPS / "checkout.py")]
        )
        checkout.wait_ready()
        yield orders, checkout
    finally:
        if checkout is not None:
            checkout.stop()
        orders.stop()


def test_checkout_invokes_orders_and_orders_saves_each_order(
    example: tuple[SidecarProcess, ...],
) -> None:
    orders, checkout = example
    ok = re.compile(r'checkout: order (\d+) -> 200 \{"saved": "order-\1"\}')
    wait_for(lambda: ok.search(checkout.output) is not None, 30, "a successful checkout call")
    order_id = int(ok.search(checkout.output).group(1))  # type: ignore[union-attr]
    wait_for(lambda: f"orders: saved order-{order_id}" in orders.output, 10, "orders' log line")
    # What orders saved is in its state store, read back through the app.
    status, body = _call("GET", f"{orders.http}/v1.0/invoke/orders/method/order/{order_id}")
    assert status == 200, body
    assert json.loads(body) == {"orderId": order_id}
    status, body = _call("GET", f"{orders.http}/v1.0/state/statestore/order-{order_id}")
    assert status == 200
    assert json.loads(body) == {"orderId": order_id}


def test_orders_answers_bad_input_with_400_and_unknown_orders_with_404(
    example: tuple[SidecarProcess, ...],
) -> None:
    orders, _ = example
    status, body = _call("POST", f"{orders.http}/v1.0/invoke/orders/method/neworder", b"{}")
    assert status == 400
    assert b"orderId" in body
    status, body = _call("GET", f"{orders.http}/v1.0/invoke/orders/method/order/999999")
    assert status == 404
    assert json.loads(body) == {"error": "no order order-999999"}  # the app's own answer
