"""The `orders` service of the demo: an HTTP app other apps call by app id.

Standard library only. `daprlite run` gives it APP_PORT (where to listen) and
DAPR_HTTP_PORT (its own sidecar, used here for state). Routes:
  PUT  /orders/{id}  store the JSON body as the order (state key order-{id})
  GET  /orders/{id}  read it back
  POST /quit         stop the service (the demo's last step)
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = f"http://127.0.0.1:{os.environ['DAPR_HTTP_PORT']}/v1.0/state/statestore"


def state(method: str, url: str, body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Orders(BaseHTTPRequestHandler):
    def reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        order_id = self.path.rsplit("/", 1)[-1]
        order = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        order["placed_by"] = self.headers.get("dapr-caller-app-id", "?")
        state("POST", STATE, [{"key": f"order-{order_id}", "value": order}])
        self.reply(201, json.dumps(order).encode())

    def do_GET(self) -> None:
        status, body = state("GET", f"{STATE}/order-{self.path.rsplit('/', 1)[-1]}")
        self.reply(200, body) if status == 200 else self.reply(404, b'{"error": "no such order"}')

    def do_POST(self) -> None:
        if self.path == "/quit":
            self.reply(204)
            threading.Thread(target=self.server.shutdown).start()
        else:
            self.reply(404)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"orders: {self.command} {self.path} from {self.headers.get('dapr-caller-app-id')}")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Orders)
    print(f"orders: listening on port {os.environ['APP_PORT']}", flush=True)
    server.serve_forever()
