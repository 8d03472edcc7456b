"""The `shop` app of the demo: state and service invocation through its sidecar.

It needs nothing but the standard library: the sidecar's port comes from
DAPR_HTTP_PORT, which `daprlite run` sets, exactly as `dapr run` does. It uses
the state API directly, then calls the `orders` app by app id, and finally
asks `orders` to stop so that the whole demo system exits.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

SIDECAR = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}"
BASE = f"{SIDECAR}/v1.0/state/statestore"
ORDERS = f"{SIDECAR}/v1.0/invoke/orders/method"


def request(method: str, url: str, body: object = None, headers: dict[str, str] | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def invoke_orders() -> None:
    # The orders app may still be starting: its sidecar answers 500 until it is up.
    for _ in range(50):
        status, _, _ = request("GET", f"{ORDERS}/orders/none")
        if status == 404:
            break
        time.sleep(0.2)
    status, _, body = request("PUT", f"{ORDERS}/orders/7", {"item": "coffee", "qty": 1})
    print(f"invoke orders: PUT /orders/7        -> HTTP {status} {body.decode()}")
    status, _, body = request("GET", f"{ORDERS}/orders/7")
    print(f"invoke orders: GET /orders/7        -> HTTP {status} {body.decode()}")
    request("POST", f"{ORDERS}/quit")
    print("asked orders to stop; the demo system exits")


def main() -> None:
    status, _, _ = request("POST", BASE, [{"key": "order-1", "value": {"item": "tea", "qty": 2}}])
    print(f"saved order-1                       -> HTTP {status}")

    status, headers, body = request("GET", f"{BASE}/order-1")
    etag = headers["ETag"]
    print(f"read order-1                        -> {body.decode()} (etag {etag[:8]}...)")

    update = [{"key": "order-1", "value": {"item": "tea", "qty": 3}, "etag": etag}]
    status, _, _ = request("POST", BASE, update)
    print(f"update with the current etag        -> HTTP {status}")

    status, _, body = request("POST", BASE, update)
    print(f"update again with the now-stale etag -> HTTP {status} {json.loads(body)['errorCode']}")

    status, _, body = request("GET", f"{BASE}/order-1")
    print(f"read order-1                        -> {body.decode()}")

    visits = request("GET", f"{BASE}/visits")[2]
    count = int(visits or b"0") + 1
    request("POST", BASE, [{"key": "visits", "value": count}])
    print(f"this demo has run {count} time(s); the count survives restarts (SQLite file)")

    status, _, _ = request("DELETE", f"{BASE}/order-1")
    print(f"deleted order-1                     -> HTTP {status}")

    invoke_orders()


if __name__ == "__main__":
    main()
