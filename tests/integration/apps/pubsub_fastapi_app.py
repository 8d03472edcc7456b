"""An HTTP subscriber built with FastAPI and the SDK's ``dapr.ext.fastapi.DaprApp``.

``DaprApp.subscribe`` declares topics ``orders`` and ``poison`` on pubsub
``pubsub`` (its generated ``GET /dapr/subscribe``); each event is appended to
``RECORD_FILE`` as ``{"kind": "event", "path", "content_type", "event"}``.
``POST /bulk`` is the route of a declarative bulk subscription: each request
is recorded as ``{"kind": "bulk", "content_type", "request"}`` and every entry
is answered after its event's ``data.answer``: ``SUCCESS`` (also when absent),
``RETRY`` or ``NONE`` (no status: the sidecar retries) for the first delivery
of that event id only, ``DROP``. Served by uvicorn on ``APP_PORT``.
"""

from __future__ import annotations

import collections
import json
import os
import threading

import uvicorn
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI, Request

app = FastAPI()
dapr_app = DaprApp(app)
lock = threading.Lock()
seen: collections.Counter[str] = collections.Counter()


def record(entry: dict) -> None:
    with lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@dapr_app.subscribe(pubsub="pubsub", topic="orders")
def orders(request: Request, event: dict = Body()) -> None:  # noqa: B008 (FastAPI idiom)
    record(
        {
            "kind": "event",
            "path": request.url.path,
            "content_type": request.headers.get("content-type"),
            "event": event,
        }
    )


@dapr_app.subscribe(pubsub="pubsub", topic="poison")
def poison(request: Request, event: dict = Body()) -> None:  # noqa: B008 (FastAPI idiom)
    record({"kind": "event", "path": request.url.path, "event": event})


@app.post("/bulk")
async def bulk(request: Request) -> dict:
    body = await request.json()
    record({"kind": "bulk", "content_type": request.headers.get("content-type"), "request": body})
    statuses = []
    for entry in body["entries"]:
        event = entry["event"]
        data = event.get("data") if isinstance(event, dict) else None
        answer = data.get("answer", "SUCCESS") if isinstance(data, dict) else "SUCCESS"
        with lock:
            seen[event["id"]] += 1
            first = seen[event["id"]] == 1
        if answer in ("RETRY", "NONE") and not first:
            answer = "SUCCESS"
        if answer != "NONE":
            statuses.append({"entryId": entry["entryId"], "status": answer})
    return {"statuses": statuses}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")
