"""The sidecar flags shared by ``daprlite run`` and ``daprlite sidecar`` (Dapr's names)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from daprlite.config.options import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_METRICS_PORT,
    AppHealthOptions,
    Options,
)

PROTOCOLS = ("http", "https", "h2c", "grpc", "grpcs")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal", "panic")
MODES = ("standalone", "kubernetes")


def _size(text: str) -> int:
    """``4Mi``, ``512Ki``, ``1M`` or plain bytes."""
    units = {"ki": 1024, "mi": 1024**2, "gi": 1024**3, "k": 1000, "m": 1000**2, "g": 1000**3}
    low = text.strip().lower()
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if low.endswith(suffix):
            try:
                return int(float(low[: -len(suffix)]) * mult)
            except ValueError:
                break
    try:
        return int(low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 4Mi or 1048576") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_sidecar_flags(p: argparse.ArgumentParser, default_http: int, default_grpc: int) -> None:
    p.add_argument("--app-id", "-a", default="", help="the app id (no dots)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="kubernetes: load resources from the API server (default $DAPRLITE_MODE or "
        "standalone)",
    )
    p.add_argument("--app-port", "-p", type=_port, default=None, help="the port the app listens on")
    p.add_argument("--app-protocol", "-P", choices=PROTOCOLS, default="http")
    p.add_argument("--app-channel-address", default="127.0.0.1")
    p.add_argument(
        "--dapr-http-port",
        "-H",
        type=_port,
        default=default_http,
        help=f"HTTP API port (default {default_http or 'a free port'})",
    )
    p.add_argument(
        "--dapr-grpc-port",
        "-G",
        type=_port,
        default=default_grpc,
        help=f"gRPC API port (default {default_grpc or 'a free port'})",
    )
    p.add_argument(
        "--dapr-listen-addresses",
        default="127.0.0.1",
        help="comma-separated addresses the APIs bind to",
    )
    p.add_argument(
        "--resources-path",
        "--components-path",
        "-d",
        action="append",
        dest="resources_paths",
        default=None,
        metavar="DIR",
        help="folder of component YAML files (repeatable)",
    )
    p.add_argument(
        "--config",
        "-c",
        action="append",
        dest="config_files",
        default=None,
        metavar="FILE",
        help="Configuration YAML file (with --mode kubernetes: the Configuration's name)",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-as-json", action="store_true")
    p.add_argument("--app-max-concurrency", type=int, default=-1)
    p.add_argument("--enable-api-logging", action="store_true")
    p.add_argument(
        "--max-body-size",
        type=_size,
        default=DEFAULT_MAX_BODY_SIZE,
        help="largest request body accepted (default 4Mi)",
    )
    p.add_argument("--dapr-graceful-shutdown-seconds", type=float, default=5.0)
    p.add_argument(
        "--dapr-internal-grpc-port",
        "--dapr-internal-port",
        "-I",
        type=_port,
        default=0,
        dest="dapr_internal_port",
        help="sidecar-to-sidecar invocation port (default: a free port)",
    )
    p.add_argument(
        "--internal-listen-addresses",
        default="",
        help="comma-separated addresses for sidecar-to-sidecar traffic and the public port "
        "(default: those of --dapr-listen-addresses)",
    )
    p.add_argument(
        "--dapr-public-port",
        type=_port,
        default=None,
        help="serve only health and metadata reads on this port, at the internal listen addresses",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        # daprd's default for the sidecar; `daprlite run` (free API ports) picks a free one.
        default=DEFAULT_METRICS_PORT if default_http else 0,
        help="Prometheus metrics port, at the internal listen addresses "
        f"(default {DEFAULT_METRICS_PORT if default_http else 'a free port'})",
    )
    p.add_argument(
        "--enable-metrics",
        nargs="?",
        const="true",
        default=True,
        type=_bool,
        metavar="BOOL",
        help="serve Prometheus metrics (default true)",
    )
    p.add_argument(
        "--internal-proxy-port",
        type=_port,
        default=0,
        help="with mTLS: the port other sidecars send proxied gRPC calls to (default: a free port)",
    )
    p.add_argument(
        "--enable-mtls",
        nargs="?",
        const="true",
        default=None,
        type=_bool,
        metavar="BOOL",
        help="mTLS between sidecars (default: on when $DAPRLITE_HOME/certs holds a CA)",
    )
    p.add_argument(
        "--sentry-address",
        default="",
        metavar="HOST:PORT",
        help="get workload certificates from daprlite sentry there (Kubernetes; turns mTLS on)",
    )
    p.add_argument("--enable-app-health-check", action="store_true")
    p.add_argument("--app-health-check-path", default="/healthz")
    p.add_argument(
        "--app-health-probe-interval", type=float, default=5.0, help="seconds between probes"
    )
    p.add_argument(
        "--app-health-probe-timeout", type=float, default=500.0, help="probe timeout in ms"
    )
    p.add_argument(
        "--app-health-threshold",
        type=int,
        default=3,
        help="failed probes in a row before the app counts as unhealthy",
    )


def sidecar_mode(args: argparse.Namespace) -> str:
    """``--mode``, else ``$DAPRLITE_MODE``, else standalone."""
    mode = args.mode or os.environ.get("DAPRLITE_MODE", "").strip().lower() or "standalone"
    if mode not in MODES:
        raise SystemExit(f"DAPRLITE_MODE={mode!r}: expected one of {', '.join(MODES)}")
    return str(mode)


def options_from(args: argparse.Namespace, app_id: str, resources: list[Path]) -> Options:
    listen = tuple(a.strip() for a in args.dapr_listen_addresses.split(",") if a.strip())
    mode = sidecar_mode(args)
    kubernetes = mode == "kubernetes"
    configs: list[str] = args.config_files or []
    return Options(
        app_id=app_id,
        http_port=args.dapr_http_port,
        grpc_port=args.dapr_grpc_port,
        listen_addresses=listen or ("127.0.0.1",),
        app_port=args.app_port,
        app_protocol=args.app_protocol,
        app_channel_address=args.app_channel_address,
        app_max_concurrency=args.app_max_concurrency,
        resources_paths=tuple(resources),
        config_files=() if kubernetes else tuple(Path(c).expanduser() for c in configs),
        mode=mode,
        config_names=tuple(configs) if kubernetes else (),
        log_level=args.log_level,
        log_as_json=args.log_as_json,
        enable_api_logging=args.enable_api_logging,
        max_body_size=args.max_body_size,
        graceful_shutdown_seconds=args.dapr_graceful_shutdown_seconds,
        internal_port=args.dapr_internal_port,
        proxy_port=args.internal_proxy_port,
        internal_listen_addresses=tuple(
            a.strip() for a in args.internal_listen_addresses.split(",") if a.strip()
        ),
        public_port=args.dapr_public_port,
        metrics_port=args.metrics_port,
        enable_metrics=args.enable_metrics,
        run_file=os.environ.get("DAPRLITE_RUN_FILE", ""),
        app_health=_app_health(args),
        enable_mtls=args.enable_mtls,
        sentry_address=args.sentry_address.strip(),
    )


def _app_health(args: argparse.Namespace) -> AppHealthOptions | None:
    if not args.enable_app_health_check:
        return None
    if args.app_health_probe_interval <= 0 or args.app_health_probe_timeout <= 0:
        raise SystemExit("--app-health-probe-interval and --app-health-probe-timeout must be > 0")
    if args.app_health_threshold < 1:
        raise SystemExit("--app-health-threshold must be at least 1")
    return AppHealthOptions(
        path=args.app_health_check_path,
        interval=args.app_health_probe_interval,
        timeout=args.app_health_probe_timeout / 1000,
        threshold=args.app_health_threshold,
    )
