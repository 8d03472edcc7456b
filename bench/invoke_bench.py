"""Service invocation: added latency at a fixed rate and top throughput, against a proxy chain.

    .venv/bin/python bench/invoke_bench.py            # full run (about 4 minutes)
    .venv/bin/python bench/invoke_bench.py --quick    # a smoke run (about a minute)

Not on daprlite's request path: it drives two real ``daprlite run`` sidecars
from outside. Sidecar B starts app B (this script with ``--serve echo``, an
aiohttp echo app on uvloop); sidecar A has no app, because this process plays
app A. Both share a temporary ``DAPRLITE_HOME``, so A finds B through that run
folder and nothing is written to ``~/.daprlite``. Every call carries a 1 KiB
body to the ``echo`` method, and every reply is checked byte for byte.
Scenarios:

1. ``direct``: client → app B, no sidecar (the floor);
2. ``naive chain``: client → proxy 1 → proxy 2 → app B, two minimal aiohttp
   forwarders (this script with ``--serve proxy``, one pooled ``ClientSession``
   each, on uvloop);
3. ``daprlite HTTP``: client → sidecar A (``/v1.0/invoke/B/method/echo``) →
   sidecar B → app B;
4. ``daprlite gRPC``: client → sidecar A (the official SDK's ``DaprStub``
   ``InvokeService``) → sidecar B → app B.

Two measurements, each in interleaved rounds (within a round the scenarios
take turns slice by slice, in a rotating order, so noise on this shared
machine hits them all):

- **fixed rate** (open loop; 1000 req/s, the issue's figure, then 300 req/s
  for comparison below saturation): requests are scheduled every 1/rate
  seconds by a timer thread, whether or not earlier ones have answered, and
  each latency is taken from its *scheduled* start, so a stall is not hidden
  by the generator waiting for it. The thread's own lateness is reported as
  the send lag. "Added" latency is the scenario's percentile minus direct's,
  per round.
- **top throughput** (closed loop): a fixed number of workers send back to
  back; req/s, with the ratio to the naive chain taken per round.

Both report the CPU seconds per 1,000 requests of the two hops (sidecars A + B
or proxies 1 + 2), of app B and of this load generator, from ``/proc``.
``--daprlite-src`` runs the sidecars from another tree (e.g. a ``git archive``
snapshot); ``--candidate-src`` adds a second pair of sidecars, with its own
app B and run folder, from a patched tree to the same rounds, and
``--candidate-mtls`` runs that second pair with mTLS between its sidecars (a CA
in its ``DAPRLITE_HOME``, as ``daprlite init`` makes), from the same tree
unless ``--candidate-src`` names another. Everything
started is stopped on exit, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from google.protobuf.any_pb2 import Any as AnyProto

from _harness import (
    PORTS_LINE,
    PYTHON,
    Service,
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
from _load import BenchError, run_round

CALLEE = "B"
CALLER = "A"
METHOD = "echo"
BODY = bytes(range(256)) * 4  # 1 KiB, every byte value: a mangled body shows
CONTENT_TYPE = "application/octet-stream"
DIRECT = "direct"
CHAIN = "naive chain"
DAPRLITE_HTTP = "daprlite HTTP"
DAPRLITE_GRPC = "daprlite gRPC"
CANDIDATE_HTTP = "candidate HTTP"  # --candidate-src: a second pair of sidecars, e.g. patched
CANDIDATE_GRPC = "candidate gRPC"
PROXY_PORT_LINE = re.compile(r"Proxy Port: (\d+)")
ECHO_READY_LINE = "Echo app ready"
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 30.0
MAX_IN_FLIGHT = 2000  # open loop: a target this far behind drops requests (reported)
# Hop-by-hop headers (RFC 9110, 7.6.1) and the ones aiohttp writes itself: a proxy drops them.
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-connection", "host", "content-length", "date", "server"}
)  # fmt: skip


# -- the child processes: app B and the naive proxies ----------------------------------
async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type=CONTENT_TYPE)


def proxy_handler(
    session: aiohttp.ClientSession, upstream: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Forward verb, path, query, end-to-end headers and body; answer with the upstream's."""

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session.request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=resp.status, body=data, headers=out)

    return forward


