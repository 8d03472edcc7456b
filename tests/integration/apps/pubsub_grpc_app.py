"""A gRPC subscriber app built with the official SDK's ``dapr.ext.grpc.App``.

Subscribes to ``orders`` (and ``routed`` with a rule) on pubsub ``pubsub``; each
event is appended to ``RECORD_FILE`` as JSON ``{topic, path, data, type, id}``.
An event whose data contains ``"fail"`` is answered RETRY the first time.
Port: ``APP_PORT``.
"""

from __future__ import annotations

import json
import os
import threading

from cloudevents.sdk.event import v1
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, Rule

app = App()
lock = threading.Lock()
attempts: dict[str, int] = {}


def record(topic: str, path: str, event: v1.Event) -> None:
    data = event.Data()
    text = data.decode() if isinstance(data, bytes) else json.dumps(data)
    entry = {
        "topic": topic,
        "path": path,
        "data": text,
        "type": event.EventType(),
        "id": event.EventID(),
    }
    with lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@app.subscribe(pubsub_name="pubsub", topic="orders")
def orders(event: v1.Event) -> TopicEventResponse:
    record("orders", "", event)
    data = event.Data()
    text = data.decode() if isinstance(data, bytes) else json.dumps(data)
    if "fail" in text:
        with lock:
            attempts[event.EventID()] = attempts.get(event.EventID(), 0) + 1
            if attempts[event.EventID()] == 1:
                return TopicEventResponse("retry")
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="routed", rule=Rule('event.type == "big"', 1))
def big(event: v1.Event) -> None:
    record("routed", "big", event)


app.run(int(os.environ["APP_PORT"]))
