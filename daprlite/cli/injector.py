"""``daprlite injector``: run the Kubernetes sidecar-injection webhook (``daprlite.injector``).

Parses the flags into an :class:`InjectorConfig` and :class:`ServerOptions`,
then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

from daprlite.cli.flags import LOG_LEVELS
from daprlite.injector.patch import DEFAULT_SENTRY_ADDRESS, PULL_POLICIES, InjectorConfig
from daprlite.injector.server import ServerOptions, read_trust_anchors, serve
from daprlite.observability.logging import setup_logging


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = InjectorConfig()
    p = sub.add_parser("injector", help="run the Kubernetes sidecar injector (admission webhook)")
    p.add_argument("--port", type=int, required=True, help="HTTPS port to serve /mutate on")
    p.add_argument("--listen-address", default="0.0.0.0")
    p.add_argument("--tls-cert-file", required=True, type=Path, metavar="FILE")
    p.add_argument("--tls-key-file", required=True, type=Path, metavar="FILE")
    p.add_argument(
        "--tls-reload-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to check the TLS and trust-anchors files for changes",
    )
    p.add_argument("--sidecar-image", default=defaults.sidecar_image)
    p.add_argument(
        "--sidecar-image-pull-policy", choices=PULL_POLICIES, default=defaults.image_pull_policy
    )
    p.add_argument(
        "--trust-domain",
        default=defaults.trust_domain,
        help="DAPRLITE_TRUST_DOMAIN of injected sidecars (a Configuration's "
        "accessControl.trustDomain overrides it)",
    )
    p.add_argument(
        "--trust-anchors-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="PEM bundle of the CA certificates the sidecars trust (read again when it changes)",
    )
    p.add_argument("--sentry-address", default=DEFAULT_SENTRY_ADDRESS)
    p.add_argument(
        "--no-native-sidecar",
        action="store_true",
        help="inject a regular container instead of a native sidecar (Kubernetes < 1.29)",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-as-json", action="store_true")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        parser.error(f"--port: expected a port in 1-65535, got {args.port}")
    if args.tls_reload_interval <= 0:
        parser.error(f"--tls-reload-interval: expected seconds > 0, got {args.tls_reload_interval}")
    anchors = ""
    if args.trust_anchors_file is not None:
        # Read here for a clear start-up error; the server reads it again whenever it changes.
        try:
            anchors = read_trust_anchors(args.trust_anchors_file)
        except ValueError as exc:
            parser.error(str(exc))
    for flag, path in (
        ("--tls-cert-file", args.tls_cert_file),
        ("--tls-key-file", args.tls_key_file),
    ):
        if not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    try:
        config = InjectorConfig(
            sidecar_image=args.sidecar_image,
            image_pull_policy=args.sidecar_image_pull_policy,
            trust_domain=args.trust_domain,
            trust_anchors=anchors,
            sentry_address=args.sentry_address,
            native_sidecar=not args.no_native_sidecar,
        )
    except ValueError as exc:
        parser.error(str(exc))
    options = ServerOptions(
        port=args.port,
        cert_file=args.tls_cert_file,
        key_file=args.tls_key_file,
        listen_address=args.listen_address,
        reload_interval=args.tls_reload_interval,
        trust_anchors_file=args.trust_anchors_file,
    )
    setup_logging(args.log_level, args.log_as_json, "injector")
    try:
        return asyncio.run(_main(options, config))
    except ssl.SSLError as exc:
        print(
            f"daprlite injector: --tls-cert-file {args.tls_cert_file} and --tls-key-file "
            f"{args.tls_key_file} are not a matching PEM certificate and key "
            f"({exc.reason or exc.strerror or exc})",
            file=sys.stderr,
        )
    except ValueError as exc:  # the trust-anchors file went bad between the check and serving
        print(f"daprlite injector: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"daprlite injector: cannot serve on port {args.port}: {exc}", file=sys.stderr)
    return 1


async def _main(options: ServerOptions, config: InjectorConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(options, config, stop)
    return 0
