"""The sidecar lifecycle: start-up in DESIGN.md's order, shutdown in reverse.

1. options (given); 2. resources; 3-4. secret stores, then other components;
6. listeners bind their ports (``/healthz/outbound`` turns 204);
7. wait for the app's port (``/healthz`` turns 204); 9. ready.
Everything is entered on one :class:`AsyncExitStack`, so :meth:`Sidecar.stop`
unwinds it in reverse: listeners stop accepting, in-flight requests drain
within the grace period, then components close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web

from daprlite.blocks.bindings import BindingsAPI
from daprlite.blocks.metadata import AppConnection, Health, MetadataAPI
from daprlite.blocks.secrets import SecretsAPI
from daprlite.blocks.state import StateAPI
from daprlite.channel.grpc import GRPCAppChannel
from daprlite.channel.http import HTTPAppChannel
from daprlite.components.registry import Registry
from daprlite.config.configuration import Configuration, build_configuration
from daprlite.config.options import Options
from daprlite.config.resources import ResourceLoader
from daprlite.runtime.bindings import AppChannel, start_input_bindings
from daprlite.runtime.processor import ComponentProcessor
from daprlite.runtime.registry import ComponentStore
from daprlite.security.token import api_token_from_env
from daprlite.transport.grpc.server import DaprServicer, build_server
from daprlite.transport.http.server import build_app

log = logging.getLogger("daprlite.runtime")


@dataclass(frozen=True, slots=True)
class BoundPorts:
    http: int
    grpc: int


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("start-up after the app came up failed", exc_info=task.exception())


class Sidecar:
    """One daprlite sidecar: components, blocks, and the HTTP and gRPC listeners."""

    def __init__(self, options: Options, registry: Registry | None = None) -> None:
        self.options = options
        self.registry = registry or Registry()
        self.components = ComponentStore()
        self.health = Health()
        self.state = StateAPI(self.components, options.app_id, options.namespace)
        self.bindings = BindingsAPI(self.components)
        self.secrets = SecretsAPI(self.components, Configuration())
        self.app_channel: AppChannel | None = None
        app_conn = None
        if options.app_port:
            app_conn = AppConnection(
                options.app_port,
                options.app_protocol,
                options.app_channel_address,
                options.app_max_concurrency,
            )
        self.metadata = MetadataAPI(options.app_id, self.components, app_conn)
        self.ports: BoundPorts | None = None
        self._stack = AsyncExitStack()
        self._shutdown = asyncio.Event()
        self._app_wait: asyncio.Task[None] | None = None

    # -- start ---------------------------------------------------------------------------
    async def start(self) -> BoundPorts:
        """Load everything and bind the listeners. Raises on any start-up error."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        assert self.ports is not None
        return self.ports

    async def _start(self) -> None:
        opts = self.options
        loader = ResourceLoader(opts.app_id, opts.namespace)
        resources = loader.load(opts.resources_paths, opts.config_files)
        self.secrets.configuration = build_configuration(resources.configurations)
        self.metadata.resiliencies = tuple(r.name for r in resources.resiliencies)
        processor = ComponentProcessor(self.registry, self.components, opts.app_id, opts.namespace)
        await processor.load_all(resources.components, self._stack)
        http_port = await self._start_http()
        grpc_port = await self._start_grpc()
        self.ports = BoundPorts(http_port, grpc_port)
        self.health.outbound_ready = True
        log.info("HTTP API on port %d, gRPC API on port %d", http_port, grpc_port)
        if opts.app_port:
            await self._open_app_channel(opts.app_port)
            self._app_wait = asyncio.create_task(self._wait_for_app(opts.app_port))
            self._app_wait.add_done_callback(_log_failure)
            self._stack.callback(self._app_wait.cancel)
        else:
            self._mark_ready()

    async def _open_app_channel(self, port: int) -> None:
        opts = self.options
        token = os.environ.get("APP_API_TOKEN") or None
        channel: AppChannel
        if opts.app_protocol in ("grpc", "grpcs"):
            channel = GRPCAppChannel(
                opts.app_channel_address, port, opts.app_max_concurrency, token
            )
        else:
            channel = HTTPAppChannel(
                opts.app_channel_address,
                port,
                opts.app_protocol,
                opts.app_max_concurrency,
                token,
            )
        await channel.start()
        self._stack.push_async_callback(channel.close)
        self.app_channel = channel

    async def _start_http(self) -> int:
        opts = self.options
        app = build_app(
            state_api=self.state,
            bindings_api=self.bindings,
            secrets_api=self.secrets,
            metadata_api=self.metadata,
            health=self.health,
            request_shutdown=self.request_shutdown,
            max_body_size=opts.max_body_size,
            api_logging=opts.enable_api_logging,
            api_token=api_token_from_env(),
        )
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=opts.graceful_shutdown_seconds
        )
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        port = opts.http_port
        for host in opts.listen_addresses:
            sock = _bind(host, port)
            port = sock.getsockname()[1]
            site = web.SockSite(runner, sock)
            await site.start()
        return port

    async def _start_grpc(self) -> int:
        opts = self.options
        servicer = DaprServicer(
            self.state, self.bindings, self.secrets, self.metadata, self.request_shutdown
        )
        server = build_server(servicer, opts.max_body_size, api_token_from_env())
        port = opts.grpc_port
        for host in opts.listen_addresses:
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            bound = server.add_insecure_port(target)
            if bound == 0:
                raise OSError(f"cannot bind the gRPC API to {target}")
            port = bound
        await server.start()

        async def stop_grpc() -> None:
            await server.stop(opts.graceful_shutdown_seconds)

        self._stack.push_async_callback(stop_grpc)
        return port

    async def _wait_for_app(self, port: int) -> None:
        host = self.options.app_channel_address
        log.info("waiting for the app on %s:%d", host, port)
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        log.info("app is listening on port %d", port)
        await start_input_bindings(self.components, self.app_channel, self.bindings)
        self._mark_ready()

    def _mark_ready(self) -> None:
        self.health.ready = True
        log.info("daprlite sidecar is ready (app id %s)", self.options.app_id)

    # -- stop -----------------------------------------------------------------------------
    def request_shutdown(self) -> None:
        """Ask for a graceful shutdown (the API's /shutdown, or a signal)."""
        self._shutdown.set()

    async def wait_for_shutdown(self) -> None:
        await self._shutdown.wait()

    async def stop(self) -> None:
        self.health.ready = False
        self.health.outbound_ready = False
        await self._stack.aclose()
        log.info("daprlite sidecar stopped")

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
