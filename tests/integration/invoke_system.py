"""A small multi-app system for the service-invocation tests.

One caller sidecar (no app: the test plays the calling app) and callee
sidecars, each next to a real app, all sharing one run folder so they find
each other by app id:

- ``echo``: the HTTP echo app, with ``APP_API_TOKEN`` set;
- ``grpcapp``: the gRPC app built with ``dapr.ext.grpc``;
- ``retrying``, ``timed``, ``breaker``: the HTTP echo app under the app ids
  that the caller's Resiliency file targets with a retry, a timeout and a
  circuit-breaker policy;
- an ``external`` echo app with no sidecar at all, which the caller reaches by
  URL and through the HTTPEndpoint resource ``ext-api``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APPS = Path(__file__).parent / "apps"
HTTP_APP = [sys.executable, str(APPS / "invoke_http_app.py")]
GRPC_APP = [sys.executable, str(APPS / "invoke_grpc_app.py")]
APP_TOKEN = "app-token-for-tests"

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: invoke-tests
spec:
  policies:
    timeouts:
      fast: 300ms
    retries:
      on503:
        policy: constant
        duration: 20ms
        maxRetries: 3
        matching:
          httpStatusCodes: "503"
    circuitBreakers:
      trips:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      retrying:
        retry: on503
      timed:
        timeout: fast
      breaker:
        circuitBreaker: trips
"""


HTTP_ENDPOINT = """\
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: ext-api
spec:
  baseUrl: http://127.0.0.1:{port}/base
  headers:
    - name: x-api-key
      value: plain-value
    - name: x-from-env
      envRef: EXT_HEADER_VALUE
"""


@dataclass
class InvokeSystem:
    home: Path
    resources: Path
    caller: SidecarProcess
    external_port: int
    external: subprocess.Popen[bytes]
    callees: dict[str, SidecarProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.caller.http

    def stop(self) -> None:
        for proc in [self.caller, *self.callees.values()]:
            proc.stop()
        self.external.terminate()
        self.external.wait(10)


def start_callee(
    app_id: str,
    home: Path,
    resources: Path,
    grpc_app: bool = False,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> SidecarProcess:
    port = free_port()
    args = ["--app-port", str(port), *extra_args]
    if grpc_app:
        args += ["--app-protocol", "grpc"]
    return SidecarProcess(
        [resources],
        app_id=app_id,
        home=home,
        extra_args=args,
        command=GRPC_APP if grpc_app else HTTP_APP,
        env={"APP_PORT": str(port), **(env or {})},
    )


def wait_until_reachable(system: InvokeSystem, app_id: str, path: str = "healthz") -> None:
    """Until a call from the caller reaches the app (its sidecar registered, the app listens)."""
    wait_for(
        lambda: call("GET", f"{system.url}/v1.0/invoke/{app_id}/method/{path}").status < 500,
        30,
        f"app {app_id} reachable through the caller",
    )


def start_system(root: Path) -> InvokeSystem:
    home = root / "home"
    resources = root / "resources"
    resources.mkdir(parents=True)
    caller_resources = root / "caller-resources"
    caller_resources.mkdir()
    (caller_resources / "resiliency.yaml").write_text(RESILIENCY)
    external_port = free_port()
    (caller_resources / "endpoint.yaml").write_text(HTTP_ENDPOINT.format(port=external_port))
    external = subprocess.Popen(
        HTTP_APP, env={**os.environ, "APP_PORT": str(external_port)}, stdin=subprocess.DEVNULL
    )
    caller = SidecarProcess(
        [caller_resources], app_id="caller", home=home, env={"EXT_HEADER_VALUE": "from-env"}
    )
    system = InvokeSystem(home, resources, caller, external_port, external)
    try:
        system.callees["echo"] = start_callee(
            "echo", home, resources, env={"APP_API_TOKEN": APP_TOKEN}
        )
        system.callees["grpcapp"] = start_callee("grpcapp", home, resources, grpc_app=True)
        for app_id in ("retrying", "timed", "breaker"):
            system.callees[app_id] = start_callee(app_id, home, resources)
        caller.wait_ready()
        for app_id, proc in system.callees.items():
            proc.wait_ready()
            if app_id != "grpcapp":
                wait_until_reachable(system, app_id)
    except BaseException:
        system.stop()
        raise
    return system
