"""A gRPC test app built with the official SDK's ``dapr.ext.grpc.App``.

Env: APP_PORT, RECORD_FILE, BINDINGS (comma list), FAIL_FIRST (raise for that
many deliveries per binding before accepting).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter

from dapr.ext.grpc import App, BindingRequest

app = App()
FAIL_FIRST = int(os.environ.get("FAIL_FIRST", "0"))
seen: Counter[str] = Counter()
lock = threading.Lock()


def make_handler(name: str):
    def handle(request: BindingRequest) -> None:
        with lock:
            seen[name] += 1
            attempt = seen[name]
        if attempt <= FAIL_FIRST:
            raise RuntimeError("failing on purpose")
        record = {
            "binding": name,
            "body": request.text(),
            "metadata": dict(request.binding_metadata),
            "attempt": attempt,
        }
        with lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    return handle


for binding in filter(None, os.environ.get("BINDINGS", "").split(",")):
    app.binding(binding)(make_handler(binding))

app.run(int(os.environ["APP_PORT"]))
