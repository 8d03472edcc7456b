"""Sidecar start-to-ready time and idle memory, against the floor of any Python sidecar.

    .venv/bin/python bench/startup_bench.py [--runs 10] [--quick]

With ``DAPRLITE_HOME`` in a temporary folder, ``daprlite init`` writes the
embedded defaults (a ``state.sqlite`` store); then each run launches
``python -m daprlite run --app-id s -d <home>/components`` on a free port and
measures from spawn to the first 204 of ``/v1.0/healthz`` (polled every 2 ms),
then reads the sidecar's VmRSS after 2 s idle, then stops it (SIGTERM) and
times the shutdown. In the same run, interleaved: the time for
``python -c "import aiohttp, grpc"`` to start and exit (the floor of any
Python sidecar on these libraries), and the start-to-ready time and idle RSS
of ``bench/baseline_server.py`` (aiohttp + redis-py, no gRPC). After the runs:
where start-up time goes (``-X importtime``, summed by top-level package) and
the RSS of a bare interpreter after importing each dependency.

Bytecode: an installed wheel ships (or compiles on install) its ``.pyc``
files, but an editable install run with ``PYTHONDONTWRITEBYTECODE=1`` (as in
this repo's dev environment) compiles every daprlite module from source on
each start. So every child runs with a bytecode cache in a temporary
``PYTHONPYCACHEPREFIX`` (filled by the warm-up; nothing is written to the
source tree), and the sidecar is also timed with the environment exactly as
inherited, as a separate row.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    BENCH_DIR,
    PYTHON,
    Service,
    child_env,
    daprlite_env,
    daprlite_source,
    exit_on_signals,
    free_port,
    machine_notes,
    markdown_table,
    median,
    resolved_daprlite,
    wait_http,
)

READY_TIMEOUT = 30.0
IDLE_SECONDS = 2.0
RSS_SCRIPT = (
    "import sys\n"
    "for name in sys.argv[1:]: __import__(name)\n"
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))\n"
)
# What a bare interpreter holds after importing each of these (KiB of VmRSS).
RSS_IMPORT_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("uvloop",),
    ("yaml",),
    ("redis.asyncio",),
    ("grpc",),
    ("grpc", "google.protobuf"),
    ("aiohttp",),
    ("aiohttp", "grpc"),
    ("aiohttp", "redis.asyncio", "uvloop"),
    ("aiohttp", "grpc", "yaml", "uvloop"),
    ("daprlite.cli.main",),
    ("daprlite.cli.main", "daprlite.components.state.sqlite"),
)


@dataclass(frozen=True, slots=True)
class Launch:
    ready_s: float
    rss_kib: int
    stop_s: float


@dataclass(frozen=True, slots=True)
class Measured:
    """Every measured run, by kind (lists filled in run order)."""

    sidecar: list[Launch]
    baseline: list[Launch]
    floor: list[float]
    uncached: list[Launch]  # the sidecar with the environment as inherited


@dataclass(frozen=True, slots=True)
class Home:
    root: Path  # DAPRLITE_HOME, and the bytecode cache under it
    components: Path
    source: Path | None  # --daprlite-src

    def env(self, cached: bool = True) -> dict[str, str]:
        """A daprlite child's environment: DAPRLITE_HOME, the source tree, the bytecode cache."""
        base = cached_env(self.root) if cached else None
        return daprlite_env(base, self.source, DAPRLITE_HOME=str(self.root))


