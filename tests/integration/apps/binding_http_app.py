"""A test app that receives input-binding events over HTTP.

Env: APP_PORT, RECORD_FILE (one JSON line per accepted event), ROUTES (comma
list of routes it handles), FAIL_FIRST (answer 500 to that many deliveries per
route before accepting).
"""

from __future__ import annotations

import json
import os
from collections import Counter

from aiohttp import web

ROUTES = {r for r in os.environ.get("ROUTES", "").split(",") if r}
FAIL_FIRST = int(os.environ.get("FAIL_FIRST", "0"))
# With NO_OPTIONS=1 the app answers every OPTIONS probe 404 (as frameworks may).
NO_OPTIONS = os.environ.get("NO_OPTIONS") == "1"
seen: Counter[str] = Counter()


async def event(request: web.Request) -> web.Response:
    route = request.match_info["route"]
    if route not in ROUTES:
        return web.Response(status=404)
    seen[route] += 1
    if seen[route] <= FAIL_FIRST:
        return web.Response(status=500, text="failing on purpose")
    record = {
        "route": route,
        "body": (await request.read()).decode("utf-8", "replace"),
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "attempt": seen[route],
    }
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return web.Response(status=200)


async def options(request: web.Request) -> web.Response:
    handled = request.match_info["route"] in ROUTES and not NO_OPTIONS
    return web.Response(status=200 if handled else 404)


app = web.Application()
app.add_routes([web.post("/{route}", event), web.options("/{route}", options)])
web.run_app(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), print=None)
