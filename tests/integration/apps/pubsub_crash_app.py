"""A minimal HTTP subscriber for the pub/sub crash test (tests/e2e/test_pubsub_crash.py).

It subscribes (``GET /dapr/subscribe``) to ``TOPIC`` with dead-letter topic
``DLQ_TOPIC``, and to ``DLQ_TOPIC`` itself, on component ``PUBSUB``. Every
delivery appends one line ``<route> <n>`` (``work`` or ``dead``, ``n`` from
the event data ``{"n": ..., "poison": ...}``) to ``RECORD_FILE`` BEFORE the app
answers: the file is the test's ground truth of what the app received. One
``os.write`` on an ``O_APPEND`` descriptor per line keeps lines whole when the
process is killed; no fsync, since only the process dies, not the machine.
Poison events are answered DROP, so the sidecar moves them to the dead-letter
topic. Port: ``APP_PORT``.
"""

from __future__ import annotations

import json
import os

from aiohttp import web

RECORD = os.open(os.environ["RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


async def subscribe(request: web.Request) -> web.Response:
    pubsub, topic, dlq = os.environ["PUBSUB"], os.environ["TOPIC"], os.environ["DLQ_TOPIC"]
    return web.json_response(
        [
            {"pubsubname": pubsub, "topic": topic, "route": "/work", "deadLetterTopic": dlq},
            {"pubsubname": pubsub, "topic": dlq, "route": "/dead"},
        ]
    )


async def deliver(request: web.Request) -> web.Response:
    data = json.loads(await request.read())["data"]
    route = request.match_info["route"]
    os.write(RECORD, f"{route} {int(data['n'])}\n".encode())
    if route == "work" and data.get("poison"):
        return web.json_response({"status": "DROP"})
    return web.json_response({"status": "SUCCESS"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post("/{route:work|dead}", deliver)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), print=None)


if __name__ == "__main__":
    main()
