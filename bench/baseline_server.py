"""The "no sidecar" baseline: a hand-written aiohttp handler straight on Redis.

It serves the two state routes the benchmark calls, with the same wire
behaviour as daprlite (``GET /v1.0/state/statestore/{key}``: 200 + raw value +
``ETag``, 204 when missing; ``POST /v1.0/state/statestore``: a JSON array of
``{key, value}``, 204) and the same storage layout as daprlite's
``state.redis``: one hash per key, ``data`` and ``version``, under
``{prefix}||{key}``. It does the work any such handler must do (parse the
JSON body, encode each value compactly, HMGET on read, HSET + HINCRBY on
write) and nothing else: no etag checks, no TTL, no component indirection.

With ``--grpc-port`` it also serves ``GetState``/``SaveState`` of Dapr's gRPC
service (the official SDK's generated servicer) the same way, so daprlite's
gRPC API can be compared with a hand-written grpc.aio handler too; without
it, grpc is not even imported (the idle-memory baseline is aiohttp + redis).

    python bench/baseline_server.py --port 0 [--grpc-port 0] --redis 127.0.0.1:6379

prints ``Baseline HTTP Port: N. gRPC Port: M`` (M is 0 without gRPC) once it
listens. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import ConnectionPool, Redis

STORE = "statestore"
REDIS_KEY = web.AppKey("redis", Redis)
PREFIX_KEY = web.AppKey("prefix", str)

if TYPE_CHECKING:
    import grpc


def _encode(value: object) -> bytes:
    # Compact JSON, as daprlite (and Dapr's Go runtime) stores a JSON value.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def get_state(request: web.Request) -> web.Response:
    if request.match_info["store"] != STORE:
        return web.Response(status=400, text=f"unknown state store; only {STORE!r} exists")
    key = f"{request.app[PREFIX_KEY]}||{request.match_info['key']}"
    data, version = await request.app[REDIS_KEY].hmget(key, ["data", "version"])
    if version is None:
        return web.Response(status=204)
    etag = version.decode() if isinstance(version, bytes) else str(version)
    return web.Response(body=data or b"", headers={"ETag": etag}, content_type="application/json")


async def save_state(request: web.Request) -> web.Response:
    if request.match_info["store"] != STORE:
        return web.Response(status=400, text=f"unknown state store; only {STORE!r} exists")
    try:
        items = json.loads(await request.read())
    except ValueError:
        return web.Response(status=400, text="the body must be a JSON array")
    if not isinstance(items, list):
        return web.Response(status=400, text="the body must be a JSON array")
    pairs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            return web.Response(status=400, text='every item needs a string "key"')
        pairs.append((item["key"], _encode(item.get("value"))))
    await save_items(request.app[REDIS_KEY], request.app[PREFIX_KEY], pairs)
    return web.Response(status=204)


async def save_items(redis: Redis, prefix: str, items: list[tuple[str, bytes]]) -> None:
    pipe = redis.pipeline(transaction=False)
    for key, value in items:
        pipe.hset(f"{prefix}||{key}", "data", value)
        pipe.hincrby(f"{prefix}||{key}", "version", 1)
    await pipe.execute()


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def build_app(redis: Redis, prefix: str) -> web.Application:
    app = web.Application()
    app[REDIS_KEY] = redis
    app[PREFIX_KEY] = prefix
    app.add_routes(
        [
            web.get("/v1.0/state/{store}/{key}", get_state),
            web.post("/v1.0/state/{store}", save_state),
            web.get("/v1.0/healthz", healthz),
        ]
    )
    return app


async def start_grpc(redis: Redis, prefix: str, port: int) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with GetState/SaveState; returns (server, bound port)."""
    import grpc  # imported here: the idle-memory baseline runs without it
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
    from google.protobuf import empty_pb2

    class Servicer(dapr_pb2_grpc.DaprServicer):
        async def GetState(self, request, context):
            key = f"{prefix}||{request.key}"
            data, version = await redis.hmget(key, ["data", "version"])
            if version is None:
                return state_pb2.GetStateResponse()
            return state_pb2.GetStateResponse(data=data or b"", etag=version.decode())

        async def SaveState(self, request, context):
            await save_items(redis, prefix, [(s.key, s.value) for s in request.states])
            return empty_pb2.Empty()

    server = grpc.aio.server()
    dapr_pb2_grpc.add_DaprServicer_to_server(Servicer(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def serve(port: int, grpc_port: int | None, redis_address: str, prefix: str) -> None:
    host, _, redis_port = redis_address.rpartition(":")
    pool = ConnectionPool(host=host, port=int(redis_port), max_connections=64)
    redis = Redis.from_pool(pool)
    runner = web.AppRunner(build_app(redis, prefix), access_log=None)
    await runner.setup()
    grpc_server = None
    try:
        bound_grpc = 0
        if grpc_port is not None:
            grpc_server, bound_grpc = await start_grpc(redis, prefix, grpc_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(512)
        sock.setblocking(False)
        await web.SockSite(runner, sock).start()
        http_port = sock.getsockname()[1]
        print(f"Baseline HTTP Port: {http_port}. gRPC Port: {bound_grpc}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(1)
        await runner.cleanup()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    p.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC (0 = free)")
    p.add_argument("--redis", default="127.0.0.1:6379", help="host:port of Redis")
    p.add_argument("--prefix", default="baseline", help="stored key = PREFIX||key")
    args = p.parse_args(argv)
    coro = serve(args.port, args.grpc_port, args.redis, args.prefix)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
