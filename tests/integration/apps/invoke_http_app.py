"""An HTTP app for the invocation tests: echoes what it received, fails on request.

Routes (any verb):
- ``/status/{code}`` answers that status with a small JSON body;
- ``/slow?ms=N`` sleeps N milliseconds, then echoes;
- ``/flaky/{key}?fail=N`` fails with 503 the first N calls for ``key``, then echoes;
- ``/counter/{key}`` returns how many calls reached ``/flaky/{key}`` or ``/status``;
- ``/inflight/{key}?ms=N`` holds the call N ms; ``/counter/max-{key}`` is the most
  such calls the app had in flight at once;
- ``/healthz`` answers 204 unless the file named by ``UNHEALTHY_FILE`` exists;
- anything else echoes: verb, path, raw query, headers and body (base64).
The port comes from ``APP_PORT``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
from pathlib import Path

from aiohttp import web

calls: collections.Counter[str] = collections.Counter()
inflight: collections.Counter[str] = collections.Counter()


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "verb": request.method,
            "path": request.raw_path.split("?", 1)[0],
            "query": request.rel_url.raw_query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": base64.b64encode(body).decode(),
            "content_type": request.headers.get("Content-Type", ""),
        },
        headers={"x-app-answer": "yes", "Set-Cookie": "a=1"},
    )


async def handle(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path.startswith("/status/"):
        calls["status"] += 1
        code = int(path.rsplit("/", 1)[1])
        if code in (204, 304):
            return web.Response(status=code)
        return web.json_response({"status": code}, status=code, headers={"x-app-status": "set"})
    if path == "/slow":
        await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
        return await echo(request)
    if path.startswith("/flaky/"):
        key = path.rsplit("/", 1)[1]
        calls[key] += 1
        if calls[key] <= int(request.query.get("fail", "2")):
            return web.json_response({"attempt": calls[key]}, status=503)
        return await echo(request)
    if path.startswith("/inflight/"):
        key = path.rsplit("/", 1)[1]
        inflight[key] += 1
        calls[f"max-{key}"] = max(calls[f"max-{key}"], inflight[key])
        try:
            await asyncio.sleep(int(request.query.get("ms", "200")) / 1000)
        finally:
            inflight[key] -= 1
        return web.json_response({"ok": True})
    if path.startswith("/counter/"):
        return web.json_response({"calls": calls[path.rsplit("/", 1)[1]]})
    if path == "/healthz":
        flag = os.environ.get("UNHEALTHY_FILE")
        return web.Response(status=500 if flag and Path(flag).exists() else 204)
    return await echo(request)


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), print=None)


if __name__ == "__main__":
    main()