async def serve(role: str, port: int, upstream: str) -> None:
    """Serve app B (``echo``) or one proxy until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        app = web.Application()
        if role == "echo":
            app.router.add_route("*", "/{path:.*}", echo)
        else:
            # A pooled session with keep-alive and no cap, as the sidecars' clients.
            client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                auto_decompress=False,
            )
            await stack.enter_async_context(client)
            app.router.add_route("*", "/{path:.*}", proxy_handler(client, upstream))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(512)
        sock.setblocking(False)
        await web.SockSite(runner, sock).start()
        bound = sock.getsockname()[1]
        print(f"Proxy Port: {bound}" if role == "proxy" else ECHO_READY_LINE, flush=True)
        await stop.wait()


# -- the scenarios, as the load generator calls them -----------------------------------
Call = Callable[[int], Awaitable[None]]


def http_call(name: str, session: aiohttp.ClientSession, url: str) -> Call:
    headers = {"Content-Type": CONTENT_TYPE}

    async def call(_i: int) -> None:
        async with session.post(url, data=BODY, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200 or body != BODY:
                raise BenchError(f"{name}: answered {resp.status} {body[:200]!r}")

    return call


def grpc_call(name: str, channel: grpc.aio.Channel) -> Call:
    stub = dapr_pb2_grpc.DaprStub(channel)
    request = invoke_pb2.InvokeServiceRequest(
        id=CALLEE,
        message=common_pb2.InvokeRequest(
            method=METHOD,
            data=AnyProto(value=BODY),
            content_type=CONTENT_TYPE,
            http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.POST),
        ),
    )

    async def call(_i: int) -> None:
        resp = await stub.InvokeService(request, timeout=REQUEST_TIMEOUT)
        if resp.data.value != BODY:
            raise BenchError(f"{name}: InvokeService returned {resp.data.value[:200]!r}")

    return call


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    call: Call
    hop_pids: tuple[int, ...]  # the two hops (sidecars A, B or proxies 1, 2); none for direct
    app_pid: int  # the app B that answers


@dataclass(frozen=True, slots=True)
class Measured:
    """One scenario's share of one round (or of one slice of it)."""

    scenario: str
    requests: int
    seconds: float
    latencies_ms: tuple[float, ...]
    hop_cpu_s: tuple[float, ...]  # per hop, as Scenario.hop_pids
    app_cpu_s: float
    client_cpu_s: float
    late_ms: tuple[float, ...] = ()  # open loop: how late the timer thread fired each send
    dropped: int = 0  # open loop: sends skipped because MAX_IN_FLIGHT were outstanding

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def per_1k(self, seconds: float) -> float:
        return 1000 * seconds / self.requests if self.requests else 0.0


