"""Which transport should carry a service invocation from one sidecar to the next (DESIGN.md D5)?

    .venv/bin/python bench/experiments/internal_transport.py            # full run (≈ 1 min)
    .venv/bin/python bench/experiments/internal_transport.py --quick    # a smoke run

This is not on daprlite's request path: it measures the candidates for the
hop between the caller's sidecar and the callee's sidecar, before that hop is
written. Every candidate carries the same invocation: the caller's app id, the
verb, the method path, ten application headers, a query string, a 1 KiB body
and the trace context (traceparent, tracestate); the reply carries a status,
five headers and a 1 KiB body. The candidates:

- ``HTTP/1.1``: an aiohttp server; the client is one pooled aiohttp
  ``ClientSession`` (keep-alive, ``limit=0``); everything but the body and the
  verb, path and query is a header.
- ``gRPC``: a grpc.aio server with one generic unary-unary method on raw bytes;
  the envelope is daprlite's ``common.v1.InvokeRequest``/``InvokeResponse``,
  the headers, caller and trace context are gRPC metadata, and the reply's
  status and headers come back as trailing metadata (sent with the status in
  one batch; an explicit ``send_initial_metadata`` costs the server an extra
  batch, about 30% of the req/s at concurrency 16 in a trial). One channel.
- ``gRPC, N channels``: the same server, N client channels used round-robin,
  each on its own connection (a local subchannel pool; without it, channels
  to one address share a connection). It tells whether one channel saturates.

Each server runs in its own child process (this script with ``--serve``, on
uvloop when installed, as ``daprlite run``); the clients run here. Both sides
build and parse every message per call, as a sidecar would, and every reply is
checked. Per concurrency (1, 16, 64), each candidate gets the same request
count per round; within a round the candidates take turns slice by slice in a
rotating order, so noise on this shared 2-core machine hits them all. The
report gives medians over rounds of req/s, p50/p90/p99, and the CPU seconds
per 1,000 requests of the server process (``_harness.cpu_seconds``) and of
this process (``time.process_time``, all threads, as ``_load.run_round``
measures it). The children are stopped on exit, also after Ctrl-C, SIGTERM or
an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The shared bench helpers live one folder up; this script runs as a file, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import grpc
from aiohttp import web
from daprlite._proto.dapr.proto.common.v1 import common_pb2

from _harness import (
    PYTHON,
    Service,
    exit_on_signals,
    machine_notes,
    markdown_table,
    median,
    percentiles,
    run_async,
    running,
)
from _load import BenchError, RoundResult, run_round

# -- the invocation every candidate carries --------------------------------------------
CALLER_HEADER = "dapr-caller-app-id"
STATUS_HEADER = "dapr-http-status"  # gRPC only: the app's HTTP status, as metadata
CALLER = "checkout"
VERB = "POST"
METHOD_PATH = "api/v1/orders/create"
QUERY = "priority=high&region=eu-west-1&dry_run=false"
CONTENT_TYPE = "application/json"
TRACE = (
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("tracestate", "daprlite=t61rcWkgMzE,vendor=00f067aa0ba902b7"),
)
REQUEST_ID = "6f1c2e9a-3b7d-4c55-9e21-8a0f4d3c2b1e"  # echoed: proves the headers arrived
APP_HEADERS = (
    ("accept", "application/json"),
    ("accept-language", "en-GB,en;q=0.8"),
    ("user-agent", "orders-client/2.3.1"),
    ("x-request-id", REQUEST_ID),
    ("x-correlation-id", "b3a9d6f2-71c4-4e0b-a5d8-2f6e9c1b7a34"),
    ("x-tenant", "acme-retail"),
    ("x-feature-flags", "new-checkout,fast-path"),
    ("x-client-version", "2.3.1"),
    ("x-region", "eu-west-1"),
    ("cache-control", "no-cache"),
)
BODY_SIZE = 1024
REQUEST_BODY = (b'{"order":"' + b"r" * BODY_SIZE)[: BODY_SIZE - 2] + b'"}'
RESPONSE_BODY = (b'{"result":"' + b"a" * BODY_SIZE)[: BODY_SIZE - 2] + b'"}'
INVOKED = f"{VERB} {METHOD_PATH}"  # echoed: proves the verb and the path arrived
GRPC_METHOD = "/daprlite.bench.Internal/Invoke"
PORT_LINE = re.compile(r"Transport Port: (\d+)")
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def reply_headers(request_id: str, invoked: str) -> list[tuple[str, str]]:
    """The four reply headers besides the content type (which each transport carries natively)."""
    return [
        ("x-request-id", request_id),
        ("x-invoked", invoked),
        ("x-served-by", "orders-7d9f"),
        ("cache-control", "no-store"),
    ]


# -- the servers (child processes) -----------------------------------------------------
async def http_invoke(request: web.Request) -> web.Response:
    body = await request.read()
    headers = request.headers
    # What the callee's sidecar must pull out before calling its app.
    caller, traceparent = headers.get(CALLER_HEADER), headers.get("traceparent")
    forwarded = {k.lower(): v for k, v in headers.items() if k.lower() != CALLER_HEADER}
    if not caller or not traceparent or len(body) != BODY_SIZE or not request.query_string:
        return web.Response(status=400, text="the invocation lost a field")
    invoked = f"{request.method} {request.match_info['path']}"
    out = reply_headers(forwarded.get("x-request-id", ""), invoked)
    return web.Response(body=RESPONSE_BODY, headers=dict(out), content_type=CONTENT_TYPE)


async def grpc_invoke(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
    req = common_pb2.InvokeRequest.FromString(raw)
    # What the callee's sidecar must pull out before calling its app.
    metadata = dict(context.invocation_metadata() or ())
    caller, traceparent = metadata.pop(CALLER_HEADER, None), metadata.get("traceparent")
    if (
        not caller
        or not traceparent
        or len(req.data.value) != BODY_SIZE
        or not req.http_extension.querystring
    ):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the invocation lost a field")
    invoked = f"{common_pb2.HTTPExtension.Verb.Name(req.http_extension.verb)} {req.method}"
    out = reply_headers(str(metadata.get("x-request-id", "")), invoked)
    context.set_trailing_metadata([(STATUS_HEADER, "200"), *out])
    resp = common_pb2.InvokeResponse(content_type=CONTENT_TYPE)
    resp.data.value = RESPONSE_BODY
    return resp.SerializeToString()


async def serve(transport: str) -> None:
    """Serve one candidate on a free port, print it, run until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if transport == "http":
            app = web.Application()
            app.add_routes([web.route("*", "/{path:.*}", http_invoke)])
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(512)
            sock.setblocking(False)
            await web.SockSite(runner, sock).start()
            port = sock.getsockname()[1]
        else:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            handler = grpc.unary_unary_rpc_method_handler(grpc_invoke)  # raw bytes both ways
            service, method = GRPC_METHOD.strip("/").split("/")
            server.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler(service, {method: handler})]
            )
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            stack.push_async_callback(server.stop, 1)
        print(f"Transport Port: {port}", flush=True)
        await stop.wait()


