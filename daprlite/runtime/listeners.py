"""Start-up step 6: binding the sidecar's listeners and serving on them.

Every listener binds each of ``--dapr-listen-addresses`` on one port (the
first address picks it when the port is 0) before the app starts, and is
entered on the sidecar's exit stack so that it stops, draining for the grace
period, in reverse order. The sidecar decides *what* each listener serves;
this module only binds and serves.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from contextlib import AsyncExitStack

import grpc
from aiohttp import web


def bind(host: str, port: int) -> socket.socket:
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


async def serve_web(
    app: web.Application,
    hosts: Sequence[str],
    port: int,
    stack: AsyncExitStack,
    grace: float,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Serve an aiohttp app on every host; the port it got."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    for host in hosts:
        sock = bind(host, port)
        port = sock.getsockname()[1]
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return port


async def serve_grpc(
    server: grpc.aio.Server,
    hosts: Sequence[str],
    port: int,
    stack: AsyncExitStack,
    grace: float,
    what: str,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    """Start a gRPC server on every host (TLS with ``credentials``); the port it got."""
    for host in hosts:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            bound = server.add_insecure_port(target)
        else:
            bound = server.add_secure_port(target, credentials)
        if bound == 0:
            raise OSError(f"cannot bind the {what} to {target}")
        port = bound
    await server.start()

    async def stop() -> None:
        await server.stop(grace)

    stack.push_async_callback(stop)
    return port


def grpc_server(max_message_size: int) -> grpc.aio.Server:
    """A bare server with the sidecar's message limits (for listeners without interceptors)."""
    return grpc.aio.server(options=grpc_options(max_message_size))


def grpc_options(max_message_size: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_size),
        ("grpc.max_send_message_length", max_message_size),
        ("grpc.so_reuseport", 0),
    ]
