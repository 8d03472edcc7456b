"""An HTTP subscriber app for the pub/sub tests.

``GET /dapr/subscribe`` returns the subscriptions in env ``SUBSCRIPTIONS``
(JSON). Every delivery is appended to ``RECORD_FILE`` as one JSON line
``{path, headers, event}``; the answer depends on the event's data:
``{"answer": "RETRY"|"DROP"|"garbage"|"404"|"500"}`` answers that (the first
``times`` deliveries of that event id only, when ``times`` is given), else
SUCCESS. ``GET /healthz`` answers 204 and, with env ``PROBE_FILE`` set,
appends one line per probe there. Port: ``APP_PORT``.
"""

from __future__ import annotations

import collections
import json
import os

from aiohttp import web

seen: collections.Counter[str] = collections.Counter()


async def subscribe(request: web.Request) -> web.Response:
    return web.json_response(json.loads(os.environ.get("SUBSCRIPTIONS", "[]")))


async def healthz(request: web.Request) -> web.Response:
    if "PROBE_FILE" in os.environ:
        with open(os.environ["PROBE_FILE"], "a", encoding="utf-8") as f:
            f.write("probe\n")
    return web.Response(status=204)


async def deliver(request: web.Request) -> web.Response:
    event = json.loads(await request.read())
    record = {"path": request.path, "headers": dict(request.headers), "event": event}
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    data = event.get("data")
    if not isinstance(data, dict) or "answer" not in data:
        return web.json_response({"status": "SUCCESS"})
    seen[event["id"]] += 1
    if "times" in data and seen[event["id"]] > int(data["times"]):
        return web.json_response({"status": "SUCCESS"})
    answer = data["answer"]
    if answer in ("404", "500"):
        return web.Response(status=int(answer))
    if answer == "garbage":
        return web.Response(status=200, text="not json {")
    return web.json_response({"status": answer})


def main() -> None:
    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/{tail:.*}", deliver)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), print=None)


if __name__ == "__main__":
    main()
