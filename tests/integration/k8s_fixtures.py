"""Playing the kubelet for tests that start sidecars from the injector's patch.

No cluster runs here, so these helpers do what the kubelet would: swap the
pod's fixed ports and listen addresses (every pod has its own network
namespace; this machine does not) and the sentry's in-cluster address for
local ones, resolve the ``fieldRef`` env vars, mount the projected token at a
temporary path, and run the container's args as a real ``daprlite`` process.
They also hand the sentry the CA the injector was configured to trust, through
the stand-in API server (``tests/k8sapi.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from daprlite.injector.patch import TOKEN_DIR
from daprlite.security.ca import CertificateAuthority
from tests.integration.harness import free_port
from tests.integration.sentry_process import SYSTEM_NAMESPACE
from tests.k8sapi import K8sAPI

TOKEN_FILE = f"{TOKEN_DIR}/token"


# The flags whose addresses are the pod's: its loopback (the public APIs, for the app) and
# its IP (the internal ports and the health-only public port, for other pods and the kubelet).
LISTEN_FLAGS = ("--dapr-listen-addresses", "--internal-listen-addresses")


def localize_args(
    args: list[str], values: Mapping[str, int | str], pod_ip: str = "127.0.0.1"
) -> list[str]:
    """The patch's args with the value of every flag in ``values`` replaced, nothing else.

    Pods have a network namespace each; here they share the host's. So, unless ``values``
    says otherwise, both listen-address flags become ``pod_ip`` (a loopback address that
    stands for the pod: its loopback and its IP at once), and ``--dapr-public-port`` and
    ``--metrics-port`` a free port each.
    """
    defaults: dict[str, int | str] = {flag: pod_ip for flag in LISTEN_FLAGS}
    for flag in ("--dapr-public-port", "--metrics-port"):
        if flag in args and flag not in values:
            defaults[flag] = free_port()
    values = {**defaults, **values}
    out: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        out.append(flag)
        if flag in values:
            out.append(str(values[flag]))
            i += 2
            continue
        i += 1
    return out


def resolve_env(
    env: list[dict[str, object]], field_values: Mapping[str, str], token_file: Path
) -> dict[str, str]:
    """The container's env as the kubelet hands it to the process.

    ``field_values`` maps each ``fieldRef.fieldPath`` to what the kubelet would
    resolve it to for this pod; the projected token file lives at ``token_file``.
    """
    out: dict[str, str] = {}
    for var in env:
        name = str(var["name"])
        if "valueFrom" in var:
            ref = var["valueFrom"]
            assert isinstance(ref, dict)
            out[name] = field_values[ref["fieldRef"]["fieldPath"]]
        else:
            out[name] = str(var["value"])
    # The projected volume is mounted at the path the patch names; here it lives in tmp.
    assert out["DAPRLITE_SENTRY_TOKEN_FILE"] == TOKEN_FILE
    out["DAPRLITE_SENTRY_TOKEN_FILE"] = str(token_file)
    return out


def supply_ca(api: K8sAPI, ca: CertificateAuthority) -> None:
    """Put ``ca`` (the injector's trust anchors) where ``daprlite sentry`` loads its CA from."""
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    api.put_secret(
        SYSTEM_NAMESPACE, "daprlite-trust-bundle", {"ca.crt": ca.cert_pem, "ca.key": key_pem}
    )


def outside_env() -> dict[str, str]:
    """This test process's env without anything a sidecar would read as its own settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KUBERNETES_", "DAPR_", "DAPRLITE_", "APP_"))
    }


@dataclass
class Container:
    """A ``daprlite`` process started from a container's args, with its output collected."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.reader is not None:
            self.reader.join(5)


def start_daprlite(args: list[str], env: Mapping[str, str]) -> Container:
    """``python -m daprlite <args>`` with exactly ``env``; stdout and stderr collected."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "daprlite", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        text=True,
    )
    container = Container(proc)

    def read() -> None:
        assert proc.stdout is not None
        container.lines.extend(line.rstrip("\n") for line in proc.stdout)

    container.reader = threading.Thread(target=read, daemon=True)
    container.reader.start()
    return container
