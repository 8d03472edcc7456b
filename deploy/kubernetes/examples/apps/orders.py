"""Example app ``orders`` (deploy/kubernetes/examples): stores orders through its sidecar.

The daprlite sidecar in the same pod calls this app on ``APP_PORT`` when another app
invokes ``orders``; the app in turn calls the sidecar's state API on
``localhost:$DAPR_HTTP_PORT`` (the injector sets that variable). Standard library only.

- ``POST /neworder`` with ``{"orderId": 7}`` saves the order under ``order-7`` in the state
  store ``statestore`` and answers ``{"saved": "order-7"}``;
- ``GET /order/<id>`` reads it back (404 when unknown);
- ``GET /healthz`` answers 200 (the pod's readiness probe).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STORE = "statestore"
SIDECAR = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}/v1.0"


def _sidecar(method: str, path: str, body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(SIDECAR + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Handler(BaseHTTPRequestHandler):
    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif self.path.startswith("/order/"):
            key = "order-" + self.path.removeprefix("/order/")
            status, body = _sidecar("GET", f"/state/{STORE}/{key}")
            if status == 204:
                self._reply(404, {"error": f"no order {key}"})
            elif status == 200:
                self._reply(200, json.loads(body))
            else:
                self._reply(502, {"error": f"state store answered {status}"})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/neworder":
            self._reply(404, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            order = json.loads(self.rfile.read(length) or b"{}")
            key = f"order-{int(order['orderId'])}"
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"error": 'expected {"orderId": <integer>}'})
            return
        status, _ = _sidecar("POST", f"/state/{STORE}", [{"key": key, "value": order}])
        if status != 204:
            self._reply(502, {"error": f"saving {key} failed with {status}"})
            return
        print(f"orders: saved {key}", flush=True)
        self._reply(200, {"saved": key})

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per saved order is enough."""


if __name__ == "__main__":
    port = int(os.environ.get("APP_PORT", "8080"))
    print(f"orders: listening on {port}, sidecar at {SIDECAR}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
