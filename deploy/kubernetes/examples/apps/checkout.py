"""Example app ``checkout`` (deploy/kubernetes/examples): invokes ``orders`` every two seconds.

Each call goes to this pod's own sidecar (``localhost:$DAPR_HTTP_PORT``), which finds the
``orders`` sidecar through Kubernetes DNS and forwards the call over mTLS. One log line per
call, e.g. ``checkout: order 3 -> 200 {"saved": "order-3"}``. Standard library only.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}/v1.0"
TARGET = os.environ.get("TARGET_APP_ID", "orders")


def invoke(order_id: int) -> tuple[int, str]:
    req = urllib.request.Request(
        f"{SIDECAR}/invoke/{TARGET}/method/neworder",
        data=json.dumps({"orderId": order_id}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


if __name__ == "__main__":
    order_id = 0
    while True:
        order_id += 1
        status, body = invoke(order_id)
        print(f"checkout: order {order_id} -> {status} {body}", flush=True)
        time.sleep(2)
