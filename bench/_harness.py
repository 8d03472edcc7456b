"""Shared plumbing of the benchmarks: child processes, free ports, statistics, tables.

Nothing here is on daprlite's request path; the benchmark scripts in this
folder use it to start the servers they measure (and always stop them, also
on Ctrl-C, SIGTERM or an error), to poll health endpoints and to turn
latency samples into medians and percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PYTHON = sys.executable
PORTS_LINE = re.compile(r"HTTP Port: (\d+)\. gRPC Port: (\d+)")
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """An ephemeral port that was free a moment ago (the OS picks it; never 3500/50001)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Debug switches that would slow a child down; a benchmark never inherits them.
DEBUG_VARIABLES = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "DAPRLITE_SLOW_CALLBACK_MS")


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default os.environ) without the debug switches."""
    env = dict(os.environ if base is None else base)
    for name in DEBUG_VARIABLES:
        env.pop(name, None)
    return env


def daprlite_env(
    base: Mapping[str, str] | None = None, source: Path | None = None, **extra: str
) -> dict[str, str]:
    """Environment of a daprlite child; ``source`` (a checkout's root) goes first on PYTHONPATH.

    With ``source``, the child runs that tree's ``daprlite`` package instead of the
    editable install, e.g. a ``git archive`` snapshot of a commit, so a benchmark
    measures a fixed revision while the work tree is being edited.
    """
    env = child_env(base)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def resolved_daprlite(env: Mapping[str, str], cwd: Path) -> str:
    """The daprlite package a child started with ``env`` in ``cwd`` really imports.

    Children must run in a directory without a ``daprlite`` folder: ``python -m``
    puts the working directory first on sys.path, ahead of PYTHONPATH.
    """
    out = subprocess.run(
        [PYTHON, "-c", "import daprlite, os; print(os.path.dirname(daprlite.__file__))"],
        env=child_env(env), cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def daprlite_source(source: Path | None, resolved: str = "") -> str:
    """Where the measured daprlite comes from, for the report."""
    seen = f" (children import {resolved})" if resolved else ""
    if source is not None:
        return f"{source}{seen}"
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        rev = "unknown revision"
    return f"the editable install in {REPO_DIR} ({rev}){seen}"


def component_manifest(name: str, component_type: str, metadata: Mapping[str, str]) -> str:
    """A Component manifest, as daprlite.testing.component_yaml writes it.

    Written here so the load generator does not import daprlite (which may be
    mid-edit in the work tree while a snapshot is measured).
    """
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {component_type}",
        "  version: v1",
        "  metadata:",
    ]
    for key, value in metadata.items():
        lines += [f"  - name: {key}", f"    value: {json.dumps(value)}"]
    return "\n".join(lines) + "\n"


def run_async(coro: Coroutine[object, object, T]) -> T:
    """Run a coroutine on uvloop when it is installed, as ``daprlite run`` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def exit_on_signals() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM SystemExit, so every cleanup runs.

    SIGINT is set explicitly: a shell starts background jobs with SIGINT
    ignored, and Python keeps an inherited "ignore".
    """

    def on_sigterm(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)


class Service:
    """One child process whose combined stdout/stderr is drained by a thread.

    ``stop`` sends SIGTERM (both daprlite and the baseline server shut down
    gracefully on it), then SIGKILL if the process is still there after
    ``STOP_TIMEOUT`` seconds.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(env),
            cwd=cwd,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; raises if the process exits first."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited with code {self.proc.returncode} before printing "
                        f"a line matching {pattern.pattern!r}; its output:\n{self.output()}"
                    )
                if left <= 0:
                    raise RuntimeError(
                        f"{self.name} printed no line matching {pattern.pattern!r} within "
                        f"{timeout:.0f}s; its output:\n{self.output()}"
                    )
                self._changed.wait(min(left, 0.2))

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)

    def stop(self) -> float:
        """Stop the process; returns the seconds from SIGTERM to exit."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} ignored SIGTERM; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(5)
        took = time.perf_counter() - start
        self._reader.join(5)
        return took


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    """Stop ``service`` when the block exits, however it exits."""
    try:
        yield service
    finally:
        service.stop()


def rss_kib(pid: int) -> int:
    """VmRSS of a live process in KiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line (is the process a zombie?)")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (1/CLK_TCK resolution)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of one GET on 127.0.0.1; None while nothing listens on the port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_http(
    service: Service, port: int, path: str, timeout: float, interval: float = 0.002
) -> float:
    """Poll until ``path`` answers 204; returns perf_counter() at that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(port, path) == 204:
            return time.perf_counter()
        if service.proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {service.proc.returncode} before "
                f"{path} answered 204; its output:\n{service.output()}"
            )
        time.sleep(interval)
    raise RuntimeError(
        f"{service.name}: {path} did not answer 204 within {timeout:.0f}s; "
        f"its output:\n{service.output()}"
    )


# -- statistics -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p90: float
    p99: float


def percentiles(samples: Sequence[float]) -> Percentiles:
    """Nearest-rank percentiles of ``samples`` (any unit; needs at least one sample)."""
    if not samples:
        raise ValueError("percentiles of an empty sample")
    ordered = sorted(samples)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[index]

    return Percentiles(rank(50), rank(90), rank(99))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_notes() -> str:
    """One line describing the machine, for the header of a report."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {os.uname().release}, "
        f"Python {sys.version.split()[0]}, event loop {loop_name()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
