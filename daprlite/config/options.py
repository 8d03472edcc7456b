"""Sidecar options: what ``daprlite sidecar`` / ``daprlite run`` flags and env resolve to.

Start-up step 1. The CLI parses flags into :class:`Options`; the lifecycle
reads nothing else. Port 0 means "pick a free port at start".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HTTP_PORT = 3500
DEFAULT_GRPC_PORT = 50001
DEFAULT_METRICS_PORT = 9090  # `daprlite sidecar`; `daprlite run` picks a free port
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024


def daprlite_home() -> Path:
    """``$DAPRLITE_HOME`` or ``~/.daprlite``: default components, data and run registry."""
    env = os.environ.get("DAPRLITE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".daprlite"


@dataclass(frozen=True, slots=True)
class AppHealthOptions:
    """``--enable-app-health-check`` and its settings (Dapr's defaults)."""

    path: str = "/healthz"
    interval: float = 5.0  # seconds between probes
    timeout: float = 0.5  # seconds a probe may take
    threshold: int = 3  # consecutive failures before the app counts as unhealthy


@dataclass(frozen=True, slots=True)
class Options:
    app_id: str
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    listen_addresses: tuple[str, ...] = ("127.0.0.1",)
    app_port: int | None = None
    app_protocol: str = "http"
    app_channel_address: str = "127.0.0.1"
    app_max_concurrency: int = -1
    resources_paths: tuple[Path, ...] = ()
    config_files: tuple[Path, ...] = ()
    # "kubernetes": resources also come from the API server, and --config names the
    # Configuration object there (config_names) instead of a file.
    mode: str = "standalone"
    config_names: tuple[str, ...] = ()
    log_level: str = "info"
    log_as_json: bool = False
    enable_api_logging: bool = False
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    graceful_shutdown_seconds: float = 5.0
    namespace: str = field(default_factory=lambda: os.environ.get("NAMESPACE", ""))
    internal_port: int = 0  # sidecar-to-sidecar invocation listener (0: a free port)
    proxy_port: int = 0  # mTLS listener for proxied gRPC calls (0: a free port)
    # Where the internal invocation and proxy listeners (and the public health port)
    # bind; empty: the same addresses as the APIs.
    internal_listen_addresses: tuple[str, ...] = ()
    public_port: int | None = None  # --dapr-public-port: health endpoints only
    # --metrics-port (0: a free port) on the internal listen addresses; --enable-metrics.
    metrics_port: int = 0
    enable_metrics: bool = True

    @property
    def internal_addresses(self) -> tuple[str, ...]:
        return self.internal_listen_addresses or self.listen_addresses

    run_file: str = ""  # the multi-app run file that started this sidecar, if any
    app_health: AppHealthOptions | None = None  # None: no app health checks
    # None: on when a CA is available, unless spec.mtls.enabled says no.
    enable_mtls: bool | None = None
    # host:port of daprlite sentry: certificates come from it instead of a local CA.
    sentry_address: str = ""
