"""Prometheus metrics of the calls the sidecar makes to its app over HTTP.

The HTTP app channel (``channel/http.py``) gives its session the trace
configuration built here, so every request on it, whoever makes it
(invocations, pub/sub and binding deliveries, discovery, health probes), is
counted once it has its answer's status or has failed (status ``error``), as
``dapr_http_client_completed_count`` and ``dapr_http_client_roundtrip_latency``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import aiohttp

from daprlite.observability.metrics import Metrics


def app_call_traces(metrics: Metrics | None) -> list[aiohttp.TraceConfig]:
    """The session's trace configurations: none when metrics are off."""
    if metrics is None:
        return []
    config = aiohttp.TraceConfig()

    async def started(
        _session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        _params: aiohttp.TraceRequestStartParams,
    ) -> None:
        ctx.metrics_start = time.perf_counter()

    def done(ctx: SimpleNamespace, method: str, url_path: str, status: str) -> None:
        start = getattr(ctx, "metrics_start", None)
        if start is not None:
            metrics.http_client(method, url_path, status, (time.perf_counter() - start) * 1000)

    async def ended(
        _session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        done(ctx, params.method, params.url.path, str(params.response.status))

    async def failed(
        _session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        done(ctx, params.method, params.url.path, "error")

    config.on_request_start.append(started)
    config.on_request_end.append(ended)
    config.on_request_exception.append(failed)
    return [config]