# -- the clients (this process) --------------------------------------------------------
class HttpClient:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._url = f"http://127.0.0.1:{port}/{METHOD_PATH}?{QUERY}"

    async def call(self, _i: int) -> None:
        headers = {CALLER_HEADER: CALLER, "content-type": CONTENT_TYPE, **dict(TRACE)}
        headers.update(APP_HEADERS)
        async with self._session.request(
            VERB, self._url, data=REQUEST_BODY, headers=headers
        ) as resp:
            body = await resp.read()
            if (
                resp.status != 200
                or len(body) != BODY_SIZE
                or resp.headers.get("x-invoked") != INVOKED
                or resp.headers.get("x-request-id") != REQUEST_ID
            ):
                raise BenchError(f"HTTP: answered {resp.status} {body[:200]!r}")


class GrpcClient:
    """Unary calls on raw bytes; with several channels, one after the other."""

    def __init__(self, channels: Sequence[grpc.aio.Channel]) -> None:
        self._methods = [ch.unary_unary(GRPC_METHOD) for ch in channels]
        self._verb = common_pb2.HTTPExtension.Verb.Value(VERB)

    async def call(self, i: int) -> None:
        req = common_pb2.InvokeRequest(method=METHOD_PATH, content_type=CONTENT_TYPE)
        req.data.value = REQUEST_BODY
        req.http_extension.verb = self._verb
        req.http_extension.querystring = QUERY
        metadata = ((CALLER_HEADER, CALLER), *TRACE, *APP_HEADERS)
        call = self._methods[i % len(self._methods)](
            req.SerializeToString(), metadata=metadata, timeout=REQUEST_TIMEOUT
        )
        resp = common_pb2.InvokeResponse.FromString(await call)
        headers = dict(await call.trailing_metadata() or ())
        if (
            headers.get(STATUS_HEADER) != "200"
            or len(resp.data.value) != BODY_SIZE
            or headers.get("x-invoked") != INVOKED
            or headers.get("x-request-id") != REQUEST_ID
        ):
            raise BenchError(f"gRPC: answered {headers} {resp.data.value[:200]!r}")


