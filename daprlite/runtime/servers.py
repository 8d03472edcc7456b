"""Start-up step 6: what each of the sidecar's listeners serves.

The composition root (:class:`daprlite.runtime.sidecar.Sidecar`) calls these
in order once its components, configuration and workload identity are
ready: the internal invocation listener, the Dapr HTTP API, the gRPC API
(with daprlite's own services and gRPC proxying), and, with mTLS, the proxy
listener other sidecars deliver proxied gRPC calls to; then the public
health port and the Prometheus metrics port, when asked for. Binding and serving
itself is :mod:`daprlite.runtime.listeners`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from daprlite.observability.metrics import CONTENT_TYPE, Metrics
from daprlite.runtime.listeners import grpc_server, serve_grpc, serve_web
from daprlite.security.token import api_token_from_env
from daprlite.transport.grpc.auth import AuthServicer
from daprlite.transport.grpc.proxy import ProxyHandler
from daprlite.transport.grpc.server import DaprServicer, build_server
from daprlite.transport.http.server import build_app, build_public_app
from daprlite.transport.internal.server import build_internal_app

if TYPE_CHECKING:
    from daprlite.runtime.sidecar import Sidecar


async def start_internal(sc: Sidecar) -> int:
    """Sidecar-to-sidecar invocation (HTTP/1.1; TLS with a client certificate under mTLS)."""
    opts = sc.options
    await sc.internal_client.start()
    sc.exit_stack.push_async_callback(sc.internal_client.close)
    app = build_internal_app(sc.local_app, opts.max_body_size, mtls=sc.identity is not None)
    return await serve_web(
        app,
        opts.internal_addresses,
        opts.internal_port,
        sc.exit_stack,
        opts.graceful_shutdown_seconds,
        sc.identity.server_context if sc.identity is not None else None,
    )


async def start_http(sc: Sidecar) -> int:
    """The Dapr HTTP API."""
    opts = sc.options
    app = build_app(
        state_api=sc.state,
        bindings_api=sc.bindings,
        secrets_api=sc.secrets,
        metadata_api=sc.metadata,
        health=sc.health,
        request_shutdown=sc.request_shutdown,
        max_body_size=opts.max_body_size,
        api_logging=opts.enable_api_logging,
        api_token=api_token_from_env(),
        invoke_api=sc.invoke,
        pubsub_api=sc.pubsub,
        pipeline=sc.api_pipeline,
        api_lists=sc.secrets.configuration.api_lists,
        auth_api=sc.auth,
        metrics=sc.metrics,
    )
    return await serve_web(
        app, opts.listen_addresses, opts.http_port, sc.exit_stack, opts.graceful_shutdown_seconds
    )


def _proxy_handler(sc: Sidecar, internal: bool) -> ProxyHandler:
    """gRPC proxying: on the public API (forwarding, with mTLS when on) or, ``internal``,
    on the mTLS proxy listener (the last hop, to this sidecar's own app only)."""
    handler = ProxyHandler(
        sc.options.app_id,
        sc.options.namespace,
        sc.grpc_app_target,
        lambda: sc.invoke.resolver,
        sc.options.max_body_size,
        access_check=sc.access_allowed,
        identity=None if internal else sc.identity,
        internal=internal,
    )
    sc.exit_stack.push_async_callback(handler.close)
    return handler


async def start_grpc(sc: Sidecar) -> int:
    """The Dapr gRPC API, daprlite's own gRPC services, and gRPC proxying."""
    opts = sc.options
    servicer = DaprServicer(
        sc.state,
        sc.bindings,
        sc.secrets,
        sc.metadata,
        sc.request_shutdown,
        sc.invoke,
        sc.pubsub,
        sc.streaming,
    )
    proxy = _proxy_handler(sc, internal=False)
    server = build_server(
        servicer,
        opts.max_body_size,
        api_token_from_env(),
        proxy,
        # Without mTLS, other sidecars deliver proxied calls to this public port,
        # without this sidecar's token; with mTLS they use the proxy listener.
        own_app_id=opts.app_id if sc.identity is None else "",
        api_lists=sc.secrets.configuration.api_lists,
        auth=AuthServicer(sc.auth),
        metrics=sc.metrics,
    )
    return await serve_grpc(
        server,
        opts.listen_addresses,
        opts.grpc_port,
        sc.exit_stack,
        opts.graceful_shutdown_seconds,
        "gRPC API",
    )


async def start_proxy_listener(sc: Sidecar) -> int:
    """With mTLS: the listener where other sidecars deliver proxied gRPC calls to our app."""
    if sc.identity is None:
        return 0
    opts = sc.options
    handler = _proxy_handler(sc, internal=True)
    server = grpc_server(opts.max_body_size)
    server.add_generic_rpc_handlers((handler,))
    return await serve_grpc(
        server,
        opts.internal_addresses,
        opts.proxy_port,
        sc.exit_stack,
        opts.graceful_shutdown_seconds,
        "mTLS proxy listener",
        sc.identity.server_credentials(),
    )


async def start_public(sc: Sidecar) -> int:
    """``--dapr-public-port``: the health endpoints, where probes from outside the pod reach."""
    opts = sc.options
    if opts.public_port is None:
        return 0
    return await serve_web(
        build_public_app(sc.health, sc.metadata),
        opts.internal_addresses,
        opts.public_port,
        sc.exit_stack,
        opts.graceful_shutdown_seconds,
    )


def build_metrics_app(metrics: Metrics) -> web.Application:
    """``GET /`` and ``GET /metrics``: the sidecar's metrics in the Prometheus text format."""

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(client_max_size=1024)
    app.add_routes([web.get("/", scrape), web.get("/metrics", scrape)])
    return app


async def start_metrics(sc: Sidecar) -> int:
    """``--metrics-port``: Prometheus scrapes, at the internal listen addresses (0: metrics off).

    They bind where the pod's other sidecar traffic arrives, so a Prometheus in
    the cluster can scrape the pod; they carry no bodies or tokens.
    """
    opts = sc.options
    if sc.metrics is None:
        return 0
    return await serve_web(
        build_metrics_app(sc.metrics),
        opts.internal_addresses,
        opts.metrics_port,
        sc.exit_stack,
        opts.graceful_shutdown_seconds,
    )