def merge(parts: Sequence[Measured]) -> Measured:
    """One scenario's slices of a round as one result (time = the sum of its slices)."""
    return Measured(
        scenario=parts[0].scenario,
        requests=sum(p.requests for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=tuple(ms for p in parts for ms in p.latencies_ms),
        hop_cpu_s=tuple(sum(cpu) for cpu in zip(*(p.hop_cpu_s for p in parts), strict=True)),
        app_cpu_s=sum(p.app_cpu_s for p in parts),
        client_cpu_s=sum(p.client_cpu_s for p in parts),
        late_ms=tuple(ms for p in parts for ms in p.late_ms),
        dropped=sum(p.dropped for p in parts),
    )


async def fixed_rate(call: Call, rate: float, count: int, first: int) -> Measured:
    """``count`` sends at ``rate``/s, scheduled by a timer thread (open loop).

    A thread sleeping in ``time.sleep`` fires each send within about 0.1 ms; the
    event loop's own timers have a 1 ms grain (uvloop rounds sub-ms sleeps down and
    spins). Latency runs from the scheduled instant to the checked reply.
    """
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    late: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    dropped = 0
    all_sent = asyncio.Event()
    stop = threading.Event()
    interval = 1.0 / rate
    start = time.perf_counter() + 0.005

    async def one(i: int, due: float) -> None:
        await call(i)
        latencies.append((time.perf_counter() - due) * 1e3)

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]
            all_sent.set()

    def fire(i: int, due: float) -> None:
        nonlocal dropped
        late.append((time.perf_counter() - due) * 1e3)
        if len(tasks) >= MAX_IN_FLIGHT:
            dropped += 1
            return
        task = loop.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(finished)

    def ticker() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: we are stopping
            for n in range(count):
                due = start + n * interval
                left = due - time.perf_counter()
                if left > 0:
                    time.sleep(left)
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(fire, first + n, due)
            loop.call_soon_threadsafe(all_sent.set)

    cpu = time.process_time()
    # The ticker needs the GIL for each send; by default a busy event loop keeps it for up
    # to 5 ms, which would delay sends by as much. 0.2 ms bounds that lag.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    thread = threading.Thread(target=ticker, name="invoke-bench-ticker", daemon=True)
    thread.start()
    try:
        await all_sent.wait()
        if tasks and not failures:
            await asyncio.wait(set(tasks), timeout=REQUEST_TIMEOUT * 2)
        if failures:
            raise failures[0]
        if tasks:
            raise BenchError(f"{len(tasks)} requests still open after {2 * REQUEST_TIMEOUT:g}s")
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        thread.join(5)
        sys.setswitchinterval(switch)
    return Measured(
        scenario="",
        requests=len(latencies),
        seconds=time.perf_counter() - start,
        latencies_ms=tuple(latencies),
        hop_cpu_s=(),
        app_cpu_s=0.0,
        client_cpu_s=time.process_time() - cpu,
        late_ms=tuple(late),
        dropped=dropped,
    )


async def closed_loop(call: Call, count: int, concurrency: int, first: int) -> Measured:
    r = await run_round("", call, count, concurrency, ROUND_TIME_LIMIT, first_index=first)
    return Measured("", r.requests, r.seconds, r.latencies_ms, (), 0.0, r.client_cpu_s)


ROUND_TIME_LIMIT = 60.0  # seconds per closed-loop slice, a bound on a stuck target


async def timed(scenario: Scenario, run: Callable[[], Awaitable[Measured]]) -> Measured:
    """``run`` with the CPU time the hops and app B used meanwhile."""
    app_pid = scenario.app_pid
    hops = [cpu_seconds(pid) for pid in scenario.hop_pids]
    app = cpu_seconds(app_pid)
    got = await run()
    return Measured(
        scenario=scenario.name,
        requests=got.requests,
        seconds=got.seconds,
        latencies_ms=got.latencies_ms,
        hop_cpu_s=tuple(
            cpu_seconds(pid) - before for pid, before in zip(scenario.hop_pids, hops, strict=True)
        ),
        app_cpu_s=cpu_seconds(app_pid) - app,
        client_cpu_s=got.client_cpu_s,
        late_ms=got.late_ms,
        dropped=got.dropped,
    )


# -- the measured part -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    rates: tuple[float, ...]  # requests per second of the open loop; the first is the target's
    rate_slice_s: float  # seconds per slice of an open-loop round
    rate_slices: int  # slices per open-loop round and scenario
    concurrencies: tuple[int, ...]
    requests: int  # per closed-loop round and scenario
    slice: int  # requests per slice of a closed-loop round
    warmup: int  # closed-loop requests per scenario before measuring


