"""State API throughput and latency: daprlite (HTTP and gRPC) against a hand-written handler.

    .venv/bin/python bench/state_bench.py            # full run (several minutes)
    .venv/bin/python bench/state_bench.py --quick    # a smoke run (well under a minute)

Starts a real ``daprlite run`` sidecar (a ``state.redis`` store named
``statestore``) and ``bench/baseline_server.py`` (the same HTTP routes and gRPC
calls, hand-written straight on the same Redis) as child processes, seeds
keys, then drives both from this process with aiohttp, the official SDK's gRPC
stub and redis-py (the "direct Redis" floor). For every scenario (GET or SAVE,
at each concurrency) every target gets the same request count per round, and
within a round the targets take turns slice by slice in a rotating order, so
noise on this shared machine hits all of them. Ratios are taken per round; the
report quotes medians over rounds, with the CPU time per request of each
server, of Redis and of this process. ``--daprlite-src`` measures another tree
(e.g. a ``git archive`` snapshot); ``--candidate-src`` adds a second sidecar
from a patched tree to the same rounds. The children are stopped and the
seeded keys deleted on exit, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import grpc
import redis
from redis.asyncio import Redis

from _harness import (
    BENCH_DIR,
    PORTS_LINE,
    PYTHON,
    Service,
    component_manifest,
    daprlite_env,
    daprlite_source,
    exit_on_signals,
    machine_notes,
    markdown_table,
    median,
    percentiles,
    resolved_daprlite,
    run_async,
    running,
    wait_http,
)
from _load import (
    GrpcTarget,
    HttpTarget,
    RedisTarget,
    RoundResult,
    Target,
    encoded_value,
    key_name,
    rotated,
    run_round,
)

APP_ID = "bench"
BASELINE_PREFIX = "bench-baseline"
DIRECT_PREFIX = "bench-direct"
DAPRLITE_HTTP = "daprlite HTTP"
BASELINE_HTTP = "baseline HTTP"
DAPRLITE_GRPC = "daprlite gRPC"
BASELINE_GRPC = "baseline gRPC"
CANDIDATE_HTTP = "candidate HTTP"  # --candidate-src: a second sidecar, e.g. a patched tree
CANDIDATE_GRPC = "candidate gRPC"
DIRECT_REDIS = "direct Redis"
BASELINE_PORT_LINE = re.compile(r"Baseline HTTP Port: (\d+)\. gRPC Port: (\d+)")
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    requests: int  # per round and target
    slice: int  # requests per slice; a round alternates targets slice by slice
    rounds: int
    warmup: int  # requests per target before each scenario's first round, not measured
    concurrencies: tuple[int, ...]
    ops: tuple[str, ...]
    keys: int
    round_time_limit: float  # seconds per target; a round stops early when it is reached


@dataclass(frozen=True, slots=True)
class Summary:
    """One target in one scenario: medians over rounds."""

    target: str
    throughput: float
    p50: float
    p90: float
    p99: float
    requests: int
    server_cpu_us: float  # per request, of the target's server process (0: none)
    redis_cpu_us: float
    client_cpu_us: float


def summarise(rounds: Sequence[RoundResult]) -> Summary:
    pcts = [percentiles(r.latencies_ms) for r in rounds]
    return Summary(
        target=rounds[0].target,
        throughput=median([r.throughput for r in rounds]),
        p50=median([p.p50 for p in pcts]),
        p90=median([p.p90 for p in pcts]),
        p99=median([p.p99 for p in pcts]),
        requests=sum(r.requests for r in rounds),
        server_cpu_us=median([r.cpu_us(r.server_cpu_s) for r in rounds]),
        redis_cpu_us=median([r.cpu_us(r.redis_cpu_s) for r in rounds]),
        client_cpu_us=median([r.cpu_us(r.client_cpu_s) for r in rounds]),
    )


def throughput_ratio(subject: Sequence[RoundResult], base: Sequence[RoundResult]) -> float:
    """Median over rounds of subject/base req/s; rounds of one index ran interleaved."""
    return median([s.throughput / b.throughput for s, b in zip(subject, base, strict=True)])


def server_cpu_ratio(subject: Sequence[RoundResult], base: Sequence[RoundResult]) -> float | None:
    """Median over rounds of subject/base server CPU per request; None without both."""
    pairs = [
        (s, b) for s, b in zip(subject, base, strict=True) if s.server_cpu_s and b.server_cpu_s
    ]
    if not pairs:
        return None
    return median([s.cpu_us(s.server_cpu_s) / b.cpu_us(b.server_cpu_s) for s, b in pairs])


def added_p50(subject: Sequence[RoundResult], base: Sequence[RoundResult]) -> float:
    """Median over rounds of (subject p50 - base p50), in ms."""
    return median(
        [
            percentiles(s.latencies_ms).p50 - percentiles(b.latencies_ms).p50
            for s, b in zip(subject, base, strict=True)
        ]
    )


# -- set-up ----------------------------------------------------------------------------
def seed(client: redis.Redis, keys: int) -> list[str]:
    """Write every key under the three prefixes; returns the stored keys (to delete later)."""
    stored = []
    pipe = client.pipeline(transaction=False)
    for prefix in (APP_ID, BASELINE_PREFIX, DIRECT_PREFIX):
        for i in range(keys):
            key = f"{prefix}||{key_name(i)}"
            pipe.delete(key)
            pipe.hset(key, mapping={"data": encoded_value(i), "version": 1})
            stored.append(key)
    pipe.execute()
    return stored


def start_sidecar(workdir: Path, redis_address: str, source: Path | None) -> Service:
    resources = workdir / "resources"
    resources.mkdir(parents=True)
    (resources / "statestore.yaml").write_text(
        component_manifest("statestore", "state.redis", {"redisHost": redis_address}),
        encoding="utf-8",
    )
    args = [PYTHON, "-m", "daprlite", "run", "--app-id", APP_ID, "-d", str(resources)]
    # cwd: `python -m` puts it first on sys.path, so it must hold no daprlite folder.
    return Service(
        "daprlite", [*args, "--log-level", "warn"], sidecar_env(workdir, source), workdir
    )


def sidecar_env(workdir: Path, source: Path | None) -> dict[str, str]:
    return daprlite_env(source=source, DAPRLITE_HOME=str(workdir / "home"))


def start_baseline(redis_address: str) -> Service:
    args = [PYTHON, str(BENCH_DIR / "baseline_server.py"), "--port", "0", "--grpc-port", "0"]
    args += ["--redis", redis_address, "--prefix", BASELINE_PREFIX]
    return Service("baseline server", args)


def sidecar_ports(sidecar: Service) -> tuple[int, int]:
    """(HTTP, gRPC) ports the sidecar printed, once /v1.0/healthz answers 204."""
    line = sidecar.wait_for_line(PORTS_LINE, START_TIMEOUT)
    http_port, grpc_port = int(line.group(1)), int(line.group(2))
    wait_http(sidecar, http_port, "/v1.0/healthz", START_TIMEOUT, interval=0.05)
    return http_port, grpc_port


def local_redis_pid(client: redis.Redis) -> int | None:
    """redis-server's pid (INFO server), if that process is visible here; only read from."""
    pid = int(client.info("server").get("process_id", 0))
    return pid if pid and Path(f"/proc/{pid}/stat").exists() else None


