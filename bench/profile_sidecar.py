"""Where a state request's time goes: py-spy samples of the sidecar (or baseline) under load.

    .venv/bin/pip install py-spy         # once; py-spy needs ptrace (root here)
    .venv/bin/python bench/profile_sidecar.py [--target daprlite|baseline]
                                             [--op get|save] [--transport http|grpc]

Starts the server like ``state_bench.py`` does, seeds keys, attaches
``py-spy record --format raw`` to the server process, sends a bounded load
from this process (default: 20,000 HTTP GETs at concurrency 16) and stops
py-spy. Idle samples (the loop waiting in epoll) are left out by py-spy, so
the shares below are shares of the server's busy CPU time. The report lists
the share per library (by the innermost frame), the hottest functions, and
daprlite's own functions by inclusive and self share. The raw stacks stay in
``--raw`` for a flame graph (``flamegraph.pl`` or speedscope).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import grpc
import redis

from _harness import (
    PORTS_LINE,
    Service,
    daprlite_source,
    exit_on_signals,
    markdown_table,
    resolved_daprlite,
    run_async,
    running,
    wait_http,
)
from _load import GrpcTarget, HttpTarget, Target, run_round
from state_bench import (
    BASELINE_PORT_LINE,
    START_TIMEOUT,
    seed,
    sidecar_env,
    start_baseline,
    start_sidecar,
)

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
LIBRARIES = ("daprlite", "aiohttp", "redis", "grpc", "asyncio", "uvloop", "json", "multidict",
             "yarl", "google", "logging", "dataclasses", "enum")  # fmt: skip


def library(file: str) -> str:
    head = file.replace("\\", "/").lstrip("<").split("/")[0]
    for name in LIBRARIES:
        if head == name or head.startswith(name + "."):
            return name
    return "other (stdlib, C, …)" if head else "other"


def parse_raw(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) stacks: ``frame;frame;... count``, outermost first."""
    stacks = []
    for line in text.splitlines():
        body, _, count = line.rpartition(" ")
        if not body or not count.isdigit():
            continue
        frames = []
        for raw in body.split(";"):
            m = FRAME.match(raw)
            frames.append((m.group("func"), m.group("file")) if m else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def is_main_thread(frames: list[tuple[str, str]]) -> bool:
    """Other threads (grpc.aio's poller) start in threading's bootstrap."""
    return not frames or frames[0][1] != "threading.py"


def analyse(
    stacks: list[tuple[list[tuple[str, str]], int]], top_n: int, rate: int, requests: int
) -> str:
    main = [(frames, n) for frames, n in stacks if is_main_thread(frames)]
    others = sum(n for frames, n in stacks if not is_main_thread(frames))
    total = sum(n for _, n in main)
    if total == 0:
        return "py-spy recorded no busy samples of the main thread (was the load sent?)"
    by_lib: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    own_incl: Counter[str] = Counter()
    own_self: Counter[str] = Counter()
    for frames, n in main:
        func, file = frames[-1]
        by_lib[library(file)] += n
        leaf[f"{func} ({file})"] += n
        own = [f"{fn} ({fl})" for fn, fl in frames if fl.startswith("daprlite/")]
        for name in set(own):
            own_incl[name] += n
        if file.startswith("daprlite/"):
            own_self[f"{func} ({file})"] += n

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%"

    cpu_ms = 1000 * total / rate / requests
    parts = [
        f"{total} busy samples of the event-loop thread = about {cpu_ms:.3f} ms of its CPU per "
        f"request; {others} more samples in other threads (grpc.aio's poller thread, which "
        "py-spy counts as busy even when it only waits), left out below.",
        "",
        "Share of the event-loop thread's busy time by library (innermost frame):",
        "",
        markdown_table(["library", "share"], [[k, pct(v)] for k, v in by_lib.most_common()]),
        "",
        f"Hottest functions (self time, top {top_n}):",
        "",
        markdown_table(["function", "self"], [[k, pct(v)] for k, v in leaf.most_common(top_n)]),
    ]
    if own_incl:
        parts += [
            "",
            f"daprlite's own functions, inclusive (top {top_n}):",
            "",
            markdown_table(
                ["function", "inclusive"], [[k, pct(v)] for k, v in own_incl.most_common(top_n)]
            ),
            "",
            "daprlite's own functions, self time:",
            "",
            markdown_table(
                ["function", "self"], [[k, pct(v)] for k, v in own_self.most_common(top_n)]
            ),
        ]
    return "\n".join(parts)


async def load(target: Target, op: str, requests: int, concurrency: int) -> float:
    result = await run_round(target.name, getattr(target, op), requests, concurrency, 120.0)
    return result.throughput


async def drive(args: argparse.Namespace, http_port: int, grpc_port: int, keys: int) -> float:
    if args.transport == "grpc":
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            return await load(
                GrpcTarget(args.target, channel, keys), args.op, args.requests, args.concurrency
            )
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        target = HttpTarget(args.target, f"http://127.0.0.1:{http_port}", session, keys)
        return await load(target, args.op, args.requests, args.concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="py-spy profile of a state server under load")
    p.add_argument("--target", choices=["daprlite", "baseline"], default="daprlite")
    p.add_argument("--op", choices=["get", "save"], default="get")
    p.add_argument("--transport", choices=["http", "grpc"], default="http")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--daprlite-src", type=Path, help="run the sidecar from this tree")
    p.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--redis", default="127.0.0.1:6379")
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    exit_on_signals()
    host, _, port = args.redis.rpartition(":")
    sync_redis = redis.Redis(host=host, port=int(port), socket_timeout=10)
    with contextlib.ExitStack() as stack:
        stack.callback(sync_redis.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daprlite-prof-")))
        env = sidecar_env(workdir, args.daprlite_src)
        source = daprlite_source(args.daprlite_src, resolved_daprlite(env, workdir))
        stored = seed(sync_redis, args.keys)
        stack.callback(lambda: sync_redis.delete(*stored))
        if args.target == "daprlite":
            server = stack.enter_context(
                running(start_sidecar(workdir, args.redis, args.daprlite_src))
            )
            m = server.wait_for_line(PORTS_LINE, START_TIMEOUT)
            wait_http(server, int(m.group(1)), "/v1.0/healthz", START_TIMEOUT, interval=0.05)
        else:
            server = stack.enter_context(running(start_baseline(args.redis)))
            m = server.wait_for_line(BASELINE_PORT_LINE, START_TIMEOUT)
        http_port, grpc_port = int(m.group(1)), int(m.group(2))
        raw = args.raw or workdir / "stacks.txt"
        spy_args = [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--function",
                    "--rate", str(args.rate), "--output", str(raw)]  # fmt: skip
        spy = stack.enter_context(running(Service("py-spy", spy_args)))
        spy.wait_for_line(re.compile(r"Sampling process"), 10)
        throughput = run_async(drive(args, http_port, grpc_port, args.keys))
        spy.proc.send_signal(signal.SIGINT)  # py-spy writes the file on SIGINT
        try:
            spy.proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"py-spy did not stop:\n{spy.output()}", file=sys.stderr)
        if not raw.exists():
            print(f"py-spy wrote nothing; its output:\n{spy.output()}", file=sys.stderr)
            return 1
        stacks = parse_raw(raw.read_text(encoding="utf-8"))
    header = (
        f"daprlite measured: {source}\n\n"
        f"Profile of {args.target}: {args.requests} {args.transport.upper()} {args.op.upper()} "
        f"requests at concurrency {args.concurrency}, {throughput:,.0f} req/s while sampled "
        f"at {args.rate} Hz (sampling slows the server a little)."
    )
    text = header + "\n\n" + analyse(stacks, args.top, args.rate, args.requests)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
        sys.exit(130)
