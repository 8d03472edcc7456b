"""Start real ``daprlite`` processes for integration tests.

A :class:`SidecarProcess` runs ``python -m daprlite run`` on free ports (the
sidecar picks them and prints them, as ``dapr run`` does), waits until the
APIs answer, and is always stopped by the test that started it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A port that was free a moment ago (for an app the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


PORTS_LINE = re.compile(r"HTTP Port: (\d+)\. gRPC Port: (\d+)")


class SidecarProcess:
    def __init__(
        self,
        resources: Sequence[Path],
        app_id: str,
        home: Path,
        extra_args: Sequence[str] = (),
        command: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        args = [sys.executable, "-m", "daprlite", "run", "--app-id", app_id]
        for r in resources:
            args += ["--resources-path", str(r)]
        args += list(extra_args)
        if command:
            args += ["--", *command]
        full_env = {**os.environ, "DAPRLITE_HOME": str(home), **(env or {})}
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            text=True,
        )
        self.lines: list[str] = []
        self.http_port = 0
        self.grpc_port = 0
        self._ports_seen = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = PORTS_LINE.search(line)
            if m:
                self.http_port, self.grpc_port = int(m.group(1)), int(m.group(2))
                self._ports_seen.set()
        self._ports_seen.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout: float = 30.0) -> SidecarProcess:
        if not self._ports_seen.wait(timeout) or not self.http_port:
            self.stop()
            raise RuntimeError(f"sidecar did not start:\n{self.output}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.http}/v1.0/healthz/outbound", timeout=2) as r:
                    if r.status == 204:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sidecar never became healthy:\n{self.output}")

    def kill_hard(self) -> None:
        """SIGKILL the sidecar, as a crash would, and then its app, which would outlive it."""
        children: list[int] = []
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            children = [int(c) for c in text.split()]
        except OSError:
            pass
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
