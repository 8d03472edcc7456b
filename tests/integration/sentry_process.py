"""Run ``daprlite sentry`` as a real process for tests, against the API stand-in.

The sentry keeps its CA in the Secret ``daprlite-system/daprlite-trust-bundle``
of the stand-in (``tests/k8sapi.py``) and writes the CA certificate to a file,
which tests use as the trust anchors of the sidecars they start.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import free_port, wait_for

SYSTEM_NAMESPACE = "daprlite-system"


@dataclass
class Sentry:
    proc: subprocess.Popen[str]
    port: int
    bundle_file: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.bundle_file))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sentry(
    tmp: Path,
    kubeconfig: Path,
    name: str,
    workload_ttl_seconds: int = 60,
    extra_args: tuple[str, ...] = (),
) -> Sentry:
    """A started ``daprlite sentry`` on a free port, talking to the stand-in via ``kubeconfig``."""
    port = free_port()
    bundle = tmp / f"{name}-ca.crt"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "DAPR"))},
        "KUBECONFIG": str(kubeconfig),
        "NAMESPACE": SYSTEM_NAMESPACE,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daprlite",
            "sentry",
            "--port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--workload-cert-ttl",
            f"{workload_ttl_seconds}s",
            "--trust-bundle-file",
            str(bundle),
            *extra_args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    sentry = Sentry(proc, port, bundle)

    def read() -> None:
        assert proc.stdout is not None
        sentry.lines.extend(line.rstrip("\n") for line in proc.stdout)

    threading.Thread(target=read, daemon=True).start()

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sentry exited:\n{sentry.output}")
        if not bundle.is_file():
            return False
        try:
            url = f"https://{sentry.address}/healthz"
            with urllib.request.urlopen(url, timeout=2, context=sentry.context()) as r:
                return bool(r.status == 204)
        except OSError:
            return False

    try:
        wait_for(healthy, 30, f"sentry {name} to serve /healthz")
    except BaseException:
        sentry.stop()
        raise
    return sentry