@dataclass(frozen=True, slots=True)
class Pair:
    """Sidecars A and B, from one daprlite tree, and the app B behind B."""

    app_port: int
    app_pid: int
    a_http: int
    a_grpc: int
    a_pid: int
    b_pid: int

    @property
    def invoke_url(self) -> str:
        return f"http://127.0.0.1:{self.a_http}/v1.0/invoke/{CALLEE}/method/{METHOD}"


@dataclass(frozen=True, slots=True)
class Endpoints:
    daprlite: Pair
    proxy1_port: int
    proxy1_pid: int
    proxy2_pid: int
    candidate: Pair | None = None


Rounds = dict[str, list[Measured]]  # scenario → its result per round
Results = dict[str, Rounds]  # rate_label(r) or "conc N" → rounds


def rate_label(rate: float) -> str:
    return f"fixed rate {rate:g}/s"


def slice_size(plan: Plan, rate: float) -> int:
    return max(1, round(rate * plan.rate_slice_s))


def rotated(items: Sequence[Scenario], by: int) -> list[Scenario]:
    n = by % len(items)
    return [*items[n:], *items[:n]]


async def measure(plan: Plan, at: Endpoints) -> Results:
    async with contextlib.AsyncExitStack() as stack:

        async def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=256)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            client = aiohttp.ClientSession(connector=connector, timeout=timeout)
            return await stack.enter_async_context(client)

        async def sidecars(pair: Pair, http_name: str, grpc_name: str) -> list[Scenario]:
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{pair.a_grpc}")
            )
            pids = (pair.a_pid, pair.b_pid)
            return [
                Scenario(
                    http_name,
                    http_call(http_name, await session(), pair.invoke_url),
                    pids,
                    pair.app_pid,
                ),
                Scenario(grpc_name, grpc_call(grpc_name, channel), pids, pair.app_pid),
            ]

        app = at.daprlite
        scenarios = [
            Scenario(
                DIRECT,
                http_call(DIRECT, await session(), url(app.app_port, METHOD)),
                (),
                app.app_pid,
            ),
            Scenario(
                CHAIN,
                http_call(CHAIN, await session(), url(at.proxy1_port, METHOD)),
                (at.proxy1_pid, at.proxy2_pid),
                app.app_pid,
            ),
            *await sidecars(at.daprlite, DAPRLITE_HTTP, DAPRLITE_GRPC),
        ]
        if at.candidate is not None:
            scenarios += await sidecars(at.candidate, CANDIDATE_HTTP, CANDIDATE_GRPC)
        print("\nwarm-up", flush=True)
        for s in scenarios:
            await closed_loop(s.call, plan.warmup, 16, 0)
            await fixed_rate(s.call, plan.rates[0], slice_size(plan, plan.rates[0]), 0)
        results: Results = {}
        for rate in plan.rates:
            print(f"\n{rate_label(rate)}:", flush=True)
            n = slice_size(plan, rate)

            def open_loop(
                s: Scenario, first: int, rate: float = rate, n: int = n
            ) -> Awaitable[Measured]:
                return timed(s, lambda: fixed_rate(s.call, rate, n, first))

            results[rate_label(rate)] = await interleaved(
                plan, scenarios, n, plan.rate_slices, open_loop
            )
        slices = max(1, plan.requests // plan.slice)
        size = plan.requests // slices
        for conc in plan.concurrencies:
            print(f"\nclosed loop, concurrency {conc}:", flush=True)

            def closed(s: Scenario, first: int, conc: int = conc) -> Awaitable[Measured]:
                return timed(s, lambda: closed_loop(s.call, size, conc, first))

            results[f"conc {conc}"] = await interleaved(plan, scenarios, size, slices, closed)
        return results


def url(port: int, method: str) -> str:
    return f"http://127.0.0.1:{port}/{method}"


async def interleaved(
    plan: Plan,
    scenarios: list[Scenario],
    size: int,
    slices: int,
    run: Callable[[Scenario, int], Awaitable[Measured]],
) -> Rounds:
    """``plan.rounds`` rounds of ``slices`` slices; in each slice every scenario takes a turn."""
    out: Rounds = {s.name: [] for s in scenarios}
    for r in range(plan.rounds):
        parts: dict[str, list[Measured]] = {s.name: [] for s in scenarios}
        for i in range(slices):
            for s in rotated(scenarios, r * slices + i):
                parts[s.name].append(await run(s, (r * slices + i) * size))
        for name, sliced in parts.items():
            out[name].append(merge(sliced))
        cells = [
            f"{name} {got[-1].throughput:5.0f}/s p50 {percentiles(got[-1].latencies_ms).p50:.2f}"
            for name, got in out.items()
        ]
        print(f"  round {r + 1}/{plan.rounds}: " + ", ".join(cells), flush=True)
    return out


# -- the report ------------------------------------------------------------------------
def added(subject: Sequence[Measured], base: Sequence[Measured], which: str) -> float:
    """Median over rounds of (subject's percentile - base's), in ms."""
    return median(
        [
            getattr(percentiles(s.latencies_ms), which)
            - getattr(percentiles(b.latencies_ms), which)
            for s, b in zip(subject, base, strict=True)
        ]
    )


def ratio(
    subject: Sequence[Measured], base: Sequence[Measured], value: Callable[[Measured], float]
) -> float:
    """Median over rounds of value(subject)/value(base); rounds of one index ran interleaved."""
    return median([value(s) / value(b) for s, b in zip(subject, base, strict=True) if value(b)])


def hop_cpu(m: Measured) -> float:
    return m.per_1k(sum(m.hop_cpu_s))


def cpu_cells(rounds: Sequence[Measured]) -> list[str]:
    """Hops (total, and each), app B and load generator: CPU s per 1,000 requests."""
    hops = "—"
    if rounds[0].hop_cpu_s:
        each = [
            median([r.per_1k(r.hop_cpu_s[i]) for r in rounds])
            for i in range(len(rounds[0].hop_cpu_s))
        ]
        hops = (
            f"{median([hop_cpu(r) for r in rounds]):.3f} ("
            + " + ".join(f"{c:.3f}" for c in each)
            + ")"
        )
    app = median([r.per_1k(r.app_cpu_s) for r in rounds])
    client = median([r.per_1k(r.client_cpu_s) for r in rounds])
    return [hops, f"{app:.3f}", f"{client:.3f}"]


def pct_cells(rounds: Sequence[Measured]) -> list[str]:
    pcts = [percentiles(r.latencies_ms) for r in rounds]
    return [f"{median([getattr(p, k) for p in pcts]):.3f}" for k in ("p50", "p90", "p99")]


CPU_HEADER = ["hops CPU s/1k req (1st + 2nd)", "app B CPU s/1k", "load-gen CPU s/1k"]


def report(plan: Plan, results: Results, source: str) -> str:
    closed = [label for label in results if label.startswith("conc ")]
    rates = ", ".join(
        f"{r:g} req/s ({plan.rate_slices} slices of {slice_size(plan, r)} requests)"
        for r in plan.rates
    )
    parts = [
        f"Machine: {machine_notes()}",
        f"daprlite measured: {source}",
        f"Plan: {plan.rounds} rounds. Fixed rate, open loop, per scenario and round: {rates}. "
        f"Closed loop: {plan.requests} requests per scenario and round at each concurrency, "
        f"in slices of {plan.slice}. Scenarios take turns slice by slice in a rotating order. "
        "Figures are medians over rounds; added latencies and ratios are taken per round "
        "(the scenarios of one round ran interleaved), then the median. A 1 KiB body each way.",
        "",
    ]
    header = ["scenario", "p50 ms", "p90 ms", "p99 ms", "added p50", "added p90", "added p99"]
    header += ["send lag p50 / p99 ms", "dropped", *CPU_HEADER]
    for rate in plan.rates:
        label = rate_label(rate)
        base = results[label][DIRECT]
        rows = []
        for name, rounds in results[label].items():
            plus = (
                ["—"] * 3
                if name == DIRECT
                else [f"{added(rounds, base, k):+.3f}" for k in ("p50", "p90", "p99")]
            )
            late = percentiles([ms for r in rounds for ms in r.late_ms])
            rows.append(
                [name, *pct_cells(rounds), *plus, f"{late.p50:.3f} / {late.p99:.3f}",
                 str(sum(r.dropped for r in rounds)), *cpu_cells(rounds)]
            )  # fmt: skip
        parts += [
            f"{label} (latency from each request's scheduled start; added = scenario − direct):",
            "",
            markdown_table(header, rows),
            "",
        ]
    rows = []
    for label in closed:
        chain = results[label][CHAIN]
        for name, rounds in results[label].items():
            vs = "—" if name == CHAIN else f"{ratio(rounds, chain, lambda m: m.throughput):.2f}×"
            req_s = f"{median([r.throughput for r in rounds]):,.0f}"
            rows.append(
                [
                    label.removeprefix("conc "),
                    name,
                    req_s,
                    vs,
                    *pct_cells(rounds),
                    *cpu_cells(rounds),
                ]
            )
    header = ["conc", "scenario", "req/s", "vs naive chain", "p50 ms", "p90 ms", "p99 ms"]
    parts += ["Top throughput (closed loop):", "", markdown_table(header + CPU_HEADER, rows), ""]
    parts.append(verdict(plan, results))
    return "\n".join(parts)


def verdict(plan: Plan, results: Results) -> str:
    closed = [label for label in results if label.startswith("conc ")]
    target_rate = rate_label(plan.rates[0])
    by_rate = results[target_rate]
    lines = ["CPU of the two hops per request, daprlite / naive chain (median per round):"]
    for label, rounds in results.items():
        for name in (DAPRLITE_HTTP, DAPRLITE_GRPC):
            lines.append(f"- {label}, {name}: {ratio(rounds[name], rounds[CHAIN], hop_cpu):.2f}×")
    if CANDIDATE_HTTP in by_rate:
        lines += ["", "Candidate / daprlite, per round then the median:"]
        for label, rounds in results.items():
            for subject, reference in (
                (CANDIDATE_HTTP, DAPRLITE_HTTP),
                (CANDIDATE_GRPC, DAPRLITE_GRPC),
            ):
                subj, ref = rounds[subject], rounds[reference]
                cells = [f"hop CPU {ratio(subj, ref, hop_cpu):.2f}×"]
                if label.startswith("conc "):
                    cells.append(f"req/s {ratio(subj, ref, lambda m: m.throughput):.2f}×")
                else:
                    cells += [f"{k} {added(subj, ref, k):+.3f} ms" for k in ("p50", "p90", "p99")]
                lines.append(f"- {label}, {subject} / {reference}: " + ", ".join(cells))
    lines += ["", "Targets (issue; reported, not asserted):"]
    for which, limit in (("p90", 0.8), ("p99", 1.5)):
        plus = added(by_rate[DAPRLITE_HTTP], by_rate[DIRECT], which)
        mark = "MET" if plus <= limit else f"MISSED by {plus - limit:.3f} ms"
        lines.append(
            f"- added {which} over HTTP at {target_rate}: {plus:+.3f} ms (≤ {limit} ms): {mark}"
        )
    for label in closed:
        got = ratio(results[label][DAPRLITE_HTTP], results[label][CHAIN], lambda m: m.throughput)
        mark = "MET" if got >= 0.9 else f"MISSED: {got / 0.9:.0%} of the target"
        lines.append(
            f"- top throughput at {label}, daprlite HTTP / naive chain: {got:.2f}× "
            f"(≥ 0.90×): {mark}"
        )
    return "\n".join(lines)


def raw_json(results: Results) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for label, by_name in results.items():
        for name, rounds in by_name.items():
            for i, r in enumerate(rounds):
                p = percentiles(r.latencies_ms)
                out.append(
                    {"measurement": label, "scenario": name, "round": i, "requests": r.requests,
                     "seconds": r.seconds, "req_per_s": r.throughput, "p50_ms": p.p50,
                     "p90_ms": p.p90, "p99_ms": p.p99, "hop_cpu_s": list(r.hop_cpu_s),
                     "app_cpu_s": r.app_cpu_s, "client_cpu_s": r.client_cpu_s,
                     "dropped": r.dropped}
                )  # fmt: skip
    return out


# -- set-up ----------------------------------------------------------------------------
SCRIPT = str(Path(__file__).resolve())


def start_sidecar(workdir: Path, app_id: str, source: Path | None, app_port: int = 0) -> Service:
    resources = workdir / f"resources-{app_id}"
    resources.mkdir()  # empty: invocation needs no component
    args = [PYTHON, "-m", "daprlite", "run", "--app-id", app_id, "-d", str(resources)]
    args += ["--log-level", "warn"]
    if app_port:
        args += ["--app-port", str(app_port), "--", PYTHON, SCRIPT, "--serve", "echo"]
        args += ["--port", str(app_port)]
    # cwd: `python -m` puts it first on sys.path, so it must hold no daprlite folder.
    return Service(f"sidecar {app_id}", args, sidecar_env(workdir, source), workdir)


def sidecar_env(workdir: Path, source: Path | None) -> dict[str, str]:
    # One DAPRLITE_HOME for both: A finds B in its run folder, and ~/.daprlite stays untouched.
    return daprlite_env(source=source, DAPRLITE_HOME=str(workdir / "home"))


def start_proxy(name: str, upstream: str) -> Service:
    args = [PYTHON, SCRIPT, "--serve", "proxy", "--port", "0", "--upstream", upstream]
    return Service(name, args)


def sidecar_ports(sidecar: Service) -> tuple[int, int]:
    line = sidecar.wait_for_line(PORTS_LINE, START_TIMEOUT)
    http_port, grpc_port = int(line.group(1)), int(line.group(2))
    wait_http(sidecar, http_port, "/v1.0/healthz", START_TIMEOUT, interval=0.05)
    return http_port, grpc_port


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's, from /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def our_app(pid: int) -> bool:
    """``pid`` is app B, started by sidecar B from this script."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SCRIPT.encode() in cmdline and b"--serve" in cmdline


def find_app(sidecar_b: Service) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = [pid for pid in children(sidecar_b.pid) if our_app(pid)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise RuntimeError(f"sidecar B started no app; its output:\n{sidecar_b.output()}")


def stop_app(pid: int | None) -> None:
    """Sidecar B stops app B on SIGTERM; this only catches an app that outlived it."""
    if pid is None or not our_app(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        print(f"warning: app B (pid {pid}) outlived its sidecar; stopping it", file=sys.stderr)
        os.kill(pid, signal.SIGTERM)


async def wait_invocable(invoke_url: str) -> None:
    """Until A reaches B's app: B's record in the run folder and app B both ready."""
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        call = http_call("readiness", session, invoke_url)
        while True:
            try:
                await call(0)
                return
            except (BenchError, aiohttp.ClientError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar A could not invoke B: {exc}") from exc
                await asyncio.sleep(0.1)


def start_pair(stack: contextlib.ExitStack, workdir: Path, source: Path | None) -> Pair:
    """Start sidecar B with app B, and sidecar A; ``stack`` stops them all.

    ``workdir`` holds their ``DAPRLITE_HOME``: a second pair in another folder
    has its own run folder, so each A finds its own B.
    """
    app_pid: list[int] = []
    app_port = free_port()
    stack.callback(lambda: stop_app(app_pid[0] if app_pid else None))  # runs after B stops
    sidecar_b = stack.enter_context(running(start_sidecar(workdir, CALLEE, source, app_port)))
    sidecar_a = stack.enter_context(running(start_sidecar(workdir, CALLER, source)))
    sidecar_ports(sidecar_b)
    a_http, a_grpc = sidecar_ports(sidecar_a)
    app_pid.append(find_app(sidecar_b))
    pair = Pair(app_port, app_pid[0], a_http, a_grpc, sidecar_a.pid, sidecar_b.pid)
    run_async(wait_invocable(pair.invoke_url))
    return pair


def start_all(
    stack: contextlib.ExitStack,
    workdir: Path,
    source: Path | None,
    candidate: Path | None,
    candidate_mtls: bool = False,
) -> Endpoints:
    """Both sidecars and app B, both proxies, and the candidate pair if asked for."""
    pair = start_pair(stack, workdir, source)
    upstream = f"http://127.0.0.1:{pair.app_port}"
    proxy2 = stack.enter_context(running(start_proxy("proxy 2", upstream)))
    port2 = int(proxy2.wait_for_line(PROXY_PORT_LINE, START_TIMEOUT).group(1))
    proxy1 = stack.enter_context(running(start_proxy("proxy 1", f"http://127.0.0.1:{port2}")))
    port1 = int(proxy1.wait_for_line(PROXY_PORT_LINE, START_TIMEOUT).group(1))
    other = None
    if candidate is not None or candidate_mtls:
        (workdir / "candidate").mkdir()
        if candidate_mtls:
            from daprlite.security.ca import create_ca, write_ca

            write_ca(create_ca(), workdir / "candidate" / "home" / "certs")
        other = start_pair(stack, workdir / "candidate", candidate or source)
    return Endpoints(pair, port1, proxy1.pid, proxy2.pid, other)


# -- main ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description="daprlite service invocation benchmark")
    p.add_argument("--quick", action="store_true", help="few requests and rounds: a smoke run")
    p.add_argument("--rounds", type=int, help="rounds (default 5; --quick 2)")
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[1000.0, 300.0],
        help="open-loop req/s; targets are checked at the first (default 1000 300)",
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--requests", type=int, help="closed-loop requests per round (default 3000)")
    p.add_argument("--daprlite-src", type=Path, help="run the sidecars from this tree")
    p.add_argument(
        "--candidate-src",
        type=Path,
        help="also run a second pair of sidecars from this tree (e.g. a patched copy)",
    )
    p.add_argument(
        "--candidate-mtls",
        action="store_true",
        help="run the second pair with mTLS between its sidecars",
    )
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="write per-round raw figures here")
    p.add_argument("--serve", choices=["echo", "proxy"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    plan = Plan(
        rounds=args.rounds or (2 if quick else 5),
        rates=tuple(args.rates),
        rate_slice_s=0.5 if quick else 1.0,
        rate_slices=2 if quick else 5,
        concurrencies=tuple(args.concurrency),
        requests=args.requests or (600 if quick else 3000),
        slice=200 if quick else 500,
        warmup=300 if quick else 1000,
    )
    return plan, args


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    if args.serve:
        run_async(serve(args.serve, args.port, args.upstream))
        return 0
    exit_on_signals()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daprlite-invoke-")))
        env = sidecar_env(workdir, args.daprlite_src)
        source = daprlite_source(args.daprlite_src, resolved_daprlite(env, workdir))
        if args.candidate_src:
            env = sidecar_env(workdir, args.candidate_src)
            source += f"; candidate: {args.candidate_src} (children import "
            source += f"{resolved_daprlite(env, workdir)})"
        if args.candidate_mtls:
            source += "; candidate: the same sidecars with mTLS between them"
        at = start_all(stack, workdir, args.daprlite_src, args.candidate_src, args.candidate_mtls)
        print(at, flush=True)
        results = run_async(measure(plan, at))
    text = report(plan, results, source)
    print("\n" + text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(raw_json(results), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
