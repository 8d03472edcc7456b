"""An ASGI app served by hypercorn, for the ``--app-protocol h2c`` tests.

It answers every request with JSON naming the HTTP version the request came
in on (``"2"`` proves the sidecar spoke HTTP/2), the verb, path, query,
headers and body. ``/healthz`` answers 204. Port: ``APP_PORT``.
"""

from __future__ import annotations

import asyncio
import json
import os

from hypercorn.asyncio import serve
from hypercorn.config import Config


async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = {
        "http_version": scope["http_version"],
        "verb": scope["method"],
        "path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "body": body.decode("utf-8", "replace"),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"x-app-answer", b"yes")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{os.environ['APP_PORT']}"]
    config.accesslog = None
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
