"""A gRPC app for the invocation tests, built with the official SDK's ``dapr.ext.grpc.App``.

Methods:
- ``echo``: answers JSON with the text, content type and metadata it received,
  plus a response header ``x-app-answer: yes``;
- ``fail``: raises, so the app answers gRPC UNKNOWN;
- ``slow``: sleeps the number of milliseconds in the body, then answers ``done``.
Unknown methods are UNIMPLEMENTED (the SDK's behaviour). Port: ``APP_PORT``.
"""

from __future__ import annotations

import json
import os
import time

from dapr.clients.grpc._response import InvokeMethodResponse
from dapr.ext.grpc import App, InvokeMethodRequest

app = App()


@app.method("echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    payload = {
        "text": request.text(),
        "content_type": request.content_type,
        "metadata": {k: v[0] for k, v in request.get_metadata(as_dict=True).items() if v},
    }
    return InvokeMethodResponse(
        json.dumps(payload), "application/json", headers=(("x-app-answer", "yes"),)
    )


@app.method("fail")
def fail(request: InvokeMethodRequest) -> str:
    raise RuntimeError("failing on purpose")


@app.method("slow")
def slow(request: InvokeMethodRequest) -> str:
    time.sleep(int(request.text() or "100") / 1000)
    return "done"


app.run(int(os.environ["APP_PORT"]))