# -- the measured part -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    requests: dict[int, int]  # per round and candidate, by concurrency
    slice: int  # requests per slice; a round alternates candidates slice by slice
    rounds: int
    warmup: int  # per candidate and concurrency, not measured
    channels: int  # of the multi-channel gRPC candidate; 0 leaves it out
    round_time_limit: float  # seconds per candidate; a round stops early when reached


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    call: Callable[[int], Awaitable[None]]
    server_pid: int


Results = dict[int, dict[str, list[RoundResult]]]  # concurrency → candidate → rounds


async def measure(plan: Plan, ports: dict[str, tuple[int, int]]) -> Results:
    """``ports``: candidate name → (server port, server pid)."""
    async with contextlib.AsyncExitStack() as stack:
        connector = aiohttp.TCPConnector(limit=0)  # keep-alive, no cap on connections
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        await stack.enter_async_context(session)

        async def channels(port: int, n: int) -> list[grpc.aio.Channel]:
            # A local subchannel pool gives each channel its own connection.
            options = [("grpc.use_local_subchannel_pool", 1)] if n > 1 else []
            return [
                await stack.enter_async_context(
                    grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
                )
                for _ in range(n)
            ]

        candidates = []
        for name, (port, pid) in ports.items():
            if name == "HTTP/1.1":
                call = HttpClient(session, port).call
            else:
                call = GrpcClient(await channels(port, 1 if name == "gRPC" else plan.channels)).call
            candidates.append(Candidate(name, call, pid))
        return {conc: await scenario(plan, candidates, conc) for conc in plan.requests}


