"""Pub/sub: delivered throughput and publish-to-delivery latency, per broker, against its client.

    .venv/bin/python bench/pubsub_bench.py            # full run (about 4 minutes)
    .venv/bin/python bench/pubsub_bench.py --quick    # a smoke run (about 1 minute)
    .venv/bin/python bench/pubsub_bench.py --brokers redis sqlite

Not on daprlite's request path: it drives two real ``daprlite run`` sidecars
from outside. This process publishes through the *publisher* sidecar (no
app); the *subscriber* sidecar delivers over HTTP to the counting app (this
script with ``--serve counter``, a minimal aiohttp app on uvloop). Both
sidecars load one component per broker (``pubsub.redis``, ``pubsub.sqlite``
on a shared file, ``pubsub.jetstream``, ``pubsub.rabbitmq``,
``pubsub.mqtt3``, with their default settings) and share a temporary
``DAPRLITE_HOME``. Every message's JSON data carries a slice tag, its index
and a ``time.monotonic_ns()`` stamp (one clock for every process on the
machine); the app counts distinct indexes per tag and takes each latency on
arrival.

Baselines in the same run, consumed in the same app process:

- ``redis direct``: redis-py XADD from this process; the app reads with
  XREADGROUP (100 at a time) and XACKs each batch;
- ``sqlite direct``: daprlite's ``pubsub.sqlite`` component used in-process,
  without sidecars: this process publishes with it, the app subscribes with it.

Two measurements, in interleaved rounds (scenarios take turns in a rotating
order; figures are medians over rounds):

- **delivered throughput** (closed loop): 16 concurrent publishers send a
  slice of messages back to back, over HTTP one per request
  (``/v1.0/publish``) or 100 per request (``/v1.0-alpha1/publish/bulk``);
  msgs/s = messages / (first send → last delivery at the app).
- **latency at a fixed rate** (open loop, 500 msgs/s): a timer thread
  schedules each publish; the stamp is the *scheduled* instant, so a stalled
  publisher is not hidden. p50/p90/p99 of scheduled → arrival at the app.

CPU milliseconds per message of each sidecar and of the app come from
``/proc``. Everything started is stopped on exit, also after Ctrl-C, SIGTERM
or an error; the Redis and JetStream streams the run created are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from _harness import (
    PORTS_LINE,
    PYTHON,
    Service,
    component_manifest,
    cpu_seconds,
    daprlite_env,
    daprlite_source,
    exit_on_signals,
    free_port,
    machine_notes,
    markdown_table,
    median,
    percentiles,
    resolved_daprlite,
    run_async,
    running,
    wait_http,
)

SCRIPT = str(Path(__file__).resolve())
REDIS_HOST = os.environ.get("DAPRLITE_TEST_REDIS", "127.0.0.1:6379")
NATS_URL = os.environ.get("DAPRLITE_TEST_NATS", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("DAPRLITE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
MQTT_URL = os.environ.get("DAPRLITE_TEST_MQTT", "tcp://127.0.0.1:1883")
BROKERS = ("redis", "sqlite", "jetstream", "rabbitmq", "mqtt3")
APP_READY = re.compile(r"Counter app ready")
START_TIMEOUT = 40.0
DELIVERY_TIMEOUT = 60.0  # a slice not fully delivered by then counts what arrived
STALL_TIMEOUT = 5.0  # ... as does one where nothing arrived for this long
REQUEST_TIMEOUT = 10.0
CONCURRENCY = 16
BULK = 100
DIRECT_GROUP = "bench-direct"


class BenchError(RuntimeError):
    """A publish was refused, or messages did not arrive."""


def payload(tag: str, i: int, stamp_ns: int) -> dict[str, object]:
    return {"tag": tag, "i": i, "t": stamp_ns, "pad": "x" * 64}


# -- the counting app (child process) ---------------------------------------------------
@dataclass
class Tally:
    seen: set[int] = field(default_factory=set)
    latencies_ns: list[int] = field(default_factory=list)
    duplicates: int = 0
    last_ns: int = 0


class Counter:
    def __init__(self) -> None:
        self.tags: dict[str, Tally] = {}

    def arrived(self, data: dict[str, object]) -> None:
        now = time.monotonic_ns()
        tally = self.tags.setdefault(str(data["tag"]), Tally())
        i = int(data["i"])  # type: ignore[call-overload]
        if i in tally.seen:
            tally.duplicates += 1
            return
        tally.seen.add(i)
        tally.latencies_ns.append(now - int(data["t"]))  # type: ignore[call-overload]
        tally.last_ns = now


async def redis_consumer(counter: Counter, stream: str) -> None:
    """The direct baseline's consumer: XREADGROUP 100 at a time, XACK each batch."""
    host, _, port = REDIS_HOST.partition(":")
    redis = Redis(host=host, port=int(port or 6379))
    try:
        with contextlib.suppress(Exception):  # BUSYGROUP: it exists already
            await redis.xgroup_create(stream, DIRECT_GROUP, id="0", mkstream=True)
        while True:
            got = await redis.xreadgroup(DIRECT_GROUP, "c1", {stream: ">"}, count=100, block=1000)
            for _name, entries in got or ():
                for _id, fields in entries:
                    counter.arrived(json.loads(fields[b"data"]))
                await redis.xack(stream, DIRECT_GROUP, *[e[0] for e in entries])
    finally:
        await redis.aclose()


