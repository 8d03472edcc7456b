"""The HTTP API server: routes, middleware order, error translation, fallback.

Middleware, outermost first:
1. ``api_logging_middleware`` (with ``--enable-api-logging``);
   then ``metrics.py`` (with metrics on), which counts every answer;
2. the API-token check (with ``DAPR_API_TOKEN``);
3. ``spec.httpPipeline`` (``middleware.py``), when the Configuration names handlers;
4. ``error_middleware`` — turns :class:`APIError` into Dapr's JSON error body
   and any unexpected exception into a logged 500 without a traceback in the reply.
Unknown paths fall through to service invocation, as in Dapr: with a
``dapr-app-id`` header (or its Basic-auth form) the whole path is the method
called on that app; without one they get 404 ``ERR_DIRECT_INVOKE``, and Dapr
API families that daprlite does not serve yet get 501 ``ERR_API_UNIMPLEMENTED``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from daprlite import errors
from daprlite.blocks.middleware import Pipeline
from daprlite.observability.metrics import Metrics
from daprlite.security.apilists import HTTP, APILists
from daprlite.security.token import HEADER, is_open, token_matches
from daprlite.transport.http import auth as auth_routes
from daprlite.transport.http import bindings as bindings_routes
from daprlite.transport.http import invoke as invoke_routes
from daprlite.transport.http import metadata as metadata_routes
from daprlite.transport.http import pubsub as pubsub_routes
from daprlite.transport.http import secrets as secrets_routes
from daprlite.transport.http import state as state_routes
from daprlite.transport.http.common import MAX_BODY_KEY, error_response
from daprlite.transport.http.metrics import metrics_middleware
from daprlite.transport.http.middleware import pipeline_middleware

log = logging.getLogger("daprlite.http")
api_log = logging.getLogger("daprlite.http.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Dapr API families that exist but that this build does not serve yet.
_UNIMPLEMENTED_PREFIXES = (
    "/v1.0/actors/",
    "/v1.0/configuration/",
    "/v1.0-alpha1/configuration/",
    "/v1.0-alpha1/lock/",
    "/v1.0-alpha1/unlock/",
    "/v1.0/jobs/",
    "/v1.0-alpha1/jobs/",
    "/v1.0/workflows/",
    "/v1.0-beta1/workflows/",
    "/v1.0-alpha1/crypto/",
    "/v1.0-alpha1/conversation/",
    "/v1.0-alpha2/conversation/",
)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            rerouted = await _route_normalised(request)
            if rerouted is not None:
                return rerouted
            return await _fallback(request)
    except errors.APIError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(errors.BODY_TOO_LARGE("request body is larger than the limit"))
    except web.HTTPException:
        raise
    except Exception:
        log.exception(
            "unexpected error in %s %s", request.method, auth_routes.loggable_path(request.path)
        )
        return error_response(errors.INTERNAL("internal error; see the sidecar log"))


_SLASHES = re.compile(r"/{2,}")


async def _route_normalised(request: web.Request) -> web.StreamResponse | None:
    """Dapr's path rules: ``//`` collapses and a trailing ``/`` is dropped when that matches.

    Only tried when the path as sent matches no route; the handler then runs
    on a copy of the request with the clean path (query kept).
    """
    raw = request.rel_url.raw_path
    clean = _SLASHES.sub("/", raw)
    if len(clean) > 1:
        clean = clean.rstrip("/") or "/"
    if clean == raw:
        return None
    copy = request.clone(rel_url=request.rel_url.with_path(clean, encoded=True, keep_query=True))
    match = await request.app.router.resolve(copy)
    if match.http_exception is not None:
        return None
    match.add_app(request.app)
    match.freeze()
    # aiohttp sets the match on the request while routing and offers no public
    # setter; a cloned request is routed here, after the fact.
    copy._match_info = match  # type: ignore[attr-defined]
    return await match.handler(copy)


async def _fallback(request: web.Request) -> web.StreamResponse:
    """Unmatched routes are service invocation when they name a target (dapr-api.md 1.2)."""
    target = invoke_routes.app_id_from_headers(request)
    if target and invoke_routes.API_KEY in request.app:
        return await invoke_routes.invoke_by_header(request, target)
    path = request.path
    if any(path.startswith(p) for p in _UNIMPLEMENTED_PREFIXES):
        return error_response(
            errors.API_UNIMPLEMENTED(f"{request.method} {path} is not implemented by daprlite yet")
        )
    return error_response(
        errors.DIRECT_INVOKE(
            "failed getting app id either from the URL path or the header dapr-app-id"
        )
    )


def token_middleware(
    expected: str,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Refuse every call without the right ``dapr-api-token`` (plain-text 401, as Dapr)."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_open(request.method, request.path, request.query_string) and not token_matches(
            expected, request.headers.get(HEADER)
        ):
            return web.Response(status=401, text="invalid api token")
        return await handler(request)

    return check  # type: ignore[return-value]  # aiohttp's Protocol vs a plain coroutine


@web.middleware
async def api_logging_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    response = await handler(request)
    api_log.info(
        "HTTP API Called method=%s path=%s code=%s duration_ms=%.2f useragent=%s",
        request.method,
        auth_routes.loggable_path(request.path),
        response.status,
        (time.perf_counter() - start) * 1000,
        request.headers.get("User-Agent", ""),
    )
    return response


def build_public_app(
    health: metadata_routes.Health, metadata_api: metadata_routes.MetadataAPI
) -> web.Application:
    """``--dapr-public-port``: health and metadata reads, for probes from outside the pod.

    As in Dapr, nothing else is served there and no API token is asked for, so it
    can listen where the Dapr API must not. The metadata holds no secret values.
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=1024)
    app[metadata_routes.HEALTH_KEY] = health
    app[metadata_routes.METADATA_KEY] = metadata_api
    app.add_routes(
        [
            web.get("/v1.0/healthz", metadata_routes.healthz),
            web.get("/v1.0/healthz/outbound", metadata_routes.healthz_outbound),
            web.get("/v1.0/metadata", metadata_routes.get_metadata),
        ]
    )
    return app


