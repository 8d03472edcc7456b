"""What one state read costs in redis-py, by the shape of the Redis call and the pool settings.

    .venv/bin/python bench/redis_read_bench.py [--quick]

``state.redis`` reads a key as a MULTI/EXEC pipeline of HMGET + PEXPIRETIME
on a pool with a socket timeout and a health-check interval (Dapr's defaults:
readTimeout 3 s, idleTimeout 5 min); the hand-written baseline sends one HMGET
on a plain pool. This measures, in this process, each read shape on each
pool: requests per second and this process's CPU time per read (the Python
work a sidecar would spend), in rotating order, median of rounds. It backs the
suggestions in RESULTS.md; it does not touch daprlite's code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from _harness import exit_on_signals, machine_notes, markdown_table, median, run_async

PREFIX = "bench-read"
READ_SCRIPT = """
return {redis.call('HMGET', KEYS[1], 'data', 'version'), redis.call('PEXPIRETIME', KEYS[1])}
"""

Read = Callable[[str], Awaitable[object]]


def shapes(client: Redis) -> dict[str, Read]:
    script = client.register_script(READ_SCRIPT)

    async def hmget(key: str) -> object:
        return await client.hmget(key, ["data", "version"])

    async def multi_exec(key: str) -> object:  # what RedisStateStore.get sends today
        async with client.pipeline(transaction=True) as pipe:
            pipe.hmget(key, ["data", "version"])
            pipe.pexpiretime(key)
            return await pipe.execute()

    async def plain_pipeline(key: str) -> object:
        async with client.pipeline(transaction=False) as pipe:
            pipe.hmget(key, ["data", "version"])
            pipe.pexpiretime(key)
            return await pipe.execute()

    async def lua(key: str) -> object:
        return await script(keys=[key])

    return {
        "HMGET only (baseline)": hmget,
        "MULTI/EXEC HMGET+PEXPIRETIME (daprlite today)": multi_exec,
        "pipeline HMGET+PEXPIRETIME, no MULTI": plain_pipeline,
        "EVALSHA script → data, version, expiry": lua,
    }


def daprlite_pool(host: str, port: int) -> Redis:
    """The pool RedisStateStore builds with Dapr's default settings."""
    pool = BlockingConnectionPool(
        max_connections=20, timeout=4.0, host=host, port=port,
        socket_connect_timeout=5.0, socket_timeout=3.0, health_check_interval=300,
    )  # fmt: skip
    return Redis.from_pool(pool)


def plain_pool(host: str, port: int) -> Redis:
    return Redis.from_pool(ConnectionPool(host=host, port=port, max_connections=64))


@dataclass(frozen=True, slots=True)
class Sample:
    per_second: float
    cpu_us: float  # this process's CPU time per read


async def one_round(read: Read, keys: Sequence[str], total: int, concurrency: int) -> Sample:
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < total:
            key = keys[issued % len(keys)]
            issued += 1
            await read(key)

    wall, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Sample(total / wall, 1e6 * cpu / total)


async def measure(
    host: str, port: int, keys: Sequence[str], total: int, rounds: int, concurrency: int
) -> dict[tuple[str, str], list[Sample]]:
    clients = {"daprlite pool": daprlite_pool(host, port), "plain pool": plain_pool(host, port)}
    cases = [
        (pool_name, shape_name, read)
        for pool_name, client in clients.items()
        for shape_name, read in shapes(client).items()
    ]
    out: dict[tuple[str, str], list[Sample]] = {(p, s): [] for p, s, _ in cases}
    try:
        for _, _, read in cases:  # warm-up: connections, script load
            await one_round(read, keys, min(200, total), concurrency)
        for r in range(rounds):
            n = r % len(cases)
            for pool_name, shape_name, read in cases[n:] + cases[:n]:
                out[(pool_name, shape_name)].append(await one_round(read, keys, total, concurrency))
            print(f"round {r + 1}/{rounds} done", flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="redis-py cost of state read shapes")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--requests", type=int, help="reads per round and case (default 5000)")
    p.add_argument("--rounds", type=int, help="default 5")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--redis", default="127.0.0.1:6379")
    args = p.parse_args(argv)
    if not args.redis.startswith("127.0.0.1:"):
        p.error("--redis must be 127.0.0.1:PORT")
    total = args.requests or (1000 if args.quick else 5000)
    rounds = args.rounds or (2 if args.quick else 5)
    exit_on_signals()
    host, _, port = args.redis.rpartition(":")
    sync = redis.Redis(host=host, port=int(port), socket_timeout=10)
    keys = [f"{PREFIX}||k{i:04d}" for i in range(1000)]
    try:
        pipe = sync.pipeline(transaction=False)
        for key in keys:
            pipe.hset(key, mapping={"data": b'{"id":1,"customer":"c"}', "version": 1})
        pipe.execute()
        results = run_async(measure(host, int(port), keys, total, rounds, args.concurrency))
    finally:
        sync.delete(*keys)
        sync.close()
    rows = []
    base = results[("plain pool", "HMGET only (baseline)")]
    for (pool_name, shape_name), samples in results.items():
        cpu = median([s.cpu_us for s in samples])
        rows.append(
            [
                shape_name,
                pool_name,
                f"{median([s.per_second for s in samples]):,.0f}",
                f"{cpu:.0f}",
                f"{cpu / median([s.cpu_us for s in base]):.2f}×",
            ]
        )
    print(f"\nMachine: {machine_notes()}")
    print(f"{rounds} rounds x {total} reads per case at concurrency {args.concurrency}; medians.\n")
    header = ["read shape", "pool", "reads/s", "client CPU µs/read", "CPU vs HMGET, plain"]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
        sys.exit(130)