async def serve_counter(
    port: int, subscriptions: str, direct_redis: str, direct_sqlite: str
) -> None:
    counter = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def subscribe(_request: web.Request) -> web.Response:
        return web.json_response(json.loads(subscriptions))

    async def deliver(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        counter.arrived(event["data"])
        return web.json_response({"status": "SUCCESS"})

    async def stats(request: web.Request) -> web.Response:
        tally = counter.tags.pop(request.query["tag"], Tally()) if "pop" in request.query else (
            counter.tags.get(request.query["tag"], Tally())
        )  # fmt: skip
        body: dict[str, object] = {"count": len(tally.seen), "dups": tally.duplicates}
        if "pop" in request.query:
            body |= {"last_ns": tally.last_ns, "latencies_ns": tally.latencies_ns}
        return web.json_response(body)

    async with contextlib.AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        if direct_redis:
            tasks.append(asyncio.create_task(redis_consumer(counter, direct_redis)))
        if direct_sqlite:
            sub = await sqlite_component(direct_sqlite, "bench-app")
            stack.push_async_callback(sub.close)

            async def handle(message: object) -> None:
                counter.arrived(json.loads(message.data))  # type: ignore[attr-defined]

            await sub.subscribe(sqlite_subscribe_request(), handle)
        app = web.Application()
        app.router.add_get("/dapr/subscribe", subscribe)
        app.router.add_get("/stats", stats)
        app.router.add_post("/{tail:.*}", deliver)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("Counter app ready", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()


SQLITE_TOPIC = "bench-direct"


async def sqlite_component(path: str, app_id: str):  # type: ignore[no-untyped-def]
    """daprlite's pubsub.sqlite, in this process (imported here only: the baseline needs it)."""
    from daprlite.components.metadata import ComponentMetadata
    from daprlite.components.pubsub.sqlite import SQLitePubSub

    component = SQLitePubSub()
    meta = ComponentMetadata("direct", "pubsub.sqlite", properties={"connectionString": path})
    await component.init(meta)
    return component


def sqlite_subscribe_request():  # type: ignore[no-untyped-def]
    from daprlite.components.pubsub.api import SubscribeRequest

    return SubscribeRequest(topic=SQLITE_TOPIC, consumer_group=DIRECT_GROUP)


# -- publishers, as the load generator calls them ---------------------------------------
Publish = Callable[[str, Sequence[tuple[int, int]]], Awaitable[None]]  # tag, [(i, stamp)]


def http_publisher(session: aiohttp.ClientSession, base: str, pubsub: str, topic: str) -> Publish:
    url = f"{base}/v1.0/publish/{pubsub}/{topic}"
    headers = {"Content-Type": "application/json"}

    async def publish(tag: str, batch: Sequence[tuple[int, int]]) -> None:
        for i, stamp in batch:
            body = json.dumps(payload(tag, i, stamp)).encode()
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 204:
                    raise BenchError(
                        f"publish {pubsub}: {resp.status} {(await resp.read())[:200]!r}"
                    )

    return publish


def bulk_publisher(session: aiohttp.ClientSession, base: str, pubsub: str, topic: str) -> Publish:
    url = f"{base}/v1.0-alpha1/publish/bulk/{pubsub}/{topic}"

    async def publish(tag: str, batch: Sequence[tuple[int, int]]) -> None:
        entries = [
            {"entryId": str(i), "event": payload(tag, i, stamp), "contentType": "application/json"}
            for i, stamp in batch
        ]
        async with session.post(url, json=entries) as resp:
            if resp.status != 204:
                raise BenchError(f"bulk {pubsub}: {resp.status} {(await resp.read())[:300]!r}")

    return publish


def redis_publisher(redis: Redis, stream: str) -> Publish:
    async def publish(tag: str, batch: Sequence[tuple[int, int]]) -> None:
        for i, stamp in batch:
            await redis.xadd(stream, {"data": json.dumps(payload(tag, i, stamp))})

    return publish


def sqlite_publisher(component: object) -> Publish:
    from daprlite.components.pubsub.api import PublishRequest

    async def publish(tag: str, batch: Sequence[tuple[int, int]]) -> None:
        for i, stamp in batch:
            data = json.dumps(payload(tag, i, stamp)).encode()
            await component.publish(PublishRequest(SQLITE_TOPIC, data, "application/json"))  # type: ignore[attr-defined]

    return publish


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    publish: Publish
    unit: int  # messages per publish call in the closed loop (BULK for bulk publish)
    sidecars: bool  # False: a direct baseline; no sidecar CPU


@dataclass(frozen=True, slots=True)
class Measured:
    scenario: str
    messages: int  # delivered (distinct)
    seconds: float  # first send → last delivery
    publish_seconds: float  # first send → last publish answered
    latencies_ms: tuple[float, ...]
    sidecar_cpu_s: tuple[float, float]  # publisher, subscriber sidecar
    app_cpu_s: float
    duplicates: int
    sent: int
    send_lag_ms: tuple[float, ...] = ()

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def per_1k(self, seconds: float) -> float:
        return 1000 * seconds / self.messages if self.messages else 0.0


@dataclass(frozen=True, slots=True)
class Procs:
    app_port: int
    app_pid: int
    sidecar_pids: tuple[int, ...]


async def collect(
    session: aiohttp.ClientSession, procs: Procs, tag: str, expected: int
) -> tuple[int, list[int], int]:
    """Wait for ``expected`` distinct messages of ``tag``; (last arrival ns, latencies, dups).

    Gives up when nothing new arrived for ``STALL_TIMEOUT`` s (a broker that lost
    messages): the report then shows the loss instead of failing the whole run.
    """
    url = f"http://127.0.0.1:{procs.app_port}/stats"
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    seen, progress = -1, time.monotonic()
    while True:
        async with session.get(url, params={"tag": tag}) as resp:
            got = await resp.json()
        now = time.monotonic()
        if got["count"] >= expected:
            break
        if got["count"] != seen:
            seen, progress = got["count"], now
        if now - progress > STALL_TIMEOUT or now > deadline:
            print(f"warning: {tag}: {got['count']} of {expected} delivered", file=sys.stderr)
            break
        await asyncio.sleep(0.02)
    async with session.get(url, params={"tag": tag, "pop": "1"}) as resp:
        got = await resp.json()
    return int(got["last_ns"]), list(got["latencies_ns"]), int(got["dups"])


def cpu(procs: Procs, sidecars: bool) -> tuple[float, float, float]:
    """CPU seconds so far of the publisher sidecar, the subscriber sidecar and the app."""
    pub, sub = (cpu_seconds(p) for p in procs.sidecar_pids) if sidecars else (0.0, 0.0)
    return pub, sub, cpu_seconds(procs.app_pid)


async def closed_loop(
    s: Scenario, session: aiohttp.ClientSession, procs: Procs, tag: str, count: int
) -> Measured:
    calls = [list(range(n, min(n + s.unit, count))) for n in range(0, count, s.unit)]
    pub0, sub0, app0 = cpu(procs, s.sidecars)
    start = time.monotonic_ns()

    async def worker() -> None:
        while calls:
            batch = calls.pop()
            await s.publish(tag, [(i, time.monotonic_ns()) for i in batch])

    async with asyncio.TaskGroup() as group:
        for _ in range(CONCURRENCY):
            group.create_task(worker())
    published = time.monotonic_ns()
    last, latencies, dups = await collect(session, procs, tag, count)
    pub1, sub1, app1 = cpu(procs, s.sidecars)
    return Measured(
        s.name, len(latencies), (last - start) / 1e9, (published - start) / 1e9,
        tuple(ns / 1e6 for ns in latencies), (pub1 - pub0, sub1 - sub0), app1 - app0, dups, count,
    )  # fmt: skip


async def fixed_rate(
    s: Scenario, session: aiohttp.ClientSession, procs: Procs, tag: str, rate: float, count: int
) -> Measured:
    """``count`` single publishes at ``rate``/s from a timer thread (as invoke_bench's)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    lag: list[float] = []
    all_sent = asyncio.Event()
    stop = threading.Event()
    interval_ns = int(1e9 / rate)
    start = time.monotonic_ns() + 5_000_000

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]
            all_sent.set()

    def fire(i: int, due: int) -> None:
        lag.append((time.monotonic_ns() - due) / 1e6)
        task = loop.create_task(s.publish(tag, [(i, due)]))
        tasks.add(task)
        task.add_done_callback(finished)

    def ticker() -> None:
        with contextlib.suppress(RuntimeError):
            for n in range(count):
                due = start + n * interval_ns
                left = due - time.monotonic_ns()
                if left > 0:
                    time.sleep(left / 1e9)
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(fire, n, due)
            loop.call_soon_threadsafe(all_sent.set)

    pub0, sub0, app0 = cpu(procs, s.sidecars)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # the ticker gets the GIL within 0.2 ms of its due time
    thread = threading.Thread(target=ticker, name="pubsub-bench-ticker", daemon=True)
    thread.start()
    try:
        await all_sent.wait()
        if tasks and not failures:
            await asyncio.wait(set(tasks), timeout=REQUEST_TIMEOUT)
        if failures:
            raise failures[0]
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        thread.join(5)
        sys.setswitchinterval(switch)
    published = time.monotonic_ns()
    last, latencies, dups = await collect(session, procs, tag, count)
    pub1, sub1, app1 = cpu(procs, s.sidecars)
    return Measured(
        s.name, len(latencies), (last - start) / 1e9, (published - start) / 1e9,
        tuple(ns / 1e6 for ns in latencies), (pub1 - pub0, sub1 - sub0), app1 - app0, dups,
        count, tuple(lag),
    )  # fmt: skip


# -- the run -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    messages: int  # per closed-loop slice
    rate: float
    rate_messages: int  # per open-loop slice
    warmup: int


def manifests(brokers: Sequence[str], workdir: Path) -> dict[str, str]:
    """One component per broker, named ``ps-<broker>``, default settings."""
    metadata = {
        "redis": ("pubsub.redis", {"redisHost": REDIS_HOST}),
        "sqlite": ("pubsub.sqlite", {"connectionString": str(workdir / "broker.db")}),
        "jetstream": ("pubsub.jetstream", {"natsURL": NATS_URL, "memoryStorage": "true"}),
        "rabbitmq": ("pubsub.rabbitmq", {"connectionString": RABBITMQ_URL}),
        "mqtt3": ("pubsub.mqtt3", {"url": MQTT_URL}),
    }
    return {b: component_manifest(f"ps-{b}", *metadata[b]) for b in brokers}


def start_sidecar(workdir: Path, app_id: str, source: Path | None, app_port: int = 0) -> Service:
    args = [PYTHON, "-m", "daprlite", "run", "--app-id", app_id, "-d", str(workdir / "resources")]
    args += ["--log-level", "warn"]
    if app_port:
        args += ["--app-port", str(app_port)]
    env = daprlite_env(source=source, DAPRLITE_HOME=str(workdir / "home"))
    return Service(f"sidecar {app_id}", args, env=env, cwd=workdir)


def sidecar_http(sidecar: Service) -> int:
    port = int(sidecar.wait_for_line(PORTS_LINE, START_TIMEOUT).group(1))
    wait_http(sidecar, port, "/v1.0/healthz", START_TIMEOUT, interval=0.05)
    return port


def rotated(items: Sequence[Scenario], by: int) -> list[Scenario]:
    n = by % len(items)
    return [*items[n:], *items[:n]]


Results = dict[str, dict[str, list[Measured]]]  # "throughput"/"latency" → scenario → rounds


async def measure(
    plan: Plan, brokers: Sequence[str], topic: str, pub_port: int, procs: Procs, workdir: Path
) -> Results:
    base = f"http://127.0.0.1:{pub_port}"
    connector = aiohttp.TCPConnector(limit=0)
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            )
        )
        host, _, port = REDIS_HOST.partition(":")
        redis = Redis(host=host, port=int(port or 6379))
        stack.push_async_callback(redis.aclose)
        singles: list[Scenario] = []
        bulks: list[Scenario] = []
        for b in brokers:
            singles.append(
                Scenario(f"{b} HTTP", http_publisher(session, base, f"ps-{b}", topic), 1, True)
            )
            bulks.append(
                Scenario(f"{b} bulk", bulk_publisher(session, base, f"ps-{b}", topic), BULK, True)
            )
            if b == "redis":
                singles.append(
                    Scenario("redis direct", redis_publisher(redis, f"{topic}-direct"), 1, False)
                )
            if b == "sqlite":
                component = await sqlite_component(str(workdir / "direct.db"), "bench")
                stack.push_async_callback(component.close)
                singles.append(Scenario("sqlite direct", sqlite_publisher(component), 1, False))
        every = singles + bulks
        seq = iter(range(10**9))
        for s in every:  # warm-up: connections, groups, code paths
            await closed_loop(s, session, procs, f"warm-{next(seq)}", plan.warmup)
        results: Results = {"throughput": {}, "latency": {}}
        for r in range(plan.rounds):
            for s in rotated(every, r):
                got = await closed_loop(s, session, procs, f"t{next(seq)}", plan.messages)
                results["throughput"].setdefault(s.name, []).append(got)
                print(f"round {r + 1} {s.name:16s} {got.throughput:8.0f} msgs/s", flush=True)
            for s in rotated(singles, r):
                got = await fixed_rate(
                    s, session, procs, f"l{next(seq)}", plan.rate, plan.rate_messages
                )
                results["latency"].setdefault(s.name, []).append(got)
                p = percentiles(got.latencies_ms)
                print(f"round {r + 1} {s.name:16s} p50 {p.p50:.2f} p99 {p.p99:.2f} ms", flush=True)
        return results


SIDECAR_CPU = "CPU ms/msg: publisher / subscriber sidecar"


def cpu_cell(rounds: Sequence[Measured]) -> str:
    pub = median([m.per_1k(m.sidecar_cpu_s[0]) for m in rounds])
    sub = median([m.per_1k(m.sidecar_cpu_s[1]) for m in rounds])
    return f"{pub:.3f} / {sub:.3f}"


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def report(plan: Plan, results: Results, source: str, command: str) -> str:
    lines = [
        "## Pub/sub benchmark",
        "",
        f"Machine: {machine_notes()}.",
        f"daprlite: {source}.",
        f"Command: `{command}`.",
        f"Medians of {plan.rounds} interleaved rounds; closed loop: {plan.messages:,} messages "
        f"per slice from {CONCURRENCY} publishers (bulk: {BULK} per request); fixed rate: "
        f"{plan.rate:g} msgs/s × {plan.rate_messages:,} messages per slice.",
        "",
        "### Delivered throughput (publish → app)",
        "",
    ]
    rows = []
    for name, rounds in results["throughput"].items():
        sidecar = cpu_cell(rounds)
        rows.append([
            name,
            fmt(median([m.throughput for m in rounds])),
            f"{fmt(min(m.throughput for m in rounds))}–{fmt(max(m.throughput for m in rounds))}",
            fmt(median([m.sent / m.publish_seconds for m in rounds])),
            fmt(median([percentiles(m.latencies_ms).p50 for m in rounds]), 1),
            sidecar if "direct" not in name else "—",
            fmt(median([m.per_1k(m.app_cpu_s) for m in rounds]), 3),
            str(sum(m.duplicates for m in rounds)),
            str(sum(m.sent - m.messages for m in rounds)),
        ])  # fmt: skip
    lines.append(markdown_table(
        ["scenario", "delivered msgs/s", "range", "published msgs/s", "p50 ms (under load)",
         SIDECAR_CPU, "app CPU ms/msg", "duplicates", "lost"], rows))  # fmt: skip
    lines += ["", f"### Publish → delivery latency at {plan.rate:g} msgs/s", ""]
    rows = []
    for name, rounds in results["latency"].items():
        ps = [percentiles(m.latencies_ms) for m in rounds]
        lag = [percentiles(m.send_lag_ms).p99 for m in rounds]
        sidecar = cpu_cell(rounds)
        rows.append([
            name,
            fmt(median([p.p50 for p in ps]), 3),
            fmt(median([p.p90 for p in ps]), 3),
            fmt(median([p.p99 for p in ps]), 3),
            fmt(median(lag), 3),
            sidecar if "direct" not in name else "—",
            str(sum(m.sent - m.messages for m in rounds)),
        ])  # fmt: skip
    lines.append(markdown_table(
        ["scenario", "p50 ms", "p90 ms", "p99 ms", "send lag p99 ms", SIDECAR_CPU,
         "lost"],
        rows))  # fmt: skip
    lines += ["", verdict(plan, results)]
    return "\n".join(lines)


def verdict(plan: Plan, results: Results) -> str:
    def thr(name: str) -> float | None:
        rounds = results["throughput"].get(name)
        return median([m.throughput for m in rounds]) if rounds else None

    def p50(name: str) -> float | None:
        rounds = results["latency"].get(name)
        return median([percentiles(m.latencies_ms).p50 for m in rounds]) if rounds else None

    def published(name: str) -> float | None:
        rounds = results["throughput"].get(name)
        return median([m.sent / m.publish_seconds for m in rounds]) if rounds else None

    out = ["### Targets (reported, not asserted)", ""]
    checks = [
        ("Redis delivered end to end ≥ 5,000 msgs/s", thr("redis HTTP"), 5000.0, "msgs/s", True),
        (
            "Redis bulk publish delivered ≥ 15,000 msgs/s",
            thr("redis bulk"),
            15000.0,
            "msgs/s",
            True,
        ),
        (
            "Redis bulk publish accepted by the sidecar ≥ 15,000 msgs/s",
            published("redis bulk"),
            15000.0,
            "msgs/s",
            True,
        ),
        (f"Redis p50 ≤ 2 ms at {plan.rate:g} msgs/s", p50("redis HTTP"), 2.0, "ms", False),
    ]
    for what, got, target, unit, higher in checks:
        if got is None:
            out.append(f"- {what}: not measured")
            continue
        met = got >= target if higher else got <= target
        out.append(
            f"- {what}: **{fmt(got, 0 if higher else 3)} {unit}** — {'MET' if met else 'MISSED'}"
        )
    return "\n".join(out)


def delete_streams(*names: str) -> None:
    """Delete the Redis streams of this run."""
    import redis

    host, _, port = REDIS_HOST.partition(":")
    with redis.Redis(host=host, port=int(port or 6379), socket_timeout=10) as client:
        client.delete(*names)


async def delete_jetstream(stream: str) -> None:
    """Delete the JetStream stream of this run (pubsub.jetstream names it after the topic)."""
    import nats

    client = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(Exception):  # never created: nothing to delete
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


SPY_RATE = 200  # samples per second


def start_py_spy(stack: contextlib.ExitStack, pid: int, raw: Path) -> Service:
    """py-spy sampling ``pid`` until :func:`stop_py_spy` (needs ptrace; root here)."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    spy_args = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--function",
                "--rate", str(SPY_RATE), "--output", str(raw)]  # fmt: skip
    spy = stack.enter_context(running(Service("py-spy", spy_args)))
    spy.wait_for_line(re.compile(r"Sampling process"), 10)
    return spy


def stop_py_spy(spy: Service, raw: Path, results: Results) -> str:
    """py-spy's stacks, analysed as profile_sidecar.py does (per message instead of request)."""
    from profile_sidecar import analyse, parse_raw

    spy.proc.send_signal(signal.SIGINT)  # py-spy writes the file on SIGINT
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.proc.wait(30)
    if not raw.exists():
        return f"py-spy wrote nothing; its output:\n{spy.output()}"
    messages = sum(m.messages for kind in results.values() for r in kind.values() for m in r)
    text = analyse(parse_raw(raw.read_text(encoding="utf-8")), 25, SPY_RATE, messages)
    return text.replace("per request", "per message (of every scenario, direct ones included)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="daprlite pub/sub benchmark")
    p.add_argument("--quick", action="store_true", help="few messages and rounds: a smoke run")
    p.add_argument("--brokers", nargs="+", choices=BROKERS, default=list(BROKERS))
    p.add_argument("--rounds", type=int, help="rounds (default 3; --quick 1)")
    p.add_argument("--messages", type=int, help="closed-loop messages per slice (default 5000)")
    p.add_argument("--rate", type=float, default=500.0, help="open-loop msgs/s (default 500)")
    p.add_argument("--daprlite-src", type=Path, help="run the sidecars from this tree")
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument(
        "--py-spy",
        choices=["publisher", "subscriber"],
        help="also profile this sidecar with py-spy for the whole run",
    )
    p.add_argument("--py-spy-raw", type=Path, help="keep py-spy's raw stacks here")
    p.add_argument("--serve", choices=["counter"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--subscriptions", default="[]", help=argparse.SUPPRESS)
    p.add_argument("--direct-redis", default="", help=argparse.SUPPRESS)
    p.add_argument("--direct-sqlite", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        run_async(
            serve_counter(args.port, args.subscriptions, args.direct_redis, args.direct_sqlite)
        )
        return 0
    quick = args.quick
    plan = Plan(
        rounds=args.rounds or (1 if quick else 3),
        messages=args.messages or (1000 if quick else 5000),
        rate=args.rate,
        rate_messages=int(args.rate * (1 if quick else 4)),
        warmup=200 if quick else 500,
    )
    command = " ".join(["python", "bench/pubsub_bench.py", *(argv or sys.argv[1:])])
    exit_on_signals()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daprlite-pubsub-")))
        (workdir / "resources").mkdir()
        # These run after the sidecars stopped, so none recreates what is deleted.
        if "redis" in args.brokers:
            stack.callback(delete_streams, topic, f"{topic}-direct")
        if "jetstream" in args.brokers:
            stack.callback(lambda: asyncio.run(delete_jetstream(topic)))
        for b, text in manifests(args.brokers, workdir).items():
            (workdir / "resources" / f"{b}.yaml").write_text(text)
        env = daprlite_env(source=args.daprlite_src, DAPRLITE_HOME=str(workdir / "home"))
        source = daprlite_source(args.daprlite_src, resolved_daprlite(env, workdir))
        subs = [
            {"pubsubname": f"ps-{b}", "topic": topic, "route": "/deliver"} for b in args.brokers
        ]
        app_port = free_port()
        app_args = [PYTHON, SCRIPT, "--serve", "counter", "--port", str(app_port)]
        app_args += ["--subscriptions", json.dumps(subs)]
        if "redis" in args.brokers:
            app_args += ["--direct-redis", f"{topic}-direct"]
        if "sqlite" in args.brokers:
            app_args += ["--direct-sqlite", str(workdir / "direct.db")]
        app = stack.enter_context(running(Service("counter app", app_args, env=env, cwd=workdir)))
        app.wait_for_line(APP_READY, START_TIMEOUT)
        src = args.daprlite_src
        subscriber = stack.enter_context(
            running(start_sidecar(workdir, "subscriber", src, app_port))
        )
        publisher = stack.enter_context(running(start_sidecar(workdir, "publisher", src)))
        sidecar_http(subscriber)
        pub_port = sidecar_http(publisher)
        time.sleep(1.0)  # the subscriptions start right after readiness
        procs = Procs(app_port, app.pid, (publisher.pid, subscriber.pid))
        spy = None
        raw = args.py_spy_raw or workdir / "stacks.txt"
        if args.py_spy:
            target = publisher if args.py_spy == "publisher" else subscriber
            spy = start_py_spy(stack, target.pid, raw)
        results = run_async(measure(plan, args.brokers, topic, pub_port, procs, workdir))
        profile = stop_py_spy(spy, raw, results) if spy else ""
    text = report(plan, results, source, command)
    if profile:
        text += f"\n\n### py-spy profile of the {args.py_spy} sidecar (whole run)\n\n{profile}"
    print("\n" + text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
