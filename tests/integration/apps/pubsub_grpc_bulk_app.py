"""A gRPC subscriber built with ``dapr.ext.grpc.App`` for bulk delivery.

Subscribes to ``gbulk`` on pubsub ``pubsub``; the sidecar's declarative bulk
subscription for that topic takes precedence, so events arrive through
``OnBulkTopicEvent``, which the SDK answers by calling this handler once per
entry. Each call is appended to ``RECORD_FILE`` as ``{"id", "data"}``; the
answer follows ``data.answer``: ``RETRY`` (first delivery of that id only),
``DROP``, ``RAISE`` (an exception: the SDK answers RETRY, first delivery
only), else SUCCESS. A server interceptor records every RPC the sidecar makes
as ``{"rpc": <method>}``; with ``ALPHA_ONLY=1`` it answers ``OnBulkTopicEvent``
UNIMPLEMENTED, as an app built before that RPC existed, so only
``OnBulkTopicEventAlpha1`` works. Port: ``APP_PORT``.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from concurrent import futures

import grpc
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, SubscriptionMessage

lock = threading.Lock()
seen: collections.Counter[str] = collections.Counter()


def record(entry: dict) -> None:
    with lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _unimplemented(request: object, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "this app predates OnBulkTopicEvent")


class Recorder(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        method = handler_call_details.method
        record({"rpc": method})
        if os.environ.get("ALPHA_ONLY") == "1" and method.endswith("/OnBulkTopicEvent"):
            return grpc.unary_unary_rpc_method_handler(_unimplemented)
        return continuation(handler_call_details)


app = App(thread_pool=futures.ThreadPoolExecutor(max_workers=10), interceptors=[Recorder()])


@app.subscribe(pubsub_name="pubsub", topic="gbulk")
def gbulk(event: SubscriptionMessage) -> TopicEventResponse:
    data = event.data()
    record({"id": event.id(), "data": data})
    with lock:
        seen[event.id()] += 1
        first = seen[event.id()] == 1
    answer = data.get("answer", "SUCCESS") if isinstance(data, dict) else "SUCCESS"
    if answer == "RAISE" and first:
        raise RuntimeError("the handler failed")
    if answer == "DROP":
        return TopicEventResponse("drop")
    if answer == "RETRY" and first:
        return TopicEventResponse("retry")
    return TopicEventResponse("success")


app.run(int(os.environ["APP_PORT"]))