# -- the measured part -----------------------------------------------------------------
Results = dict[tuple[str, int], dict[str, list[RoundResult]]]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the servers listen, and their pids (to measure their CPU time)."""

    sidecar_http: int
    sidecar_grpc: int
    sidecar_pid: int
    baseline_http: int
    baseline_grpc: int
    baseline_pid: int
    redis_pid: int | None  # from INFO server; None when unknown
    candidate_http: int = 0  # 0: no candidate sidecar
    candidate_grpc: int = 0
    candidate_pid: int = 0


async def measure(plan: Plan, at: Endpoints, redis_address: str) -> Results:
    host, _, port = redis_address.rpartition(":")
    timeout = aiohttp.ClientTimeout(total=10)
    limit = max(plan.concurrencies) * 2
    async with contextlib.AsyncExitStack() as stack:

        async def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(limit=limit)
            client = aiohttp.ClientSession(connector=connector, timeout=timeout)
            return await stack.enter_async_context(client)

        async def channel(port: int) -> grpc.aio.Channel:
            return await stack.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))

        def url(port: int) -> str:
            return f"http://127.0.0.1:{port}"

        direct = Redis(host=host, port=int(port), max_connections=limit, socket_timeout=10)
        stack.push_async_callback(direct.aclose)
        keys = plan.keys
        targets: list[Target] = [
            HttpTarget(DAPRLITE_HTTP, url(at.sidecar_http), await session(), keys, at.sidecar_pid),
            HttpTarget(
                BASELINE_HTTP, url(at.baseline_http), await session(), keys, at.baseline_pid
            ),
            GrpcTarget(DAPRLITE_GRPC, await channel(at.sidecar_grpc), keys, at.sidecar_pid),
            GrpcTarget(BASELINE_GRPC, await channel(at.baseline_grpc), keys, at.baseline_pid),
            RedisTarget(DIRECT_REDIS, direct, DIRECT_PREFIX, keys),
        ]
        if at.candidate_http:
            targets += [
                HttpTarget(
                    CANDIDATE_HTTP, url(at.candidate_http), await session(), keys, at.candidate_pid
                ),
                GrpcTarget(
                    CANDIDATE_GRPC, await channel(at.candidate_grpc), keys, at.candidate_pid
                ),
            ]
        results: Results = {}
        for op in plan.ops:
            for conc in plan.concurrencies:
                results[(op, conc)] = await scenario(plan, targets, op, conc, at.redis_pid)
        return results


async def scenario(
    plan: Plan, targets: list[Target], op: str, conc: int, redis_pid: int | None
) -> dict[str, list[RoundResult]]:
    """Warm up, then ``plan.rounds`` rounds; returns each target's rounds in order.

    A round is cut into slices of ``plan.slice`` requests, and the targets take
    turns slice by slice (in a rotating order), so a burst of load from
    elsewhere on the machine hits all of them rather than one.
    """
    print(f"\n{op.upper()} at concurrency {conc}:", flush=True)
    for target in targets:
        await run_round(target.name, getattr(target, op), plan.warmup, conc, plan.round_time_limit)
    out: dict[str, list[RoundResult]] = {t.name: [] for t in targets}
    slices = max(1, plan.requests // plan.slice)
    sizes = [
        plan.requests // slices + (1 if i < plan.requests % slices else 0) for i in range(slices)
    ]
    for r in range(plan.rounds):
        parts: dict[str, list[RoundResult]] = {t.name: [] for t in targets}
        deadline = time.perf_counter() + plan.round_time_limit * len(targets)
        done = r * plan.requests
        for i, size in enumerate(sizes):
            left = deadline - time.perf_counter()
            if left <= 0:
                print("  (round time limit reached; the round is cut short)", flush=True)
                break
            for target in rotated(targets, r * slices + i):
                parts[target.name].append(
                    await run_round(
                        target.name,
                        getattr(target, op),
                        size,
                        conc,
                        left,
                        first_index=done,
                        server_pid=target.server_pid,
                        redis_pid=redis_pid,
                    )
                )
            done += size
        merged = {name: merge(results) for name, results in parts.items()}
        for name, result in merged.items():
            out[name].append(result)
        cells = [f"{name} {res.throughput:6.0f}/s" for name, res in merged.items()]
        print(f"  round {r + 1}/{plan.rounds}: " + ", ".join(cells), flush=True)
    return out


def merge(parts: Sequence[RoundResult]) -> RoundResult:
    """One target's slices of a round as one result (time = the sum of its slices)."""
    return RoundResult(
        target=parts[0].target,
        requests=sum(p.requests for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_ms=tuple(ms for part in parts for ms in part.latencies_ms),
        server_cpu_s=sum(p.server_cpu_s for p in parts),
        redis_cpu_s=sum(p.redis_cpu_s for p in parts),
        client_cpu_s=sum(p.client_cpu_s for p in parts),
    )


# -- the report ------------------------------------------------------------------------
# (subject, reference): the comparisons the report lists for every scenario.
COMPARISONS = (
    (CANDIDATE_HTTP, DAPRLITE_HTTP),
    (CANDIDATE_GRPC, DAPRLITE_GRPC),
    (CANDIDATE_HTTP, BASELINE_HTTP),
    (CANDIDATE_GRPC, BASELINE_GRPC),
    (DAPRLITE_HTTP, BASELINE_HTTP),
    (DAPRLITE_GRPC, BASELINE_HTTP),
    (DAPRLITE_GRPC, BASELINE_GRPC),
    (BASELINE_GRPC, BASELINE_HTTP),
    (DAPRLITE_HTTP, DIRECT_REDIS),
    (DAPRLITE_GRPC, DIRECT_REDIS),
    (BASELINE_HTTP, DIRECT_REDIS),
)


def report(plan: Plan, results: Results, source: str) -> str:
    parts = [
        f"Machine: {machine_notes()}",
        f"daprlite measured: {source}",
        f"Plan: {plan.rounds} rounds x {plan.requests} requests per target and scenario "
        f"(+{plan.warmup} warm-up), {plan.keys} keys; within a round the targets take turns "
        f"every {plan.slice} requests, in a rotating order. "
        "Figures are medians over rounds; ratios and differences are taken per round "
        "(the targets of one round ran interleaved), then the median.",
        "",
    ]
    rows = []
    for (op, conc), by_target in results.items():
        for rounds in by_target.values():
            s = summarise(rounds)
            rows.append(
                [
                    op.upper(),
                    str(conc),
                    s.target,
                    f"{s.throughput:,.0f}",
                    f"{s.p50:.3f}",
                    f"{s.p90:.3f}",
                    f"{s.p99:.3f}",
                    f"{s.server_cpu_us:.0f}" if s.server_cpu_us else "—",
                    f"{s.redis_cpu_us:.0f}" if s.redis_cpu_us else "—",
                    f"{s.client_cpu_us:.0f}",
                ]
            )
    header = ["op", "conc", "target", "req/s", "p50 ms", "p90 ms", "p99 ms"]
    header += ["server CPU µs/req", "Redis CPU µs/req", "load-gen CPU µs/req"]
    parts += [markdown_table(header, rows), ""]
    rows = []
    for (op, conc), by_target in results.items():
        for subject, reference in COMPARISONS:
            if subject in by_target and reference in by_target:
                subj, ref = by_target[subject], by_target[reference]
                cpu = server_cpu_ratio(subj, ref)
                rows.append(
                    [
                        op.upper(),
                        str(conc),
                        f"{subject} / {reference}",
                        f"{throughput_ratio(subj, ref):.2f}×",
                        f"{added_p50(subj, ref):+.3f}",
                        "—" if cpu is None else f"{cpu:.2f}×",
                    ]
                )
    header = ["op", "conc", "subject / reference", "req/s ratio", "added p50 ms"]
    header.append("server CPU/req ratio")
    parts += [markdown_table(header, rows), "", targets_verdict(plan, results)]
    return "\n".join(parts)


def targets_verdict(plan: Plan, results: Results) -> str:
    lines = ["Targets (issue):"]
    low, high = min(plan.concurrencies), max(plan.concurrencies)
    pairs = [(DAPRLITE_HTTP, BASELINE_HTTP), (DAPRLITE_GRPC, BASELINE_GRPC)]
    pairs += [(CANDIDATE_HTTP, BASELINE_HTTP), (CANDIDATE_GRPC, BASELINE_GRPC)]
    if ("get", high) in results:
        got = results[("get", high)]
        for subject in (DAPRLITE_HTTP, CANDIDATE_HTTP):
            if subject not in got:
                continue
            ratio = throughput_ratio(got[subject], got[BASELINE_HTTP])
            verdict = "MET" if ratio >= 0.8 else f"MISSED: {ratio / 0.8:.0%} of the target"
            lines.append(
                f"- HTTP GET throughput at concurrency {high}, {subject}: {ratio:.2f}× the "
                f"hand-written handler (target ≥ 0.80×): {verdict}"
            )
    for op in plan.ops:
        if (op, low) not in results:
            continue
        got = results[(op, low)]
        for subject, reference in pairs:
            if subject not in got:
                continue
            plus = added_p50(got[subject], got[reference])
            verdict = "MET" if plus <= 0.4 else f"MISSED by {plus - 0.4:.3f} ms"
            lines.append(
                f"- added p50 at concurrency {low}, {op.upper()}, {subject} vs {reference}: "
                f"{plus:+.3f} ms (target ≤ 0.4 ms): {verdict}"
            )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(description="daprlite state API benchmark (see bench/README.md)")
    p.add_argument("--quick", action="store_true", help="few requests and rounds: a smoke run")
    p.add_argument("--requests", type=int, help="requests per round and target (default 2000)")
    p.add_argument("--rounds", type=int, help="rounds per scenario (default 5)")
    p.add_argument(
        "--slice", type=int, help="requests per slice of a round (default 250; --quick 100)"
    )
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    p.add_argument("--ops", nargs="+", choices=["get", "save"], default=["get", "save"])
    p.add_argument("--keys", type=int, default=1000, help="distinct keys (default 1000)")
    p.add_argument("--redis", default="127.0.0.1:6379", help="host:port (127.0.0.1 only)")
    p.add_argument("--round-time-limit", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--daprlite-src", type=Path, help="run the sidecar from this tree (default: the install)"
    )
    p.add_argument(
        "--candidate-src",
        type=Path,
        help="also run a second sidecar from this tree (e.g. a patched copy) as 'candidate'",
    )
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    p.add_argument("--json", type=Path, help="write per-round raw figures here")
    args = p.parse_args(argv)
    if not args.redis.startswith("127.0.0.1:"):
        p.error("--redis must be 127.0.0.1:PORT: load only goes to this machine")
    requests = args.requests or (300 if args.quick else 2000)
    plan = Plan(
        requests=requests,
        slice=args.slice or (100 if args.quick else 250),
        rounds=args.rounds or (2 if args.quick else 5),
        warmup=min(200, requests),
        concurrencies=tuple(args.concurrency),
        ops=tuple(args.ops),
        keys=args.keys,
        round_time_limit=args.round_time_limit,
    )
    return plan, args


def raw_json(results: Results) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for (op, conc), by_target in results.items():
        for name, rounds in by_target.items():
            for i, r in enumerate(rounds):
                p = percentiles(r.latencies_ms)
                out.append(
                    {
                        "op": op,
                        "concurrency": conc,
                        "target": name,
                        "round": i,
                        "requests": r.requests,
                        "seconds": r.seconds,
                        "req_per_s": r.throughput,
                        "p50_ms": p.p50,
                        "p90_ms": p.p90,
                        "p99_ms": p.p99,
                        "server_cpu_s": r.server_cpu_s,
                        "redis_cpu_s": r.redis_cpu_s,
                        "client_cpu_s": r.client_cpu_s,
                    }
                )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    plan, args = parse_args(argv)
    exit_on_signals()
    host, _, port = args.redis.rpartition(":")
    sync_redis = redis.Redis(host=host, port=int(port), socket_timeout=10)
    try:
        sync_redis.ping()
    except redis.RedisError as exc:
        print(f"Redis at {args.redis} is not reachable: {exc}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        stack.callback(sync_redis.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daprlite-bench-")))
        source = daprlite_source(
            args.daprlite_src, resolved_daprlite(sidecar_env(workdir, args.daprlite_src), workdir)
        )
        if args.candidate_src:
            env = sidecar_env(workdir, args.candidate_src)
            source += f"; candidate: {args.candidate_src} (children import "
            source += f"{resolved_daprlite(env, workdir)})"
        stored = seed(sync_redis, plan.keys)
        stack.callback(lambda: sync_redis.delete(*stored))
        sidecar = stack.enter_context(
            running(start_sidecar(workdir, args.redis, args.daprlite_src))
        )
        baseline = stack.enter_context(running(start_baseline(args.redis)))
        candidate = None
        if args.candidate_src:
            service = start_sidecar(workdir / "candidate", args.redis, args.candidate_src)
            candidate = stack.enter_context(running(service))
        http_port, grpc_port = sidecar_ports(sidecar)
        base = baseline.wait_for_line(BASELINE_PORT_LINE, START_TIMEOUT)
        at = Endpoints(
            sidecar_http=http_port,
            sidecar_grpc=grpc_port,
            sidecar_pid=sidecar.pid,
            baseline_http=int(base.group(1)),
            baseline_grpc=int(base.group(2)),
            baseline_pid=baseline.pid,
            redis_pid=local_redis_pid(sync_redis),
        )
        if candidate is not None:
            cand_http, cand_grpc = sidecar_ports(candidate)
            at = replace(
                at, candidate_http=cand_http, candidate_grpc=cand_grpc, candidate_pid=candidate.pid
            )
        print(at, flush=True)
        results = run_async(measure(plan, at, args.redis))
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
        sys.exit(130)
