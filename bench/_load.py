"""The load generator of the state benchmarks: targets and one bounded round of requests.

A *target* is one way of reading and writing the same kind of state: through
daprlite's HTTP API, the hand-written baseline's HTTP API, daprlite's gRPC API
(the official SDK's generated ``DaprStub``) or redis-py straight on Redis. A
*round* sends a fixed number of requests to one target from a fixed number of
concurrent workers, stops early at a time limit, and records every request's
latency. Every reply is checked, so a target that answers wrongly fails the
benchmark instead of looking fast.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
from redis.asyncio import Redis

from _harness import cpu_seconds

STORE = "statestore"
REQUEST_TIMEOUT = 10.0


def key_name(i: int) -> str:
    return f"k{i:05d}"


def value_of(i: int) -> dict[str, object]:
    """The JSON value stored under key ``i`` (about 120 bytes encoded)."""
    return {
        "id": i,
        "customer": f"customer-{i:05d}",
        "items": [{"sku": "A-100", "qty": 2}, {"sku": "B-200", "qty": 1}],
        "total": 41.97,
        "paid": True,
    }


def encoded_value(i: int) -> bytes:
    # Compact JSON: what daprlite stores for a JSON value saved over HTTP.
    return json.dumps(value_of(i), separators=(",", ":")).encode()


class Target(Protocol):
    name: str
    server_pid: int | None  # the process serving it, whose CPU time is measured

    async def get(self, i: int) -> None: ...

    async def save(self, i: int) -> None: ...


class BenchError(RuntimeError):
    """A target answered something other than what the benchmark expects."""


class HttpTarget:
    """Dapr's HTTP state routes on ``base_url`` (daprlite or the baseline server)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        session: aiohttp.ClientSession,
        keys: int,
        server_pid: int | None = None,
    ) -> None:
        self.name = name
        self.server_pid = server_pid
        self._session = session
        self._get_urls = [f"{base_url}/v1.0/state/{STORE}/{key_name(i)}" for i in range(keys)]
        self._save_url = f"{base_url}/v1.0/state/{STORE}"
        self._bodies = [
            json.dumps([{"key": key_name(i), "value": value_of(i)}]).encode() for i in range(keys)
        ]
        self._keys = keys

    async def get(self, i: int) -> None:
        async with self._session.get(self._get_urls[i % self._keys]) as resp:
            body = await resp.read()
            if resp.status != 200 or not body or "ETag" not in resp.headers:
                raise BenchError(f"{self.name}: GET answered {resp.status} {body[:200]!r}")

    async def save(self, i: int) -> None:
        async with self._session.post(
            self._save_url,
            data=self._bodies[i % self._keys],
            headers={"Content-Type": "application/json"},
        ) as resp:
            body = await resp.read()
            if resp.status != 204:
                raise BenchError(f"{self.name}: save answered {resp.status} {body[:200]!r}")


class GrpcTarget:
    """daprlite's gRPC API through the official SDK's generated stub."""

    def __init__(
        self, name: str, channel: grpc.aio.Channel, keys: int, server_pid: int | None = None
    ) -> None:
        self.name = name
        self.server_pid = server_pid
        self._stub = dapr_pb2_grpc.DaprStub(channel)
        self._gets = [
            state_pb2.GetStateRequest(store_name=STORE, key=key_name(i)) for i in range(keys)
        ]
        self._saves = [
            state_pb2.SaveStateRequest(
                store_name=STORE,
                states=[common_pb2.StateItem(key=key_name(i), value=encoded_value(i))],
            )
            for i in range(keys)
        ]
        self._keys = keys

    async def get(self, i: int) -> None:
        resp = await self._stub.GetState(self._gets[i % self._keys], timeout=REQUEST_TIMEOUT)
        if not resp.data or not resp.etag:
            raise BenchError(f"{self.name}: GetState returned no data or no etag for key {i}")

    async def save(self, i: int) -> None:
        await self._stub.SaveState(self._saves[i % self._keys], timeout=REQUEST_TIMEOUT)


class RedisTarget:
    """The floor: the same hash commands the baseline sends, from the client process."""

    def __init__(self, name: str, redis: Redis, prefix: str, keys: int) -> None:
        self.name = name
        self.server_pid: int | None = None  # redis-server is not ours to measure per target
        self._redis = redis
        self._keys = [f"{prefix}||{key_name(i)}" for i in range(keys)]
        self._values = [encoded_value(i) for i in range(keys)]

    async def get(self, i: int) -> None:
        data, version = await self._redis.hmget(
            self._keys[i % len(self._keys)], ["data", "version"]
        )
        if not data or version is None:
            raise BenchError(f"{self.name}: HMGET found no data for key {i}")

    async def save(self, i: int) -> None:
        n = i % len(self._keys)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._keys[n], "data", self._values[n])
        pipe.hincrby(self._keys[n], "version", 1)
        await pipe.execute()


@dataclass(frozen=True, slots=True)
class RoundResult:
    target: str
    requests: int
    seconds: float
    latencies_ms: tuple[float, ...]
    server_cpu_s: float = 0.0  # CPU time of the target's server process
    redis_cpu_s: float = 0.0  # CPU time of redis-server
    client_cpu_s: float = 0.0  # CPU time of this process (the load generator)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def cpu_us(self, seconds: float) -> float:
        """CPU seconds spread over this result's requests, in µs per request."""
        return 1e6 * seconds / self.requests if self.requests else 0.0


async def run_round(
    name: str,
    op: Callable[[int], Awaitable[None]],
    total: int,
    concurrency: int,
    time_limit: float,
    first_index: int = 0,
    server_pid: int | None = None,
    redis_pid: int | None = None,
) -> RoundResult:
    """``total`` requests from ``concurrency`` workers; stops early after ``time_limit`` s.

    With ``server_pid``/``redis_pid``, the CPU time those processes used meanwhile
    is recorded too (as is this process's).
    """
    latencies: list[float] = []
    issued = 0
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal issued
        while issued < total and time.perf_counter() < deadline:
            i = first_index + issued
            issued += 1
            start = time.perf_counter_ns()
            await op(i)
            latencies.append((time.perf_counter_ns() - start) / 1e6)

    server_cpu = cpu_seconds(server_pid) if server_pid else 0.0
    redis_cpu = cpu_seconds(redis_pid) if redis_pid else 0.0
    client_cpu = time.process_time()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:  # one failure cancels the other workers
        for _ in range(concurrency):
            group.create_task(worker())
    elapsed = time.perf_counter() - start
    return RoundResult(
        name,
        len(latencies),
        elapsed,
        tuple(latencies),
        server_cpu_s=cpu_seconds(server_pid) - server_cpu if server_pid else 0.0,
        redis_cpu_s=cpu_seconds(redis_pid) - redis_cpu if redis_pid else 0.0,
        client_cpu_s=time.process_time() - client_cpu,
    )


def rotated(items: Sequence[Target], by: int) -> list[Target]:
    """``items`` from position ``by`` on: A B C, B C A, C A B, ...; no target always goes first."""
    n = by % len(items)
    return [*items[n:], *items[:n]]