def cached_env(root: Path) -> dict[str, str]:
    """os.environ, with .pyc files read from and written to a cache under ``root``."""
    env = {k: v for k, v in child_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def make_home(root: Path, source: Path | None) -> Home:
    home = Home(root, root / "components", source)
    subprocess.run(
        [PYTHON, "-m", "daprlite", "init"],
        env=home.env(),
        cwd=root,  # never a folder holding daprlite: `python -m` puts it first on sys.path
        check=True,
        capture_output=True,
        timeout=60,
    )
    return home


def launch(
    name: str, args: Sequence[str], port: int, env: dict[str, str] | None, cwd: Path
) -> Launch:
    """Spawn, poll /v1.0/healthz until 204, idle, read VmRSS, stop."""
    start = time.perf_counter()
    service = Service(name, args, env=env, cwd=cwd)
    try:
        ready = wait_http(service, port, "/v1.0/healthz", READY_TIMEOUT) - start
        time.sleep(IDLE_SECONDS)
        rss = service.rss_kib()
    finally:
        stop = service.stop()
    if service.proc.returncode not in (0, -15):
        raise RuntimeError(
            f"{name} exited with code {service.proc.returncode}; its output:\n{service.output()}"
        )
    return Launch(ready, rss, stop)


def sidecar_args(home: Home, port: int) -> list[str]:
    return [PYTHON, "-m", "daprlite", "run", "--app-id", "s", "-d", str(home.components),
            "-H", str(port)]  # fmt: skip


def run_sidecar(home: Home, cached: bool = True) -> Launch:
    port = free_port()
    return launch("daprlite", sidecar_args(home, port), port, home.env(cached), home.root)


def run_baseline_server(home: Home) -> Launch:
    port = free_port()
    args = [PYTHON, str(BENCH_DIR / "baseline_server.py"), "--port", str(port)]
    return launch("baseline server", args, port, cached_env(home.root), home.root)


def run_import_floor(home: Home) -> float:
    env = cached_env(home.root)
    start = time.perf_counter()
    subprocess.run(
        [PYTHON, "-c", "import aiohttp, grpc"], check=True, timeout=60, env=env, cwd=home.root
    )
    return time.perf_counter() - start


def rss_after_import(home: Home, modules: Sequence[str]) -> int:
    out = subprocess.run(
        [PYTHON, "-c", RSS_SCRIPT, *modules],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env=home.env(),
        cwd=home.root,
    )
    return int(out.stdout.strip())


# -- where start-up time goes -----------------------------------------------------------
IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


def import_profile(home: Home) -> tuple[dict[str, float], dict[str, float]]:
    """One sidecar start under ``-X importtime``.

    Returns (self ms summed per top-level package, self ms per daprlite module).
    """
    port = free_port()
    args = [PYTHON, "-X", "importtime", *sidecar_args(home, port)[1:]]
    service = Service("daprlite -X importtime", args, env=home.env(), cwd=home.root)
    try:
        wait_http(service, port, "/v1.0/healthz", READY_TIMEOUT)
    finally:
        service.stop()
    by_package: dict[str, float] = defaultdict(float)
    own: dict[str, float] = {}
    for line in service.lines:
        m = IMPORTTIME_LINE.search(line)
        if not m:
            continue
        self_ms, module = int(m.group(1)) / 1000, m.group(4)
        by_package[module.split(".")[0]] += self_ms
        if module.startswith("daprlite"):
            own[module] = self_ms
    return dict(by_package), own


def top(values: dict[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda kv: -kv[1])[:n]


# -- main ------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def stats_row(label: str, values: Sequence[float], fmt: Callable[[float], str]) -> list[str]:
    return [label, fmt(median(values)), fmt(min(values)), fmt(max(values))]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="daprlite start-up and idle-memory benchmark")
    p.add_argument("--runs", type=int, help="measured runs (default 10; --quick 3)")
    p.add_argument("--quick", action="store_true", help="3 runs and no import profile")
    p.add_argument(
        "--daprlite-src", type=Path, help="run the sidecar from this tree (default: the install)"
    )
    p.add_argument("--output", type=Path, help="also write the markdown report here")
    args = p.parse_args(argv)
    runs = args.runs or (3 if args.quick else 10)
    exit_on_signals()

    measured = Measured([], [], [], [])
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="daprlite-start-")))
        home = make_home(root, args.daprlite_src)
        # Warm-up: fills the bytecode cache, creates the SQLite file, warms the page cache.
        first = run_sidecar(home)
        run_import_floor(home)
        run_baseline_server(home)
        print(
            f"warm-up: sidecar ready in {ms(first.ready_s)} ms (compiles, creates the SQLite file)"
        )
        steps: list[Callable[[], None]] = [
            lambda: measured.sidecar.append(run_sidecar(home)),
            lambda: measured.floor.append(run_import_floor(home)),
            lambda: measured.baseline.append(run_baseline_server(home)),
            lambda: measured.uncached.append(run_sidecar(home, cached=False)),
        ]
        for i in range(runs):
            n = i % len(steps)
            for step in steps[n:] + steps[:n]:  # rotate so no kind always goes first
                step()
            print(
                f"run {i + 1}/{runs}: sidecar ready {ms(measured.sidecar[-1].ready_s)} ms "
                f"(as inherited {ms(measured.uncached[-1].ready_s)} ms), "
                f"RSS {mib(measured.sidecar[-1].rss_kib)} MiB; "
                f"import floor {ms(measured.floor[-1])} ms; "
                f"baseline server ready {ms(measured.baseline[-1].ready_s)} ms, "
                f"RSS {mib(measured.baseline[-1].rss_kib)} MiB",
                flush=True,
            )
        profile = None if args.quick else import_profile(home)
        source = daprlite_source(args.daprlite_src, resolved_daprlite(home.env(), home.root))
        rss_rows = [
            [
                ", ".join(mods) or "(bare interpreter)",
                mib(median([rss_after_import(home, mods) for _ in range(3)])),
            ]
            for mods in RSS_IMPORT_SETS
        ]
    text = report(runs, measured, rss_rows, profile, source)
    print("\n" + text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


def report(
    runs: int,
    measured: Measured,
    rss_rows: list[list[str]],
    profile: tuple[dict[str, float], dict[str, float]] | None,
    source: str,
) -> str:
    sidecar, baseline = measured.sidecar, measured.baseline
    time_rows = [
        stats_row("daprlite run: spawn → /v1.0/healthz 204", [s.ready_s for s in sidecar], ms),
        stats_row(
            "daprlite run, environment as inherited (see the note on bytecode)",
            [s.ready_s for s in measured.uncached],
            ms,
        ),
        stats_row('floor: python -c "import aiohttp, grpc" (spawn → exit)', measured.floor, ms),
        stats_row(
            "baseline_server.py: spawn → /v1.0/healthz 204", [b.ready_s for b in baseline], ms
        ),
        stats_row("daprlite run: SIGTERM → exit (idle)", [s.stop_s for s in sidecar], ms),
    ]
    rss_table = [
        stats_row("daprlite run (state.sqlite), idle 2 s", [s.rss_kib for s in sidecar], mib),
        stats_row(
            "baseline_server.py (aiohttp + redis-py), idle 2 s", [b.rss_kib for b in baseline], mib
        ),
    ]
    ready = median([s.ready_s for s in sidecar])
    rss = median([s.rss_kib for s in sidecar]) / 1024
    parts = [
        f"Machine: {machine_notes()}",
        f"daprlite measured: {source}",
        f"{runs} measured runs (after one warm-up), interleaved in rotating order; children "
        f"use a bytecode cache unless the row says otherwise (PYTHONDONTWRITEBYTECODE is "
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')} in the inherited environment).",
        "",
        markdown_table(["start-up", "median ms", "min ms", "max ms"], time_rows),
        "",
        markdown_table(["idle VmRSS", "median MiB", "min MiB", "max MiB"], rss_table),
        "",
        "Targets (issue):",
        f"- start to ready ≤ 300 ms: {ready * 1000:.0f} ms: "
        + ("MET" if ready <= 0.3 else f"MISSED by {ready * 1000 - 300:.0f} ms"),
        f"- idle RSS ≤ 45 MB: {rss:.1f} MiB ({rss * 1.048576:.1f} MB): "
        + ("MET" if rss * 1.048576 <= 45 else f"MISSED by {rss * 1.048576 - 45:.1f} MB"),
        "",
        "VmRSS of a bare interpreter after importing (median of 3):",
        "",
        markdown_table(["imports", "MiB"], rss_rows),
    ]
    if profile is not None:
        by_package, own = profile
        parts += [
            "",
            "Where start-up time goes (one run under -X importtime; self time summed per "
            "top-level package; importtime inflates every figure a little):",
            "",
            markdown_table(
                ["package", "import ms"], [[k, f"{v:.1f}"] for k, v in top(by_package, 12)]
            ),
            "",
            markdown_table(
                ["daprlite module", "self import ms"], [[k, f"{v:.1f}"] for k, v in top(own, 8)]
            ),
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: everything this benchmark started was stopped", file=sys.stderr)
        sys.exit(130)
