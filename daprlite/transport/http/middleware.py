"""``spec.httpPipeline`` on the Dapr HTTP API, as an aiohttp middleware.

Sits in the HTTP server's middleware chain after the API-token check and
before error translation and routing (see ``server.py``), so every API call,
service invocation by header included, passes the pipeline with the headers it
arrived with; a handler's changed headers are what the route then sees. The
health probes (``GET /v1.0/healthz`` and ``/v1.0/healthz/outbound``) bypass
it: an orchestrator's probes must not be rate-limited or asked for a bearer
token. A refusal is answered here with its status, headers and
``{errorCode, message}`` body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from daprlite.blocks.middleware import Pipeline, rejection_body, rejection_headers
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest
from daprlite.security.token import is_open

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_health_probe(request: web.Request) -> bool:
    # The same rule as the token check: GET of the exact paths with no query string.
    return is_open(request.method, request.path, request.query_string)


def pipeline_middleware(
    pipeline: Pipeline,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def run_pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_health_probe(request):
            return await handler(request)
        headers = tuple((k.lower(), v) for k, v in request.headers.items())
        incoming = MiddlewareRequest(
            verb=request.method.upper(),
            path=request.path,
            query=request.rel_url.raw_query_string,
            headers=headers,
            client=request.remote or "",
        )
        try:
            out = await pipeline.run(incoming)
        except MiddlewareRejection as exc:
            return web.Response(
                status=exc.status,
                body=rejection_body(exc),
                headers=CIMultiDict(rejection_headers(exc)),
                content_type="application/json",
            )
        if out.headers != headers:
            request = request.clone(headers=CIMultiDict(out.headers))
        return await handler(request)

    return run_pipeline  # type: ignore[return-value]  # aiohttp's Protocol vs a plain coroutine
