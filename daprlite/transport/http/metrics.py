"""Prometheus metrics of the Dapr HTTP API, as an aiohttp middleware.

Sits in the HTTP server's chain right after API logging and before the token
check (see ``server.py``), so every answer is counted, refusals and errors
included, with the status the caller got. The ``path`` label is the matched
route's pattern (``/v1.0/state/{storeName}/{key}``), which keeps the number of
series bounded; calls that match no route (invocation by ``dapr-app-id``
header, unknown paths) get an empty path. With the Configuration's
``spec.metric.http.increasedCardinality`` the path as called is used instead
(with auth tokens masked, as in the API log).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from daprlite.blocks.auth import loggable_path
from daprlite.observability.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _path_label(request: web.Request, metrics: Metrics) -> str:
    if metrics.spec.increased_cardinality:
        return loggable_path(request.path)
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else ""


def metrics_middleware(
    metrics: Metrics,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            elapsed_ms = (time.perf_counter() - start) * 1000
            metrics.http_server(request.method, _path_label(request, metrics), status, elapsed_ms)

    return record