async def scenario(
    plan: Plan, candidates: list[Candidate], conc: int
) -> dict[str, list[RoundResult]]:
    print(f"\nconcurrency {conc}:", flush=True)
    for c in candidates:
        await run_round(c.name, c.call, plan.warmup, conc, plan.round_time_limit)
    total = plan.requests[conc]
    slices = max(1, total // plan.slice)
    sizes = [total // slices + (1 if i < total % slices else 0) for i in range(slices)]
    out: dict[str, list[RoundResult]] = {c.name: [] for c in candidates}
    for r in range(plan.rounds):
        parts: dict[str, list[RoundResult]] = {c.name: [] for c in candidates}
        deadline = asyncio.get_running_loop().time() + plan.round_time_limit * len(candidates)
        done = r * total
        for i, size in enumerate(sizes):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                print("  (round time limit reached; the round is cut short)", flush=True)
                break
            turn = (r * slices + i) % len(candidates)
            for c in candidates[turn:] + candidates[:turn]:
                parts[c.name].append(
                    await run_round(c.name, c.call, size, conc, left, done, c.server_pid)
                )
            done += size
        for name, results in parts.items():
            out[name].append(merge(results))
        cells = [f"{name} {rounds[-1].throughput:6.0f}/s" for name, rounds in out.items()]
        print(f"  round {r + 1}/{plan.rounds}: " + ", ".join(cells), flush=True)
    return out


def merge(parts: Sequence[RoundResult]) -> RoundResult:
    """One candidate's slices of a round as one result (time = the sum of its slices)."""
    return RoundResult(
        target=parts[0].target,
        requests=sum(p.requests for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=tuple(ms for p in parts for ms in p.latencies_ms),
        server_cpu_s=sum(p.server_cpu_s for p in parts),
        client_cpu_s=sum(p.client_cpu_s for p in parts),
    )


# -- the report ------------------------------------------------------------------------
def per_1k(seconds: float, requests: int) -> float:
    return 1000 * seconds / requests if requests else 0.0


def ratio(subject: Sequence[RoundResult], base: Sequence[RoundResult], key: str) -> float:
    """Median over rounds of subject/base (the rounds of one index ran interleaved)."""
    values = {
        "req/s": lambda r: r.throughput,
        "p50": lambda r: percentiles(r.latencies_ms).p50,
        "cpu": lambda r: per_1k(r.server_cpu_s + r.client_cpu_s, r.requests),
    }[key]
    return median([values(s) / values(b) for s, b in zip(subject, base, strict=True)])


def report(plan: Plan, results: Results) -> str:
    rows = []
    for conc, by_name in results.items():
        for name, rounds in by_name.items():
            pcts = [percentiles(r.latencies_ms) for r in rounds]
            server = median([per_1k(r.server_cpu_s, r.requests) for r in rounds])
            client = median([per_1k(r.client_cpu_s, r.requests) for r in rounds])
            rows.append(
                [
                    name,
                    str(conc),
                    f"{median([r.throughput for r in rounds]):,.0f}",
                    f"{median([p.p50 for p in pcts]):.3f}",
                    f"{median([p.p90 for p in pcts]):.3f}",
                    f"{median([p.p99 for p in pcts]):.3f}",
                    f"{server:.3f}",
                    f"{client:.3f}",
                    f"{server + client:.3f}",
                ]
            )
    header = ["candidate", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms"]
    header += ["server CPU s/1k req", "client CPU s/1k req", "both"]
    ratio_rows = []
    for conc, by_name in results.items():
        for name, rounds in by_name.items():
            if name != "HTTP/1.1":
                base = by_name["HTTP/1.1"]
                ratio_rows.append(
                    [
                        f"{name} / HTTP/1.1",
                        str(conc),
                        f"{ratio(rounds, base, 'req/s'):.2f}×",
                        f"{ratio(rounds, base, 'p50'):.2f}×",
                        f"{ratio(rounds, base, 'cpu'):.2f}×",
                    ]
                )
    sizes = ", ".join(f"{n:,} at concurrency {c}" for c, n in plan.requests.items())
    return "\n".join(
        [
            f"Machine: {machine_notes()}",
            f"Plan: {plan.rounds} rounds of {sizes} requests per candidate "
            f"(+{plan.warmup} warm-up each); candidates take turns every {plan.slice} requests "
            "in a rotating order. Medians over rounds; ratios are per round, then the median.",
            "",
            markdown_table(header, rows),
            "",
            markdown_table(["ratio", "conc", "req/s", "p50", "CPU/req (both)"], ratio_rows),
            "",
            conclusion(results),
        ]
    )


def conclusion(results: Results) -> str:
    concs = sorted(results)
    low, loaded = concs[0], concs[1:]
    http, grpc1 = "HTTP/1.1", "gRPC"
    p50 = ratio(results[low][grpc1], results[low][http], "p50")
    speed = {c: ratio(results[c][grpc1], results[c][http], "req/s") for c in loaded}
    cpu = {c: ratio(results[c][grpc1], results[c][http], "cpu") for c in loaded}
    wins = (p50 < 1) + sum(s > 1 for s in speed.values())
    faster = grpc1 if wins * 2 > 1 + len(loaded) else http
    text = (
        f"Conclusion: {faster} measures faster. Against HTTP/1.1, one gRPC channel has "
        f"{p50:.2f}× the p50 at concurrency {low}, "
        + ", ".join(f"{speed[c]:.2f}× the req/s at concurrency {c}" for c in loaded)
        + ", and "
        + ", ".join(f"{cpu[c]:.2f}× the CPU per request (server + client) at {c}" for c in loaded)
        + "."
    )
    multi = [name for name in results[low] if name.startswith("gRPC, ")]
    if multi and loaded:
        gain = {c: ratio(results[c][multi[0]], results[c][grpc1], "req/s") for c in loaded}
        helped = [c for c, g in gain.items() if g > 1.05]  # beyond round-to-round noise
        if len(helped) == len(gain):
            verdict = "helps: one channel saturates"
        elif helped:
            verdict = f"helps only at concurrency {', '.join(map(str, helped))}"
        else:
            verdict = "does not help: one channel is not the bottleneck"
        channels = multi[0].removeprefix("gRPC, ")
        text += (
            f" Spreading the gRPC calls over {channels} {verdict} ("
            + ", ".join(f"{g:.2f}× one channel's req/s at {c}" for c, g in gain.items())
            + ")."
        )
    return text


# -- main ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description="sidecar-to-sidecar transport candidates (D5)")
    p.add_argument("--quick", action="store_true", help="few requests and rounds: a smoke run")
    p.add_argument("--rounds", type=int, help="rounds per concurrency (default 5; --quick 2)")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels (≤ 1: no multi-channel)")
    p.add_argument("--round-time-limit", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--serve", choices=["http", "grpc"], help=argparse.SUPPRESS)  # the children
    args = p.parse_args(argv)
    plan = Plan(
        requests={1: 600, 16: 1000, 64: 1000} if args.quick else {1: 3000, 16: 4000, 64: 4000},
        slice=200 if args.quick else 500,
        rounds=args.rounds or (2 if args.quick else 5),
        warmup=200 if args.quick else 500,
        channels=args.channels,
        round_time_limit=args.round_time_limit,
    )
    return plan, args


def start_server(name: str, transport: str) -> Service:
    return Service(name, [PYTHON, str(Path(__file__).resolve()), "--serve", transport])


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    exit_on_signals()
    if args.serve:
        run_async(serve(args.serve))
        return 0
    names = {"HTTP/1.1": "http", "gRPC": "grpc"}
    if plan.channels > 1:
        names[f"gRPC, {plan.channels} channels"] = "grpc"
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(running(start_server(n, t))) for n, t in names.items()}
        ports = {
            n: (int(s.wait_for_line(PORT_LINE, START_TIMEOUT).group(1)), s.pid)
            for n, s in servers.items()
        }
        results = run_async(measure(plan, ports))
    text = report(plan, results)
    print("\n" + text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
        sys.exit(130)