def build_app(
    *,
    state_api: state_routes.StateAPI,
    bindings_api: bindings_routes.BindingsAPI,
    secrets_api: secrets_routes.SecretsAPI,
    metadata_api: metadata_routes.MetadataAPI,
    health: metadata_routes.Health,
    request_shutdown: Callable[[], None],
    max_body_size: int,
    api_logging: bool = False,
    api_token: str | None = None,
    invoke_api: invoke_routes.InvokeAPI | None = None,
    pubsub_api: pubsub_routes.PubSubAPI | None = None,
    pipeline: Pipeline | None = None,
    api_lists: APILists | None = None,
    auth_api: auth_routes.AuthAPI | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    # Outermost first: API logging sees the final status, errors and refusals included.
    middlewares: list[Middleware] = []
    if api_logging:
        middlewares.append(api_logging_middleware)
    if metrics is not None:
        middlewares.append(metrics_middleware(metrics))  # type: ignore[arg-type]
    if api_token:
        middlewares.append(token_middleware(api_token))  # type: ignore[arg-type]
    if pipeline is not None and not pipeline.empty:
        middlewares.append(pipeline_middleware(pipeline))  # type: ignore[arg-type]
    middlewares.append(error_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=max_body_size)
    lists = api_lists or APILists()

    def add_routes(defs: list[web.RouteDef]) -> None:
        # spec.api: excluded routes are never registered, so they reach the fallback.
        app.add_routes([d for d in defs if lists.allows_http_path(d.path)])

    app[MAX_BODY_KEY] = max_body_size
    app[state_routes.API_KEY] = state_api
    app[bindings_routes.API_KEY] = bindings_api
    app[secrets_routes.API_KEY] = secrets_api
    app[metadata_routes.METADATA_KEY] = metadata_api
    app[metadata_routes.HEALTH_KEY] = health
    app[metadata_routes.SHUTDOWN_KEY] = request_shutdown
    add_routes(metadata_routes.routes())
    add_routes(state_routes.routes())
    add_routes(bindings_routes.routes())
    add_routes(secrets_routes.routes())
    if pubsub_api is not None:
        app[pubsub_routes.API_KEY] = pubsub_api
        add_routes(pubsub_routes.routes())
    if invoke_api is not None and lists.allows(HTTP, "invoke", "v1"):
        app[invoke_routes.API_KEY] = invoke_api
        add_routes(invoke_routes.routes())
    if auth_api is not None:
        app[auth_routes.API_KEY] = auth_api
        add_routes(auth_routes.routes())
    return app
